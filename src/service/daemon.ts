/**
 * The daemon: accepts connections, runs their handshakes within a time limit, and serves each
 * one with a {@linkcode Connection} bound to a dispatcher, under connection, handshake and
 * backpressure limits, with graceful shutdown.
 *
 * @module
 */

import { createConfig, type NetworkConfig, type NetworkConfigInput } from "../config/mod.ts";
import { logger } from "../log.ts";
import { ProtocolError } from "../errors.ts";
import type { Dispatcher } from "../protocol/dispatcher.ts";
import type { CompressionSettings } from "../compression/policy.ts";
import { CloseCode } from "../secure/channel.ts";
import { initCrypto } from "../secure/default_provider.ts";
import { generateKeyPair } from "../secure/keys.ts";
import { resolveServerPolicy, type ServerSecurityOptions } from "../secure/policy.ts";
import { formatAddr, parseHostPort } from "../transport/address.ts";
import { ProxiedConn } from "../transport/proxied_conn.ts";
import { readProxyHeader, TrustedProxies } from "../transport/proxy_protocol.ts";
import type { TlsServerOptions } from "../transport/tls.ts";
import { takePeerAuthorization } from "../transport/tls_node.ts";
import type { Listener, Transport } from "../transport/types.ts";
import { transportFromConfig } from "./transport_config.ts";
import { type AdmissionVerdict, HandshakeAdmission } from "./admission.ts";
import { Connection } from "./connection.ts";
import { multiplexFromConfig, type MultiplexOptions } from "./connection_options.ts";
import { peerEvents } from "../log_budget.ts";
import {
  compressionFromConfig,
  establish,
  serverSecurityFromConfig,
  withAddress,
} from "./session.ts";
import {
  type DaemonMetrics,
  daemonMetrics,
  MetricsRegistry,
  type RefusalReason,
} from "./metrics.ts";
import { addStats, type ConnectionStats, emptyStats } from "./connection_stats.ts";
import { sleep, waitAtMost } from "../util/async.ts";
import { errorMessage } from "../util/error_message.ts";
import { closeQuietly } from "../util/resource.ts";

const log = logger("daemon");

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /**
   * The configuration (a complete one, or a partial one completed with defaults). Its `server`,
   * `transport`, `security` and `compression` sections apply.
   */
  config?: NetworkConfig | NetworkConfigInput;
  /** The listen address; overrides `config.server.address`. */
  address?: string;
  /** A transport to use instead of the one `config.transport.kind` names. */
  transport?: Transport;
  /** Certificate and key for `transport.kind = "tls"` (overrides the config's paths). */
  tls?: TlsServerOptions;
  /**
   * Security options; override what the configuration gives (for example a `staticKey` object
   * or an `authorize` callback).
   */
  security?: ServerSecurityOptions;
  /** Compression settings; override the configuration's `compression` section. */
  compression?: CompressionSettings;
  /** Aborting it starts a graceful shutdown. */
  signal?: AbortSignal;
  /**
   * The HTTP admin endpoint (`/livez`, `/readyz`, `/metrics`) on its own address; overrides
   * `config.admin.address` (docs/DEPLOYMENT.md). Needs `--allow-net` for that address.
   */
  admin?: { address: string };
  /**
   * Listen with `SO_REUSEPORT` so that several processes share the address (the `tcp`
   * transport of the configuration only); overrides `config.server.reuse_port`
   * (docs/DEPLOYMENT.md, "Several processes on one port"). With a `transport` of your own, set
   * it there (`new TcpTransport({ reusePort: true })`).
   */
  reusePort?: boolean;
}

