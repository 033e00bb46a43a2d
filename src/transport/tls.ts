/**
 * TLS transport on Deno's native TLS (rustls): `Deno.listenTls`, `Deno.connectTls` and
 * `Deno.startTls`, with ALPN, certificate pinning through `caCerts`, client certificates, and a
 * refusal of every option this backend cannot enforce.
 *
 * @module
 */

import { PROTOCOL_VERSION } from "../core/packet.ts";
import { ProtocolError } from "../errors.ts";
import { formatHostPort, parseConnectAddress, parseHostPort } from "./address.ts";
import { checkBacklog, listenError, withDeadline, wrapListener } from "./tcp.ts";
import { errorMessage } from "../util/error_message.ts";
import { closeQuietly } from "../util/resource.ts";
import type {
  Listener,
  Transport,
  TransportConnectOptions,
  TransportListenOptions,
} from "./types.ts";

/** The ALPN protocol name of this protocol's version 2, offered and accepted by default. */
export const DEFAULT_ALPN_PROTOCOLS: readonly string[] = Object.freeze([
  `npro/${PROTOCOL_VERSION}`,
]);

/**
 * PEM material: the PEM text itself (`"-----BEGIN CERTIFICATE-----\n..."`), or `{ path }` to
 * read it from a file (needs `--allow-read` for that path) each time it is used, so renewed
 * certificates are picked up by the next `listen` or `connect`.
 */
export type PemSource = string | { readonly path: string };

/** Server side of {@linkcode TlsTransportOptions}. */
export interface TlsServerOptions {
  /** The certificate chain, PEM, leaf first. */
  cert: PemSource;
  /** The private key, PEM (PKCS#8, SEC1 or PKCS#1). */
  key: PemSource;
  /**
   * ALPN protocols the server accepts. A client that offers none of them is refused during the
   * handshake; a client that offers no ALPN at all is accepted. An empty list turns ALPN off.
   *
   * @default {["npro/2"]}
   */
  alpnProtocols?: readonly string[];
  /**
   * The listen backlog.
   *
   * @default {511}
   */
  backlog?: number;
  /**
   * Require and verify a client certificate (mutual TLS). **Not available on this backend**:
   * `true` makes the constructor throw `ProtocolError` code `TlsError`. The `node:tls` backend
   * (a later release) will provide it; until then, authenticate clients with the secure
   * channel's static keys.
   */
  requireClientCert?: boolean;
  /**
   * CA certificates that sign acceptable client certificates. **Not available on this
   * backend**: a non-empty list makes the constructor throw `ProtocolError` code `TlsError`.
   */
  clientCaCerts?: readonly PemSource[];
  /**
   * SHA-256 fingerprints of acceptable client certificates. **Not available on this backend**:
   * a non-empty list makes the constructor throw `ProtocolError` code `TlsError`.
   */
  clientCertFingerprints?: readonly string[];
}

/** Client side of {@linkcode TlsTransportOptions}. */
export interface TlsClientOptions {
  /**
   * Extra trust anchors, PEM. A self-signed `CA:FALSE` leaf certificate (see
   * `generateSelfSignedCert`) listed here is trusted as itself, which pins it. Deno uses these
   * **in addition to** the system's root certificates.
   */
  caCerts?: readonly PemSource[];
  /**
   * The name the server certificate must carry (a DNS name or an IP address in its subject
   * alternative names), also sent as SNI.
   *
   * @default {the host of the address}
   */
  serverName?: string;
  /**
   * ALPN protocols offered, most preferred first. An empty list turns ALPN off.
   *
   * @default {["npro/2"]}
   */
  alpnProtocols?: readonly string[];
  /**
   * Fail the connection when ALPN was offered and the server selected none (it does not speak
   * this protocol, or it is a generic TLS terminator).
   *
   * @default {true}
   */
  requireAlpn?: boolean;
  /**
   * A client certificate chain, PEM, for servers that require one. Needs `key` too. With a
   * client certificate the connection is made with `Deno.connectTls`, which cannot switch
   * Nagle's algorithm off: write each batch as one buffer.
   */
  cert?: PemSource;
  /** The private key of `cert`, PEM. */
  key?: PemSource;
  /**
   * SHA-256 fingerprints the server certificate must match. **Not available on this backend**:
   * a non-empty list makes the constructor throw `ProtocolError` code `TlsError`. Pin through
   * `caCerts` instead.
   */
  serverCertFingerprints?: readonly string[];
}

