/**
 * In-memory transport: a connected pair of `Deno.Conn` objects joined by two bounded byte
 * buffers ({@linkcode memoryConnPair}), and a {@linkcode MemoryTransport} that listens on and
 * connects to names in a registry of its own. Nothing touches the network, so tests that use
 * them are deterministic: every read, write and close settles through promise jobs alone, never
 * through the event loop.
 *
 * The connections behave like TCP sockets as Deno exposes them (the error classes below are the
 * ones Deno 2 reports on loopback TCP):
 *
 * - Bytes arrive in order; a read returns whatever is buffered, up to the size of its buffer, so
 *   writes are coalesced or split at arbitrary points.
 * - Each direction buffers at most `highWaterMark` bytes that the peer has not read. A write
 *   accepts as many bytes as fit and resolves with that count (a partial write), and waits while
 *   the buffer is full.
 * - `closeWrite()` gives the peer EOF (`null`) after the buffered bytes while both ends can still
 *   read; a later write on the closing end rejects with `Deno.errors.BrokenPipe`.
 * - `close()` makes the closing end's own pending reads and writes reject with
 *   `Deno.errors.Interrupted` and every later operation (a second `close()` included) fail with
 *   `Deno.errors.BadResource`. Bytes sent to the closing end that it had not read are dropped.
 *   The peer reads the bytes already written to it, then EOF; its writes, pending or new, reject
 *   with `Deno.errors.BrokenPipe`.
 * - `reset()` (fault injection, like a TCP RST) drops the bytes in flight both ways: the peer's
 *   next read rejects with `Deno.errors.ConnectionReset`, later reads return EOF.
 * - As in Deno, `conn.readable` closes the connection when it reaches EOF or is cancelled, and
 *   closing or aborting `conn.writable` closes the whole connection (use `closeWrite()` for a
 *   half-close).
 *
 * Where TCP depends on timing, memory picks the deterministic outcome: the first write after the
 * peer closed already fails with `BrokenPipe` (on TCP it usually succeeds and the next one
 * fails), and a close never turns into a reset because of unread data.
 *
 * The connections hold no Deno resource and no pending operation, so they never keep the process
 * alive and the resource and operation sanitizers of `Deno.test` do not see them: awaiting a read
 * that nothing will complete ends the program with "Promise resolution is still pending but the
 * event loop has already resolved" instead of hanging.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { checkTimeout, formatHostPort, parseConnectAddress, parseHostPort } from "./tcp.ts";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  type Listener,
  type Transport,
  type TransportConnectOptions,
  type TransportListenOptions,
} from "./types.ts";

/** The default {@linkcode MemoryConnOptions.highWaterMark}: 64 KiB per direction. */
export const DEFAULT_MEMORY_HIGH_WATER_MARK = 64 * 1024;

/** The address of a memory connection: a TCP-like address or a Unix-like socket path. */
export type MemoryAddr = Deno.NetAddr | Deno.UnixAddr;

/** Options of the buffers of a memory connection. */
export interface MemoryConnOptions {
  /**
   * The most bytes one direction holds that the reading end has not read yet. A write waits
   * while the buffer is full, and accepts only what fits (a partial write).
   *
   * @default {65536}
   */
  highWaterMark?: number;
  /**
   * The most bytes one read returns, however large its buffer: `1` delivers a stream byte by
   * byte, to test reassembly.
   *
   * @default {Infinity}
   */
  maxReadSize?: number;
}

/** Options of {@linkcode memoryConnPair}. */
export interface MemoryConnPairOptions extends MemoryConnOptions {
  /**
   * The local address of the first connection (the remote address of the second). By default
   * `{ transport: "tcp", hostname: "memory", port }` with a fresh port from 49152 up.
   */
  localAddr?: MemoryAddr;
  /**
   * The remote address of the first connection (the local address of the second). By default
   * `{ transport: "tcp", hostname: "memory", port }` with a fresh port from 49152 up.
   */
  remoteAddr?: MemoryAddr;
}

