import { compress } from "../../src/compression/compress.ts";
import { createDecompressor } from "../../src/compression/policy.ts";
import {
  type BodyCompressor,
  decodeBatch,
  type DecodeBatchOptions,
  encodeBatch,
} from "../../src/core/batch.ts";
import { COMPRESSION_IDS } from "../../src/core/compression_ids.ts";
import type { Message } from "../../src/core/message.ts";
import { ProtocolError } from "../../src/errors.ts";
import { RECORD_TAG_SIZE, RecordType, SecureChannel } from "../../src/secure/channel.ts";
import { DEFAULT_MAX_KEY_UPDATES_PER_SECOND } from "../../src/secure/channel_options.ts";
import { CipherState } from "../../src/secure/noise/cipher_state.ts";
import type { FuzzTarget } from "../target.ts";

/**
 * What lies behind record authentication: the record-type parsing of `SecureChannel.open` and
 * `decodeBatch` on DATA bodies, fed with mutated plaintext that is sealed with the real key, so
 * that it authenticates. (Mutating sealed records, as the `record` target does, fails
 * authentication almost always, and the parsers behind it only see the seeds.)
 *
 * The input is a sequence of inner plaintexts (`content || type:u8`), each prefixed with a u16
 * big-endian length (the last one takes what is left). Each is sealed by a sending cipher state
 * that mirrors the protocol (it rekeys after an exact KEY_UPDATE) and opened by a receiving
 * `SecureChannel`, as `Connection` does; every DATA body is decoded as a batch twice, without a
 * decompressor and with one that accepts LZ4 and Zstd (at most 64 KiB per body). Invariants:
 *
 * - only `ProtocolError` with a documented code comes out: `InvalidMessage` or
 *   `UnexpectedMessage` from `open` (`AuthenticationFailed` only for an empty inner, whose record
 *   is shorter than the minimum; `PolicyViolation` only for a KEY_UPDATE right after another
 *   one, or beyond the 100 a second the receiver accepts: its clock stands still), and `InvalidMessage`, `PolicyViolation`, `LimitExceeded` or
 *   `DecompressionFailure` from `decodeBatch`;
 * - an authenticated record always opens to exactly its inner plaintext (DATA body, a bare
 *   KEY_UPDATE, or a CLOSE with its code and reason);
 * - no decompressed body exceeds the cap, a batch holds at most 256 messages;
 * - a batch that decodes without the decompressor decodes the same with it, and every decoded
 *   batch re-encodes canonically (encode, decode, encode gives the same bytes).
 *
 * `run` throws the first `ProtocolError` (from `open` or from decoding with the decompressor),
 * or `Truncated` from `finish` when the stream has no CLOSE, so that the fuzzer keeps only
 * complete, valid streams as new seeds.
 */
const counters = {
  /** Inner plaintexts sealed and handed to `open`. */
  records: 0,
  /** Records `open` refused (bad type, bad KEY_UPDATE or CLOSE content, record after CLOSE). */
  channelRejected: 0,
  /** Records that failed authentication: only empty inners, which seal to a too-short record. */
  authFailed: 0,
  /** DATA records opened: their bodies reached `decodeBatch`. */
  dataReachedParser: 0,
  /** KEY_UPDATE records opened. */
  keyUpdates: 0,
  /** KEY_UPDATE records refused: right after another one, or over the rate limit. */
  keyUpdatesRefused: 0,
  /** CLOSE records opened. */
  closes: 0,
  /** Bodies decoded without a decompressor. */
  batchDecoded: 0,
  /** Bodies the batch parser rejected without a decompressor. */
  batchRejected: 0,
  /** Bodies decoded with the decompressor. */
  batchDecodedWithDecompressor: 0,
  /** Bodies the batch parser (or the decompressor) rejected with the decompressor. */
  batchRejectedWithDecompressor: 0,
  /** Of those, `InvalidMessage` (a malformed batch or message). */
  rejectedInvalidMessage: 0,
  /** Of those, `LimitExceeded` (too many messages, a body or a batch decompressing too large). */
  rejectedLimitExceeded: 0,
  /** Of those, `DecompressionFailure` (a corrupt compressed body). */
  rejectedDecompressionFailure: 0,
  /** Of those, `PolicyViolation` (a compression id outside 1 and 2). */
  rejectedPolicyViolation: 0,
  /** Compressed entries the decompressor turned back into message bodies. */
  entriesDecompressed: 0,
  /** Messages decoded, over both decodings. */
  messages: 0,
};

const KEY = new Uint8Array(32).fill(0x5a);
const PEER_KEY = new Uint8Array(32).fill(0xa5);
const EMPTY = new Uint8Array(0);
const MAX_MESSAGES = 256;
const MAX_DECOMPRESSED = 64 * 1024;
const OPEN_CODES = new Set(["InvalidMessage", "UnexpectedMessage"]);
const BATCH_CODES = new Set([
  "InvalidMessage",
  "PolicyViolation",
  "LimitExceeded",
  "DecompressionFailure",
]);

