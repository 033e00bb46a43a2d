/**
 * The record format of the encrypted session: the record types, the CLOSE codes, the size and
 * counter limits, and the encoding of a CLOSE record's content. `SecureChannel` (in
 * `channel.ts`) seals and opens the records; this module says what their inner plaintext is:
 *
 * ```text
 * record = ChaCha20-Poly1305(k_direction, n_direction, ad = empty, inner)   // inner + 16-byte tag
 * inner  = content || type:u8        type: 0x01 DATA, 0x02 KEY_UPDATE, 0x03 CLOSE
 * CLOSE content = code:u16be || reason (UTF-8, at most 123 bytes)
 * ```
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/** Record type bytes: the last byte of a record's decrypted inner plaintext. */
export const RecordType: {
  /** A DATA record: the content is one encoded batch of messages. */
  readonly Data: 0x01;
  /** A KEY_UPDATE record: empty content; the last record under the old key of a direction. */
  readonly KeyUpdate: 0x02;
  /** A CLOSE record: `code:u16be || reason (UTF-8, at most 123 bytes)`. */
  readonly Close: 0x03;
} = { Data: 0x01, KeyUpdate: 0x02, Close: 0x03 } as const;

/**
 * Well-known CLOSE reason codes (u16). Codes from `0x1000` up are free for applications.
 */
export const CloseCode: {
  /** Orderly end of the session. */
  readonly Normal: 0;
  /** The sender is shutting down. */
  readonly GoingAway: 1;
  /** The sender saw a protocol error from its peer. */
  readonly ProtocolError: 2;
  /** A limit was reached (size, rate, count). */
  readonly LimitExceeded: 3;
  /** The session was idle for too long. */
  readonly IdleTimeout: 4;
  /** The record counter of a direction is exhausted. */
  readonly KeyExhausted: 5;
} = {
  Normal: 0,
  GoingAway: 1,
  ProtocolError: 2,
  LimitExceeded: 3,
  IdleTimeout: 4,
  KeyExhausted: 5,
} as const;

/** The size of the Poly1305 tag that ends every record. */
export const RECORD_TAG_SIZE = 16;

/**
 * The largest nonce (record counter) a direction may use: 2^53 − 2. DATA and KEY_UPDATE records
 * use at most 2^53 − 3, so the last nonce is always left for a CLOSE record.
 */
export const MAX_RECORD_NONCE: number = 2 ** 53 - 2;

/** The longest CLOSE reason, in UTF-8 bytes. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** The reason code and text of a CLOSE record. */
export interface CloseInfo {
  /** The u16 reason code (see {@linkcode CloseCode}). */
  readonly code: number;
  /** The reason text, at most 123 UTF-8 bytes. */
  readonly reason: string;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Checks the code and reason of a CLOSE (for a farewell sealed later, checked when it is set).
 *
 * @example Refuse a code that does not fit in 16 bits
 * ```ts
 * import { checkCloseArguments } from "./record_format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...checkCloseArguments(1, "ok")], [0x6f, 0x6b]);
 * assert.throws(() => checkCloseArguments(70_000, ""), RangeError);
 * ```
 *
 * @param code The u16 reason code.
 * @param reason The reason text.
 * @returns The reason's UTF-8 bytes.
 * @throws {RangeError} For a code outside 0..65535 or a reason longer than 123 UTF-8 bytes.
 */
export function checkCloseArguments(code: number, reason: string): Uint8Array {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff) {
    throw new RangeError(
      `Cannot use close code "${code}": it must be an integer from 0 to 65535`,
    );
  }
  const reasonBytes = textEncoder.encode(reason);
  if (reasonBytes.length > MAX_CLOSE_REASON_BYTES) {
    throw new RangeError(
      `Close reason of "${reasonBytes.length}" bytes exceeds the limit "${MAX_CLOSE_REASON_BYTES}"`,
    );
  }
  return reasonBytes;
}

/**
 * Builds the inner plaintext of a CLOSE record: `code:u16be || reason || type`.
 *
 * @example Encode a CLOSE
 * ```ts
 * import { encodeCloseInner, RecordType } from "./record_format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...encodeCloseInner(2, "x")], [0, 2, 0x78, RecordType.Close]);
 * assert.throws(() => encodeCloseInner(70_000, ""), RangeError);
 * ```
 *
 * @param code The u16 reason code (see {@linkcode CloseCode}).
 * @param reason A short reason text, at most 123 UTF-8 bytes.
 * @returns The inner plaintext, to seal.
 * @throws {RangeError} For a code outside 0..65535 or a reason over 123 bytes.
 */
export function encodeCloseInner(code: number, reason: string): Uint8Array {
  const reasonBytes = checkCloseArguments(code, reason);
  const inner = new Uint8Array(reasonBytes.length + 3);
  inner[0] = code >>> 8;
  inner[1] = code & 0xff;
  inner.set(reasonBytes, 2);
  inner[inner.length - 1] = RecordType.Close;
  return inner;
}

/**
 * Reads the content of an authenticated CLOSE record (its inner plaintext without the type byte).
 *
 * @example Decode a CLOSE
 * ```ts
 * import { decodeCloseContent } from "./record_format.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(decodeCloseContent(new Uint8Array([0, 1, 0x78]), 7), {
 *   code: 1,
 *   reason: "x",
 * });
 * assert.throws(() => decodeCloseContent(new Uint8Array([0]), 7), { code: "InvalidMessage" });
 * ```
 *
 * @param content The record's content.
 * @param nonce The record's nonce, for the messages.
 * @returns The code and reason.
 * @throws {ProtocolError} `InvalidMessage` for a content of the wrong size or a reason that is
 * not UTF-8.
 */
export function decodeCloseContent(content: Uint8Array, nonce: number): CloseInfo {
  if (content.length < 2 || content.length > 2 + MAX_CLOSE_REASON_BYTES) {
    throw new ProtocolError(
      "InvalidMessage",
      `CLOSE record "${nonce}" has "${content.length}" content bytes, expected 2 to ${
        2 + MAX_CLOSE_REASON_BYTES
      }`,
    );
  }
  const code = (content[0]! << 8) | content[1]!;
  let reason: string;
  try {
    reason = textDecoder.decode(content.subarray(2));
  } catch (cause) {
    throw new ProtocolError(
      "InvalidMessage",
      `CLOSE record "${nonce}" has a reason that is not UTF-8`,
      {
        cause,
      },
    );
  }
  return { code, reason };
}
