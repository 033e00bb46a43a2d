/**
 * The Noise `HandshakeState` (rev 34 section 5.3): a generic interpreter of handshake patterns.
 *
 * @module
 */

import { ProtocolError } from "../../errors.ts";
import { type CryptoProvider, KEY_LENGTH, TAG_LENGTH } from "../crypto.ts";
import { defaultProvider } from "../default_provider.ts";
import type { CipherState } from "./cipher_state.ts";
import { type HandshakePattern, parseProtocolName, type Token } from "./patterns.ts";
import { SymmetricState } from "./symmetric_state.ts";

/** The largest Noise message (rev 34 section 3). */
export const MAX_MESSAGE_LENGTH = 65535;

/** Options for {@linkcode HandshakeState}. */
export interface HandshakeStateOptions {
  /** The full protocol name, e.g. `Noise_XX_25519_ChaChaPoly_SHA256`. */
  protocolName: string;
  /** Whether this side starts the handshake. */
  initiator: boolean;
  /** Bytes both sides bind into the transcript (for example the negotiated mode); default empty. */
  prologue?: Uint8Array;
  /** This side's static 32-byte X25519 private key, when the pattern needs one. */
  s?: Uint8Array;
  /** This side's ephemeral private key; generated when omitted (tests inject it). */
  e?: Uint8Array;
  /** The peer's static public key, when the pattern has the peer's key as a pre-message. */
  rs?: Uint8Array;
  /** The peer's ephemeral public key, for patterns with an `e` pre-message. */
  re?: Uint8Array;
  /** The 32-byte pre-shared keys, in the order of the pattern's `psk` tokens. */
  psks?: Uint8Array[];
  /** The crypto provider; {@linkcode defaultProvider} when omitted. */
  provider?: CryptoProvider;
}

interface KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

const EMPTY = new Uint8Array(0);