const standard = createDecompressor({ accept: ["lz4", "zstd"], maxSize: MAX_DECOMPRESSED });
const callStandard = standard.decompress.bind(standard) as (
  id: number,
  body: Uint8Array,
  limit?: number,
) => Uint8Array;
/** Bytes the decompressor produced for the batch being decoded. */
let batchDecompressed = 0;
// The standard decompressor, checked: no call returns more than its cap or the limit
// `decodeBatch` passes (what is left of the batch's budget), and no batch decompresses to more
// than MAX_MESSAGES bodies of MAX_DECOMPRESSED bytes.
const decompressor = {
  maxSize: MAX_DECOMPRESSED,
  decompress(id: number, body: Uint8Array, limit?: number): Uint8Array {
    const out = callStandard(id, body, limit);
    const cap = Math.min(MAX_DECOMPRESSED, limit ?? Infinity);
    if (out.length > cap) {
      throw new Error(`Decompressor returned "${out.length}" bytes over its limit "${cap}"`);
    }
    batchDecompressed += out.length;
    if (batchDecompressed > MAX_MESSAGES * MAX_DECOMPRESSED) {
      throw new Error(`One batch decompressed to "${batchDecompressed}" bytes`);
    }
    counters.entriesDecompressed++;
    return out;
  },
};
const PLAIN: DecodeBatchOptions = { ownedInput: true, maxMessages: MAX_MESSAGES };
const WITH_DECOMPRESSOR: DecodeBatchOptions = { ...PLAIN, decompressor };

function compressor(algorithm: "lz4" | "zstd"): BodyCompressor {
  return {
    compress: (body) => ({ id: COMPRESSION_IDS[algorithm], body: compress(body, { algorithm }) }),
  };
}

function frame(inners: Uint8Array[]): Uint8Array {
  const total = inners.reduce((sum, r) => sum + 2 + r.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const record of inners) {
    out[offset] = record.length >>> 8;
    out[offset + 1] = record.length & 0xff;
    out.set(record, offset + 2);
    offset += 2 + record.length;
  }
  return out;
}

function data(batch: Uint8Array): Uint8Array {
  const out = new Uint8Array(batch.length + 1);
  out.set(batch);
  out[batch.length] = RecordType.Data;
  return out;
}

