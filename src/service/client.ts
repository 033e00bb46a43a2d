/**
 * The client: connects with a time limit, runs the handshake, and offers requests, messages and
 * a status stream, with automatic reconnection (exponential backoff with full jitter).
 *
 * @module
 */

import type { NetworkConfig, NetworkConfigInput } from "../config/mod.ts";
import type { Message } from "../core/message.ts";
import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import type { Dispatcher } from "../protocol/dispatcher.ts";
import type { CompressionSettings } from "../compression/policy.ts";
import { fingerprint } from "../secure/keys.ts";
import { type ClientSecurityOptions, resolveClientPolicy } from "../secure/policy.ts";
import type { TlsClientOptions } from "../transport/tls.ts";
import type { Transport } from "../transport/types.ts";
import { transportFromConfig } from "./transport_config.ts";
import { Connection, type RequestOptions } from "./connection.ts";
import { multiplexFromConfig } from "./connection_options.ts";
import type { OpenStreamOptions, Stream } from "../protocol/stream.ts";
import {
  clientSecurityFromConfig,
  compressionFromConfig,
  establish,
  withAddress,
} from "./session.ts";
import { deadline, sleep } from "../util/async.ts";
import { backoffDelay } from "./backoff.ts";
import { EventStream } from "../util/event_stream.ts";

const log = logger("client");

/** Options of {@linkcode connect}. */
export interface ConnectOptions {
  /** The configuration (complete or partial); its `client`, `transport`, `security` and `compression` sections apply. */
  config?: NetworkConfig | NetworkConfigInput;
  /** The server address; overrides `config.client.address`. */
  address?: string;
  /** A transport to use instead of the one `config.transport.kind` names. */
  transport?: Transport;
  /** TLS client options for `transport.kind = "tls"` (overrides the config's CA path). */
  tls?: TlsClientOptions;
  /**
   * Security options; override what the configuration gives (pins, static key, psk, trust on
   * first use). Pins and trust on first use exclude each other: `serverKeys` given here replace
   * the configuration's `known_servers_path`, and `knownServers` given here replace its
   * `server_keys`.
   */
  security?: ClientSecurityOptions;
  /** Compression settings; override the configuration's `compression` section. */
  compression?: CompressionSettings;
  /** Handles requests and messages the server sends first (optional). */
  dispatcher?: Dispatcher;
  /** Reconnect after the connection drops (default `client.auto_reconnect`). */
  autoReconnect?: boolean;
  /** Aborts connecting (and, later, closes the client). */
  signal?: AbortSignal;
}

/** A change of the client's state, as reported by {@linkcode Client.status}. */
export type ClientStatus =
  | { type: "connecting"; address: string; attempt: number }
  | { type: "connected"; address: string }
  | { type: "disconnected"; error?: ProtocolError }
  | { type: "reconnecting"; attempt: number; delayMs: number }
  | { type: "error"; error: ProtocolError }
  | { type: "closed"; error?: ProtocolError };

