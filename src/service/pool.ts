/**
 * The connection pool: a small set of shared multiplexed connections to one or more servers
 * (like gRPC channels and undici's `Pool`), with bounded waiting, health checks, a circuit
 * breaker per address, connection lifetimes, failover, and retries of requests that were
 * provably not processed. `pool.acquire()` lends one connection exclusively.
 *
 * @module
 */

import type { NetworkConfig } from "../config/mod.ts";
import type { Message } from "../core/message.ts";
import { isProtocolError, ProtocolError, toProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import { backoffDelay } from "./backoff.ts";
import { type BreakerState, CircuitBreaker } from "./circuit_breaker.ts";
import { type Client, connect, type ConnectOptions } from "./client.ts";
import type { Connection } from "./connection.ts";
import type { RequestOptions } from "./connection_options.ts";
import { CircuitOpen, PoolExhausted, type PoolExhaustedReason } from "./pool_errors.ts";
import { withAddress } from "./session.ts";
import { type ClientResumption, SessionTicketStore } from "../secure/session_ticket.ts";
import { EventStream } from "../util/event_stream.ts";

const log = logger("pool");

const NO_OPTIONS: RequestOptions = Object.freeze({});

/**
 * Settings of the circuit breaker of each address (defaults from the `[pool]` section).
 *
 * @example Three failures open it; two probes when half-open
 * ```ts
 * import type { PoolBreakerOptions } from "@npro/network-protocol";
 *
 * const breaker: PoolBreakerOptions = { failureThreshold: 3, cooldownMs: 5000, probes: 2 };
 * console.log(breaker.probes);
 * ```
 */
export interface PoolBreakerOptions {
  /** Consecutive failures to connect (or failed health checks) that open it (`breaker_threshold`). */
  failureThreshold?: number;
  /** How long it stays open before it lets probes through, in ms (`breaker_cooldown`). */
  cooldownMs?: number;
  /** The longest cool-down, in ms; it doubles after each failed probe (`breaker_max_cooldown`). */
  maxCooldownMs?: number;
  /** Connection attempts (connect and PING) let through at once when half-open (`breaker_probes`). */
  probes?: number;
}

/**
 * Health checks (defaults from the `[pool]` section).
 *
 * @example Check before use after 1 s idle, never periodically
 * ```ts
 * import type { PoolHealthCheckOptions } from "@npro/network-protocol";
 *
 * const healthCheck: PoolHealthCheckOptions = { idleMs: 1000, intervalMs: 0, timeoutMs: 500 };
 * console.log(healthCheck.idleMs);
 * ```
 */
export interface PoolHealthCheckOptions {
  /** A connection idle longer than this (ms) is checked with a PING before it is used; 0 never. */
  idleMs?: number;
  /** Idle connections are checked this often (ms); 0 never. */
  intervalMs?: number;
  /** A PING not answered within this time (ms) fails the check. */
  timeoutMs?: number;
}

/**
 * Which failed requests the pool sends again. Only requests that were provably not processed
 * are retried: never written (the connection was found closed or draining before the request
 * was handed to it), or failed with `NotProcessed` (the server's GOAWAY said it will not run
 * them). A request that was written and then lost its connection fails with `ConnectionClosed`
 * and is never resent: the server may have run it.
 *
 * @example Two attempts at most
 * ```ts
 * import type { RetryPolicy } from "@npro/network-protocol";
 *
 * const retry: RetryPolicy = { maxAttempts: 2 };
 * console.log(retry.maxAttempts);
 * ```
 */
export interface RetryPolicy {
  /** Attempts in all, counting the first (default `pool.retry_attempts`, 3); 1 never retries. */
  maxAttempts?: number;
}

/**
 * Options of {@linkcode createPool}.
 *
 * @example Two addresses, eight connections, a lazy pool
 * ```ts
 * import type { PoolOptions } from "@npro/network-protocol";
 *
 * const options: PoolOptions = {
 *   address: ["10.0.0.1:9000", "10.0.0.2:9000"],
 *   maxConnections: 8,
 *   acquireTimeoutMs: 2000,
 *   circuitBreaker: { failureThreshold: 3 },
 * };
 * console.log(options.maxConnections);
 * ```
 */
export interface PoolOptions extends Omit<ConnectOptions, "address" | "autoReconnect"> {
  /**
   * One server address or several (default `pool.addresses`, else `client.address`). New
   * connections go to the healthy address with the fewest connections, so they spread over all
   * of them; an address that fails is skipped while it backs off or its breaker is open.
   */
  address?: string | readonly string[];
  /** Connections kept open even when idle, opened at once (default `pool.min_connections`, 0). */
  minConnections?: number;
  /** Connections open or opening at most, leases included (default `pool.max_connections`, 4). */
  maxConnections?: number;
  /** Requests in flight per connection before another is opened (default 100). */
  maxRequestsPerConnection?: number;
  /**
   * Idle connections above `minConnections` close after this many ms (default 30000; 0 never).
   * It must be below the configuration's `server.idle_timeout`, so that the pool, not the
   * server, closes idle connections.
   */
  idleTimeoutMs?: number;
  /**
   * A connection older than 90 to 100 % of this (ms, at random so that connections opened
   * together do not leave together) takes no new requests, finishes those in flight, closes and
   * is replaced (default 1800000; 0 never).
   */
  maxLifetimeMs?: number;
  /** How long a caller waits for capacity, in ms (default 5000); never past its own time limit. */
  acquireTimeoutMs?: number;
  /** Callers that may wait for capacity at once (default 1000); one more fails at once. */
  maxWaiters?: number;
  /** Health checks. */
  healthCheck?: PoolHealthCheckOptions;
  /** The circuit breaker of each address, or `false` for none. */
  circuitBreaker?: false | PoolBreakerOptions;
  /** Retries of requests that were provably not processed, or `false` for none. */
  retry?: false | RetryPolicy;
}

/**
 * Options of {@linkcode Pool.acquire}.
 *
 * @example Wait at most 100 ms, or until the caller gives up
 * ```ts
 * import type { AcquireOptions } from "@npro/network-protocol";
 *
 * const options: AcquireOptions = { timeoutMs: 100, signal: AbortSignal.timeout(1000) };
 * console.log(options.timeoutMs);
 * ```
 */
export interface AcquireOptions {
  /** Stops waiting (rejects with `Cancelled`). */
  signal?: AbortSignal;
  /** How long to wait for a connection, in ms (default: the pool's `acquireTimeoutMs`). */
  timeoutMs?: number;
}

/**
 * A connection lent exclusively by {@linkcode Pool.acquire}: no pool request uses it until it
 * is released. `release()` (or the end of an `await using` scope) gives it back; `destroy()`
 * closes it instead (for a connection left in a state the next borrower must not see).
 *
 * @example Give it back on every path
 * ```ts
 * import type { Pool } from "@npro/network-protocol";
 *
 * async function withLease(pool: Pool): Promise<number> {
 *   await using lease = await pool.acquire({ timeoutMs: 1000 });
 *   return await lease.connection.ping();
 * }
 * console.log(typeof withLease);
 * ```
 */
export interface PoolLease extends AsyncDisposable, Disposable {
  /** The connection, for any use (`request`, `send`, `receive`, `openStream`). */
  readonly connection: Connection;
  /** The server address it is connected to. */
  readonly address: string;
  /** Gives the connection back to the pool (again: nothing). */
  release(): void;
  /** Closes the connection instead of giving it back; the pool opens others as needed. */
  destroy(): void;
}

/**
 * Per-address figures of {@linkcode PoolStats}.
 *
 * @example Addresses whose breaker is not closed
 * ```ts
 * import type { PoolAddressStats } from "@npro/network-protocol";
 *
 * function unhealthy(addresses: Record<string, PoolAddressStats>): string[] {
 *   return Object.entries(addresses).filter(([, a]) => a.breaker !== "closed").map(([name]) => name);
 * }
 * console.log(unhealthy({}));
 * ```
 */
export interface PoolAddressStats {
  /** Connections open. */
  open: number;
  /** Connections being opened. */
  opening: number;
  /** Pool requests in flight. */
  inFlight: number;
  /** The breaker's state (`"closed"` when the pool has no breaker). */
  breaker: BreakerState;
  /** Consecutive failures to connect. */
  failures: number;
  /** The last heartbeat round trip of one of its connections, in ms. */
  rttMs?: number;
}

/**
 * A snapshot of a pool, from {@linkcode Pool.stats}.
 *
 * @example How busy the pool is
 * ```ts
 * import type { PoolStats } from "@npro/network-protocol";
 *
 * function load(stats: PoolStats): string {
 *   return `${stats.inFlight} in flight on ${stats.open} connections, ${stats.waiting} waiting`;
 * }
 * console.log(typeof load);
 * ```
 */
export interface PoolStats {
  /** Connections open (leased, busy, idle and retiring ones). */
  open: number;
  /** Connections being opened. */
  opening: number;
  /** Open connections with nothing in flight and no lease. */
  idle: number;
  /** Connections lent by `acquire()`. */
  leased: number;
  /** Pool requests in flight. */
  inFlight: number;
  /** Callers waiting for capacity. */
  waiting: number;
  /** Connections opened since the pool was created. */
  created: number;
  /** Connections closed since the pool was created. */
  closed: number;
  /** Failed attempts to connect. */
  failedConnects: number;
  /** Callers that waited past their time limit (`PoolExhausted`, `"timeout"`). */
  acquireTimeouts: number;
  /** Callers refused at once because `maxWaiters` were waiting (`"queue-full"`). */
  rejected: number;
  /** Requests sent again because they were provably not processed. */
  retries: number;
  /** Figures per address. */
  addresses: Record<string, PoolAddressStats>;
}

/**
 * An event of {@linkcode Pool.status}.
 *
 * @example Log breaker changes
 * ```ts
 * import type { Pool } from "@npro/network-protocol";
 *
 * async function watch(pool: Pool): Promise<void> {
 *   for await (const event of pool.status()) {
 *     if (event.type === "breaker") console.log(`${event.address}: ${event.from} -> ${event.to}`);
 *   }
 * }
 * console.log(typeof watch);
 * ```
 */
export type PoolEvent =
  | { type: "connecting"; address: string; probe: boolean }
  | { type: "connected"; address: string; connectionId: number }
  | { type: "connect-failed"; address: string; error: ProtocolError }
  | { type: "disconnected"; address: string; connectionId: number; error?: ProtocolError }
  | {
    type: "retiring";
    address: string;
    connectionId: number;
    reason: "lifetime" | "idle" | "health-check" | "destroyed" | "goaway";
  }
  | { type: "breaker"; address: string; from: BreakerState; to: BreakerState; retryInMs: number }
  | { type: "retry"; address: string; attempt: number; error: ProtocolError }
  | { type: "health-check"; address: string; connectionId: number; error?: ProtocolError }
  | { type: "exhausted"; reason: PoolExhaustedReason; waiting: number }
  | { type: "draining" }
  | { type: "closed" };

/**
 * A pool of connections made by {@linkcode createPool}.
 *
 * @example Drain before the process exits
 * ```ts
 * import type { Pool } from "@npro/network-protocol";
 *
 * async function stop(pool: Pool): Promise<void> {
 *   await pool.drain(5000);
 *   console.log(pool.isClosed);
 * }
 * console.log(typeof stop);
 * ```
 */
export interface Pool extends AsyncDisposable {
  /** Whether the pool is closed or closing (or draining). */
  readonly isClosed: boolean;
  /**
   * Sends a numbered request on the least-loaded healthy connection, opening one when every
   * connection has `maxRequestsPerConnection` in flight (up to `maxConnections`), or waits for
   * capacity within `acquireTimeoutMs` and the request's own time limit.
   *
   * @param message The request.
   * @param options A signal and the time limit of the whole request, waiting and retries
   * included (default `client.response_timeout`).
   * @returns The response's message.
   * @throws {PoolExhausted} No capacity within the wait, or `maxWaiters` already waiting.
   * @throws {CircuitOpen} Every address's breaker is open.
   * @throws {RemoteError} The server answered with an error.
   * @throws {ProtocolError} `Timeout`, `Cancelled`, `ConnectionClosed` (written, then the
   * connection was lost: never resent), `NotProcessed` (after the last retry),
   * `ConnectionRefused` (connecting failed and no other address could be tried).
   */
  request(message: Message, options?: RequestOptions): Promise<Message>;
  /**
   * Lends one connection exclusively (one with nothing in flight, or a new one).
   *
   * @param options A signal and the time limit of the wait.
   * @returns The lease: release it with `release()` or `await using`.
   * @throws {PoolExhausted} {CircuitOpen} {ProtocolError} As {@linkcode Pool.request} does.
   */
  acquire(options?: AcquireOptions): Promise<PoolLease>;
  /** A snapshot of the pool's connections, waiters, counters and addresses. */
  stats(): PoolStats;
  /** An async iterator of the pool's events, from now until it is closed. */
  status(): AsyncIterableIterator<PoolEvent>;
  /**
   * Stops new requests and leases (they fail with `ConnectionClosed`, and so do waiters), waits
   * until the requests in flight finished and leases were released, then closes.
   *
   * @param timeoutMs The time limit (default `client.response_timeout`); after it, closes anyway.
   */
  drain(timeoutMs?: number): Promise<void>;
  /** Closes every connection (gracefully on the wire) and fails every waiter. */
  close(): Promise<void>;
  /** Resolves once the pool is closed. */
  closed(): Promise<void>;
}

interface AddressState {
  readonly address: string;
  readonly breaker: CircuitBreaker | undefined;
  readonly slots: Set<Slot>;
  opening: number;
  /** Consecutive failures to connect, for the backoff. */
  failures: number;
  /** No attempt before this time (backoff). */
  retryAt: number;
  lastError: ProtocolError | undefined;
}

interface Slot {
  readonly id: number;
  readonly state: AddressState;
  readonly client: Client;
  readonly connection: Connection;
  readonly expiresAt: number;
  inflight: number;
  leased: boolean;
  checking: boolean;
  retiring: boolean;
  closing: boolean;
  lastUsed: number;
  /** Ends a request on this connection and passes its reply on (one function per connection). */
  readonly onReply: (reply: Message) => Message;
}

interface Waiter {
  readonly lease: boolean;
  readonly resolve: (slot: Slot) => void;
  readonly reject: (error: Error) => void;
}

function count(name: string, value: number | undefined, fallback: number, min: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < min) {
    throw new RangeError(`Cannot use ${name} "${v}": it must be an integer of at least ${min}`);
  }
  return v;
}