/** Options of {@linkcode TlsTransport}. */
export interface TlsTransportOptions {
  /** What `listen` needs; without it, `listen` fails. */
  server?: TlsServerOptions;
  /** How `connect` verifies the server and authenticates itself. */
  client?: TlsClientOptions;
}

const SERVER_KEYS = new Set([
  "cert",
  "key",
  "alpnProtocols",
  "backlog",
  "requireClientCert",
  "clientCaCerts",
  "clientCertFingerprints",
]);
const CLIENT_KEYS = new Set([
  "caCerts",
  "serverName",
  "alpnProtocols",
  "requireAlpn",
  "cert",
  "key",
  "serverCertFingerprints",
]);
const TOP_KEYS = new Set(["server", "client"]);

function checkKeys(value: unknown, allowed: Set<string>, label: string): void {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`${label} must be an object`);
  }
  for (const key of Object.keys(value)) {
    // Fail closed: an option this backend does not know (a Node-style "ca" or "minVersion")
    // would otherwise be silently ignored.
    if (!allowed.has(key)) throw new TypeError(`Unknown ${label} "${key}"`);
  }
}

function checkPemSource(value: unknown, label: string): void {
  if (typeof value === "string") {
    if (!value.includes("-----BEGIN ")) {
      throw new TypeError(
        `${label} must be PEM text or { path }, got a string without a PEM header`,
      );
    }
    return;
  }
  if (
    value === null || typeof value !== "object" ||
    typeof (value as { path?: unknown }).path !== "string" ||
    (value as { path: string }).path.length === 0
  ) {
    throw new TypeError(`${label} must be PEM text or { path }`);
  }
}

function checkAlpn(value: readonly string[] | undefined, label: string): string[] {
  if (value === undefined) return [...DEFAULT_ALPN_PROTOCOLS];
  if (!Array.isArray(value)) throw new TypeError(`${label} must be an array of strings`);
  for (const name of value) {
    if (typeof name !== "string" || name.length === 0) {
      throw new TypeError(`${label} entry "${name}" must be a non-empty string`);
    }
    if (new TextEncoder().encode(name).length > 255) {
      throw new RangeError(`${label} entry "${name}" exceeds "255" bytes`);
    }
  }
  return [...value];
}

function unenforceable(option: string): ProtocolError {
  return new ProtocolError(
    "TlsError",
    `TLS option "${option}" cannot be enforced by the native Deno TLS backend; the node:tls ` +
      `backend will provide it in a later release (authenticate peers with the secure ` +
      `channel's static keys meanwhile)`,
  );
}

async function loadPem(source: PemSource, label: string, signal?: AbortSignal): Promise<string> {
  if (typeof source === "string") return source;
  try {
    return await Deno.readTextFile(source.path, signal === undefined ? {} : { signal });
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ProtocolError("TlsError", `Cannot read TLS ${label} from "${source.path}"`, {
      cause: error,
    });
  }
}

/**
 * Completes the TLS handshake of a connection, typically one accepted from a TLS listener (the
 * native server starts the handshake lazily, on the first read or write). On failure, timeout or
 * abort the connection is closed.
 *
 * @example Bound a server-side handshake
 * ```ts
 * import {
 *   generateSelfSignedCert,
 *   tlsHandshake,
 *   TlsTransport,
 * } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const { certPem, keyPem } = await generateSelfSignedCert({
 *   commonName: "localhost",
 *   altNames: ["127.0.0.1"],
 * });
 * const tls = new TlsTransport({
 *   server: { cert: certPem, key: keyPem },
 *   client: { caCerts: [certPem] },
 * });
 * await using listener = await tls.listen("127.0.0.1:0");
 * const { port } = listener.addr as Deno.NetAddr;
 * const [client, server] = await Promise.all([
 *   tls.connect(`127.0.0.1:${port}`),
 *   listener.accept(),
 * ]);
 * const info = await tlsHandshake(server, { timeoutMs: 2000 });
 * assert.equal(info.alpnProtocol, "npro/2");
 * client.close();
 * server.close();
 * ```
 *
 * @param conn A TLS connection (`Deno.TlsConn`).
 * @param options A signal and a time limit (default 5000 ms).
 * @returns The negotiated ALPN protocol, or `null`.
 * @throws {TypeError} When `conn` is not a TLS connection.
 * @throws {ProtocolError} code `TlsError` when the handshake fails, `Timeout` or `Cancelled`.
 */
