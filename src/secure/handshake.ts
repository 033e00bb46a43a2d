/**
 * Sans-I/O session handshake drivers: {@linkcode ClientHandshake} and
 * {@linkcode ServerHandshake} consume packet payloads and produce packet payloads until they
 * hold a {@linkcode HandshakeResult}: a {@linkcode SecureChannel} (or `null` in plaintext mode),
 * the negotiated features and what is known about the peer.
 *
 * Message flow (one message per packet):
 *
 * ```text
 * client -> server   hello (mode, pattern, suite, client params) || Noise message 1 (empty payload)
 * server -> client   Noise message 2, payload = server params        (plaintext: a server hello)
 * client -> server   Noise message 3, empty payload                   (XX and XXpsk3 only)
 * ```
 *
 * The hello bytes up to the end of the client's parameters are bound into the Noise prologue.
 * The server never tells the client why it refused: it throws and the caller closes.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { SecureChannel } from "./channel.ts";
import { type CryptoProvider, defaultProvider } from "./crypto.ts";
import {
  decodeHello,
  decodeParams,
  encodeHello,
  encodeParams,
  type HandshakeParams,
  HELLO_HEADER_SIZE,
  helloPrologue,
  MAX_PARAMS_SIZE,
  type PatternName,
} from "./hello.ts";
import { fingerprint, type KeyPair } from "./keys.ts";
import { constantTimeEqual } from "../util/bytes.ts";
import { errorMessage } from "../util/error_message.ts";
import type { KnownServers } from "./known_servers.ts";
import { HandshakeState, MAX_MESSAGE_LENGTH } from "./noise/handshake_state.ts";
import {
  type ClientPolicy,
  type ClientSecurityOptions,
  type CommonSecurityOptions,
  PATTERN_INFO,
  protocolName,
  resolveClientPolicy,
  resolveServerPolicy,
  type ServerPolicy,
  type ServerSecurityOptions,
} from "./policy.ts";
import type { SecureChannelOptions } from "./channel.ts";

/** The largest handshake packet payload accepted: the Noise message limit plus a hello. */
export const MAX_HANDSHAKE_PAYLOAD: number = MAX_MESSAGE_LENGTH + HELLO_HEADER_SIZE +
  MAX_PARAMS_SIZE;

const EMPTY = new Uint8Array(0);

/** The outcome of a successful handshake. */
export interface HandshakeResult {
  /** The encrypted record channel, or `null` in plaintext mode. */
  channel: SecureChannel | null;
  /** The Noise pattern that ran, or `"plaintext"`. */
  pattern: PatternName | "plaintext";
  /** The negotiated features: the intersection of both sides' bitmaps (0x1 lz4, 0x2 zstd). */
  features: number;
  /** The largest record body the peer accepts, when it announced one. */
  remoteMaxMessageSize?: number;
  /** The peer's static public key, when the pattern has one. */
  remoteStaticKey?: Uint8Array;
  /**
   * The Noise handshake hash `h`: equal on both sides of an untampered handshake. Compare it
   * out of band (or bind it in an application protocol) to detect a man in the middle of NN or
   * unpinned XX.
   */
  handshakeHash?: Uint8Array;
  /**
   * Whether the peer's static key was checked against configured trust. Client: a pinned
   * server key (NK, IK, KK, XX with `serverKeys`) or a known-servers entry. Server: the client
   * key passed `clientKeys` and `authorize`. A client that gets `false` should log a warning.
   */
  pinned: boolean;
}