/** A connected client. */
export interface Client extends AsyncDisposable {
  /** The current connection, or `undefined` while reconnecting. */
  readonly connection: Connection | undefined;
  /** The server's static public key from the last handshake. */
  readonly remoteStaticKey: Uint8Array | undefined;
  /** Whether the client is closed. */
  readonly isClosed: boolean;
  /**
   * Sends a numbered request and resolves with the response's message. While the client is
   * reconnecting, it waits for the new connection within its time limit. Requests in flight on
   * a connection that drops fail with `ConnectionClosed` and are never resent.
   *
   * @param message The request.
   * @param options A signal and a time limit (default `client.response_timeout`).
   * @returns The response's message.
   */
  request(message: Message, options?: RequestOptions): Promise<Message>;
  /**
   * Opens a stream to the server's stream handler for `command` (see `Connection.openStream`).
   * While the client is reconnecting, it waits for the new connection within the open time
   * limit. A stream never moves to another connection: it fails when its connection drops.
   *
   * @param command The stream command.
   * @param options Metadata, a signal and the open time limit.
   * @returns The accepted stream.
   */
  openStream(command: string, options?: OpenStreamOptions): Promise<Stream>;
  /**
   * Queues a message for the server (see `Connection.send`).
   *
   * @param message The message.
   */
  send(message: Message): void;
  /**
   * Receives the next message the server sent that was not an answer.
   *
   * @param signal Stops waiting.
   * @returns The message, or `null` once the client is closed.
   */
  receive(signal?: AbortSignal): Promise<Message | null>;
  /**
   * Receives every message waiting at once (see `Connection.receiveBatch`): one promise per
   * batch instead of one per message, for streams of many messages.
   *
   * @param signal Stops waiting.
   * @returns One or more messages in order, or `null` once the client is closed.
   */
  receiveBatch(signal?: AbortSignal): Promise<Message[] | null>;
  /**
   * Stops new requests, waits for those in flight to finish, then closes.
   *
   * @param timeoutMs The time limit (default `client.response_timeout`).
   */
  drain(timeoutMs?: number): Promise<void>;
  /** Closes at once (gracefully on the wire: CLOSE is sent). */
  close(): Promise<void>;
  /** Resolves when the client is closed, with the error that closed it, if any. */
  closed(): Promise<ProtocolError | undefined>;
  /** An async iterator of state changes, from now until the client is closed. */
  status(): AsyncIterableIterator<ClientStatus>;
}

/**
 * Connects to a server, runs the handshake within `client.connection_timeout`, and returns a
 * client that reconnects automatically when the connection drops.
 *
 * @example Connect and send a request
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
 * assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
 * ```
 *
 * With `security.known_servers_path` set and no pinned keys, the first connection to an address
 * records the server's key in that file under `client.address` (as written), and later
 * connections require the same key: a changed key fails with `HandshakeFailed` before anything
 * is sent.
 *
 * @param options Address, configuration, transport, security and reconnection.
 * @returns The connected client.
 * @throws {ProtocolError} `Timeout`, `ConnectionRefused`, `PermissionDenied`, `ConnectionClosed`,
 * `HandshakeFailed` (a changed or unpinned server key, a refused hello), `TlsError`, `Cancelled`
 * or `ConfigError`.
 * @throws {TypeError} For security options that cannot be used together (checked before
 * connecting).
 */
export async function connect(options: ConnectOptions = {}): Promise<Client> {
  const config = withAddress(options.config, "client", options.address);
  const address = config.client.address;
  const security = mergeSecurity(await clientSecurityFromConfig(config), options.security);
  // Invalid combinations fail here, before anything is dialled.
  resolveClientPolicy(security);
  if (security.encryption !== false && !hasPins(security)) {
    log.warn(
      "Connecting to {address} without pinned server keys: the server is not authenticated",
      { address },
    );
  }
  const transport = options.transport ?? transportFromConfig(config, "client", options.tls);
  const client = new ReconnectingClient(
    address,
    config,
    transport,
    security,
    options.compression ?? compressionFromConfig(config),
    options.dispatcher,
    options.autoReconnect ?? config.client.autoReconnect,
    options.signal,
  );
  await client.start();
  return client;
}

function mergeSecurity(
  fromConfig: ClientSecurityOptions,
  explicit: ClientSecurityOptions | undefined,
): ClientSecurityOptions {
  const merged: ClientSecurityOptions = { ...fromConfig, ...explicit };
  if (explicit?.serverKeys !== undefined && explicit.knownServers === undefined) {
    delete merged.knownServers;
  }
  if (explicit?.knownServers !== undefined && explicit.serverKeys === undefined) {
    delete merged.serverKeys;
  }
  if (explicit?.encryption === false && explicit.knownServers === undefined) {
    delete merged.knownServers;
  }
  return merged;
}

