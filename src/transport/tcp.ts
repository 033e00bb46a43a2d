/**
 * TCP transport: `Deno.listen` and `Deno.connect` with `TCP_NODELAY` and keep-alive switched on
 * for every socket, plus the deadline logic the other transports share.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  type Listener,
  type Transport,
  type TransportConnectOptions,
  type TransportListenOptions,
} from "./types.ts";
import { waitAtMost } from "../util/async.ts";
import { errorMessage } from "../util/error_message.ts";
import { checkTimeout } from "../util/options.ts";
import { closeQuietly } from "../util/resource.ts";
import { formatAddr, parseConnectAddress, parseHostPort } from "./address.ts";
import { acceptUntilClosed } from "./accept_loop.ts";

const TIMEOUT = Symbol("timeout");
/** After an abort, how long to wait for the attempt to release what it opened. */
const SETTLE_GRACE_MS = 100;

/**
 * Runs `op` under a time limit and an optional caller signal. `op` receives a signal that aborts
 * on either and must release everything it opened when it does. Whatever `op` still produces
 * after the deadline is passed to `dispose`. Errors are mapped to {@linkcode ProtocolError}:
 * `Timeout`, `Cancelled`, `ConnectionRefused` (nothing listens at the address),
 * `PermissionDenied` (the operating system or a missing Deno permission denied it),
 * `ConnectionClosed` (unreachable and other failures), while a `ProtocolError`, `TypeError` or
 * `RangeError` thrown by `op` passes through. The original error is kept as `cause`.
 *
 * @param what What is being done, for error messages (`Connecting to "127.0.0.1:9000"`).
 * @param options The caller's signal and time limit.
 * @param op The operation.
 * @param dispose Releases a value that arrives too late.
 * @returns What `op` returns.
 */
export async function withDeadline<T>(
  what: string,
  options: TransportConnectOptions | undefined,
  op: (signal: AbortSignal) => Promise<T>,
  dispose: (value: T) => void,
): Promise<T> {
  const timeoutMs = checkTimeout("timeoutMs", options?.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  const outer = options?.signal;
  if (outer !== undefined && !(outer instanceof AbortSignal)) {
    throw new TypeError(`signal must be an AbortSignal`);
  }
  if (outer?.aborted) {
    throw new ProtocolError("Cancelled", `${what} was cancelled`, { cause: outer.reason });
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(TIMEOUT), timeoutMs);
  const onOuterAbort = (): void => controller.abort(outer?.reason);
  outer?.addEventListener("abort", onOuterAbort, { once: true });
  let settled = false;
  const attempt = (async () => await op(controller.signal))().finally(() => {
    settled = true;
  });
  const aborted = new Promise<never>((_, reject) => {
    controller.signal.addEventListener("abort", () => reject(controller.signal.reason), {
      once: true,
    });
  });
  try {
    return await Promise.race([attempt, aborted]);
  } catch (error) {
    if (!controller.signal.aborted) controller.abort();
    attempt.then(dispose, () => {});
    if (!settled) await waitAtMost(attempt.then(() => {}, () => {}), SETTLE_GRACE_MS);
    throw mapError(what, timeoutMs, controller.signal.reason, outer, error);
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener("abort", onOuterAbort);
  }
}

function mapError(
  what: string,
  timeoutMs: number,
  reason: unknown,
  outer: AbortSignal | undefined,
  error: unknown,
): Error {
  if (reason === TIMEOUT) {
    return new ProtocolError("Timeout", `${what} timed out after ${timeoutMs} ms`, {
      cause: error === TIMEOUT ? undefined : error,
    });
  }
  if (outer?.aborted) {
    return new ProtocolError("Cancelled", `${what} was cancelled`, { cause: outer.reason });
  }
  if (
    error instanceof ProtocolError || error instanceof TypeError || error instanceof RangeError
  ) {
    return error;
  }
  const message = errorMessage(error);
  switch (osErrorCode(error)) {
    case "ConnectionRefused":
      return new ProtocolError(
        "ConnectionRefused",
        `${what} failed: connection refused (nothing listens there)`,
        { cause: error },
      );
    case "PermissionDenied":
      // Retrying cannot help: report a deployment problem, not a network condition.
      return new ProtocolError(
        "PermissionDenied",
        `${what} failed: permission denied: ${message}`,
        {
          cause: error,
        },
      );
    default:
      return new ProtocolError("ConnectionClosed", `${what} failed: ${message}`, { cause: error });
  }
}

/**
 * The specific {@linkcode ProtocolError} code of an operating-system or Deno permission error:
 * `ConnectionRefused` (`ECONNREFUSED`), `AddressInUse` (`EADDRINUSE`) or `PermissionDenied`
 * (`EACCES`/`EPERM`, or a missing Deno permission). `undefined` for every other error.
 */
export function osErrorCode(
  error: unknown,
): "ConnectionRefused" | "AddressInUse" | "PermissionDenied" | undefined {
  if (error instanceof Deno.errors.ConnectionRefused) return "ConnectionRefused";
  if (error instanceof Deno.errors.AddrInUse) return "AddressInUse";
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return "PermissionDenied";
  }
  return undefined;
}

