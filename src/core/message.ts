/**
 * Messages and batches: the application-level units carried inside packets (plaintext mode) or
 * inside encrypted DATA records (secure mode).
 *
 * A message is a one-byte tag followed by its fields. Integers are unsigned LEB128 (at most
 * 2^53 - 1, minimal encoding); strings are UTF-8 and byte strings are raw, both prefixed by their
 * LEB128 length. A batch is a sequence of entries `flags:u8 ‖ length:LEB128 ‖ body`, where the low
 * two bits of `flags` name the compression of the body (0 none, 1 LZ4, 2 Zstd) and the other bits
 * are reserved (zero). See docs/PROTOCOL.md for the exact bytes.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { MAX_PAYLOAD_SIZE } from "./packet.ts";
import { Slab } from "./slab.ts";

/** A message carrying no fields: a liveness probe. Answered by {@linkcode PongMessage}. */
export interface PingMessage {
  /** Discriminant. */
  type: "ping";
}
/** The answer to a {@linkcode PingMessage}. */
export interface PongMessage {
  /** Discriminant. */
  type: "pong";
}
/** A text the server echoes back. */
export interface EchoMessage {
  /** Discriminant. */
  type: "echo";
  /** The text. */
  text: string;
}
/** A request to end the session politely. */
export interface DisconnectMessage {
  /** Discriminant. */
  type: "disconnect";
}
/**
 * An application message: a command name (its opcode for the dispatcher) and opaque bytes.
 * The names of the built-in opcodes are reserved and cannot be used as commands.
 */
export interface CustomMessage {
  /** Discriminant. */
  type: "custom";
  /** The command, used as the opcode by the dispatcher. */
  command: string;
  /** The payload. */
  payload: Uint8Array;
}
/** A message whose tag this version does not know (sent by a newer peer). */
export interface UnknownMessage {
  /** Discriminant. */
  type: "unknown";
  /** The unknown tag byte. */
  tag: number;
}
/**
 * A numbered request: the peer answers with a {@linkcode ResponseMessage} or an
 * {@linkcode ErrorMessage} carrying the same id, in any order relative to other numbered requests.
 */
export interface RequestMessage {
  /** Discriminant. */
  type: "request";
  /** The request id, unique among the sender's requests in flight (1 to 2^53 - 1). */
  id: number;
  /**
   * How long the sender will wait for the answer, in milliseconds from when it sent the
   * request; absent when it has no deadline. A relative time needs no synchronized clocks.
   */
  deadline?: number;
  /** The request itself (not a numbered message). */
  message: Message;
}
/** The successful answer to the {@linkcode RequestMessage} with the same id. */
export interface ResponseMessage {
  /** Discriminant. */
  type: "response";
  /** The id of the request answered. */
  id: number;
  /** The answer (not a numbered message). */
  message: Message;
}
/** The failed answer to the {@linkcode RequestMessage} with the same id. */
export interface ErrorMessage {
  /** Discriminant. */
  type: "error";
  /** The id of the request answered. */
  id: number;
  /** An application-defined or {@linkcode ErrorCodes} code (u32). */
  code: number;
  /** A human-readable description. */
  text: string;
}
/** Asks the peer to abandon the numbered request with this id. */
export interface CancelMessage {
  /** Discriminant. */
  type: "cancel";
  /** The id of the request to cancel. */
  id: number;
}

/** Every message of the protocol, discriminated by `type`. */
export type Message =
  | PingMessage
  | PongMessage
  | EchoMessage
  | DisconnectMessage
  | CustomMessage
  | UnknownMessage
  | RequestMessage
  | ResponseMessage
  | ErrorMessage
  | CancelMessage;

/** The wire tags of the built-in messages. */
export const MessageTag: {
  readonly Ping: 0x01;
  readonly Pong: 0x02;
  readonly Echo: 0x03;
  readonly Disconnect: 0x04;
  readonly Custom: 0x05;
  readonly Request: 0x10;
  readonly Response: 0x11;
  readonly Error: 0x12;
  readonly Cancel: 0x13;
} = {
  Ping: 0x01,
  Pong: 0x02,
  Echo: 0x03,
  Disconnect: 0x04,
  Custom: 0x05,
  Request: 0x10,
  Response: 0x11,
  Error: 0x12,
  Cancel: 0x13,
} as const;

