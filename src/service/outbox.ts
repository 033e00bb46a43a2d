/**
 * The outbound side of a connection: a bounded queue of messages that are encoded together,
 * once per turn of the event loop, into ONE buffer (one plain batch or one sealed DATA record per
 * group of at most 256 KiB) and written with ONE `conn.write`.
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
import { encodePackets, HEADER_SIZE, PROTOCOL_VERSION, writePacketHeader } from "../core/packet.ts";
import { ProtocolError } from "../errors.ts";
import type { SecureChannel } from "../secure/channel.ts";

/**
 * A batch is grouped into records of at most this many bytes: large enough that the per-record
 * costs (a seal, a header, a tag) vanish in bulk transfers, small enough that a record is
 * decrypted while the next one is still on the wire (docs/PERFORMANCE.md, bulk path).
 */
export const RECORD_TARGET = 256 * 1024;
/** A record is this much longer than its batch: the type byte and the 16-byte tag. */
export const RECORD_OVERHEAD = 17;
/**
 * What one queued message counts against the outbound bound beyond its encoding: its share of
 * the entry header and of the arrays that hold it. A round figure that keeps a flood of tiny
 * messages bounded too.
 */
const PER_MESSAGE_OVERHEAD = 8;

/** Options of an {@linkcode Outbox}. */
export interface OutboxOptions {
  /** Where the bytes go. */
  conn: Pick<Deno.Conn, "write">;
  /** Seals records (secure mode), or `null` for plain batches. */
  channel: SecureChannel | null;
  /** The largest packet payload to send (this side's limit, or the peer's `max_message`). */
  sendPayload: number;
  /** The most bytes queued or being written before `enqueue` refuses (with `checkLimit`). */
  maxBytes: number;
  /** Compresses message bodies (negotiated compression). */
  compressor?: BodyCompressor | undefined;
  /** Told about writes and activity. */
  host: OutboxHost;
}

/** What an {@linkcode Outbox} tells its connection. */
export interface OutboxHost {
  /** A write completed: room was made. */
  onWritten(): void;
  /**
   * A write failed: the connection is broken.
   *
   * @param error The failure.
   */
  onWriteError(error: ProtocolError): void;
  /** A message other than a heartbeat was queued (activity, for the idle timeout). */
  onActivity(): void;
}

/**
 * Queues messages and writes everything queued in one turn with one write. Not usable on its
 * own from outside the connection; see `Connection.send` and `Connection.flush`.
 */
export class Outbox {
  readonly #conn: Pick<Deno.Conn, "write">;
  readonly #channel: SecureChannel | null;
  readonly #sendPayload: number;
  readonly #maxBytes: number;
  readonly #compressor: BodyCompressor | undefined;
  readonly #host: OutboxHost;
  #queue: Message[] = [];
  /** `#sizes[i]` is the encoded size of `#queue[i]`, computed once when it was queued. */
  #sizes: number[] = [];
  /** The exact size of the batch entries of the queue. */
  #entryBytes = 0;
  /** What the queue counts against `maxBytes`. */
  #queuedBytes = 0;
  #writingBytes = 0;
  #scheduled = false;
  #writing = false;
  #writeStartedAt = 0;
  #waiters: (() => void)[] = [];
  #closed = false;

  /**
   * Creates an empty outbox.
   *
   * @param options The socket, the channel, the limits and the callbacks.
   */
  constructor(options: OutboxOptions) {
    this.#conn = options.conn;
    this.#channel = options.channel;
    this.#sendPayload = options.sendPayload;
    this.#maxBytes = options.maxBytes;
    this.#compressor = options.compressor;
    this.#host = options.host;
  }

  /** Bytes queued or being written. */
  get bytes(): number {
    return this.#queuedBytes + this.#writingBytes;
  }

  /** Whether a write is in progress (a second one could interleave with it). */
  get writing(): boolean {
    return this.#writing;
  }

  /** When the current write last made progress (performance.now()), or 0 when none is running. */
  get writeStartedAt(): number {
    return this.#writeStartedAt;
  }

  /** Whether nothing is queued or being written. */
  get idle(): boolean {
    return this.#queue.length === 0 && !this.#writing;
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
   * Queues a message; it is written with everything else queued in the same turn.
   *
   * @param message The message.
   * @param checkLimit Refuse it when the outbound bound is reached (application sends).
   * @param knownSize Its encoded size, when the caller computed it already.
   * @throws {ProtocolError} `OversizedPacket` for a message that does not fit in a packet,
   * `LimitExceeded` at the bound (with `checkLimit`).
   */
  enqueue(message: Message, checkLimit: boolean, knownSize?: number): void {
    const size = knownSize ?? encodedMessageSize(message);
    if (!this.fits(size)) {
      throw new ProtocolError(
        "OversizedPacket",
        `Message of "${size}" bytes exceeds the largest message "${this.maxMessageSize}"`,
      );
    }
    if (checkLimit && this.#queuedBytes + this.#writingBytes + size > this.#maxBytes) {
      throw new ProtocolError(
        "LimitExceeded",
        `More than "${this.#maxBytes}" bytes are waiting to be written: the peer is not reading`,
      );
    }
    if (this.#closed) return;
    this.#queue.push(message);
    this.#sizes.push(size);
    this.#entryBytes += batchEntrySize(size);
    this.#queuedBytes += size + PER_MESSAGE_OVERHEAD;
    if (!isHeartbeat(message)) this.#host.onActivity();
    if (!this.#scheduled && !this.#writing) {
      this.#scheduled = true;
      queueMicrotask(() => void this.flushNow().catch(() => {}));
    }
  }

  /**
   * Resolves when everything queued so far has been written (or the outbox closed).
   *
   * @returns A promise of that moment.
   */
  drained(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  /**
   * Encodes and writes what is queued now, and what is queued while that write runs, until the
   * queue is empty. A write failure is reported to the host.
   */
  async flushNow(): Promise<void> {
    this.#scheduled = false;
    if (this.#writing) {
      await this.drained();
      return;
    }
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const messages = this.#queue;
        const sizes = this.#sizes;
        const entryBytes = this.#entryBytes;
        this.#writingBytes = this.#queuedBytes;
        this.#queue = [];
        this.#sizes = [];
        this.#entryBytes = 0;
        this.#queuedBytes = 0;
        await this.write(this.#encode(messages, sizes, entryBytes));
        this.#writingBytes = 0;
        this.#host.onWritten();
      }
    } catch (error) {
      this.#host.onWriteError(
        error instanceof ProtocolError
          ? error
          : new ProtocolError("Internal", `Unexpected failure: ${String(error)}`, {
            cause: error,
          }),
      );
    } finally {
      this.#writing = false;
      this.#writingBytes = 0;
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const waiter of waiters) waiter();
    }
  }

