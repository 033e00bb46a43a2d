/**
 * In-memory transport: a {@linkcode MemoryTransport} that listens on and connects to names in a
 * registry of its own, handing each side one end of a {@linkcode memoryConnPair}
 * (`memory_conn.ts`, which describes how the connections behave). Nothing touches the network.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import {
  checkOptions,
  FIRST_EPHEMERAL_PORT,
  LAST_PORT,
  type MemoryAddr,
  type MemoryConn,
  type MemoryConnOptions,
  memoryConnPair,
} from "./memory_conn.ts";
import { formatAddr, formatHostPort, parseConnectAddress, parseHostPort } from "./address.ts";
import { checkTimeout } from "../util/options.ts";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  type Listener,
  type Transport,
  type TransportConnectOptions,
  type TransportListenOptions,
} from "./types.ts";
import { acceptUntilClosed } from "./accept_loop.ts";

/**
 * A listener of a {@linkcode MemoryTransport}: accepts {@linkcode MemoryConn}s.
 *
 * @example Accept connections until the listener closes
 * ```ts
 * import { MemoryTransport } from "@npro/network-protocol/testing";
 * import assert from "node:assert/strict";
 *
 * const transport = new MemoryTransport();
 * const listener = await transport.listen("memory:1");
 * const client = await transport.connect("memory:1");
 * let accepted = 0;
 * for await (const conn of listener) {
 *   accepted++;
 *   conn.close();
 *   listener.close(); // ends the loop
 * }
 * assert.equal(accepted, 1);
 * assert.equal(await client.read(new Uint8Array(1)), null);
 * client.close();
 * ```
 */
export interface MemoryListener extends Listener {
  /**
   * Waits for the next connection.
   *
   * @returns The accepted connection (the server end).
   * @throws {ProtocolError} code `ConnectionClosed` once the listener is closed.
   */
  accept(): Promise<MemoryConn>;
  /**
   * Yields accepted connections until the listener closes.
   *
   * @returns The iterator.
   */
  [Symbol.asyncIterator](): AsyncIterator<MemoryConn>;
}

/**
 * A {@linkcode Transport} without sockets: `listen` registers a name in a registry that belongs
 * to this transport object, and `connect` to that name hands a {@linkcode memoryConnPair} end to
 * each side. Pass the same object to the server and the client.
 *
 * Addresses have the forms the configuration accepts, so `serve` and `connect` take them
 * unchanged: `"host:port"` (or `"[v6]:port"`), giving `Deno.NetAddr` addresses, or an absolute
 * path (with `transport.kind = "unix"` in the configuration), giving `Deno.UnixAddr` addresses.
 * Host names are never resolved: a connection reaches only a listener whose address is written
 * the same way (host names compared case-insensitively). Port 0 makes `listen` pick a free port.
 * A connecting end's local address has the host of the listener and a fresh port (a path of
 * `""` for a Unix-like address). Note that the daemon's per-address handshake rate then counts
 * every client of one listener as one address.
 *
 * `connect` completes at once when a listener exists (its connection waits in the listener's
 * backlog until accepted) and fails with `ConnectionRefused` otherwise. Closing a listener
 * resets the connections still in its backlog, as a TCP listener does.
 *
 * @example Serve and connect with no socket
 * ```ts
 * import { connect, Dispatcher, registerStandardHandlers, serve } from "@npro/network-protocol";
 * import { MemoryTransport } from "@npro/network-protocol/testing";
 * import assert from "node:assert/strict";
 *
 * const transport = new MemoryTransport();
 * await using server = await serve(
 *   { transport, address: "memory:9000" },
 *   registerStandardHandlers(new Dispatcher()),
 * );
 * await using client = await connect({
 *   transport,
 *   address: "memory:9000",
 *   autoReconnect: false,
 *   security: { serverKeys: [server.publicKey!] },
 * });
 * assert.deepEqual(await client.request({ type: "echo", text: "hi" }), { type: "echo", text: "hi" });
 * ```
 *
 * @example Listen and connect directly
 * ```ts
 * import { MemoryTransport } from "@npro/network-protocol/testing";
 * import assert from "node:assert/strict";
 *
 * const transport = new MemoryTransport();
 * await using listener = await transport.listen("memory:0");
 * const { port } = listener.addr as Deno.NetAddr;
 * const client = await transport.connect(`memory:${port}`);
 * const server = await listener.accept();
 * assert.deepEqual(server.remoteAddr, client.localAddr);
 * await client.write(new Uint8Array([7]));
 * const buffer = new Uint8Array(1);
 * assert.equal(await server.read(buffer), 1);
 * assert.equal(buffer[0], 7);
 * client.close();
 * server.close();
 * ```
 */
