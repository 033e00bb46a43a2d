/**
 * Batches: several messages in one packet payload or one encrypted DATA record. A batch is a
 * sequence of entries `flags:u8 ‖ length:LEB128 ‖ body`, where the body is one encoded message
 * (`message.ts`), the low two bits of `flags` name the compression of the body (0 none, 1 LZ4,
 * 2 Zstd; see `compression_ids.ts`) and the other bits are reserved (zero). See
 * docs/PROTOCOL.md for the exact bytes.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import {
  encodeMessage,
  leb128Size,
  type Message,
  messageSize,
  readMessage,
  writeLeb128,
  writeMessage,
} from "./message.ts";
import { MAX_PAYLOAD_SIZE } from "./packet.ts";
import { Reader } from "./reader.ts";

/** The mask of the compression id in a batch entry's flags byte. */
export const COMPRESSION_FLAG_MASK = 0x03;

/**
 * Compresses message bodies while a batch is built. Implemented by the compression policy.
 */
export interface BodyCompressor {
  /**
   * Returns the compression id to put in the entry's flags and the body to send; returns id 0
   * and the same body to send it uncompressed. Must be synchronous.
   */
  compress(body: Uint8Array): { id: number; body: Uint8Array };
}

/**
 * Reverses {@linkcode BodyCompressor} when a batch is decoded, after authentication.
 * `createDecompressor` (the compression policy) builds the standard one.
 *
 * @example A decompressor that honours the limit it is given
 * ```ts
 * import { ProtocolError } from "@npro/network-protocol";
 * import { type BodyDecompressor, decodeBatch } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * // A toy "algorithm" 1: the body is the encoded message, reversed.
 * const reversing: BodyDecompressor = {
 *   maxSize: 1024,
 *   decompress(id, body, maxSize = 1024) {
 *     if (id !== 1) throw new ProtocolError("PolicyViolation", `Id "${id}" was not negotiated`);
 *     if (body.length > maxSize) {
 *       throw new ProtocolError("LimitExceeded", `Body is over the limit "${maxSize}"`);
 *     }
 *     return body.slice().reverse();
 *   },
 * };
 * const batch = new Uint8Array([1, 3, 0x69, 0x01, 0x03]); // flags 1, length 3, echo "i" reversed
 * assert.deepEqual(decodeBatch(batch, { decompressor: reversing }), [{ type: "echo", text: "i" }]);
 * ```
 */
export interface BodyDecompressor {
  /**
   * The most bytes one call produces: the decompressor's own per-body limit (the packet limit
   * for `createDecompressor`). {@linkcode decodeBatch} uses it as the default of
   * {@linkcode DecodeBatchOptions.maxDecodedBytes}; leave it out when there is none.
   */
  readonly maxSize?: number;
  /**
   * Decompresses `body` compressed with algorithm `id` (non-zero). Must throw
   * {@linkcode ProtocolError} with code `PolicyViolation` for an id that was not negotiated,
   * `LimitExceeded` when the output would exceed `maxSize` (or its own cap, whichever is
   * smaller) and `DecompressionFailure` for corrupt data. It must refuse before it allocates
   * more than the limit: {@linkcode decodeBatch} passes what is left of the batch's budget, and
   * only checks the result afterwards.
   *
   * @param id The compression id from the entry's flags (1 LZ4, 2 Zstd).
   * @param body The compressed body.
   * @param maxSize The most bytes this call may produce; when absent, the decompressor's own cap.
   * @returns The decompressed body.
   */
  decompress(id: number, body: Uint8Array, maxSize?: number): Uint8Array;
}

/** Options for {@linkcode encodeBatch}. */
export interface EncodeBatchOptions {
  /** Compresses entry bodies; without it no entry is compressed. */
  compressor?: BodyCompressor;
  /**
   * The most entries of one batch handed to the compressor (default 4,096, what
   * {@linkcode decodeBatch} accepts by default); the rest are sent uncompressed, so that a
   * batch of many small compressible messages is not refused by its receiver.
   *
   * @default {4096}
   */
  maxCompressedEntries?: number;
}