/** A handshake driver: fed received packet payloads, it returns payloads to send. */
export interface HandshakeDriver {
  /** Whether the handshake finished successfully. */
  readonly isComplete: boolean;
  /** The handshake time limit in milliseconds, from the options. */
  readonly timeoutMs: number;
  /**
   * Returns the payloads to send first (the client's hello; nothing for the server).
   *
   * @returns Packet payloads to send.
   */
  start(): Uint8Array[];
  /**
   * Processes one received packet payload.
   *
   * @param payload The packet payload.
   * @returns Packet payloads to send (possibly none).
   */
  receive(payload: Uint8Array): Promise<Uint8Array[]>;
  /**
   * The result, once complete.
   *
   * @returns The result.
   */
  result(): HandshakeResult;
  /** Ends the handshake as failed (for example on a timeout); later calls throw. */
  abort(reason: ProtocolError): void;
  /**
   * Explains why reading the peer's next packet failed, with what this side knows (optional).
   * `performHandshake` calls it when the stream ends (`cause` is `undefined`) or when
   * reading fails with a `ProtocolError` (a reset, bytes that are not a packet), and throws the
   * error it returns instead of a generic one.
   *
   * @param cause The read error, or `undefined` at a clean end of stream.
   * @returns A more helpful error, or `undefined` to keep the generic one.
   */
  explainReadFailure?(cause: ProtocolError | undefined): ProtocolError | undefined;
}

/** Read errors that mean the bytes received are not packets of this protocol. */
const FRAMING_CODES: ReadonlySet<string> = new Set([
  "InvalidHeader",
  "UnsupportedVersion",
  "OversizedPacket",
  "Truncated",
]);

function asHandshakeError(error: unknown, message: string): ProtocolError {
  if (
    error instanceof ProtocolError &&
    (error.code === "HandshakeFailed" || error.code === "PolicyViolation")
  ) {
    return error;
  }
  return new ProtocolError("HandshakeFailed", message, { cause: error });
}

/** Said of every server that closed after the first message: it may just be at a limit. */
const AT_LIMIT =
  "; or it is at a limit (connections, handshakes, or the handshake rate of this address) " +
  "and refused the connection before reading it: then retrying later helps";

function checkSize(payload: Uint8Array): void {
  if (payload.length > MAX_HANDSHAKE_PAYLOAD) {
    throw new ProtocolError(
      "HandshakeFailed",
      `Handshake packet of "${payload.length}" bytes exceeds the limit "${MAX_HANDSHAKE_PAYLOAD}"`,
    );
  }
}

function isMember(set: readonly Uint8Array[], key: Uint8Array): boolean {
  let found = false;
  for (const candidate of set) {
    const equal = constantTimeEqual(candidate, key);
    found = found || equal;
  }
  return found;
}

/** What a driver knows when its handshake completes. */
interface FinishOptions {
  /** The finished Noise handshake, to split into the channel; none in plaintext mode. */
  hs?: HandshakeState | undefined;
  /** Whether this side is the initiator (the client). */
  initiator: boolean;
  /** This side's feature bitmap. */
  localFeatures: number;
  /** The peer's parameters. */
  remote: HandshakeParams;
  /** The pattern that ran, or `"plaintext"`. */
  pattern: PatternName | "plaintext";
  /** Whether the peer's static key was checked against configured trust. */
  pinned: boolean;
}

/** The state shared by both drivers: turn-taking, terminal failure, the result. */
class DriverCore {
  /** The crypto provider of the handshake. */
  readonly provider: CryptoProvider;
  /** Options of the resulting channel. */
  readonly channelOptions: SecureChannelOptions | undefined;
  state: "start" | "wait" | "done" | "failed" = "start";
  failure: ProtocolError | undefined;
  out: HandshakeResult | undefined;
  busy = false;
  /** The driver's handling of one packet payload in turn. */
  step: (payload: Uint8Array) => Promise<Uint8Array[]> = () =>
    Promise.reject(new ProtocolError("HandshakeFailed", "The handshake driver has no step"));

  constructor(options: CommonSecurityOptions) {
    this.provider = options.provider ?? defaultProvider();
    this.channelOptions = options.channel;
  }

  async receive(payload: Uint8Array): Promise<Uint8Array[]> {
    this.check();
    if (this.state !== "wait" || this.busy) {
      throw this.fail(
        new ProtocolError("HandshakeFailed", "Received a handshake packet out of turn"),
      );
    }
    this.busy = true;
    try {
      checkSize(payload);
      const out = await this.step(payload);
      this.check();
      return out;
    } catch (error) {
      throw this.fail(asHandshakeError(error, "Handshake failed"));
    } finally {
      this.busy = false;
    }
  }

