/**
 * TLS transport with two backends: Deno's native TLS (rustls: `Deno.listenTls`,
 * `Deno.connectTls`, `Deno.startTls`) for plain TLS, and `node:tls` (`tls_node.ts`) for mutual
 * TLS, certificate and SPKI pins, pin-only trust, TLS 1.3 only, and client certificates with
 * `TCP_NODELAY`. `backend: "auto"` picks `node` when an option needs it; an option the chosen
 * backend cannot enforce throws at construction, never silently ignored.
 *
 * @module
 */

import { PROTOCOL_VERSION } from "../core/packet.ts";
import { ProtocolError } from "../errors.ts";
import { formatHostPort, parseConnectAddress, parseHostPort } from "./address.ts";
import { checkBacklog, listenError, withDeadline, wrapListener } from "./tcp.ts";
import { errorMessage } from "../util/error_message.ts";
import { checkTimeout } from "../util/options.ts";
import { closeQuietly } from "../util/resource.ts";
import { generateSelfSignedCert } from "./certs.ts";
import { normalizeFingerprint, normalizeSpkiPin, type PinSet } from "./peer_certificate.ts";
import {
  checkNetPermission,
  connectNode,
  listenNode,
  type NodeServerSettings,
  nodeTlsSupported,
  type TlsPeer,
} from "./tls_node.ts";
import { DEFAULT_CONNECT_TIMEOUT_MS } from "./types.ts";
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
   * Client certificates (mutual TLS, `node` backend): `"none"` asks for none; `"request"` asks,
   * accepts a client without one, and refuses a certificate that fails the checks below;
   * `"require"` refuses a client without a certificate. With `"request"` or `"require"`, at
   * least one of `clientCaCerts`, `clientCertFingerprints`, `clientSpkiPins` or `authorize`
   * must say which certificates are good, and all that are set must accept it. The original
   * crate's `verify_client: true` is `"require"`.
   *
   * @default {"none"}
   */
  clientAuth?: "none" | "request" | "require";
  /**
   * Deprecated spelling of `clientAuth: "require"` (0.1); `true` with another `clientAuth` is
   * a `TypeError`.
   */
  requireClientCert?: boolean;
  /**
   * CA certificates that sign acceptable client certificates (chain and validity dates are
   * verified by the TLS library). Needs `clientAuth`.
   */
  clientCaCerts?: readonly PemSource[];
  /**
   * SHA-256 fingerprints of acceptable client certificates (`"AB:CD:..."` or 64 hex digits):
   * pinned clients, no CA needed (the validity dates are then checked against the clock).
   * Needs `clientAuth`.
   */
  clientCertFingerprints?: readonly string[];
  /**
   * SHA-256 hashes of acceptable client public keys (SubjectPublicKeyInfo, base64, optionally
   * `sha256/...`): they survive re-issuing a certificate for the same key. A certificate
   * matching any fingerprint or any SPKI pin is pinned. Needs `clientAuth`.
   */
  clientSpkiPins?: readonly string[];
  /**
   * Decides about each client once its certificate passed the other checks (sync or async;
   * `false` or a throw refuses). It sees the certificate (`undefined` when the client sent
   * none) and the address; under `serve()` with the secure channel on, it runs after the Noise
   * handshake and also sees the client's Noise static key (`noiseKey`), so one policy can bind
   * both identities. Forces the `node` backend.
   */
  authorize?: (peer: TlsPeer) => boolean | Promise<boolean>;
  /**
   * The lowest TLS version accepted. `"TLSv1.3"` needs the `node` backend.
   *
   * @default {"TLSv1.2"}
   */
  minVersion?: "TLSv1.2" | "TLSv1.3";
  /**
   * The TLS handshake of an accepted connection must finish within this many milliseconds,
   * or its socket is closed (`serve()` passes `server.connection_timeout`, and its handshake
   * slots, `max_handshakes`, count these connections from the moment they are accepted).
   *
   * @default {5000}
   */
  handshakeTimeoutMs?: number;
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
   * SHA-256 fingerprints of acceptable server certificates (`"AB:CD:..."` or 64 hex digits),
   * checked after the chain and the name, before `connect` resolves (so before any application
   * byte is written). Forces the `node` backend.
   */
  serverCertFingerprints?: readonly string[];
  /**
   * SHA-256 hashes of acceptable server public keys (SubjectPublicKeyInfo, base64, optionally
   * `sha256/...`; `certificateSpkiPin` computes one). A certificate matching any fingerprint or
   * any SPKI pin is pinned. Forces the `node` backend.
   */
  serverSpkiPins?: readonly string[];
  /**
   * Trust the pins alone: no CA chain, no name check, no validity dates (a self-signed server
   * certificate made by anyone is accepted when, and only when, it is pinned). Needs
   * `serverCertFingerprints` or `serverSpkiPins`. Forces the `node` backend.
   *
   * @default {false}
   */
  pinOnly?: boolean;
  /**
   * The lowest TLS version accepted. `"TLSv1.3"` needs the `node` backend.
   *
   * @default {"TLSv1.2"}
   */
  minVersion?: "TLSv1.2" | "TLSv1.3";
}

