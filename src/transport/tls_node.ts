/**
 * The `node:tls` backend of `TlsTransport`: mutual TLS (client certificates requested,
 * verified against a CA or pinned), server certificate pins checked before any application
 * byte, TLS 1.3 only on request, `TCP_NODELAY` on every socket, and the peer certificate on the
 * connection. Deno's native TLS cannot do the first three (denoland/deno#26825).
 *
 * The traps this file works around (experiments on Deno 2.9.6, docs/TRANSPORTS.md):
 * - a TLS handshake that times out or fails leaves the TCP socket open unless it is destroyed:
 *   every failure here destroys both the TLS socket and the raw socket;
 * - only `tls.createServer` verifies client certificates; a server-side `tls.TLSSocket` made
 *   around an accepted socket accepts a certificate from any CA, so it is not used;
 * - `checkServerIdentity` is not called with `rejectUnauthorized: false` (pin-only trust): the
 *   pins are checked again at `secureConnect`, before `connect` resolves, in every mode;
 * - with TLS 1.3 a client learns that the server refused its certificate only at its first read.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import { peerEvents } from "../log_budget.ts";
import { errorMessage } from "../util/error_message.ts";
import { NodeServerListener } from "./node_listener.ts";
import { formatAddr, formatHostPort } from "./address.ts";
import {
  describeCertificate,
  isPinned,
  type PeerCertificateInfo,
  pinMismatch,
  type PinSet,
} from "./peer_certificate.ts";
import type { TransportListenOptions } from "./types.ts";

const log = logger("transport", "tls");

/** Above this many unread bytes a connection stops reading its socket (TCP pushes back). */
const READ_HIGH_WATER = 256 * 1024;

/** The oldest Deno whose `node:tls` server verifies client certificates (see below). */
export const MIN_DENO_FOR_NODE_TLS = "2.9.0";

/**
 * Whether this Deno's `node:tls` can be trusted with client certificates: denoland/deno#33439
 * (a server that requests a certificate) and #34381 (`authorized` was `true` for a client
 * without a certificate, Deno 2.8.0) landed after 2.8.0; 2.9.0 is the first minor release with
 * both. Outside Deno (tests under another runtime) the check passes.
 */
export function nodeTlsSupported(version: string | undefined = globalThis.Deno?.version?.deno): {
  ok: boolean;
  version: string;
} {
  if (version === undefined) return { ok: true, version: "unknown" };
  const [major = 0, minor = 0] = version.split(".").map((part) => Number.parseInt(part, 10));
  const [wantMajor = 0, wantMinor = 0] = MIN_DENO_FOR_NODE_TLS.split(".").map(Number);
  return { ok: major > wantMajor || (major === wantMajor && minor >= wantMinor), version };
}

/** A peer as the TLS server's `authorize` callback sees it. */
export interface TlsPeer {
  /** The client's certificate, when it presented one. */
  readonly certificate: PeerCertificateInfo | undefined;
  /** The client's address. */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * The client's Noise static key, when `serve()` runs the secure channel inside TLS and the
   * pattern carries a client key: `authorize` is then called after the Noise handshake, with
   * both identities. `undefined` when the transport is used on its own, or the session has no
   * client key.
   */
  readonly noiseKey?: Uint8Array;
}

/** The server settings the node backend needs, already loaded and checked. */
export interface NodeServerSettings {
  cert: string;
  key: string;
  clientCaCerts: string[];
  clientAuth: "none" | "request" | "require";
  pins: PinSet;
  authorize: ((peer: TlsPeer) => boolean | Promise<boolean>) | undefined;
  minVersion: "TLSv1.2" | "TLSv1.3";
  alpn: string[];
  handshakeTimeoutMs: number;
  backlog: number | undefined;
}

/** The client settings the node backend needs, already loaded and checked. */
export interface NodeClientSettings {
  hostname: string;
  port: number;
  serverName: string;
  caCerts: string[];
  cert: string | undefined;
  key: string | undefined;
  pins: PinSet;
  pinOnly: boolean;
  minVersion: "TLSv1.2" | "TLSv1.3";
  alpn: string[];
  requireAlpn: boolean;
}

function badResource(): Error {
  return new Deno.errors.BadResource("Bad resource ID");
}

function netAddr(address: string | undefined, port: number | undefined): Deno.NetAddr {
  return { transport: "tcp", hostname: address ?? "unknown", port: port ?? 0 };
}

/** Destroys a socket, ignoring what a destroyed socket may throw. */
function destroyQuietly(socket: net.Socket | undefined): void {
  try {
    socket?.destroy();
  } catch {
    // Already gone.
  }
}

const PEER_AUTHORIZATION = Symbol("npro.peerAuthorization");

/**
 * Takes over the `authorize` check of a connection accepted by a node-backend TLS listener:
 * the transport then leaves it to the caller, who runs the returned function once it knows the
 * Noise key too (the daemon does, after the secure channel's handshake). Call it before the
 * first read or write. Returns `undefined` for other connections and when no `authorize` is
 * configured.
 *
 * @example Nothing to take over on a TCP connection
 * ```ts
 * import { takePeerAuthorization } from "./tls_node.ts";
 * import { memoryConnPair } from "./memory_conn.ts";
 * import assert from "node:assert/strict";
 *
 * const [a, b] = memoryConnPair();
 * assert.equal(takePeerAuthorization(a), undefined);
 * a.close();
 * b.close();
 * ```
 *
 * @param conn An accepted connection.
 * @returns The check: resolves when `authorize` accepts the peer, rejects with `ProtocolError`
 * code `TlsError` when it refuses.
 */