  result(): HandshakeResult {
    this.check();
    if (this.out === undefined) {
      throw new ProtocolError("HandshakeFailed", "Handshake is not complete");
    }
    return this.out;
  }

  abort(reason: ProtocolError): void {
    if (this.state !== "done" && this.state !== "failed") this.fail(reason);
  }

  check(): void {
    if (this.failure !== undefined) {
      throw new ProtocolError(
        this.failure.code,
        `The handshake failed earlier: ${this.failure.message}`,
        { cause: this.failure },
      );
    }
  }

  fail(error: ProtocolError): ProtocolError {
    if (this.failure === undefined) {
      this.failure = error;
      this.state = "failed";
      this.out?.channel?.abort(error);
      this.out = undefined;
    }
    return error;
  }

  finish(options: FinishOptions): void {
    const { hs, remote } = options;
    let channel: SecureChannel | null = null;
    if (hs !== undefined) {
      const [c1, c2] = hs.split();
      channel = new SecureChannel(
        options.initiator ? { send: c1, receive: c2 } : { send: c2, receive: c1 },
        this.channelOptions,
      );
    }
    const result: HandshakeResult = {
      channel,
      pattern: options.pattern,
      features: options.localFeatures & remote.features,
      pinned: options.pinned,
    };
    if (remote.maxMessageSize !== undefined) result.remoteMaxMessageSize = remote.maxMessageSize;
    if (hs !== undefined) {
      result.handshakeHash = hs.handshakeHash.slice();
      const rs = hs.remoteStaticKey;
      if (rs !== undefined) result.remoteStaticKey = rs.slice();
    }
    this.out = result;
    this.state = "done";
  }
}

/** Gives the drivers of this module the state their base class keeps private. */
let coreOf: (driver: SessionHandshake) => DriverCore;

/**
 * What {@linkcode ClientHandshake} and {@linkcode ServerHandshake} share: turn-taking (one
 * packet at a time, in turn), the terminal failure, the result and the time limit. It is not
 * meant to be extended outside this module.
 *
 * @example Both drivers are session handshakes
 * ```ts
 * import { ClientHandshake, generateKeyPair, ServerHandshake } from "@npro/network-protocol";
 * import type { SessionHandshake } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const drivers: SessionHandshake[] = [
 *   new ClientHandshake(),
 *   new ServerHandshake({ staticKey: generateKeyPair() }),
 * ];
 * for (const driver of drivers) assert.equal(driver.isComplete, false);
 * ```
 */
export abstract class SessionHandshake implements HandshakeDriver {
  readonly #core: DriverCore;

  static {
    coreOf = (driver) => driver.#core;
  }

  /** The handshake time limit in milliseconds. */
  readonly timeoutMs: number;

  /**
   * Takes what both sides use from their options.
   *
   * @param timeoutMs The handshake time limit in milliseconds (validated).
   * @param options The options: the crypto provider and the channel's options.
   */
  protected constructor(timeoutMs: number, options: CommonSecurityOptions) {
    this.timeoutMs = timeoutMs;
    this.#core = new DriverCore(options);
  }

  /** Whether the handshake finished successfully. */
  get isComplete(): boolean {
    return this.#core.state === "done";
  }

  /**
   * Returns the payloads to send first.
   *
   * @returns Packet payloads to send.
   */
  abstract start(): Uint8Array[];

  /**
   * Processes one received packet payload.
   *
   * @param payload The packet payload.
   * @returns Packet payloads to send (possibly none).
   * @throws {ProtocolError} `HandshakeFailed` or `PolicyViolation`; the driver is dead afterwards.
   */
  receive(payload: Uint8Array): Promise<Uint8Array[]> {
    return this.#core.receive(payload);
  }