export class MemoryTransport implements Transport {
  /** Always `"memory"`. */
  readonly kind: "memory" = "memory";
  readonly #highWaterMark: number;
  readonly #maxReadSize: number;
  readonly #listeners = new Map<string, MemoryListenerImpl>();
  #nextPort = FIRST_EPHEMERAL_PORT;

  /**
   * Creates a memory transport with an empty registry.
   *
   * @param options The buffer size and read size limit of the connections it makes.
   * @throws {TypeError} When an option is not an integer.
   * @throws {RangeError} When an option is below 1.
   */
  constructor(options: MemoryConnOptions = {}) {
    const { highWaterMark, maxReadSize } = checkOptions(options);
    this.#highWaterMark = highWaterMark;
    this.#maxReadSize = maxReadSize;
  }

  /**
   * Starts listening on a name.
   *
   * @param address `"host:port"` (port 0 picks a free port; see `listener.addr`) or an absolute
   * path.
   * @param options A signal that closes the listener.
   * @returns The listener.
   * @throws {ProtocolError} code `AddressInUse` when a listener of this transport holds the
   * address.
   * @throws {TypeError} When the address has neither form.
   * @throws {RangeError} When the port is above 65535.
   */
  listen(address: string, options?: TransportListenOptions): Promise<MemoryListener> {
    let addr: MemoryAddr;
    try {
      addr = parseMemoryAddress(address, true);
      if (addr.transport === "tcp" && addr.port === 0) {
        addr = { ...addr, port: this.#freePort(addr.hostname) };
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const key = addressKeyOf(addr);
    if (this.#listeners.has(key)) {
      return Promise.reject(
        new ProtocolError(
          "AddressInUse",
          `Cannot listen on "${address}": the address is already in use`,
        ),
      );
    }
    const listener: MemoryListenerImpl = new MemoryListenerImpl(addr, () => {
      if (this.#listeners.get(key) === listener) this.#listeners.delete(key);
    });
    this.#listeners.set(key, listener);
    listener.watch(options?.signal);
    return Promise.resolve(listener);
  }

  /**
   * Connects to a listener of this transport.
   *
   * @param address The address the listener was given (with its real port).
   * @param options A signal; the time limit is checked but never reached.
   * @returns The client end of the connection.
   * @throws {ProtocolError} code `ConnectionRefused` when nothing listens at the address,
   * `Cancelled` when the signal is already aborted.
   * @throws {TypeError} When the address has neither form or an option has the wrong type.
   * @throws {RangeError} When the port is 0 or above 65535, or `timeoutMs` is out of range.
   */
  connect(address: string, options?: TransportConnectOptions): Promise<MemoryConn> {
    let addr: MemoryAddr;
    try {
      addr = parseMemoryAddress(address, false);
      checkTimeout("timeoutMs", options?.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
      const signal = options?.signal;
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new TypeError(`signal must be an AbortSignal`);
      }
      if (signal?.aborted) {
        throw new ProtocolError("Cancelled", `Connecting to "${address}" was cancelled`, {
          cause: signal.reason,
        });
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const listener = this.#listeners.get(addressKeyOf(addr));
    if (listener === undefined) {
      return Promise.reject(
        new ProtocolError(
          "ConnectionRefused",
          `Connecting to "${address}" failed: connection refused (nothing listens there)`,
          { cause: new Deno.errors.ConnectionRefused(`Nothing listens on "${address}"`) },
        ),
      );
    }
    const serverAddr = listener.addr;
    const clientAddr: MemoryAddr = serverAddr.transport === "tcp"
      ? {
        transport: "tcp",
        hostname: serverAddr.hostname,
        port: this.#freePort(serverAddr.hostname),
      }
      : { transport: "unix", path: "" };
    const [client, server] = memoryConnPair({
      highWaterMark: this.#highWaterMark,
      maxReadSize: this.#maxReadSize,
      localAddr: clientAddr,
      remoteAddr: serverAddr,
    });
    listener.enqueue(server);
    return Promise.resolve(client);
  }

  /** A port that no listener of this transport on `hostname` holds, from the ephemeral range. */
  #freePort(hostname: string): number {
    for (let tries = 0; tries <= LAST_PORT - FIRST_EPHEMERAL_PORT; tries++) {
      const port = this.#nextPort;
      this.#nextPort = port === LAST_PORT ? FIRST_EPHEMERAL_PORT : port + 1;
      const key = addressKeyOf({ transport: "tcp", hostname, port });
      if (!this.#listeners.has(key)) return port;
    }
    throw new ProtocolError(
      "LimitExceeded",
      `No free memory port is left on "${hostname}"`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Internals

const WINDOWS_PATH = /^[A-Za-z]:[\\/]/;

/** Parses a memory address: an absolute path, or `host:port` as TCP has it. */
function parseMemoryAddress(address: string, listening: boolean): MemoryAddr {
  if (typeof address !== "string") {
    throw new TypeError(`Address must be a string, got "${typeof address}"`);
  }
  if (address.startsWith("/") || WINDOWS_PATH.test(address)) {
    return { transport: "unix", path: address };
  }
  const { hostname, port } = listening ? parseHostPort(address) : parseConnectAddress(address);
  return { transport: "tcp", hostname, port };
}

function addressKeyOf(addr: MemoryAddr): string {
  return "hostname" in addr
    ? `tcp ${formatHostPort(addr.hostname.toLowerCase(), addr.port)}`
    : `unix ${addr.path}`;
}

class MemoryListenerImpl implements MemoryListener {
  readonly addr: MemoryAddr;
  readonly #backlog: MemoryConn[] = [];
  readonly #accepts: PromiseWithResolvers<MemoryConn>[] = [];
  readonly #onClose: () => void;
  #signal: AbortSignal | undefined;
  #closed = false;
  #onAbort = (): void => this.close();

  constructor(addr: MemoryAddr, onClose: () => void) {
    this.addr = addr;
    this.#onClose = onClose;
  }

  /** Closes the listener when `signal` aborts (at once if it already has). */
  watch(signal: AbortSignal | undefined): void {
    if (signal === undefined) return;
    if (signal.aborted) {
      this.close();
      return;
    }
    this.#signal = signal;
    signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Hands a new server end to a waiting `accept`, or keeps it in the backlog. */
  enqueue(conn: MemoryConn): void {
    const waiter = this.#accepts.shift();
    if (waiter !== undefined) waiter.resolve(conn);
    else this.#backlog.push(conn);
  }

  accept(): Promise<MemoryConn> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const conn = this.#backlog.shift();
    if (conn !== undefined) return Promise.resolve(conn);
    const waiter = Promise.withResolvers<MemoryConn>();
    this.#accepts.push(waiter);
    return waiter.promise;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#onClose();
    for (const waiter of this.#accepts.splice(0)) waiter.reject(this.#closedError());
    // As a TCP listener: connections never accepted are reset.
    for (const conn of this.#backlog.splice(0)) conn.reset();
  }

  [Symbol.asyncIterator](): AsyncIterator<MemoryConn> {
    return acceptUntilClosed(() => this.accept(), () => this.#closed);
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  #closedError(): ProtocolError {
    return new ProtocolError(
      "ConnectionClosed",
      `Listener on "${formatAddr(this.addr)}" is closed`,
    );
  }
}