export function tlsHandshake(
  conn: Deno.Conn,
  options?: TransportConnectOptions,
): Promise<Deno.TlsHandshakeInfo> {
  if (typeof (conn as Partial<Deno.TlsConn>)?.handshake !== "function") {
    return Promise.reject(new TypeError(`conn must be a TLS connection`));
  }
  const tlsConn = conn as Deno.TlsConn;
  return withDeadline(
    "TLS handshake",
    options,
    (signal) => handshakeOrClose(tlsConn, signal, "TLS handshake"),
    () => {},
  );
}

/**
 * What a client can tell from a failed TLS handshake: a server that closes the connection or
 * answers with bytes that are not TLS records does not speak TLS on that port.
 */
function notTlsHint(error: unknown): string {
  if (error instanceof Deno.errors.UnexpectedEof) {
    return `: the server closed the connection during the TLS handshake; it probably does not ` +
      `speak TLS (set transport.kind = "tcp" if it runs without TLS)`;
  }
  if (error instanceof Deno.errors.InvalidData && /InvalidContentType/.test(errorMessage(error))) {
    return `: the server's reply is not TLS; it probably speaks this protocol without TLS ` +
      `(set transport.kind = "tcp") or another protocol`;
  }
  return "";
}

async function handshakeOrClose(
  conn: Deno.TlsConn,
  signal: AbortSignal,
  what: string,
  client = false,
): Promise<Deno.TlsHandshakeInfo> {
  const onAbort = (): void => closeQuietly(conn);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await conn.handshake();
  } catch (error) {
    closeQuietly(conn);
    if (signal.aborted) throw error;
    const hint = client ? notTlsHint(error) : "";
    throw new ProtocolError("TlsError", `${what} failed: ${errorMessage(error)}${hint}`, {
      cause: error,
    });
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * TLS 1.2/1.3 over TCP on Deno's native TLS. Listening needs `server.cert` and `server.key`;
 * connecting verifies the server against the system roots plus `client.caCerts` and, by default,
 * offers and requires ALPN `"npro/2"`. `connect` resolves after the handshake.
 *
 * Nagle's algorithm: a client without a certificate connects with `Deno.connect`, switches
 * `TCP_NODELAY` on, then upgrades with `Deno.startTls`, so small writes go out at once. Sockets
 * accepted by the server, and client sockets that present a certificate (`Deno.connectTls`),
 * keep Nagle on because Deno offers no way to change it: upper layers write each batch as one
 * buffer.
 *
 * The native server cannot request or verify client certificates, nor expose the peer's
 * certificate: `requireClientCert`, `clientCaCerts`, `clientCertFingerprints` and
 * `serverCertFingerprints` make the constructor throw instead of being ignored.
 *
 * @example Pin a self-signed certificate and echo one message
 * ```ts
 * import { generateSelfSignedCert, TlsTransport } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const { certPem, keyPem } = await generateSelfSignedCert({
 *   commonName: "localhost",
 *   altNames: ["localhost", "127.0.0.1"],
 * });
 * const tls = new TlsTransport({
 *   server: { cert: certPem, key: keyPem },
 *   client: { caCerts: [certPem] },
 * });
 * await using listener = await tls.listen("127.0.0.1:0");
 * const { port } = listener.addr as Deno.NetAddr;
 * const accepted = listener.accept();
 * const client = await tls.connect(`127.0.0.1:${port}`, { timeoutMs: 2000 });
 * const server = await accepted;
 * await client.write(new Uint8Array([7]));
 * const buffer = new Uint8Array(1);
 * assert.equal(await server.read(buffer), 1);
 * assert.equal(buffer[0], 7);
 * client.close();
 * server.close();
 * ```
 */
export class TlsTransport implements Transport {
  /** Always `"tls"`. */
  readonly kind: "tls" = "tls";
  #server: TlsServerOptions | undefined;
  #serverAlpn: string[];
  #serverBacklog: number | undefined;
  #client: TlsClientOptions;
  #clientAlpn: string[];

  /**
   * Creates a TLS transport and checks its options.
   *
   * @param options Server and client settings.
   * @throws {TypeError} When an option is malformed or unknown.
   * @throws {ProtocolError} code `TlsError` when an option cannot be enforced by this backend.
   */
  constructor(options: TlsTransportOptions = {}) {
    checkKeys(options, TOP_KEYS, "TLS option");
    const server = options.server;
    if (server !== undefined) {
      checkKeys(server, SERVER_KEYS, "TLS server option");
      checkPemSource(server.cert, "server.cert");
      checkPemSource(server.key, "server.key");
      if (server.requireClientCert !== undefined && typeof server.requireClientCert !== "boolean") {
        throw new TypeError(`server.requireClientCert must be a boolean`);
      }
      if (server.requireClientCert === true) throw unenforceable("server.requireClientCert");
      if (server.clientCaCerts !== undefined && server.clientCaCerts.length > 0) {
        throw unenforceable("server.clientCaCerts");
      }
      if (
        server.clientCertFingerprints !== undefined && server.clientCertFingerprints.length > 0
      ) {
        throw unenforceable("server.clientCertFingerprints");
      }
    }
    this.#server = server;
    this.#serverAlpn = checkAlpn(server?.alpnProtocols, "server.alpnProtocols");
    this.#serverBacklog = checkBacklog(server?.backlog);

    const client = options.client ?? {};
    checkKeys(client, CLIENT_KEYS, "TLS client option");
    if (client.caCerts !== undefined) {
      if (!Array.isArray(client.caCerts)) throw new TypeError(`client.caCerts must be an array`);
      client.caCerts.forEach((ca, i) => checkPemSource(ca, `client.caCerts[${i}]`));
    }
    if (
      client.serverName !== undefined &&
      (typeof client.serverName !== "string" || client.serverName.length === 0)
    ) {
      throw new TypeError(`client.serverName must be a non-empty string`);
    }
    if (client.requireAlpn !== undefined && typeof client.requireAlpn !== "boolean") {
      throw new TypeError(`client.requireAlpn must be a boolean`);
    }
    if ((client.cert === undefined) !== (client.key === undefined)) {
      throw new TypeError(`client.cert and client.key must be given together`);
    }
    if (client.cert !== undefined) checkPemSource(client.cert, "client.cert");
    if (client.key !== undefined) checkPemSource(client.key, "client.key");
    if (
      client.serverCertFingerprints !== undefined && client.serverCertFingerprints.length > 0
    ) {
      throw unenforceable("client.serverCertFingerprints");
    }
    this.#client = client;
    this.#clientAlpn = checkAlpn(client.alpnProtocols, "client.alpnProtocols");
  }

  /**
   * Listens on `"host:port"`. Accepted connections come before their handshake; complete it with
   * {@linkcode tlsHandshake} (or the first read) under your own time limit.
   *
   * @param address The address to bind, for example `"127.0.0.1:9443"` or `"[::1]:0"`.
   * @param options A signal that closes the listener.
   * @returns The listener.
   * @throws {ProtocolError} code `TlsError` without `server` options or with an unusable
   * certificate or key, `AddressInUse` when the port is taken, `PermissionDenied` for a
   * privileged port or a missing `--allow-net`, `ConfigError` when the address cannot be bound
   * otherwise.
   */
  async listen(address: string, options?: TransportListenOptions): Promise<Listener> {
    const { hostname, port } = parseHostPort(address);
    const server = this.#server;
    if (server === undefined) {
      throw new ProtocolError("TlsError", `TLS listen on "${address}" needs "server" options`);
    }
    const [cert, key] = await Promise.all([
      loadPem(server.cert, "certificate"),
      loadPem(server.key, "key"),
    ]);
    let inner: Deno.TlsListener;
    try {
      inner = Deno.listenTls({
        hostname,
        port,
        transport: "tcp",
        cert,
        key,
        ...(this.#serverAlpn.length > 0 ? { alpnProtocols: this.#serverAlpn } : {}),
        ...(this.#serverBacklog === undefined ? {} : { tcpBacklog: this.#serverBacklog }),
      });
    } catch (error) {
      if (
        error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.AddrNotAvailable ||
        error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ) {
        throw listenError(address, error);
      }
      throw new ProtocolError(
        "TlsError",
        `Cannot listen on "${address}": ${errorMessage(error)}`,
        { cause: error },
      );
    }
    return wrapListener(inner, undefined, options);
  }

  /**
   * Connects to `"host:port"` and completes the handshake within the time limit.
   *
   * @param address The address to connect to.
   * @param options A signal and a time limit (default 5000 ms) covering the TCP connect and the
   * handshake.
   * @returns The TLS connection (`Deno.TlsConn`), handshake done.
   * @throws {ProtocolError} code `TlsError` when the handshake fails (untrusted certificate,
   * name mismatch, no common ALPN protocol, a server that does not speak TLS), `Timeout`,
   * `Cancelled`, `ConnectionRefused` (nothing listens on the port), `PermissionDenied` (a
   * missing `--allow-net`) or `ConnectionClosed`.
   */
  connect(address: string, options?: TransportConnectOptions): Promise<Deno.Conn> {
    let hostname: string, port: number;
    try {
      ({ hostname, port } = parseConnectAddress(address));
    } catch (error) {
      return Promise.reject(error);
    }
    const client = this.#client;
    const serverName = client.serverName ?? hostname;
    const alpn = this.#clientAlpn;
    const requireAlpn = client.requireAlpn ?? true;
    const what = `Connecting to "${formatHostPort(hostname, port)}"`;
    return withDeadline(what, options, async (signal) => {
      const caCerts = await Promise.all(
        (client.caCerts ?? []).map((ca) => loadPem(ca, "CA certificate", signal)),
      );
      const alpnOption = alpn.length > 0 ? { alpnProtocols: alpn } : {};
      let conn: Deno.TlsConn;
      if (client.cert !== undefined && client.key !== undefined) {
        if (serverName !== hostname) {
          throw new ProtocolError(
            "TlsError",
            `TLS option "client.serverName" ("${serverName}") cannot differ from the host ` +
              `("${hostname}") when a client certificate is used on the native Deno TLS backend`,
          );
        }
        const [cert, key] = await Promise.all([
          loadPem(client.cert, "client certificate", signal),
          loadPem(client.key, "client key", signal),
        ]);
        // Deno.connectTls takes no signal; withDeadline closes a connection that arrives late.
        conn = await Deno.connectTls({ hostname, port, caCerts, cert, key, ...alpnOption });
        if (signal.aborted) {
          closeQuietly(conn);
          throw signal.reason;
        }
      } else {
        const tcp = await Deno.connect({ hostname, port, transport: "tcp", signal });
        try {
          tcp.setNoDelay(true);
          tcp.setKeepAlive(true);
          conn = await Deno.startTls(tcp, { hostname: serverName, caCerts, ...alpnOption });
        } catch (error) {
          closeQuietly(tcp);
          throw new ProtocolError("TlsError", `${what} failed: ${errorMessage(error)}`, {
            cause: error,
          });
        }
      }
      const info = await handshakeOrClose(
        conn,
        signal,
        `TLS handshake with "${serverName}"`,
        true,
      );
      if (requireAlpn && alpn.length > 0 && info.alpnProtocol === null) {
        closeQuietly(conn);
        throw new ProtocolError(
          "TlsError",
          `Server "${serverName}" selected no ALPN protocol; expected one of "${
            alpn.join('", "')
          }"`,
        );
      }
      return conn;
    }, closeQuietly);
  }
}
