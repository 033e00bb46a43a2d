/**
 * The built-in transports: TCP, Unix domain sockets and TLS (Deno's native rustls, or
 * `node:tls` for mutual TLS and pins), each an implementation of the root's `Transport`
 * interface, with {@linkcode createTransport} to pick one by name, certificates for TLS
 * (self-signed, or a small CA and the certificates it issues), and the `host:port` helpers.
 *
 * `serve` and `connect` create the transport that `transport.kind` names in the configuration
 * (with the `tls` option for certificates), so an application needs this module only to give a
 * transport options the configuration does not have, or to use a transport on its own. The
 * `Transport` and `Listener` interfaces and the TLS option types are in the root; the in-memory
 * transport for tests is in `/testing`.
 *
 * @example A TLS listener with a self-signed certificate
 * ```ts
 * import { generateSelfSignedCert, TlsTransport } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const cert = await generateSelfSignedCert({ commonName: "localhost", altNames: ["127.0.0.1"] });
 * const tls = new TlsTransport({
 *   server: { cert: cert.certPem, key: cert.keyPem },
 *   client: { caCerts: [cert.certPem] },
 * });
 * await using listener = await tls.listen("127.0.0.1:0");
 * const { port } = listener.addr as Deno.NetAddr;
 * const [client, server] = await Promise.all([tls.connect(`127.0.0.1:${port}`), listener.accept()]);
 * await client.write(new Uint8Array([42]));
 * const byte = new Uint8Array(1);
 * assert.equal(await server.read(byte), 1);
 * assert.equal(byte[0], 42);
 * client.close();
 * server.close();
 * ```
 *
 * @module
 */

import { TcpTransport, type TcpTransportOptions } from "./tcp.ts";
import { TlsTransport, type TlsTransportOptions } from "./tls.ts";
import type { Transport, TransportKind } from "./types.ts";
import { UnixTransport, type UnixTransportOptions } from "./unix.ts";

export { DEFAULT_CONNECT_TIMEOUT_MS } from "./types.ts";
export { formatAddr, parseHostPort } from "./address.ts";
export type { HostPort } from "./address.ts";
export { TcpTransport } from "./tcp.ts";
export type { TcpTransportOptions } from "./tcp.ts";
export { DEFAULT_UNIX_SOCKET_MODE, UnixTransport } from "./unix.ts";
export type { UnixTransportOptions } from "./unix.ts";
export { DEFAULT_ALPN_PROTOCOLS, tlsHandshake, TlsTransport } from "./tls.ts";
export type { TlsTransportOptions } from "./tls.ts";
export {
  certificateFingerprint,
  generateCertificateAuthority,
  generateSelfSignedCert,
  issueCertificate,
} from "./certs.ts";
export type {
  CertificateAuthorityOptions,
  CertificateUsage,
  IssueCertificateOptions,
  SelfSignedCert,
  SelfSignedCertOptions,
} from "./certs.ts";
export { certificateSpkiPin } from "./peer_certificate.ts";
export type { NodeTlsConn } from "./tls_node.ts";
export {
  DEFAULT_PROXY_HEADER_TIMEOUT_MS,
  DEFAULT_PROXY_MAX_HEADER_BYTES,
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_SIGNATURE,
  ProxyHeaderDecoder,
  readProxyHeader,
  TrustedProxies,
} from "./proxy_protocol.ts";
export { ProxiedConn } from "./proxied_conn.ts";
export type {
  ProxyHeader,
  ProxyHeaderDecoderOptions,
  ProxyHeaderResult,
  ProxyVersion,
  ReadProxyHeaderOptions,
} from "./proxy_protocol.ts";

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
 * import { createTransport } from "@npro/network-protocol/transport";
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