  /**
   * Writes all of `data` (for example the final CLOSE record), tracking progress for the write
   * stall check.
   *
   * @param data The bytes.
   * @throws {ProtocolError} `ConnectionClosed` when the socket fails.
   */
  async write(data: Uint8Array): Promise<void> {
    this.#writeStartedAt = performance.now();
    let offset = 0;
    try {
      while (offset < data.length) {
        offset += await this.#conn.write(offset === 0 ? data : data.subarray(offset));
        this.#writeStartedAt = performance.now();
      }
    } catch (cause) {
      throw new ProtocolError("ConnectionClosed", "Connection failed while writing", { cause });
    } finally {
      this.#writeStartedAt = 0;
    }
  }

  /** Drops what is queued and wakes everyone waiting for a drain. */
  close(): void {
    this.#closed = true;
    this.#queue = [];
    this.#sizes = [];
    this.#queuedBytes = 0;
    this.#entryBytes = 0;
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  /**
   * Encodes queued messages into the bytes of one write: one packet per group of at most
   * RECORD_TARGET bytes (and never more than the send limit), each a plain batch or one sealed
   * DATA record. Entries are written straight into the packet buffer (plaintext) or the record's
   * inner buffer (secure): no intermediate batch copy.
   */
  #encode(messages: Message[], sizes: number[], entryBytes: number): Uint8Array {
    const channel = this.#channel;
    const limit = Math.min(
      RECORD_TARGET,
      this.#sendPayload - (channel === null ? 0 : RECORD_OVERHEAD),
    );
    if (this.#compressor !== undefined) {
      const options = { compressor: this.#compressor };
      const payloads: Uint8Array[] = [];
      for (const [start, end] of groupBySize(sizes, limit)) {
        const batch = encodeBatch(messages.slice(start, end), options);
        if (channel === null) payloads.push(batch);
        else channel.sealData(batch, payloads);
      }
      return this.#packets(payloads);
    }
    const groups: [number, number][] = entryBytes <= limit
      ? [[0, messages.length]]
      : groupBySize(sizes, limit);
    if (channel === null) {
      // Plaintext: header and entries of every group straight into the one output buffer.
      const out = new Uint8Array(entryBytes + HEADER_SIZE * groups.length);
      let offset = 0;
      for (const [start, end] of groups) {
        const payloadStart = offset + HEADER_SIZE;
        const payloadEnd = writeBatchEntries(out, payloadStart, messages, sizes, start, end);
        writePacketHeader(out, offset, payloadEnd - payloadStart);
        offset = payloadEnd;
      }
      return out;
    }
    const payloads: Uint8Array[] = [];
    for (const [start, end] of groups) {
      let size = 0;
      for (let i = start; i < end; i++) size += batchEntrySize(sizes[i]!);
      // The record's inner plaintext: the batch and one spare byte for the record type.
      const inner = new Uint8Array(size + 1);
      writeBatchEntries(inner, 0, messages, sizes, start, end);
      channel.sealDataInner(inner, payloads);
    }
    return this.#packets(payloads);
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
 * Whether a message is a heartbeat: Ping, Pong, and numbered pings and their responses. They
 * keep a connection's liveness, not its activity (the idle timeout ignores them).
 *
 * @param message The message.
 * @returns Whether it is a heartbeat.
 */
export function isHeartbeat(message: Message): boolean {
  switch (message.type) {
    case "ping":
    case "pong":
      return true;
    case "request":
    case "response":
      return message.message.type === "ping" || message.message.type === "pong";
    default:
      return false;
  }
}

/** Splits queued messages into runs whose batch entries add up to at most `limit` bytes. */
function groupBySize(sizes: number[], limit: number): [number, number][] {
  const groups: [number, number][] = [];
  let start = 0;
  let size = 0;
  for (let i = 0; i < sizes.length; i++) {
    const n = batchEntrySize(sizes[i]!);
    if (i > start && size + n > limit) {
      groups.push([start, i]);
      start = i;
      size = 0;
    }
    size += n;
  }
  if (start < sizes.length) groups.push([start, sizes.length]);
  return groups;
}
