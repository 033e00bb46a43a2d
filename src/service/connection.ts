/**
 * A live protocol connection over a `Deno.Conn` after its handshake: the pipeline of
 * docs/PROTOCOL.md and DESIGN.md section 4, with backpressure, ordered replies, numbered
 * requests, heartbeats and graceful close.
 *
 * Reading: {@linkcode FrameReader} reads batches of packets; each packet is opened (secure mode)
 * and decoded into messages synchronously, then messages are handled. Writing: messages queued
 * during one turn are encoded into one batch per record and written with ONE `conn.write`.
 *
 * @module
 */

import {
  batchEntrySize,
  type BodyCompressor,
  type BodyDecompressor,
  decodeBatch,
  type DecodeBatchOptions,
  encodeBatch,
  encodedMessageSize,
  ErrorCodes,
  type Message,
  opcodeOf,
  writeBatchEntries,
} from "../core/message.ts";
import { encodePackets, HEADER_SIZE, MAX_PAYLOAD_SIZE, type Packet } from "../core/packet.ts";
import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import {
  type Dispatcher,
  type HandlerContext,
  logHandlerFailure,
  OWNED_CONTEXT,
} from "../protocol/dispatcher.ts";
import { CloseCode, MAX_RECORD_NONCE, type SecureChannel } from "../secure/channel.ts";
import type { FrameReader } from "./frame_reader.ts";
import { peerEvents } from "../log_budget.ts";

const log = logger("connection");

/** What both sides learned in the handshake. */
export interface SessionInfo {
  /** The encrypted record channel, or `null` in plaintext mode. */
  channel: SecureChannel | null;
  /** The Noise pattern that ran, or `"plaintext"`. */
  pattern: string;
  /** The negotiated feature bitmap (0x1 lz4, 0x2 zstd). */
  features: number;
  /** The peer's static public key, when the pattern has one. */
  remoteStaticKey?: Uint8Array;
  /** The Noise handshake hash (equal on both sides unless tampered with). */
  handshakeHash?: Uint8Array;
  /** Whether the peer's key was checked against configured trust. */
  pinned: boolean;
  /**
   * The peer's `max_message` hello parameter: the largest batch it accepts in one record
   * (secure mode) or packet (plaintext). The connection never sends more.
   */
  remoteMaxMessageSize?: number;
}

/** Options of a {@linkcode Connection}. */
export interface ConnectionOptions {
  /** `"client"` or `"server"`: which side of the session this is. */
  role: "client" | "server";
  /** Handles incoming requests and un-numbered messages; without it they are delivered to `receive()`. */
  dispatcher?: Dispatcher;
  /** The packet payload limit, also the largest record (default 16 MiB). */
  maxPayloadSize?: number;
  /**
   * The most requests handled at once (default 32). At the limit the connection stops reading
   * its socket, so TCP pushes back on the peer; replies keep flowing, so it never deadlocks.
   */
  backpressureLimit?: number;
  /** The most bytes queued for writing before reading pauses and `send` throws (default 8 MiB). */
  maxOutboundBytes?: number;
  /** The most received messages waiting in `receive()` before reading pauses (default 1024). */
  maxReceiveQueue?: number;
  /** Send a Ping after this long without receiving anything; 3 missed means dead (0 disables). */
  heartbeatIntervalMs?: number;
  /** Close after this long without application messages in either direction (0 disables). */
  idleTimeoutMs?: number;
  /** The default time limit of `request()` (default 30000 ms). */
  responseTimeoutMs?: number;
  /** Close when a write makes no progress for this long (default 30000 ms; 0 disables). */
  writeTimeoutMs?: number;
  /** Compresses outgoing message bodies (only with negotiated compression). */
  compressor?: BodyCompressor;
  /** Decompresses incoming bodies; without it compressed bodies are a `PolicyViolation`. */
  decompressor?: BodyDecompressor;
  /** A numeric id for logs (default: a counter). */
  id?: number;
  /**
   * Protocol violations (an un-numbered message nobody handles, an empty record) the peer may
   * commit within a minute; one more closes the connection with CLOSE code 2 (default 16).
   */
  maxProtocolViolations?: number;
}

/** Options of {@linkcode Connection.close}. */
export interface CloseOptions {
  /** A short reason sent to the peer in the CLOSE record (secure mode; default `"closed"`). */
  reason?: string;
  /** The CLOSE code (default `CloseCode.Normal`, 0; a shutdown sends `CloseCode.GoingAway`). */
  code?: number;
  /** How long to wait for in-flight work before closing at once (default 10000 ms). */
  timeoutMs?: number;
}

/**
 * The peer ended the session with a CLOSE record whose code reports a failure, 2 and up
 * (docs/PROTOCOL.md, "CLOSE"; 0 and 1 are clean ends): {@linkcode Connection.closed} resolves
 * with it, and requests still in flight fail
 * with `ConnectionClosed` caused by it.
 *
 * @example Read why the peer closed
 * ```ts
 * import { PeerClosedError } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const error = new PeerClosedError(4, "idle timeout");
 * assert.equal(error.code, "Timeout");
 * assert.equal(error.closeCode, 4);
 * assert.equal(error.reason, "idle timeout");
 * ```
 */
export class PeerClosedError extends ProtocolError {
  /** The u16 CLOSE code the peer sent (see `CloseCode`). */
  readonly closeCode: number;
  /** The reason text the peer sent. */
  readonly reason: string;

