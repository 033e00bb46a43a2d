/**
 * The outbound stage of a session: messages in, the bytes of ONE write out (one plain batch or
 * one sealed DATA record per group of at most 256 KiB, each in a packet). The connection's
 * outbox and {@linkcode MessageEncoderStream} both encode through it.
 *
 * @module
 */

import {
  batchEntrySize,
  type BodyCompressor,
  encodeBatch,
  writeBatchEntries,
} from "../core/batch.ts";
import { encodedMessageSize, type Message } from "../core/message.ts";
import {
  encodePackets,
  HEADER_SIZE,
  MAX_PAYLOAD_SIZE,
  PROTOCOL_VERSION,
  writePacketHeader,
} from "../core/packet.ts";
import { Slab } from "../core/slab.ts";
import { ProtocolError } from "../errors.ts";
import type { SecureChannel } from "./channel.ts";

/**
 * A batch is grouped into records of at most this many bytes: large enough that the per-record
 * costs (a seal, a header, a tag) vanish in bulk transfers, small enough that a record is
 * decrypted while the next one is still on the wire (docs/PERFORMANCE.md, bulk path).
 */
export const RECORD_TARGET = 256 * 1024;
/** A record is this much longer than its batch: the type byte and the 16-byte tag. */
export const RECORD_OVERHEAD = 17;

/**
 * Where small outgoing packets are built: views into shared 64 KiB blocks (at most 8 KiB each),
 * because a new `ArrayBuffer` per write costs more than sealing a small record. A block is freed
 * once the writes of all its packets are done.
 */
const OUTPUT = new Slab(64 * 1024);

/** Scratch list for KEY_UPDATE records sealed during one encode (emptied before it returns). */
const KEY_UPDATES: Uint8Array[] = [];

/** A batch of one `disconnect` message: the plaintext farewell. */
const DISCONNECT_BATCH = encodeBatch([{ type: "disconnect" }]);

/** Options of a {@linkcode RecordEncoder}. */
export interface RecordEncoderOptions {
  /** Seals records (secure mode), or `null` for plain batches. */
  channel: SecureChannel | null;
  /**
   * The largest packet payload to send: this side's limit, or the peer's `max_message` plus
   * the record overhead (default 16 MiB).
   */
  maxPayloadSize?: number;
  /** Compresses message bodies (negotiated compression). */
  compressor?: BodyCompressor | undefined;
}

/**
 * Encodes messages into packets: plain batches, or DATA records sealed by a
 * {@linkcode SecureChannel}. Entries are written straight into the packet buffer (plaintext) or
 * the record's inner buffer (secure): no intermediate batch copy.
 *
 * @example Encode two messages into the bytes of one write
 * ```ts
 * import { PacketDecoder } from "@npro/network-protocol/core";
 * import { RecordDecoder, RecordEncoder } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const encoder = new RecordEncoder({ channel: null });
 * const bytes = encoder.encode([{ type: "ping" }, { type: "echo", text: "hi" }]);
 *
 * const decoder = new RecordDecoder({ channel: null });
 * decoder.decode(new PacketDecoder().push(bytes), 0);
 * assert.deepEqual(decoder.take(), { type: "ping" });
 * assert.deepEqual(decoder.take(), { type: "echo", text: "hi" });
 * ```
 */
export class RecordEncoder {
  readonly #channel: SecureChannel | null;
  readonly #sendPayload: number;
  readonly #compressor: BodyCompressor | undefined;
  /** The largest batch of one record: RECORD_TARGET, or less under a small send limit. */
  readonly #groupLimit: number;