/** Codes of {@linkcode ErrorMessage}s produced by the library itself (applications use 1000+). */
export const ErrorCodes: {
  /** No handler is registered for the request's opcode. */
  readonly UnknownOpcode: 1;
  /** The handler threw. */
  readonly HandlerFailed: 2;
  /** The request was cancelled. */
  readonly Cancelled: 3;
  /** The request's deadline passed. */
  readonly DeadlineExceeded: 4;
  /** The server is shutting down. */
  readonly ShuttingDown: 5;
  /** The reply is larger than the largest message a packet can carry. */
  readonly TooLarge: 6;
} = {
  UnknownOpcode: 1,
  HandlerFailed: 2,
  Cancelled: 3,
  DeadlineExceeded: 4,
  ShuttingDown: 5,
  TooLarge: 6,
} as const;

/** The opcodes of the built-in messages; no custom command may use one of these names. */
export const RESERVED_OPCODES: ReadonlySet<string> = new Set([
  "PING",
  "PONG",
  "ECHO",
  "DISCONNECT",
  "UNKNOWN",
  "RESPONSE",
  "ERROR",
  "CANCEL",
]);

/** A compression algorithm that a batch entry may use. */
export type CompressionAlgorithm = "lz4" | "zstd";

/** Compression ids carried in the low two bits of a batch entry's flags byte (0: none). */
export const COMPRESSION_IDS: { readonly lz4: 1; readonly zstd: 2 } = { lz4: 1, zstd: 2 } as const;

/**
 * Every {@linkcode CompressionAlgorithm}, in id order: the keys of {@linkcode COMPRESSION_IDS},
 * so the list cannot miss an algorithm that has an id.
 */
export const COMPRESSION_ALGORITHMS: readonly CompressionAlgorithm[] = Object.freeze(
  Object.keys(COMPRESSION_IDS) as CompressionAlgorithm[],
);

/** The mask of the compression id in a batch entry's flags byte. */
export const COMPRESSION_FLAG_MASK = 0x03;

/**
 * Returns the handshake feature bit that announces support for `algorithm`:
 * `1 << (id - 1)`, so LZ4 is `0x1` and Zstd is `0x2`.
 *
 * @example Feature bits
 * ```ts
 * import { compressionFeatureBit } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.equal(compressionFeatureBit("lz4") | compressionFeatureBit("zstd"), 0x3);
 * ```
 *
 * @param algorithm The algorithm.
 * @returns Its feature bit.
 */
export function compressionFeatureBit(algorithm: CompressionAlgorithm): number {
  const id = COMPRESSION_IDS[algorithm];
  if (id === undefined) throw new TypeError(`Unknown compression algorithm "${algorithm}"`);
  return 1 << (id - 1);
}

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
 * import { type BodyDecompressor, decodeBatch, ProtocolError } from "@npro/network-protocol";
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

const MAX_ID = Number.MAX_SAFE_INTEGER;
/** The default of `maxCompressedEntries`, for both the encoder and the decoder. */
const MAX_COMPRESSED_ENTRIES = 4096;
const MAX_U32 = 0xffff_ffff;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** Byte fields are copied into shared slabs: one allocation per slab, not per message. */
const slab = new Slab();

/**
 * Returns the dispatcher opcode of a message: `"PING"`, `"PONG"`, `"ECHO"`, `"DISCONNECT"`,
 * `"UNKNOWN"`, a custom message's command, the opcode of the message a request carries,
 * `"RESPONSE"`, `"ERROR"` or `"CANCEL"`.
 *
 * @example Opcodes
 * ```ts
 * import { opcodeOf } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.equal(opcodeOf({ type: "ping" }), "PING");
 * assert.equal(opcodeOf({ type: "custom", command: "GET", payload: new Uint8Array() }), "GET");
 * assert.equal(opcodeOf({ type: "request", id: 1, message: { type: "echo", text: "x" } }), "ECHO");
 * ```
 *
 * @param message The message.
 * @returns Its opcode.
 */
export function opcodeOf(message: Message): string {
  switch (message.type) {
    case "ping":
      return "PING";
    case "pong":
      return "PONG";
    case "echo":
      return "ECHO";
    case "disconnect":
      return "DISCONNECT";
    case "custom":
      return message.command;
    case "unknown":
      return "UNKNOWN";
    case "request":
      return opcodeOf(message.message);
    case "response":
      return "RESPONSE";
    case "error":
      return "ERROR";
    case "cancel":
      return "CANCEL";
  }
}

/**
 * Returns the number of bytes {@linkcode encodeMessage} produces for `message`, and validates it.
 *
 * @example Size of a message
 * ```ts
 * import { encodedMessageSize } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.equal(encodedMessageSize({ type: "ping" }), 1);
 * assert.equal(encodedMessageSize({ type: "echo", text: "hi" }), 4);
 * ```
 *
 * @param message The message.
 * @returns Its encoded size in bytes.
 * @throws {TypeError} For an invalid message (a reserved command, nested numbered messages).
 * @throws {RangeError} For an id or code out of range.
 */