  /**
   * The result, once complete.
   *
   * @returns The result.
   * @throws {ProtocolError} `HandshakeFailed` before completion or after a failure.
   */
  result(): HandshakeResult {
    return this.#core.result();
  }

  /**
   * Ends the handshake as failed (for example on a timeout); later calls throw `reason`'s code.
   *
   * @param reason The failure.
   */
  abort(reason: ProtocolError): void {
    this.#core.abort(reason);
  }
}

/**
 * The client side of the session handshake (sans-I/O). Call
 * {@linkcode ClientHandshake.start}, send what it returns, then pass every received packet
 * payload to {@linkcode ClientHandshake.receive} and send what it returns, until
 * {@linkcode ClientHandshake.isComplete}.
 *
 * @example Run a handshake in memory
 * ```ts
 * import { ClientHandshake, generateKeyPair, ServerHandshake } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const serverKey = generateKeyPair();
 * const client = new ClientHandshake({ serverKeys: [serverKey.publicKey] }); // NK
 * const server = new ServerHandshake({ staticKey: serverKey });
 *
 * let toServer = client.start();
 * while (!client.isComplete || !server.isComplete) {
 *   const toClient: Uint8Array[] = [];
 *   for (const payload of toServer) toClient.push(...await server.receive(payload));
 *   toServer = [];
 *   for (const payload of toClient) toServer.push(...await client.receive(payload));
 * }
 * const c = client.result();
 * const s = server.result();
 * assert.equal(c.pattern, "NK");
 * assert.ok(c.pinned);
 * assert.deepEqual(c.handshakeHash, s.handshakeHash);
 *
 * const [record] = c.channel!.sealData(new Uint8Array([1, 2, 3]));
 * const opened = s.channel!.open(record!);
 * assert.equal(opened.type, "data");
 * ```
 */
export class ClientHandshake extends SessionHandshake {
  readonly #core: DriverCore;
  readonly #policy: ClientPolicy;
  #hs: HandshakeState | undefined;
  #received = 0;

  /**
   * Validates the options and chooses the pattern.
   *
   * @param options The client's security options.
   * @throws {TypeError} For malformed keys or options the chosen mode cannot enforce.
   * @throws {RangeError} For out-of-range numbers.
   */
  constructor(options: ClientSecurityOptions = {}) {
    const policy = resolveClientPolicy(options);
    super(policy.timeoutMs, options);
    this.#policy = policy;
    this.#core = coreOf(this);
    this.#core.step = (payload) => this.#step(payload);
  }

