/**
 * The streams of a connection (docs/SERVICE.md, "Streams"; the wire format in docs/PROTOCOL.md,
 * "Streams"): opening, accepting and refusing them, credit-based flow control with window
 * auto-tuning, half-close and reset, the stream limits, GOAWAY's effect on streams, and the
 * protocol violations a peer can commit with them. Sans-I/O: it sends through its host (the
 * connection), whose outbox gives every stream its own lane.
 *
 * @module
 */

import {
  encodedMessageSize,
  MAX_STREAM_METADATA,
  type Message,
  StreamResetCode,
} from "../core/message.ts";
import { ProtocolError, StreamError } from "../errors.ts";
import { logger } from "../log.ts";
import { peerEvents } from "../log_budget.ts";
import type { Dispatcher, HandlerContext } from "../protocol/dispatcher.ts";
import type { OpenStreamOptions, Stream, StreamHandler } from "../protocol/stream.ts";
import { StreamLane } from "./outbox.ts";

const log = logger("connection");

/** Stream ids reset by this side whose late messages are ignored (the most recent ones). */
const RECENT_RESETS = 4096;
/** Received chunks smaller than this are copied, so that they do not keep a record alive. */
const COPY_BELOW = 8 * 1024;

/** The stream settings of a connection (`multiplex.*` in the configuration). */
export interface StreamSettings {
  /** The largest `stream_data` chunk, and the fragment size (bytes). */
  frameSize: number;
  /** Streams the peer may have open at once; more are refused (reset code 1). */
  maxInbound: number;
  /** Streams this side may have open at once; more fail `openStream` with `LimitExceeded`. */
  maxOutbound: number;
  /** The receive window a stream starts with (bytes). */
  initialWindow: number;
  /** The largest receive window one stream grows to (bytes). */
  maxWindow: number;
  /** The most receive window all streams of the connection hold together (bytes). */
  connectionWindow: number;
  /** How long an open may wait for the peer's accept (ms). */
  openTimeoutMs: number;
  /**
   * The bulk window this side grants the peer: fragment chunks and stream data in flight on the
   * connection (bytes; at least 128 KiB and two frames).
   */
  bulkWindow: number;
}

/** What a {@linkcode StreamTable} asks of its connection. */
export interface StreamTableHost {
  /**
   * Sends a control message (open, accept, window, reset): ahead of bulk data.
   *
   * @param message The message.
   */
  send(message: Message): void;
  /**
   * Queues a `stream_data` or `stream_end` message in the stream's lane.
   *
   * @param lane The lane.
   * @param message The message.
   * @param size Its encoded size.
   */
  sendData(lane: StreamLane, message: Message, size: number): void;
  /**
   * Drops what a reset stream's lane holds.
   *
   * @param lane The lane.
   */
  dropLane(lane: StreamLane): void;
  /** A promise of room in the outbox when it is too full for more stream data, else undefined. */
  room(): Promise<void> | undefined;
  /**
   * The peer broke a stream rule: the connection fails with `PolicyViolation` (CLOSE 2).
   *
   * @param detail What it did.
   */
  violation(detail: string): void;
  /** A stream ended (a drain may be waiting for the last one). */
  onStreamEnded(): void;
  /** The dispatcher with the stream handlers, if any. */
  readonly dispatcher: Dispatcher | undefined;
  /**
   * The context of a stream handler.
   *
   * @param signal Aborted when the stream ends with an error.
   */
  context(signal: AbortSignal): HandlerContext;
}

/** The encoded size of a `stream_data` message (tag, id, length, bytes). */
function dataSize(id: number, length: number): number {
  return 1 + varintLength(id) + varintLength(length) + length;
}

