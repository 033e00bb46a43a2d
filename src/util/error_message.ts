/**
 * The text of a thrown value, for error messages and logs.
 *
 * @module
 */

/**
 * The message of a thrown value: an `Error`'s `message`, or the value as a string (anything may
 * be thrown).
 *
 * @example Describe whatever was thrown
 * ```ts
 * import { errorMessage } from "./error_message.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(errorMessage(new Error("disk full")), "disk full");
 * assert.equal(errorMessage("gone"), "gone");
 * ```
 *
 * @param error The thrown value.
 * @returns Its message.
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