/** Which TLS implementation a {@linkcode TlsTransport} uses. */
export type TlsBackend = "auto" | "native" | "node";

/** Options of {@linkcode TlsTransport}. */
export interface TlsTransportOptions {
  /** What `listen` needs; without it, `listen` fails. */
  server?: TlsServerOptions;
  /** How `connect` verifies the server and authenticates itself. */
  client?: TlsClientOptions;
  /**
   * `"native"` (Deno's rustls: plain TLS, fastest), `"node"` (`node:tls`: everything below), or
   * `"auto"`: `node` for a side whose options need it (client authentication, a client CA list,
   * fingerprint or SPKI pins, `pinOnly`, `authorize`, TLS 1.3 only, a client certificate, for
   * `TCP_NODELAY`), `native` otherwise. `"native"` with such an option throws.
   *
   * @default {"auto"}
   */
  backend?: TlsBackend;
}

const SERVER_KEYS = new Set([
  "cert",
  "key",
  "alpnProtocols",
  "backlog",
  "clientAuth",
  "requireClientCert",
  "clientCaCerts",
  "clientCertFingerprints",
  "clientSpkiPins",
  "authorize",
  "minVersion",
  "handshakeTimeoutMs",
]);
const CLIENT_KEYS = new Set([
  "caCerts",
  "serverName",
  "alpnProtocols",
  "requireAlpn",
  "cert",
  "key",
  "serverCertFingerprints",
  "serverSpkiPins",
  "pinOnly",
  "minVersion",
]);
const TOP_KEYS = new Set(["server", "client", "backend"]);

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

function unenforceable(options: readonly string[]): ProtocolError {
  return new ProtocolError(
    "TlsError",
    `TLS option${options.length > 1 ? "s" : ""} "${options.join('", "')}" cannot be enforced by ` +
      `the native Deno TLS backend (it cannot request or see peer certificates, nor require ` +
      `TLS 1.3); use backend "node" or "auto"`,
  );
}

function checkPins(
  fingerprints: readonly string[] | undefined,
  spki: readonly string[] | undefined,
  label: string,
): PinSet {
  for (const [name, list] of [["CertFingerprints", fingerprints], ["SpkiPins", spki]] as const) {
    if (list !== undefined && !Array.isArray(list)) {
      throw new TypeError(`${label}${name} must be an array of strings`);
    }
  }
  return {
    fingerprints: [
      ...new Set(
        (fingerprints ?? []).map((pin, i) =>
          normalizeFingerprint(pin, `${label}CertFingerprints[${i}]`)
        ),
      ),
    ],
    spki: [
      ...new Set((spki ?? []).map((pin, i) => normalizeSpkiPin(pin, `${label}SpkiPins[${i}]`))),
    ],
  };
}

function checkMinVersion(value: unknown, label: string): "TLSv1.2" | "TLSv1.3" {
  if (value === undefined) return "TLSv1.2";
  if (value !== "TLSv1.2" && value !== "TLSv1.3") {
    throw new TypeError(`${label} must be "TLSv1.2" or "TLSv1.3", got "${value}"`);
  }
  return value;
}

