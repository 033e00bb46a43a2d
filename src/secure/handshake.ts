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
 * The driver contract and the state both drivers share are in `handshake_driver.ts`, the checks
 * of the peer's static key in `handshake_trust.ts`, and the client's explanation of a refused
 * first message in `handshake_explain.ts`.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import {
  decodeHello,
  decodeParams,
  encodeHello,
  encodeParams,
  type HandshakeParams,
  type Hello,
  helloPrologue,
  type PatternName,
} from "./hello.ts";
import {
  asHandshakeError,
  DriverCore,
  type HandshakeDriver,
  type HandshakeResult,
} from "./handshake_driver.ts";
import { explainFirstReplyFailure } from "./handshake_explain.ts";
import {
  authorizeClientKey,
  checkKnownServerKey,
  checkPinnedServerKey,
  recordServerKey,
} from "./handshake_trust.ts";
import type { KeyPair } from "./keys.ts";
import { HandshakeState } from "./noise/handshake_state.ts";
import {
  resumptionContext,
  type StoredTicket,
  TicketReceiver,
  type TicketState,
} from "./session_ticket.ts";
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

export {
  type HandshakeDriver,
  type HandshakeResult,
  MAX_HANDSHAKE_PAYLOAD,
} from "./handshake_driver.ts";

const EMPTY = new Uint8Array(0);

/** Gives the drivers of this module the state their base class keeps private. */
let coreOf: (driver: SessionHandshake) => DriverCore;

