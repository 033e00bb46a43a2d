/**
 * The outbound side of a connection: a bounded queue of messages that are encoded together,
 * once per turn of the event loop, into ONE buffer (one plain batch or one sealed DATA record per
 * group of at most 256 KiB) and written with ONE `conn.write`.
 *
 * @module
 */

import { batchEntrySize } from "../core/batch.ts";
import { encodedMessageSize, type Message } from "../core/message.ts";
import { ProtocolError, toProtocolError } from "../errors.ts";
import type { RecordEncoder } from "../secure/record_encoder.ts";

/**
 * What one queued message counts against the outbound bound beyond its encoding: its share of
 * the entry header and of the arrays that hold it. A round figure that keeps a flood of tiny
 * messages bounded too.
 */
const PER_MESSAGE_OVERHEAD = 8;

/**
 * The queue of an outbox with nothing queued: shared, never written to (enqueue replaces it),
 * so an idle connection holds no arrays of its own (idle memory, docs/PERFORMANCE.md).
 */
const NO_MESSAGES: Message[] = [];
const NO_SIZES: number[] = [];

/** Options of an {@linkcode Outbox}. */
export interface OutboxOptions {
  /** Where the bytes go. */
  conn: Pick<Deno.Conn, "write">;
  /** Encodes the queue of a turn into packets: plain batches or sealed records. */
  encoder: RecordEncoder;
  /** The most bytes queued or being written before `enqueue` refuses (with `checkLimit`). */
  maxBytes: number;
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
  readonly #encoder: RecordEncoder;
  readonly #maxBytes: number;
  readonly #host: OutboxHost;
  #queue: Message[] = NO_MESSAGES;
  /** `#sizes[i]` is the encoded size of `#queue[i]`, computed once when it was queued. */
  #sizes: number[] = NO_SIZES;
  /** The exact size of the batch entries of the queue. */
  #entryBytes = 0;
  /** What the queue counts against `maxBytes`. */
  #queuedBytes = 0;
  #writingBytes = 0;
  #scheduled = false;
  #writing = false;
  #writeStartedAt = 0;
  #waiters: (() => void)[] | undefined;
  #closed = false;

  /**
   * Creates an empty outbox.
   *
   * @param options The socket, the encoder, the bound and the callbacks.
   */
  constructor(options: OutboxOptions) {
    this.#conn = options.conn;
    this.#encoder = options.encoder;
    this.#maxBytes = options.maxBytes;
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

  /** The largest encoded message that fits in one packet (see `RecordEncoder`). */
  get maxMessageSize(): number {
    return this.#encoder.maxMessageSize;
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
    if (!this.#encoder.fits(size)) {
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
    if (this.#queue === NO_MESSAGES) {
      this.#queue = [];
      this.#sizes = [];
    }
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
    return new Promise<void>((resolve) => (this.#waiters ??= []).push(resolve));
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
        this.#queue = NO_MESSAGES;
        this.#sizes = NO_SIZES;
        this.#entryBytes = 0;
        this.#queuedBytes = 0;
        await this.write(this.#encoder.encode(messages, sizes, entryBytes));
        this.#writingBytes = 0;
        this.#host.onWritten();
      }
    } catch (error) {
      this.#host.onWriteError(toProtocolError(error));
    } finally {
      this.#writing = false;
      this.#writingBytes = 0;
      const waiters = this.#waiters;
      this.#waiters = undefined;
      if (waiters !== undefined) { for (const waiter of waiters) waiter(); }
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
    this.#queue = NO_MESSAGES;
    this.#sizes = NO_SIZES;
    this.#queuedBytes = 0;
    this.#entryBytes = 0;
    const waiters = this.#waiters;
    this.#waiters = undefined;
    if (waiters !== undefined) { for (const waiter of waiters) waiter(); }
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