export function encodedMessageSize(message: Message): number {
  return sizeOf(message, false);
}

/**
 * Encodes one message: its tag and fields.
 *
 * @example Encode and decode
 * ```ts
 * import { decodeMessage, encodeMessage } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeMessage({ type: "echo", text: "hello" });
 * assert.deepEqual(decodeMessage(bytes), { type: "echo", text: "hello" });
 * ```
 *
 * @param message The message.
 * @returns The encoded bytes.
 * @throws {TypeError} For an invalid message (a reserved command, nested numbered messages).
 * @throws {RangeError} For an id or code out of range.
 */
export function encodeMessage(message: Message): Uint8Array {
  const out = new Uint8Array(sizeOf(message, false));
  writeMessage(out, 0, message);
  return out;
}

/**
 * Decodes one message from exactly `bytes`. An unknown tag decodes to `{ type: "unknown", tag }`
 * (whatever follows the tag is ignored); a malformed body throws.
 *
 * @example Decode a ping
 * ```ts
 * import { decodeMessage } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(decodeMessage(new Uint8Array([0x01])), { type: "ping" });
 * assert.deepEqual(decodeMessage(new Uint8Array([0x7f, 9])), { type: "unknown", tag: 0x7f });
 * ```
 *
 * @param bytes The encoded message.
 * @returns The message. Byte fields are copies, independent of `bytes` (small ones are views
 * of a shared 64 KiB slab).
 * @throws {ProtocolError} `InvalidMessage` for a malformed body.
 */
export function decodeMessage(bytes: Uint8Array): Message {
  const reader = new Reader(bytes, 0, bytes.length);
  const message = readMessage(reader, false);
  reader.expectEnd();
  return message;
}

/**
 * Encodes a batch of messages into one buffer: one entry `flags ‖ length ‖ body` per message.
 *
 * @example Round trip a batch
 * ```ts
 * import { decodeBatch, encodeBatch } from "@npro/network-protocol";
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
    const size = sizeOf(messages[i]!, false);
    sizes[i] = size;
    total += 1 + varintSize(size) + size;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (let i = 0; i < messages.length; i++) {
    const size = sizes[i]!;
    out[offset++] = 0;
    offset = writeVarint(out, offset, size);
    offset = writeMessage(out, offset, messages[i]!);
  }
  return out;
}

/**
 * Returns the size of an uncompressed batch entry whose body (one encoded message) is `size`
 * bytes: the flags byte, the LEB128 length and the body.
 *
 * @param size The encoded message size, from {@linkcode encodedMessageSize}.
 * @returns The entry size in bytes.
 */
export function batchEntrySize(size: number): number {
  return 1 + varintSize(size) + size;
}