function hasPins(security: ClientSecurityOptions): boolean {
  return (security.serverKeys?.length ?? 0) > 0 || security.knownServers !== undefined ||
    security.psk !== undefined;
}

class ReconnectingClient implements Client {
  readonly #address: string;
  readonly #config: NetworkConfig;
  readonly #transport: Transport;
  readonly #security: ClientSecurityOptions;
  readonly #compression: CompressionSettings;
  readonly #dispatcher: Dispatcher | undefined;
  readonly #autoReconnect: boolean;
  readonly #signal: AbortSignal | undefined;
  readonly #status = new EventStream<ClientStatus>(64);
  #connection: Connection | undefined;
  #connectionWaiters: ((connection: Connection | undefined) => void)[] = [];
  #closed = false;
  #finished = false;
  #draining = false;
  #error: ProtocolError | undefined;
  #closedPromise: Promise<ProtocolError | undefined>;
  #resolveClosed!: (error: ProtocolError | undefined) => void;
  #reconnecting: Promise<void> | undefined;
  #abortReconnect = new AbortController();
  #onAbort: (() => void) | undefined;

  constructor(
    address: string,
    config: NetworkConfig,
    transport: Transport,
    security: ClientSecurityOptions,
    compression: CompressionSettings,
    dispatcher: Dispatcher | undefined,
    autoReconnect: boolean,
    signal: AbortSignal | undefined,
  ) {
    this.#address = address;
    this.#config = config;
    this.#transport = transport;
    this.#security = security;
    this.#compression = compression;
    this.#dispatcher = dispatcher;
    this.#autoReconnect = autoReconnect;
    this.#signal = signal;
    this.#closedPromise = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  get connection(): Connection | undefined {
    return this.#connection;
  }