/**
 * Wraps a `Deno.Listener` into a {@linkcode Listener}: closed-state errors become
 * `ProtocolError` code `ConnectionClosed`, `prepare` runs on every accepted connection (a
 * connection it rejects by throwing is closed and skipped), and a signal closes the listener.
 *
 * @param inner The Deno listener (owned from now on).
 * @param prepare Adjusts an accepted connection.
 * @param options A signal that closes the listener.
 * @returns The wrapped listener.
 */
export function wrapListener<C extends Deno.Conn>(
  inner: Deno.Listener<C>,
  prepare: ((conn: C) => void) | undefined,
  options: TransportListenOptions | undefined,
): Listener {
  return new WrappedListener(inner, prepare, options?.signal);
}

class WrappedListener<C extends Deno.Conn> implements Listener {
  readonly addr: Deno.Addr;
  #inner: Deno.Listener<C>;
  #prepare: ((conn: C) => void) | undefined;
  #signal: AbortSignal | undefined;
  #closed = false;
  #onAbort = (): void => this.close();

  constructor(
    inner: Deno.Listener<C>,
    prepare: ((conn: C) => void) | undefined,
    signal: AbortSignal | undefined,
  ) {
    this.#inner = inner;
    this.addr = inner.addr;
    this.#prepare = prepare;
    this.#signal = signal;
    if (signal?.aborted) this.close();
    else signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  async accept(): Promise<Deno.Conn> {
    for (;;) {
      if (this.#closed) throw this.#closedError(undefined);
      let conn: C;
      try {
        conn = await this.#inner.accept();
      } catch (error) {
        if (
          this.#closed || error instanceof Deno.errors.BadResource ||
          error instanceof Deno.errors.Interrupted
        ) {
          throw this.#closedError(error);
        }
        const message = errorMessage(error);
        const code = /os error (23|24)\)/.test(message) ? "LimitExceeded" : "ConnectionClosed";
        throw new ProtocolError(
          code,
          `Accepting on "${formatAddr(this.addr)}" failed: ${message}`,
          {
            cause: error,
          },
        );
      }
      if (this.#closed) {
        closeQuietly(conn);
        throw this.#closedError(undefined);
      }
      try {
        this.#prepare?.(conn);
      } catch {
        // The peer is already gone (the socket options could not be set): skip it.
        closeQuietly(conn);
        continue;
      }
      return conn;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    closeQuietly(this.#inner);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Deno.Conn> {
    return acceptUntilClosed(() => this.accept(), () => this.#closed);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  #closedError(cause: unknown): ProtocolError {
    return new ProtocolError(
      "ConnectionClosed",
      `Listener on "${formatAddr(this.addr)}" is closed`,
      {
        cause,
      },
    );
  }
}

/**
 * Converts a `Deno.listen` failure into a `ProtocolError` (the original error as `cause`):
 * `AddressInUse` when another listener holds the address, `PermissionDenied` when the operating
 * system or a missing Deno permission forbids it, `ConfigError` for every other failure (an
 * address that is not local, a path that cannot be created).
 */
export function listenError(address: string, error: unknown): ProtocolError {
  const message = errorMessage(error);
  const code = osErrorCode(error);
  if (code === "AddressInUse") {
    return new ProtocolError(
      "AddressInUse",
      `Cannot listen on "${address}": the address is already in use (${message})`,
      { cause: error },
    );
  }
  if (code === "PermissionDenied") {
    return new ProtocolError(
      "PermissionDenied",
      `Cannot listen on "${address}": permission denied (${message})`,
      { cause: error },
    );
  }
  return new ProtocolError("ConfigError", `Cannot listen on "${address}": ${message}`, {
    cause: error,
  });
}

/** Switches Nagle's algorithm off and keep-alive on. */
export function tuneTcp(conn: Deno.TcpConn): void {
  conn.setNoDelay(true);
  conn.setKeepAlive(true);
}

/** Options of {@linkcode TcpTransport}. */
export interface TcpTransportOptions {
  /**
   * The listen backlog (pending connections the kernel queues before `accept`).
   *
   * @default {511}
   */
  backlog?: number;
  /**
   * Bind with `SO_REUSEPORT`, so that several processes (or listeners) share the port and the
   * kernel spreads connections over them. Uses a `node:net` listener: Deno's own
   * `Deno.listen({ reusePort: true })` needs `--unstable-net` (without it the process exits with
   * code 70). Linux spreads connections by a hash of their addresses and ports; other systems
   * may give them all to one listener.
   *
   * @default {false}
   */
  reusePort?: boolean;
}

/** Validates a listen backlog. */
export function checkBacklog(value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value)) throw new TypeError(`backlog must be an integer, got "${value}"`);
  if (value < 1 || value > 65535) {
    throw new RangeError(`backlog "${value}" is outside the range 1 to 65535`);
  }
  return value;
}

/**
 * Plain TCP. Every socket, accepted or connected, gets `TCP_NODELAY` (Deno leaves Nagle's
 * algorithm on, which stalls a request written in two pieces for about 40 ms) and keep-alive.
 * Needs `--allow-net=host:port`.
 *
 * @example Echo one message over loopback
 * ```ts
 * import { TcpTransport } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const tcp = new TcpTransport();
 * await using listener = await tcp.listen("127.0.0.1:0");
 * const { port } = listener.addr as Deno.NetAddr;
 * const client = await tcp.connect(`127.0.0.1:${port}`, { timeoutMs: 2000 });
 * const server = await listener.accept();
 * await client.write(new TextEncoder().encode("hi"));
 * const buffer = new Uint8Array(2);
 * await server.read(buffer);
 * assert.equal(new TextDecoder().decode(buffer), "hi");
 * client.close();
 * server.close();
 * ```
 */
export class TcpTransport implements Transport {
  /** Always `"tcp"`. */
  readonly kind: "tcp" = "tcp";
  #backlog: number | undefined;
  #reusePort: boolean;

  /**
   * Creates a TCP transport.
   *
   * @param options The listen backlog and `reusePort`.
   */
  constructor(options: TcpTransportOptions = {}) {
    this.#backlog = checkBacklog(options.backlog);
    if (options.reusePort !== undefined && typeof options.reusePort !== "boolean") {
      throw new TypeError(`reusePort must be a boolean, got "${options.reusePort}"`);
    }
    this.#reusePort = options.reusePort ?? false;
  }

  /**
   * Listens on `"host:port"` (port 0 picks a free port; see `listener.addr`).
   *
   * @param address The address to bind, for example `"127.0.0.1:9000"` or `"[::1]:0"`.
   * @param options A signal that closes the listener.
   * @returns The listener.
   * @throws {ProtocolError} code `AddressInUse` when the port is taken, `PermissionDenied` for a
   * privileged port or a missing `--allow-net`, `ConfigError` for an address that is not local.
   */
  listen(address: string, options?: TransportListenOptions): Promise<Listener> {
    let inner: Deno.TcpListener;
    try {
      const { hostname, port } = parseHostPort(address);
      if (this.#reusePort) {
        // Loaded on demand: node:net (and the logger) stay out of the plain TCP path.
        return import("./tcp_node.ts").then(
          ({ listenReusePort }) => listenReusePort(hostname, port, this.#backlog, options),
        ).catch((error) => {
          throw error instanceof TypeError || error instanceof RangeError
            ? error
            : listenError(address, error);
        });
      }
      inner = Deno.listen({
        hostname,
        port,
        transport: "tcp",
        ...(this.#backlog === undefined ? {} : { tcpBacklog: this.#backlog }),
      });
    } catch (error) {
      return Promise.reject(
        error instanceof TypeError || error instanceof RangeError
          ? error
          : listenError(address, error),
      );
    }
    return Promise.resolve(wrapListener(inner, tuneTcp, options));
  }

  /**
   * Connects to `"host:port"`.
   *
   * @param address The address to connect to.
   * @param options A signal and a time limit (default 5000 ms).
   * @returns The connection, with `TCP_NODELAY` and keep-alive on.
   * @throws {ProtocolError} code `ConnectionRefused` when nothing listens on the port,
   * `PermissionDenied` without `--allow-net` for the host, `Timeout`, `Cancelled`, or
   * `ConnectionClosed` (unreachable, reset and other failures).
   */
  connect(address: string, options?: TransportConnectOptions): Promise<Deno.Conn> {
    let hostname: string, port: number;
    try {
      ({ hostname, port } = parseConnectAddress(address));
    } catch (error) {
      return Promise.reject(error);
    }
    return withDeadline(`Connecting to "${address}"`, options, async (signal) => {
      const conn = await Deno.connect({ hostname, port, transport: "tcp", signal });
      try {
        tuneTcp(conn);
      } catch (error) {
        closeQuietly(conn);
        throw error;
      }
      return conn;
    }, closeQuietly);
  }
}
