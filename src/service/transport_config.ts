/**
 * The transport a configuration names, for the daemon and the client: the one place that reads
 * `transport.kind`, `unix_socket_mode` and the TLS keys. (The transport layer cannot read the
 * configuration: it sits below it.)
 *
 * @module
 */

import type { NetworkConfig } from "../config/mod.ts";
import { ProtocolError } from "../errors.ts";
import { createTransport } from "../transport/mod.ts";
import type { TlsClientOptions, TlsServerOptions } from "../transport/tls.ts";
import type { Transport } from "../transport/types.ts";

/**
 * The transport of `config.transport.kind`, set up for one side: a server's TLS needs
 * `transport.tls_cert_path` and `tls_key_path` and takes the client-certificate keys
 * (`tls_client_auth`, `tls_client_ca_path`, `tls_client_cert_fingerprints`,
 * `tls_client_spki_pins`) and `server.connection_timeout` as its TLS handshake deadline; a
 * client's trusts `tls_ca_path` (besides the system roots), checks `tls_server_name` and the
 * server pins (`tls_server_cert_fingerprints`, `tls_server_spki_pins`, `tls_pin_only`) and
 * presents `tls_client_cert_path`; both use `tls_alpn`, `tls_min_version` and `tls_backend`. A
 * Unix transport creates its sockets with `unix_socket_mode`. TLS options given by the caller
 * replace the configuration's (the backend and the server's deadline still apply).
 *
 * @example A TCP transport for a client
 * ```ts
 * import { createConfig } from "../config/mod.ts";
 * import { transportFromConfig } from "./transport_config.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(transportFromConfig(createConfig({}), "client").kind, "tcp");
 * ```
 *
 * @param config The configuration.
 * @param role Which side uses the transport.
 * @param tls TLS options that replace the configuration's.
 * @returns The transport.
 * @throws {ProtocolError} `ConfigError` for a TLS server without a certificate and a key.
 */
export function transportFromConfig(
  config: NetworkConfig,
  role: "server",
  tls?: TlsServerOptions,
): Transport;
/**
 * The transport of `config.transport.kind`, set up for a client.
 *
 * @param config The configuration.
 * @param role Which side uses the transport.
 * @param tls TLS options that replace the configuration's.
 * @returns The transport.
 */
export function transportFromConfig(
  config: NetworkConfig,
  role: "client",
  tls?: TlsClientOptions,
): Transport;
export function transportFromConfig(
  config: NetworkConfig,
  role: "server" | "client",
  tls?: TlsServerOptions | TlsClientOptions,
): Transport {
  const t = config.transport;
  switch (t.kind) {
    case "tcp":
      return createTransport(
        "tcp",
        role === "server" && config.server.reusePort ? { reusePort: true } : {},
      );
    case "unix":
      return createTransport("unix", { mode: t.unixSocketMode });
    case "tls": {
      const backend = t.tlsBackend;
      const minVersion = t.tlsMinVersion === "1.3" ? "TLSv1.3" : "TLSv1.2";
      if (role === "client") {
        const client: TlsClientOptions = (tls as TlsClientOptions | undefined) ?? {
          ...(t.tlsCaPath === "" ? {} : { caCerts: [{ path: t.tlsCaPath }] }),
          ...(t.tlsServerName === "" ? {} : { serverName: t.tlsServerName }),
          alpnProtocols: t.tlsAlpn,
          ...(t.tlsClientCertPath === ""
            ? {}
            : { cert: { path: t.tlsClientCertPath }, key: { path: t.tlsClientKeyPath } }),
          ...(t.tlsServerCertFingerprints.length === 0
            ? {}
            : { serverCertFingerprints: t.tlsServerCertFingerprints }),
          ...(t.tlsServerSpkiPins.length === 0 ? {} : { serverSpkiPins: t.tlsServerSpkiPins }),
          ...(t.tlsPinOnly ? { pinOnly: true } : {}),
          ...(minVersion === "TLSv1.3" ? { minVersion } : {}),
        };
        return createTransport("tls", { client, backend });
      }
      if (tls === undefined && (t.tlsCertPath === "" || t.tlsKeyPath === "")) {
        throw new ProtocolError(
          "ConfigError",
          "TLS transport needs transport.tls_cert_path and transport.tls_key_path",
        );
      }
      const server: TlsServerOptions = (tls as TlsServerOptions | undefined) ?? {
        cert: { path: t.tlsCertPath },
        key: { path: t.tlsKeyPath },
        alpnProtocols: t.tlsAlpn,
        ...(t.tlsClientAuth === "none" ? {} : { clientAuth: t.tlsClientAuth }),
        ...(t.tlsClientCaPath === "" ? {} : { clientCaCerts: [{ path: t.tlsClientCaPath }] }),
        ...(t.tlsClientCertFingerprints.length === 0
          ? {}
          : { clientCertFingerprints: t.tlsClientCertFingerprints }),
        ...(t.tlsClientSpkiPins.length === 0 ? {} : { clientSpkiPins: t.tlsClientSpkiPins }),
        ...(minVersion === "TLSv1.3" ? { minVersion } : {}),
      };
      // The TLS handshake of an accepted connection is bounded like the rest of its handshake.
      const withDeadline: TlsServerOptions = server.handshakeTimeoutMs === undefined
        ? { ...server, handshakeTimeoutMs: config.server.connectionTimeout }
        : server;
      return createTransport("tls", { server: withDeadline, backend });
    }
  }
}