/**
 * What {@linkcode ClientHandshake} and {@linkcode ServerHandshake} share: turn-taking (one
 * packet at a time, in turn), the terminal failure, the result and the time limit. It is not
 * meant to be extended outside this module.
 *
 * @example Both drivers are session handshakes
 * ```ts
 * import { generateKeyPair } from "@npro/network-protocol";
 * import { ClientHandshake, ServerHandshake } from "@npro/network-protocol/secure";
 * import type { SessionHandshake } from "@npro/network-protocol/secure";
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
 * import { generateKeyPair } from "@npro/network-protocol";
 * import { ClientHandshake, ServerHandshake } from "@npro/network-protocol/secure";
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
  /** The ticket the hello presents, when this handshake resumes a session (psk erased). */
  #resuming: StoredTicket | undefined;
  /** The digest of the trust settings, when resumption is on. */
  #context: Uint8Array | undefined;

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
   * import { generateKeyPair } from "@npro/network-protocol";
   * import { ClientHandshake } from "@npro/network-protocol/secure";
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
    // A TLS transport that knows why the connection ended first (a server that refused the
    // client certificate) says so better than any guess about the handshake.
    const reason = cause?.cause;
    if (reason instanceof ProtocolError && reason.code === "TlsError") return reason;
    const tlsError = (reason as { tlsError?: unknown } | undefined)?.tlsError;
    if (tlsError instanceof ProtocolError) return tlsError;
    if (
      this.#resuming !== undefined && (cause === undefined || cause.code === "ConnectionClosed")
    ) {
      return new ProtocolError(
        "HandshakeFailed",
        "The server closed the connection after our resumption hello: it did not accept the " +
          "session ticket (it restarted, is another process behind the same address, the ticket " +
          "expired or its key was rotated out, or resumption is off there); the ticket is " +
          "dropped and the next handshake is a full one",
        cause === undefined ? {} : { cause },
      );
    }
    return explainFirstReplyFailure(this.#policy, cause);
  }

  /**
   * Whether this handshake resumes a session: its hello presents a session ticket (known once
   * {@linkcode ClientHandshake.start} ran). When such a handshake fails before the server
   * replies, the server most likely refused the ticket; the ticket is gone from the store, so a
   * new handshake with the same options is a full one (`connect()` runs it at once).
   */
  get resuming(): boolean {
    return this.#resuming !== undefined;
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
      let pattern = policy.pattern!;
      const facts = PATTERN_INFO[pattern];
      const provider = this.#core.provider;
      let psk = policy.psk;
      const resumption = policy.resumption;
      if (resumption !== undefined) {
        params.resumption = true;
        this.#context = resumptionContext(provider, {
          pattern,
          pins: policy.pins,
          staticKey: policy.staticKey?.publicKey,
          psk: policy.psk,
          knownServers: policy.knownServers?.name,
        });
        const ticket = resumption.store.take(resumption.name, this.#context);
        if (ticket !== undefined) {
          // A resumed handshake: NNpsk0 keyed by the ticket's secret, the ticket in the hello
          // (and so in the prologue). The secret is copied into the handshake state, then erased.
          this.#resuming = ticket;
          params.ticket = ticket.ticket;
          pattern = "NNpsk0";
          psk = ticket.psk.slice();
          ticket.psk.fill(0);
        }
      }
      const header = encodeHello("noise", pattern, params);
      let s: KeyPair | undefined = this.#resuming === undefined ? policy.staticKey : undefined;
      if (this.#resuming === undefined && facts.clientStatic && s === undefined) {
        s = provider.generateKeyPair();
      }
      const serverKnown = this.#resuming === undefined && facts.serverKnown;
      const hs = new HandshakeState({
        protocolName: protocolName(pattern),
        initiator: true,
        prologue: helloPrologue(header),
        ...(s === undefined ? {} : { s: s.privateKey }),
        ...(serverKnown ? { rs: policy.pins[0]! } : {}),
        ...(psk === undefined ? {} : { psks: [psk] }),
        provider,
      });
      if (this.#resuming !== undefined) psk?.fill(0);
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
    const params = decodeParams(hs.readMessage(payload));
    if (params.ticket !== undefined) {
      throw new ProtocolError("HandshakeFailed", "The server's parameters carry a session ticket");
    }
    const wantsTicket = policy.resumption !== undefined && params.resumption === true;
    const resuming = this.#resuming;
    if (resuming !== undefined) {
      // The secret proves the server is the one that issued the ticket to this client, so the
      // session has the identities of the full handshake the ticket came from.
      const secret = this.#core.finish({
        hs,
        initiator: true,
        localFeatures: policy.features,
        remote: params,
        pattern: resuming.pattern,
        pinned: resuming.pinned,
        resumed: true,
        remoteStaticKey: resuming.serverKey,
        resumption: wantsTicket,
      });
      this.#expectTicket(secret, resuming.pattern, resuming.pinned, resuming.serverKey);
      return [];
    }
    const pattern = policy.pattern!;
    let pinned = PATTERN_INFO[pattern].serverKnown;
    let remember: Uint8Array | undefined;
    if (!pinned) {
      const rs = hs.remoteStaticKey;
      if (rs !== undefined && policy.pins.length > 0) {
        checkPinnedServerKey(policy.pins, rs);
        pinned = true;
      } else if (rs !== undefined && policy.knownServers !== undefined) {
        pinned = await checkKnownServerKey(policy.knownServers, rs);
        if (!pinned) remember = rs.slice();
      }
    }
    const out: Uint8Array[] = [];
    if (!hs.isComplete) out.push(hs.writeMessage(EMPTY));
    if (remember !== undefined) {
      // Recorded before the last handshake message (and any data) is sent: a key that cannot be
      // recorded fails the handshake rather than leaving the next connection unauthenticated.
      await recordServerKey(policy.knownServers!, remember);
    }
    const serverKey = hs.remoteStaticKey;
    const secret = this.#core.finish({
      hs,
      initiator: true,
      localFeatures: policy.features,
      remote: params,
      pattern,
      pinned,
      resumption: wantsTicket,
    });
    // The key just recorded is a known server's key by the time the ticket is used.
    this.#expectTicket(secret, pattern, pinned || remember !== undefined, serverKey);
    return out;
  }

  /** Makes the receiver of the ticket the server announced, with the session's secret. */
  #expectTicket(
    secret: Uint8Array | undefined,
    pattern: PatternName,
    pinned: boolean,
    serverKey: Uint8Array | undefined,
  ): void {
    const resumption = this.#policy.resumption;
    if (secret === undefined || resumption === undefined) return;
    const pending = { psk: secret, context: this.#context!, pattern, pinned };
    this.#core.out!.ticketReceiver = new TicketReceiver(
      resumption.store,
      resumption.name,
      serverKey === undefined ? pending : { ...pending, serverKey: serverKey.slice() },
    );
  }
}