  /**
   * Creates an encoder.
   *
   * @param options The channel (or `null`), the send limit and the compressor.
   * @throws {RangeError} For a send limit too small to hold a record.
   */
  constructor(options: RecordEncoderOptions) {
    this.#channel = options.channel;
    this.#sendPayload = options.maxPayloadSize ?? MAX_PAYLOAD_SIZE;
    this.#compressor = options.compressor;
    const overhead = this.#channel === null ? 0 : RECORD_OVERHEAD;
    if (!Number.isInteger(this.#sendPayload) || this.#sendPayload <= overhead + 2) {
      throw new RangeError(
        `Cannot use send limit "${this.#sendPayload}": it must be an integer above "${
          overhead + 2
        }"`,
      );
    }
    this.#groupLimit = Math.min(RECORD_TARGET, this.#sendPayload - overhead);
  }

  /** The channel that seals the records, or `null` in plaintext mode. */
  get channel(): SecureChannel | null {
    return this.#channel;
  }

  /**
   * The largest encoded message that fits in one packet of the send limit, after the record's
   * 17 bytes (secure mode) and the batch entry's flags byte and length varint.
   */
  get maxMessageSize(): number {
    const room = this.#sendPayload - (this.#channel === null ? 0 : RECORD_OVERHEAD);
    // An entry is 1 flags byte, the length as a varint (1 to 5 bytes), then the message.
    let size = room - 2;
    while (size > 0 && batchEntrySize(size) > room) size--;
    return size;
  }

  /**
   * Whether a message of `size` encoded bytes fits in one packet.
   *
   * @param size The encoded size of the message.
   * @returns Whether it fits.
   */
  fits(size: number): boolean {
    return batchEntrySize(size) + (this.#channel === null ? 0 : RECORD_OVERHEAD) <=
      this.#sendPayload;
  }

  /**
   * Encodes messages into the bytes of one write: one packet per group of at most
   * {@linkcode RECORD_TARGET} bytes (and never more than the send limit), each a plain batch or
   * one sealed DATA record (plus a KEY_UPDATE record when a rekey is due).
   *
   * @param messages The messages, in order (at least one).
   * @param sizes Their encoded sizes, when the caller computed them already.
   * @param entryBytes The sum of their batch entry sizes, with `sizes`.
   * @param split When between 0 and the number of messages, the messages before this index
   * are sealed in records of their own, so that the peer opens them without opening what
   * follows (small messages written ahead of bulk frames).
   * @returns The packets, in one buffer.
   * @throws {ProtocolError} `OversizedPacket` for a message that does not fit in a packet (when
   * `sizes` is not given; with `sizes` the caller checked with {@linkcode RecordEncoder.fits}).
   * @throws {TypeError} For an invalid message.
   */
  encode(
    messages: readonly Message[],
    sizes?: readonly number[],
    entryBytes?: number,
    split = 0,
  ): Uint8Array {
    if (sizes === undefined) {
      const measured: number[] = [];
      entryBytes = 0;
      for (let i = 0; i < messages.length; i++) {
        const size = encodedMessageSize(messages[i]!);
        if (!this.fits(size)) {
          throw new ProtocolError(
            "OversizedPacket",
            `Message of "${size}" bytes exceeds the largest message "${this.maxMessageSize}"`,
          );
        }
        measured.push(size);
        entryBytes += batchEntrySize(size);
      }
      sizes = measured;
    } else if (entryBytes === undefined) {
      entryBytes = 0;
      for (let i = 0; i < sizes.length; i++) entryBytes += batchEntrySize(sizes[i]!);
    }
    const channel = this.#channel;
    const limit = this.#groupLimit;
    if (this.#compressor !== undefined) {
      const options = { compressor: this.#compressor };
      const payloads: Uint8Array[] = [];
      for (const [start, end] of groupBySize(sizes, limit, split)) {
        const batch = encodeBatch(messages.slice(start, end), options);
        if (channel === null) payloads.push(batch);
        else channel.sealData(batch, payloads);
      }
      return this.#packets(payloads);
    }
    const groups: [number, number][] = entryBytes <= limit &&
        (split <= 0 || split >= messages.length)
      ? [[0, messages.length]]
      : groupBySize(sizes, limit, split);
    if (channel === null) {
      // Plaintext: header and entries of every group straight into the one output buffer.
      const out = OUTPUT.alloc(entryBytes + HEADER_SIZE * groups.length);
      let offset = 0;
      for (const [start, end] of groups) {
        const payloadStart = offset + HEADER_SIZE;
        const payloadEnd = writeBatchEntries(out, payloadStart, messages, sizes, start, end);
        writePacketHeader(out, offset, payloadEnd - payloadStart);
        offset = payloadEnd;
      }
      return out;
    }
    // Secure: every group becomes `header || entries || type || tag` in the one output buffer,
    // sealed in place: no batch, record or packet copy.
    const out = OUTPUT.alloc(entryBytes + (HEADER_SIZE + RECORD_OVERHEAD) * groups.length);
    let offset = 0;
    let inserts: [number, Uint8Array[]][] | undefined;
    KEY_UPDATES.length = 0;
    for (const [start, end] of groups) {
      const bodyStart = offset + HEADER_SIZE;
      const bodyEnd = writeBatchEntries(out, bodyStart, messages, sizes, start, end);
      const recordEnd = bodyEnd + RECORD_OVERHEAD;
      channel.sealDataInPlace(out.subarray(bodyStart, recordEnd), bodyEnd - bodyStart, KEY_UPDATES);
      writePacketHeader(out, offset, recordEnd - bodyStart);
      if (KEY_UPDATES.length > 0) (inserts ??= []).push([offset, KEY_UPDATES.splice(0)]);
      offset = recordEnd;
    }
    return inserts === undefined ? out : this.#insert(out, inserts);
  }

  /** Puts KEY_UPDATE packets in front of the records they precede (once per rekey). */
  #insert(out: Uint8Array, inserts: [number, Uint8Array[]][]): Uint8Array {
    const pieces: Uint8Array[] = [];
    let from = 0;
    let length = out.length;
    for (const [at, records] of inserts) {
      pieces.push(out.subarray(from, at));
      const packets = this.#packets(records);
      pieces.push(packets);
      length += packets.length;
      from = at;
    }
    pieces.push(out.subarray(from));
    const joined = new Uint8Array(length);
    let offset = 0;
    for (const piece of pieces) {
      joined.set(piece, offset);
      offset += piece.length;
    }
    return joined;
  }

  /**
   * The last packet of a session: an authenticated CLOSE record (secure mode) or a batch of one
   * `disconnect` message (plaintext).
   *
   * @param code The CLOSE code (secure mode).
   * @param reason The CLOSE reason, at most 123 UTF-8 bytes (secure mode).
   * @returns The packet.
   * @throws {ProtocolError} When the channel cannot seal any more (closed or failed).
   * @throws {RangeError} For a code or reason out of range.
   */
  encodeClose(code: number, reason = ""): Uint8Array {
    if (this.#channel === null) return this.#packets([DISCONNECT_BATCH]);
    return this.#packets(this.#channel.sealClose(code, reason));
  }

  #packets(payloads: Uint8Array[]): Uint8Array {
    if (payloads.length === 1) {
      const payload = payloads[0]!;
      const out = new Uint8Array(HEADER_SIZE + payload.length);
      writePacketHeader(out, 0, payload.length);
      out.set(payload, HEADER_SIZE);
      return out;
    }
    return encodePackets(payloads.map((payload) => ({ version: PROTOCOL_VERSION, payload })), {
      maxPayloadSize: this.#sendPayload,
    });
  }
}

/**
 * Splits messages into runs whose batch entries add up to at most `limit` bytes; a run also
 * ends before index `split` (when above 0).
 */
function groupBySize(sizes: readonly number[], limit: number, split = 0): [number, number][] {
  const groups: [number, number][] = [];
  let start = 0;
  let size = 0;
  for (let i = 0; i < sizes.length; i++) {
    const n = batchEntrySize(sizes[i]!);
    if (i > start && (size + n > limit || i === split)) {
      groups.push([start, i]);
      start = i;
      size = 0;
    }
    size += n;
  }
  if (start < sizes.length) groups.push([start, sizes.length]);
  return groups;
}