function duration(
  name: string,
  value: number | undefined,
  fallback: number,
  zero: boolean,
): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v < (zero ? 0 : 1) || v > 2 ** 31 - 1) {
    throw new RangeError(
      `Cannot use ${name} "${v}": it must be ${zero ? "0 or " : ""}from 1 to ${2 ** 31 - 1} ms`,
    );
  }
  return v;
}

/**
 * Creates a pool of connections to one or more servers. It opens `minConnections` at once (in
 * the background) and the others when requests need them; nothing else is dialled up front.
 * Settings come from the options, then the configuration's `[pool]` section. Connections are
 * made as {@linkcode connect} makes them (the configuration, security, transport and
 * compression options apply to each), without automatic reconnection: the pool replaces them.
 *
 * @example Requests over a pool of two connections
 * ```ts
 * import { createPool, Dispatcher, registerStandardHandlers, serve } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * await using server = await serve({ address: "127.0.0.1:0" }, registerStandardHandlers(new Dispatcher()));
 * const { port } = server.addr as Deno.NetAddr;
 * await using pool = createPool({
 *   address: `127.0.0.1:${port}`,
 *   security: { serverKeys: [server.publicKey!] },
 *   maxConnections: 2,
 *   maxRequestsPerConnection: 10,
 * });
 * const replies = await Promise.all(
 *   Array.from({ length: 50 }, (_, i) => pool.request({ type: "echo", text: `${i}` })),
 * );
 * assert.deepEqual(replies[7], { type: "echo", text: "7" });
 * assert.ok(pool.stats().open <= 2);
 * ```
 *
 * @example An exclusive lease, returned at the end of the scope
 * ```ts
 * import { createPool, Dispatcher, registerStandardHandlers, serve } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * await using server = await serve({ address: "127.0.0.1:0" }, registerStandardHandlers(new Dispatcher()));
 * const { port } = server.addr as Deno.NetAddr;
 * await using pool = createPool({
 *   address: `127.0.0.1:${port}`,
 *   security: { serverKeys: [server.publicKey!] },
 * });
 * {
 *   await using lease = await pool.acquire({ timeoutMs: 5000 });
 *   assert.deepEqual(await lease.connection.request({ type: "ping" }), { type: "pong" });
 *   assert.equal(pool.stats().leased, 1);
 * }
 * assert.equal(pool.stats().leased, 0);
 * ```
 *
 * @param options Addresses, limits, timeouts, health checks, breaker, retries, and the options
 * of {@linkcode connect}.
 * @returns The pool.
 * @throws {RangeError} For a limit or a duration out of range, `minConnections` above
 * `maxConnections`, or `idleTimeoutMs` not below the configuration's `server.idle_timeout`.
 * @throws {TypeError} For an empty list of addresses, or an address given twice.
 * @throws {ConfigError} For an invalid configuration or address.
 */