/** A running daemon. */
export interface Server extends AsyncDisposable {
  /** The address it listens on (the real port when port 0 was asked for). */
  readonly addr: Deno.Addr;
  /** The server's static public key (secure mode), for clients to pin. */
  readonly publicKey: Uint8Array | undefined;
  /** The open connections (handshake finished). */
  readonly connections: ReadonlySet<Connection>;
  /** Connections still in their handshake. */
  readonly handshaking: number;
  /** Whether the server has stopped accepting (shutting down or stopped). */
  readonly isClosed: boolean;
  /**
   * Whether a load balancer should send new connections: `true` while serving, `false` from the
   * start of a drain or shutdown (what `/readyz` reports).
   */
  readonly ready: boolean;
  /** The address of the health endpoint, when one is on. */
  readonly adminAddr: Deno.NetAddr | undefined;
  /**
   * The server's metrics in the Prometheus text format 0.0.4, what `GET /metrics` on the admin
   * endpoint returns (docs/DEPLOYMENT.md, "Metrics"). Labels are bounded: never a peer address,
   * key or request id.
   *
   * @example Read the metrics without an admin endpoint
   * ```ts
   * import { Dispatcher, serve } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * await using server = await serve({ address: "127.0.0.1:0" }, new Dispatcher());
   * assert.match(server.metrics(), /^npro_connections_open 0$/m);
   * ```
   *
   * @returns The exposition text.
   */
  metrics(): string;
  /**
   * The registry behind {@linkcode Server.metrics}: register the application's own metrics here
   * to serve them on the same `/metrics`, or mirror it into OpenTelemetry with
   * `exportToOpenTelemetry` (docs/DEPLOYMENT.md, "Metrics").
   *
   * @example Serve an application counter beside the server's
   * ```ts
   * import { Dispatcher, serve } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * await using server = await serve({ address: "127.0.0.1:0" }, new Dispatcher());
   * const orders = server.metricsRegistry.counter("app_orders_total", "Orders taken.").labels({});
   * orders.inc();
   * assert.match(server.metrics(), /^npro_app_orders_total 1$/m);
   * ```
   */
  readonly metricsRegistry: MetricsRegistry;
  /**
   * Drains the server for a load balancer: readiness goes false at once, the server keeps
   * accepting for `readinessDelayMs` (default `server.drain_grace`) so that the balancer notices,
   * then shuts down gracefully (GOAWAY to every connection, answers what it received).
   *
   * @example Drain behind a balancer
   * ```ts
   * import { Dispatcher, serve } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * const server = await serve({ address: "127.0.0.1:0" }, new Dispatcher());
   * assert.equal(server.ready, true);
   * const draining = server.drain({ readinessDelayMs: 50 });
   * assert.equal(server.ready, false);
   * assert.equal(server.isClosed, false);
   * await draining;
   * assert.equal(server.isClosed, true);
   * ```
   *
   * @param options The readiness delay and the shutdown's time limit.
   * @returns When the server has stopped.
   */
  drain(options?: { readinessDelayMs?: number; timeoutMs?: number }): Promise<void>;
  /**
   * Resolves when the server has stopped and every connection is closed: with `undefined` after
   * a shutdown, or with the error that stopped it (a listener that failed to accept; the server
   * then shuts down by itself). Never rejects. Same meaning as `Connection.closed()` and
   * `Client.closed()`.
   *
   * @example Wait for the end of a server
   * ```ts
   * import { Dispatcher, serve } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * const server = await serve({ address: "127.0.0.1:0" }, new Dispatcher());
   * const ended = server.closed();
   * await server.shutdown();
   * assert.equal(await ended, undefined);
   * assert.equal(server.isClosed, true);
   * ```
   *
   * @returns A promise of the end.
   */
  closed(): Promise<ProtocolError | undefined>;
  /**
   * Stops accepting, lets every connection answer what it already received, sends CLOSE,
   * flushes and closes; after `timeoutMs` (default: `server.shutdown_timeout`) it closes the
   * rest at once.
   *
   * @param timeoutMs The drain time limit.
   */
  shutdown(timeoutMs?: number): Promise<void>;
}

