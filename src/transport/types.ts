/**
 * The transport abstraction: how the service layer listens for and opens byte-stream
 * connections without knowing whether they run over TCP, a Unix socket or TLS.
 *
 * A {@linkcode Transport} is created once with its configuration (TLS certificates, socket file
 * mode) and then used for any number of `listen` and `connect` calls, each naming an address.
 * Every transport hands out plain `Deno.Conn` objects, so a test or an application can inject its
 * own implementation (an in-memory pipe, a proxy, a socket from a supervisor).
 *
 * @module
 */

/** The name of a built-in transport. */
export type TransportKind = "tcp" | "unix" | "tls";

// Keyed by the union, so the compiler keeps TRANSPORT_KINDS complete.
const KINDS: Record<TransportKind, true> = { tcp: true, unix: true, tls: true };

/** Every {@linkcode TransportKind}. */
export const TRANSPORT_KINDS: readonly TransportKind[] = Object.freeze(
  Object.keys(KINDS) as TransportKind[],
);

/** The default time limit of {@linkcode Transport.connect}, in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

/** Options of one {@linkcode Transport.connect} call. */
export interface TransportConnectOptions {
  /**
   * Aborts the attempt. An aborted connect fails with `ProtocolError` code `Cancelled` and
   * releases everything it opened.
   */
  signal?: AbortSignal;
  /**
   * The time limit of the whole attempt (name resolution, TCP connect and, for TLS, the
   * handshake), in milliseconds. On expiry the attempt fails with `ProtocolError` code
   * `Timeout`.
   *
   * @default {5000}
   */
  timeoutMs?: number;
}

/** Options of one {@linkcode Transport.listen} call. */
export interface TransportListenOptions {
  /**
   * When aborted, the listener closes: pending and future `accept` calls fail with
   * `ProtocolError` code `ConnectionClosed` and iteration ends.
   */
  signal?: AbortSignal;
}

/**
 * A source of accepted connections. Iterate it with `for await`, or call
 * {@linkcode Listener.accept} in a loop; `await using` closes it at the end of the scope.
 *
 * @example Accept one TCP connection
 * ```ts
 * import { TcpTransport } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const tcp = new TcpTransport();
 * await using listener = await tcp.listen("127.0.0.1:0");
 * const { port } = listener.addr as Deno.NetAddr;
 * const client = await tcp.connect(`127.0.0.1:${port}`);
 * const server = await listener.accept();
 * assert.equal((server.remoteAddr as Deno.NetAddr).port, (client.localAddr as Deno.NetAddr).port);
 * client.close();
 * server.close();
 * ```
 */
export interface Listener extends AsyncIterable<Deno.Conn>, AsyncDisposable {
  /** The address the listener is bound to (the real port when port 0 was asked for). */
  readonly addr: Deno.Addr;
  /**
   * Waits for the next connection. TCP connections come with `TCP_NODELAY` and keep-alive on.
   * TLS connections come before their handshake: the handshake runs on the first read or write,
   * or explicitly through `tlsHandshake`, and the caller bounds it with its own timeout.
   *
   * @returns The accepted connection.
   * @throws {ProtocolError} code `ConnectionClosed` once the listener is closed.
   */
  accept(): Promise<Deno.Conn>;
  /** Stops listening. Idempotent. Connections already accepted stay open. */
  close(): void;
}

/**
 * Opens and accepts byte-stream connections of one kind. The built-in implementations are
 * `TcpTransport`, `UnixTransport` and `TlsTransport` (or `createTransport`), and
 * `MemoryTransport` for tests; any object with this shape can be injected instead.
 *
 * @example Round trip over TCP
 * ```ts
 * import { createTransport } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const transport = createTransport("tcp");
 * await using listener = await transport.listen("127.0.0.1:0");
 * const { port } = listener.addr as Deno.NetAddr;
 * const client = await transport.connect(`127.0.0.1:${port}`, { timeoutMs: 1000 });
 * const server = await listener.accept();
 * await client.write(new Uint8Array([1, 2, 3]));
 * const buffer = new Uint8Array(3);
 * assert.equal(await server.read(buffer), 3);
 * client.close();
 * server.close();
 * ```
 */
export interface Transport {
  /** Which transport this is: a configurable kind, or `"memory"` for `MemoryTransport`. */
  readonly kind: TransportKind | "memory";
  /**
   * Starts listening.
   *
   * @param address `"host:port"` or `"[v6]:port"` for TCP and TLS, an absolute path for Unix.
   * @param options A signal that closes the listener.
   * @returns The listener.
   * @throws {ProtocolError} code `AddressInUse` when another listener holds the address,
   * `PermissionDenied` when the operating system or a missing Deno permission forbids it,
   * `ConfigError` when the address cannot be used otherwise, `TlsError` when the TLS
   * configuration is unusable or asks for something the backend cannot enforce.
   */
  listen(address: string, options?: TransportListenOptions): Promise<Listener>;
  /**
   * Opens a connection, ready to use (for TLS, after a completed handshake).
   *
   * @param address `"host:port"` or `"[v6]:port"` for TCP and TLS, an absolute path for Unix.
   * @param options A signal and a time limit.
   * @returns The connection.
   * @throws {ProtocolError} code `Timeout`, `Cancelled`, `ConnectionRefused` (nothing listens
   * at the address), `PermissionDenied` (the operating system or a missing Deno permission
   * forbids it), `ConnectionClosed` (unreachable, reset), or `TlsError` (handshake failed), with
   * the underlying error as `cause`.
   */
  connect(address: string, options?: TransportConnectOptions): Promise<Deno.Conn>;
}