  get remoteStaticKey(): Uint8Array | undefined {
    return this.#connection?.remoteStaticKey;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  async start(): Promise<void> {
    try {
      this.#attach(await this.#open(1, this.#signal));
    } catch (error) {
      this.#finish(error instanceof ProtocolError ? error : undefined);
      throw error;
    }
    if (this.#signal !== undefined) {
      this.#onAbort = () => void this.close();
      this.#signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /**
   * Connects and runs the handshake. A handshake that offered a session ticket and failed
   * (the server most likely refused the ticket: it restarted, is another process, or the ticket
   * expired) is followed at once by one full handshake on a new connection: the ticket was
   * dropped from the store when it was offered.
   */
  async #open(attempt: number, signal?: AbortSignal): Promise<Connection> {
    const tried = { resuming: false };
    try {
      return await this.#openOnce(attempt, signal, tried);
    } catch (error) {
      if (
        !tried.resuming || !(error instanceof ProtocolError) || error.code === "Timeout" ||
        error.code === "Cancelled" || this.#closed
      ) {
        throw error;
      }
      log.info("Resuming the session with {address} failed ({error}): running a full handshake", {
        address: this.#address,
        error: error.message,
      });
      return await this.#openOnce(attempt, signal, { resuming: false });
    }
  }

  async #openOnce(
    attempt: number,
    signal: AbortSignal | undefined,
    tried: { resuming: boolean },
  ): Promise<Connection> {
    const c = this.#config.client;
    this.#status.emit({ type: "connecting", address: this.#address, attempt });
    const conn = await this.#transport.connect(this.#address, {
      timeoutMs: c.connectionTimeout,
      ...(signal === undefined ? {} : { signal }),
    });
    // The handshake runner enforces client.connection_timeout (the security options carry it).
    try {
      const established = await establish(conn, {
        role: "client",
        security: this.#security,
        compression: this.#compression,
        maxPayloadSize: this.#config.transport.maxPayloadSize,
        signal,
        attempt: tried,
      });
      const { pinned, remoteStaticKey } = established.session;
      const tofu = this.#security.knownServers;
      if (!pinned && tofu !== undefined && remoteStaticKey !== undefined) {
        log.warn(
          "Trusting server {name} on first use: recorded its key {fingerprint} in {store}",
          {
            name: tofu.name,
            fingerprint: fingerprint(remoteStaticKey),
            store: tofu.store.location ?? "the known-servers store",
          },
        );
      } else if (!pinned && this.#security.encryption !== false) {
        log.warn("Server at {address} is not authenticated (no pinned key)", {
          address: this.#address,
        });
      }
      return new Connection(conn, established.reader, established.session, {
        role: "client",
        ...(this.#dispatcher === undefined ? {} : { dispatcher: this.#dispatcher }),
        maxPayloadSize: this.#config.transport.maxPayloadSize,
        heartbeatIntervalMs: c.heartbeatInterval,
        responseTimeoutMs: c.responseTimeout,
        // A peer that accepts no bytes for as long as heartbeats take to declare it dead is
        // dead; a shorter stall is backpressure from a busy server, not a failure.
        writeTimeoutMs: Math.max(c.operationTimeout, 3 * c.heartbeatInterval),
        multiplex: multiplexFromConfig(this.#config),
        ...established.compression,
      });
    } catch (error) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      throw error;
    }
  }

  #attach(connection: Connection): void {
    this.#connection = connection;
    this.#status.emit({ type: "connected", address: this.#address });
    for (const waiter of this.#connectionWaiters.splice(0)) waiter(connection);
    void connection.closed().then((error) => {
      // A ticket that did not arrive never will: erase the secret kept for it.
      connection.session.ticketReceiver?.discard();
      this.#onDropped(connection, error);
    });
  }

  #onDropped(connection: Connection, error: ProtocolError | undefined): void {
    if (this.#connection !== connection) return;
    this.#connection = undefined;
    if (this.#closed) return;
    this.#status.emit(
      error === undefined ? { type: "disconnected" } : { type: "disconnected", error },
    );
    if (!this.#autoReconnect || this.#draining) {
      this.#finish(error);
      return;
    }
    this.#reconnecting = this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    const c = this.#config.client;
    let lastError: ProtocolError | undefined;
    for (let attempt = 1; attempt <= c.maxReconnectAttempts && !this.#closed; attempt++) {
      // Full jitter on every attempt: a random delay in [0, min(cap, base * 2^(attempt-1))].
      const delayMs = backoffDelay(attempt, c.reconnectDelay, c.maxReconnectDelay);
      this.#status.emit({ type: "reconnecting", attempt, delayMs });
      const slept = await sleep(delayMs, this.#abortReconnect.signal);
      if (!slept || this.#closed) return;
      try {
        const connection = await this.#open(attempt, this.#abortReconnect.signal);
        if (this.#closed) {
          connection.abort();
          return;
        }
        this.#attach(connection);
        return;
      } catch (error) {
        lastError = error instanceof ProtocolError
          ? error
          : new ProtocolError("ConnectionClosed", "Reconnection failed", { cause: error });
        this.#status.emit({ type: "error", error: lastError });
        log.info("Reconnection attempt {attempt} to {address} failed: {error}", {
          attempt,
          address: this.#address,
          error: lastError.message,
        });
      }
    }
    this.#finish(
      new ProtocolError(
        "ConnectionClosed",
        `Could not reconnect to "${this.#address}" after ${c.maxReconnectAttempts} attempts`,
        lastError === undefined ? {} : { cause: lastError },
      ),
    );
  }

  async #current(signal?: AbortSignal, timeoutMs?: number): Promise<Connection> {
    if (this.#closed || this.#draining) throw this.#closedError();
    const connection = this.#connection;
    if (connection !== undefined && !connection.isClosed) return connection;
    // Reconnecting: wait for the next connection within the request's time limit.
    const limit = timeoutMs ?? this.#config.client.responseTimeout;
    let waiter: ((c: Connection | undefined) => void) | undefined;
    try {
      return await deadline(
        "Request",
        limit,
        () =>
          new Promise<Connection>((resolve, reject) => {
            waiter = (c) => (c === undefined ? reject(this.#closedError()) : resolve(c));
            this.#connectionWaiters.push(waiter);
          }),
        {
          signal,
          timeoutError: () =>
            new ProtocolError("Timeout", `No connection to "${this.#address}" within ${limit} ms`),
        },
      );
    } finally {
      const i = waiter === undefined ? -1 : this.#connectionWaiters.indexOf(waiter);
      if (i >= 0) this.#connectionWaiters.splice(i, 1);
    }
  }

  request(message: Message, options?: RequestOptions): Promise<Message> {
    const connection = this.#connection;
    if (connection !== undefined && !connection.isClosed && !this.#draining) {
      // The connection's promise itself: no async wrapper per request (a hot path).
      return connection.request(message, options);
    }
    return this.#current(options?.signal, options?.timeoutMs).then((current) =>
      current.request(message, options)
    );
  }

  openStream(command: string, options: OpenStreamOptions = {}): Promise<Stream> {
    const connection = this.#connection;
    if (connection !== undefined && !connection.isClosed && !this.#draining) {
      return connection.openStream(command, options);
    }
    return this.#current(options.signal, options.timeoutMs).then((current) =>
      current.openStream(command, options)
    );
  }

  send(message: Message): void {
    if (this.#closed || this.#draining) throw this.#closedError();
    const connection = this.#connection;
    if (connection === undefined || connection.isClosed) {
      throw new ProtocolError("ConnectionClosed", `Not connected to "${this.#address}"`);
    }
    connection.send(message);
  }

  receive(signal?: AbortSignal): Promise<Message | null> {
    return this.#receiveFrom((connection) => connection.receive(signal), signal);
  }

  receiveBatch(signal?: AbortSignal): Promise<Message[] | null> {
    return this.#receiveFrom((connection) => connection.receiveBatch(signal), signal);
  }

  /** Receives from the current connection, and from the next one after a reconnection. */
  async #receiveFrom<T>(
    take: (connection: Connection) => Promise<T | null>,
    signal: AbortSignal | undefined,
  ): Promise<T | null> {
    for (;;) {
      if (this.#closed) return null;
      const connection = this.#connection ?? await this.#current(signal).catch(() => undefined);
      if (connection === undefined) return null;
      const received = await take(connection);
      if (received !== null) return received;
    }
  }

  async drain(timeoutMs?: number): Promise<void> {
    if (this.#closed) return;
    this.#draining = true;
    const connection = this.#connection;
    if (connection !== undefined) {
      await connection.close({
        reason: "client drained",
        timeoutMs: timeoutMs ?? this.#config.client.responseTimeout,
      });
    }
    await this.close();
  }

  async close(): Promise<void> {
    if (this.#closed) {
      await this.#closedPromise;
      return;
    }
    this.#closed = true;
    this.#abortReconnect.abort();
    const connection = this.#connection;
    if (connection !== undefined) {
      await connection.close({ reason: "client closed", timeoutMs: 1000 });
    }
    await this.#reconnecting;
    this.#finish(undefined);
  }

  closed(): Promise<ProtocolError | undefined> {
    return this.#closedPromise;
  }

  status(): AsyncIterableIterator<ClientStatus> {
    return this.#status.iterate();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #closedError(): ProtocolError {
    return new ProtocolError("ConnectionClosed", "Client is closed", {
      ...(this.#error === undefined ? {} : { cause: this.#error }),
    });
  }

  #finish(error: ProtocolError | undefined): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#error = error;
    this.#closed = true;
    this.#abortReconnect.abort();
    if (this.#onAbort !== undefined) this.#signal?.removeEventListener("abort", this.#onAbort);
    for (const waiter of this.#connectionWaiters.splice(0)) waiter(undefined);
    this.#status.emit(error === undefined ? { type: "closed" } : { type: "closed", error });
    this.#resolveClosed(this.#error);
  }
}