function varintLength(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

interface Opener {
  resolve(stream: Stream): void;
  reject(error: ProtocolError): void;
  timer: ReturnType<typeof setTimeout>;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** One stream: its two directions, its windows, its readable and writable sides. */
class StreamImpl implements Stream {
  readonly id: number;
  readonly command: string;
  readonly metadata: Uint8Array;
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /** Opened by this side. */
  readonly local: boolean;
  readonly lane = new StreamLane();
  readonly #table: StreamTable;
  readonly #closed: Promise<ProtocolError | undefined>;
  #resolveClosed!: (error: ProtocolError | undefined) => void;

  /** Waiting for the peer's accept (local streams). */
  opener: Opener | undefined;
  #localEnded = false;
  #remoteEnded = false;
  #error: ProtocolError | undefined;
  #finished = false;
  #abort: AbortController | undefined;

  // Receiving: credit + buffered + unacked === window.
  window: number;
  #credit: number;
  #buffered = 0;
  #unacked = 0;
  #chunks: Uint8Array[] = [];
  #chunkHead = 0;
  #discard = false;
  #readController!: ReadableStreamDefaultController<Uint8Array>;
  #pullWaiter: (() => void) | undefined;

  // Sending.
  #sendCredit = 0;
  #writeController!: WritableStreamDefaultController;
  #creditWaiter: (() => void) | undefined;

  constructor(
    table: StreamTable,
    id: number,
    command: string,
    metadata: Uint8Array,
    local: boolean,
    window: number,
  ) {
    this.#table = table;
    this.id = id;
    this.command = command;
    this.metadata = metadata;
    this.local = local;
    this.window = window;
    this.#credit = window;
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#readController = controller;
      },
      pull: (controller) => this.#pull(controller),
      cancel: () => this.#cancelRead(),
    }, { highWaterMark: 0 });
    this.writable = new WritableStream<Uint8Array>({
      start: (controller) => {
        this.#writeController = controller;
      },
      write: (chunk) => this.#write(chunk),
      close: () => this.#end(),
      abort: () => this.reset(StreamResetCode.Cancel),
    });
  }

  /** Whether the stream is over (both sides ended, or reset). */
  get finished(): boolean {
    return this.#finished;
  }

  closed(): Promise<ProtocolError | undefined> {
    return this.#closed;
  }

  async closeWrite(): Promise<void> {
    if (this.#localEnded) return;
    if (this.#error !== undefined) throw this.#error;
    if (this.writable.locked) {
      throw new TypeError(
        `Cannot close the writable side of stream ${this.id}: a writer holds it (close the writer)`,
      );
    }
    await this.writable.close();
  }

  reset(code: number = StreamResetCode.Cancel): void {
    if (this.#finished) return;
    if (!Number.isInteger(code) || code < 0 || code > 0xffff_ffff) {
      throw new RangeError(`Cannot reset stream ${this.id} with code "${code}": expected a u32`);
    }
    this.#table.sendReset(this.id, code);
    this.teardown(
      new StreamError(
        code,
        false,
        `Stream ${this.id} "${this.command}" was reset with code ${code}`,
      ),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // An early exit from the scope abandons a stream that did not finish both ways.
    if (!this.#finished) this.reset(StreamResetCode.Cancel);
    await this.#closed;
  }

  /** The handler's signal (made when a handler runs). */
  handlerSignal(): AbortSignal {
    return (this.#abort ??= new AbortController()).signal;
  }

  // ---- receiving

  #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> | void {
    if (this.#discard) return; // cancelled: the stream no longer reads
    if (this.#chunkHead < this.#chunks.length) {
      const chunk = this.#chunks[this.#chunkHead]!;
      this.#chunks[this.#chunkHead++] = EMPTY;
      if (this.#chunkHead === this.#chunks.length) {
        this.#chunks = [];
        this.#chunkHead = 0;
      }
      controller.enqueue(chunk);
      this.#buffered -= chunk.length;
      this.#unacked += chunk.length;
      this.#maybeGrant();
      return;
    }
    if (this.#error !== undefined) {
      controller.error(this.#error);
      return;
    }
    if (this.#remoteEnded) {
      controller.close();
      this.#maybeFinish();
      return;
    }
    return new Promise<void>((resolve) => (this.#pullWaiter = resolve)).then(() =>
      this.#pull(controller)
    );
  }

  #cancelRead(): void {
    // Discard from now on, and give the window back: the peer is never stalled by it.
    this.#discard = true;
    this.#unacked += this.#buffered;
    this.#buffered = 0;
    this.#chunks = [];
    this.#chunkHead = 0;
    this.#maybeGrant();
    this.#maybeFinish();
  }

  /** A `stream_data` message for this stream. */
  onData(data: Uint8Array): void {
    if (this.#remoteEnded) {
      this.#table.violation(`Peer sent data on stream ${this.id} after ending it`);
      return;
    }
    if (this.opener !== undefined) {
      this.#table.violation(`Peer sent data on stream ${this.id} before accepting it`);
      return;
    }
    if (data.length > this.#credit) {
      this.#table.violation(
        `Peer sent "${data.length}" bytes on stream ${this.id} with a window of "${this.#credit}"`,
      );
      return;
    }
    this.#credit -= data.length;
    if (this.#finished) return; // reset locally: ignored
    if (this.#discard) {
      this.#unacked += data.length;
      this.#maybeGrant();
      return;
    }
    this.#chunks.push(data.length < COPY_BELOW ? data.slice() : data);
    this.#buffered += data.length;
    this.#wakeReader();
  }

  /** A `stream_end` message for this stream. */
  onEnd(): void {
    if (this.#remoteEnded) {
      this.#table.violation(`Peer ended stream ${this.id} twice`);
      return;
    }
    if (this.opener !== undefined) {
      this.#table.violation(`Peer ended stream ${this.id} before accepting it`);
      return;
    }
    this.#remoteEnded = true;
    this.#wakeReader();
    this.#maybeFinish();
  }

  /** A `stream_window` message for this stream. */
  onWindow(delta: number): void {
    if (this.#sendCredit + delta > 0xffff_ffff) {
      this.#table.violation(`Peer granted stream ${this.id} a window beyond 4 GiB`);
      return;
    }
    this.#sendCredit += delta;
    this.#wakeWriter();
  }

  /** The opener's window, for a stream the peer opened. */
  setPeerWindow(window: number): void {
    this.#sendCredit = window;
  }

  /** A `stream_accept` message: the peer's window; data may flow. */
  onAccept(window: number): void {
    const opener = this.opener!;
    this.opener = undefined;
    this.#table.releaseOpener(opener);
    this.#sendCredit = window;
    opener.resolve(this);
  }

  #wakeReader(): void {
    const waiter = this.#pullWaiter;
    this.#pullWaiter = undefined;
    waiter?.();
  }

  #wakeWriter(): void {
    const waiter = this.#creditWaiter;
    this.#creditWaiter = undefined;
    waiter?.();
  }

  /** Grants the window back once half of it was read; grows it when the reader keeps up. */
  #maybeGrant(): void {
    if (this.#remoteEnded || this.#finished || this.#unacked < this.window / 2) return;
    let delta = this.#unacked;
    this.#unacked = 0;
    if (this.#buffered === 0 && !this.#discard) {
      // The reader has read everything: the window, not the reader, limits the stream.
      const growth = this.#table.grow(this.window);
      this.window += growth;
      delta += growth;
    }
    this.#credit += delta;
    this.#table.send({ type: "stream_window", id: this.id, delta });
  }

  // ---- sending

  async #write(chunk: Uint8Array): Promise<void> {
    if (!(chunk instanceof Uint8Array)) {
      throw new TypeError(`Cannot write to stream ${this.id}: the chunk is not a Uint8Array`);
    }
    const frame = this.#table.settings.frameSize;
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#error !== undefined) throw this.#error;
      if (this.#sendCredit <= 0) {
        await new Promise<void>((resolve) => (this.#creditWaiter = resolve));
        continue;
      }
      const room = this.#table.room();
      if (room !== undefined) {
        await room;
        continue;
      }
      const n = Math.min(chunk.length - offset, this.#sendCredit, frame);
      const data = chunk.subarray(offset, offset + n);
      this.#table.sendData(
        this.lane,
        { type: "stream_data", id: this.id, data },
        dataSize(this.id, n),
      );
      this.#sendCredit -= n;
      offset += n;
    }
  }

  #end(): void {
    if (this.#error !== undefined) throw this.#error;
    if (this.#localEnded) return;
    this.#localEnded = true;
    const end: Message = { type: "stream_end", id: this.id };
    this.#table.sendData(this.lane, end, encodedMessageSize(end));
    this.#maybeFinish();
  }

  /** Ends this side if a writer left it open (a handler that returned). */
  endQuietly(): void {
    if (this.#localEnded || this.#finished) return;
    if (!this.writable.locked) {
      this.writable.close().catch(() => {});
      return;
    }
    try {
      this.#end();
    } catch {
      // Reset meanwhile.
    }
  }

  /** Discards the rest of the peer's data if nobody reads it (a handler that returned). */
  discardQuietly(): void {
    if (this.#finished || this.#discard || this.#remoteEnded) return;
    if (!this.readable.locked) this.readable.cancel().catch(() => {});
  }

  // ---- ending

  #maybeFinish(): void {
    if (this.#localEnded && this.#remoteEnded && this.opener === undefined) {
      this.#finish(undefined);
    }
  }

  /** Ends the stream with an error: a reset (either side) or the connection's end. */
  teardown(error: ProtocolError): void {
    if (this.#finished) return;
    this.#error = error;
    this.#table.dropLane(this.lane);
    this.#chunks = [];
    this.#chunkHead = 0;
    this.#buffered = 0;
    try {
      this.#readController.error(error);
    } catch {
      // Already closed.
    }
    try {
      this.#writeController.error(error);
    } catch {
      // Already closed.
    }
    this.#wakeReader();
    this.#wakeWriter();
    const opener = this.opener;
    if (opener !== undefined) {
      this.opener = undefined;
      this.#table.releaseOpener(opener);
      opener.reject(error);
    }
    this.#abort?.abort(error);
    this.#finish(error);
  }

  #finish(error: ProtocolError | undefined): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#table.remove(this);
    this.#resolveClosed(error);
  }
}

const EMPTY = new Uint8Array(0);

/**
 * The streams of one connection.
 *
 * @example Open a stream over an in-memory host and accept it by hand
 * ```ts
 * import { StreamTable } from "./streams.ts";
 * import type { Message } from "../core/message.ts";
 * import assert from "node:assert/strict";
 *
 * const sent: Message[] = [];
 * const table = new StreamTable({
 *   send: (message) => sent.push(message),
 *   sendData: (_lane, message) => sent.push(message),
 *   dropLane: () => {},
 *   room: () => undefined,
 *   violation: (detail) => { throw new Error(detail); },
 *   onStreamEnded: () => {},
 *   dispatcher: undefined,
 *   context: (signal) => ({ signal }),
 * }, {
 *   frameSize: 65536,
 *   maxInbound: 10,
 *   maxOutbound: 10,
 *   initialWindow: 262144,
 *   maxWindow: 1 << 24,
 *   connectionWindow: 1 << 26,
 *   openTimeoutMs: 1000,
 *   bulkWindow: 131072,
 * }, "client");
 * const opening = table.open("UPLOAD", {});
 * assert.deepEqual(sent[0], {
 *   type: "stream_open",
 *   id: 1,
 *   window: 262144,
 *   command: "UPLOAD",
 *   metadata: new Uint8Array(0),
 * });
 * table.onMessage({ type: "stream_accept", id: 1, window: 1000 });
 * const stream = await opening;
 * stream.reset(1000);
 * assert.deepEqual(sent[1], { type: "stream_reset", id: 1, code: 1000 });
 * assert.equal((await stream.closed())?.name, "StreamError");
 * table.close(new Error("done") as never);
 * ```
 */
export class StreamTable {
  readonly settings: StreamSettings;
  readonly #host: StreamTableHost;
  readonly #streams = new Map<number, StreamImpl>();
  /** Parity of the ids the peer opens (client: odd ids; server: even ids). */
  readonly #remoteParity: number;
  #nextLocal: number;
  #lastRemote = 0;
  #inbound = 0;
  #outbound = 0;
  #windowTotal = 0;
  readonly #recentResets = new Set<number>();
  /** The peer's GOAWAY: its `lastStream`. */
  #goAwayReceived: number | undefined;
  /** This side sent GOAWAY: streams the peer opens from now on are not processed. */
  #goAwaySent = false;
  #closedBy: ProtocolError | undefined;
  #opened = 0;

  /**
   * Creates the table of one connection.
   *
   * @param host The connection.
   * @param settings Limits and windows.
   * @param role Which side this is: the client opens odd ids, the server even ones.
   */
  constructor(host: StreamTableHost, settings: StreamSettings, role: "client" | "server") {
    this.#host = host;
    this.settings = settings;
    this.#nextLocal = role === "client" ? 1 : 2;
    this.#remoteParity = role === "client" ? 0 : 1;
  }

  /** Streams opened so far, by either side (refused ones not included). */
  get opened(): number {
    return this.#opened;
  }

  /** Streams open now (both directions, opening ones included). */
  get size(): number {
    return this.#streams.size;
  }

  /** The highest stream id the peer opened. */
  get lastRemote(): number {
    return this.#lastRemote;
  }

  /** The receive windows of all open streams, added up (bytes). */
  get windowTotal(): number {
    return this.#windowTotal;
  }

  /**
   * Opens a stream: resolves once the peer accepts it.
   *
   * @param command Which stream handler the peer runs.
   * @param options Metadata, a signal and the open time limit.
   * @returns The stream.
   */
  open(command: string, options: OpenStreamOptions): Promise<Stream> {
    try {
      if (typeof command !== "string" || command.length === 0) {
        throw new TypeError("Cannot open a stream: the command must be a non-empty string");
      }
      const metadata = options.metadata ?? EMPTY;
      if (!(metadata instanceof Uint8Array)) {
        throw new TypeError("Cannot open a stream: its metadata is not a Uint8Array");
      }
      if (metadata.length > MAX_STREAM_METADATA) {
        throw new RangeError(
          `Cannot open a stream with "${metadata.length}" bytes of metadata: the limit is "${MAX_STREAM_METADATA}"`,
        );
      }
      const timeoutMs = options.timeoutMs ?? this.settings.openTimeoutMs;
      if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
        throw new RangeError(`Cannot use stream open timeout "${timeoutMs}": it must be positive`);
      }
      if (this.#closedBy !== undefined) {
        throw new ProtocolError("ConnectionClosed", "Connection is closed", {
          cause: this.#closedBy,
        });
      }
      if (this.#goAwayReceived !== undefined) {
        throw new ProtocolError(
          "NotProcessed",
          `Cannot open stream "${command}": the peer is draining (GOAWAY) and takes no new streams`,
        );
      }
      const signal = options.signal;
      if (signal?.aborted) {
        throw new ProtocolError("Cancelled", `Opening stream "${command}" was cancelled`, {
          cause: signal.reason,
        });
      }
      if (this.#outbound >= this.settings.maxOutbound) {
        throw new ProtocolError(
          "LimitExceeded",
          `Cannot open stream "${command}": "${this.settings.maxOutbound}" streams are open, the limit`,
        );
      }
      const id = this.#nextLocal;
      this.#nextLocal += 2;
      const window = this.settings.initialWindow;
      const stream = new StreamImpl(this, id, command, metadata, true, window);
      this.#streams.set(id, stream);
      this.#opened++;
      this.#outbound++;
      this.#windowTotal += window;
      return new Promise<Stream>((resolve, reject) => {
        const opener: Opener = {
          resolve,
          reject,
          timer: setTimeout(() => {
            if (stream.opener !== opener) return;
            this.sendReset(id, StreamResetCode.Timeout);
            stream.teardown(
              new StreamError(
                StreamResetCode.Timeout,
                false,
                `Peer did not accept stream ${id} "${command}" within ${timeoutMs} ms`,
              ),
            );
          }, timeoutMs),
          signal,
          onAbort: undefined,
        };
        if (signal !== undefined) {
          opener.onAbort = () => {
            if (stream.opener !== opener) return;
            this.sendReset(id, StreamResetCode.Cancel);
            stream.teardown(
              new StreamError(StreamResetCode.Cancel, false, `Opening stream ${id} was cancelled`, {
                cause: signal.reason,
              }),
            );
          };
          signal.addEventListener("abort", opener.onAbort, { once: true });
        }
        stream.opener = opener;
        this.#host.send({ type: "stream_open", id, window, command, metadata });
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Handles a stream message from the peer.
   *
   * @param message A `stream_open`, `stream_accept`, `stream_data`, `stream_end`,
   * `stream_window` or `stream_reset` message.
   */
  onMessage(message: Message): void {
    if (this.#closedBy !== undefined) return;
    switch (message.type) {
      case "stream_open":
        this.#onOpen(message);
        return;
      case "stream_accept": {
        const stream = this.#streams.get(message.id);
        if (stream?.opener !== undefined) stream.onAccept(message.window);
        else this.#unknown(message.id, "accepted");
        return;
      }
      case "stream_data": {
        const stream = this.#streams.get(message.id);
        if (stream !== undefined) stream.onData(message.data);
        else this.#unknown(message.id, "sent data on");
        return;
      }
      case "stream_end": {
        const stream = this.#streams.get(message.id);
        if (stream !== undefined) stream.onEnd();
        else this.#unknown(message.id, "ended");
        return;
      }
      case "stream_window":
        // Grants may cross a reset or the end of a stream: ignored then.
        this.#streams.get(message.id)?.onWindow(message.delta);
        return;
      case "stream_reset": {
        const stream = this.#streams.get(message.id);
        if (stream === undefined) return; // crossed our own reset, or the stream ended
        stream.teardown(
          new StreamError(
            message.code,
            true,
            stream.opener !== undefined
              ? openRefusal(stream, message.code)
              : `Peer reset stream ${stream.id} "${stream.command}" with code ${message.code}`,
          ),
        );
        return;
      }
    }
  }

  #onOpen(message: Extract<Message, { type: "stream_open" }>): void {
    const { id } = message;
    if (id % 2 !== this.#remoteParity || id <= this.#lastRemote) {
      this.violation(`Peer opened stream ${id}: not a new id of its parity`);
      return;
    }
    this.#lastRemote = id;
    if (this.#goAwaySent) {
      this.sendReset(id, StreamResetCode.NotProcessed);
      return;
    }
    if (this.#inbound >= this.settings.maxInbound) {
      this.sendReset(id, StreamResetCode.Refused);
      return;
    }
    const handler = this.#host.dispatcher?.streamHandler(message.command);
    if (handler === undefined) {
      this.sendReset(id, StreamResetCode.UnknownCommand);
      return;
    }
    const window = this.settings.initialWindow;
    const stream = new StreamImpl(this, id, message.command, message.metadata, false, window);
    stream.setPeerWindow(message.window);
    this.#streams.set(id, stream);
    this.#opened++;
    this.#inbound++;
    this.#windowTotal += window;
    this.#host.send({ type: "stream_accept", id, window });
    this.#run(stream, handler);
  }

  #run(stream: StreamImpl, handler: StreamHandler): void {
    let result: void | Promise<void>;
    const context = this.#host.context(stream.handlerSignal());
    try {
      result = handler(stream, context);
    } catch (error) {
      this.#handlerFailed(stream, error);
      return;
    }
    Promise.resolve(result).then(
      () => {
        stream.endQuietly();
        stream.discardQuietly();
      },
      (error) => this.#handlerFailed(stream, error),
    );
  }

  #handlerFailed(stream: StreamImpl, error: unknown): void {
    if (stream.finished) return;
    if (peerEvents.allow("stream handler failure")) {
      log.warn("Stream handler for {command} failed: {error}", { command: stream.command, error });
    }
    stream.reset(StreamResetCode.HandlerFailed);
  }

  /** A message for a stream that is not open: ignored after our own reset, else a violation. */
  #unknown(id: number, what: string): void {
    if (this.#recentResets.has(id)) return;
    this.violation(`Peer ${what} stream ${id}, which is not open`);
  }

  /**
   * The peer sent GOAWAY: streams this side opened beyond `lastStream` were not processed, and
   * no stream may be opened any more.
   *
   * @param lastStream The highest id of ours the peer saw.
   */
  goAwayReceived(lastStream: number): void {
    this.#goAwayReceived = lastStream;
    for (const stream of [...this.#streams.values()]) {
      if (stream.local && stream.id > lastStream) {
        this.#remember(stream.id);
        stream.teardown(
          new StreamError(
            StreamResetCode.NotProcessed,
            true,
            `Peer is draining (GOAWAY) and did not process stream ${stream.id} "${stream.command}"`,
          ),
        );
      }
    }
  }

  /**
   * This side sends GOAWAY: streams the peer opens from now on are refused as not processed.
   *
   * @returns The highest stream id the peer opened so far (its `lastStream`).
   */
  goAwaySent(): number {
    this.#goAwaySent = true;
    return this.#lastRemote;
  }

  /**
   * Ends every stream: the connection closed.
   *
   * @param error Why.
   */
  close(error: ProtocolError): void {
    if (this.#closedBy !== undefined) return;
    this.#closedBy = error;
    const ended = new ProtocolError(
      "ConnectionClosed",
      "Connection closed before the stream ended",
      {
        cause: error,
      },
    );
    for (const stream of [...this.#streams.values()]) stream.teardown(ended);
  }

  // ---- for the streams

  /** Sends a reset and remembers the id, whose late messages are then ignored. */
  sendReset(id: number, code: number): void {
    this.#remember(id);
    if (this.#closedBy === undefined) this.#host.send({ type: "stream_reset", id, code });
  }

  #remember(id: number): void {
    this.#recentResets.add(id);
    if (this.#recentResets.size > RECENT_RESETS) {
      this.#recentResets.delete(this.#recentResets.values().next().value!);
    }
  }

  /** How much a stream's window of `window` bytes may grow now (0 at a limit). */
  grow(window: number): number {
    const growth = Math.max(
      0,
      Math.min(
        window,
        this.settings.maxWindow - window,
        this.settings.connectionWindow - this.#windowTotal,
      ),
    );
    this.#windowTotal += growth;
    return growth;
  }

  send(message: Message): void {
    if (this.#closedBy === undefined) this.#host.send(message);
  }

  sendData(lane: StreamLane, message: Message, size: number): void {
    this.#host.sendData(lane, message, size);
  }

  dropLane(lane: StreamLane): void {
    this.#host.dropLane(lane);
  }

  room(): Promise<void> | undefined {
    return this.#host.room();
  }

  violation(detail: string): void {
    this.#host.violation(detail);
  }

  releaseOpener(opener: Opener): void {
    clearTimeout(opener.timer);
    if (opener.onAbort !== undefined) opener.signal?.removeEventListener("abort", opener.onAbort);
  }

  remove(stream: StreamImpl): void {
    if (this.#streams.get(stream.id) !== stream) return;
    this.#streams.delete(stream.id);
    if (stream.local) this.#outbound--;
    else this.#inbound--;
    this.#windowTotal -= stream.window;
    this.#host.onStreamEnded();
  }
}

function openRefusal(stream: StreamImpl, code: number): string {
  const name = `stream ${stream.id} "${stream.command}"`;
  switch (code) {
    case StreamResetCode.Refused:
      return `Peer refused ${name}: its limit of concurrent streams is reached`;
    case StreamResetCode.UnknownCommand:
      return `Peer refused ${name}: it has no stream handler for the command`;
    case StreamResetCode.NotProcessed:
      return `Peer refused ${name}: it is draining (GOAWAY) and did not process it`;
    default:
      return `Peer refused ${name} with code ${code}`;
  }
}