/**
 * Starts a daemon that serves `dispatcher`.
 *
 * The daemon enforces `server.max_connections` (more are closed at accept time),
 * `server.max_handshakes` (connections still handshaking), `server.connection_timeout` (the
 * handshake limit), `server.idle_timeout`, `server.heartbeat_interval` and
 * `server.backpressure_limit` (requests handled at once per connection; at the limit it stops
 * reading that socket).
 *
 * @example Serve PING and ECHO over TCP and shut down
 * ```ts
 * import { connect, Dispatcher, registerStandardHandlers, serve } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dispatcher = registerStandardHandlers(new Dispatcher());
 * await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
 * const { port } = server.addr as Deno.NetAddr;
 * await using client = await connect({
 *   address: `127.0.0.1:${port}`,
 *   security: { serverKeys: [server.publicKey!] },
 * });
 * assert.deepEqual(await client.request({ type: "echo", text: "hi" }), { type: "echo", text: "hi" });
 * ```
 *
 * @param options Configuration, address, transport and security.
 * @param dispatcher The handlers.
 * @returns The running server.
 * @throws {ProtocolError} `AddressInUse` when the address is taken, `PermissionDenied` for a
 * privileged port, an unwritable socket directory or a missing Deno permission, `ConfigError` for
 * an invalid configuration or address, `TlsError` for unusable TLS settings.
 * @throws {TypeError} For security options that cannot be used together (checked before
 * listening).
 */
export async function serve(options: ServeOptions, dispatcher: Dispatcher): Promise<Server> {
  let config = withAddress(options.config, "server", options.address);
  if (options.reusePort !== undefined) {
    if (typeof options.reusePort !== "boolean") {
      throw new TypeError(`reusePort must be a boolean, got "${options.reusePort}"`);
    }
    if (options.reusePort && options.transport !== undefined) {
      throw new TypeError(
        "reusePort applies to the configured transport: pass `new TcpTransport({ reusePort: true })` as transport instead",
      );
    }
    config = createConfig({
      ...config,
      server: { ...config.server, reusePort: options.reusePort },
    });
  }
  const address = config.server.address;
  const security = await serverSecurityFromConfig(config, options.security, () => {
    log.info("No static key configured: generated one for this run");
    return generateKeyPair();
  });
  // Invalid combinations fail here, before anything listens (not at every handshake).
  resolveServerPolicy(security);
  // The fast path for small records from the first connection on (about 6 ms, once; never fails).
  await initCrypto();
  const compression = options.compression ?? compressionFromConfig(config);
  // Ticket keys made from the configuration (security.resumption) live and die with the server.
  const ownTickets = options.security?.resumption === undefined ? security.resumption : undefined;
  let transport: Transport;
  let listener: Listener;
  try {
    transport = options.transport ?? transportFromConfig(config, "server", options.tls);
    listener = await transport.listen(address);
  } catch (error) {
    ownTickets?.destroy();
    throw error;
  }
  const server = new DaemonServer(listener, config, security, compression, dispatcher);
  const adminAddress = options.admin?.address ?? config.admin.address;
  if (adminAddress !== "") {
    try {
      server.startAdmin(adminAddress);
    } catch (error) {
      await server.shutdown(0);
      ownTickets?.destroy();
      const code = error instanceof Deno.errors.AddrInUse
        ? "AddressInUse"
        : error instanceof Deno.errors.PermissionDenied ||
            (error instanceof Error && error.name === "NotCapable")
        ? "PermissionDenied"
        : "ConfigError";
      throw new ProtocolError(
        code,
        `Cannot serve the health endpoint on "${adminAddress}": ${errorMessage(error)}`,
        { cause: error },
      );
    }
  }
  if (ownTickets !== undefined) void server.closed().then(() => ownTickets.destroy());
  if (options.signal !== undefined) {
    const signal = options.signal;
    if (signal.aborted) void server.shutdown();
    else {
      const onAbort = () => void server.shutdown();
      signal.addEventListener("abort", onAbort, { once: true });
      void server.closed().then(() => signal.removeEventListener("abort", onAbort));
    }
  }
  log.info("Listening on {addr} ({transport})", {
    addr: formatAddr(listener.addr),
    transport: transport.kind,
  });
  return server;
}

