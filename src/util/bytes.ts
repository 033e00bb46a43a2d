/**
 * Byte-array helpers shared by the layers: comparison in constant time and base64url text.
 *
 * @module
 */

import { Buffer } from "node:buffer";

/**
 * Compares two byte arrays in time that depends only on their lengths, never on their contents.
 * Use it for keys, fingerprints and tags.
 *
 * @example Compare keys
 * ```ts
 * import { constantTimeEqual } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * assert.ok(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2])));
 * assert.ok(!constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3])));
 * assert.ok(!constantTimeEqual(new Uint8Array([1]), new Uint8Array([1, 2])));
 * ```
 *
 * @param a The first array.
 * @param b The second array.
 * @returns Whether they are equal.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * Encodes bytes as base64url without padding (RFC 4648 section 5), as keys and fingerprints are
 * written.
 *
 * @example Encode three bytes
 * ```ts
 * import { toBase64Url } from "./bytes.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(toBase64Url(new Uint8Array([0xfb, 0xff, 0xfe])), "-__-");
 * ```
 *
 * @param bytes The bytes.
 * @returns The text.
 */
export function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}