function checkBackend(value: unknown): TlsBackend {
  if (value === undefined) return "auto";
  if (value !== "auto" && value !== "native" && value !== "node") {
    throw new TypeError(`TLS backend must be "auto", "native" or "node", got "${value}"`);
  }
  return value;
}

/**
 * Resolves the backend of one side: the options that need `node` force it under `auto` and
 * make `native` throw; the node backend is refused on a Deno too old to verify client
 * certificates.
 */
function resolveBackend(
  chosen: TlsBackend,
  needsNode: readonly string[],
  preferNode: boolean,
): "native" | "node" {
  if (chosen === "native") {
    if (needsNode.length > 0) throw unenforceable(needsNode);
    return "native";
  }
  const backend = chosen === "node" || needsNode.length > 0 || preferNode ? "node" : "native";
  if (backend === "node") {
    const support = nodeTlsSupported();
    if (!support.ok) {
      throw new ProtocolError(
        "TlsError",
        `The node:tls backend needs Deno 2.9.0 or newer (client certificates are verified ` +
          `correctly only from there: denoland/deno#33439, #34381); this is Deno ` +
          `"${support.version}"`,
      );
    }
  }
  return backend;
}

/** Set once a node:tls server passed the client-certificate self-test in this process. */
let selfTestPassed = false;

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
 * @param conn A TLS connection (`Deno.TlsConn`, or a `NodeTlsConn` of the node backend).
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
 * TLS 1.2/1.3 over TCP, on Deno's native TLS or on `node:tls` (see `backend`). Listening needs
 * `server.cert` and `server.key`; connecting verifies the server against the system roots plus
 * `client.caCerts` (or, with `pinOnly`, against the pins alone) and, by default, offers and
 * requires ALPN `"npro/2"`. `connect` resolves after the handshake and every certificate check.
 *
 * Accepted connections come before their TLS handshake on both backends (so a daemon counts
 * them among its handshakes); the handshake must finish within `server.handshakeTimeoutMs`,
 * and a connection whose handshake fails or times out is closed. On the `node` backend the
 * peer's certificate is `conn.peerCertificate` once the handshake is done.
 *
 * Nagle's algorithm: the native client without a certificate connects with `Deno.connect`,
 * switches `TCP_NODELAY` on, then upgrades with `Deno.startTls`; the node backend switches it
 * off on every socket, both sides. Sockets accepted by the native server keep Nagle on (Deno
 * offers no way to change it): upper layers write each batch as one buffer.
 *
 * @example Mutual TLS with a small CA
 * ```ts
 * import {
 *   generateCertificateAuthority,
 *   issueCertificate,
 *   type NodeTlsConn,
 *   TlsTransport,
 * } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const ca = await generateCertificateAuthority({ commonName: "npro test CA" });
 * const server = await issueCertificate({
 *   issuer: ca,
 *   commonName: "localhost",
 *   altNames: ["127.0.0.1"],
 *   usage: "server",
 * });
 * const client = await issueCertificate({ issuer: ca, commonName: "client-1", usage: "client" });
 * const tls = new TlsTransport({
 *   server: {
 *     cert: server.certPem,
 *     key: server.keyPem,
 *     clientAuth: "require",
 *     clientCaCerts: [ca.certPem],
 *   },
 *   client: { caCerts: [ca.certPem], cert: client.certPem, key: client.keyPem },
 * });
 * assert.equal(tls.serverBackend, "node");
 * await using listener = await tls.listen("127.0.0.1:0");
 * const { port } = listener.addr as Deno.NetAddr;
 * const [conn, accepted] = await Promise.all([
 *   tls.connect(`127.0.0.1:${port}`, { timeoutMs: 2000 }),
 *   listener.accept(),
 * ]);
 * await conn.write(new Uint8Array([7]));
 * const byte = new Uint8Array(1);
 * assert.equal(await accepted.read(byte), 1);
 * assert.equal((accepted as NodeTlsConn).peerCertificate?.subject.CN, "client-1");
 * conn.close();
 * accepted.close();
 * ```
 */