class DaemonServer implements Server {
  readonly addr: Deno.Addr;
  readonly publicKey: Uint8Array | undefined;
  readonly #closedPromise: Promise<ProtocolError | undefined>;
  readonly #listener: Listener;
  readonly #config: NetworkConfig;
  readonly #security: ServerSecurityOptions;
  readonly #compression: CompressionSettings;
  readonly #dispatcher: Dispatcher;
  readonly #connections = new Set<Connection>();
  readonly #handshaking = new Set<Deno.Conn>();
  readonly #admission: HandshakeAdmission;
  /** `server.proxy_protocol`: who may connect and send a PROXY header (undefined: off). */
  readonly #proxies: TrustedProxies | undefined;
  /** One task per accepted connection, from its handshake to its close. */
  readonly #tasks = new Set<Promise<void>>();
  #stopping = false;
  #draining = false;
  #shutdownPromise: Promise<void> | undefined;
  #drainPromise: Promise<void> | undefined;
  /** The health endpoint, when on. */
  #admin: { addr: Deno.NetAddr; stop: () => Promise<void> } | undefined;
  #acceptLoop: Promise<void>;
  #resolveClosed!: (error: ProtocolError | undefined) => void;
  /** Why the server stopped by itself (its listener failed), if it did. */
  #failure: ProtocolError | undefined;
  /** `server.max_connection_age`: when each connection is drained, and the one timer for all. */
  readonly #ageDeadlines = new Map<Connection, number>();
  /** The `multiplex` options of every connection (one object: resolved once, shared). */
  readonly #multiplex: MultiplexOptions;
  #ageTimer: ReturnType<typeof setInterval> | undefined;
  /** Counters and histograms (the gauges read the sets above at render time). */
  readonly #metrics: DaemonMetrics;
  /** What the closed connections moved and did, added up. */
  readonly #closedStats: ConnectionStats = emptyStats();