/**
 * One end of an in-memory connection: a `Deno.Conn` with the socket methods of a
 * `Deno.TcpConn` (no-ops here) and controls for tests. Its addresses may be Unix-like, so it is
 * typed as a `Deno.Conn`, not a `Deno.TcpConn`.
 *
 * @example Inject a reset under a reader
 * ```ts
 * import { memoryConnPair } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = memoryConnPair();
 * const read = b.read(new Uint8Array(8));
 * a.reset();
 * await assert.rejects(read, Deno.errors.ConnectionReset);
 * assert.equal(await b.read(new Uint8Array(8)), null);
 * b.close();
 * ```
 *
 * @example Hold a reader back with pauseRead
 * ```ts
 * import { memoryConnPair } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = memoryConnPair({ highWaterMark: 2 });
 * b.pauseRead();
 * const read = b.read(new Uint8Array(8));
 * assert.equal(await a.write(new Uint8Array([1, 2, 3])), 2);
 * assert.equal(a.bufferedAmount, 2);
 * b.resumeRead();
 * assert.equal(await read, 2);
 * assert.equal(a.bufferedAmount, 0);
 * a.close();
 * b.close();
 * ```
 */
export interface MemoryConn extends Deno.Conn<MemoryAddr> {
  /** Bytes this end wrote that the peer has not read yet. */
  readonly bufferedAmount: number;
  /** Whether this end is closed (by `close()`, `reset()` or the end of its streams). */
  readonly closed: boolean;
  /**
   * Stops reads on this end from completing: data (and EOF) stay buffered, so the peer's writes
   * wait once `highWaterMark` bytes are buffered. Pending and new reads wait for
   * {@linkcode MemoryConn.resumeRead}; `close()` still ends them.
   */
  pauseRead(): void;
  /** Lets reads complete again after {@linkcode MemoryConn.pauseRead}. */
  resumeRead(): void;
  /**
   * Closes this end abortively, like a TCP reset: the bytes in flight both ways are dropped, the
   * peer's pending or next read rejects with `Deno.errors.ConnectionReset` (later reads return
   * `null`) and its pending writes reject with `Deno.errors.ConnectionReset` (later writes with
   * `Deno.errors.BrokenPipe`). This end's pending operations reject as for `close()`.
   *
   * @throws {Deno.errors.BadResource} When this end is already closed.
   */
  reset(): void;
  /** Does nothing: there is no Nagle's algorithm in memory. */
  setNoDelay(noDelay?: boolean): void;
  /** Does nothing: there are no keep-alive probes in memory. */
  setKeepAlive(keepAlive?: boolean): void;
}

/**
 * Creates a connected pair of in-memory connections: what one writes, the other reads.
 *
 * @example Bytes written by one end are read by the other, then EOF
 * ```ts
 * import { memoryConnPair } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = memoryConnPair();
 * assert.equal(await a.write(new Uint8Array([1, 2, 3])), 3);
 * a.close();
 * const buffer = new Uint8Array(8);
 * assert.equal(await b.read(buffer), 3);
 * assert.deepEqual(buffer.subarray(0, 3), new Uint8Array([1, 2, 3]));
 * assert.equal(await b.read(buffer), null);
 * b.close();
 * ```
 *
 * @example A writer waits while the peer does not read
 * ```ts
 * import { memoryConnPair } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = memoryConnPair({ highWaterMark: 4 });
 * assert.equal(await a.write(new Uint8Array(6)), 4); // a partial write: the buffer is full
 * let done = false;
 * const pending = a.write(new Uint8Array(2)).then((n) => (done = true, n));
 * await Promise.resolve();
 * assert.equal(done, false);
 * assert.equal(await b.read(new Uint8Array(3)), 3); // room for 3 more bytes
 * assert.equal(await pending, 2);
 * a.close();
 * b.close();
 * ```
 *
 * @param options The buffer size of each direction, a read size limit and the addresses.
 * @returns The two ends.
 * @throws {TypeError} When an option is not an integer or an address is malformed.
 * @throws {RangeError} When `highWaterMark` or `maxReadSize` is below 1.
 */
export function memoryConnPair(
  options: MemoryConnPairOptions = {},
): [MemoryConn, MemoryConn] {
  const { highWaterMark, maxReadSize } = checkOptions(options);
  const localAddr = checkAddr("localAddr", options.localAddr) ?? freshAddr();
  const remoteAddr = checkAddr("remoteAddr", options.remoteAddr) ?? freshAddr();
  const ab = new Pipe(highWaterMark, maxReadSize);
  const ba = new Pipe(highWaterMark, maxReadSize);
  return [
    new MemoryConnImpl(ba, ab, localAddr, remoteAddr),
    new MemoryConnImpl(ab, ba, remoteAddr, localAddr),
  ];
}