export function createPool(options: PoolOptions = {}): Pool {
  return new ConnectionPool(options);
}

class ConnectionPool implements Pool {
  readonly #config: NetworkConfig;
  readonly #connectOptions: Omit<ConnectOptions, "address" | "autoReconnect" | "signal">;
  /** Session resumption shared by every connection (tickets kept per address, or as given). */
  readonly #resumption: ClientResumption | undefined;
  readonly #ticketPerAddress: boolean;
  readonly #states: AddressState[];
  readonly #min: number;
  readonly #max: number;
  readonly #perConnection: number;
  readonly #idleMs: number;
  readonly #lifetimeMs: number;
  readonly #acquireMs: number;
  readonly #maxWaiters: number;
  readonly #checkIdleMs: number;
  readonly #checkIntervalMs: number;
  readonly #checkTimeoutMs: number;
  readonly #maxAttempts: number;
  readonly #events = new EventStream<PoolEvent>(256);
  readonly #slots = new Set<Slot>();
  readonly #waiters = new Set<Waiter>();
  #leaseWaiters = 0;
  #turnNow = -1;
  #turnUses = 0;
  readonly #tasks = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort: () => void;
  readonly #tick: ReturnType<typeof setInterval>;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #opening = 0;
  #nextId = 1;
  #draining = false;
  #closed = false;
  #closedPromise: Promise<void> | undefined;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;
  #lastError: ProtocolError | undefined;
  readonly #counters = {
    created: 0,
    closed: 0,
    failedConnects: 0,
    acquireTimeouts: 0,
    rejected: 0,
    retries: 0,
  };

  constructor(options: PoolOptions) {
    const {
      address,
      minConnections,
      maxConnections,
      maxRequestsPerConnection,
      idleTimeoutMs,
      maxLifetimeMs,
      acquireTimeoutMs,
      maxWaiters,
      healthCheck,
      circuitBreaker,
      retry,
      signal,
      config: given,
      ...connectOptions
    } = options;
    this.#done = new Promise((resolve) => (this.#resolveDone = resolve));
    const config = withAddress(given, "client", undefined);
    const p = config.pool;
    const addresses = address === undefined
      ? (p.addresses.length > 0 ? p.addresses : [config.client.address])
      : typeof address === "string"
      ? [address]
      : [...address];
    if (addresses.length === 0) throw new TypeError("Cannot create a pool without an address");
    if (new Set(addresses).size !== addresses.length) {
      throw new TypeError(`Cannot use addresses "${addresses.join(", ")}": one is given twice`);
    }
    // Each address is checked now (ConfigError), not at the first request.
    for (const a of addresses) withAddress(config, "client", a);
    this.#config = config;
    this.#connectOptions = { ...connectOptions, config };
    // With `security.resumption` on, one ticket store serves every connection of the pool, so a
    // replaced connection (lifetime, idle, failover back) resumes instead of a full handshake.
    const explicitResumption = connectOptions.security?.resumption;
    this.#ticketPerAddress = explicitResumption === undefined;
    this.#resumption = explicitResumption ??
      (config.security.resumption && config.transport.encryptionEnabled
        ? { store: new SessionTicketStore(), name: "" }
        : undefined);
    this.#max = count("maxConnections", maxConnections, p.maxConnections, 1);
    this.#min = count("minConnections", minConnections, p.minConnections, 0);
    if (this.#min > this.#max) {
      throw new RangeError(
        `Cannot use minConnections "${this.#min}": it must not exceed maxConnections "${this.#max}"`,
      );
    }
    this.#perConnection = count(
      "maxRequestsPerConnection",
      maxRequestsPerConnection,
      p.maxRequestsPerConnection,
      1,
    );
    this.#idleMs = duration("idleTimeoutMs", idleTimeoutMs, p.idleTimeout, true);
    const serverIdle = config.server.idleTimeout;
    if (this.#idleMs > 0 && serverIdle > 0 && this.#idleMs >= serverIdle) {
      throw new RangeError(
        `Cannot use idleTimeoutMs "${this.#idleMs}": it must be below server.idle_timeout "${serverIdle}", ` +
          "so that the pool closes idle connections before the server does",
      );
    }
    this.#lifetimeMs = duration("maxLifetimeMs", maxLifetimeMs, p.maxLifetime, true);
    this.#acquireMs = duration("acquireTimeoutMs", acquireTimeoutMs, p.acquireTimeout, false);
    this.#maxWaiters = count("maxWaiters", maxWaiters, p.maxWaiters, 0);
    this.#checkIdleMs = duration(
      "healthCheck.idleMs",
      healthCheck?.idleMs,
      p.healthCheckIdle,
      true,
    );
    this.#checkIntervalMs = duration(
      "healthCheck.intervalMs",
      healthCheck?.intervalMs,
      p.healthCheckInterval,
      true,
    );
    this.#checkTimeoutMs = duration(
      "healthCheck.timeoutMs",
      healthCheck?.timeoutMs,
      p.healthCheckTimeout,
      false,
    );
    this.#maxAttempts = retry === false
      ? 1
      : count("retry.maxAttempts", retry?.maxAttempts, p.retryAttempts, 1);
    const breaker = circuitBreaker === false ? undefined : {
      failureThreshold: count(
        "circuitBreaker.failureThreshold",
        circuitBreaker?.failureThreshold,
        p.breakerThreshold,
        0,
      ),
      cooldownMs: duration(
        "circuitBreaker.cooldownMs",
        circuitBreaker?.cooldownMs,
        p.breakerCooldown,
        false,
      ),
      maxCooldownMs: duration(
        "circuitBreaker.maxCooldownMs",
        circuitBreaker?.maxCooldownMs,
        p.breakerMaxCooldown,
        false,
      ),
      probes: count("circuitBreaker.probes", circuitBreaker?.probes, p.breakerProbes, 1),
    };
    if (breaker !== undefined && breaker.maxCooldownMs < breaker.cooldownMs) {
      throw new RangeError(
        `Cannot use circuitBreaker.maxCooldownMs "${breaker.maxCooldownMs}": it must not be less than cooldownMs "${breaker.cooldownMs}"`,
      );
    }
    this.#states = addresses.map((a) => {
      const state: AddressState = {
        address: a,
        breaker: breaker === undefined || breaker.failureThreshold === 0
          ? undefined
          : new CircuitBreaker(breaker),
        slots: new Set(),
        opening: 0,
        failures: 0,
        retryAt: 0,
        lastError: undefined,
      };
      if (state.breaker !== undefined) {
        state.breaker.onChange = (from, to, retryInMs) => {
          log.info("Circuit breaker of {address}: {from} -> {to}", { address: a, from, to });
          this.#events.emit({ type: "breaker", address: a, from, to, retryInMs });
        };
      }
      return state;
    });
    // One timer for lifetimes, idle connections, periodic checks and minConnections.
    const periods = [this.#idleMs, this.#lifetimeMs / 10, this.#checkIntervalMs].filter((v) =>
      v > 0
    );
    const tickMs = Math.max(10, Math.min(1000, ...periods.map((v) => v / 4)));
    this.#tick = setInterval(() => this.#maintain(), tickMs);
    // The timer alone does not keep the process alive: connections and waiters do.
    Deno.unrefTimer(this.#tick);
    this.#signal = signal;
    this.#onAbort = () => void this.close();
    if (signal?.aborted) {
      queueMicrotask(this.#onAbort);
    } else {
      signal?.addEventListener("abort", this.#onAbort, { once: true });
    }
    this.#ensureMin();
  }

  get isClosed(): boolean {
    return this.#closed || this.#draining;
  }

  // -----------------------------------------------------------------------------------------
  // Requests and leases

  request(message: Message, options: RequestOptions = NO_OPTIONS): Promise<Message> {
    const timeoutMs = options.timeoutMs ?? this.#config.client.responseTimeout;
    if (!(timeoutMs > 0)) {
      return Promise.reject(
        new RangeError(`Cannot use request timeout "${timeoutMs}": it must be positive`),
      );
    }
    const started = this.#coarseNow();
    // The fast path (a hot one): capacity at once, no check due: the connection's own promise,
    // with the caller's options as they are (no timeout given: the connection's shared timer).
    // Waiters go first: no capacity is taken past them.
    const slot = this.#closed || this.#draining || options.signal?.aborted ||
        this.#waiters.size > 0
      ? undefined
      : this.#reserve(false);
    if (slot !== undefined) {
      if (!this.#checkDue(slot) && !slot.connection.isClosed && !slot.connection.goingAway) {
        return slot.connection.request(message, options).then(
          slot.onReply,
          (error) => {
            this.#finished(slot);
            if (!this.#retryable(error, 1, options.signal)) throw error;
            this.#retrying(slot, 1, error);
            return this.#requestSlowly(message, options, timeoutMs, started, 2);
          },
        );
      }
      slot.inflight--;
    }
    return this.#requestSlowly(message, options, timeoutMs, started, 1);
  }

  /** A request that waits for capacity, a health check, or is sent again. */
  async #requestSlowly(
    message: Message,
    options: RequestOptions,
    timeoutMs: number,
    started: number,
    first: number,
  ): Promise<Message> {
    const signal = options.signal;
    for (let attempt = first;; attempt++) {
      const left = timeoutMs - (performance.now() - started);
      if (left <= 0) {
        throw new ProtocolError("Timeout", `Request timed out after ${timeoutMs} ms`);
      }
      const slot = await this.#obtain(false, Math.min(this.#acquireMs, left), signal);
      const connection = slot.connection;
      try {
        if (connection.isClosed || connection.goingAway) {
          // Never written: the connection closed or drains since it was picked.
          throw new ProtocolError(
            "NotProcessed",
            `Connection to "${slot.state.address}" closed before the request was written`,
          );
        }
        const remaining = Math.max(1, timeoutMs - (performance.now() - started));
        return await connection.request(
          message,
          signal === undefined ? { timeoutMs: remaining } : { timeoutMs: remaining, signal },
        );
      } catch (error) {
        if (!this.#retryable(error, attempt, signal)) throw error;
        this.#retrying(slot, attempt, error as ProtocolError);
      } finally {
        this.#finished(slot);
      }
    }
  }

  /** Whether a failed attempt may be sent again: provably not processed, attempts left. */
  #retryable(error: unknown, attempt: number, signal: AbortSignal | undefined): boolean {
    return isProtocolError(error, "NotProcessed") && attempt < this.#maxAttempts &&
      signal?.aborted !== true && !this.#closed;
  }

  #retrying(slot: Slot, attempt: number, error: ProtocolError): void {
    if (slot.connection.goingAway && !slot.retiring) this.#retire(slot, "goaway");
    this.#counters.retries++;
    this.#events.emit({ type: "retry", address: slot.state.address, attempt, error });
  }

  /** A request on `slot` ended. */
  #finished(slot: Slot): void {
    slot.inflight--;
    slot.lastUsed = this.#coarseNow();
    this.#released(slot);
  }

  /**
   * `performance.now()` shared by up to 256 reads within one turn of the event loop (as the
   * connection's request table does): requests issued or settled together read the clock once.
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

  async acquire(options: AcquireOptions = {}): Promise<PoolLease> {
    const waitMs = duration("timeoutMs", options.timeoutMs, this.#acquireMs, false);
    const slot = await this.#obtain(true, waitMs, options.signal);
    let done = false;
    const release = (destroy: boolean): void => {
      if (done) return;
      done = true;
      slot.leased = false;
      slot.lastUsed = performance.now();
      if (destroy) this.#retire(slot, "destroyed");
      this.#released(slot);
    };
    return {
      connection: slot.connection,
      address: slot.state.address,
      release: () => release(false),
      destroy: () => release(true),
      [Symbol.dispose]: () => release(false),
      [Symbol.asyncDispose]: () => Promise.resolve(release(false)),
    };
  }

  /** A reserved, healthy connection (its `inflight` counted, or `leased` set). */
  async #obtain(lease: boolean, waitMs: number, signal: AbortSignal | undefined): Promise<Slot> {
    const until = performance.now() + waitMs;
    for (;;) {
      if (this.#closed || this.#draining) throw this.#closedError();
      if (signal?.aborted) {
        throw new ProtocolError("Cancelled", "Waiting for a pooled connection was cancelled", {
          cause: signal.reason,
        });
      }
      const slot = this.#reserve(lease) ?? await this.#wait(lease, until, signal);
      if (await this.#healthy(slot)) return slot;
      // The check failed: the connection is closing; give the reservation back and pick again.
      if (lease) slot.leased = false;
      else slot.inflight--;
    }
  }

  /** Takes capacity at once: the least-loaded usable connection, or `undefined`. */
  #reserve(lease: boolean): Slot | undefined {
    let best: Slot | undefined;
    for (const slot of this.#slots) {
      if (
        slot.leased || slot.checking || slot.retiring || slot.closing ||
        slot.connection.isClosed || slot.connection.goingAway
      ) {
        continue;
      }
      if (lease ? slot.inflight > 0 : slot.inflight >= this.#perConnection) continue;
      if (best === undefined || slot.inflight < best.inflight) best = slot;
      if (best.inflight === 0) break;
    }
    if (best !== undefined) {
      if (lease) best.leased = true;
      else best.inflight++;
    }
    return best;
  }

  #wait(lease: boolean, until: number, signal: AbortSignal | undefined): Promise<Slot> {
    const waitMs = until - performance.now();
    if (this.#waiters.size >= this.#maxWaiters) {
      this.#counters.rejected++;
      this.#events.emit({ type: "exhausted", reason: "queue-full", waiting: this.#waiters.size });
      return Promise.reject(
        new PoolExhausted(
          "queue-full",
          `Pool has "${this.#waiters.size}" callers waiting already (maxWaiters "${this.#maxWaiters}")`,
          this.#lastError === undefined ? {} : { cause: this.#lastError },
        ),
      );
    }
    if (waitMs <= 0) return Promise.reject(this.#exhausted(0));
    return new Promise<Slot>((resolve, reject) => {
      const settle = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (this.#waiters.delete(waiter) && lease) this.#leaseWaiters--;
      };
      const waiter: Waiter = {
        lease,
        resolve: (slot) => {
          settle();
          resolve(slot);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      };
      const onAbort = (): void =>
        waiter.reject(
          new ProtocolError("Cancelled", "Waiting for a pooled connection was cancelled", {
            cause: signal!.reason,
          }),
        );
      const timer = setTimeout(() => waiter.reject(this.#exhausted(Math.round(waitMs))), waitMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(waiter);
      if (lease) this.#leaseWaiters++;
      this.#dispatch();
    });
  }

  #exhausted(waitedMs: number): PoolExhausted {
    this.#counters.acquireTimeouts++;
    this.#events.emit({ type: "exhausted", reason: "timeout", waiting: this.#waiters.size });
    return new PoolExhausted(
      "timeout",
      `No pooled connection was free within ${waitedMs} ms (${this.#slots.size} open, ${this.#opening} opening, maxConnections "${this.#max}")`,
      this.#lastError === undefined ? {} : { cause: this.#lastError },
    );
  }

  /** Whether `slot`, just reserved, must be checked first: it was idle too long. */
  #checkDue(slot: Slot): boolean {
    const alone = slot.leased ? slot.inflight === 0 : slot.inflight === 1;
    return this.#checkIdleMs > 0 && alone &&
      performance.now() - slot.lastUsed >= this.#checkIdleMs;
  }

  /** The health check before use: a PING when the connection was idle too long. */
  async #healthy(slot: Slot): Promise<boolean> {
    return !this.#checkDue(slot) || await this.#check(slot);
  }

  /** PINGs a connection; a failure closes it and counts against its address. */
  async #check(slot: Slot): Promise<boolean> {
    slot.checking = true;
    try {
      await slot.connection.ping({ timeoutMs: this.#checkTimeoutMs, signal: this.#abort.signal });
      slot.lastUsed = performance.now();
      this.#events.emit({
        type: "health-check",
        address: slot.state.address,
        connectionId: slot.id,
      });
      return true;
    } catch (error) {
      if (this.#closed) return false;
      const e = toProtocolError(error);
      this.#events.emit({
        type: "health-check",
        address: slot.state.address,
        connectionId: slot.id,
        error: e,
      });
      slot.state.lastError = e;
      slot.state.breaker?.failure(performance.now());
      log.info("Health check of connection {id} to {address} failed: {error}", {
        id: slot.id,
        address: slot.state.address,
        error: e.message,
      });
      this.#retire(slot, "health-check", true);
      return false;
    } finally {
      slot.checking = false;
    }
  }

  /** Capacity came back on `slot`: close it when it retires, else serve waiters. */
  #released(slot: Slot): void {
    if (slot.retiring && slot.inflight === 0 && !slot.leased) this.#closeSlot(slot, false);
    if (this.#waiters.size > 0) this.#dispatch();
  }

  // -----------------------------------------------------------------------------------------
  // Capacity

  /** Serves waiters in order, opens connections for the rest, fails them when none can come. */
  #dispatch(): void {
    if (this.#closed) return;
    for (const waiter of this.#waiters) {
      const slot = this.#reserve(waiter.lease);
      if (slot !== undefined) waiter.resolve(slot);
      // No room for a request means no room for any later one (a lease needs more).
      else if (!waiter.lease) break;
    }
    if (this.#waiters.size === 0) return;
    this.#grow();
    if (this.#slots.size > 0 || this.#opening > 0) return;
    // Nothing open and nothing opening: fail fast when every breaker is open, else try again
    // once the earliest backoff ends.
    const now = performance.now();
    let soonest = Infinity;
    let open: AddressState | undefined;
    let allOpen = true;
    for (const state of this.#states) {
      if (state.breaker !== undefined && !state.breaker.allows(now)) {
        if (open === undefined || state.breaker.retryInMs(now) < open.breaker!.retryInMs(now)) {
          open = state;
        }
      } else {
        allOpen = false;
        soonest = Math.min(soonest, Math.max(0, state.retryAt - now));
      }
    }
    if (allOpen && open !== undefined) {
      const error = new CircuitOpen(
        open.address,
        open.breaker!.retryInMs(now),
        open.lastError === undefined ? {} : { cause: open.lastError },
      );
      for (const waiter of this.#waiters) waiter.reject(error);
      return;
    }
    if (this.#retryTimer === undefined && Number.isFinite(soonest)) {
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        this.#dispatch();
      }, Math.max(1, soonest));
    }
  }

  /** Opens connections for the waiters left: one per lease, one per `maxRequestsPerConnection`. */
  #grow(): void {
    const leases = this.#leaseWaiters;
    const requests = this.#waiters.size - leases;
    const wanted = leases + Math.ceil(requests / this.#perConnection);
    while (this.#opening < wanted && this.#slots.size + this.#opening < this.#max) {
      if (!this.#openOne()) break;
    }
  }

  /** Keeps `minConnections` (not counting retiring ones) open. */
  #ensureMin(): void {
    if (this.#closed || this.#draining) return;
    let active = this.#opening;
    for (const slot of this.#slots) if (!slot.retiring && !slot.closing) active++;
    while (active < this.#min && this.#slots.size + this.#opening < this.#max) {
      if (!this.#openOne()) break;
      active++;
    }
  }

  /** Starts opening one connection to the address that may be tried and has the fewest. */
  #openOne(): boolean {
    const now = performance.now();
    let best: AddressState | undefined;
    for (const state of this.#states) {
      if (state.retryAt > now || (state.breaker !== undefined && !state.breaker.allows(now))) {
        continue;
      }
      if (
        best === undefined ||
        state.slots.size + state.opening < best.slots.size + best.opening
      ) {
        best = state;
      }
    }
    if (best === undefined) return false;
    const probe = best.breaker?.state(now) === "half-open";
    if (best.breaker !== undefined && !best.breaker.tryAcquire(now)) return false;
    const task = this.#open(best, probe);
    this.#tasks.add(task);
    void task.finally(() => this.#tasks.delete(task));
    return true;
  }

  async #open(state: AddressState, probe: boolean): Promise<void> {
    state.opening++;
    this.#opening++;
    this.#events.emit({ type: "connecting", address: state.address, probe });
    let client: Client | undefined;
    try {
      const resumption = this.#resumption === undefined ? undefined : {
        store: this.#resumption.store,
        name: this.#ticketPerAddress ? state.address : this.#resumption.name,
      };
      client = await connect({
        ...this.#connectOptions,
        ...(resumption === undefined
          ? {}
          : { security: { ...this.#connectOptions.security, resumption } }),
        address: state.address,
        autoReconnect: false,
        signal: this.#abort.signal,
      });
      if (probe) {
        // A probe is a connect and a PING, never a caller's request.
        await client.connection!.ping({
          timeoutMs: this.#checkTimeoutMs,
          signal: this.#abort.signal,
        });
      }
    } catch (error) {
      state.opening--;
      this.#opening--;
      await client?.close();
      if (this.#closed) return;
      this.#failed(state, toProtocolError(error));
      return;
    }
    state.opening--;
    this.#opening--;
    const connection = client.connection;
    if (this.#closed || this.#draining || connection === undefined) {
      await client.close();
      return;
    }
    state.failures = 0;
    state.retryAt = 0;
    state.breaker?.success();
    const now = performance.now();
    const slot: Slot = {
      id: this.#nextId++,
      state,
      client,
      connection,
      // 90 to 100 % of the lifetime, so that connections opened together do not leave together.
      expiresAt: this.#lifetimeMs === 0
        ? Infinity
        : now + this.#lifetimeMs * (0.9 + 0.1 * Math.random()),
      inflight: 0,
      leased: false,
      checking: false,
      retiring: false,
      closing: false,
      lastUsed: now,
      onReply: (reply) => {
        this.#finished(slot);
        return reply;
      },
    };
    this.#slots.add(slot);
    state.slots.add(slot);
    this.#counters.created++;
    this.#events.emit({ type: "connected", address: state.address, connectionId: slot.id });
    const done = client.closed().then((error) => this.#removed(slot, error));
    this.#tasks.add(done);
    void done.finally(() => this.#tasks.delete(done));
    this.#dispatch();
  }

  #failed(state: AddressState, error: ProtocolError): void {
    const now = performance.now();
    state.failures++;
    state.lastError = error;
    this.#lastError = error;
    const c = this.#config.client;
    // The client's reconnection rule: exponential backoff with full jitter.
    state.retryAt = now + backoffDelay(state.failures, c.reconnectDelay, c.maxReconnectDelay);
    state.breaker?.failure(now);
    this.#counters.failedConnects++;
    this.#events.emit({ type: "connect-failed", address: state.address, error });
    log.info("Connecting to {address} failed ({failures} in a row): {error}", {
      address: state.address,
      failures: state.failures,
      error: error.message,
    });
    // A failed attempt fails the oldest waiter it was made for when nothing else can serve it
    // now (no connection, nothing opening, no other address to try): callers see the cause at
    // once instead of waiting out their time limit behind a dead server.
    if (this.#slots.size === 0 && this.#opening === 0 && this.#waiters.size > 0) {
      const anyAvailable = this.#states.some((s) =>
        s.retryAt <= now && (s.breaker === undefined || s.breaker.allows(now))
      );
      if (!anyAvailable && (state.breaker === undefined || state.breaker.state(now) === "closed")) {
        const [oldest] = this.#waiters;
        oldest!.reject(error);
      }
    }
    this.#dispatch();
    this.#ensureMin();
  }

  #removed(slot: Slot, error: ProtocolError | undefined): void {
    this.#slots.delete(slot);
    slot.state.slots.delete(slot);
    this.#counters.closed++;
    this.#events.emit(
      error === undefined
        ? { type: "disconnected", address: slot.state.address, connectionId: slot.id }
        : { type: "disconnected", address: slot.state.address, connectionId: slot.id, error },
    );
    if (this.#closed) return;
    this.#ensureMin();
    if (this.#waiters.size > 0) this.#dispatch();
  }

  /** No new work for `slot`; it closes once its requests finished and its lease came back. */
  #retire(
    slot: Slot,
    reason: "lifetime" | "idle" | "health-check" | "destroyed" | "goaway",
    now = false,
  ): void {
    if (slot.closing) return;
    if (!slot.retiring) {
      slot.retiring = true;
      this.#events.emit({
        type: "retiring",
        address: slot.state.address,
        connectionId: slot.id,
        reason,
      });
    }
    if (now || (slot.inflight === 0 && !slot.leased)) this.#closeSlot(slot, now);
    this.#ensureMin();
  }

  #closeSlot(slot: Slot, abort: boolean): void {
    if (slot.closing) return;
    slot.closing = true;
    if (abort) slot.connection.abort();
    const task = slot.client.close();
    this.#tasks.add(task);
    void task.finally(() => this.#tasks.delete(task));
  }

  /** The timer: lifetimes, idle connections, periodic health checks, `minConnections`. */
  #maintain(): void {
    if (this.#closed) return;
    const now = performance.now();
    let idleOpen = 0;
    for (const slot of this.#slots) {
      if (!slot.retiring && !slot.closing) idleOpen++;
    }
    for (const slot of this.#slots) {
      if (slot.closing) continue;
      if (!slot.retiring && now >= slot.expiresAt) {
        this.#retire(slot, "lifetime");
        continue;
      }
      if (!slot.retiring && slot.connection.goingAway) {
        // The server drains it (GOAWAY): replace it now rather than when it closes.
        this.#retire(slot, "goaway");
        continue;
      }
      if (slot.retiring || slot.inflight > 0 || slot.leased || slot.checking) continue;
      if (this.#idleMs > 0 && now - slot.lastUsed >= this.#idleMs && idleOpen > this.#min) {
        idleOpen--;
        this.#retire(slot, "idle");
      } else if (this.#checkIntervalMs > 0 && now - slot.lastUsed >= this.#checkIntervalMs) {
        const task = this.#check(slot).then(() => {});
        this.#tasks.add(task);
        void task.finally(() => this.#tasks.delete(task));
      }
    }
    this.#ensureMin();
    if (this.#waiters.size > 0) this.#dispatch();
  }

  // -----------------------------------------------------------------------------------------
  // Observing and closing

  stats(): PoolStats {
    const now = performance.now();
    const addresses: Record<string, PoolAddressStats> = {};
    let idle = 0;
    let leased = 0;
    let inFlight = 0;
    for (const state of this.#states) {
      let stateInFlight = 0;
      let rttMs: number | undefined;
      for (const slot of state.slots) {
        stateInFlight += slot.inflight;
        if (slot.leased) leased++;
        else if (slot.inflight === 0) idle++;
        rttMs ??= slot.connection.rtt;
      }
      inFlight += stateInFlight;
      addresses[state.address] = {
        open: state.slots.size,
        opening: state.opening,
        inFlight: stateInFlight,
        breaker: state.breaker?.state(now) ?? "closed",
        failures: state.failures,
        ...(rttMs === undefined ? {} : { rttMs }),
      };
    }
    return {
      open: this.#slots.size,
      opening: this.#opening,
      idle,
      leased,
      inFlight,
      waiting: this.#waiters.size,
      ...this.#counters,
      addresses,
    };
  }

  status(): AsyncIterableIterator<PoolEvent> {
    return this.#events.iterate();
  }

  async drain(timeoutMs?: number): Promise<void> {
    const limit = duration("timeoutMs", timeoutMs, this.#config.client.responseTimeout, false);
    if (this.#closed) {
      await this.closed();
      return;
    }
    if (!this.#draining) {
      this.#draining = true;
      this.#events.emit({ type: "draining" });
      const error = this.#closedError();
      for (const waiter of this.#waiters) waiter.reject(error);
    }
    const until = performance.now() + limit;
    while (performance.now() < until && [...this.#slots].some((s) => s.inflight > 0 || s.leased)) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(10, until - performance.now())));
    }
    await this.close();
  }

  close(): Promise<void> {
    this.#closedPromise ??= this.#close().then(this.#resolveDone);
    return this.#closedPromise;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#tick);
    clearTimeout(this.#retryTimer);
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#abort.abort();
    const error = this.#closedError();
    for (const waiter of this.#waiters) waiter.reject(error);
    for (const slot of this.#slots) this.#closeSlot(slot, false);
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    this.#events.emit({ type: "closed" });
  }

  closed(): Promise<void> {
    return this.#done;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #closedError(): ProtocolError {
    return new ProtocolError(
      "ConnectionClosed",
      this.#draining && !this.#closed ? "Pool is draining" : "Pool is closed",
    );
  }
}