/**
 * Writes `messages[start, end)` as uncompressed batch entries into `out` at `offset`, with the
 * sizes the caller already computed (and validated) with {@linkcode encodedMessageSize}: the
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
    offset = writeVarint(out, offset, sizes[i]!);
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
    total += 1 + varintSize(result.body.length) + result.body.length;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (let i = 0; i < messages.length; i++) {
    const body = bodies[i]!;
    out[offset++] = ids[i]!;
    offset = writeVarint(out, offset, body.length);
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
 * import { decodeBatch, encodeBatch } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const messages = decodeBatch(encodeBatch([{ type: "pong" }]));
 * assert.deepEqual(messages, [{ type: "pong" }]);
 * ```
 *
 * @param bytes The encoded batch.
 * @example Cap what the compressed entries of one batch decompress to
 * ```ts
 * import {
 *   CompressionPolicy,
 *   createDecompressor,
 *   decodeBatch,
 *   encodeBatch,
 *   type Message,
 *   ProtocolError,
 * } from "@npro/network-protocol";
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

// ---------------------------------------------------------------------------------------------
// Sizes and writers

function sizeOf(message: Message, nested: boolean): number {
  switch (message.type) {
    case "ping":
    case "pong":
    case "disconnect":
      return 1;
    case "echo":
      return 1 + stringSize(message.text);
    case "custom": {
      if (RESERVED_OPCODES.has(message.command)) {
        throw new TypeError(
          `Cannot use custom command "${message.command}": it is the opcode of a built-in message`,
        );
      }
      if (!(message.payload instanceof Uint8Array)) {
        throw new TypeError("Cannot encode custom message: its payload is not a Uint8Array");
      }
      const p = message.payload.length;
      return 1 + stringSize(message.command) + varintSize(p) + p;
    }
    case "unknown":
      if (!Number.isInteger(message.tag) || message.tag < 0 || message.tag > 255) {
        throw new RangeError(`Cannot encode unknown message tag "${message.tag}": expected 0..255`);
      }
      if (isKnownTag(message.tag)) {
        throw new TypeError(
          `Cannot encode an unknown message with tag "${message.tag}": it is a known tag`,
        );
      }
      return 1;
    case "request": {
      if (nested) throw nestedError("request");
      checkId(message.id);
      let size = 1 + varintSize(message.id);
      const deadline = message.deadline;
      if (deadline !== undefined) {
        if (!Number.isSafeInteger(deadline) || deadline < 0 || deadline >= MAX_ID) {
          throw new RangeError(
            `Cannot encode request deadline "${deadline}": expected an integer of milliseconds`,
          );
        }
        size += varintSize(deadline + 1);
      } else {
        size += 1;
      }
      return size + sizeOf(message.message, true);
    }
    case "response":
      if (nested) throw nestedError("response");
      checkId(message.id);
      return 1 + varintSize(message.id) + sizeOf(message.message, true);
    case "error":
      if (nested) throw nestedError("error");
      checkId(message.id);
      if (!Number.isInteger(message.code) || message.code < 0 || message.code > MAX_U32) {
        throw new RangeError(`Cannot encode error code "${message.code}": expected 0..${MAX_U32}`);
      }
      return 1 + varintSize(message.id) + varintSize(message.code) + stringSize(message.text);
    case "cancel":
      if (nested) throw nestedError("cancel");
      checkId(message.id);
      return 1 + varintSize(message.id);
    default:
      throw new TypeError(
        `Cannot encode message of type "${(message as { type: unknown }).type}"`,
      );
  }
}

function writeMessage(out: Uint8Array, offset: number, message: Message): number {
  switch (message.type) {
    case "ping":
      out[offset] = MessageTag.Ping;
      return offset + 1;
    case "pong":
      out[offset] = MessageTag.Pong;
      return offset + 1;
    case "disconnect":
      out[offset] = MessageTag.Disconnect;
      return offset + 1;
    case "echo":
      out[offset] = MessageTag.Echo;
      return writeString(out, offset + 1, message.text);
    case "custom":
      out[offset] = MessageTag.Custom;
      offset = writeString(out, offset + 1, message.command);
      offset = writeVarint(out, offset, message.payload.length);
      out.set(message.payload, offset);
      return offset + message.payload.length;
    case "unknown":
      out[offset] = message.tag;
      return offset + 1;
    case "request":
      out[offset] = MessageTag.Request;
      offset = writeVarint(out, offset + 1, message.id);
      offset = writeVarint(out, offset, message.deadline === undefined ? 0 : message.deadline + 1);
      return writeMessage(out, offset, message.message);
    case "response":
      out[offset] = MessageTag.Response;
      offset = writeVarint(out, offset + 1, message.id);
      return writeMessage(out, offset, message.message);
    case "error":
      out[offset] = MessageTag.Error;
      offset = writeVarint(out, offset + 1, message.id);
      offset = writeVarint(out, offset, message.code);
      return writeString(out, offset, message.text);
    case "cancel":
      out[offset] = MessageTag.Cancel;
      return writeVarint(out, offset + 1, message.id);
  }
}

function nestedError(type: string): TypeError {
  return new TypeError(`Cannot nest a "${type}" message inside a request or response`);
}

function checkId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 1) {
    throw new RangeError(`Cannot encode request id "${id}": expected 1..${MAX_ID}`);
  }
}

function isKnownTag(tag: number): boolean {
  return (tag >= 0x01 && tag <= 0x05) || (tag >= 0x10 && tag <= 0x13);
}

/** Returns the LEB128 size of a non-negative safe integer. */
function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    out[offset++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[offset++] = value;
  return offset;
}

/** Returns the UTF-8 length of `text` (lone surrogates count as U+FFFD, as TextEncoder does). */
function utf8Length(text: string): number {
  let length = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      length += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        length += 2; // 4 bytes for 2 UTF-16 units
        i++;
      } else {
        length += 2;
      }
    } else {
      length += 2;
    }
  }
  return length;
}

function stringSize(text: string): number {
  if (typeof text !== "string") throw new TypeError("Cannot encode a string field: not a string");
  const length = utf8Length(text);
  return varintSize(length) + length;
}