/**
 * A listener of a {@linkcode MemoryTransport}: accepts {@linkcode MemoryConn}s.
 *
 * @example Accept connections until the listener closes
 * ```ts
 * import { MemoryTransport } from "@npro/network-protocol";
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
 * import {
 *   connect,
 *   Dispatcher,
 *   MemoryTransport,
 *   registerStandardHandlers,
 *   serve,
 * } from "@npro/network-protocol";
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
 * import { MemoryTransport } from "@npro/network-protocol";
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

const FIRST_EPHEMERAL_PORT = 49152;
const LAST_PORT = 65535;
let nextPairPort = FIRST_EPHEMERAL_PORT;

function freshAddr(): Deno.NetAddr {
  const port = nextPairPort;
  nextPairPort = port === LAST_PORT ? FIRST_EPHEMERAL_PORT : port + 1;
  return { transport: "tcp", hostname: "memory", port };
}

function checkOptions(options: MemoryConnOptions): { highWaterMark: number; maxReadSize: number } {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `options must be an object, got "${options === null ? "null" : typeof options}"`,
    );
  }
  return {
    highWaterMark: checkSize(
      "highWaterMark",
      options.highWaterMark ?? DEFAULT_MEMORY_HIGH_WATER_MARK,
    ),
    maxReadSize: options.maxReadSize === Infinity || options.maxReadSize === undefined
      ? Infinity
      : checkSize("maxReadSize", options.maxReadSize),
  };
}

function checkSize(name: string, value: number): number {
  if (!Number.isSafeInteger(value)) {
    throw new TypeError(`${name} must be an integer, got "${String(value)}"`);
  }
  if (value < 1) throw new RangeError(`${name} "${value}" must be at least 1`);
  return value;
}

function checkAddr(name: string, addr: MemoryAddr | undefined): MemoryAddr | undefined {
  if (addr === undefined) return undefined;
  const ok = typeof addr === "object" && addr !== null && (
    (addr.transport === "tcp" && typeof addr.hostname === "string" &&
      Number.isInteger(addr.port)) ||
    (addr.transport === "unix" && typeof addr.path === "string")
  );
  if (!ok) {
    throw new TypeError(
      `${name} must be a "tcp" address with hostname and port or a "unix" address with a path`,
    );
  }
  return { ...addr };
}

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

function addrText(addr: MemoryAddr): string {
  return "hostname" in addr ? formatHostPort(addr.hostname, addr.port) : addr.path;
}

function interrupted(): Error {
  return new Deno.errors.Interrupted("Operation canceled: the memory connection was closed");
}

function badResource(): Error {
  return new Deno.errors.BadResource("Bad resource: the memory connection is closed");
}

function brokenPipe(why: string): Error {
  return new Deno.errors.BrokenPipe(`Broken pipe: ${why}`);
}

function connectionReset(): Error {
  return new Deno.errors.ConnectionReset("Connection reset by peer");
}

interface PendingRead {
  buffer: Uint8Array;
  resolve(n: number | null): void;
  reject(error: Error): void;
}

interface PendingWrite {
  data: Uint8Array;
  resolve(n: number): void;
  reject(error: Error): void;
}

/** One direction: the bytes one end wrote and the other has not read, and who waits on them. */
class Pipe {
  readonly highWaterMark: number;
  readonly maxReadSize: number;
  /** Bytes buffered. */
  buffered = 0;
  /** The writing end shut its side: the reader gets EOF after the buffered bytes. */
  ended = false;
  /** The reading end is closed: writes fail. */
  readerGone = false;
  /** Reads wait even when data is there (see `pauseRead`). */
  paused = false;
  /** The reading end's next read fails with this, once (a reset). */
  readError: Error | undefined;
  /** Reads of the reading end, in call order. */
  readonly reads: PendingRead[] = [];
  /** Writes of the writing end waiting for room, in call order. */
  readonly writes: PendingWrite[] = [];
  #chunks: Uint8Array[] = [];
  #first = 0;
  #offset = 0;