export function takePeerAuthorization(
  conn: Deno.Conn,
): ((noiseKey: Uint8Array | undefined) => Promise<void>) | undefined {
  const take = (conn as { [PEER_AUTHORIZATION]?: () => unknown })[PEER_AUTHORIZATION];
  return typeof take === "function"
    ? (take.call(conn) as ((noiseKey: Uint8Array | undefined) => Promise<void>) | undefined)
    : undefined;
}

/**
 * A connection of the `node:tls` backend of `TlsTransport`, made by `connect` or handed out by
 * a listener: a `Deno.Conn` with `handshake()` (as on `Deno.TlsConn`) and the peer's
 * certificate. Reads and writes wait for the handshake and the certificate checks; `close()`
 * destroys the TLS socket and the TCP socket under it.
 *
 * @example Read the server's certificate after connecting
 * ```ts
 * import {
 *   generateSelfSignedCert,
 *   type NodeTlsConn,
 *   TlsTransport,
 * } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const cert = await generateSelfSignedCert({ commonName: "localhost", altNames: ["127.0.0.1"] });
 * const tls = new TlsTransport({
 *   server: { cert: cert.certPem, key: cert.keyPem },
 *   client: { pinOnly: true, serverCertFingerprints: [cert.fingerprint] },
 * });
 * await using listener = await tls.listen("127.0.0.1:0");
 * const { port } = listener.addr as Deno.NetAddr;
 * const [conn, accepted] = await Promise.all([
 *   tls.connect(`127.0.0.1:${port}`, { timeoutMs: 2000 }),
 *   listener.accept(),
 * ]);
 * assert.equal((conn as NodeTlsConn).peerCertificate?.fingerprint256, cert.fingerprint);
 * conn.close();
 * accepted.close();
 * ```
 */
export interface NodeTlsConn extends Deno.Conn {
  /** The peer's certificate once the handshake is done; `undefined` when it sent none. */
  readonly peerCertificate: PeerCertificateInfo | undefined;
  /**
   * Waits for the handshake and the certificate checks (on a server, also the `authorize`
   * callback unless `serve()` took it over).
   *
   * @returns The negotiated ALPN protocol, or `null`.
   */
  handshake(): Promise<Deno.TlsHandshakeInfo>;
  /**
   * Switches Nagle's algorithm (off on every socket of this backend).
   *
   * @param noDelay `true` sends small writes at once.
   */
  setNoDelay(noDelay?: boolean): void;
  /**
   * Switches TCP keep-alive (on on every socket of this backend).
   *
   * @param keepAlive Whether to send keep-alive probes.
   */
  setKeepAlive(keepAlive?: boolean): void;
}

/**
 * A `node:tls` socket (or a plain `node:net` one, {@linkcode nodeSocketConn}) as a `Deno.Conn`: reads copy out of a queue of received chunks (reading
 * pauses above 256 KiB unread), a write resolves once the TLS socket has taken the bytes (the
 * caller may reuse its buffer), `close()` destroys the socket.
 */
class NodeTlsConnImpl implements NodeTlsConn {
  readonly localAddr: Deno.NetAddr;
  readonly remoteAddr: Deno.NetAddr;
  #socket: tls.TLSSocket | undefined;
  #raw: net.Socket | undefined;
  #ready: Promise<void>;
  #resolveReady!: () => void;
  #rejectReady!: (error: Error) => void;
  #failure: Error | undefined;
  #established = false;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #received = 0;
  #ended = false;
  #readError: Error | undefined;
  #waiting:
    | { buffer: Uint8Array; resolve: (n: number | null) => void; reject: (e: Error) => void }
    | undefined;
  #closed = false;
  #peer: PeerCertificateInfo | undefined;
  #alpn: string | null = null;
  /** Client side: whether this end presented a certificate (for the refusal message). */
  #presentedCert = false;
  #client: boolean;
  #authorize: ((peer: TlsPeer) => boolean | Promise<boolean>) | undefined;
  #authorization: Promise<void> | undefined;
  #authorizeTimeoutMs: number;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;
  #writable: WritableStream<Uint8Array<ArrayBufferLike>> | undefined;

  constructor(
    localAddr: Deno.NetAddr,
    remoteAddr: Deno.NetAddr,
    client: boolean,
    authorize?: (peer: TlsPeer) => boolean | Promise<boolean>,
    authorizeTimeoutMs = 5000,
  ) {
    this.#authorizeTimeoutMs = authorizeTimeoutMs;
    this.localAddr = localAddr;
    this.remoteAddr = remoteAddr;
    this.#client = client;
    this.#authorize = authorize;
    this.#ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.#ready.catch(() => {});
  }

  /** The peer's certificate, once the handshake is done (`undefined` when it sent none). */
  get peerCertificate(): PeerCertificateInfo | undefined {
    return this.#peer;
  }

  /** @internal The raw socket, destroyed with this connection. */
  setRaw(raw: net.Socket): void {
    this.#raw = raw;
  }