  /**
   * Explains a failure to read the server's first reply: the server closed the connection (it
   * refused the hello: a wrong pinned key, a pattern or mode it does not accept) or sent bytes
   * that are not a packet (it speaks TLS or another protocol). Later failures are not explained.
   *
   * @example The server closed the connection after an NK hello
   * ```ts
   * import { ClientHandshake, generateKeyPair } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * const client = new ClientHandshake({ serverKeys: [generateKeyPair().publicKey] });
   * client.start();
   * const error = client.explainReadFailure(undefined);
   * assert.equal(error?.code, "HandshakeFailed");
   * assert.match(error!.message, /probably not the pinned one/);
   * ```
   *
   * @param cause The read error, or `undefined` at a clean end of stream.
   * @returns The explanation (code `HandshakeFailed`), or `undefined` when there is none.
   */
  explainReadFailure(cause: ProtocolError | undefined): ProtocolError | undefined {
    if (this.#received > 0 || this.#core.state !== "wait") return undefined;
    const options = cause === undefined ? {} : { cause };
    if (cause !== undefined && FRAMING_CODES.has(cause.code)) {
      return new ProtocolError(
        "HandshakeFailed",
        `The server's reply is not a handshake packet of this protocol: it probably speaks TLS ` +
          `(set transport.kind = "tls" on the client) or another protocol (${cause.message})`,
        options,
      );
    }
    if (cause !== undefined && cause.code !== "ConnectionClosed") return undefined;
    const policy = this.#policy;
    const closed = "The server closed the connection after our first handshake message";
    if (policy.mode === "plaintext") {
      return new ProtocolError(
        "HandshakeFailed",
        `${closed}: it probably requires encryption (this client has encryption disabled), ` +
          `or it speaks TLS (set transport.kind = "tls")${AT_LIMIT}`,
        options,
      );
    }
    const pattern = policy.pattern!;
    const facts = PATTERN_INFO[pattern];
    if (facts.serverKnown) {
      return new ProtocolError(
        "HandshakeFailed",
        `${closed}: its key is probably not the pinned one (fingerprint "${
          fingerprint(policy.pins[0]!)
        }"); it may also refuse pattern "${pattern}"${
          facts.clientStatic ? " or this client's key" : ""
        }${facts.psk ? " or the pre-shared key" : ""}${AT_LIMIT}`,
        options,
      );
    }
    return new ProtocolError(
      "HandshakeFailed",
      `${closed}: it probably does not accept pattern "${pattern}"${
        facts.psk
          ? " or the pre-shared key differs"
          : " (it may require another pattern, a pre-shared key or plaintext)"
      }, or it speaks TLS (set transport.kind = "tls")${AT_LIMIT}`,
      options,
    );
  }

  /** The pattern this client runs, or `"plaintext"`. */
  get pattern(): PatternName | "plaintext" {
    return this.#policy.pattern ?? "plaintext";
  }

  /**
   * Builds the first packet payload: the hello, followed by the first Noise message.
   *
   * @returns The payloads to send (one).
   * @throws {ProtocolError} `HandshakeFailed` when called twice or after a failure.
   */
  override start(): Uint8Array[] {
    this.#core.check();
    if (this.#core.state !== "start") {
      throw this.#core.fail(
        new ProtocolError("HandshakeFailed", "The handshake was already started"),
      );
    }
    const policy = this.#policy;
    const params: HandshakeParams = { features: policy.features };
    if (policy.maxMessageSize !== undefined) params.maxMessageSize = policy.maxMessageSize;
    this.#core.state = "wait";
    if (policy.mode === "plaintext") return [encodeHello("plaintext", undefined, params)];
    try {
      const pattern = policy.pattern!;
      const facts = PATTERN_INFO[pattern];
      const header = encodeHello("noise", pattern, params);
      let s: KeyPair | undefined = policy.staticKey;
      if (facts.clientStatic && s === undefined) s = this.#core.provider.generateKeyPair();
      const hs = new HandshakeState({
        protocolName: protocolName(pattern),
        initiator: true,
        prologue: helloPrologue(header),
        ...(s === undefined ? {} : { s: s.privateKey }),
        ...(facts.serverKnown ? { rs: policy.pins[0]! } : {}),
        ...(policy.psk === undefined ? {} : { psks: [policy.psk] }),
        provider: this.#core.provider,
      });
      this.#hs = hs;
      const message = hs.writeMessage(EMPTY);
      const first = new Uint8Array(header.length + message.length);
      first.set(header);
      first.set(message, header.length);
      return [first];
    } catch (error) {
      throw this.#core.fail(asHandshakeError(error, "Writing the client hello failed"));
    }
  }

