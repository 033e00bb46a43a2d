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
 * `transport.tls_cert_path` and `tls_key_path`, a client's trusts `tls_ca_path` (besides the
 * system roots) and checks `tls_server_name`; both use `tls_alpn`. A Unix transport creates its
 * sockets with `unix_socket_mode`. TLS options given by the caller replace the configuration's.
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
      return createTransport("tcp");
    case "unix":
      return createTransport("unix", { mode: t.unixSocketMode });
    case "tls": {
      if (role === "client") {
        const client: TlsClientOptions = (tls as TlsClientOptions | undefined) ?? {
          ...(t.tlsCaPath === "" ? {} : { caCerts: [{ path: t.tlsCaPath }] }),
          ...(t.tlsServerName === "" ? {} : { serverName: t.tlsServerName }),
          alpnProtocols: t.tlsAlpn,
        };
        return createTransport("tls", { client });
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
      };
      return createTransport("tls", { server });
    }
  }
}