  /** @internal Binds the verified TLS socket; reads and writes may start. */
  attach(
    socket: tls.TLSSocket,
    peer: PeerCertificateInfo | undefined,
    presentedCert: boolean,
  ): void {
    if (this.#closed) {
      destroyQuietly(socket);
      return;
    }
    this.#socket = socket;
    this.#peer = peer;
    this.#presentedCert = presentedCert;
    this.#alpn = typeof socket.alpnProtocol === "string" ? socket.alpnProtocol : null;
    this.#established = true;
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    socket.on("end", () => this.#onEnd(undefined));
    socket.on("error", (error: Error) => this.#onEnd(error));
    socket.on("close", () => this.#onEnd(undefined));
    this.#resolveReady();
  }

  /** @internal Fails the handshake: pending and later operations reject with `error`. */
  fail(error: Error): void {
    if (this.#failure !== undefined || this.#established) return;
    this.#failure = error;
    this.#rejectReady(error);
    destroyQuietly(this.#raw);
  }

  /** Waits for the handshake (and, on a server, the `authorize` check unless taken over). */
  async handshake(): Promise<Deno.TlsHandshakeInfo> {
    if (this.#closed) throw badResource();
    await this.#ready;
    await this.#authorizeOnce(undefined);
    return { alpnProtocol: this.#alpn };
  }

  [PEER_AUTHORIZATION](): ((noiseKey: Uint8Array | undefined) => Promise<void>) | undefined {
    if (this.#authorize === undefined || this.#authorization !== undefined) return undefined;
    const authorize = this.#authorize;
    this.#authorize = undefined;
    return async (noiseKey) => {
      await this.#ready;
      await this.#runAuthorize(authorize, noiseKey);
    };
  }

  #authorizeOnce(noiseKey: Uint8Array | undefined): Promise<void> {
    if (this.#authorize === undefined) return this.#authorization ?? Promise.resolve();
    const authorize = this.#authorize;
    this.#authorize = undefined;
    this.#authorization = this.#runAuthorize(authorize, noiseKey);
    return this.#authorization;
  }

  async #runAuthorize(
    authorize: (peer: TlsPeer) => boolean | Promise<boolean>,
    noiseKey: Uint8Array | undefined,
  ): Promise<void> {
    let verdict: boolean | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ms = this.#authorizeTimeoutMs;
    try {
      verdict = await Promise.race([
        authorize({
          certificate: this.#peer,
          remoteAddr: this.remoteAddr,
          ...(noiseKey === undefined ? {} : { noiseKey }),
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
        }),
      ]);
    } catch (error) {
      this.#refuse(`authorize threw: ${errorMessage(error)}`, error);
    } finally {
      clearTimeout(timer);
    }
    if (verdict !== true) this.#refuse("authorize refused it");
  }

  #refuse(reason: string, cause?: unknown): never {
    const error = new ProtocolError(
      "TlsError",
      `TLS client ${formatAddr(this.remoteAddr)} refused: ${reason}${describePeer(this.#peer)}`,
      cause === undefined ? {} : { cause },
    );
    if (peerEvents.allow("refused TLS client")) log.info(error.message);
    this.#readError ??= error;
    this.#destroy();
    throw error;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (!(p instanceof Uint8Array)) {
      return Promise.reject(new TypeError(`Buffer must be a Uint8Array, got "${typeof p}"`));
    }
    if (p.length === 0) return Promise.resolve(0);
    if (this.#closed) return Promise.reject(badResource());
    if (this.#waiting !== undefined) {
      return Promise.reject(new Deno.errors.Busy("Another read is pending"));
    }
    if (!this.#established || this.#authorize !== undefined) {
      return this.handshake().then(() => this.read(p));
    }
    if (this.#chunks.length === 0) {
      if (this.#readError !== undefined) return Promise.reject(this.#readError);
      if (this.#ended) return Promise.resolve(null);
      const { promise, resolve, reject } = Promise.withResolvers<number | null>();
      this.#waiting = { buffer: p, resolve, reject };
      return promise;
    }
    return Promise.resolve(this.#take(p));
  }

  #take(p: Uint8Array): number {
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0]!;
      const count = Math.min(chunk.length, p.length - n);
      p.set(count === chunk.length ? chunk : chunk.subarray(0, count), n);
      n += count;
      if (count === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(count);
    }
    this.#buffered -= n;
    if (this.#buffered < READ_HIGH_WATER / 2 && this.#socket?.isPaused()) this.#socket.resume();
    return n;
  }

  #onData(chunk: Uint8Array): void {
    if (this.#closed) return;
    this.#received += chunk.length;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const waiting = this.#waiting;
    if (waiting !== undefined) {
      this.#waiting = undefined;
      waiting.resolve(this.#take(waiting.buffer));
    }
    if (this.#buffered > READ_HIGH_WATER) this.#socket?.pause();
  }

  #onEnd(error: Error | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#client && this.#received === 0 && this.#readError === undefined) {
      // TLS 1.3: the client finished its side before the server looked at the certificate,
      // so a refusal shows up here, as the end of the stream before any byte.
      const refusal = refusedByServer(this.#presentedCert, error);
      if (refusal !== undefined) this.#readError = refusal;
    }
    if (error !== undefined && this.#readError === undefined) {
      this.#readError = mapSocketError(error);
    }
    const waiting = this.#waiting;
    if (waiting !== undefined) {
      this.#waiting = undefined;
      if (this.#readError !== undefined) waiting.reject(this.#readError);
      else waiting.resolve(null);
    }
  }

  write(p: Uint8Array): Promise<number> {
    if (!(p instanceof Uint8Array)) {
      return Promise.reject(new TypeError(`Data must be a Uint8Array, got "${typeof p}"`));
    }
    if (this.#closed) return Promise.reject(badResource());
    if (!this.#established || this.#authorize !== undefined) {
      return this.handshake().then(() => this.write(p));
    }
    const socket = this.#socket!;
    if (socket.destroyed || !socket.writable) {
      return Promise.reject(
        this.#readError ?? new Deno.errors.BrokenPipe("Broken pipe: the TLS connection is closed"),
      );
    }
    if (p.length === 0) return Promise.resolve(0);
    const n = p.length;
    return new Promise((resolve, reject) => {
      // The callback runs once the TLS socket is done with the bytes: the caller may then
      // reuse its buffer.
      socket.write(p, (error?: Error | null) => {
        if (error) reject(mapSocketError(error));
        else resolve(n);
      });
    });
  }

  closeWrite(): Promise<void> {
    if (this.#closed) return Promise.reject(badResource());
    this.#socket?.end();
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) throw badResource();
    this.#destroy();
  }

  #destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#chunks = [];
    this.#buffered = 0;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(new Deno.errors.Interrupted("Operation canceled"));
    if (!this.#established) this.fail(new Deno.errors.Interrupted("Operation canceled"));
    destroyQuietly(this.#socket);
    destroyQuietly(this.#raw);
  }

  ref(): void {
    this.#socket?.ref();
  }

  unref(): void {
    this.#socket?.unref();
  }

  /** Switches Nagle's algorithm (already off on every socket of this backend). */
  setNoDelay(noDelay = true): void {
    this.#socket?.setNoDelay(noDelay);
  }

  /** Switches TCP keep-alive (already on on every socket of this backend). */
  setKeepAlive(keepAlive = true): void {
    this.#socket?.setKeepAlive(keepAlive);
  }

  [Symbol.dispose](): void {
    this.#destroy();
  }

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    this.#readable ??= new ReadableStream({
      type: "bytes",
      autoAllocateChunkSize: 64 * 1024,
      pull: async (controller) => {
        const request = controller.byobRequest!;
        const view = request.view!;
        let n: number | null;
        try {
          n = await this.read(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
        } catch (error) {
          controller.error(error);
          this.#destroy();
          return;
        }
        if (n === null) {
          this.#destroy();
          controller.close();
          request.respond(0);
        } else {
          request.respond(n);
        }
      },
      cancel: () => this.#destroy(),
    });
    return this.#readable;
  }

  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    this.#writable ??= new WritableStream({
      write: async (chunk) => {
        let offset = 0;
        while (offset < chunk.length) offset += await this.write(chunk.subarray(offset));
      },
      close: () => this.#destroy(),
      abort: () => this.#destroy(),
    });
    return this.#writable;
  }
}

/**
 * Wraps an accepted plain `node:net` socket (no TLS) into a `Deno.Conn`, with the same adapter
 * as the TLS connections of this file: the `reusePort` listener of `TcpTransport` uses it. The
 * socket is owned from now on (`close()` destroys it).
 *
 * @param socket A connected socket.
 * @returns The connection (no certificate, ALPN `null`).
 */
export function nodeSocketConn(socket: net.Socket): Deno.Conn {
  const conn = new NodeTlsConnImpl(
    netAddr(socket.localAddress, socket.localPort),
    netAddr(socket.remoteAddress, socket.remotePort),
    false,
  );
  // Only the net.Socket part of a TLSSocket is used (alpnProtocol is undefined: ALPN null).
  conn.attach(socket as tls.TLSSocket, undefined, false);
  return conn;
}

function describePeer(peer: PeerCertificateInfo | undefined): string {
  if (peer === undefined) return "";
  const cn = peer.subject.CN ?? "?";
  return ` (certificate CN "${cn}", issuer CN "${
    peer.issuer.CN ?? "?"
  }", fingerprint ${peer.fingerprint256})`;
}

function mapSocketError(error: Error): Error {
  const code = (error as { code?: string }).code;
  if (code === "ECONNRESET") return new Deno.errors.ConnectionReset(error.message);
  if (code === "EPIPE") return new Deno.errors.BrokenPipe(error.message);
  return error;
}

/**
 * The end of a stream that says the server refused the client certificate: it closed the
 * connection right after the handshake, before sending a byte, with this side's certificate in
 * the handshake (TLS 1.3 shows a refusal no other way when the server checks the certificate
 * after the handshake, as this library's server does to log why). A subclass of
 * `Deno.errors.UnexpectedEof`, so code that treats an abrupt end as such still does; the
 * secure channel's handshake reports its `tlsError` instead of a guess of its own.
 */
export class ClosedAfterTlsHandshake extends Deno.errors.UnexpectedEof {
  /** What the failure means, for the client's error. */
  readonly tlsError: ProtocolError;

  /**
   * Creates the error.
   *
   * @param tlsError What the failure means.
   */
  constructor(tlsError: ProtocolError) {
    super(tlsError.message);
    this.name = "UnexpectedEof";
    this.tlsError = tlsError;
  }
}

function refusedByServer(
  presentedCert: boolean,
  error: Error | undefined,
): Error | undefined {
  const text = error === undefined ? "" : errorMessage(error);
  const detail = error === undefined ? "" : ` (${text})`;
  const options = error === undefined ? {} : { cause: error };
  if (/certificate ?required/i.test(text)) {
    return new ProtocolError(
      "TlsError",
      presentedCert
        ? `The server refused the client certificate${detail}`
        : `The server requires a client certificate${detail}: set client.cert and client.key`,
      options,
    );
  }
  if (
    /bad ?certificate|unknown ?ca|certificate ?(unknown|expired|revoked)|access ?denied/i.test(text)
  ) {
    return new ProtocolError(
      "TlsError",
      `The server refused the client certificate${detail}`,
      options,
    );
  }
  if (!presentedCert) return undefined;
  return new ClosedAfterTlsHandshake(
    new ProtocolError(
      "TlsError",
      `The server refused the client certificate, or closed the connection for another reason: ` +
        `it ended it right after the TLS handshake, before sending any data${detail} (with ` +
        `TLS 1.3 a refused certificate shows only this way; the server's log says why)`,
      options,
    ),
  );
}

/** Why a client certificate is refused, or `undefined` when it passes. */
function checkClient(
  socket: tls.TLSSocket,
  settings: NodeServerSettings,
): { reason: string | undefined; peer: PeerCertificateInfo | undefined } {
  const raw = socket.getPeerCertificate(false) as { raw?: Uint8Array };
  const authorized = socket.authorized === true;
  const authorizationError = socket.authorizationError === null ||
      socket.authorizationError === undefined
    ? undefined
    : String(socket.authorizationError);
  if (raw?.raw === undefined || raw.raw.length === 0) {
    if (settings.clientAuth === "require") {
      return { reason: "no client certificate", peer: undefined };
    }
    return { reason: undefined, peer: undefined };
  }
  let peer: PeerCertificateInfo;
  try {
    peer = describeCertificate(new Uint8Array(raw.raw), authorized, authorizationError);
  } catch (error) {
    return { reason: `unreadable client certificate (${errorMessage(error)})`, peer: undefined };
  }
  if (settings.clientCaCerts.length > 0 && !authorized) {
    return {
      reason: `client certificate not accepted by the client CA list (${
        authorizationError ?? "not verified"
      }${certificateHint(peer)})`,
      peer,
    };
  }
  const pins = settings.pins;
  if (pins.fingerprints.length + pins.spki.length > 0) {
    // Without a CA the pin is the whole trust, so the validity dates are checked here.
    const now = Date.now();
    if (
      settings.clientCaCerts.length === 0 &&
      (now > peer.validTo.getTime() || now < peer.validFrom.getTime())
    ) {
      return {
        reason:
          `client certificate outside its validity (${peer.validFrom.toISOString()} to ${peer.validTo.toISOString()})`,
        peer,
      };
    }
    if (!isPinned(peer, pins)) return { reason: pinMismatch("the client's", peer, pins), peer };
  }
  return { reason: undefined, peer };
}

function certificateHint(peer: PeerCertificateInfo): string {
  const now = Date.now();
  if (now > peer.validTo.getTime()) return `: it expired on ${peer.validTo.toISOString()}`;
  if (now < peer.validFrom.getTime()) return `: it is valid from ${peer.validFrom.toISOString()}`;
  return "";
}

/**
 * Listens with `tls.createServer`. Every accepted TCP connection is handed out at once, before
 * its handshake (as the native backend does), so the caller counts it among its handshakes;
 * reads and writes wait for the handshake and the certificate checks. The listener's own
 * deadline (`handshakeTimeoutMs`) and every failure destroy the socket.
 *
 * @param hostname The host to bind.
 * @param port The port to bind.
 * @param settings The server settings.
 * @param options A signal that closes the listener.
 * @returns The listener.
 */
export async function listenNode(
  hostname: string,
  port: number,
  settings: NodeServerSettings,
  options: TransportListenOptions | undefined,
): Promise<NodeTlsListener> {
  checkNetPermission(hostname, port);
  const server = tls.createServer({
    key: settings.key,
    cert: settings.cert,
    ...(settings.clientCaCerts.length > 0 ? { ca: settings.clientCaCerts } : {}),
    requestCert: settings.clientAuth !== "none",
    // The checks run in checkClient, so that every refusal is logged with its reason; Deno's
    // `authorized` is trustworthy from 2.9 (version gate and self-test in tls.ts).
    rejectUnauthorized: false,
    minVersion: settings.minVersion,
    ...(settings.alpn.length > 0 ? { ALPNProtocols: settings.alpn } : {}),
    handshakeTimeout: settings.handshakeTimeoutMs,
  });
  const listener = new NodeTlsListener(server, settings, options?.signal);
  await listener.start(hostname, port);
  return listener;
}

interface Pending {
  conn: NodeTlsConnImpl;
  raw: net.Socket;
  /** The handshake deadline. */
  timer: ReturnType<typeof setTimeout>;
  /** After the TCP socket closed: waits briefly for a more telling TLS error. */
  closeTimer?: ReturnType<typeof setTimeout>;
}

/** The listener of {@linkcode listenNode}. */
export class NodeTlsListener extends NodeServerListener<NodeTlsConnImpl> {
  readonly #settings: NodeServerSettings;
  /** Handshaking connections by "address port" of the peer. */
  readonly #pending = new Map<string, Pending>();
  readonly #byRaw = new WeakMap<net.Socket, Pending>();
  /** Connections that arrived during the self-test, handed out after it. */
  #held: NodeTlsConnImpl[] | undefined;
  /** The self-test's own connections, by local port: not handed out. */
  readonly #internal = new Map<number, (socket: tls.TLSSocket) => void>();
  readonly #internalPorts = new Set<number>();

  constructor(server: tls.Server, settings: NodeServerSettings, signal: AbortSignal | undefined) {
    super(server, "TLS", signal);
    this.#settings = settings;
    server.on("connection", (raw: net.Socket) => this.#onConnection(raw));
    server.on("secureConnection", (socket: tls.TLSSocket) => this.#onSecure(socket));
    server.on(
      "tlsClientError",
      (error: Error, socket: tls.TLSSocket) => this.#onClientError(error, socket),
    );
  }

  /**
   * Listens on `hostname:port` with the settings' backlog.
   *
   * @param hostname The host.
   * @param port The port.
   */
  start(hostname: string, port: number): Promise<void> {
    return this.listen(hostname, port, { backlog: this.#settings.backlog });
  }

  #onConnection(raw: net.Socket): void {
    raw.once("close", () => {
      const entry = this.#pending.get(key(raw.remoteAddress, raw.remotePort));
      if (entry !== undefined && entry.raw === raw) {
        // A TLS error reported for the same connection says more: let it come first.
        entry.closeTimer = setTimeout(() => {
          if (this.#byRaw.get(raw) !== entry) return;
          this.#settle(entry);
          entry.conn.fail(
            this.#failure(entry, "the client closed the connection during the TLS handshake"),
          );
        }, 20);
      }
    });
    try {
      raw.setNoDelay(true);
      raw.setKeepAlive(true);
    } catch {
      // The peer is already gone: the close handler settles it.
    }
    if (this.accepted.closed) {
      destroyQuietly(raw);
      return;
    }
    const local = netAddr(raw.localAddress, raw.localPort);
    const remote = netAddr(raw.remoteAddress, raw.remotePort);
    const conn = new NodeTlsConnImpl(
      local,
      remote,
      false,
      this.#settings.authorize,
      this.#settings.handshakeTimeoutMs,
    );
    conn.setRaw(raw);
    const ms = this.#settings.handshakeTimeoutMs;
    const entry: Pending = {
      conn,
      raw,
      timer: setTimeout(() => {
        this.#settle(entry);
        conn.fail(this.#failure(entry, `the TLS handshake did not finish within ${ms} ms`));
      }, ms),
    };
    this.#pending.set(key(raw.remoteAddress, raw.remotePort), entry);
    this.#byRaw.set(raw, entry);
    // During the self-test, connections wait: the test's own ones are told apart at their
    // secureConnection (by port), and only the others are handed out afterwards.
    if (this.#held !== undefined) this.#held.push(conn);
    else this.#deliver(conn);
  }

  /**
   * The handshaking connection of a TLS socket: by its TCP socket (`_parent`, which Deno's
   * node:tls sets like Node's; a destroyed TLS socket no longer knows its peer's address), else
   * by the peer's address and port.
   */
  #entryOf(socket: tls.TLSSocket | undefined): Pending | undefined {
    if (socket === undefined) return undefined;
    const parent = (socket as { _parent?: unknown })._parent;
    if (parent instanceof net.Socket) {
      const entry = this.#byRaw.get(parent);
      if (entry !== undefined) return entry;
    }
    const entry = this.#pending.get(key(socket.remoteAddress, socket.remotePort));
    return entry;
  }

  #settle(entry: Pending): void {
    clearTimeout(entry.timer);
    clearTimeout(entry.closeTimer);
    this.#byRaw.delete(entry.raw);
    const k = key(entry.conn.remoteAddr.hostname, entry.conn.remoteAddr.port);
    if (this.#pending.get(k) === entry) this.#pending.delete(k);
  }

  #failure(entry: Pending, reason: string): ProtocolError {
    const error = new ProtocolError(
      "TlsError",
      `TLS client ${formatAddr(entry.conn.remoteAddr)} refused: ${reason}`,
    );
    if (peerEvents.allow("refused TLS client")) log.info(error.message);
    return error;
  }

  #onSecure(socket: tls.TLSSocket): void {
    const entry = this.#entryOf(socket);
    const internal = this.#internal.get(socket.remotePort ?? -1);
    if (internal !== undefined) {
      if (entry !== undefined) this.#settle(entry);
      internal(socket);
      return;
    }
    if (entry === undefined) {
      destroyQuietly(socket);
      return;
    }
    this.#settle(entry);
    // An error after this point ends the connection; the conn reports it to its reader.
    socket.on("error", () => {});
    const { reason, peer } = checkClient(socket, this.#settings);
    if (reason !== undefined) {
      destroyQuietly(socket);
      entry.conn.fail(this.#failure(entry, `${reason}${describePeer(peer)}`));
      return;
    }
    entry.conn.attach(socket, peer, false);
  }

  #onClientError(error: Error, socket: tls.TLSSocket): void {
    // A failed or timed-out handshake leaves the TCP socket open unless it is destroyed.
    destroyQuietly(socket);
    const entry = this.#entryOf(socket);
    if (entry === undefined) return;
    this.#settle(entry);
    const code = (error as { code?: string }).code;
    const reason = code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"
      ? "no client certificate"
      : /handshake timeout/i.test(errorMessage(error))
      ? `the TLS handshake did not finish within ${this.#settings.handshakeTimeoutMs} ms`
      : code === "ECONNRESET"
      ? "the connection was reset during the TLS handshake (a client that refused the server " +
        "certificate, or a client certificate refused by the TLS library)"
      : `TLS handshake failed: ${errorMessage(error)}${code === undefined ? "" : ` (${code})`}`;
    entry.conn.fail(this.#failure(entry, reason));
  }

  #deliver(conn: NodeTlsConnImpl): void {
    this.accepted.deliver(conn);
  }

  /**
   * The self-test of `clientAuth`, on the listening socket itself (the exact code path of real
   * clients): a loopback client without a certificate, and one with a certificate that no CA of
   * the list signed, must both be unauthorized. Guards against a runtime whose `authorized` flag
   * lies (denoland/deno#34366). Connections of other clients that arrive meanwhile wait and are
   * handed out afterwards.
   *
   * @param stranger A certificate no configured CA signed.
   * @param timeoutMs The time limit of each probe.
   */
  async selfTest(stranger: { certPem: string; keyPem: string }, timeoutMs: number): Promise<void> {
    this.#held = [];
    const wildcard: Record<string, string> = { "0.0.0.0": "127.0.0.1", "::": "::1" };
    const host = wildcard[this.addr.hostname] ?? this.addr.hostname;
    const probe = async (withCert: boolean): Promise<{ present: boolean; authorized: boolean }> => {
      const sockets: net.Socket[] = [];
      let localPort: number | undefined;
      try {
        return await new Promise((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`no TLS handshake within ${timeoutMs} ms`)),
            timeoutMs,
          );
          const raw = net.connect({ host, port: this.addr.port });
          sockets.push(raw);
          raw.on("error", (error) => {
            clearTimeout(timer);
            reject(error);
          });
          raw.once("connect", () => {
            localPort = raw.localPort!;
            this.#internalPorts.add(localPort);
            this.#internal.set(localPort, (socket) => {
              clearTimeout(timer);
              sockets.push(socket);
              const cert = socket.getPeerCertificate(false) as { raw?: Uint8Array };
              resolve({
                present: cert?.raw !== undefined && cert.raw.length > 0,
                authorized: socket.authorized === true,
              });
            });
            const client = tls.connect({
              socket: raw,
              rejectUnauthorized: false,
              servername: "self-test.invalid",
              minVersion: this.#settings.minVersion,
              ...(this.#settings.alpn.length > 0 ? { ALPNProtocols: this.#settings.alpn } : {}),
              ...(withCert ? { cert: stranger.certPem, key: stranger.keyPem } : {}),
            });
            sockets.push(client);
            client.on("error", () => {});
          });
        });
      } finally {
        for (const socket of sockets) destroyQuietly(socket);
        if (localPort !== undefined) this.#internal.delete(localPort);
      }
    };
    try {
      const [none, foreign] = await Promise.all([probe(false), probe(true)]);
      if (none.present || none.authorized) {
        throw new Error("a client without a certificate was reported as authorized");
      }
      if (!foreign.present) throw new Error("the server did not see a client certificate");
      if (foreign.authorized) {
        throw new Error("a certificate that no configured CA signed was reported as authorized");
      }
    } finally {
      const held = this.#held;
      this.#held = undefined;
      for (const conn of held) {
        if (this.#internalPorts.has(conn.remoteAddr.port)) {
          const entry = this.#pending.get(key(conn.remoteAddr.hostname, conn.remoteAddr.port));
          if (entry !== undefined) this.#settle(entry);
          conn.close();
        } else {
          this.#deliver(conn);
        }
      }
      this.#internalPorts.clear();
    }
  }
}

function key(address: string | undefined, port: number | undefined): string {
  return `${address ?? "?"} ${port ?? "?"}`;
}

/**
 * Connects with `tls.connect` over a socket with `TCP_NODELAY` and keep-alive, verifies the
 * server (CA chain and name, or the pin alone with `pinOnly`), checks the pins at
 * `secureConnect` before anything is written, and checks ALPN.
 *
 * @param settings The client settings.
 * @param signal Aborts the attempt (the socket is destroyed).
 * @returns The connection, handshake done.
 */
export function connectNode(
  settings: NodeClientSettings,
  signal: AbortSignal,
): Promise<NodeTlsConn> {
  const { hostname, port, serverName, pins } = settings;
  const pinned = pins.fingerprints.length + pins.spki.length > 0;
  const where = `"${formatHostPort(hostname, port)}"`;
  return new Promise((resolve, reject) => {
    let settled = false;
    const sockets: net.Socket[] = [];
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      for (const socket of sockets) destroyQuietly(socket);
      reject(error);
    };
    const onAbort = (): void =>
      fail(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    signal.addEventListener("abort", onAbort, { once: true });
    const raw = net.connect({ host: hostname, port });
    sockets.push(raw);
    raw.setNoDelay(true);
    raw.setKeepAlive(true);
    raw.on("error", (error: Error & { code?: string }) => fail(connectError(error)));
    const socket = tls.connect({
      socket: raw,
      servername: isIpLiteral(serverName) ? undefined : serverName,
      ...(settings.caCerts.length > 0 ? { ca: settings.caCerts } : {}),
      ...(settings.cert !== undefined ? { cert: settings.cert, key: settings.key } : {}),
      ...(settings.alpn.length > 0 ? { ALPNProtocols: settings.alpn } : {}),
      minVersion: settings.minVersion,
      rejectUnauthorized: !settings.pinOnly,
      checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => {
        // Called with CA trust only (not with pinOnly): the name first, then the pins.
        const nameError = tls.checkServerIdentity(serverName, cert);
        if (nameError !== undefined) return nameError;
        if (!pinned || cert.raw === undefined) return undefined;
        const peer = describeCertificate(new Uint8Array(cert.raw), true);
        return isPinned(peer, pins)
          ? undefined
          : new Error(capitalize(pinMismatch("the server's", peer, pins)));
      },
    });
    sockets.push(socket);
    socket.on("error", (error: Error) => {
      const message = errorMessage(error);
      fail(
        new ProtocolError(
          "TlsError",
          /is not pinned/.test(message)
            ? `TLS handshake with "${serverName}" failed: ${message}`
            : `TLS handshake with "${serverName}" failed: ${message}${notTlsHint(error)}`,
          { cause: error },
        ),
      );
    });
    socket.once("secureConnect", () => {
      if (settled) return;
      const raw = (socket.getPeerCertificate(false) as { raw?: Uint8Array }).raw;
      if (raw === undefined) {
        fail(new ProtocolError("TlsError", `TLS server ${where} presented no certificate`));
        return;
      }
      const peer = describeCertificate(
        new Uint8Array(raw),
        socket.authorized === true,
        socket.authorizationError === null || socket.authorizationError === undefined
          ? undefined
          : String(socket.authorizationError),
      );
      // Checked here in every mode: with pinOnly, checkServerIdentity is never called.
      if (!settings.pinOnly && !peer.authorized) {
        fail(
          new ProtocolError(
            "TlsError",
            `TLS handshake with "${serverName}" failed: the server's certificate is not trusted (${
              peer.authorizationError ?? "not verified"
            })`,
          ),
        );
        return;
      }
      if (pinned && !isPinned(peer, pins)) {
        fail(
          new ProtocolError(
            "TlsError",
            `TLS handshake with "${serverName}" failed: ${pinMismatch("the server's", peer, pins)}`,
          ),
        );
        return;
      }
      const alpn = typeof socket.alpnProtocol === "string" ? socket.alpnProtocol : null;
      if (settings.requireAlpn && settings.alpn.length > 0 && alpn === null) {
        fail(
          new ProtocolError(
            "TlsError",
            `Server "${serverName}" selected no ALPN protocol; expected one of "${
              settings.alpn.join('", "')
            }"`,
          ),
        );
        return;
      }
      settled = true;
      signal.removeEventListener("abort", onAbort);
      socket.removeAllListeners("error");
      const conn = new NodeTlsConnImpl(
        netAddr(localOf(socket).address, localOf(socket).port),
        netAddr(socket.remoteAddress ?? hostname, socket.remotePort ?? port),
        true,
      );
      conn.setRaw(sockets[0]!);
      conn.attach(socket, peer, settings.cert !== undefined);
      resolve(conn);
    });
  });
}

function localOf(
  socket: tls.TLSSocket,
): { address: string | undefined; port: number | undefined } {
  return { address: socket.localAddress, port: socket.localPort };
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function isIpLiteral(name: string): boolean {
  return net.isIP(name) !== 0;
}

function connectError(error: Error & { code?: string }): Error {
  switch (error.code) {
    case "ECONNREFUSED":
      return new Deno.errors.ConnectionRefused(error.message);
    case "EACCES":
    case "EPERM":
      return new Deno.errors.PermissionDenied(error.message);
    default:
      if (
        error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ) {
        return error;
      }
      return error;
  }
}

function notTlsHint(error: Error): string {
  const message = errorMessage(error);
  if (/socket hang up|ECONNRESET|closed|EOF/i.test(message)) {
    return `: the server closed the connection during the TLS handshake; it probably does not ` +
      `speak TLS (set transport.kind = "tcp" if it runs without TLS), or it refused this client`;
  }
  if (/wrong version number|InvalidContentType|packet length|record/i.test(message)) {
    return `: the server's reply is not TLS; it probably speaks this protocol without TLS ` +
      `(set transport.kind = "tcp") or another protocol`;
  }
  return "";
}

/**
 * Node's `net` functions throw a missing `--allow-net` outside any catchable path; ask first,
 * so that it fails like the native backend (`NotCapable`, reported as `PermissionDenied`).
 *
 * @param hostname The host.
 * @param port The port.
 */
export function checkNetPermission(hostname: string, port: number): void {
  const host = formatHostPort(hostname, port);
  if (Deno.permissions.querySync({ name: "net", host }).state !== "granted") {
    throw new Deno.errors.NotCapable(`Requires net access to "${host}"`);
  }
}