  async #step(payload: Uint8Array): Promise<Uint8Array[]> {
    this.#received++;
    const policy = this.#policy;
    if (policy.mode === "plaintext") {
      const hello = decodeHello(payload);
      if (hello.mode !== "plaintext" || hello.rest.length !== 0) {
        throw new ProtocolError("HandshakeFailed", "Expected a plaintext server hello");
      }
      this.#core.finish({
        initiator: true,
        localFeatures: policy.features,
        remote: hello.params,
        pattern: "plaintext",
        pinned: false,
      });
      return [];
    }
    const hs = this.#hs!;
    const pattern = policy.pattern!;
    const params = decodeParams(hs.readMessage(payload));
    let pinned = PATTERN_INFO[pattern].serverKnown;
    let remember: Uint8Array | undefined;
    if (!pinned) {
      const rs = hs.remoteStaticKey;
      if (rs !== undefined && policy.pins.length > 0) {
        if (!isMember(policy.pins, rs)) {
          throw new ProtocolError(
            "HandshakeFailed",
            `Server key "${
              fingerprint(rs)
            }" matches none of the "${policy.pins.length}" pinned keys`,
          );
        }
        pinned = true;
      } else if (rs !== undefined && policy.knownServers !== undefined) {
        const { store, name } = policy.knownServers;
        let known: Uint8Array | undefined;
        try {
          known = await store.get(name);
        } catch (cause) {
          throw new ProtocolError(
            "HandshakeFailed",
            `Cannot read the known server keys in ${storeName(store)}: ${errorMessage(cause)}`,
            { cause },
          );
        }
        if (known !== undefined) {
          if (!constantTimeEqual(known, rs)) throw keyChanged(name, store, known, rs);
          pinned = true;
        } else {
          remember = rs.slice();
        }
      }
    }
    const out: Uint8Array[] = [];
    if (!hs.isComplete) out.push(hs.writeMessage(EMPTY));
    if (remember !== undefined) {
      // Recorded before the last handshake message (and any data) is sent: a key that cannot be
      // recorded fails the handshake rather than leaving the next connection unauthenticated.
      const { store, name } = policy.knownServers!;
      try {
        await store.set(name, remember);
      } catch (cause) {
        throw new ProtocolError(
          "HandshakeFailed",
          `Cannot record the key of server "${name}" in ${storeName(store)}: ${
            errorMessage(cause)
          }`,
          { cause },
        );
      }
    }
    this.#core.finish({
      hs,
      initiator: true,
      localFeatures: policy.features,
      remote: params,
      pattern,
      pinned,
    });
    return out;
  }
}

function storeName(store: KnownServers): string {
  return store.location === undefined ? "the known-servers store" : `"${store.location}"`;
}

/** The error for a server whose key differs from the one recorded for its name. */
function keyChanged(
  name: string,
  store: KnownServers,
  known: Uint8Array,
  presented: Uint8Array,
): ProtocolError {
  const where = storeName(store);
  return new ProtocolError(
    "HandshakeFailed",
    `The key of server "${name}" CHANGED: it presented the key with fingerprint "${
      fingerprint(presented)
    }", but the key with fingerprint "${
      fingerprint(known)
    }" is known for it in ${where}. Someone may be intercepting the connection; if the server's ` +
      `key was replaced on purpose, remove the line of "${name}" from ${where} and connect again`,
  );
}

/**
 * The server side of the session handshake (sans-I/O). Pass every received packet payload to
 * {@linkcode ServerHandshake.receive} and send what it returns, until
 * {@linkcode ServerHandshake.isComplete}. On any error, close the connection without a reply.
 *
 * @example Refuse a mode the policy does not allow
 * ```ts
 * import { ClientHandshake, generateKeyPair, ServerHandshake } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const server = new ServerHandshake({ staticKey: generateKeyPair(), accept: ["XX"] });
 * const client = new ClientHandshake({ pattern: "NN" });
 * await assert.rejects(server.receive(client.start()[0]!), { code: "PolicyViolation" });
 * ```
 */
export class ServerHandshake extends SessionHandshake {
  readonly #core: DriverCore;
  readonly #policy: ServerPolicy;
  #hs: HandshakeState | undefined;
  #pattern: PatternName | undefined;
  #clientParams: HandshakeParams = { features: 0 };
  #pinned = false;

  /**
   * Validates the options.
   *
   * @param options The server's security options.
   * @throws {TypeError} For malformed keys or a pattern the configuration cannot run or enforce.
   * @throws {RangeError} For out-of-range numbers.
   */
  constructor(options: ServerSecurityOptions) {
    const policy = resolveServerPolicy(options);
    super(policy.timeoutMs, options);
    this.#policy = policy;
    this.#core = coreOf(this);
    this.#core.step = (payload) => this.#step(payload);
    this.#core.state = "wait";
  }