  constructor(
    listener: Listener,
    config: NetworkConfig,
    security: ServerSecurityOptions,
    compression: CompressionSettings,
    dispatcher: Dispatcher,
  ) {
    this.#listener = listener;
    this.addr = listener.addr;
    this.#config = config;
    this.#security = security;
    this.#compression = compression;
    this.#dispatcher = dispatcher;
    this.#admission = new HandshakeAdmission({
      rate: config.server.handshakeRate,
      ratePerAddress: config.server.handshakeRatePerAddress,
    });
    this.#proxies = config.server.proxyProtocol
      ? new TrustedProxies(config.server.trustedProxies)
      : undefined;
    this.publicKey = security.encryption === false ? undefined : security.staticKey?.publicKey;
    this.#closedPromise = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#multiplex = multiplexFromConfig(config);
    this.#metrics = daemonMetrics(new MetricsRegistry(), {
      open: () => this.#connections.size,
      handshaking: () => this.#handshaking.size,
      inFlight: () => {
        let n = 0;
        for (const connection of this.#connections) n += connection.inflight;
        return n;
      },
      queuedBytes: () => {
        let n = 0;
        for (const connection of this.#connections) n += connection.outboundBytes;
        return n;
      },
      traffic: () => {
        const total = { ...this.#closedStats };
        for (const connection of this.#connections) addStats(total, connection.stats());
        return total;
      },
      knownOpcode: (opcode) => dispatcher.has(opcode),
    });
    this.#acceptLoop = this.#accept();
    const maxAge = config.server.maxConnectionAge;
    if (maxAge > 0) {
      // One timer for every connection (a timer each would cost idle memory).
      this.#ageTimer = setInterval(() => this.#drainOld(), Math.min(1000, maxAge / 10));
    }
  }

  /**
   * Drains the connections past their maximum age (GOAWAY, then CLOSE 1), so that a client that
   * reconnects lands on a server started since (docs/SERVICE.md, "Shutdown and close").
   */
  #drainOld(): void {
    const now = performance.now();
    for (const [connection, deadline] of this.#ageDeadlines) {
      if (deadline > now) continue;
      this.#ageDeadlines.delete(connection);
      void connection.drain({
        code: CloseCode.GoingAway,
        reason: "connection reached its maximum age",
        timeoutMs: this.#config.server.shutdownTimeout,
      }).catch(() => {});
    }
  }

  get connections(): ReadonlySet<Connection> {
    return this.#connections;
  }

  get handshaking(): number {
    return this.#handshaking.size;
  }

  get isClosed(): boolean {
    return this.#stopping;
  }

  closed(): Promise<ProtocolError | undefined> {
    return this.#closedPromise;
  }

  async #accept(): Promise<void> {
    const { maxConnections, maxHandshakes } = this.#config.server;
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (!this.#stopping) {
          // The listener is broken: stop serving (the connections are closed gracefully)
          // rather than keep a server that no longer accepts; closed() tells why.
          log.error("Accept failed: {error}", { error });
          this.#failure = new ProtocolError(
            "ConnectionClosed",
            `Server on "${formatAddr(this.addr)}" stopped: its listener failed (${
              errorMessage(error)
            })`,
            { cause: error },
          );
          void this.shutdown();
        }
        return;
      }
      if (this.#stopping) {
        closeQuietly(conn);
        continue;
      }
      const total = this.#connections.size + this.#handshaking.size;
      // Behind a proxy every connection comes from the proxy: the per-address rate applies to
      // the client its PROXY header names, once read (in #serveOne).
      const verdict = total >= maxConnections
        ? "connection limit"
        : this.#handshaking.size >= maxHandshakes
        ? "handshake limit"
        : this.#proxies !== undefined
        ? (isTrusted(this.#proxies, conn.remoteAddr) ? "ok" : "untrusted proxy")
        : this.#admission.admit(conn.remoteAddr);
      // Past the server-wide rate a connection waits for its turn (in a handshake slot);
      // past its address's rate, or a count limit, it is refused.
      const refusal = verdict === "server rate" ? "ok" : verdict;
      if (refusal !== "ok") {
        this.#metrics.refused[REFUSAL_LABEL[refusal]].inc();
        // Refused before a byte is read; one line per kind and interval at most (a flood of
        // refusals must not become a flood of log lines).
        if (peerEvents.allow(`refused connection (${refusal})`)) {
          log.warn(
            "Refused a connection from {peer} ({reason}): {open} open, {handshaking} handshaking",
            {
              peer: safeAddr(conn),
              reason: refusal,
              open: this.#connections.size,
              handshaking: this.#handshaking.size,
            },
          );
        }
        closeQuietly(conn);
        continue;
      }
      this.#metrics.accepted.inc();
      const task = this.#serveOne(conn, verdict === "server rate");
      this.#tasks.add(task);
      void task.finally(() => this.#tasks.delete(task));
    }
  }

  async #serveOne(socket: Deno.Conn, mustWait: boolean): Promise<void> {
    const server = this.#config.server;
    this.#handshaking.add(socket);
    let conn = socket;
    if (this.#proxies !== undefined) {
      const proxied = await this.#readProxyHeader(socket);
      if (proxied === undefined) {
        this.#metrics.refused.proxy_header.inc();
        this.#handshaking.delete(socket);
        closeQuietly(socket);
        return;
      }
      conn = proxied;
      const verdict = this.#admitProxied(proxied);
      if (verdict === "address rate") {
        this.#metrics.refused.address_rate.inc();
        this.#handshaking.delete(socket);
        closeQuietly(socket);
        return;
      }
      mustWait = verdict === "server rate";
    }
    if (mustWait && !(await this.#awaitHandshakeTurn())) {
      this.#metrics.refused.handshake_rate.inc();
      this.#handshaking.delete(socket);
      closeQuietly(conn);
      return;
    }
    // The handshake runner enforces server.connection_timeout (the security options carry it);
    // on any failure the socket is closed here, which also ends its pending read.
    // A TLS server's authorize callback (node:tls backend) runs after the secure channel's
    // handshake, so that it sees the client's certificate and its Noise key together.
    const authorizePeer = takePeerAuthorization(conn);
    let established;
    const started = performance.now();
    try {
      established = await establish(conn, {
        role: "server",
        security: this.#security,
        compression: this.#compression,
        maxPayloadSize: this.#config.transport.maxPayloadSize,
      });
      await authorizePeer?.(established.session.remoteStaticKey);
    } catch (error) {
      this.#metrics.handshake("unknown", false, (performance.now() - started) / 1000);
      if (peerEvents.allow("failed handshake")) {
        log.info("Handshake with {peer} failed: {error}", {
          peer: safeAddr(conn),
          error: errorMessage(error),
        });
      }
      closeQuietly(conn);
      return;
    } finally {
      this.#handshaking.delete(socket);
    }
    this.#metrics.handshake(
      established.session.pattern,
      true,
      (performance.now() - started) / 1000,
    );
    if (this.#stopping) {
      closeQuietly(conn);
      return;
    }
    const connection = new Connection(conn, established.reader, established.session, {
      role: "server",
      dispatcher: this.#dispatcher,
      maxPayloadSize: this.#config.transport.maxPayloadSize,
      backpressureLimit: server.backpressureLimit,
      heartbeatIntervalMs: server.heartbeatInterval,
      idleTimeoutMs: server.idleTimeout,
      writeTimeoutMs: 3 * server.heartbeatInterval,
      maxProtocolViolations: server.maxProtocolViolations,
      multiplex: this.#multiplex,
      observer: this.#metrics.observer,
      ...established.compression,
    });
    // The session ticket the client asked for: the first message of the session.
    if (established.ticket !== undefined) connection.send(established.ticket);
    this.#connections.add(connection);
    const maxAge = this.#config.server.maxConnectionAge;
    if (maxAge > 0) {
      // 90 to 100 % of the age, at random: connections made together do not leave together.
      this.#ageDeadlines.set(connection, performance.now() + maxAge * (0.9 + 0.1 * Math.random()));
    }
    log.debug("Connection {id} from {peer} ({pattern})", {
      id: connection.id,
      peer: safeAddr(conn),
      pattern: established.session.pattern,
    });
    // Returned, not awaited: this function's frame ends here, and an idle connection's task is
    // one pending promise callback (idle memory, docs/PERFORMANCE.md).
    return connection.closed().then((error) => {
      this.#connections.delete(connection);
      this.#ageDeadlines.delete(connection);
      this.#metrics.closed(error === undefined ? "normal" : error.code);
      const stats = connection.stats();
      stats.streamsOpen = 0;
      addStats(this.#closedStats, stats);
      if (error !== undefined && peerEvents.allow("connection error")) {
        log.info("Connection {id} closed: {error}", { id: connection.id, error: error.message });
      }
    });
  }

  /**
   * Reads the PROXY header of a connection from a trusted proxy, within
   * `server.connection_timeout`: the connection as the client the header names, or `undefined`
   * (logged, within the log budget) when the header is missing, malformed or late.
   */
  async #readProxyHeader(socket: Deno.Conn): Promise<ProxiedConn | undefined> {
    try {
      const { header, rest } = await readProxyHeader(socket, {
        timeoutMs: this.#config.server.connectionTimeout,
      });
      return new ProxiedConn(socket, header, rest);
    } catch (error) {
      if (peerEvents.allow("refused PROXY header")) {
        log.warn("Refused the PROXY header from {peer}: {error}", {
          peer: safeAddr(socket),
          error: errorMessage(error),
        });
      }
      return undefined;
    }
  }

  /**
   * The per-address handshake rate, for the client a PROXY header named (a refusal is logged
   * within the log budget).
   */
  #admitProxied(conn: ProxiedConn): AdmissionVerdict {
    const verdict = this.#admission.admit(conn.remoteAddr);
    if (verdict === "address rate" && peerEvents.allow("refused connection (address rate)")) {
      log.warn("Refused a connection from {peer} (address rate) through {proxy}", {
        peer: safeAddr(conn),
        proxy: formatAddr(conn.socketAddr),
      });
    }
    return verdict;
  }

  /**
   * Waits until the server-wide handshake rate admits one more (at most
   * `server.connection_timeout`), so that handshakes never take more CPU than the rate allows
   * however many arrive: established sessions keep the rest.
   */
  async #awaitHandshakeTurn(): Promise<boolean> {
    const deadline = performance.now() + this.#config.server.connectionTimeout;
    while (!this.#admission.take()) {
      const wait = Math.max(1, Math.ceil(this.#admission.waitMs()));
      if (this.#stopping || performance.now() + wait > deadline) return false;
      await sleep(wait);
    }
    return !this.#stopping;
  }

  get ready(): boolean {
    return !this.#draining && !this.#stopping;
  }

  get adminAddr(): Deno.NetAddr | undefined {
    return this.#admin?.addr;
  }

  metrics(): string {
    return this.#metrics.registry.render();
  }

  get metricsRegistry(): MetricsRegistry {
    return this.#metrics.registry;
  }

  /** Starts the health endpoint (once, from serve()). */
  startAdmin(address: string): void {
    const { hostname, port } = parseHostPort(address);
    const controller = new AbortController();
    const http = Deno.serve({
      hostname,
      port: port ?? 0,
      signal: controller.signal,
      onListen: () => {}, // No "Listening on" line on stdout: the log says it.
    }, (request) => this.#health(request));
    const listening = http.addr as Deno.NetAddr;
    this.#admin = {
      addr: listening,
      stop: async () => {
        controller.abort();
        await http.finished;
      },
    };
    log.info("Health endpoint on http://{addr}/readyz", { addr: formatAddr(listening) });
  }

  #health(request: Request): Response {
    const path = new URL(request.url).pathname;
    const headers = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers });
    }
    if (path === "/livez") {
      return this.#stopping && this.#connections.size === 0 && this.#handshaking.size === 0
        ? new Response("stopped\n", { status: 503, headers })
        : new Response("ok\n", { status: 200, headers });
    }
    if (path === "/readyz") {
      return this.ready
        ? new Response("ready\n", { status: 200, headers })
        : new Response("not ready\n", { status: 503, headers });
    }
    if (path === "/metrics") {
      return new Response(this.metrics(), {
        status: 200,
        headers: {
          "content-type": "text/plain; version=0.0.4; charset=utf-8",
          "cache-control": "no-store",
        },
      });
    }
    return new Response("not found\n", { status: 404, headers });
  }

  drain(options: { readinessDelayMs?: number; timeoutMs?: number } = {}): Promise<void> {
    const delay = options.readinessDelayMs ?? this.#config.server.drainGrace;
    if (!Number.isFinite(delay) || delay < 0) {
      return Promise.reject(
        new RangeError(`Cannot drain with readiness delay "${delay}": it must be 0 or more`),
      );
    }
    this.#drainPromise ??= (async () => {
      this.#draining = true;
      log.info("Draining: not ready, still accepting for {delay} ms", { delay });
      // Keep accepting while the balancer notices /readyz; a shutdown meanwhile ends the wait.
      const started = performance.now();
      while (!this.#stopping && performance.now() - started < delay) {
        await sleep(Math.min(50, delay - (performance.now() - started)));
      }
      await this.shutdown(options.timeoutMs);
    })();
    return this.#drainPromise;
  }

  shutdown(timeoutMs?: number): Promise<void> {
    this.#shutdownPromise ??= this.#shutdown(timeoutMs ?? this.#config.server.shutdownTimeout);
    return this.#shutdownPromise;
  }

  async #shutdown(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    if (this.#ageTimer !== undefined) clearInterval(this.#ageTimer);
    this.#listener.close();
    await this.#acceptLoop;
    for (const conn of this.#handshaking) closeQuietly(conn);
    // GOAWAY first (docs/SERVICE.md, "Shutdown and close"): each client learns the last request
    // that will be answered and fails the later ones as not processed.
    const closing = [...this.#connections].map((c) =>
      c.drain({ code: CloseCode.GoingAway, reason: "server shutting down", timeoutMs })
    );
    await waitAtMost(Promise.allSettled(closing), timeoutMs + 100);
    for (const connection of this.#connections) connection.abort();
    // Every per-connection task ends once its connection (or handshake) is closed.
    await Promise.allSettled([...this.#tasks]);
    await this.#admin?.stop();
    peerEvents.flush();
    log.info("Server on {addr} stopped", { addr: formatAddr(this.addr) });
    this.#resolveClosed(this.#failure);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}

/** The `reason` label of each accept-time refusal. */
const REFUSAL_LABEL: Readonly<
  Record<"connection limit" | "handshake limit" | "untrusted proxy" | "address rate", RefusalReason>
> = {
  "connection limit": "connection_limit",
  "handshake limit": "handshake_limit",
  "untrusted proxy": "untrusted_proxy",
  "address rate": "address_rate",
};

/** Whether a socket's peer is one of the trusted proxies (an IP address in a trusted range). */
function isTrusted(proxies: TrustedProxies, addr: Deno.Addr): boolean {
  return addr.transport === "tcp" && proxies.has(addr.hostname);
}

function safeAddr(conn: Deno.Conn): string {
  try {
    return formatAddr(conn.remoteAddr);
  } catch {
    return "unknown peer";
  }
}