function writeString(out: Uint8Array, offset: number, text: string): number {
  const length = utf8Length(text);
  offset = writeVarint(out, offset, length);
  if (length === text.length) {
    // ASCII fast path.
    for (let i = 0; i < length; i++) out[offset + i] = text.charCodeAt(i);
  } else {
    encoder.encodeInto(text, out.subarray(offset, offset + length));
  }
  return offset + length;
}

// ---------------------------------------------------------------------------------------------
// Reader

class Reader {
  constructor(
    readonly bytes: Uint8Array,
    public offset: number,
    public end: number,
    readonly owned = false,
  ) {}

  byte(): number {
    if (this.offset >= this.end) throw truncated();
    return this.bytes[this.offset++]!;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) {
          throw new ProtocolError("InvalidMessage", "Message has a non-minimal LEB128 integer");
        }
        if (value > MAX_ID) break;
        return value;
      }
      scale *= 128;
    }
    throw new ProtocolError(
      "InvalidMessage",
      `Message has an integer larger than "${MAX_ID}"`,
    );
  }

  /** Skips `length` bytes and returns where they start. */
  take(length: number): number {
    if (length > this.end - this.offset) throw truncated();
    const start = this.offset;
    this.offset += length;
    return start;
  }

  string(): string {
    const length = this.varint();
    const start = this.take(length);
    if (length <= 32) {
      // Short ASCII strings (opcodes, commands) without a view or a decoder call.
      let text = "";
      let i = start;
      for (; i < start + length; i++) {
        const b = this.bytes[i]!;
        if (b >= 0x80) break;
        text += String.fromCharCode(b);
      }
      if (i === start + length) return text;
    }
    try {
      return decoder.decode(this.bytes.subarray(start, start + length));
    } catch (cause) {
      throw new ProtocolError("InvalidMessage", "Message has a string that is not valid UTF-8", {
        cause,
      });
    }
  }

  expectEnd(): void {
    if (this.offset !== this.end) {
      throw new ProtocolError(
        "InvalidMessage",
        `Message has ${this.end - this.offset} unexpected bytes after its last field`,
      );
    }
  }
}

function truncated(): ProtocolError {
  return new ProtocolError("InvalidMessage", "Message is truncated");
}

function readMessage(reader: Reader, nested: boolean): Message {
  const tag = reader.byte();
  switch (tag) {
    case MessageTag.Ping:
      return { type: "ping" };
    case MessageTag.Pong:
      return { type: "pong" };
    case MessageTag.Disconnect:
      return { type: "disconnect" };
    case MessageTag.Echo:
      return { type: "echo", text: reader.string() };
    case MessageTag.Custom: {
      const command = reader.string();
      if (RESERVED_OPCODES.has(command)) {
        throw new ProtocolError(
          "InvalidMessage",
          `Custom message uses the reserved command "${command}"`,
        );
      }
      const length = reader.varint();
      const start = reader.take(length);
      const payload = reader.owned
        ? reader.bytes.subarray(start, start + length)
        : slab.copy(reader.bytes, start, start + length);
      return { type: "custom", command, payload };
    }
    case MessageTag.Request: {
      if (nested) throw nestedDecodeError("request");
      const id = readId(reader);
      const deadline = reader.varint();
      const message = readMessage(reader, true);
      return deadline === 0
        ? { type: "request", id, message }
        : { type: "request", id, deadline: deadline - 1, message };
    }
    case MessageTag.Response: {
      if (nested) throw nestedDecodeError("response");
      const id = readId(reader);
      return { type: "response", id, message: readMessage(reader, true) };
    }
    case MessageTag.Error: {
      if (nested) throw nestedDecodeError("error");
      const id = readId(reader);
      const code = reader.varint();
      if (code > MAX_U32) {
        throw new ProtocolError("InvalidMessage", `Error message code "${code}" exceeds u32`);
      }
      return { type: "error", id, code, text: reader.string() };
    }
    case MessageTag.Cancel:
      if (nested) throw nestedDecodeError("cancel");
      return { type: "cancel", id: readId(reader) };
    default:
      // Unknown tags: the rest of the entry belongs to a message this version does not know.
      reader.offset = reader.end;
      return { type: "unknown", tag };
  }
}

function readId(reader: Reader): number {
  const id = reader.varint();
  if (id === 0) throw new ProtocolError("InvalidMessage", `Message has request id "0"`);
  return id;
}

function nestedDecodeError(type: string): ProtocolError {
  return new ProtocolError(
    "InvalidMessage",
    `Message nests a "${type}" message inside a request or response`,
  );
}