  /** The patterns (or `"plaintext"`) this server accepts. */
  get accepted(): (PatternName | "plaintext")[] {
    return [...this.#policy.accept];
  }

  /**
   * The server sends nothing first.
   *
   * @returns An empty array.
   */
  override start(): Uint8Array[] {
    this.#core.check();
    return [];
  }

  #params(): HandshakeParams {
    const params: HandshakeParams = { features: this.#policy.features };
    if (this.#policy.maxMessageSize !== undefined) {
      params.maxMessageSize = this.#policy.maxMessageSize;
    }
    return params;
  }

  async #authorize(hs: HandshakeState): Promise<void> {
    const policy = this.#policy;
    if (!policy.mutual) return;
    const rs = hs.remoteStaticKey;
    if (rs === undefined) {
      throw new ProtocolError("HandshakeFailed", "The client sent no static key");
    }
    if (policy.clientKeys !== undefined && !isMember(policy.clientKeys, rs)) {
      throw new ProtocolError("HandshakeFailed", `Client key "${fingerprint(rs)}" is not allowed`);
    }
    if (policy.authorize !== undefined) {
      let allowed: boolean;
      try {
        allowed = await policy.authorize(rs.slice());
      } catch (cause) {
        throw new ProtocolError(
          "HandshakeFailed",
          `Authorizing client key "${fingerprint(rs)}" failed`,
          {
            cause,
          },
        );
      }
      if (allowed !== true) {
        throw new ProtocolError(
          "HandshakeFailed",
          `Client key "${fingerprint(rs)}" was not authorized`,
        );
      }
    }
    this.#pinned = true;
  }

  async #step(payload: Uint8Array): Promise<Uint8Array[]> {
    const policy = this.#policy;
    if (this.#hs === undefined) {
      const hello = decodeHello(payload);
      const mode = hello.mode === "plaintext" ? "plaintext" : hello.pattern!;
      if (!policy.accept.has(mode)) {
        throw new ProtocolError("PolicyViolation", `The server does not accept "${mode}"`);
      }
      if (hello.mode === "plaintext") {
        if (hello.rest.length !== 0) {
          throw new ProtocolError("HandshakeFailed", "Plaintext hello has trailing bytes");
        }
        const reply = encodeHello("plaintext", undefined, this.#params());
        this.#core.finish({
          initiator: false,
          localFeatures: policy.features,
          remote: hello.params,
          pattern: "plaintext",
          pinned: false,
        });
        return [reply];
      }
      const pattern = hello.pattern!;
      const facts = PATTERN_INFO[pattern];
      const hs = new HandshakeState({
        protocolName: protocolName(pattern),
        initiator: false,
        prologue: helloPrologue(hello.header),
        ...(facts.serverStatic ? { s: policy.staticKey!.privateKey } : {}),
        ...(facts.clientKnown ? { rs: policy.clientKeys![0]! } : {}),
        ...(policy.psk === undefined ? {} : { psks: [policy.psk] }),
        provider: this.#core.provider,
      });
      this.#hs = hs;
      this.#pattern = pattern;
      this.#clientParams = hello.params;
      const first = hs.readMessage(hello.rest);
      if (first.length !== 0) {
        throw new ProtocolError("HandshakeFailed", "The first handshake message carries a payload");
      }
      if (hs.remoteStaticKey !== undefined) await this.#authorize(hs);
      const reply = hs.writeMessage(encodeParams(this.#params()));
      if (hs.isComplete) this.#complete(hs);
      return [reply];
    }
    const hs = this.#hs;
    const last = hs.readMessage(payload);
    if (last.length !== 0) {
      throw new ProtocolError("HandshakeFailed", "The last handshake message carries a payload");
    }
    await this.#authorize(hs);
    this.#complete(hs);
    return [];
  }

  #complete(hs: HandshakeState): void {
    this.#core.finish({
      hs,
      initiator: false,
      localFeatures: this.#policy.features,
      remote: this.#clientParams,
      pattern: this.#pattern!,
      pinned: this.#pinned,
    });
  }
}
