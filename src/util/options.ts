/**
 * Checks of numeric options, with the library's error messages (`RangeError`, sentence case,
 * quoted values).
 *
 * @module
 */

/**
 * An option that must be a positive finite number, or its default when not given.
 *
 * @example Check a limit
 * ```ts
 * import { positiveOption } from "./options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(positiveOption("backpressureLimit", undefined, 32), 32);
 * assert.throws(() => positiveOption("backpressureLimit", 0, 32), RangeError);
 * ```
 *
 * @param name The option's name, for the message.
 * @param value The value given, if any.
 * @param fallback The default.
 * @returns The value or the default.
 * @throws {RangeError} For zero, a negative number, NaN or infinity.
 */
export function positiveOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`Cannot use ${name} "${value}": it must be a positive number`);
  }
  return value;
}

/**
 * An option that must be zero (often: disabled) or a positive finite number, or its default.
 *
 * @example Check a timeout that 0 disables
 * ```ts
 * import { nonNegativeOption } from "./options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(nonNegativeOption("idleTimeoutMs", 0, 60_000), 0);
 * assert.throws(() => nonNegativeOption("idleTimeoutMs", -1, 60_000), RangeError);
 * ```
 *
 * @param name The option's name, for the message.
 * @param value The value given, if any.
 * @param fallback The default.
 * @returns The value or the default.
 * @throws {RangeError} For a negative number, NaN or infinity.
 */
export function nonNegativeOption(
  name: string,
  value: number | undefined,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (!(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(`Cannot use ${name} "${value}": it must be zero or a positive number`);
  }
  return value;
}