function checkKey(what: string, key: Uint8Array | undefined): void {
  if (key !== undefined && (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH)) {
    throw new TypeError(`${what} must be ${KEY_LENGTH} bytes, got "${key?.length}"`);
  }
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * A Noise handshake in progress, for any pattern of the suite `25519_ChaChaPoly_SHA256`
 * (one-way, interactive, deferred, with `pskN` modifiers). Call
 * {@linkcode HandshakeState.writeMessage} and {@linkcode HandshakeState.readMessage} in turn until
 * {@linkcode HandshakeState.isComplete}, then {@linkcode HandshakeState.split}.
 *
 * Any error is terminal: it is thrown as `ProtocolError("HandshakeFailed")` and every later call
 * throws too. Bad options throw `TypeError` from the constructor.
 *
 * @example Run an XX handshake
 * ```ts
 * import { generateKeyPair, HandshakeState } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * const protocolName = "Noise_XX_25519_ChaChaPoly_SHA256";
 * const client = new HandshakeState({ protocolName, initiator: true, s: generateKeyPair().privateKey });
 * const server = new HandshakeState({ protocolName, initiator: false, s: generateKeyPair().privateKey });
 * server.readMessage(client.writeMessage());
 * client.readMessage(server.writeMessage());
 * server.readMessage(client.writeMessage());
 * assert.ok(client.isComplete && server.isComplete);
 * assert.deepEqual(client.handshakeHash, server.handshakeHash);
 *
 * const [clientSend] = client.split();
 * const [serverReceive] = server.split();
 * const record = clientSend.encryptWithAd(new Uint8Array(), new Uint8Array([42]));
 * assert.deepEqual(serverReceive.decryptWithAd(new Uint8Array(), record), new Uint8Array([42]));
 * ```
 */
export class HandshakeState {
  readonly #pattern: HandshakePattern;
  readonly #initiator: boolean;
  readonly #provider: CryptoProvider;
  readonly #symmetric: SymmetricState;
  readonly #s: KeyPair | undefined;
  #e: KeyPair | undefined;
  #ownsE = false;
  #rs: Uint8Array | undefined;
  #re: Uint8Array | undefined;
  readonly #psks: Uint8Array[];
  #pskIndex = 0;
  #index = 0;
  #failed: ProtocolError | undefined;
  #split = false;

  /**
   * Starts a handshake: parses the protocol name, checks that the keys the pattern needs are
   * present, and mixes the prologue and pre-message keys into the transcript.
   *
   * @param options The protocol name, role, prologue, keys and provider.
   * @throws {TypeError} When the name is unsupported or a needed key or PSK is missing or malformed.
   */
  constructor(options: HandshakeStateOptions) {
    const { pattern } = parseProtocolName(options.protocolName);
    this.#pattern = pattern;
    this.#initiator = options.initiator;
    this.#provider = options.provider ?? defaultProvider();
    checkKey("Static private key", options.s);
    checkKey("Ephemeral private key", options.e);
    checkKey("Remote static key", options.rs);
    checkKey("Remote ephemeral key", options.re);
    const psks = options.psks ?? [];
    if (psks.length !== pattern.pskCount) {
      throw new TypeError(
        `Handshake pattern "${pattern.name}" needs "${pattern.pskCount}" PSKs, got "${psks.length}"`,
      );
    }
    for (const psk of psks) checkKey("PSK", psk);
    this.#psks = psks.map((psk) => psk.slice());

    const provider = this.#provider;
    this.#s = options.s === undefined
      ? undefined
      : { privateKey: options.s, publicKey: provider.publicKeyOf(options.s) };
    this.#e = options.e === undefined
      ? undefined
      : { privateKey: options.e, publicKey: provider.publicKeyOf(options.e) };
    this.#rs = options.rs?.slice();
    this.#re = options.re?.slice();

    this.#checkRequiredKeys();

    this.#symmetric = new SymmetricState(options.protocolName, provider);
    this.#symmetric.mixHash(options.prologue ?? EMPTY);
    const isPsk = pattern.pskCount > 0;
    const mixPre = (tokens: readonly ("e" | "s")[], mine: boolean): void => {
      for (const token of tokens) {
        const key = token === "s"
          ? (mine ? this.#s?.publicKey : this.#rs)
          : (mine ? this.#e?.publicKey : this.#re);
        this.#symmetric.mixHash(key!);
        if (token === "e" && isPsk) this.#symmetric.mixKey(key!);
      }
    };
    mixPre(pattern.initiatorPreMessage, this.#initiator);
    mixPre(pattern.responderPreMessage, !this.#initiator);
  }

  #checkRequiredKeys(): void {
    const pattern = this.#pattern;
    const initiator = this.#initiator;
    const mine = (tokens: readonly string[], wanted: string): boolean => tokens.includes(wanted);
    const myPre = initiator ? pattern.initiatorPreMessage : pattern.responderPreMessage;
    const theirPre = initiator ? pattern.responderPreMessage : pattern.initiatorPreMessage;
    let needS = mine(myPre, "s");
    let needRe = mine(theirPre, "e");
    const needRs = mine(theirPre, "s");
    pattern.messages.forEach((tokens, index) => {
      const writtenByInitiator = pattern.oneWay || index % 2 === 0;
      const byMe = writtenByInitiator === initiator;
      if (byMe && tokens.includes("s")) needS = true;
      // es: initiator's e with responder's s; se: initiator's s with responder's e.
      if (tokens.includes("ss")) needS = true;
      if (tokens.includes(initiator ? "se" : "es")) needS = true;
    });
    if (mine(myPre, "e") && this.#e === undefined) {
      throw new TypeError(
        `Handshake pattern "${pattern.name}" needs this side's ephemeral key "e"`,
      );
    }
    if (needS && this.#s === undefined) {
      throw new TypeError(`Handshake pattern "${pattern.name}" needs a static private key "s"`);
    }
    if (needRs && this.#rs === undefined) {
      throw new TypeError(`Handshake pattern "${pattern.name}" needs the remote static key "rs"`);
    }
    needRe &&= this.#re === undefined;
    if (needRe) {
      throw new TypeError(
        `Handshake pattern "${pattern.name}" needs the remote ephemeral key "re"`,
      );
    }
  }

  /** The handshake pattern, with modifiers applied. */
  get pattern(): HandshakePattern {
    return this.#pattern;
  }

  /** Whether this side is the initiator. */
  get initiator(): boolean {
    return this.#initiator;
  }

  /** The index of the next handshake message (0 for the first). */
  get messageIndex(): number {
    return this.#index;
  }

  /** Whether every handshake message has been written or read. */
  get isComplete(): boolean {
    return this.#failed === undefined && this.#index >= this.#pattern.messages.length;
  }

  /** Whether the handshake has failed (every call throws from then on). */
  get isFailed(): boolean {
    return this.#failed !== undefined;
  }

  /** Whether the next message is this side's to write (`false` once complete or failed). */
  get isMyTurn(): boolean {
    if (this.#failed !== undefined || this.#index >= this.#pattern.messages.length) return false;
    const byInitiator = this.#pattern.oneWay || this.#index % 2 === 0;
    return byInitiator === this.#initiator;
  }

  /**
   * The handshake hash `h`: equal on both sides exactly when they saw the same transcript. Use it
   * for channel binding or to compare a short authentication string out of band.
   */
  get handshakeHash(): Uint8Array {
    this.#throwIfFailed();
    return this.#symmetric.handshakeHash;
  }

  /** The peer's static public key, once known (from a pre-message or the handshake). */
  get remoteStaticKey(): Uint8Array | undefined {
    return this.#rs?.slice();
  }

  /** This side's static public key, if it has one. */
  get localStaticKey(): Uint8Array | undefined {
    return this.#s?.publicKey.slice();
  }

  #throwIfFailed(): void {
    if (this.#failed !== undefined) {
      throw new ProtocolError(
        "HandshakeFailed",
        "Handshake state is unusable after an earlier failure",
        { cause: this.#failed },
      );
    }
  }

  #fail(message: string, cause?: unknown): ProtocolError {
    const error = cause instanceof ProtocolError && cause.code === "HandshakeFailed"
      ? cause
      : new ProtocolError("HandshakeFailed", message, cause === undefined ? undefined : { cause });
    this.#failed = error;
    this.#wipe();
    return error;
  }

  /** Erases secrets that are no longer needed (best effort in JavaScript). */
  #wipe(): void {
    // A generated ephemeral key is ours to erase; an injected one belongs to the caller.
    if (this.#ownsE) this.#e?.privateKey.fill(0);
    for (const psk of this.#psks) psk.fill(0);
  }

  #checkTurn(writing: boolean): void {
    this.#throwIfFailed();
    if (this.#index >= this.#pattern.messages.length) {
      throw this.#fail(`Handshake is already complete; cannot ${writing ? "write" : "read"} more`);
    }
    if (this.isMyTurn !== writing) {
      throw this.#fail(
        `It is not this side's turn to ${
          writing ? "write" : "read"
        } handshake message "${this.#index}"`,
      );
    }
  }

  #dh(token: Token): Uint8Array {
    const initiator = this.#initiator;
    let local: KeyPair | undefined;
    let remote: Uint8Array | undefined;
    switch (token) {
      case "ee":
        local = this.#e;
        remote = this.#re;
        break;
      case "ss":
        local = this.#s;
        remote = this.#rs;
        break;
      case "es":
        local = initiator ? this.#e : this.#s;
        remote = initiator ? this.#rs : this.#re;
        break;
      default: // "se"
        local = initiator ? this.#s : this.#e;
        remote = initiator ? this.#re : this.#rs;
    }
    if (local === undefined || remote === undefined) {
      throw new ProtocolError("HandshakeFailed", `Token "${token}" needs a key that is not set`);
    }
    return this.#provider.dh(local.privateKey, remote);
  }

  /**
   * Writes the next handshake message.
   *
   * @param payload The payload to carry (encrypted once a key exists); default empty. Noise
   * payloads in early messages may be replayable or unencrypted: see the pattern's properties.
   * @returns The message to send.
   * @throws {ProtocolError} `HandshakeFailed` when it is not this side's turn, the handshake is
   * complete or failed, or a DH fails.
   * @throws {RangeError} When the message would exceed 65535 bytes (the state stays usable).
   */
  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    this.#checkTurn(true);
    const tokens = this.#pattern.messages[this.#index]!;
    let size = payload.length;
    for (const token of tokens) {
      if (token === "e") size += KEY_LENGTH;
      else if (token === "s") size += KEY_LENGTH + TAG_LENGTH;
    }
    if (size + TAG_LENGTH > MAX_MESSAGE_LENGTH) {
      throw new RangeError(
        `Handshake message length "${size + TAG_LENGTH}" exceeds the limit "${MAX_MESSAGE_LENGTH}"`,
      );
    }
    try {
      const symmetric = this.#symmetric;
      const parts: Uint8Array[] = [];
      let length = 0;
      for (const token of tokens) {
        switch (token) {
          case "e": {
            if (this.#e === undefined) {
              this.#e = this.#provider.generateKeyPair();
              this.#ownsE = true;
            }
            const pub = this.#e.publicKey;
            parts.push(pub);
            length += pub.length;
            symmetric.mixHash(pub);
            if (this.#pattern.pskCount > 0) symmetric.mixKey(pub);
            break;
          }
          case "s": {
            const sealed = symmetric.encryptAndHash(this.#s!.publicKey);
            parts.push(sealed);
            length += sealed.length;
            break;
          }
          case "psk":
            symmetric.mixKeyAndHash(this.#psks[this.#pskIndex++]!);
            break;
          default:
            symmetric.mixKey(this.#dh(token));
        }
      }
      const sealed = symmetric.encryptAndHash(payload);
      parts.push(sealed);
      length += sealed.length;
      this.#index++;
      if (this.#index >= this.#pattern.messages.length) this.#wipe();
      return concat(parts, length);
    } catch (cause) {
      throw this.#fail("Writing the handshake message failed", cause);
    }
  }

  /**
   * Reads the next handshake message.
   *
   * @param message The message received from the peer.
   * @returns The payload it carried.
   * @throws {ProtocolError} `HandshakeFailed` when the message is malformed, fails
   * authentication, carries a low-order key, or it is not this side's turn.
   */
  readMessage(message: Uint8Array): Uint8Array {
    this.#checkTurn(false);
    try {
      if (message.length > MAX_MESSAGE_LENGTH) {
        throw new ProtocolError(
          "HandshakeFailed",
          `Handshake message length "${message.length}" exceeds the limit "${MAX_MESSAGE_LENGTH}"`,
        );
      }
      const symmetric = this.#symmetric;
      const tokens = this.#pattern.messages[this.#index]!;
      let offset = 0;
      const take = (length: number, what: string): Uint8Array => {
        if (offset + length > message.length) {
          throw new ProtocolError(
            "HandshakeFailed",
            `Handshake message "${this.#index}" is too short for ${what}: "${message.length}" bytes`,
          );
        }
        const part = message.subarray(offset, offset + length);
        offset += length;
        return part;
      };
      for (const token of tokens) {
        switch (token) {
          case "e": {
            const re = take(KEY_LENGTH, "the ephemeral key").slice();
            this.#re = re;
            symmetric.mixHash(re);
            if (this.#pattern.pskCount > 0) symmetric.mixKey(re);
            break;
          }
          case "s": {
            const length = symmetric.hasKey ? KEY_LENGTH + TAG_LENGTH : KEY_LENGTH;
            this.#rs = symmetric.decryptAndHash(take(length, "the static key")).slice();
            break;
          }
          case "psk":
            symmetric.mixKeyAndHash(this.#psks[this.#pskIndex++]!);
            break;
          default:
            symmetric.mixKey(this.#dh(token));
        }
      }
      const rest = message.subarray(offset);
      if (symmetric.hasKey && rest.length < TAG_LENGTH) {
        throw new ProtocolError(
          "HandshakeFailed",
          `Handshake message "${this.#index}" is too short for its payload tag`,
        );
      }
      const payload = symmetric.decryptAndHash(rest);
      this.#index++;
      if (this.#index >= this.#pattern.messages.length) this.#wipe();
      return symmetric.hasKey ? payload : payload.slice();
    } catch (cause) {
      throw this.#fail("Reading the handshake message failed", cause);
    }
  }

  /**
   * Derives a secret for use outside the handshake from the final chaining key (for example the
   * session resumption secret): the first output of `HKDF(ck, label, 2)`, independent of the
   * transport keys, which `Split()` derives with an empty label. Call it after the last message
   * and before {@linkcode HandshakeState.split}.
   *
   * @example Both sides derive the same secret
   * ```ts
   * import { HandshakeState } from "@npro/network-protocol/noise";
   * import assert from "node:assert/strict";
   *
   * const protocolName = "Noise_NN_25519_ChaChaPoly_SHA256";
   * const client = new HandshakeState({ protocolName, initiator: true });
   * const server = new HandshakeState({ protocolName, initiator: false });
   * server.readMessage(client.writeMessage());
   * client.readMessage(server.writeMessage());
   * const label = new TextEncoder().encode("example");
   * assert.deepEqual(client.deriveSecret(label), server.deriveSecret(label));
   * ```
   *
   * @param label A non-empty label naming the secret's use.
   * @returns A 32-byte secret.
   * @throws {ProtocolError} `HandshakeFailed` when the handshake is not complete, failed, or was
   * already split.
   * @throws {TypeError} When the label is empty.
   */
  deriveSecret(label: Uint8Array): Uint8Array {
    this.#throwIfFailed();
    if (this.#index < this.#pattern.messages.length || this.#split) {
      throw new ProtocolError(
        "HandshakeFailed",
        "A secret is derived after the last handshake message and before the split",
      );
    }
    return this.#symmetric.deriveSecret(label);
  }

  /**
   * Derives the transport cipher states once the handshake is complete (`Split`). It can be
   * called once. For one-way patterns only the first state is used.
   *
   * @returns The initiator-to-responder state first, then the responder-to-initiator state.
   * @throws {ProtocolError} `HandshakeFailed` when the handshake is not complete, failed, or was
   * already split.
   */
  split(): [CipherState, CipherState] {
    this.#throwIfFailed();
    if (this.#index < this.#pattern.messages.length) {
      throw new ProtocolError("HandshakeFailed", "Handshake is not complete; cannot split");
    }
    if (this.#split) {
      throw new ProtocolError("HandshakeFailed", "Handshake state was already split");
    }
    this.#split = true;
    return this.#symmetric.split();
  }
}