export class TlsTransport implements Transport {
  /** Always `"tls"`. */
  readonly kind: "tls" = "tls";
  /** The backend `listen` uses (`undefined` without server options). */
  readonly serverBackend: "native" | "node" | undefined;
  /** The backend `connect` uses. */
  readonly clientBackend: "native" | "node";
  #server: TlsServerOptions | undefined;
  #serverAlpn: string[];
  #serverBacklog: number | undefined;
  #serverAuth: "none" | "request" | "require";
  #serverPins: PinSet;
  #serverMinVersion: "TLSv1.2" | "TLSv1.3";
  #handshakeTimeoutMs: number;
  #client: TlsClientOptions;
  #clientAlpn: string[];
  #clientPins: PinSet;
  #clientMinVersion: "TLSv1.2" | "TLSv1.3";

  /**
   * Creates a TLS transport, checks its options and picks the backend of each side.
   *
   * @param options Server and client settings, and the backend.
   * @throws {TypeError} When an option is malformed, unknown, or contradicts another.
   * @throws {ProtocolError} code `TlsError` when an option cannot be enforced by the chosen
   * backend, or the `node` backend is needed on a Deno older than 2.9.0.
   */
  constructor(options: TlsTransportOptions = {}) {
    checkKeys(options, TOP_KEYS, "TLS option");
    const backend = checkBackend(options.backend);
    const server = options.server;
    this.#serverAuth = "none";
    this.#serverPins = { fingerprints: [], spki: [] };
    this.#serverMinVersion = "TLSv1.2";
    this.#handshakeTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS;
    if (server !== undefined) {
      checkKeys(server, SERVER_KEYS, "TLS server option");
      checkPemSource(server.cert, "server.cert");
      checkPemSource(server.key, "server.key");
      if (server.requireClientCert !== undefined && typeof server.requireClientCert !== "boolean") {
        throw new TypeError(`server.requireClientCert must be a boolean`);
      }
      const auth = server.clientAuth ?? (server.requireClientCert === true ? "require" : "none");
      if (auth !== "none" && auth !== "request" && auth !== "require") {
        throw new TypeError(
          `server.clientAuth must be "none", "request" or "require", got "${auth}"`,
        );
      }
      if (server.requireClientCert === true && auth !== "require") {
        throw new TypeError(
          `server.requireClientCert true contradicts server.clientAuth "${auth}"`,
        );
      }
      if (server.clientCaCerts !== undefined) {
        if (!Array.isArray(server.clientCaCerts)) {
          throw new TypeError(`server.clientCaCerts must be an array`);
        }
        server.clientCaCerts.forEach((ca, i) => checkPemSource(ca, `server.clientCaCerts[${i}]`));
      }
      this.#serverPins = checkPins(
        server.clientCertFingerprints,
        server.clientSpkiPins,
        "server.client",
      );
      if (server.authorize !== undefined && typeof server.authorize !== "function") {
        throw new TypeError(`server.authorize must be a function`);
      }
      const hasCa = (server.clientCaCerts?.length ?? 0) > 0;
      const hasPins = this.#serverPins.fingerprints.length + this.#serverPins.spki.length > 0;
      if (auth === "none" && (hasCa || hasPins)) {
        throw new TypeError(
          `server.${hasCa ? "clientCaCerts" : "clientCertFingerprints/clientSpkiPins"} needs ` +
            `server.clientAuth "request" or "require" (it is "none": no client certificate ` +
            `would be asked for, and the option would be ignored)`,
        );
      }
      if (auth !== "none" && !hasCa && !hasPins && server.authorize === undefined) {
        throw new TypeError(
          `server.clientAuth "${auth}" needs server.clientCaCerts, ` +
            `server.clientCertFingerprints, server.clientSpkiPins or server.authorize: ` +
            `nothing would say which client certificates are good`,
        );
      }
      this.#serverAuth = auth;
      this.#serverMinVersion = checkMinVersion(server.minVersion, "server.minVersion");
      this.#handshakeTimeoutMs = checkTimeout(
        "server.handshakeTimeoutMs",
        server.handshakeTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      );
      const needsNode = [
        ...(auth !== "none" ? [`server.clientAuth ("${auth}")`] : []),
        ...(hasCa ? ["server.clientCaCerts"] : []),
        ...(this.#serverPins.fingerprints.length > 0 ? ["server.clientCertFingerprints"] : []),
        ...(this.#serverPins.spki.length > 0 ? ["server.clientSpkiPins"] : []),
        ...(server.authorize !== undefined ? ["server.authorize"] : []),
        ...(this.#serverMinVersion === "TLSv1.3" ? ['server.minVersion ("TLSv1.3")'] : []),
      ];
      this.serverBackend = resolveBackend(backend, needsNode, false);
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
    this.#clientPins = checkPins(
      client.serverCertFingerprints,
      client.serverSpkiPins,
      "client.server",
    );
    if (client.pinOnly !== undefined && typeof client.pinOnly !== "boolean") {
      throw new TypeError(`client.pinOnly must be a boolean`);
    }
    const clientPinned = this.#clientPins.fingerprints.length + this.#clientPins.spki.length > 0;
    if (client.pinOnly === true && !clientPinned) {
      throw new TypeError(
        `client.pinOnly needs client.serverCertFingerprints or client.serverSpkiPins: ` +
          `without a pin nothing would be trusted`,
      );
    }
    if (client.pinOnly === true && (client.caCerts?.length ?? 0) > 0) {
      throw new TypeError(
        `client.caCerts cannot be used with client.pinOnly: pin-only trust checks no CA chain, ` +
          `so the CA certificates would be ignored`,
      );
    }
    this.#clientMinVersion = checkMinVersion(client.minVersion, "client.minVersion");
    this.#client = client;
    this.#clientAlpn = checkAlpn(client.alpnProtocols, "client.alpnProtocols");
    this.clientBackend = resolveBackend(
      backend,
      [
        ...(this.#clientPins.fingerprints.length > 0 ? ["client.serverCertFingerprints"] : []),
        ...(this.#clientPins.spki.length > 0 ? ["client.serverSpkiPins"] : []),
        ...(client.pinOnly === true ? ["client.pinOnly"] : []),
        ...(this.#clientMinVersion === "TLSv1.3" ? ['client.minVersion ("TLSv1.3")'] : []),
      ],
      // A client certificate works on both, but only node:tls also switches Nagle off.
      client.cert !== undefined,
    );
  }

  /**
   * Listens on `"host:port"`. Accepted connections come before their handshake; complete it with
   * {@linkcode tlsHandshake} (or the first read). The listener closes a connection whose
   * handshake fails or outlives `server.handshakeTimeoutMs`. On the `node` backend with
   * `clientAuth`, the first `listen` of the process runs a self-test on the new socket (two
   * loopback handshakes, about 10 ms) and fails if the runtime reports a client without a
   * certificate, or with one from an unknown CA, as authorized.
   *
   * @param address The address to bind, for example `"127.0.0.1:9443"` or `"[::1]:0"`.
   * @param options A signal that closes the listener.
   * @returns The listener.
   * @throws {ProtocolError} code `TlsError` without `server` options, with an unusable
   * certificate or key, or a failed self-test; `AddressInUse` when the port is taken,
   * `PermissionDenied` for a privileged port or a missing `--allow-net`, `ConfigError` when the
   * address cannot be bound otherwise.
   */
  async listen(address: string, options?: TransportListenOptions): Promise<Listener> {
    const { hostname, port } = parseHostPort(address);
    const server = this.#server;
    if (server === undefined) {
      throw new ProtocolError("TlsError", `TLS listen on "${address}" needs "server" options`);
    }
    const [cert, key, clientCaCerts] = await Promise.all([
      loadPem(server.cert, "certificate"),
      loadPem(server.key, "key"),
      Promise.all((server.clientCaCerts ?? []).map((ca) => loadPem(ca, "client CA certificate"))),
    ]);
    if (this.serverBackend === "node") {
      return await this.#listenNode(address, hostname, port, {
        cert,
        key,
        clientCaCerts,
        clientAuth: this.#serverAuth,
        pins: this.#serverPins,
        authorize: server.authorize,
        minVersion: this.#serverMinVersion,
        alpn: this.#serverAlpn,
        handshakeTimeoutMs: this.#handshakeTimeoutMs,
        backlog: this.#serverBacklog,
      }, options);
    }
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
    const deadline = this.#handshakeTimeoutMs;
    return wrapListener(inner, (conn) => nativeHandshakeDeadline(conn, deadline), options);
  }

  async #listenNode(
    address: string,
    hostname: string,
    port: number,
    settings: NodeServerSettings,
    options: TransportListenOptions | undefined,
  ): Promise<Listener> {
    let listener;
    try {
      listener = await listenNode(hostname, port, settings, options);
    } catch (error) {
      if (error instanceof ProtocolError) throw error;
      const code = (error as { code?: string }).code;
      const mapped = code === "EADDRINUSE"
        ? new Deno.errors.AddrInUse(errorMessage(error))
        : code === "EACCES" || code === "EPERM"
        ? new Deno.errors.PermissionDenied(errorMessage(error))
        : code === "EADDRNOTAVAIL"
        ? new Deno.errors.AddrNotAvailable(errorMessage(error))
        : error;
      if (mapped !== error || error instanceof Deno.errors.NotCapable) {
        throw listenError(address, mapped);
      }
      throw new ProtocolError("TlsError", `Cannot listen on "${address}": ${errorMessage(error)}`, {
        cause: error,
      });
    }
    if (settings.clientAuth !== "none" && !selfTestPassed) {
      try {
        const stranger = await generateSelfSignedCert({ commonName: "npro-self-test" });
        await listener.selfTest(stranger, 2000);
        selfTestPassed = true;
      } catch (error) {
        await listener[Symbol.asyncDispose]();
        throw new ProtocolError(
          "TlsError",
          `The node:tls self-test of client certificates failed on "${address}": ${
            errorMessage(error)
          }; refusing to run mutual TLS on this runtime (Deno "${Deno.version.deno}")`,
          { cause: error },
        );
      }
    }
    return listener;
  }

  /**
   * Connects to `"host:port"` and completes the handshake within the time limit.
   *
   * @param address The address to connect to.
   * @param options A signal and a time limit (default 5000 ms) covering the TCP connect and the
   * handshake.
   * @returns The TLS connection (`Deno.TlsConn`, or a `NodeTlsConn` on the node backend),
   * handshake and certificate checks done.
   * @throws {ProtocolError} code `TlsError` when the handshake fails (untrusted certificate,
   * name mismatch, an unpinned certificate, no common ALPN protocol, a server that does not
   * speak TLS), `Timeout`, `Cancelled`, `ConnectionRefused` (nothing listens on the port),
   * `PermissionDenied` (a missing `--allow-net`) or `ConnectionClosed`.
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
    if (this.clientBackend === "node") {
      return withDeadline(what, options, async (signal) => {
        checkNetPermission(hostname, port);
        const [caCerts, cert, key] = await Promise.all([
          Promise.all((client.caCerts ?? []).map((ca) => loadPem(ca, "CA certificate", signal))),
          client.cert === undefined
            ? undefined
            : loadPem(client.cert, "client certificate", signal),
          client.key === undefined ? undefined : loadPem(client.key, "client key", signal),
        ]);
        return await connectNode({
          hostname,
          port,
          serverName,
          caCerts,
          cert,
          key,
          pins: this.#clientPins,
          pinOnly: client.pinOnly === true,
          minVersion: this.#clientMinVersion,
          alpn,
          requireAlpn,
        }, signal);
      }, closeQuietly);
    }
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

/**
 * Starts the handshake of a connection accepted by the native listener under a deadline: a
 * handshake that fails or does not finish in time closes the socket. The handshake result
 * stays available to the connection's own `handshake()` and reads.
 */
function nativeHandshakeDeadline(conn: Deno.TlsConn, ms: number): void {
  const timer = setTimeout(() => closeQuietly(conn), ms);
  conn.handshake().then(
    () => clearTimeout(timer),
    () => {
      clearTimeout(timer);
      closeQuietly(conn);
    },
  );
}
