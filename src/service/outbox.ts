/**
 * The outbound side of a connection: a bounded queue of messages that are encoded together,
 * once per turn of the event loop, into ONE buffer (one plain batch or one sealed DATA record per
 * group of at most 256 KiB) and written with ONE `conn.write`.
 *
 * Bulk traffic is fair (docs/SERVICE.md, "Fragments and streams"): a message larger than the
 * frame size travels as `fragment` messages, and stream data waits in per-stream lanes; each
 * write carries everything small that is queued (control messages, requests, replies) and at
 * most {@linkcode BULK_BYTES_PER_WRITE} of bulk frames, taken round-robin from the fragmented
 * messages and stream lanes. Un-numbered messages keep their order: while one of them is being
 * fragmented, the ones after it wait behind it.
 *
 * @module
 */

import { batchEntrySize } from "../core/batch.ts";
import {
  encodedMessageSize,
  INITIAL_BULK_WINDOW,
  type Message,
  splitEncoding,
} from "../core/message.ts";
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

/**
 * The most bytes of bulk frames (fragments, stream data) in one write: small messages queued
 * behind them wait for at most one such write. One record's worth (RECORD_TARGET).
 */
export const BULK_BYTES_PER_WRITE = 256 * 1024;

/**
 * A message travels whole up to the frame size plus this much: a frame of payload with its
 * message's header (tag, ids, command, lengths). Fragments then carry at most a frame each.
 */
export const FRAME_HEADROOM = 1024;

/** The smallest fragment cut to fit the bulk window left (unless the message's rest is less). */
const MIN_CUT = 4096;

/** A body chunk this small does not end a fragmented message's turn (its head is tiny). */
const SMALL_CHUNK = 1024;

/**
 * The most bytes a receiver holds before granting them back (docs/PROTOCOL.md, "Bulk window"):
 * so a sender that keeps less than its window in flight always gets grants back.
 */
export const GRANT_STEP = 32 * 1024;

/**
 * Bulk in flight while latency-sensitive traffic is around (docs/SERVICE.md, "Fragments and
 * streams"): when a small message (a reply, a request, a PING or PONG; window grants aside) was
 * queued within {@linkcode LATENCY_HOLD_MS}, fragments and stream data go out only while the
 * bulk this side sent and the peer has not granted back stays within this much, however large
 * the peer's window, cut to fit (not below {@linkcode MIN_CUT}). It is the least bound that no
 * receiver following the grant rule can stall: whenever the sender stops for it, more than the
 * grant step is in flight. The rest of the time the whole window is used, so a large window
 * costs small messages nothing and bulk alone runs at full speed.
 */
export const LATENCY_IN_FLIGHT = GRANT_STEP + MIN_CUT;

/** How long after a small message the bulk in flight stays at {@linkcode LATENCY_IN_FLIGHT}. */
export const LATENCY_HOLD_MS = 20;

/**
 * The data of one stream waiting for its turn: `stream_data` and `stream_end` messages in
 * order. Made by the stream; the outbox takes one message per turn.
 */
export class StreamLane {
  /** The messages waiting, from `head` on. */
  messages: Message[] = [];
  /** Their encoded sizes. */
  sizes: number[] = [];
  /** The first message not yet taken. */
  head = 0;
  /** Whether the lane is in the outbox's round robin. */
  active = false;
  /** Whether the stream was reset: what waits is dropped. */
  dropped = false;

  /** Whether nothing waits. */
  get empty(): boolean {
    return this.head >= this.messages.length;
  }
}

/** A message larger than the frame size, sent as fragments. */
class Fragmented {
  readonly id: number;
  readonly total: number;
  readonly head: Uint8Array;
  readonly body: Uint8Array;
  /** Un-numbered: the un-numbered messages after it wait until it is sent. */
  readonly ordered: boolean;
  /** Bytes of the encoding already taken. */
  offset = 0;

  constructor(id: number, message: Message, size: number, ordered: boolean) {
    this.id = id;
    this.total = size;
    const { head, body } = splitEncoding(message, size);
    this.head = head;
    this.body = body;
    this.ordered = ordered;
  }

