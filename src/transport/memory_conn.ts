/**
 * In-memory connections: a connected pair of `Deno.Conn` objects joined by two bounded byte
 * buffers ({@linkcode memoryConnPair}; `memory_pipe.ts` holds one direction). The
 * `MemoryTransport` (`memory_transport.ts`) listens and connects with them. Nothing touches the
 * network, so tests that use them are deterministic: every read, write and close settles through
 * promise jobs alone, never through the event loop.
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

import { Pipe } from "./memory_pipe.ts";

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
 * import { memoryConnPair } from "@npro/network-protocol/testing";
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
 * import { memoryConnPair } from "@npro/network-protocol/testing";
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
  readonly isClosed: boolean;
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
 * import { memoryConnPair } from "@npro/network-protocol/testing";
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
 * import { memoryConnPair } from "@npro/network-protocol/testing";
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

// ---------------------------------------------------------------------------------------------
// Internals

/** The first port of the ephemeral range, where memory ports are picked. */
export const FIRST_EPHEMERAL_PORT = 49152;
/** The last port. */
export const LAST_PORT = 65535;
let nextPairPort = FIRST_EPHEMERAL_PORT;

function freshAddr(): Deno.NetAddr {
  const port = nextPairPort;
  nextPairPort = port === LAST_PORT ? FIRST_EPHEMERAL_PORT : port + 1;
  return { transport: "tcp", hostname: "memory", port };
}

/**
 * Checks the buffer options of a memory connection and fills in their defaults.
 *
 * @param options The options.
 * @returns The buffer size of each direction and the read size limit.
 * @throws {TypeError} When `options` is not an object or an option is not an integer.
 * @throws {RangeError} When an option is below 1.
 */
export function checkOptions(
  options: MemoryConnOptions,
): { highWaterMark: number; maxReadSize: number } {
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

  get isClosed(): boolean {
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