/** Options for {@linkcode decodeBatch}. */
export interface DecodeBatchOptions {
  /** Decompresses entry bodies; without it a compressed entry is a `PolicyViolation`. */
  decompressor?: BodyDecompressor;
  /** The most messages one batch may hold (default 65,536); more is `LimitExceeded`. */
  maxMessages?: number;
  /**
   * The most bytes one batch that holds compressed entries may decode to: the batch's own
   * length, with every compressed body counted at its decompressed size instead of its
   * compressed one. Every compressed entry is decompressed with what is left of this budget as
   * the decompressor's `maxSize`, so a batch of many small compressed entries that each expand
   * to a large body is refused before the total passes the budget; over it is `LimitExceeded`.
   * A batch without compressed entries is not checked: it decodes to less than its own length,
   * which the packet limit bounds.
   *
   * @default {decompressor.maxSize, else MAX_PAYLOAD_SIZE (16 MiB)}
   */
  maxDecodedBytes?: number;
  /**
   * The most compressed entries one batch may hold; more is `LimitExceeded`. Each one costs a
   * decompressor call (about 14 µs for Zstd through `node:zlib`, 1-2 µs for LZ4 or the
   * WebAssembly Zstd), whatever its size, so this bounds the CPU time of a batch of many tiny
   * compressed entries. {@linkcode encodeBatch} compresses at most as many by default.
   *
   * @default {4096}
   */
  maxCompressedEntries?: number;
  /**
   * The caller hands `bytes` over (for example a freshly decrypted record that nothing else
   * holds): byte fields become views into it instead of copies. Leave it off when `bytes` is a
   * reused buffer, such as a socket read buffer.
   *
   * @default {false}
   */
  ownedInput?: boolean;
}

/** The default of `maxCompressedEntries`, for both the encoder and the decoder. */
const MAX_COMPRESSED_ENTRIES = 4096;

/**
 * Encodes a batch of messages into one buffer: one entry `flags ‖ length ‖ body` per message.
 *
 * @example Round trip a batch
 * ```ts
 * import { decodeBatch, encodeBatch } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeBatch([{ type: "ping" }, { type: "echo", text: "a" }]);
 * assert.deepEqual(decodeBatch(bytes), [{ type: "ping" }, { type: "echo", text: "a" }]);
 * ```
 *
 * @param messages The messages, in order.
 * @param options An optional compressor for entry bodies, and how many entries it may compress.
 * @returns The encoded batch.
 * @throws {TypeError} For an invalid message.
 * @throws {RangeError} For an id or code out of range, or a `maxCompressedEntries` that is not
 * a non-negative integer.
 */