  constructor(highWaterMark: number, maxReadSize: number) {
    this.highWaterMark = highWaterMark;
    this.maxReadSize = maxReadSize;
  }

  /** Drops the buffered bytes. */
  discard(): void {
    this.#chunks = [];
    this.#first = 0;
    this.#offset = 0;
    this.buffered = 0;
  }

  /** Rejects and forgets every waiting read. */
  rejectReads(error: () => Error): void {
    for (const read of this.reads.splice(0)) read.reject(error());
  }

  /** Rejects and forgets every waiting write. */
  rejectWrites(error: () => Error): void {
    for (const write of this.writes.splice(0)) write.reject(error());
  }

  /** Completes what can complete: reads while there is data or EOF, writes while there is room. */
  pump(): void {
    for (;;) {
      let progress = false;
      while (!this.paused && this.reads.length > 0) {
        if (this.readError !== undefined) {
          const error = this.readError;
          this.readError = undefined;
          this.reads.shift()!.reject(error);
        } else if (this.buffered > 0) {
          const read = this.reads.shift()!;
          read.resolve(this.#take(read.buffer));
        } else if (this.ended) {
          this.reads.shift()!.resolve(null);
        } else {
          break;
        }
        progress = true;
      }
      while (this.writes.length > 0 && this.buffered < this.highWaterMark) {
        const write = this.writes.shift()!;
        const n = Math.min(write.data.length, this.highWaterMark - this.buffered);
        // A copy: like a socket, the caller may reuse its buffer once the write resolved.
        this.#chunks.push(write.data.slice(0, n));
        this.buffered += n;
        write.resolve(n);
        progress = true;
      }
      if (!progress) return;
    }
  }

  #take(into: Uint8Array): number {
    const want = Math.min(into.length, this.buffered, this.maxReadSize);
    let n = 0;
    while (n < want) {
      const chunk = this.#chunks[this.#first]!;
      const k = Math.min(chunk.length - this.#offset, want - n);
      into.set(chunk.subarray(this.#offset, this.#offset + k), n);
      n += k;
      this.#offset += k;
      if (this.#offset === chunk.length) {
        this.#first++;
        this.#offset = 0;
      }
    }
    if (this.#first === this.#chunks.length) {
      this.#chunks = [];
      this.#first = 0;
    } else if (this.#first >= 1024 && this.#first * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#first);
      this.#first = 0;
    }
    this.buffered -= n;
    return n;
  }
}

class MemoryConnImpl implements MemoryConn {
  readonly localAddr: MemoryAddr;
  readonly remoteAddr: MemoryAddr;
  readonly #inbound: Pipe;
  readonly #outbound: Pipe;
  #closed = false;
  #writeShut = false;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;
  #writable: WritableStream<Uint8Array<ArrayBufferLike>> | undefined;

  constructor(inbound: Pipe, outbound: Pipe, localAddr: MemoryAddr, remoteAddr: MemoryAddr) {
    this.#inbound = inbound;
    this.#outbound = outbound;
    this.localAddr = localAddr;
    this.remoteAddr = remoteAddr;
  }

  get bufferedAmount(): number {
    return this.#outbound.buffered;
  }

  get closed(): boolean {
    return this.#closed;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (!(p instanceof Uint8Array)) {
      return Promise.reject(new TypeError(`Buffer must be a Uint8Array, got "${typeof p}"`));
    }
    // Deno answers an empty buffer with 0 at once, even on a closed connection.
    if (p.length === 0) return Promise.resolve(0);
    if (this.#closed) return Promise.reject(badResource());
    const { promise, resolve, reject } = Promise.withResolvers<number | null>();
    this.#inbound.reads.push({ buffer: p, resolve, reject });
    this.#inbound.pump();
    return promise;
  }

  write(p: Uint8Array): Promise<number> {
    if (!(p instanceof Uint8Array)) {
      return Promise.reject(new TypeError(`Data must be a Uint8Array, got "${typeof p}"`));
    }
    if (this.#closed) return Promise.reject(badResource());
    if (this.#writeShut) {
      return Promise.reject(brokenPipe("the write side of the memory connection is shut down"));
    }
    if (this.#outbound.readerGone) {
      return Promise.reject(brokenPipe("the peer closed the memory connection"));
    }
    if (p.length === 0) return Promise.resolve(0);
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    this.#outbound.writes.push({ data: p, resolve, reject });
    this.#outbound.pump();
    return promise;
  }

  closeWrite(): Promise<void> {
    if (this.#closed) return Promise.reject(badResource());
    if (!this.#writeShut) {
      this.#writeShut = true;
      this.#outbound.rejectWrites(() =>
        brokenPipe("the write side of the memory connection is shut down")
      );
      this.#outbound.ended = true;
      this.#outbound.pump();
    }
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) throw badResource();
    this.#shutdown(false);
  }

  reset(): void {
    if (this.#closed) throw badResource();
    this.#shutdown(true);
  }

  pauseRead(): void {
    this.#inbound.paused = true;
  }

  resumeRead(): void {
    this.#inbound.paused = false;
    this.#inbound.pump();
  }

  ref(): void {}

  unref(): void {}

  setNoDelay(_noDelay?: boolean): void {}

  setKeepAlive(_keepAlive?: boolean): void {}

  [Symbol.dispose](): void {
    if (!this.#closed) this.#shutdown(false);
  }

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    this.#readable ??= this.#makeReadable();
    return this.#readable;
  }

  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    this.#writable ??= this.#makeWritable();
    return this.#writable;
  }

  #shutdown(abortive: boolean): void {
    this.#closed = true;
    this.#writeShut = true;
    const outbound = this.#outbound;
    const inbound = this.#inbound;
    // This end's own waiting operations end as a closed Deno socket's do.
    outbound.rejectWrites(interrupted);
    inbound.rejectReads(interrupted);
    // Nothing reads what the peer sends any more.
    inbound.discard();
    inbound.readerGone = true;
    if (abortive) {
      outbound.discard();
      if (!outbound.readerGone) outbound.readError = connectionReset();
      inbound.rejectWrites(connectionReset);
    } else {
      inbound.rejectWrites(() => brokenPipe("the peer closed the memory connection"));
    }
    outbound.ended = true;
    outbound.pump();
  }

  #closeQuietly(): void {
    if (!this.#closed) this.#shutdown(false);
  }

  #makeReadable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    // Like Deno's `conn.readable`: a byte stream that closes the connection at EOF, on cancel
    // and on error.
    return new ReadableStream({
      type: "bytes",
      autoAllocateChunkSize: 64 * 1024,
      pull: async (controller) => {
        const request = controller.byobRequest!;
        const view = request.view!;
        const buffer = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
        let n: number | null;
        try {
          n = await this.read(buffer);
        } catch (error) {
          const closedHere = this.#closed && (
            error instanceof Deno.errors.Interrupted || error instanceof Deno.errors.BadResource
          );
          controller.error(
            closedHere
              ? new Deno.errors.BadResource("The stream's underlying resource was closed")
              : error,
          );
          this.#closeQuietly();
          return;
        }
        if (n === null) {
          this.#closeQuietly();
          controller.close();
          request.respond(0);
        } else {
          request.respond(n);
        }
      },
      cancel: () => this.#closeQuietly(),
    });
  }

  #makeWritable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    // Like Deno's `conn.writable`: closing or aborting it closes the connection.
    return new WritableStream({
      write: async (chunk, controller) => {
        if (!(chunk instanceof Uint8Array)) {
          throw new TypeError(`Chunk must be a Uint8Array, got "${typeof chunk}"`);
        }
        try {
          let offset = 0;
          while (offset < chunk.length) offset += await this.write(chunk.subarray(offset));
        } catch (error) {
          controller.error(error);
          this.#closeQuietly();
          throw error;
        }
      },
      close: () => this.#closeQuietly(),
      abort: () => this.#closeQuietly(),
    });
  }
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

  async *[Symbol.asyncIterator](): AsyncIterator<MemoryConn> {
    for (;;) {
      try {
        yield await this.accept();
      } catch (error) {
        if (this.#closed) return;
        throw error;
      }
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  #closedError(): ProtocolError {
    return new ProtocolError("ConnectionClosed", `Listener on "${addrText(this.addr)}" is closed`);
  }
}
