/**
 * A live protocol connection over a `Deno.Conn` after its handshake: the read loop and the
 * lifecycle, composed of small parts (docs/ARCHITECTURE.md):
 *
 * - {@linkcode FrameReader} reads batches of packets; each is opened by the `SecureChannel`
 *   (secure mode) and decoded into messages, at most a bounded amount of work per turn;
 * - a {@linkcode MessageRouter} hands each message to the part that handles its family:
 *   {@linkcode RequestTable} (answers to our numbered requests), {@linkcode HandlerQueue}
 *   (the dispatcher's work, ordered replies), {@linkcode ReceiveQueue} (what the application
 *   receives), {@linkcode Liveness} (heartbeats);
 * - the {@linkcode Outbox} writes everything queued in one turn with ONE `conn.write`.
 *
 * @module
 */

import type { PeerCertificateInfo } from "../transport/peer_certificate.ts";
import type { BodyCompressor } from "../core/batch.ts";
import {
  encodedMessageSize,
  ErrorCodes,
  type GoAwayMessage,
  INITIAL_BULK_WINDOW,
  type Message,
  opcodeOf,
} from "../core/message.ts";
import type { Packet } from "../core/packet.ts";
import { ProtocolError, toProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import { type Dispatcher, logHandlerFailure } from "../protocol/dispatcher.ts";
import { CloseCode, MAX_RECORD_NONCE, type SecureChannel } from "../secure/channel.ts";
import { FEATURE_MULTIPLEX } from "../secure/hello.ts";
import {
  type CloseOptions,
  type ConnectionOptions,
  type RequestOptions,
  resolveLimits,
  type SessionInfo,
} from "./connection_options.ts";
import type { FrameReader } from "./frame_reader.ts";
import { HandlerQueue, type HandlerQueueHost } from "./handler_queue.ts";
import { Liveness, type LivenessHost } from "./liveness.ts";
import { MessageRouter } from "./message_router.ts";
import { GRANT_STEP, Outbox, type OutboxHost, type StreamLane } from "./outbox.ts";
import { Reassembler } from "./reassembly.ts";
import { type StreamSettings, StreamTable, type StreamTableHost } from "./streams.ts";
import type { HandlerContext } from "../protocol/dispatcher.ts";
import type { OpenStreamOptions, Stream } from "../protocol/stream.ts";
import { RECORD_OVERHEAD, RecordEncoder } from "../secure/record_encoder.ts";
import { closeCodeFor, closeReason, PeerClosedError } from "./peer_closed_error.ts";
import { ReceiveQueue } from "./receive_queue.ts";
import { messageReadable, messageWritable } from "./connection_streams.ts";
import {
  RecordDecoder,
  type RecordDecoderHost,
  RECORDS_PER_TURN,
} from "../secure/record_decoder.ts";
import { abortable, waitAtMost, yieldImmediate, yieldTurn } from "../util/async.ts";
import { closeQuietly } from "../util/resource.ts";
import { RequestTable } from "./request_table.ts";
import { ViolationCounter } from "./violations.ts";
import type { ConnectionObserver, ConnectionStats } from "./connection_stats.ts";
import type { CompressionStats } from "../compression/policy.ts";

export { PeerClosedError } from "./peer_closed_error.ts";
export { RemoteError } from "./remote_error.ts";
export type {
  CloseOptions,
  ConnectionOptions,
  MultiplexOptions,
  RequestOptions,
  SessionInfo,
} from "./connection_options.ts";

/**
 * Options of {@linkcode Connection.drain}.
 *
 * @example Drain within two seconds for a deployment
 * ```ts
 * import type { DrainOptions } from "@npro/network-protocol";
 *
 * const options: DrainOptions = { timeoutMs: 2000, reason: "deploying" };
 * // await connection.drain(options);
 * ```
 */
export interface DrainOptions {
  /** How long to wait for requests and streams in progress before closing (default 10000 ms). */
  timeoutMs?: number;
  /** The reason sent in GOAWAY and CLOSE (default `"draining"`). */
  reason?: string;
  /** The CLOSE code at the end (default `CloseCode.GoingAway`, 1). */
  code?: number;
}

const log = logger("connection");

let nextConnectionId = 1;
/**
 * Messages handled per turn of the event loop before a connection yields to the others (the
 * records of one read are opened in slices likewise: RECORDS_PER_TURN). Honest reads rarely
 * hold this many, so the yield costs them nothing.
 */
const MESSAGES_PER_TURN = 4096;
/** How long the CLOSE written after a failure may take before the socket closes anyway. */
const FAREWELL_TIMEOUT_MS = 1000;
/** How long a graceful close waits by default. */
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

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
  readonly #channel: SecureChannel | null;
  readonly #dispatcher: Dispatcher | undefined;
  readonly #compressor: BodyCompressor | undefined;
  readonly #backpressureLimit: number;
  readonly #maxOutbound: number;
  readonly #responseMs: number;
  readonly #maxViolations: number;
  readonly #role: "client" | "server";
  /** Both sides negotiated multiplexing: fragments, streams and GOAWAY. */
  readonly #multiplex: boolean;
  readonly #streamSettings: StreamSettings;
  /** The largest message this side accepts (its own max_message). */
  readonly #maxInbound: number;
  /** Made with the first stream: most connections have none. */
  #streamTable: StreamTable | undefined;
  /** Made with the first fragment. */
  #reassembler: Reassembler | undefined;
  /** The highest request id the peer sent (GOAWAY's last request). */
  #lastRequestId = 0;
  /** The bulk window granted to the peer and not used yet, and what it used since the last grant. */
  #bulkCredit = INITIAL_BULK_WINDOW;
  #bulkUnacked = 0;
  /** The peer will send nothing more; a close waiting for window grants stops waiting. */
  #peerEnded = false;
  #wakeOnPeerEnd: (() => void) | undefined;
  /** GOAWAY sent (this side drains) and received (the peer drains). */
  #goAwaySent: GoAwayMessage | undefined;
  #goAwayReceived: GoAwayMessage | undefined;

  // The parts.
  readonly #outbox: Outbox;
  readonly #encoder: RecordEncoder;
  #requestTable: RequestTable | undefined;
  /** Whether the dispatcher answers PING itself (otherwise the connection does). */
  readonly #hasPing: boolean;
  readonly #handlers: HandlerQueue | undefined;
  readonly #inbox: ReceiveQueue;
  readonly #liveness: Liveness;

  /** Opens and decodes packets; holds the messages not handled yet (capacity ran out). */
  readonly #decoder: RecordDecoder;
  /** Woken when capacity may have come back: the read loop and a draining close wait here. */
  #progressWaiters: (() => void)[] | undefined;
  /** The peer's protocol violations, counted from the first one. */
  #violations: ViolationCounter | undefined;
  /** Told of each handled request and each violation (the daemon's metrics). */
  readonly #observer: ConnectionObserver | undefined;
  /** Times reading paused at a bound. */
  #readPauses = 0;

  // Lifecycle.
  #closing = false;
  #closed = false;
  #error: ProtocolError | undefined;
  /** The peer's CLOSE with a code that reports a failure, once received. */
  #peerClose: PeerClosedError | undefined;
  readonly #closedPromise: Promise<ProtocolError | undefined>;
  #resolveClosed!: (error: ProtocolError | undefined) => void;
  readonly #readLoopDone: Promise<void>;
  #readable: ReadableStream<Message[]> | undefined;
  #writable: WritableStream<Message | Message[]> | undefined;
  readonly #hooks: StreamTableHost;

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
    this.#channel = session.channel;
    this.#dispatcher = options.dispatcher;
    this.#compressor = options.compressor;
    this.#observer = options.observer;
    const limits = resolveLimits(options);
    const maxPayload = limits.maxPayloadSize;
    this.#backpressureLimit = limits.backpressureLimit;
    this.#maxOutbound = limits.maxOutboundBytes;
    this.#responseMs = limits.responseTimeoutMs;
    this.#maxViolations = limits.maxProtocolViolations;
    this.#role = options.role;
    this.#multiplex = (session.features & FEATURE_MULTIPLEX) !== 0;
    this.#streamSettings = limits.streams; // the frame may shrink below, to the send limit
    this.#maxInbound = maxPayload - (session.channel === null ? 0 : RECORD_OVERHEAD);
    // One object answers every part's calls, with its methods on the prototype: no closure per
    // connection and part (idle connections are many; see docs/PERFORMANCE.md, idle memory).
    const hooks = new Connection.#Hooks(this);
    this.#hooks = hooks;
    this.#decoder = new RecordDecoder({
      channel: session.channel,
      decode: {
        // A decrypted record is a fresh buffer: its messages may be views into it (no copy).
        ownedInput: session.channel !== null,
        // The decoded total of one batch is capped at the packet limit, whatever decompressor.
        maxDecodedBytes: maxPayload,
        ...(options.decompressor === undefined ? {} : { decompressor: options.decompressor }),
      },
      host: hooks,
    });
    this.#closedPromise = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#encoder = new RecordEncoder({
      channel: session.channel,
      // The peer's max_message, when it announced one, bounds what this side sends.
      maxPayloadSize: session.remoteMaxMessageSize === undefined ? maxPayload : Math.min(
        maxPayload,
        session.remoteMaxMessageSize + (session.channel === null ? 0 : RECORD_OVERHEAD),
      ),
      compressor: options.compressor,
    });
    // A frame (a fragment chunk, a stream chunk) always fits in a packet of the send limit,
    // however small the peer's max_message: at most half of the largest message.
    const frame = Math.min(limits.streams.frameSize, Math.floor(this.#encoder.maxMessageSize / 2));
    if (frame < limits.streams.frameSize) {
      this.#streamSettings = { ...limits.streams, frameSize: frame };
    }
    this.#outbox = new Outbox({
      conn,
      encoder: this.#encoder,
      maxBytes: this.#maxOutbound,
      host: hooks,
      // A peer that did not negotiate multiplexing gets every message whole.
      frameSize: this.#multiplex ? this.#streamSettings.frameSize : Infinity,
    });
    this.#hasPing = this.#dispatcher?.has("PING") ?? false;

    this.#inbox = new ReceiveQueue(limits.maxReceiveQueue, hooks);
    this.#handlers = this.#dispatcher === undefined ? undefined : new HandlerQueue({
      dispatcher: this.#dispatcher,
      remoteAddr: remoteAddrOf(conn),
      remoteStaticKey: session.remoteStaticKey,
      host: hooks,
      observer: options.observer,
    });
    this.#liveness = new Liveness(hooks, limits.liveness);
    if (this.#multiplex && limits.streams.bulkWindow > INITIAL_BULK_WINDOW) {
      // A window larger than the one every session starts with is granted at once.
      const delta = limits.streams.bulkWindow - INITIAL_BULK_WINDOW;
      this.#bulkCredit += delta;
      this.#outbox.enqueue({ type: "window", delta }, false);
    }
    // Bytes that arrived together with the end of the handshake are parsed by the first read.
    reader.startSession(maxPayload);
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

  /**
   * The peer's TLS certificate (subject, issuer, names, validity, SHA-256 fingerprint, SPKI
   * hash), when the transport is TLS on the `node:tls` backend and the peer presented one:
   * a server sees its client's (mutual TLS), a client its server's. `undefined` otherwise.
   */
  get peerCertificate(): PeerCertificateInfo | undefined {
    return (this.#conn as { peerCertificate?: PeerCertificateInfo }).peerCertificate;
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
    return this.#liveness.rtt;
  }

  /**
   * What this connection moved and did since its handshake: bytes and encrypted records each way,
   * key updates, compression, backpressure pauses and streams. A new snapshot at each call.
   *
   * @example Count the bytes of one round trip
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
   * await client.request({ type: "echo", text: "hello" });
   * const stats = client.connection!.stats();
   * assert.ok(stats.bytesSent > 0 && stats.bytesReceived > 0);
   * assert.ok(stats.recordsSent >= 1);
   * ```
   *
   * @returns The counts.
   */
  stats(): ConnectionStats {
    const channel = this.#channel;
    const compression = (this.#compressor as { stats?: CompressionStats } | undefined)?.stats;
    return {
      bytesReceived: this.#reader.bytesRead,
      bytesSent: this.#outbox.bytesWritten,
      recordsReceived: channel?.receiveNonce ?? 0,
      recordsSent: channel?.sendNonce ?? 0,
      keyUpdatesSent: channel?.keyUpdatesSent ?? 0,
      keyUpdatesReceived: channel?.keyUpdatesReceived ?? 0,
      compressedBodies: compression?.compressed ?? 0,
      compressedBytesIn: compression?.bytesIn ?? 0,
      compressedBytesOut: compression?.bytesOut ?? 0,
      readPauses: this.#readPauses,
      streamsOpened: this.#streamTable?.opened ?? 0,
      streamsOpen: this.#streamTable?.size ?? 0,
    };
  }

  /** Handlers running for the peer right now (numbered and un-numbered, async ones). */
  get inflight(): number {
    return this.#handlers?.running ?? 0;
  }

  /** Bytes queued or being written, including replies held back to keep their order. */
  get outboundBytes(): number {
    return this.#outbox.bytes + (this.#handlers?.heldBytes ?? 0);
  }

  /**
   * The largest encoded message (a request, reply or un-numbered message) this side sends: it
   * fits in one packet of the peer's limit (its `max_message`, else this side's own), after the
   * record's 17 bytes (secure mode) and the batch entry's flags byte and length. Peers with the
   * same packet limit accept the same, so the largest request a server accepts and the largest
   * reply it can send are equal.
   */
  get maxMessageSize(): number {
    return this.#outbox.maxMessageSize;
  }

  /** Whether the connection is closed or closing. */
  get isClosed(): boolean {
    return this.#closing || this.#closed;
  }

  /**
   * Resolves when the connection is closed: with `undefined` after a clean close, or with the
   * error that closed it. Never rejects. Same meaning as `Client.closed()` and
   * `Server.closed()`.
   *
   * @returns A promise of the end.
   */
  closed(): Promise<ProtocolError | undefined> {
    return this.#closedPromise;
  }

  /**
   * The received messages as a readable stream of batches: each chunk is what
   * {@linkcode Connection.receiveBatch} returns (all the messages of one read), so a pipeline
   * pays the stream's per-chunk cost once per read. The stream buffers nothing itself: messages
   * wait in the bounded receive queue, which pauses reading from the socket when full. It closes
   * when the connection closes cleanly and errors with the connection's error when it failed.
   * Cancelling it stops reading through it; the connection stays open (close it with
   * {@linkcode Connection.close}). Like `receive()`, it yields what no dispatcher or pending
   * request takes. The same stream is returned every time.
   *
   * @example Send through the writable stream, receive the replies through the readable one
   * ```ts
   * import {
   *   connect,
   *   Dispatcher,
   *   type Message,
   *   registerStandardHandlers,
   *   serve,
   * } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * await using server = await serve(
   *   { address: "127.0.0.1:0" },
   *   registerStandardHandlers(new Dispatcher()),
   * );
   * const { port } = server.addr as Deno.NetAddr;
   * await using client = await connect({
   *   address: `127.0.0.1:${port}`,
   *   security: { serverKeys: [server.publicKey!] },
   * });
   * const connection = client.connection!;
   *
   * const writer = connection.writable.getWriter();
   * await writer.write([{ type: "echo", text: "a" }, { type: "echo", text: "b" }]);
   * writer.releaseLock();
   * const received: Message[] = [];
   * for await (const batch of connection.readable) {
   *   received.push(...batch);
   *   if (received.length === 2) break;
   * }
   * assert.deepEqual(received, [{ type: "echo", text: "a" }, { type: "echo", text: "b" }]);
   * ```
   */
  get readable(): ReadableStream<Message[]> {
    return this.#readable ??= messageReadable({
      receiveBatch: (signal) => this.receiveBatch(signal),
      failure: () => this.#error,
    });
  }

  /**
   * A writable stream of messages, or of batches of messages, sent as
   * {@linkcode Connection.send} sends them (what is written in one turn goes out in one write).
   * A write waits while half of `maxOutboundBytes` or more are queued or being written, so a
   * producer faster than the peer is paused instead of refused with `LimitExceeded`. Closing the
   * stream waits until everything is written; the connection stays open. The same stream is
   * returned every time.
   *
   * @example Pipe a stream of messages to the server
   * ```ts
   * import { connect, Dispatcher, type Message, serve } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * const seen: string[] = [];
   * const dispatcher = new Dispatcher().register("LOG", (message) => {
   *   if (message.type === "custom") seen.push(new TextDecoder().decode(message.payload));
   *   return { type: "custom", command: "OK", payload: new Uint8Array(0) };
   * });
   * await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
   * const { port } = server.addr as Deno.NetAddr;
   * await using client = await connect({
   *   address: `127.0.0.1:${port}`,
   *   security: { serverKeys: [server.publicKey!] },
   * });
   * const lines: Message[] = ["a", "b", "c"].map((text) => ({
   *   type: "custom",
   *   command: "LOG",
   *   payload: new TextEncoder().encode(text),
   * }));
   * // Closing the writable side waits until everything is written; the connection stays open.
   * await ReadableStream.from(lines).pipeTo(client.connection!.writable);
   * await client.request({ type: "ping" });
   * assert.deepEqual(seen, ["a", "b", "c"]);
   * ```
   */
  get writable(): WritableStream<Message | Message[]> {
    return this.#writable ??= messageWritable(this, this.#maxOutbound / 2);
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
    this.#outbox.enqueue(message, true);
  }

  /**
   * Resolves when everything queued so far has been written to the socket.
   *
   * @param signal Stops waiting (rejects with `Cancelled`).
   */
  flush(signal?: AbortSignal): Promise<void> {
    if (this.#outbox.idle) return Promise.resolve();
    return abortable(this.#outbox.drained(), signal, "Flush");
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
      if (this.#goAwayReceived !== undefined) return this.#requests.request(message, 1, undefined);
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
      if (this.#outbox.pressure > this.#maxOutbound) {
        // Backpressure: wait (within the request's own time limit) until the peer reads.
        return this.#waitForOutbound(timeoutMs, signal).then(() =>
          this.#sendRequest(message, timeoutMs, signal)
        );
      }
      return this.#sendRequest(message, timeoutMs, signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #sendRequest(
    message: Message,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Message> {
    if (this.#closing || this.#closed) return Promise.reject(this.#closedError());
    return this.#requests.request(message, timeoutMs, signal);
  }

  async #waitForOutbound(timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (this.#outbox.pressure > this.#maxOutbound) {
      if (this.#closing || this.#closed) throw this.#closedError();
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new ProtocolError(
          "Timeout",
          `Request could not be written within ${timeoutMs} ms: the peer is not reading`,
        );
      }
      await waitAtMost(this.flush(signal), left);
    }
  }

  /**
   * Opens a stream to the peer's stream handler for `command` (docs/SERVICE.md, "Streams") and
   * resolves once the peer accepted it.
   *
   * @example Stream bytes to a server and read its answer
   * ```ts
   * import { connect, Dispatcher, serve } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * const dispatcher = new Dispatcher().registerStream("UPPER", async (stream) => {
   *   const text = await new Response(stream.readable).text();
   *   const writer = stream.writable.getWriter();
   *   await writer.write(new TextEncoder().encode(text.toUpperCase()));
   *   await writer.close();
   * });
   * await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
   * const { port } = server.addr as Deno.NetAddr;
   * await using client = await connect({
   *   address: `127.0.0.1:${port}`,
   *   security: { serverKeys: [server.publicKey!] },
   * });
   * await using stream = await client.connection!.openStream("UPPER", { timeoutMs: 5000 });
   * const writer = stream.writable.getWriter();
   * await writer.write(new TextEncoder().encode("hello"));
   * await writer.close();
   * assert.equal(await new Response(stream.readable).text(), "HELLO");
   * ```
   *
   * @param command The stream command the peer's dispatcher serves.
   * @param options Metadata for the handler, a signal and the open time limit (default
   * `multiplex.open_timeout`, 10000 ms).
   * @returns The stream.
   * @throws {StreamError} When the peer refused the stream (`LimitExceeded` at its limit,
   * `UnexpectedMessage` for a command it does not serve, `NotProcessed` while it drains) or did
   * not accept it in time (`Timeout`), or when the open was cancelled (`Cancelled`).
   * @throws {ProtocolError} `LimitExceeded` at this side's limit of open streams,
   * `NotProcessed` after the peer's GOAWAY, `ConnectionClosed`, `PolicyViolation` when the peer
   * did not negotiate multiplexing.
   * @throws {TypeError} For an empty command or metadata that is not a `Uint8Array`.
   * @throws {RangeError} For metadata over 16 KiB or a time limit that is not positive.
   */
  openStream(command: string, options: OpenStreamOptions = {}): Promise<Stream> {
    if (this.#closing || this.#closed) return Promise.reject(this.#closedError());
    if (!this.#multiplex) {
      return Promise.reject(
        new ProtocolError(
          "PolicyViolation",
          `Cannot open stream "${command}": the peer did not negotiate multiplexing`,
        ),
      );
    }
    return this.#streams.open(command, options);
  }

  /** Streams open on this connection now (opened by either side). */
  get openStreams(): number {
    return this.#streamTable?.size ?? 0;
  }

  /**
   * Whether the peer sent GOAWAY: it drains, new requests and streams fail with `NotProcessed`.
   */
  get goingAway(): boolean {
    return this.#goAwayReceived !== undefined;
  }

  /**
   * Drains and closes gracefully (what the daemon does to each connection when it shuts down):
   * tells the peer with GOAWAY the last request and stream of its own that will be processed,
   * keeps reading (heartbeats are answered, streams in progress go on, requests and streams the
   * peer sends after that are not processed and the peer fails them with `NotProcessed`), waits
   * until the handlers and streams in progress finished, then closes with CLOSE code 1 (going
   * away). A peer that did not negotiate multiplexing gets no GOAWAY: the connection closes as
   * {@linkcode Connection.close} does.
   *
   * @example Drain a connection of the server
   * ```ts
   * import { connect, Dispatcher, registerStandardHandlers, serve } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * await using server = await serve({ address: "127.0.0.1:0" }, registerStandardHandlers(new Dispatcher()));
   * const { port } = server.addr as Deno.NetAddr;
   * await using client = await connect({
   *   address: `127.0.0.1:${port}`,
   *   security: { serverKeys: [server.publicKey!] },
   *   autoReconnect: false,
   * });
   * await client.request({ type: "ping" });
   * const [connection] = server.connections;
   * await connection!.drain({ reason: "maintenance" });
   * assert.equal(await client.closed(), undefined);
   * ```
   *
   * @param options The time limit, the reason and the CLOSE code.
   */
  async drain(options: DrainOptions = {}): Promise<void> {
    const {
      timeoutMs = DEFAULT_CLOSE_TIMEOUT_MS,
      reason = "draining",
      code = CloseCode.GoingAway,
    } = options;
    if (!(timeoutMs > 0)) {
      throw new RangeError(`Cannot use drain timeout "${timeoutMs}": it must be positive`);
    }
    if (this.#closing || this.#closed) {
      await this.#closedPromise;
      return;
    }
    const started = performance.now();
    if (this.#multiplex && this.#goAwaySent === undefined) {
      // Every request already received is processed: the routed ones and those decoded but not
      // handled yet (capacity ran out).
      let lastRequest = this.#lastRequestId;
      for (const message of this.#decoder.peekPending()) {
        if (message.type === "request" && message.id > lastRequest) lastRequest = message.id;
      }
      const goAway: GoAwayMessage = {
        type: "goaway",
        lastRequest,
        lastStream: this.#streamTable?.goAwaySent() ?? 0,
        code,
        reason: closeReason(reason),
      };
      this.#goAwaySent = goAway;
      this.#outbox.enqueue(goAway, false);
      log.debug("Connection {id} sent GOAWAY (last request {request}, last stream {stream})", {
        id: this.id,
        request: goAway.lastRequest,
        stream: goAway.lastStream,
      });
      // Keep reading until the work in progress is done (or the time is up).
      const deadline = started + timeoutMs;
      while (!this.#closing && !this.#closed && this.#drainBusy()) {
        const left = deadline - performance.now();
        if (left <= 0) break;
        await waitAtMost(this.#progress(), Math.min(left, 50)).catch(() => {});
      }
    }
    const left = Math.max(1, started + timeoutMs - performance.now());
    await this.close({ code, reason, timeoutMs: left });
  }

  /** Work a drain waits for: handlers, held replies, decoded messages, streams. */
  #drainBusy(): boolean {
    return (this.#handlers?.busy ?? false) || this.#decoder.pending ||
      (this.#streamTable?.size ?? 0) > 0;
  }

  /**
   * Receives the next message not taken by a dispatcher or a pending request.
   *
   * @param signal Stops waiting (rejects with `Cancelled`).
   * @returns The message, or `null` once the connection is closed.
   */
  receive(signal?: AbortSignal): Promise<Message | null> {
    return this.#inbox.receive(signal);
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
    return this.#inbox.receiveBatch(signal);
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
   * @param options The CLOSE code and reason, and the time limit (default 10000 ms).
   */
  async close(options: CloseOptions = {}): Promise<void> {
    const {
      reason = "closed",
      code = CloseCode.Normal,
      timeoutMs: limit = DEFAULT_CLOSE_TIMEOUT_MS,
    } = options;
    if (this.#closed) return;
    if (this.#closing) {
      await this.#closedPromise;
      return;
    }
    this.#closing = true;
    this.#inbox.close();
    const timer = setTimeout(() => this.#destroy(undefined), limit);
    try {
      await this.#drainInflight();
      if (!this.#closed) {
        if (this.#channel === null) this.#outbox.enqueue({ type: "disconnect" }, false);
        await this.#outbox.flushNow();
        if (this.#outbox.hasBulk && !this.#peerEnded && !this.#closed) {
          // Fragments and stream data wait for the peer's window grants, which the read loop
          // keeps reading while closing (multiplexing only); the close timer bounds the wait.
          await Promise.race([
            this.#outbox.drained(),
            new Promise<void>((resolve) => (this.#wakeOnPeerEnd = resolve)),
          ]);
          this.#wakeOnPeerEnd = undefined;
        }
        if (this.#channel !== null && !this.#closed && this.#channel.failure === undefined) {
          await this.#outbox.write(this.#encoder.encodeClose(code, closeReason(reason)));
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
        await this.#handleDecoded();
        // What the read brought is granted back with the replies it caused, before the next
        // read: a sender keeping little bulk in flight beside small messages gets its window
        // back at once (docs/PROTOCOL.md, "Bulk window").
        if (this.#bulkUnacked > 0 && !this.#closed) this.#grantBack();
        // Closing stops reading, except with multiplexing: window grants must still come in for
        // the fragments and stream data written before the CLOSE.
        if (this.#closed || (this.#closing && !this.#multiplex)) return;
        if (this.#mustPause()) {
          this.#readPauses++;
          await this.#progress();
          continue;
        }
        const packets = await this.#reader.read();
        if (packets === null) {
          this.#onEnd();
          return;
        }
        this.#liveness.received();
        await this.#decode(packets);
      }
    } catch (error) {
      if (this.#closing && !this.#closed && isClosedSocket(error)) return;
      this.#fail(toProtocolError(error));
    }
  }

  #mustPause(): boolean {
    const handlers = this.#handlers;
    const held = handlers === undefined ? 0 : handlers.heldBytes;
    return (handlers !== undefined && handlers.load >= this.#backpressureLimit) ||
      this.#outbox.pressure + held > this.#maxOutbound ||
      this.#inbox.full;
  }

  /** Resolves at the next sign that capacity may have come back (or at close). */
  #progress(): Promise<void> {
    return new Promise<void>((resolve) => (this.#progressWaiters ??= []).push(resolve));
  }

  /** A handler finished, a write completed or the application took messages. */
  #onProgress(): void {
    if (this.#progressWaiters === undefined || this.#mustPause()) return;
    const waiters = this.#progressWaiters;
    this.#progressWaiters = undefined;
    for (const waiter of waiters) waiter();
  }

  /** Handles decoded messages while there is capacity; the rest waits (bounded by one read). */
  async #handleDecoded(): Promise<void> {
    let handled = 0;
    const decoder = this.#decoder;
    while (decoder.pending) {
      if (this.#closed) return;
      if (this.#mustPause()) {
        this.#readPauses++;
        await this.#progress();
        continue;
      }
      if (++handled > MESSAGES_PER_TURN) {
        handled = 0;
        await yieldTurn();
        continue;
      }
      Connection.#router.route(this, decoder.take());
    }
  }

  /**
   * Whether bulk comes in (a fragmented message in progress, an open stream): then a small
   * record ahead of large ones is handed over before they are opened (RecordDecoder.decode).
   */
  #receivingBulk(): boolean {
    return (this.#reassembler?.bytes ?? 0) > 0 || (this.#streamTable?.size ?? 0) > 0;
  }

  /** Decodes the packets of one read, in slices of bounded work. */
  async #decode(packets: Packet[]): Promise<void> {
    let start = 0;
    let next = this.#decoder.decode(packets, 0, this.#receivingBulk());
    while (next < packets.length && !this.#closed) {
      await this.#handleDecoded();
      if (next < start + RECORDS_PER_TURN) {
        // A small record ahead of bulk (a reply, a PONG): its receiver runs before the bulk
        // behind it is opened (RecordDecoder.decode).
        await yieldImmediate();
      } else {
        // A read holds up to about 10,000 tiny records: let the other connections run.
        await yieldTurn();
      }
      if (this.#closed) return;
      start = next;
      next = this.#decoder.decode(packets, next, this.#receivingBulk());
    }
    const close = this.#decoder.closeReceived;
    if (close !== undefined) this.#peerDone();
    if (close !== undefined && !this.#closing && !this.#closed) {
      log.debug("Connection {id} received CLOSE {code} {reason}", {
        id: this.id,
        code: close.code,
        reason: close.reason,
      });
      if (close.code !== CloseCode.Normal && close.code !== CloseCode.GoingAway) {
        // Codes 0 and 1 are clean ends; the others say what went wrong.
        this.#peerClose = new PeerClosedError(close.code, close.reason);
      }
      this.#onPeerClose();
    }
  }

  /** What the parts call back into: one per connection, its methods shared on the prototype. */
  static readonly #Hooks = class ConnectionHooks
    implements OutboxHost, HandlerQueueHost, LivenessHost, RecordDecoderHost, StreamTableHost {
    readonly c: Connection;

    constructor(c: Connection) {
      this.c = c;
    }

    // Progress: capacity may have come back.
    onWritten(): void {
      this.c.#onProgress();
    }
    onSettled(): void {
      this.c.#onProgress();
    }
    onTaken(): void {
      this.c.#onProgress();
    }

    onWriteError(error: ProtocolError): void {
      this.c.#fail(error);
    }
    onActivity(): void {
      this.c.#liveness.markActive();
    }
    reply(message: Message): void {
      this.c.#reply(message);
    }
    onUnorderedFailure(message: Message, error: unknown): void {
      this.c.#handlerFailed(message, error);
    }
    onViolation(kind: string, detail: string): boolean {
      this.c.#violation(kind, detail);
      return this.c.#closed;
    }

    // Liveness.
    get writeStartedAt(): number {
      return this.c.#outbox.writeStartedAt;
    }
    get busy(): boolean {
      return (this.c.#handlers?.busy ?? false) || (this.c.#requestTable?.size ?? 0) > 0 ||
        (this.c.#streamTable?.size ?? 0) > 0;
    }
    get closing(): boolean {
      return this.c.#closing;
    }
    sendPing(): void {
      this.c.#outbox.enqueue({ type: "ping" }, false);
    }
    expire(now: number): void {
      this.c.#handlers?.expire(now);
    }
    onIdle(): void {
      void this.c.close({ code: CloseCode.IdleTimeout, reason: "idle timeout" });
    }
    onDead(error: ProtocolError): void {
      this.c.#fail(error);
    }

    // Streams.
    send(message: Message): void {
      if (!this.c.#closed) this.c.#outbox.enqueue(message, false);
    }
    sendData(lane: StreamLane, message: Message, size: number): void {
      this.c.#outbox.enqueueStream(lane, message, size);
    }
    dropLane(lane: StreamLane): void {
      this.c.#outbox.dropStream(lane);
    }
    room(): Promise<void> | undefined {
      const c = this.c;
      return c.#outbox.pressure > c.#maxOutbound / 2 ? c.#outbox.drained() : undefined;
    }
    violation(detail: string): void {
      this.c.#fail(new ProtocolError("PolicyViolation", detail));
    }
    onStreamEnded(): void {
      this.c.#onProgress();
    }
    get dispatcher(): Dispatcher | undefined {
      return this.c.#dispatcher;
    }
    context(signal: AbortSignal): HandlerContext {
      const c = this.c;
      const context: HandlerContext = { signal };
      if (c.session.remoteStaticKey !== undefined) {
        context.remoteStaticKey = c.session.remoteStaticKey;
      }
      const addr = remoteAddrOf(c.#conn);
      if (addr !== undefined) context.remoteAddr = addr;
      return context;
    }
  };

  /**
   * The routes of the built-in message families, shared by every connection. A new family
   * (streams, cluster probes) registers its message types here.
   */
  static readonly #router: MessageRouter<Connection> = new MessageRouter<Connection>(
    // Un-numbered application messages: the dispatcher's, else the application's.
    (c, message) => {
      c.#liveness.markActive();
      if (c.#handlers !== undefined) c.#handlers.handleOrdered(message);
      else c.#inbox.deliver(message);
    },
  )
    .register("pong", (c) => c.#liveness.pong())
    // A heartbeat: answered, but it is not activity (the idle timeout ignores it).
    .register("ping", (c, message) => {
      if (c.#hasPing) c.#handlers!.handleOrdered(message);
      else c.#outbox.enqueue({ type: "pong" }, false);
    })
    .register("response", (c, message) => c.#onAnswer(message))
    .register("error", (c, message) => c.#onAnswer(message))
    .register("cancel", (c, message) => c.#handlers?.cancel(message.id))
    .register("disconnect", (c) => c.#onPeerClose())
    // A session ticket (docs/PROTOCOL.md, "Session resumption"): only after the server announced
    // one in the handshake, at most once.
    .register("ticket", (c, message) => {
      if (c.session.ticketReceiver?.accept(message) !== true) {
        c.#violation(
          "unexpected session ticket",
          "Received a session ticket that was not announced",
        );
      }
    })
    // Multiplexing (docs/PROTOCOL.md, "Fragments", "Streams", "GOAWAY"): only when negotiated.
    .register("fragment", (c, message) => {
      if (!c.#multiplex) return c.#notNegotiated(message);
      if (!c.#takeBulk(message.chunk.length)) return;
      const whole = (c.#reassembler ??= new Reassembler(c.#maxInbound)).push(message);
      // Stream data that came in fragments was counted against the bulk window as fragments.
      if (whole?.type === "stream_data") c.#onStream(whole);
      else if (whole !== undefined) Connection.#router.route(c, whole);
    })
    .register("stream_open", (c, message) => c.#onStream(message))
    .register("stream_accept", (c, message) => c.#onStream(message))
    .register("stream_data", (c, message) => {
      if (c.#multiplex && !c.#takeBulk(message.data.length)) return;
      c.#onStream(message);
    })
    .register("window", (c, message) => {
      if (!c.#multiplex) return c.#notNegotiated(message);
      if (!c.#outbox.grant(message.delta)) {
        c.#fail(new ProtocolError("PolicyViolation", "Peer granted a bulk window beyond 4 GiB"));
      }
    })
    .register("stream_end", (c, message) => c.#onStream(message))
    .register("stream_window", (c, message) => c.#onStream(message))
    .register("stream_reset", (c, message) => c.#onStream(message))
    .register("goaway", (c, message) => {
      if (!c.#multiplex) return c.#notNegotiated(message);
      if (c.#goAwayReceived !== undefined) return;
      c.#goAwayReceived = message;
      log.debug("Connection {id} received GOAWAY (last request {request}, last stream {stream})", {
        id: c.id,
        request: message.lastRequest,
        stream: message.lastStream,
      });
      c.#requestTable?.goAway(message.lastRequest, message.reason);
      c.#streamTable?.goAwayReceived(message.lastStream);
    })
    .register("request", (c, message) => {
      if (message.id > c.#lastRequestId) c.#lastRequestId = message.id;
      // Draining: requests beyond the GOAWAY's last one are not processed (the peer fails them).
      if (c.#goAwaySent !== undefined && message.id > c.#goAwaySent.lastRequest) return;
      const isPing = message.message.type === "ping";
      if (!isPing) c.#liveness.markActive();
      if (c.#handlers !== undefined && (!isPing || c.#hasPing)) {
        c.#handlers.handleRequest(message);
      } else if (isPing) {
        c.#outbox.enqueue({ type: "response", id: message.id, message: { type: "pong" } }, false);
      } else {
        c.#outbox.enqueue({
          type: "error",
          id: message.id,
          code: ErrorCodes.UnknownOpcode,
          text: "This side handles no requests",
        }, false);
      }
    });

  /**
   * Counts `n` bytes of bulk (fragment chunks, stream data) the peer sent against the window
   * this side granted, and grants them back once 32 KiB (or a quarter of the window, if less)
   * accumulated, the rest at the end of the read: they were received and handed on
   * (docs/PROTOCOL.md, "Bulk window").
   *
   * @returns `false` when the peer sent more than its window (the connection fails).
   */
  #takeBulk(n: number): boolean {
    if (n > this.#bulkCredit) {
      this.#fail(
        new ProtocolError(
          "PolicyViolation",
          `Peer sent "${n}" bytes of bulk with a window of "${this.#bulkCredit}"`,
        ),
      );
      return false;
    }
    this.#bulkCredit -= n;
    this.#bulkUnacked += n;
    if (this.#bulkUnacked >= Math.min(GRANT_STEP, this.#streamSettings.bulkWindow / 4)) {
      this.#grantBack();
    }
    return true;
  }

  /** Grants the peer back the bulk it sent since the last grant. */
  #grantBack(): void {
    const delta = this.#bulkUnacked;
    this.#bulkUnacked = 0;
    this.#bulkCredit += delta;
    this.#outbox.enqueue({ type: "window", delta }, false);
  }

  #onStream(message: Message): void {
    if (!this.#multiplex) {
      this.#notNegotiated(message);
      return;
    }
    this.#liveness.markActive();
    this.#streams.onMessage(message);
  }

  /** A multiplexing message from a peer that did not negotiate multiplexing. */
  #notNegotiated(message: Message): void {
    this.#fail(
      new ProtocolError(
        "PolicyViolation",
        `Peer sent a "${message.type}" message without negotiating multiplexing`,
      ),
    );
  }

  #onAnswer(message: Extract<Message, { type: "response" | "error" }>): void {
    this.#liveness.markActive();
    // No table yet: nothing was ever asked, so this is a late or stray answer.
    this.#requestTable?.answer(message);
  }

  /** The streams, made with the first one. */
  get #streams(): StreamTable {
    return this.#streamTable ??= new StreamTable(
      this.#hooks,
      this.#streamSettings,
      this.#role,
    );
  }

  /** The table of requests this side sent, made with the first one (servers rarely send any). */
  get #requests(): RequestTable {
    return this.#requestTable ??= new RequestTable(
      (message) => this.#outbox.enqueue(message, false),
      this.#responseMs,
    );
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
    this.#observer?.violation(kind);
    this.#violations ??= new ViolationCounter(this.#maxViolations);
    const error = this.#violations.record(this.id, kind, detail);
    if (error !== undefined) this.#fail(error);
  }

  /**
   * Queues a handler's reply. A reply larger than the peer accepts fails its own request (an
   * `error` with code `TooLarge` for a numbered one; logged and dropped for an un-numbered
   * one), never the connection.
   */
  #reply(message: Message): void {
    if (this.#closed) return;
    const size = encodedMessageSize(message);
    if (this.#encoder.fits(size)) {
      this.#outbox.enqueue(message, false, size);
      return;
    }
    const text = `Reply of "${size}" bytes exceeds the largest message "${this.maxMessageSize}"`;
    if (message.type === "response") {
      this.#outbox.enqueue(
        { type: "error", id: message.id, code: ErrorCodes.TooLarge, text },
        false,
      );
    } else {
      logHandlerFailure(opcodeOf(message), new ProtocolError("OversizedPacket", text), this.id);
    }
  }

  #onPeerClose(): void {
    this.#peerDone();
    // The peer will send nothing more: answer what we have, then close.
    if (!this.#closing && !this.#closed) void this.close({ reason: "peer closed" });
  }

  /** The peer sends nothing more (CLOSE, disconnect, end of stream): no window grant will come. */
  #peerDone(): void {
    this.#peerEnded = true;
    const wake = this.#wakeOnPeerEnd;
    this.#wakeOnPeerEnd = undefined;
    wake?.();
  }

  #onEnd(): void {
    this.#peerDone();
    if (this.#closed) return;
    if (this.#channel !== null && this.#channel.closeReceived === undefined && !this.#closing) {
      this.#channel.finish(); // Throws Truncated: end of stream without CLOSE.
    }
    if (!this.#closing) this.#destroy(undefined);
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  /** Handles what was already received, then waits for handlers and ordered replies. */
  async #drainInflight(): Promise<void> {
    while (
      (this.#decoder.pending || (this.#handlers?.busy ?? false)) && !this.#closed
    ) {
      if (this.#decoder.pending && !this.#mustPause()) {
        Connection.#router.route(this, this.#decoder.take());
        continue;
      }
      // Woken by a handler that finished (or a write, or the close itself): no polling.
      await this.#progress();
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
    if (code === undefined || this.#outbox.writing) return undefined;
    try {
      const channel = this.#channel;
      if (channel === null) return this.#encoder.encodeClose(code);
      if (channel.failure?.code === "AuthenticationFailed" || channel.closeSent) return undefined;
      if (code === CloseCode.LimitExceeded && channel.sendNonce + 2 > MAX_RECORD_NONCE) {
        code = CloseCode.KeyExhausted;
      }
      return this.#encoder.encodeClose(code, closeReason(error.message));
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
    this.#liveness.stop();
    const closing = farewell === undefined
      ? Promise.resolve(closeQuietly(this.#conn))
      : this.#writeFarewell(farewell);
    this.#requestTable?.close(
      error ?? new ProtocolError("ConnectionClosed", "Connection closed before the answer"),
    );
    this.#handlers?.close();
    this.#streamTable?.close(
      error ?? new ProtocolError("ConnectionClosed", "Connection closed before the stream ended"),
    );
    this.#reassembler?.clear();
    this.#inbox.close();
    this.#outbox.close();
    const waiters = this.#progressWaiters;
    this.#progressWaiters = undefined;
    if (waiters !== undefined) { for (const waiter of waiters) waiter(); }
    void closing.then(() => this.#resolveClosed(error));
  }

  /** Writes the farewell record within a short time limit, then closes the socket. */
  async #writeFarewell(data: Uint8Array): Promise<void> {
    try {
      await waitAtMost(this.#conn.write(data), FAREWELL_TIMEOUT_MS);
    } catch {
      // The peer is gone: nothing to tell it.
    } finally {
      closeQuietly(this.#conn);
    }
  }
}

function remoteAddrOf(conn: Deno.Conn): Deno.Addr | undefined {
  try {
    return conn.remoteAddr;
  } catch {
    return undefined;
  }
}

function isClosedSocket(error: unknown): boolean {
  return error instanceof ProtocolError && error.code === "ConnectionClosed";
}