  get done(): boolean {
    return this.offset >= this.total;
  }
}
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
  /**
   * Messages whose encoding is larger than this travel as fragments (default: never, for a
   * peer that did not negotiate multiplexing).
   */
  frameSize?: number;
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
  #bytesWritten = 0;
  #waiters: (() => void)[] | undefined;
  #closed = false;

  // Bulk: fragmented messages and stream lanes (made with the first; most connections never).
  readonly #frameSize: number;
  /** Messages larger than this are fragmented: the frame size plus FRAME_HEADROOM. */
  readonly #wholeLimit: number;
  /** The round robin of bulk sources with something to send. */
  #ring: (Fragmented | StreamLane)[] | undefined;
  #ringIndex = 0;
  /** What bulk sources and held messages count against `maxBytes`. */
  #bulkBytes = 0;
  /** Fragmented messages in the ring, their totals (bounded: see `#admit`), and the next id. */
  #fragmentBytes = 0;
  /** What the fragmented messages in the ring still count (within `bulkBytes`). */
  #inProgress = 0;
  /**
   * The peer's bulk window: bytes of fragment chunks and stream data this side may still send
   * (docs/PROTOCOL.md, "Bulk window"); the peer's `window` messages add to it.
   */
  #credit = INITIAL_BULK_WINDOW;
  /** The peer's whole window as far as seen: the most credit held (credit + bulk in flight). */
  #peerWindow = INITIAL_BULK_WINDOW;
  /** When a small message was last queued beside bulk (performance.now()). */
  #latencyAt = -Infinity;
  /** Flushes again when the latency hold ends, while only the latency bound holds bulk back. */
  #holdTimer: ReturnType<typeof setTimeout> | undefined;
  #nextFragmentId = 1;
  /** Fragmented messages waiting for room among those in progress. */
  #waiting: Fragmented[] | undefined;
  /** The un-numbered message being fragmented; the un-numbered ones after it wait in `#held`. */
  #orderedBlocker: Fragmented | undefined;
  #held: { message: Message; size: number }[] | undefined;

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
    this.#frameSize = options.frameSize ?? Infinity;
    this.#wholeLimit = this.#frameSize + FRAME_HEADROOM;
  }

  /** Bytes queued or being written. */
  get bytes(): number {
    return this.#queuedBytes + this.#writingBytes + this.#bulkBytes;
  }

  /**
   * What counts against the outbound bound: `bytes` without the rest of the large messages
   * already being sent in fragments, which are bounded on their own (at most twice the largest
   * message: `#admit`). So a connection keeps reading, and small messages keep being accepted,
   * while large replies flow; what waits behind them still counts.
   */
  get pressure(): number {
    return this.#queuedBytes + this.#writingBytes + this.#bulkBytes - this.#inProgress;
  }

  /** Whether a write is in progress (a second one could interleave with it). */
  get writing(): boolean {
    return this.#writing;
  }

  /** Bytes written to the connection so far. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** When the current write last made progress (performance.now()), or 0 when none is running. */
  get writeStartedAt(): number {
    return this.#writeStartedAt;
  }

  /** Whether nothing is queued or being written. */
  get idle(): boolean {
    return this.#queue.length === 0 && !this.#writing && this.#bulkBytes === 0;
  }

  /** Whether fragments or stream data wait to be written (possibly for the peer's window). */
  get hasBulk(): boolean {
    return this.#bulkBytes > 0;
  }

  /** The bulk window left: bytes of fragment chunks and stream data that may be sent now. */
  get credit(): number {
    return this.#credit;
  }

  /**
   * The peer granted more bulk window (a `window` message).
   *
   * @param delta The bytes granted.
   * @returns `false` when the window would pass 2^32 − 1 (a protocol violation).
   */
  grant(delta: number): boolean {
    if (this.#credit + delta > 0xffff_ffff) return false;
    this.#credit += delta;
    if (this.#credit > this.#peerWindow) this.#peerWindow = this.#credit;
    if (this.#ring !== undefined && this.#ring.length > 0) this.#schedule();
    return true;
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
    if (checkLimit && this.pressure + size > this.#maxBytes) {
      throw new ProtocolError(
        "LimitExceeded",
        `More than "${this.#maxBytes}" bytes are waiting to be written: the peer is not reading`,
      );
    }
    if (this.#closed) return;
    if (size > this.#wholeLimit || this.#orderedBlocker !== undefined) {
      this.#enqueueBulk(message, size);
    } else {
      this.#push(message, size);
    }
    if (!isHeartbeat(message)) this.#host.onActivity();
    this.#schedule();
  }

  #push(message: Message, size: number): void {
    // A small message going out beside bulk (window grants aside; not one held behind a
    // fragmented message) keeps the bulk in flight small for a while: its successors (the next
    // PING, the next reply) should not wait behind a window.
    if (this.#ring !== undefined && !isGrant(message)) this.#latencyAt = performance.now();
    if (this.#queue === NO_MESSAGES) {
      this.#queue = [];
      this.#sizes = [];
    }
    this.#queue.push(message);
    this.#sizes.push(size);
    this.#entryBytes += batchEntrySize(size);
    this.#queuedBytes += size + PER_MESSAGE_OVERHEAD;
  }

  #schedule(): void {
    if (!this.#scheduled && !this.#writing) {
      this.#scheduled = true;
      queueMicrotask(() => void this.flushNow().catch(() => {}));
    }
  }

  /** A large message, or an un-numbered one held behind a fragmented one. */
  #enqueueBulk(message: Message, size: number): void {
    const ordered = isOrdered(message);
    if (ordered && this.#orderedBlocker !== undefined) {
      (this.#held ??= []).push({ message, size });
      this.#bulkBytes += size + PER_MESSAGE_OVERHEAD;
      return;
    }
    if (size <= this.#wholeLimit) {
      this.#push(message, size);
      return;
    }
    const fragmented = new Fragmented(this.#nextFragmentId++, message, size, ordered);
    this.#bulkBytes += size + PER_MESSAGE_OVERHEAD;
    if (ordered) this.#orderedBlocker = fragmented;
    (this.#waiting ??= []).push(fragmented);
    this.#admit();
  }

  /**
   * Starts waiting fragmented messages while the totals of those in progress stay within twice
   * the largest message (the bound a receiver holds us to: docs/PROTOCOL.md, "Fragments").
   */
  #admit(): void {
    const waiting = this.#waiting;
    if (waiting === undefined) return;
    const budget = 2 * this.#encoder.maxMessageSize;
    while (waiting.length > 0) {
      const next = waiting[0]!;
      if (this.#fragmentBytes > 0 && this.#fragmentBytes + next.total > budget) break;
      waiting.shift();
      this.#fragmentBytes += next.total;
      this.#inProgress += next.total + PER_MESSAGE_OVERHEAD;
      (this.#ring ??= []).push(next);
    }
  }

  /**
   * Queues a stream's message (`stream_data`, `stream_end`) in its lane: lanes share the bulk
   * part of each write round-robin, one message per turn.
   *
   * @param lane The stream's lane.
   * @param message The message (at most a frame).
   * @param size Its encoded size.
   */
  enqueueStream(lane: StreamLane, message: Message, size: number): void {
    if (this.#closed || lane.dropped) return;
    lane.messages.push(message);
    lane.sizes.push(size);
    this.#bulkBytes += size + PER_MESSAGE_OVERHEAD;
    if (!lane.active) {
      lane.active = true;
      (this.#ring ??= []).push(lane);
    }
    this.#host.onActivity();
    this.#schedule();
  }

  /**
   * Drops what a stream's lane still holds (the stream was reset).
   *
   * @param lane The lane.
   */
  dropStream(lane: StreamLane): void {
    if (lane.dropped) return;
    lane.dropped = true;
    for (let i = lane.head; i < lane.sizes.length; i++) {
      this.#bulkBytes -= lane.sizes[i]! + PER_MESSAGE_OVERHEAD;
    }
    lane.messages = [];
    lane.sizes = [];
    lane.head = 0;
    if (lane.active && this.#ring !== undefined) {
      const i = this.#ring.indexOf(lane);
      if (i >= 0) this.#removeFromRing(i);
      lane.active = false;
    }
  }

  #removeFromRing(i: number): void {
    this.#ring!.splice(i, 1);
    if (i < this.#ringIndex) this.#ringIndex--;
  }

  /**
   * Appends bulk frames, round-robin, to the write being built: at most
   * {@linkcode BULK_BYTES_PER_WRITE}. Returns the entry bytes appended and what they counted.
   */
  #takeBulk(messages: Message[], sizes: number[]): [entryBytes: number, counted: number] {
    const ring = this.#ring!;
    let entryBytes = 0;
    let counted = 0;
    let budget = BULK_BYTES_PER_WRITE;
    // The usable part of the peer's bulk window, spent alongside the credit.
    let allowance = this.#allowance();
    while (budget > 0 && ring.length > 0) {
      if (this.#ringIndex >= ring.length) this.#ringIndex = 0;
      const source = ring[this.#ringIndex]!;
      // The peer's bulk window: a frame goes out, cut to what is left, only when at least a
      // few KiB (or its rest) are left. The peer grants before more than its grant step is
      // held, so the latency bound (a grant step and a least cut) never stalls the outbox.
      if (allowance < this.#needs(source)) break;
      let used = 0;
      if (source instanceof StreamLane) {
        let size = source.sizes[source.head]!;
        let next = source.messages[source.head]!;
        if (next.type === "stream_data") {
          if (next.data.length > allowance) {
            // Cut to the window left, as fragments are: the rest stays first in the lane.
            const rest: Message = {
              type: "stream_data",
              id: next.id,
              data: next.data.subarray(allowance),
            };
            const restSize = encodedMessageSize(rest);
            next = { type: "stream_data", id: next.id, data: next.data.subarray(0, allowance) };
            source.messages[source.head] = rest;
            source.sizes[source.head] = restSize;
            // What the lane counted for the whole less what it counts for the rest.
            const taken = size - restSize;
            size = encodedMessageSize(next);
            messages.push(next);
            sizes.push(size);
            entryBytes += batchEntrySize(size);
            counted += taken;
            this.#credit -= allowance;
            budget -= size;
            this.#ringIndex++;
            allowance = 0;
            continue;
          }
          this.#credit -= next.data.length;
          allowance -= next.data.length;
        }
        messages.push(next);
        sizes.push(size);
        source.head++;
        entryBytes += batchEntrySize(size);
        counted += size + PER_MESSAGE_OVERHEAD;
        used = size;
        if (source.empty) {
          source.messages = [];
          source.sizes = [];
          source.head = 0;
          source.active = false;
          this.#removeFromRing(this.#ringIndex);
          budget -= used;
          continue;
        }
      } else {
        do {
          const chunk = this.#nextChunk(source, allowance);
          const message: Message = {
            type: "fragment",
            id: source.id,
            total: source.total,
            chunk,
          };
          const size = encodedMessageSize(message);
          messages.push(message);
          sizes.push(size);
          entryBytes += batchEntrySize(size);
          counted += chunk.length;
          this.#inProgress -= chunk.length;
          this.#credit -= chunk.length;
          allowance -= chunk.length;
          used += size;
        } while (used < SMALL_CHUNK && !source.done && allowance >= this.#needs(source));
        if (source.done) {
          counted += PER_MESSAGE_OVERHEAD;
          this.#inProgress -= PER_MESSAGE_OVERHEAD;
          this.#removeFromRing(this.#ringIndex);
          this.#fragmentBytes -= source.total;
          this.#completed();
          budget -= used;
          continue;
        }
      }
      budget -= used;
      this.#ringIndex++;
    }
    return [entryBytes, counted];
  }

  /**
   * The bulk window usable now: the credit, less what keeps the bulk in flight within the
   * latency bound while small messages are around (see {@linkcode LATENCY_IN_FLIGHT}).
   */
  #allowance(): number {
    const credit = this.#credit;
    const bound = LATENCY_IN_FLIGHT;
    if (this.#peerWindow <= bound || performance.now() - this.#latencyAt > LATENCY_HOLD_MS) {
      return credit;
    }
    return Math.min(credit, bound - (this.#peerWindow - credit));
  }

  /** The bulk window the next frame of `source` uses (stream ends use none). */
  #needs(source: Fragmented | StreamLane): number {
    if (source instanceof StreamLane) {
      const next = source.messages[source.head]!;
      // Stream data is cut to the window left like a fragment (not below a few KiB).
      return next.type === "stream_data" ? Math.min(MIN_CUT, next.data.length) : 0;
    }
    // A fragment may be cut to the window left, but not below a few KiB (or the rest).
    return Math.min(MIN_CUT, source.total - source.offset);
  }

  /** Whether a bulk frame can go out now. */
  #bulkReady(): boolean {
    const ring = this.#ring;
    if (ring === undefined || ring.length === 0) return false;
    if (this.#ringIndex >= ring.length) this.#ringIndex = 0;
    return this.#allowance() >= this.#needs(ring[this.#ringIndex]!);
  }

  #nextChunk(source: Fragmented, allowance: number): Uint8Array {
    const frame = Math.min(this.#frameSize, allowance);
    const headLength = source.head.length;
    const offset = source.offset;
    let chunk: Uint8Array;
    if (offset < headLength) {
      chunk = source.head.subarray(offset, Math.min(headLength, offset + frame));
    } else {
      const start = offset - headLength;
      chunk = source.body.subarray(start, Math.min(source.body.length, start + frame));
    }
    source.offset += chunk.length;
    return chunk;
  }

  /** A fragmented message is sent: admit the next (what waited behind it is released later). */
  #completed(): void {
    this.#admit();
  }

  /**
   * Once the un-numbered message being fragmented is sent, releases the un-numbered messages
   * that waited behind it, in order, before the next write is built: small ones join the queue,
   * the next large one becomes the one they wait for. Done at the start of a write, so that no
   * fragment of a later message can complete in the same write as its predecessor's last one.
   */
  #releaseHeld(): void {
    const blocker = this.#orderedBlocker;
    if (blocker === undefined || !blocker.done) return;
    this.#orderedBlocker = undefined;
    const held = this.#held;
    this.#held = undefined;
    if (held === undefined) return;
    for (let i = 0; i < held.length; i++) {
      const { message, size } = held[i]!;
      this.#bulkBytes -= size + PER_MESSAGE_OVERHEAD;
      this.#enqueueBulk(message, size);
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
      for (;;) {
        if (this.#orderedBlocker?.done === true) this.#releaseHeld();
        const bulk = this.#bulkReady();
        if (this.#closed || (this.#queue.length === 0 && !bulk)) break;
        let messages = this.#queue;
        let sizes = this.#sizes;
        let entryBytes = this.#entryBytes;
        this.#writingBytes = this.#queuedBytes;
        this.#queue = NO_MESSAGES;
        this.#sizes = NO_SIZES;
        this.#entryBytes = 0;
        this.#queuedBytes = 0;
        // Small messages ahead of bulk frames get records of their own: the peer opens them
        // without first opening (decrypting) the bulk written with them.
        const small = messages.length;
        if (bulk) {
          if (messages === NO_MESSAGES) {
            messages = [];
            sizes = [];
          }
          const [bulkEntries, counted] = this.#takeBulk(messages, sizes);
          entryBytes += bulkEntries;
          this.#bulkBytes -= counted;
          this.#writingBytes += counted;
        }
        await this.write(this.#encoder.encode(messages, sizes, entryBytes, small));
        this.#writingBytes = 0;
        this.#host.onWritten();
      }
    } catch (error) {
      this.#host.onWriteError(toProtocolError(error));
    } finally {
      this.#writing = false;
      this.#writingBytes = 0;
      this.#armHold();
      // Bulk waiting for the peer's window is not written yet: its waiters wait for the grant.
      if (this.idle || this.#closed) {
        const waiters = this.#waiters;
        this.#waiters = undefined;
        if (waiters !== undefined) { for (const waiter of waiters) waiter(); }
      }
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
        const n = await this.#conn.write(offset === 0 ? data : data.subarray(offset));
        offset += n;
        this.#bytesWritten += n;
        this.#writeStartedAt = performance.now();
      }
    } catch (cause) {
      throw new ProtocolError("ConnectionClosed", "Connection failed while writing", { cause });
    } finally {
      this.#writeStartedAt = 0;
    }
  }

  /**
   * While bulk waits only for the latency bound (the peer's window has room), flushes again
   * when the latency hold ends: a peer may hold back its grant until more than the bound
   * arrived (docs/PROTOCOL.md, "Bulk window"), and then nothing else would wake the outbox.
   */
  #armHold(): void {
    const ring = this.#ring;
    if (this.#holdTimer !== undefined || this.#closed || ring === undefined || ring.length === 0) {
      return;
    }
    if (this.#ringIndex >= ring.length) this.#ringIndex = 0;
    const needs = this.#needs(ring[this.#ringIndex]!);
    // Less window than that: the peer's grant wakes the outbox.
    if (this.#credit < needs || this.#allowance() >= needs) return;
    const wait = Math.max(1, Math.ceil(this.#latencyAt + LATENCY_HOLD_MS - performance.now()));
    this.#holdTimer = setTimeout(() => {
      this.#holdTimer = undefined;
      this.#schedule();
    }, wait);
  }

  /** Drops what is queued and wakes everyone waiting for a drain. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    this.#queue = NO_MESSAGES;
    this.#sizes = NO_SIZES;
    this.#queuedBytes = 0;
    this.#entryBytes = 0;
    this.#ring = undefined;
    this.#waiting = undefined;
    this.#held = undefined;
    this.#orderedBlocker = undefined;
    this.#bulkBytes = 0;
    this.#fragmentBytes = 0;
    this.#inProgress = 0;
    const waiters = this.#waiters;
    this.#waiters = undefined;
    if (waiters !== undefined) { for (const waiter of waiters) waiter(); }
  }
}

/**
 * Whether a message keeps its place among the un-numbered messages (their replies keep arrival
 * order): everything but numbered messages and control messages.
 */
function isOrdered(message: Message): boolean {
  switch (message.type) {
    case "echo":
    case "custom":
    case "disconnect":
    case "unknown":
      return true;
    default:
      return false;
  }
}

/**
 * Whether a message is a window grant (`window`, `stream_window`): a control message that flows
 * with bulk itself, so it does not make the bulk in flight small (see `LATENCY_IN_FLIGHT`).
 */
function isGrant(message: Message): boolean {
  return message.type === "window" || message.type === "stream_window";
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