export function encodeBatch(
  messages: readonly Message[],
  options?: EncodeBatchOptions,
): Uint8Array {
  const compressor = options?.compressor;
  if (compressor !== undefined) {
    const maxCompressed = options?.maxCompressedEntries ?? MAX_COMPRESSED_ENTRIES;
    if (!Number.isSafeInteger(maxCompressed) || maxCompressed < 0) {
      throw new RangeError(
        `Compressed entry limit "${maxCompressed}" is not a non-negative integer`,
      );
    }
    return encodeCompressedBatch(messages, compressor, maxCompressed);
  }
  let total = 0;
  const sizes = new Array<number>(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const size = messageSize(messages[i]!, false);
    sizes[i] = size;
    total += 1 + leb128Size(size) + size;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (let i = 0; i < messages.length; i++) {
    const size = sizes[i]!;
    out[offset++] = 0;
    offset = writeLeb128(out, offset, size);
    offset = writeMessage(out, offset, messages[i]!);
  }
  return out;
}

/**
 * Returns the size of an uncompressed batch entry whose body (one encoded message) is `size`
 * bytes: the flags byte, the LEB128 length and the body.
 *
 * @param size The encoded message size, from `encodedMessageSize` (`message.ts`).
 * @returns The entry size in bytes.
 */
export function batchEntrySize(size: number): number {
  return 1 + leb128Size(size) + size;
}

/**
 * Writes `messages[start, end)` as uncompressed batch entries into `out` at `offset`, with the
 * sizes the caller already computed (and validated) with `encodedMessageSize`: the
 * connection's write path sizes each message once, when it is queued, and encodes a whole
 * flush into one buffer without intermediate copies.
 *
 * @param out The buffer; it must have room for every entry.
 * @param offset Where the first entry starts.
 * @param messages The messages.
 * @param sizes `sizes[i]` is the encoded size of `messages[i]`.
 * @param start The first message to write.
 * @param end One past the last message to write.
 * @returns The offset just past the last entry.
 */
export function writeBatchEntries(
  out: Uint8Array,
  offset: number,
  messages: readonly Message[],
  sizes: readonly number[],
  start: number,
  end: number,
): number {
  for (let i = start; i < end; i++) {
    out[offset++] = 0;
    offset = writeLeb128(out, offset, sizes[i]!);
    offset = writeMessage(out, offset, messages[i]!);
  }
  return offset;
}

function encodeCompressedBatch(
  messages: readonly Message[],
  compressor: BodyCompressor,
  maxCompressed: number,
): Uint8Array {
  const ids = new Array<number>(messages.length);
  const bodies = new Array<Uint8Array>(messages.length);
  let total = 0;
  let compressed = 0;
  for (let i = 0; i < messages.length; i++) {
    const plain = encodeMessage(messages[i]!);
    const result = compressed < maxCompressed ? compressor.compress(plain) : { id: 0, body: plain };
    if (!Number.isInteger(result.id) || result.id < 0 || result.id > COMPRESSION_FLAG_MASK) {
      throw new RangeError(`Compressor returned an invalid compression id "${result.id}"`);
    }
    if (result.id !== 0) compressed++;
    ids[i] = result.id;
    bodies[i] = result.body;
    total += 1 + leb128Size(result.body.length) + result.body.length;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (let i = 0; i < messages.length; i++) {
    const body = bodies[i]!;
    out[offset++] = ids[i]!;
    offset = writeLeb128(out, offset, body.length);
    out.set(body, offset);
    offset += body.length;
  }
  return out;
}

/**
 * Decodes a batch produced by {@linkcode encodeBatch}. Compressed entries are decompressed with
 * the given decompressor, which must only be called after the batch was authenticated, each
 * within what is left of the batch's decoded-size budget
 * ({@linkcode DecodeBatchOptions.maxDecodedBytes}).
 *
 * @example Decode a batch
 * ```ts
 * import { decodeBatch, encodeBatch } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const messages = decodeBatch(encodeBatch([{ type: "pong" }]));
 * assert.deepEqual(messages, [{ type: "pong" }]);
 * ```
 *
 * @param bytes The encoded batch.
 * @example Cap what the compressed entries of one batch decompress to
 * ```ts
 * import { type Message, ProtocolError } from "@npro/network-protocol";
 * import { decodeBatch, encodeBatch } from "@npro/network-protocol/core";
 * import { CompressionPolicy, createDecompressor } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * // Eight 64 KiB messages that LZ4 shrinks to about 300 bytes each.
 * const blob: Message = { type: "custom", command: "PUT", payload: new Uint8Array(65_536) };
 * const bytes = encodeBatch(Array(8).fill(blob), {
 *   compressor: new CompressionPolicy({ algorithm: "lz4" }),
 * });
 * assert.ok(bytes.length < 4096);
 * // Each body is under the decompressor's 1 MiB limit, but together they are over 256 KiB.
 * const decompressor = createDecompressor({ accept: ["lz4"], maxSize: 1 << 20 });
 * assert.equal(decodeBatch(bytes, { decompressor }).length, 8);
 * assert.throws(
 *   () => decodeBatch(bytes, { decompressor, maxDecodedBytes: 256 * 1024 }),
 *   (error) => error instanceof ProtocolError && error.code === "LimitExceeded",
 * );
 * ```
 *
 * @param bytes The encoded batch.
 * @param options The decompressor, the message count limits and the decoded-size budget.
 * @returns The messages, in order.
 * @throws {ProtocolError} `InvalidMessage` for a malformed batch, `PolicyViolation` for a
 * compressed entry without a decompressor, `LimitExceeded` for too many messages or compressed
 * entries or when the compressed entries decompress to more than the budget, or what the
 * decompressor throws.
 * @throws {RangeError} When `maxDecodedBytes` or `maxCompressedEntries` is not a non-negative
 * integer (checked at the first compressed entry).
 */
export function decodeBatch(bytes: Uint8Array, options?: DecodeBatchOptions): Message[] {
  const maxMessages = options?.maxMessages ?? 65_536;
  const decompressor = options?.decompressor;
  // What is left of the decoded-size budget and of the compressed entries allowed: set at the
  // first compressed entry, so that a batch without any pays nothing for them.
  let left = -1;
  let compressedLeft = 0;
  const out: Message[] = [];
  const reader = new Reader(bytes, 0, bytes.length, options?.ownedInput === true);
  const total = bytes.length;
  while (reader.offset < total) {
    if (out.length >= maxMessages) {
      throw new ProtocolError(
        "LimitExceeded",
        `Batch holds more than the limit of "${maxMessages}" messages`,
      );
    }
    const flags = reader.byte();
    if ((flags & ~COMPRESSION_FLAG_MASK) !== 0) {
      throw new ProtocolError(
        "InvalidMessage",
        `Batch entry has reserved flag bits set: flags "0x${flags.toString(16)}"`,
      );
    }
    const length = reader.varint();
    const start = reader.take(length);
    const id = flags & COMPRESSION_FLAG_MASK;
    if (id === 0) {
      // The same reader, bounded to the entry: no allocation per message.
      reader.offset = start;
      reader.end = start + length;
      out.push(readMessage(reader, false));
      reader.expectEnd();
      reader.end = total;
      continue;
    }
    if (decompressor === undefined) {
      throw new ProtocolError(
        "PolicyViolation",
        `Batch entry is compressed with algorithm id "${id}" but compression was not negotiated`,
      );
    }
    if (left < 0) {
      left = decodedBudget(options, decompressor) - total;
      compressedLeft = options?.maxCompressedEntries ?? MAX_COMPRESSED_ENTRIES;
      if (!Number.isSafeInteger(compressedLeft) || compressedLeft < 0) {
        throw new RangeError(
          `Compressed entry limit "${compressedLeft}" is not a non-negative integer`,
        );
      }
    }
    if (compressedLeft-- === 0) {
      throw new ProtocolError(
        "LimitExceeded",
        `Batch holds more than the limit of "${
          options?.maxCompressedEntries ?? MAX_COMPRESSED_ENTRIES
        }" compressed entries`,
      );
    }
    // This body now counts at its decompressed size instead of its compressed length. Every
    // message is at least one byte, so with nothing left the entry cannot fit.
    left += length;
    if (left < 1) throw overBudget(options, decompressor, out.length, left, undefined);
    let plain: Uint8Array;
    try {
      plain = decompressor.decompress(id, bytes.subarray(start, start + length), left);
    } catch (error) {
      if (
        error instanceof ProtocolError && error.code === "LimitExceeded" &&
        !(left >= (decompressor.maxSize ?? Infinity))
      ) {
        throw overBudget(options, decompressor, out.length, left, error);
      }
      throw error;
    }
    // A decompressor that ignores its limit is still stopped here, one body late.
    if (plain.length > left) throw overBudget(options, decompressor, out.length, left, undefined);
    left -= plain.length;
    const body = new Reader(plain, 0, plain.length);
    out.push(readMessage(body, false));
    body.expectEnd();
  }
  return out;
}

/** Returns and validates the decoded-size budget of one batch. */
function decodedBudget(
  options: DecodeBatchOptions | undefined,
  decompressor: BodyDecompressor,
): number {
  const budget = options?.maxDecodedBytes ?? decompressor.maxSize ?? MAX_PAYLOAD_SIZE;
  if (!Number.isSafeInteger(budget) || budget < 0) {
    throw new RangeError(`Decoded-size limit "${budget}" is not a non-negative integer`);
  }
  return budget;
}

function overBudget(
  options: DecodeBatchOptions | undefined,
  decompressor: BodyDecompressor,
  index: number,
  left: number,
  cause: ProtocolError | undefined,
): ProtocolError {
  const budget = decodedBudget(options, decompressor);
  return new ProtocolError(
    "LimitExceeded",
    `Batch decodes to more than the limit "${budget}" bytes: compressed entry "${index}" ` +
      `does not fit in the "${Math.max(0, left)}" bytes left`,
    cause === undefined ? undefined : { cause },
  );
}