function close(code: number, reason: string): Uint8Array {
  const text = new TextEncoder().encode(reason);
  return new Uint8Array([code >>> 8, code & 0xff, ...text, RecordType.Close]);
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const KEY_UPDATE = new Uint8Array([RecordType.KeyUpdate]);
const text = new TextEncoder().encode('{"level":"info","msg":"served","path":"/api/items"}\n');
const MESSAGES: Message[] = [
  { type: "ping" },
  { type: "echo", text: "hello" },
  { type: "custom", command: "GET", payload: new Uint8Array([1, 2, 3]) },
  { type: "request", id: 7, deadline: 1500, message: { type: "echo", text: "é" } },
  { type: "response", id: 7, message: { type: "custom", command: "R", payload: text } },
  { type: "error", id: 9, code: 1000, text: "no" },
  { type: "cancel", id: 2 ** 40 },
  { type: "disconnect" },
];
const LARGE: Message[] = [
  {
    type: "custom",
    command: "LOG",
    payload: new Uint8Array(text.length * 20).map((_, i) => text[i % text.length]!),
  },
  { type: "echo", text: "abc".repeat(200) },
];

const ZEROS: Message = { type: "custom", command: "Z", payload: new Uint8Array(16 * 1024) };

const target: FuzzTarget = {
  name: "authenticated_record",
  seeds: [
    frame([data(encodeBatch(MESSAGES)), close(0, "bye")]),
    frame([
      data(encodeBatch([{ type: "pong" }])),
      KEY_UPDATE,
      data(encodeBatch(MESSAGES.slice(2))),
      KEY_UPDATE,
      close(0x1001, "done"),
    ]),
    frame([data(encodeBatch(LARGE, { compressor: compressor("lz4") })), close(1, "")]),
    frame([data(encodeBatch(LARGE, { compressor: compressor("zstd") })), close(2, "x")]),
    frame([
      data(encodeBatch([...MESSAGES, ...LARGE], { compressor: compressor("zstd") })),
      close(0, "héllo"),
    ]),
    frame([
      data(new Uint8Array(0)),
      data(encodeBatch([{ type: "unknown", tag: 0x7e }])),
      close(3, ""),
    ]),
    // Eight bodies of 16 KiB that compress to a few dozen bytes each: 128 KiB in one batch.
    frame([
      data(encodeBatch(new Array<Message>(8).fill(ZEROS), { compressor: compressor("lz4") })),
      close(0, ""),
    ]),
    // Rejected: one message too many, a record after CLOSE, a stream without CLOSE, two
    // KEY_UPDATEs in a row, and 101 KEY_UPDATEs (one more than the receiver accepts at once).
    frame([data(EMPTY), KEY_UPDATE, KEY_UPDATE, close(0, "")]),
    frame([
      ...Array.from(
        { length: DEFAULT_MAX_KEY_UPDATES_PER_SECOND + 1 },
        () => [data(EMPTY), KEY_UPDATE],
      )
        .flat(),
      close(0, ""),
    ]),
    frame([data(encodeBatch(new Array<Message>(MAX_MESSAGES + 1).fill({ type: "ping" })))]),
    frame([close(0, "bye"), data(encodeBatch([{ type: "ping" }]))]),
    frame([data(encodeBatch([{ type: "ping" }]))]),
  ],
  counters,
  run(input) {
    const send = new CipherState(KEY);
    // A clock that stands still: the KEY_UPDATE rate bucket never refills, so a run depends on
    // its input alone.
    const channel = new SecureChannel(
      { send: new CipherState(PEER_KEY), receive: new CipherState(KEY) },
      { now: () => 0 },
    );
    let first: ProtocolError | undefined;
    let lastWasKeyUpdate = false;
    let keyUpdatesOpened = 0;
    let offset = 0;
    while (offset < input.length) {
      let length = input.length - offset;
      if (length >= 2) {
        length = Math.min((input[offset]! << 8) | input[offset + 1]!, input.length - offset - 2);
        offset += 2;
      }
      const plain = input.subarray(offset, offset + length);
      offset += length;
      const record = send.encryptWithAd(EMPTY, plain);
      const isKeyUpdate = plain.length === 1 && plain[0] === RecordType.KeyUpdate;
      if (isKeyUpdate) send.rekey();
      counters.records++;

      let opened;
      try {
        opened = channel.open(record);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        if (error.code === "AuthenticationFailed" && record.length < RECORD_TAG_SIZE + 1) {
          counters.authFailed++;
        } else if (OPEN_CODES.has(error.code)) {
          counters.channelRejected++;
        } else if (
          error.code === "PolicyViolation" && isKeyUpdate &&
          (lastWasKeyUpdate || keyUpdatesOpened >= DEFAULT_MAX_KEY_UPDATES_PER_SECOND)
        ) {
          counters.keyUpdatesRefused++;
        } else {
          throw new Error(`open threw "${error.code}" on an authentic record: ${error.message}`);
        }
        if (channel.failure === undefined) throw new Error("open failed but the channel lives");
        first ??= error;
        break; // The channel is dead: everything later is refused.
      }
      lastWasKeyUpdate = opened.type === "key_update";
      const content = plain.subarray(0, plain.length - 1);
      const type = plain[plain.length - 1];
      if (opened.type === "key_update") {
        if (type !== RecordType.KeyUpdate || content.length !== 0) {
          throw new Error("A record opened as KEY_UPDATE that is not one");
        }
        counters.keyUpdates++;
        keyUpdatesOpened++;
        continue;
      }
      if (opened.type === "close") {
        const code = (content[0]! << 8) | content[1]!;
        const reason = utf8.decode(content.subarray(2));
        if (type !== RecordType.Close || opened.code !== code || opened.reason !== reason) {
          throw new Error("A record opened as CLOSE with other content");
        }
        counters.closes++;
        continue;
      }
      if (type !== RecordType.Data || !sameBytes(opened.body, content)) {
        throw new Error("A DATA record opened to other bytes than were sealed");
      }
      counters.dataReachedParser++;
      const plainBatch = decode(opened.body, PLAIN);
      const fullBatch = decode(opened.body, WITH_DECOMPRESSOR);
      if (plainBatch instanceof ProtocolError) counters.batchRejected++;
      else counters.batchDecoded++;
      if (fullBatch instanceof ProtocolError) {
        counters.batchRejectedWithDecompressor++;
        if (!(plainBatch instanceof ProtocolError)) {
          throw new Error("A batch decoded without the decompressor but not with it");
        }
        first ??= fullBatch;
        continue;
      }
      counters.batchDecodedWithDecompressor++;
      if (
        !(plainBatch instanceof ProtocolError) &&
        !sameBytes(encodeBatch(plainBatch), encodeBatch(fullBatch))
      ) {
        throw new Error("A batch decoded differently with and without the decompressor");
      }
    }
    if (first !== undefined) throw first;
    // A stream without an authenticated CLOSE is truncated: `Truncated`, a rejected input.
    channel.finish();
  },
};

/** Decodes a batch; returns the documented error, checks the result re-encodes canonically. */
function decode(body: Uint8Array, options: DecodeBatchOptions): Message[] | ProtocolError {
  let messages: Message[];
  batchDecompressed = 0;
  try {
    messages = decodeBatch(body, options);
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    if (!BATCH_CODES.has(error.code)) {
      throw new Error(`decodeBatch threw undocumented code "${error.code}": ${error.message}`);
    }
    if (options.decompressor !== undefined) {
      counters[`rejected${error.code}` as keyof typeof counters]++;
    }
    return error;
  }
  if (messages.length > MAX_MESSAGES) throw new Error(`Batch of ${messages.length} messages`);
  counters.messages += messages.length;
  const encoded = encodeBatch(messages);
  if (!sameBytes(encodeBatch(decodeBatch(encoded)), encoded)) {
    throw new Error("A decoded batch did not re-encode canonically");
  }
  return messages;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

export default target;