  /**
   * Creates the error.
   *
   * @param closeCode The code of the peer's CLOSE.
   * @param reason The reason text of the peer's CLOSE.
   */
  constructor(closeCode: number, reason: string) {
    super(
      closeCodeToLocal(closeCode),
      `Peer closed the session with code ${closeCode} (${closeCodeName(closeCode)}): "${reason}"`,
    );
    this.name = "PeerClosedError";
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

function closeCodeName(code: number): string {
  switch (code) {
    case CloseCode.Normal:
      return "normal";
    case CloseCode.GoingAway:
      return "going away";
    case CloseCode.ProtocolError:
      return "protocol error";
    case CloseCode.LimitExceeded:
      return "limit exceeded";
    case CloseCode.IdleTimeout:
      return "idle timeout";
    case CloseCode.KeyExhausted:
      return "key exhausted";
    default:
      return code >= 0x1000 ? "application" : "unknown";
  }
}

function closeCodeToLocal(code: number): ProtocolError["code"] {
  switch (code) {
    case CloseCode.ProtocolError:
      return "PolicyViolation";
    case CloseCode.LimitExceeded:
    case CloseCode.KeyExhausted:
      return "LimitExceeded";
    case CloseCode.IdleTimeout:
      return "Timeout";
    default:
      return "ConnectionClosed";
  }
}

/**
 * The CLOSE code that tells the peer why this side ends the session after `error`, or
 * `undefined` when no CLOSE can or should be sent (the channel failed, the socket is gone, or
 * the failure is this side's own).
 */
function closeCodeFor(error: ProtocolError): number | undefined {
  switch (error.code) {
    case "InvalidHeader":
    case "UnsupportedVersion":
    case "InvalidMessage":
    case "UnexpectedMessage":
    case "PolicyViolation":
    case "DecompressionFailure":
      return CloseCode.ProtocolError;
    case "OversizedPacket":
    case "LimitExceeded":
      return CloseCode.LimitExceeded;
    case "Timeout":
      return CloseCode.IdleTimeout;
    default:
      return undefined;
  }
}

/** Options of {@linkcode Connection.request}. */
export interface RequestOptions {
  /** Abandons the request: it rejects with `Cancelled` and the peer is sent a `cancel`. */
  signal?: AbortSignal;
  /** The time limit in milliseconds (default: the connection's `responseTimeoutMs`). */
  timeoutMs?: number;
}

/**
 * The peer answered a numbered request with an `error` message.
 *
 * @example Inspect a remote error
 * ```ts
 * import { RemoteError } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const error = new RemoteError(1, 'No handler is registered for opcode "X"');
 * assert.equal(error.remoteCode, 1);
 * assert.equal(error.code, "UnexpectedMessage");
 * ```
 */
export class RemoteError extends ProtocolError {
  /** The error code the peer sent (see `ErrorCodes`). */
  readonly remoteCode: number;

  /**
   * Creates the error.
   *
   * @param remoteCode The code the peer sent.
   * @param text The text the peer sent.
   */
  constructor(remoteCode: number, text: string) {
    super(remoteCodeToLocal(remoteCode), `Peer answered with error ${remoteCode}: ${text}`);
    this.name = "RemoteError";
    this.remoteCode = remoteCode;
  }
}

function remoteCodeToLocal(code: number): ProtocolError["code"] {
  switch (code) {
    case ErrorCodes.Cancelled:
      return "Cancelled";
    case ErrorCodes.DeadlineExceeded:
      return "Timeout";
    case ErrorCodes.ShuttingDown:
      return "ConnectionClosed";
    default:
      return "UnexpectedMessage";
  }
}

interface PendingRequest {
  resolve(message: Message): void;
  reject(error: unknown): void;
  deadline: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

// Set by ConnectionContext's static block: they reach its private state without exposing it
// to handlers.
let abortContext: (ctx: ConnectionContext, reason: unknown) => void;
let abortReason: (ctx: ConnectionContext) => { reason: unknown } | undefined;

/**
 * The context of one message handled for the peer. The dispatcher uses it as is (no copy). For
 * a numbered request its `signal` is created only when the handler reads it: most handlers
 * never do, and an `AbortController` per request is one of the larger per-message costs.
 */
class ConnectionContext implements HandlerContext {
  declare requestId?: number;
  declare deadline?: number;
  declare remoteStaticKey?: Uint8Array;
  declare remoteAddr?: Deno.Addr;
  #controller: AbortController | undefined = undefined;
  #reason: unknown = undefined;
  #aborted = false;
  #cancellable: boolean;
  /** When the handler's answer is no longer wanted (performance.now() time; async handlers). */
  expiresAt = Infinity;

  constructor(
    remoteAddr: Deno.Addr | undefined,
    remoteStaticKey: Uint8Array | undefined,
    cancellable: boolean,
  ) {
    if (remoteAddr !== undefined) this.remoteAddr = remoteAddr;
    if (remoteStaticKey !== undefined) this.remoteStaticKey = remoteStaticKey;
    this.#cancellable = cancellable;
  }

  get [OWNED_CONTEXT](): true {
    return true;
  }

  get signal(): AbortSignal {
    if (!this.#cancellable) return NEVER_ABORTED;
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  static {
    abortReason = (ctx: ConnectionContext): { reason: unknown } | undefined =>
      ctx.#aborted ? { reason: ctx.#reason } : undefined;
    abortContext = (ctx: ConnectionContext, reason: unknown): void => {
      if (ctx.#aborted) return;
      ctx.#aborted = true;
      ctx.#reason = reason;
      ctx.#controller?.abort(reason);
    };
  }
}

interface ReplySlot {
  done: boolean;
  reply: Message | null;
  /** What the held reply counts against the outbound bound. */
  bytes: number;
}

let nextConnectionId = 1;
const EMPTY_QUEUE: Message[] = [];
const RECORD_TARGET = 256 * 1024;
/** A record is this much longer than its batch: the type byte and the 16-byte tag. */
const RECORD_OVERHEAD = 17;
/**
 * Records opened, and messages handled, per turn of the event loop before a connection yields
 * to the others. A full 256 KiB read of the smallest records is about 10,000 of them (10-100
 * ms of CPU for KEY_UPDATE or empty records, measured in the hostile-peer study); honest reads
 * rarely reach these numbers, so the yield costs them nothing.
 */
const RECORDS_PER_TURN = 1024;
const MESSAGES_PER_TURN = 4096;
/** The window over which protocol violations are counted. */
const VIOLATION_WINDOW_MS = 60_000;

/**
 * One side of an established session. Created by the daemon for each accepted client and by the
 * client for its server; also usable directly over any `Deno.Conn` after a handshake.
 *
 * @example Inspect the connection behind a client
 * ```ts
 * import { connect, Dispatcher, registerStandardHandlers, serve } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * await using server = await serve({ address: "127.0.0.1:0" }, registerStandardHandlers(new Dispatcher()));
 * const { port } = server.addr as Deno.NetAddr;
 * await using client = await connect({
 *   address: `127.0.0.1:${port}`,
 *   security: { serverKeys: [server.publicKey!] },
 * });
 * const connection = client.connection!;
 * assert.equal(connection.session.pattern, "NK");
 * assert.deepEqual(connection.remoteStaticKey, server.publicKey);
 * assert.ok((await connection.ping()) >= 0);
 * ```
 */
export class Connection implements AsyncDisposable {
  /** A numeric id, for logs. */
  readonly id: number;
  /** The session facts from the handshake. */
  readonly session: SessionInfo;

  readonly #conn: Deno.Conn;
  readonly #reader: FrameReader;
  readonly #role: "client" | "server";
  readonly #dispatcher: Dispatcher | undefined;
  readonly #maxPayload: number;
  /** The largest packet payload this side sends: its own limit, or less if the peer asks. */
  readonly #sendPayload: number;
  readonly #backpressureLimit: number;
  readonly #maxOutbound: number;
  readonly #maxReceive: number;
  readonly #heartbeatMs: number;
  readonly #idleMs: number;
  readonly #responseMs: number;
  readonly #writeTimeoutMs: number;
  readonly #compressor: BodyCompressor | undefined;
  /** A decrypted record is a fresh buffer: its messages may be views into it (no copy). */
  readonly #decodeOptions: DecodeBatchOptions;
  readonly #channel: SecureChannel | null;
  readonly #remoteAddr: Deno.Addr | undefined;
  readonly #maxViolations: number;
  #violations = 0;
  #violationWindowStart = 0;

  // Outbound.
  #outbox: Message[] = [];
  /** `#outboxSizes[i]` is the encoded size of `#outbox[i]`, computed once when it was queued. */
  #outboxSizes: number[] = [];
  /** The exact size of the batch entries of the outbox. */
  #outboxEntryBytes = 0;
  /** What the outbox counts against `maxOutboundBytes` (8 bytes of overhead per message). */
  #outboxBytes = 0;
  #writingBytes = 0;
  #flushScheduled = false;
  #writing = false;
  #writeStartedAt = 0;
  #flushWaiters: (() => void)[] = [];

  // Inbound.
  #pending: Message[] = EMPTY_QUEUE;
  #pendingIndex = 0;
  #inflight = new Map<number, ConnectionContext>();
  #inflightCount = 0;
  #slots: ReplySlot[] = [];
  #slotHead = 0;
  /** Replies done but held behind an earlier pending one (ordered replies), and their bytes. */
  #heldCount = 0;
  #heldBytes = 0;
  #receiveQueue: Message[] = [];
  #receiveWaiters: ((value: Message | null) => void)[] = [];
  #capacityWaiter: (() => void) | null = null;

  // Requests we sent.
  #requests = new Map<number, PendingRequest>();
  #nextRequestId = 1;
  /** Ids of requests with the default timeout, in deadline order, from `#fifoHead` on. */
  #fifo: number[] = [];
  #fifoHead = 0;
  #fifoTimer: ReturnType<typeof setTimeout> | undefined;

  // Liveness.
  #lastReceived = performance.now();
  #lastActivity = performance.now();
  /** An application message came or went since the last watchdog tick (cheaper than a clock). */
  #active = false;
  /** performance.now() cached for the rest of the current turn (see #coarseNow). */
  #turnNow = -1;
  #turnUses = 0;
  #pingSentAt = 0;
  #missedPings = 0;
  #rtt: number | undefined;
  #watchdog: (() => void) | undefined;
  #tickMs = 0;
  #lastTick = 0;

  // Lifecycle.
  #closing = false;
  #closed = false;
  #error: ProtocolError | undefined;
  /** The peer's CLOSE with a code other than 0, once received. */
  #peerClose: PeerClosedError | undefined;
  #closedPromise: Promise<ProtocolError | undefined>;
  #resolveClosed!: (error: ProtocolError | undefined) => void;
  #readLoopDone: Promise<void>;

  /**
   * Starts a connection over an established session.
   *
   * @param conn The transport connection (the connection takes ownership).
   * @param reader The frame reader that ran the handshake over `conn`.
   * @param session What the handshake established.
   * @param options Limits, timeouts, the dispatcher and compression.
   */
  constructor(
    conn: Deno.Conn,
    reader: FrameReader,
    session: SessionInfo,
    options: ConnectionOptions,
  ) {
    this.id = options.id ?? nextConnectionId++;
    this.session = session;
    this.#conn = conn;
    this.#reader = reader;
    this.#role = options.role;
    this.#dispatcher = options.dispatcher;
    this.#channel = session.channel;
    this.#remoteAddr = remoteAddrOf(conn);
    this.#maxPayload = options.maxPayloadSize ?? MAX_PAYLOAD_SIZE;
    const overhead = session.channel === null ? 0 : RECORD_OVERHEAD;
    this.#sendPayload = session.remoteMaxMessageSize === undefined
      ? this.#maxPayload
      : Math.min(this.#maxPayload, session.remoteMaxMessageSize + overhead);
    this.#backpressureLimit = positive("backpressureLimit", options.backpressureLimit, 32);
    this.#maxOutbound = positive("maxOutboundBytes", options.maxOutboundBytes, 8 * 1024 * 1024);
    this.#maxReceive = positive("maxReceiveQueue", options.maxReceiveQueue, 1024);
    this.#heartbeatMs = nonNegative("heartbeatIntervalMs", options.heartbeatIntervalMs, 0);
    this.#idleMs = nonNegative("idleTimeoutMs", options.idleTimeoutMs, 0);
    this.#responseMs = positive("responseTimeoutMs", options.responseTimeoutMs, 30_000);
    this.#writeTimeoutMs = nonNegative("writeTimeoutMs", options.writeTimeoutMs, 30_000);
    this.#maxViolations = nonNegative("maxProtocolViolations", options.maxProtocolViolations, 16);
    this.#compressor = options.compressor;
    this.#decodeOptions = {
      ownedInput: session.channel !== null,
      // The decoded total of one batch is capped at the packet limit, whatever decompressor.
      maxDecodedBytes: this.#maxPayload,
      ...(options.decompressor === undefined ? {} : { decompressor: options.decompressor }),
    };
    this.#closedPromise = new Promise((resolve) => (this.#resolveClosed = resolve));

    const tick = minPositive(
      this.#heartbeatMs,
      this.#idleMs,
      this.#writeTimeoutMs,
    );
    if (tick > 0) {
      this.#tickMs = Math.max(10, Math.min(tick / 4, 1000));
      this.#lastTick = performance.now();
      this.#watchdog = () => this.#onTick();
      joinTicker(this.#tickMs, this.#watchdog);
    }
    // Bytes that arrived together with the end of the handshake are parsed by the first read.
    reader.startSession(this.#maxPayload);
    this.#readLoopDone = this.#readLoop();
  }

  /** The peer's transport address. */
  get remoteAddr(): Deno.Addr {
    return this.#conn.remoteAddr;
  }

  /** This side's transport address. */
  get localAddr(): Deno.Addr {
    return this.#conn.localAddr;
  }

  /** The peer's static public key, when the session has one. */
  get remoteStaticKey(): Uint8Array | undefined {
    return this.session.remoteStaticKey;
  }

  /** The Noise handshake hash, when the session is encrypted. */
  get handshakeHash(): Uint8Array | undefined {
    return this.session.handshakeHash;
  }

  /**
   * The compressor of outgoing bodies, when the peers negotiated compression (a
   * `CompressionPolicy`, whose `stats` count what it did).
   */
  get compressor(): BodyCompressor | undefined {
    return this.#compressor;
  }

  /** The last measured heartbeat round-trip time in milliseconds. */
  get rtt(): number | undefined {
    return this.#rtt;
  }

  /** Requests being handled for the peer right now. */
  get inflight(): number {
    return this.#inflightCount;
  }

  /** Bytes queued or being written, including replies held back to keep their order. */
  get outboundBytes(): number {
    return this.#outboxBytes + this.#writingBytes + this.#heldBytes;
  }

  /** Whether the connection is closed or closing. */
  get isClosed(): boolean {
    return this.#closing || this.#closed;
  }

  /**
   * Resolves when the connection is closed: with `undefined` after a clean close, or with the
   * error that closed it. Never rejects.
   */
  get closed(): Promise<ProtocolError | undefined> {
    return this.#closedPromise;
  }

  /**
   * Queues a message for the peer. It is written with everything else queued in the same turn,
   * in one write.
   *
   * @param message The message.
   * @throws {ProtocolError} `ConnectionClosed` after close, `LimitExceeded` when more than
   * `maxOutboundBytes` are waiting (the peer is not reading), `OversizedPacket` for a message
   * larger than the packet limit.
   * @throws {TypeError} For an invalid message.
   */
  send(message: Message): void {
    if (this.#closing || this.#closed) throw this.#closedError();
    this.#enqueue(message, true);
  }

  /**
   * Resolves when everything queued so far has been written to the socket.
   *
   * @param signal Stops waiting (rejects with `Cancelled`).
   */
  flush(signal?: AbortSignal): Promise<void> {
    if (this.#outbox.length === 0 && !this.#writing) return Promise.resolve();
    return withSignal(
      new Promise<void>((resolve) => this.#flushWaiters.push(resolve)),
      signal,
      "Flush",
    );
  }

  /**
   * Sends a numbered request and resolves with the message of the peer's response.
   *
   * @param message The request (an un-numbered message).
   * @param options A signal and a time limit.
   * @returns The response's message.
   * @throws {RemoteError} When the peer answered with an error message.
   * @throws {ProtocolError} `Timeout`, `Cancelled`, `ConnectionClosed` (the connection closed
   * before the answer: the request is never resent), `LimitExceeded`.
   */
  request(message: Message, options?: RequestOptions): Promise<Message> {
    // Not an async function: one promise per request, not three (a hot path).
    try {
      if (this.#closing || this.#closed) throw this.#closedError();
      const signal = options?.signal;
      if (signal?.aborted) {
        throw new ProtocolError("Cancelled", "Request was cancelled before it was sent", {
          cause: signal.reason,
        });
      }
      const timeoutMs = options?.timeoutMs ?? this.#responseMs;
      if (!(timeoutMs > 0)) {
        throw new RangeError(`Cannot use request timeout "${timeoutMs}": it must be positive`);
      }
      if (this.#outboxBytes + this.#writingBytes > this.#maxOutbound) {
        // Backpressure: wait (within the request's own time limit) until the peer reads.
        return this.#waitForOutbound(timeoutMs, signal).then(() =>
          this.#request(message, timeoutMs, signal)
        );
      }
      return this.#request(message, timeoutMs, signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * performance.now(), read at most once per 256 calls and never reused after the current
   * microtask queue drains: stale by at most the time 256 requests take to create. Reading the
   * clock is an op call in Deno, a visible cost per request.
   */
  #coarseNow(): number {
    if (this.#turnNow >= 0 && ++this.#turnUses < 256) return this.#turnNow;
    if (this.#turnNow < 0) queueMicrotask(this.#resetTurnNow);
    this.#turnUses = 0;
    this.#turnNow = performance.now();
    return this.#turnNow;
  }

  readonly #resetTurnNow = (): void => {
    this.#turnNow = -1;
  };

  async #waitForOutbound(timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.#outboxBytes + this.#writingBytes > this.#maxOutbound) {
      if (this.#closing || this.#closed) throw this.#closedError();
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new ProtocolError(
          "Timeout",
          `Request could not be written within ${timeoutMs} ms: the peer is not reading`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.flush(signal),
        new Promise((resolve) => (timer = setTimeout(resolve, left))),
      ]).finally(() => clearTimeout(timer));
    }
  }

  #request(
    message: Message,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Message> {
    if (this.#closing || this.#closed) return Promise.reject(this.#closedError());
    const id = this.#nextRequestId++;
    const request: Message = { type: "request", id, deadline: Math.ceil(timeoutMs), message };
    return new Promise<Message>((resolve, reject) => {
      const pending: PendingRequest = {
        resolve,
        reject,
        deadline: this.#coarseNow() + timeoutMs,
        timer: undefined,
        signal,
        onAbort: undefined,
      };
      try {
        this.#enqueue(request, false);
      } catch (error) {
        reject(error);
        return;
      }
      this.#requests.set(id, pending);
      if (timeoutMs === this.#responseMs) {
        // Same timeout for all: deadlines are in order, one timer serves the whole queue.
        this.#fifo.push(id);
        if (this.#fifoTimer === undefined) this.#armFifo();
      } else {
        pending.timer = setTimeout(() => this.#timeoutRequest(id, timeoutMs), timeoutMs);
      }
      if (signal !== undefined) {
        pending.onAbort = () => {
          if (!this.#requests.has(id)) return;
          this.#settleRequest(id);
          reject(
            new ProtocolError("Cancelled", `Request ${id} was cancelled`, { cause: signal.reason }),
          );
          if (!this.#closing && !this.#closed) this.#enqueue({ type: "cancel", id }, false);
        };
        signal.addEventListener("abort", pending.onAbort, { once: true });
      }
    });
  }

  /**
   * Receives the next message not taken by a dispatcher or a pending request.
   *
   * @param signal Stops waiting (rejects with `Cancelled`).
   * @returns The message, or `null` once the connection is closed.
   */
  receive(signal?: AbortSignal): Promise<Message | null> {
    if (this.#receiveQueue.length > 0) {
      const message = this.#receiveQueue.shift()!;
      if (this.#receiveQueue.length < this.#maxReceive) this.#wakeReader();
      return Promise.resolve(message);
    }
    if (this.#closed || this.#closing) return Promise.resolve(null);
    return this.#waitForMessage(signal, (message, resolve) => resolve(message));
  }

  /**
   * Receives every message waiting in the receive queue at once: the batch form of
   * {@linkcode Connection.receive}, with one promise per batch instead of one per message (all
   * the messages of one read arrive together). The batch holds at most the receive queue's
   * limit (`maxReceiveQueue`) of messages, in order; taking it lets reading resume.
   *
   * @example Receive the replies to many messages in batches
   * ```ts
   * import { connect, Dispatcher, type Message, serve } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * const dispatcher = new Dispatcher().register("ECHO_BYTES", (message) => message);
   * await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
   * const { port } = server.addr as Deno.NetAddr;
   * await using client = await connect({
   *   address: `127.0.0.1:${port}`,
   *   security: { serverKeys: [server.publicKey!] },
   * });
   * const connection = client.connection!;
   * for (let i = 0; i < 100; i++) {
   *   connection.send({ type: "custom", command: "ECHO_BYTES", payload: new Uint8Array([i]) });
   * }
   * const received: Message[] = [];
   * while (received.length < 100) received.push(...(await connection.receiveBatch())!);
   * assert.deepEqual(
   *   received.map((m) => m.type === "custom" ? m.payload[0] : -1),
   *   [...Array(100).keys()],
   * );
   * ```
   *
   * @param signal Stops waiting (rejects with `Cancelled`).
   * @returns One or more messages, or `null` once the connection is closed and nothing is left.
   */
  receiveBatch(signal?: AbortSignal): Promise<Message[] | null> {
    if (this.#receiveQueue.length > 0) return Promise.resolve(this.#takeReceiveQueue());
    if (this.#closed || this.#closing) return Promise.resolve(null);
    return this.#waitForMessage<Message[]>(signal, (message, resolve, rewait) => {
      // The first message wakes the waiter; the rest of the same read is handled
      // synchronously before this microtask runs, so the batch holds all of them.
      this.#receiveQueue.push(message);
      queueMicrotask(() => {
        if (this.#receiveQueue.length > 0) resolve(this.#takeReceiveQueue());
        else rewait(); // Taken by a concurrent receive() in between: wait again.
      });
    });
  }

  #takeReceiveQueue(): Message[] {
    const batch = this.#receiveQueue;
    this.#receiveQueue = [];
    this.#wakeReader();
    return batch;
  }

  /**
   * Waits in line for the next delivered message. `onMessage` settles the wait (it may queue
   * the message instead and re-wait); the end of the connection resolves `null`; an abort
   * rejects with `Cancelled` and leaves the line, so no message is delivered to a caller that
   * stopped waiting.
   */
  #waitForMessage<T>(
    signal: AbortSignal | undefined,
    onMessage: (
      message: Message,
      resolve: (value: T | null) => void,
      rewait: () => void,
    ) => void,
  ): Promise<T | null> {
    if (signal?.aborted) {
      return Promise.reject(
        new ProtocolError("Cancelled", "Receive was cancelled", { cause: signal.reason }),
      );
    }
    return new Promise<T | null>((resolve, reject) => {
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        const i = this.#receiveWaiters.indexOf(waiter);
        if (i >= 0) this.#receiveWaiters.splice(i, 1);
        reject(new ProtocolError("Cancelled", "Receive was cancelled", { cause: signal?.reason }));
      };
      const finish = (value: T | null) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        resolve(value);
      };
      const rewait = () => {
        if (settled) return;
        if (this.#closed || this.#closing) finish(null);
        else this.#receiveWaiters.push(waiter);
      };
      const waiter = (message: Message | null) => {
        if (message === null) {
          // Closed: a batch waiter may still have queued messages to hand over.
          if (this.#receiveQueue.length > 0) onMessageQueued();
          else finish(null);
          return;
        }
        if (settled) {
          // Aborted after being picked: keep the message for the next caller.
          this.#receiveQueue.unshift(message);
          return;
        }
        onMessage(message, finish, rewait);
      };
      const onMessageQueued = () => {
        const message = this.#receiveQueue.shift()!;
        onMessage(message, finish, rewait);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#receiveWaiters.push(waiter);
    });
  }

  /** Iterates over received messages until the connection closes. */
  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    for (;;) {
      const message = await this.receive();
      if (message === null) return;
      yield message;
    }
  }

  /**
   * Sends a Ping and resolves with the round-trip time in milliseconds when the Pong arrives.
   *
   * @param options A signal and a time limit (default: the response timeout).
   * @returns The round-trip time in milliseconds.
   */
  async ping(options?: RequestOptions): Promise<number> {
    const started = performance.now();
    // A numbered ping is answered by the peer's dispatcher or by the connection itself.
    await this.request({ type: "ping" }, options);
    return performance.now() - started;
  }

  /**
   * Closes gracefully: stops reading, lets requests already received finish and be answered,
   * writes everything queued, sends an authenticated CLOSE (or a `disconnect` in plaintext
   * mode), then closes the socket. After the time limit it closes at once.
   *
   * @example Close with the code of a shutdown
   * ```ts
   * import { CloseCode, connect, Dispatcher, serve } from "@npro/network-protocol";
   *
   * await using server = await serve({ address: "127.0.0.1:0" }, new Dispatcher());
   * const { port } = server.addr as Deno.NetAddr;
   * const client = await connect({
   *   address: `127.0.0.1:${port}`,
   *   security: { serverKeys: [server.publicKey!] },
   * });
   * await client.connection!.close({ code: CloseCode.GoingAway, reason: "maintenance" });
   * await client.close();
   * ```
   *
   * @param options The CLOSE code and reason, and the time limit; or, as before, the reason.
   * @param timeoutMs The time limit when `options` is a reason (default 10000 ms).
   */
  async close(options: CloseOptions | string = {}, timeoutMs?: number): Promise<void> {
    const { reason = "closed", code = CloseCode.Normal, timeoutMs: limit = timeoutMs ?? 10_000 } =
      typeof options === "string" ? { reason: options } : options;
    if (this.#closed) return;
    if (this.#closing) {
      await this.#closedPromise;
      return;
    }
    this.#closing = true;
    const timer = setTimeout(() => this.#destroy(undefined), limit);
    try {
      await this.#drainInflight();
      if (!this.#closed) {
        if (this.#channel === null) {
          this.#enqueue({ type: "disconnect" }, false);
        }
        await this.#flushNow();
        if (this.#channel !== null && !this.#closed && this.#channel.failure === undefined) {
          await this.#writeAll(encodePackets(
            this.#channel.sealClose(code, closeReason(reason)).map((payload) => ({
              version: 2,
              payload,
            })),
          ));
        }
      }
    } catch {
      // Closing anyway.
    } finally {
      clearTimeout(timer);
      this.#destroy(undefined);
    }
    await this.#readLoopDone;
  }

  /** Closes at once, without waiting for anything. */
  abort(error?: ProtocolError): void {
    this.#destroy(error);
  }

  /** Closes gracefully (see {@linkcode Connection.close}). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  async #readLoop(): Promise<void> {
    try {
      for (;;) {
        await this.#drainPending();
        if (this.#closing || this.#closed) return;
        if (this.#mustPause()) {
          await new Promise<void>((resolve) => (this.#capacityWaiter = resolve));
          continue;
        }
        const packets = await this.#reader.read();
        if (packets === null) {
          this.#onEnd();
          return;
        }
        this.#lastReceived = performance.now();
        this.#missedPings = 0;
        // A read holds up to about 10,000 tiny records: open them in slices, letting the other
        // connections run in between, so one peer cannot monopolise the event loop.
        let next = this.#onPackets(packets, 0);
        while (next < packets.length && !this.#closed) {
          await this.#drainPending();
          await yieldTurn();
          if (this.#closed) return;
          next = this.#onPackets(packets, next);
        }
      }
    } catch (error) {
      if (this.#closing && !this.#closed && isClosedSocket(error)) {
        return;
      }
      this.#fail(toProtocolError(error));
    }
  }

  #mustPause(): boolean {
    return this.#inflightCount + this.#heldCount >= this.#backpressureLimit ||
      this.#outboxBytes + this.#writingBytes + this.#heldBytes > this.#maxOutbound ||
      this.#receiveQueue.length >= this.#maxReceive;
  }

  #wakeReader(): void {
    const waiter = this.#capacityWaiter;
    if (waiter !== null && !this.#mustPause()) {
      this.#capacityWaiter = null;
      waiter();
    }
  }

  /**
   * Opens and decodes `packets` from `start` on, at most RECORDS_PER_TURN of them.
   *
   * @returns The index of the first packet not handled (`packets.length` when done).
   */
  #onPackets(packets: Packet[], start: number): number {
    const end = Math.min(packets.length, start + RECORDS_PER_TURN);
    for (let i = start; i < end; i++) {
      const packet = packets[i]!;
      if (packet.version !== 2) {
        // The codec parses the original's version 1; a session speaks version 2 only.
        throw new ProtocolError(
          "UnsupportedVersion",
          `Packet has version "${packet.version}", expected "2" after the handshake`,
        );
      }
      let body: Uint8Array;
      if (this.#channel !== null) {
        const opened = this.#channel.open(packet.payload);
        if (opened.type === "key_update") continue;
        if (opened.type === "close") {
          log.debug("Connection {id} received CLOSE {code} {reason}", {
            id: this.id,
            code: opened.code,
            reason: opened.reason,
          });
          if (opened.code !== CloseCode.Normal && opened.code !== CloseCode.GoingAway) {
            // Codes 0 and 1 are clean ends; the others say what went wrong.
            this.#peerClose = new PeerClosedError(opened.code, opened.reason);
          }
          this.#onPeerClose();
          return packets.length;
        }
        body = opened.body;
      } else {
        body = packet.payload;
      }
      if (body.length === 0) {
        // A sender never seals an empty DATA record (nor sends an empty packet): each one
        // costs a decryption for nothing.
        this.#violation("empty record", "Received a record with no messages");
        if (this.#closed) return packets.length;
        continue;
      }
      const messages = decodeBatch(body, this.#decodeOptions);
      if (this.#pendingIndex < this.#pending.length) {
        this.#pending.push(...messages);
      } else {
        this.#pending = messages;
        this.#pendingIndex = 0;
      }
    }
    return end;
  }

  /** Handles decoded messages while there is capacity; the rest waits (bounded by one read). */
  async #drainPending(): Promise<void> {
    let handled = 0;
    while (this.#pendingIndex < this.#pending.length) {
      if (this.#closed) return;
      if (this.#mustPause()) {
        await new Promise<void>((resolve) => (this.#capacityWaiter = resolve));
        continue;
      }
      if (++handled > MESSAGES_PER_TURN) {
        handled = 0;
        await yieldTurn();
        continue;
      }
      const message = this.#pending[this.#pendingIndex]!;
      this.#pending[this.#pendingIndex++] = undefined as unknown as Message;
      this.#onMessage(message);
    }
    this.#pending = EMPTY_QUEUE;
    this.#pendingIndex = 0;
  }

  #onMessage(message: Message): void {
    switch (message.type) {
      case "pong":
        if (this.#pingSentAt > 0) {
          this.#rtt = performance.now() - this.#pingSentAt;
          this.#pingSentAt = 0;
        }
        return;
      case "ping":
        // A heartbeat: answered, but it is not activity (the idle timeout ignores it).
        if (this.#dispatcher?.has("PING")) this.#handleOrdered(message);
        else this.#enqueue({ type: "pong" }, false);
        return;
      case "response":
      case "error": {
        this.#active = true;
        const pending = this.#requests.get(message.id);
        if (pending === undefined) return; // Late answer to a cancelled or timed-out request.
        this.#settleRequest(message.id);
        if (message.type === "response") pending.resolve(message.message);
        else pending.reject(new RemoteError(message.code, message.text));
        return;
      }
      case "cancel": {
        const inflight = this.#inflight.get(message.id);
        if (inflight !== undefined) {
          abortContext(
            inflight,
            new ProtocolError("Cancelled", `Peer cancelled request ${message.id}`),
          );
        }
        return;
      }
      case "disconnect":
        this.#onPeerClose();
        return;
      case "request":
        if (message.message.type !== "ping") this.#active = true;
        this.#handleRequest(message);
        return;
    }
    this.#active = true;
    if (this.#dispatcher === undefined) {
      this.#deliver(message);
      return;
    }
    this.#handleOrdered(message);
  }

  #deliver(message: Message): void {
    const waiter = this.#receiveWaiters.shift();
    if (waiter !== undefined) waiter(message);
    else this.#receiveQueue.push(message);
  }

  #handleRequest(message: Extract<Message, { type: "request" }>): void {
    const dispatcher = this.#dispatcher;
    if (dispatcher === undefined || (message.message.type === "ping" && !dispatcher.has("PING"))) {
      if (message.message.type === "ping") {
        this.#enqueue({ type: "response", id: message.id, message: { type: "pong" } }, false);
      } else {
        this.#enqueue({
          type: "error",
          id: message.id,
          code: ErrorCodes.UnknownOpcode,
          text: "This side handles no requests",
        }, false);
      }
      return;
    }
    const ctx = new ConnectionContext(this.#remoteAddr, this.session.remoteStaticKey, true);
    const reply = dispatcher.handle(message, ctx);
    if (!(reply instanceof Promise)) {
      this.#reply(reply);
      return;
    }
    if (message.deadline !== undefined) ctx.expiresAt = performance.now() + message.deadline;
    this.#inflight.set(message.id, ctx);
    this.#inflightCount++;
    reply.then((answer) => {
      this.#inflight.delete(message.id);
      this.#inflightCount--;
      if (this.#closed) return;
      const aborted = abortReason(ctx);
      if (aborted !== undefined && answer.type === "error") {
        const reason = aborted.reason;
        answer = {
          type: "error",
          id: message.id,
          code: reason instanceof ProtocolError && reason.code === "Timeout"
            ? ErrorCodes.DeadlineExceeded
            : ErrorCodes.Cancelled,
          text: reason instanceof Error ? reason.message : "Request was cancelled",
        };
      }
      this.#reply(answer);
      this.#wakeReader();
    });
  }

  #handleOrdered(message: Message): void {
    let reply: Message | Promise<Message>;
    const ctx = new ConnectionContext(this.#remoteAddr, this.session.remoteStaticKey, false);
    try {
      reply = this.#dispatcher!.handle(message, ctx);
    } catch (error) {
      this.#handlerFailed(message, error);
      if (this.#slots.length > this.#slotHead) this.#pushSlot(true, null);
      return;
    }
    if (!(reply instanceof Promise)) {
      if (this.#slots.length === this.#slotHead) this.#reply(reply);
      else this.#pushSlot(true, reply);
      return;
    }
    const slot = this.#pushSlot(false, null);
    this.#inflightCount++;
    reply.then(
      (answer) => {
        slot.reply = answer;
      },
      (error) => this.#handlerFailed(message, error),
    ).finally(() => {
      this.#inflightCount--;
      this.#settleSlot(slot);
      this.#releaseSlots();
      this.#wakeReader();
    });
  }

  /**
   * Queues a slot for the reply to an un-numbered message, in arrival order. A reply that is
   * done but waits behind an earlier pending one is held: it counts against the backpressure
   * limit and the outbound byte bound, so a slow handler cannot make replies pile up unbounded.
   */
  #pushSlot(done: boolean, reply: Message | null): ReplySlot {
    const slot: ReplySlot = { done: false, reply, bytes: 0 };
    this.#slots.push(slot);
    if (done) this.#settleSlot(slot);
    return slot;
  }

  #settleSlot(slot: ReplySlot): void {
    slot.done = true;
    this.#heldCount++;
    if (slot.reply !== null) {
      slot.bytes = encodedMessageSize(slot.reply) + 8;
      this.#heldBytes += slot.bytes;
    }
  }

  #releaseSlots(): void {
    const slots = this.#slots;
    while (this.#slotHead < slots.length && slots[this.#slotHead]!.done) {
      const slot = slots[this.#slotHead]!;
      this.#slotHead++;
      this.#heldCount--;
      this.#heldBytes -= slot.bytes;
      if (slot.reply !== null && !this.#closed) this.#reply(slot.reply);
    }
    if (this.#slotHead === slots.length) {
      this.#slots = [];
      this.#slotHead = 0;
    }
  }

  #handlerFailed(message: Message, error: unknown): void {
    if (
      error instanceof ProtocolError && error.code === "UnexpectedMessage" &&
      !this.#dispatcher!.has(opcodeOf(message))
    ) {
      // Nobody handles this opcode and the peer cannot be told (no request id): a violation.
      this.#violation("unknown opcode", error.message);
      return;
    }
    logHandlerFailure(opcodeOf(message), error, this.id);
  }

  /**
   * Counts a protocol violation of the peer: logged within the shared log budget, and past
   * `maxProtocolViolations` within a minute the connection closes with CLOSE code 2.
   */
  #violation(kind: string, detail: string): void {
    const now = performance.now();
    if (now - this.#violationWindowStart > VIOLATION_WINDOW_MS) {
      this.#violationWindowStart = now;
      this.#violations = 0;
    }
    this.#violations++;
    if (peerEvents.allow("protocol violation")) {
      log.warn("Connection {id}: protocol violation ({kind}): {detail}", {
        id: this.id,
        kind,
        detail,
      });
    }
    if (this.#violations > this.#maxViolations) {
      this.#fail(
        new ProtocolError(
          "PolicyViolation",
          `Peer committed more than "${this.#maxViolations}" protocol violations within ${
            VIOLATION_WINDOW_MS / 1000
          } s (last: ${kind})`,
        ),
      );
    }
  }

  #onPeerClose(): void {
    // The peer will send nothing more: answer what we have, then close.
    if (!this.#closing && !this.#closed) void this.close("peer closed");
  }

  /**
   * Queues a handler's reply. A reply larger than the packet limit fails its own request (an
   * `error` with code `TooLarge` for a numbered one; logged and dropped for an un-numbered
   * one), never the connection.
   */
  #reply(message: Message): void {
    if (this.#closed) return;
    const size = encodedMessageSize(message);
    if (this.#fits(size)) {
      this.#enqueue(message, false, size);
      return;
    }
    const text = `Reply of "${size}" bytes exceeds the largest message "${this.maxMessageSize}"`;
    if (message.type === "response") {
      this.#enqueue({ type: "error", id: message.id, code: ErrorCodes.TooLarge, text }, false);
    } else {
      logHandlerFailure(opcodeOf(message), new ProtocolError("OversizedPacket", text), this.id);
    }
  }

  /**
   * The largest encoded message (a request, reply or un-numbered message) this side sends: it
   * fits in one packet of the peer's limit (its `max_message`, else this side's own), after the
   * record's 17 bytes (secure mode) and the batch entry's flags byte and length. Peers with the
   * same packet limit accept the same, so the largest request a server accepts and the largest
   * reply it can send are equal.
   */
  get maxMessageSize(): number {
    const room = this.#sendPayload - (this.#channel === null ? 0 : RECORD_OVERHEAD);
    // An entry is 1 flags byte, the length as a varint (1 to 5 bytes), then the message.
    let size = room - 2;
    while (size > 0 && batchEntrySize(size) > room) size--;
    return size;
  }

  #fits(size: number): boolean {
    return batchEntrySize(size) + (this.#channel === null ? 0 : RECORD_OVERHEAD) <=
      this.#sendPayload;
  }

  #onEnd(): void {
    if (this.#closed) return;
    if (this.#channel !== null && this.#channel.closeReceived === undefined && !this.#closing) {
      this.#channel.finish(); // Throws Truncated: end of stream without CLOSE.
    }
    if (!this.#closing) this.#destroy(undefined);
  }

  // -------------------------------------------------------------------------------------------
  // Writing

  #enqueue(message: Message, checkLimit: boolean, knownSize?: number): void {
    const size = knownSize ?? encodedMessageSize(message);
    if (!this.#fits(size)) {
      throw new ProtocolError(
        "OversizedPacket",
        `Message of "${size}" bytes exceeds the largest message "${this.maxMessageSize}"`,
      );
    }
    if (checkLimit && this.#outboxBytes + this.#writingBytes + size > this.#maxOutbound) {
      throw new ProtocolError(
        "LimitExceeded",
        `More than "${this.#maxOutbound}" bytes are waiting to be written: the peer is not reading`,
      );
    }
    if (this.#closed) return;
    this.#outbox.push(message);
    this.#outboxSizes.push(size);
    this.#outboxEntryBytes += batchEntrySize(size);
    this.#outboxBytes += size + 8;
    if (!isHeartbeat(message)) this.#active = true;
    if (!this.#flushScheduled && !this.#writing) {
      this.#flushScheduled = true;
      queueMicrotask(() => void this.#flushNow().catch(() => {}));
    }
  }

  async #flushNow(): Promise<void> {
    this.#flushScheduled = false;
    if (this.#writing) {
      await this.flush();
      return;
    }
    this.#writing = true;
    try {
      while (this.#outbox.length > 0 && !this.#closed) {
        const messages = this.#outbox;
        const sizes = this.#outboxSizes;
        const entryBytes = this.#outboxEntryBytes;
        this.#writingBytes = this.#outboxBytes;
        this.#outbox = [];
        this.#outboxSizes = [];
        this.#outboxEntryBytes = 0;
        this.#outboxBytes = 0;
        const data = this.#encode(messages, sizes, entryBytes);
        await this.#writeAll(data);
        this.#writingBytes = 0;
        this.#wakeReader();
      }
    } catch (error) {
      this.#fail(toProtocolError(error));
    } finally {
      this.#writing = false;
      this.#writingBytes = 0;
      const waiters = this.#flushWaiters;
      this.#flushWaiters = [];
      for (const waiter of waiters) waiter();
    }
  }

  /**
   * Encodes queued messages into the bytes of one write: one packet per group of at most
   * RECORD_TARGET bytes (and never more than the packet limit), each a plain batch or one
   * sealed DATA record. Entries are written straight into the packet buffer (plaintext) or the
   * record's inner buffer (secure): no intermediate batch copy.
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
        writeHeader(out, offset, payloadEnd - payloadStart);
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
      writeHeader(out, 0, payload.length);
      out.set(payload, HEADER_SIZE);
      return out;
    }
    return encodePackets(payloads.map((payload) => ({ version: 2, payload })), {
      maxPayloadSize: this.#sendPayload,
    });
  }

  async #writeAll(data: Uint8Array): Promise<void> {
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

  // -------------------------------------------------------------------------------------------
  // Timers

  #armFifo(): void {
    let head: PendingRequest | undefined;
    while (this.#fifoHead < this.#fifo.length) {
      head = this.#requests.get(this.#fifo[this.#fifoHead]!);
      if (head !== undefined) break;
      this.#fifoHead++;
    }
    if (head === undefined) {
      this.#fifo = [];
      this.#fifoHead = 0;
      this.#fifoTimer = undefined;
      return;
    }
    const wait = Math.max(0, head.deadline - performance.now());
    this.#fifoTimer = setTimeout(() => this.#onFifoTimer(), wait + 1);
  }

  #onFifoTimer(): void {
    this.#fifoTimer = undefined;
    const now = performance.now();
    let i = this.#fifoHead;
    for (; i < this.#fifo.length; i++) {
      const id = this.#fifo[i]!;
      const pending = this.#requests.get(id);
      if (pending === undefined) continue;
      if (pending.deadline > now) break;
      this.#timeoutRequest(id, this.#responseMs);
    }
    this.#fifoHead = i;
    this.#compactFifo();
    if (this.#fifo.length > 0 && !this.#closed) this.#armFifo();
  }

  /** Keeps the fifo bounded by the requests in flight: drops settled ids (amortized O(1)). */
  #compactFifo(): void {
    const live = this.#fifo.length - this.#fifoHead;
    if (live === 0) {
      this.#fifo.length = 0;
      this.#fifoHead = 0;
    } else if (this.#fifoHead > 4096 && this.#fifoHead > live) {
      this.#fifo = this.#fifo.slice(this.#fifoHead);
      this.#fifoHead = 0;
    }
    if (this.#fifo.length - this.#fifoHead > 2 * this.#requests.size + 1024) {
      this.#fifo = this.#fifo.slice(this.#fifoHead).filter((id) => this.#requests.has(id));
      this.#fifoHead = 0;
    }
  }

  #timeoutRequest(id: number, timeoutMs: number): void {
    const pending = this.#requests.get(id);
    if (pending === undefined) return;
    this.#settleRequest(id);
    pending.reject(
      new ProtocolError("Timeout", `Request ${id} got no answer within ${timeoutMs} ms`),
    );
    if (!this.#closing && !this.#closed) this.#enqueue({ type: "cancel", id }, false);
  }

  #settleRequest(id: number): void {
    const pending = this.#requests.get(id);
    if (pending === undefined) return;
    this.#requests.delete(id);
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    if (pending.onAbort !== undefined) {
      pending.signal?.removeEventListener("abort", pending.onAbort);
    }
    // The fifo timer stays armed: it fires at most once per timeout period and re-arms for the
    // oldest request still waiting, instead of a timer call per request.
    const fifo = this.#fifo;
    if (fifo[this.#fifoHead] === id) {
      // Answers mostly come in order: drop settled ids from the head as they go.
      let head = this.#fifoHead + 1;
      while (head < fifo.length && !this.#requests.has(fifo[head]!)) head++;
      this.#fifoHead = head;
      if (head === fifo.length || head > 4096) this.#compactFifo();
    } else if (fifo.length - this.#fifoHead > 2 * this.#requests.size + 1024) {
      this.#compactFifo();
    }
  }

  #onTick(): void {
    if (this.#closed) return;
    const now = performance.now();
    const late = now - this.#lastTick - this.#tickMs;
    this.#lastTick = now;
    if (late > this.#tickMs) {
      // The event loop was blocked (a CPU-bound burst): that time says nothing about the peer,
      // so it does not count towards any timeout.
      this.#lastReceived += late;
      this.#lastActivity += late;
      if (this.#writeStartedAt > 0) this.#writeStartedAt += late;
      return;
    }
    if (this.#active) {
      // Messages mark activity with a flag; the clock is read here, once per tick. An idle
      // close therefore comes at most one tick (a quarter of the idle timeout) late.
      this.#active = false;
      this.#lastActivity = now;
    }
    if (
      this.#writeTimeoutMs > 0 && this.#writeStartedAt > 0 &&
      now - this.#writeStartedAt > this.#writeTimeoutMs
    ) {
      this.#fail(
        new ProtocolError("Timeout", `Write made no progress for ${this.#writeTimeoutMs} ms`),
      );
      return;
    }
    if (
      this.#idleMs > 0 && now - this.#lastActivity > this.#idleMs && this.#inflightCount === 0 &&
      this.#requests.size === 0
    ) {
      log.debug("Connection {id} idle for {ms} ms: closing", { id: this.id, ms: this.#idleMs });
      void this.close({ code: CloseCode.IdleTimeout, reason: "idle timeout" });
      return;
    }
    if (this.#heartbeatMs > 0 && now - this.#lastReceived >= this.#heartbeatMs) {
      const missed = Math.floor((now - this.#lastReceived) / this.#heartbeatMs);
      if (missed > 3) {
        this.#fail(new ProtocolError("Timeout", `Peer missed ${missed - 1} heartbeats`));
        return;
      }
      if (missed > this.#missedPings && !this.#closing) {
        this.#missedPings = missed;
        this.#pingSentAt = now;
        this.#enqueue({ type: "ping" }, false);
      }
    }
    for (const [id, entry] of this.#inflight) {
      if (entry.expiresAt < now) {
        abortContext(entry, new ProtocolError("Timeout", `Request ${id} passed its deadline`));
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  async #drainInflight(): Promise<void> {
    // Handle what was already received, then wait for handlers and ordered replies.
    while (
      (this.#pendingIndex < this.#pending.length || this.#inflightCount > 0) && !this.#closed
    ) {
      if (this.#pendingIndex < this.#pending.length && !this.#mustPause()) {
        const message = this.#pending[this.#pendingIndex]!;
        this.#pending[this.#pendingIndex++] = undefined as unknown as Message;
        this.#onMessage(message);
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  #closedError(): ProtocolError {
    return new ProtocolError("ConnectionClosed", "Connection is closed", {
      ...(this.#error === undefined ? {} : { cause: this.#error }),
    });
  }

  /**
   * Ends the connection after `error`, telling the peer why with a CLOSE (docs/PROTOCOL.md,
   * "CLOSE") when the failure allows one.
   */
  #fail(error: ProtocolError): void {
    if (this.#closed) return;
    this.#destroy(error, closeCodeFor(error));
  }

  /**
   * The last bytes to write before the socket closes after a failure: a CLOSE record with
   * `code` (secure mode) or a `disconnect` (plaintext), when the channel is usable and no write
   * is in progress (a second write could interleave with it); otherwise nothing.
   */
  #farewell(error: ProtocolError, code: number | undefined): Uint8Array | undefined {
    if (code === undefined || this.#writing) return undefined;
    try {
      const channel = this.#channel;
      if (channel === null) return encodePackets([{ version: 2, payload: DISCONNECT_BATCH }]);
      if (channel.failure?.code === "AuthenticationFailed" || channel.closeSent) return undefined;
      if (code === CloseCode.LimitExceeded && channel.sendNonce + 2 > MAX_RECORD_NONCE) {
        code = CloseCode.KeyExhausted;
      }
      const records = channel.sealClose(code, closeReason(error.message));
      return encodePackets(records.map((payload) => ({ version: 2, payload })));
    } catch {
      return undefined;
    }
  }

  #destroy(error: ProtocolError | undefined, closeCode?: number): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing = true;
    error ??= this.#peerClose;
    this.#error = error;
    const farewell = error === undefined ? undefined : this.#farewell(error, closeCode);
    if (error !== undefined) {
      log.debug("Connection {id} closed: {error}", { id: this.id, error: error.message });
      if (this.#channel !== null && error.code !== "AuthenticationFailed") {
        this.#channel.abort(error);
      }
    }
    if (this.#watchdog !== undefined) leaveTicker(this.#tickMs, this.#watchdog);
    if (this.#fifoTimer !== undefined) clearTimeout(this.#fifoTimer);
    this.#fifoTimer = undefined;
    const closing = farewell === undefined
      ? Promise.resolve(closeQuietly(this.#conn))
      : this.#writeFarewell(farewell);
    const failure = error ??
      new ProtocolError("ConnectionClosed", "Connection closed before the answer");
    for (const [id, pending] of this.#requests) {
      this.#requests.delete(id);
      if (pending.timer !== undefined) clearTimeout(pending.timer);
      if (pending.onAbort !== undefined) {
        pending.signal?.removeEventListener("abort", pending.onAbort);
      }
      pending.reject(
        new ProtocolError(
          "ConnectionClosed",
          `Connection closed before request ${id} was answered`,
          {
            cause: failure,
          },
        ),
      );
    }
    this.#fifo = [];
    this.#fifoHead = 0;
    for (const entry of this.#inflight.values()) {
      abortContext(entry, new ProtocolError("ConnectionClosed", "Connection closed"));
    }
    for (const waiter of this.#receiveWaiters.splice(0)) waiter(null);
    const capacity = this.#capacityWaiter;
    this.#capacityWaiter = null;
    capacity?.();
    for (const waiter of this.#flushWaiters.splice(0)) waiter();
    void closing.then(() => this.#resolveClosed(error));
  }

  /** Writes the farewell record within a short time limit, then closes the socket. */
  async #writeFarewell(data: Uint8Array): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#conn.write(data),
        new Promise((resolve) => (timer = setTimeout(resolve, FAREWELL_TIMEOUT_MS))),
      ]);
    } catch {
      // The peer is gone: nothing to tell it.
    } finally {
      clearTimeout(timer);
      closeQuietly(this.#conn);
    }
  }
}

/** How long the CLOSE written after a failure may take before the socket closes anyway. */
const FAREWELL_TIMEOUT_MS = 1000;

/** A batch of one `disconnect` message: the plaintext farewell. */
const DISCONNECT_BATCH = encodeBatch([{ type: "disconnect" }]);

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** The CLOSE reason for `text`: cut to the 123 UTF-8 bytes a CLOSE record can carry. */
function closeReason(text: string): string {
  let reason = text;
  while (new TextEncoder().encode(reason).length > 123) reason = reason.slice(0, -1);
  return reason;
}

/** Whether a message is a heartbeat (not activity for the idle timeout). */
function isHeartbeat(message: Message): boolean {
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

/** Lets the other tasks of the event loop run (a macrotask turn, not a microtask). */
function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * One interval per tick length drives the watchdogs of every connection that uses it: a timer
 * per connection costs about 1.5 KiB each (measured with 10,000 idle connections), and a
 * daemon's connections share their settings, so they share one timer. The interval is cleared
 * when its last connection leaves.
 */
const tickers = new Map<
  number,
  { timer: ReturnType<typeof setInterval>; members: Set<() => void> }
>();

function joinTicker(ms: number, onTick: () => void): void {
  let ticker = tickers.get(ms);
  if (ticker === undefined) {
    const members = new Set<() => void>();
    const timer = setInterval(() => {
      for (const member of members) {
        try {
          member();
        } catch (error) {
          log.error("Connection watchdog failed: {error}", { error });
        }
      }
    }, ms);
    ticker = { timer, members };
    tickers.set(ms, ticker);
  }
  ticker.members.add(onTick);
}

function leaveTicker(ms: number, onTick: () => void): void {
  const ticker = tickers.get(ms);
  if (ticker === undefined) return;
  ticker.members.delete(onTick);
  if (ticker.members.size === 0) {
    clearInterval(ticker.timer);
    tickers.delete(ms);
  }
}

const NEVER_ABORTED: AbortSignal = new AbortController().signal;

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

/** Writes a version-2 packet header announcing `length` payload bytes at `offset`. */
function writeHeader(out: Uint8Array, offset: number, length: number): void {
  out[offset] = 0x4e;
  out[offset + 1] = 0x50;
  out[offset + 2] = 0x52;
  out[offset + 3] = 0x4f;
  out[offset + 4] = 2;
  out[offset + 5] = length >>> 24;
  out[offset + 6] = (length >>> 16) & 0xff;
  out[offset + 7] = (length >>> 8) & 0xff;
  out[offset + 8] = length & 0xff;
}

function remoteAddrOf(conn: Deno.Conn): Deno.Addr | undefined {
  try {
    return conn.remoteAddr;
  } catch {
    return undefined;
  }
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`Cannot use ${name} "${value}": it must be a positive number`);
  }
  return value;
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(`Cannot use ${name} "${value}": it must be zero or a positive number`);
  }
  return value;
}

function minPositive(...values: number[]): number {
  let min = 0;
  for (const v of values) if (v > 0 && (min === 0 || v < min)) min = v;
  return min;
}

function isClosedSocket(error: unknown): boolean {
  return error instanceof ProtocolError && error.code === "ConnectionClosed";
}

/** Wraps anything thrown into a ProtocolError. */
export function toProtocolError(error: unknown): ProtocolError {
  if (error instanceof ProtocolError) return error;
  return new ProtocolError("Internal", `Unexpected failure: ${String(error)}`, { cause: error });
}

function withSignal<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  what: string,
): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    return Promise.reject(
      new ProtocolError("Cancelled", `${what} was cancelled`, { cause: signal.reason }),
    );
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(new ProtocolError("Cancelled", `${what} was cancelled`, { cause: signal.reason }));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