/**
 * The server side of the session handshake (sans-I/O). Pass every received packet payload to
 * {@linkcode ServerHandshake.receive} and send what it returns, until
 * {@linkcode ServerHandshake.isComplete}. On any error, close the connection without a reply.
 *
 * @example Refuse a mode the policy does not allow
 * ```ts
 * import { generateKeyPair } from "@npro/network-protocol";
 * import { ClientHandshake, ServerHandshake } from "@npro/network-protocol/secure";
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
  /** Whether a ticket is issued at the end (announced in the server's parameters). */
  #issue = false;
  /** The state of the ticket this handshake resumes from (psk erased). */
  #resumed: TicketState | undefined;

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
    if (this.#issue) params.resumption = true;
    return params;
  }

  async #authorize(hs: HandshakeState): Promise<void> {
    if (await authorizeClientKey(this.#policy, hs.remoteStaticKey)) this.#pinned = true;
  }

  async #step(payload: Uint8Array): Promise<Uint8Array[]> {
    const policy = this.#policy;
    if (this.#hs === undefined) {
      const hello = decodeHello(payload);
      if (hello.params.ticket !== undefined) return await this.#resume(hello);
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
      this.#issue = hello.params.resumption === true &&
        (policy.resumption?.canIssue() ?? false);
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

  /**
   * A hello with a session ticket: open the ticket, check that the session it resumes is still
   * acceptable (its pattern is accepted, its client key passes `clientKeys` and `authorize`), and
   * run NNpsk0 keyed by the ticket's secret. Any failure closes the connection; the client then
   * runs a full handshake.
   */
  async #resume(hello: Hello): Promise<Uint8Array[]> {
    const policy = this.#policy;
    const issuer = policy.resumption;
    if (hello.pattern !== "NNpsk0") {
      throw new ProtocolError(
        "HandshakeFailed",
        `A session ticket comes with pattern "NNpsk0", not "${
          hello.mode === "noise" ? hello.pattern : "plaintext"
        }"`,
      );
    }
    if (issuer === undefined) {
      throw new ProtocolError(
        "HandshakeFailed",
        "Session ticket refused: this server does not resume sessions (security.resumption is off)",
      );
    }
    const state = issuer.open(hello.params.ticket!, policy.staticKey?.publicKey);
    let hs: HandshakeState;
    try {
      if (!policy.accept.has(state.pattern)) {
        throw new ProtocolError(
          "HandshakeFailed",
          `Session ticket refused: the server no longer accepts pattern "${state.pattern}"`,
        );
      }
      // Client keys are checked again: a key removed from clientKeys, or that authorize now
      // refuses, cannot resume.
      this.#pinned = await authorizeClientKey(policy, state.clientKey);
      hs = new HandshakeState({
        protocolName: protocolName("NNpsk0"),
        initiator: false,
        prologue: helloPrologue(hello.header),
        psks: [state.psk],
        provider: this.#core.provider,
      });
    } finally {
      state.psk.fill(0);
    }
    this.#hs = hs;
    this.#pattern = state.pattern;
    this.#resumed = state;
    this.#clientParams = hello.params;
    const first = hs.readMessage(hello.rest);
    if (first.length !== 0) {
      throw new ProtocolError("HandshakeFailed", "The first handshake message carries a payload");
    }
    this.#issue = hello.params.resumption === true && issuer.canIssue(state.authTime);
    const reply = hs.writeMessage(encodeParams(this.#params()));
    this.#complete(hs);
    return [reply];
  }

  #complete(hs: HandshakeState): void {
    const policy = this.#policy;
    const resumed = this.#resumed;
    const pattern = this.#pattern!;
    const clientKey = resumed === undefined ? hs.remoteStaticKey : resumed.clientKey;
    const secret = this.#core.finish({
      hs,
      initiator: false,
      localFeatures: policy.features,
      remote: this.#clientParams,
      pattern,
      pinned: this.#pinned,
      resumed: resumed !== undefined,
      remoteStaticKey: clientKey,
      resumption: this.#issue,
    });
    if (secret === undefined) return;
    try {
      const serverKey = resumed === undefined
        ? (PATTERN_INFO[pattern].serverStatic ? policy.staticKey?.publicKey : undefined)
        : resumed.serverKey;
      const issued = policy.resumption!.issue({
        psk: secret,
        pattern,
        ...(resumed === undefined ? {} : { authTime: resumed.authTime }),
        ...(serverKey === undefined ? {} : { serverKey }),
        ...(clientKey === undefined ? {} : { clientKey }),
      });
      if (issued !== undefined) {
        this.#core.out!.ticket = {
          type: "ticket",
          lifetime: issued.lifetimeMs,
          ticket: issued.ticket,
        };
      }
    } finally {
      secret.fill(0);
    }
  }
}
