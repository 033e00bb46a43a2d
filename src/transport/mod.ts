/**
 * Transports: TCP, Unix sockets and TLS behind one small {@linkcode Transport} interface, an
 * in-memory transport for tests, and self-signed certificates for TLS.
 *
 * @module
 */

import { TcpTransport, type TcpTransportOptions } from "./tcp.ts";
import { TlsTransport, type TlsTransportOptions } from "./tls.ts";
import type { Transport, TransportKind } from "./types.ts";
import { UnixTransport, type UnixTransportOptions } from "./unix.ts";

export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  type Listener,
  type Transport,
  type TransportConnectOptions,
  type TransportKind,
  type TransportListenOptions,
} from "./types.ts";
export { formatAddr, type HostPort, parseHostPort } from "./address.ts";
export { TcpTransport, type TcpTransportOptions } from "./tcp.ts";
export { DEFAULT_UNIX_SOCKET_MODE, UnixTransport, type UnixTransportOptions } from "./unix.ts";
export {
  DEFAULT_ALPN_PROTOCOLS,
  type PemSource,
  type TlsClientOptions,
  tlsHandshake,
  type TlsServerOptions,
  TlsTransport,
  type TlsTransportOptions,
} from "./tls.ts";
export {
  DEFAULT_MEMORY_HIGH_WATER_MARK,
  type MemoryAddr,
  type MemoryConn,
  type MemoryConnOptions,
  memoryConnPair,
  type MemoryConnPairOptions,
} from "./memory_conn.ts";
export { type MemoryListener, MemoryTransport } from "./memory_transport.ts";
export {
  certificateFingerprint,
  generateSelfSignedCert,
  type SelfSignedCert,
  type SelfSignedCertOptions,
} from "./certs.ts";

/** Options of {@linkcode createTransport}, by transport kind. */
export interface TransportOptionsMap {
  /** Options of the TCP transport. */
  tcp: TcpTransportOptions;
  /** Options of the Unix socket transport. */
  unix: UnixTransportOptions;
  /** Options of the TLS transport. */
  tls: TlsTransportOptions;
}

/**
 * Creates a built-in transport by name, for configuration-driven code
 * (`transport = "unix"` in a TOML file).
 *
 * @example Pick a transport from configuration
 * ```ts
 * import { createTransport } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const transport = createTransport("tcp");
 * assert.equal(transport.kind, "tcp");
 * ```
 *
 * @param kind `"tcp"`, `"unix"` or `"tls"`.
 * @param options The options of that transport.
 * @returns The transport.
 * @throws {TypeError} When `kind` is not a known transport.
 */
export function createTransport<K extends TransportKind>(
  kind: K,
  options?: TransportOptionsMap[K],
): Transport {
  switch (kind) {
    case "tcp":
      return new TcpTransport(options as TcpTransportOptions | undefined);
    case "unix":
      return new UnixTransport(options as UnixTransportOptions | undefined);
    case "tls":
      return new TlsTransport(options as TlsTransportOptions | undefined);
    default:
      throw new TypeError(`Unknown transport "${kind}"; expected "tcp", "unix" or "tls"`);
  }
}
