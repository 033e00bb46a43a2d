/**
 * A connection that arrived through a PROXY protocol header: its `remoteAddr` is the client the
 * header names, and its first reads return the bytes that came after the header.
 *
 * @module
 */

import type { ProxyHeader } from "./proxy_protocol.ts";

/**
 * Wraps a connection whose PROXY header was read: `remoteAddr` is the client's address from the
 * header (the socket's own peer, the proxy, stays in {@linkcode ProxiedConn.socketAddr}), and the
 * bytes that followed the header in the same reads are returned first. Everything else goes to
 * the wrapped connection.
 *
 * @example Wrap a connection after its header
 * ```ts
 * import { ProxiedConn, readProxyHeader } from "@npro/network-protocol/transport";
 * import { memoryConnPair } from "@npro/network-protocol/testing";
 * import assert from "node:assert/strict";
 *
 * const [proxy, server] = memoryConnPair();
 * await proxy.write(new TextEncoder().encode("PROXY TCP4 192.0.2.7 192.0.2.1 4000 9000\r\nhi"));
 * const { header, rest } = await readProxyHeader(server);
 * const conn = new ProxiedConn(server, header, rest);
 * assert.deepEqual(conn.remoteAddr, { transport: "tcp", hostname: "192.0.2.7", port: 4000 });
 * const buffer = new Uint8Array(8);
 * assert.equal(await conn.read(buffer), 2);
 * conn.close();
 * proxy.close();
 * ```
 */
export class ProxiedConn implements Deno.Conn {
  readonly #inner: Deno.Conn;
  readonly #remote: Deno.Addr;
  #rest: Uint8Array;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;

  /**
   * Wraps `inner`.
   *
   * @param inner The connection the header was read from.
   * @param header The header: a `"proxy"` header with a source sets `remoteAddr`; a `"local"`
   * one (a health check from the proxy) keeps the socket's.
   * @param rest The bytes read after the header (returned by the first reads).
   */
  constructor(inner: Deno.Conn, header: ProxyHeader, rest: Uint8Array) {
    this.#inner = inner;
    this.#remote = header.command === "proxy" && header.source !== undefined
      ? header.source
      : inner.remoteAddr;
    this.#rest = rest;
  }

  /** The client's address, as the PROXY header gave it. */
  get remoteAddr(): Deno.NetAddr {
    return this.#remote as Deno.NetAddr;
  }

  /** The address of the socket's own peer: the proxy. */
  get socketAddr(): Deno.Addr {
    return this.#inner.remoteAddr;
  }

  /** The local address of the socket. */
  get localAddr(): Deno.NetAddr {
    return this.#inner.localAddr as Deno.NetAddr;
  }

  /**
   * Reads the bytes that followed the header first, then from the connection.
   *
   * @param p Where to read to.
   * @returns The number of bytes read, or `null` at the end of the stream.
   */
  read(p: Uint8Array): Promise<number | null> {
    const rest = this.#rest;
    if (rest.length === 0 || p.length === 0) return this.#inner.read(p);
    const n = Math.min(p.length, rest.length);
    p.set(rest.subarray(0, n));
    this.#rest = rest.subarray(n);
    return Promise.resolve(n);
  }

  /**
   * Writes to the connection.
   *
   * @param p The bytes.
   * @returns The number of bytes written.
   */
  write(p: Uint8Array): Promise<number> {
    return this.#inner.write(p);
  }

  /** Closes the connection. */
  close(): void {
    this.#rest = new Uint8Array(0);
    this.#inner.close();
  }

  /**
   * Shuts the writing side down.
   *
   * @returns When it is done.
   */
  closeWrite(): Promise<void> {
    return this.#inner.closeWrite();
  }

  /** Lets the connection keep the event loop alive (the default). */
  ref(): void {
    this.#inner.ref();
  }

  /** Lets the event loop end while the connection is open. */
  unref(): void {
    this.#inner.unref();
  }

  /**
   * Turns Nagle's algorithm off or on, when the socket has it.
   *
   * @param noDelay `true` to send small writes at once.
   */
  setNoDelay(noDelay?: boolean): void {
    (this.#inner as Partial<Deno.TcpConn>).setNoDelay?.(noDelay);
  }

  /**
   * Turns keep-alive probes on or off, when the socket has them.
   *
   * @param keepAlive `true` to probe an idle peer.
   */
  setKeepAlive(keepAlive?: boolean): void {
    (this.#inner as Partial<Deno.TcpConn>).setKeepAlive?.(keepAlive);
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** The bytes after the header, then the connection's, as a stream (it closes the connection at the end). */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    this.#readable ??= new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull: async (controller) => {
        const buffer = new Uint8Array(16 * 1024);
        const n = await this.read(buffer);
        if (n === null) {
          controller.close();
          try {
            this.close();
          } catch {
            // Already closed.
          }
        } else {
          controller.enqueue(buffer.subarray(0, n));
        }
      },
      cancel: () => this.close(),
    });
    return this.#readable;
  }

  /** The connection's writable stream. */
  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.#inner.writable;
  }
}
