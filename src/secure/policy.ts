/**
 * Handshake policy: which configuration maps to which Noise pattern, and the checks of remote
 * static keys (client pins, server allow-list and `authorize` callback). Every security option
 * either takes effect or makes construction throw: nothing is silently ignored, and there is
 * never a fallback from one mode to another.
 *
 * @module
 */

import type { CryptoProvider } from "./crypto.ts";
import type { SecureChannelOptions } from "./channel.ts";
import { KNOWN_FEATURES, PATTERN_NAMES, type PatternName } from "./hello.ts";
import type { KeyPair } from "./keys.ts";
import type { KnownServers } from "./known_servers.ts";
import { getPattern } from "./noise/patterns.ts";
import type { ClientResumption, SessionTicketIssuer } from "./session_ticket.ts";
import { positiveIntegerOption } from "../util/options.ts";

/** The default handshake time limit: 5 seconds. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;

/** The length of a pre-shared key and of X25519 keys. */
export const KEY_SIZE = 32;

/** Options shared by both sides. */
export interface CommonSecurityOptions {
  /**
   * `false` selects plaintext mode: no encryption at all. It works only when the other side also
   * explicitly disabled encryption (default `true`).
   */
  encryption?: boolean;
  /** The feature bitmap to announce: 0x1 lz4, 0x2 zstd (default 0). */
  features?: number;
  /** The largest record body this side accepts, announced to the peer (not announced by default). */
  maxMessageSize?: number;
  /** Options of the resulting {@linkcode SecureChannel} (rekey thresholds, clock, record size). */
  channel?: SecureChannelOptions;
  /** The crypto provider (default: `defaultProvider()`, the hybrid where node:crypto works). */
  provider?: CryptoProvider;
  /** The handshake must finish within this many milliseconds (default 5000). */
  handshakeTimeoutMs?: number;
}

/**
 * Trust on first use: remember the first server key seen under a name, then require it. It needs
 * a pattern that transmits the server's static key (XX or XXpsk3, chosen by default); the key is
 * checked, or recorded, before the client sends its last handshake message, so no data ever
 * reaches a server whose key changed.
 */
export interface TrustOnFirstUse {
  /** Where known server keys are kept. */
  store: KnownServers;
  /**
   * The name the server is known by (for example `host:port`). `connect()` uses
   * `client.address` exactly as written, so `localhost:9000` and `127.0.0.1:9000` are two entries.
   */
  name: string;
}

/** The client's security options. */
export interface ClientSecurityOptions extends CommonSecurityOptions {
  /**
   * The pattern to run. Without it: a `psk` gives NNpsk0 (no keys) or XXpsk3; one pinned server
   * key gives NK; otherwise XX. NN, IK, KK and IKpsk2 are used only when named here.
   */
  pattern?: PatternName;
  /** The client's static key pair (its identity for XX, IK, KK). XX generates one if absent. */
  staticKey?: KeyPair;
  /** Pinned server public keys (32 bytes each): one gives NK, several XX with a set check. */
  serverKeys?: readonly Uint8Array[];
  /** A 32-byte pre-shared key (selects a psk pattern). */
  psk?: Uint8Array;
  /** Trust on first use, for XX without pins. */
  knownServers?: TrustOnFirstUse;
  /**
   * Session resumption: ask the server for session tickets, keep them in `store` under `name`,
   * and offer the one kept there (once) instead of a full handshake (docs/SECURITY.md, "Session
   * resumption"). Off when absent.
   */
  resumption?: ClientResumption;
}

/** Decides whether a client's static public key may connect. */
export type Authorizer = (remoteStaticKey: Uint8Array) => boolean | Promise<boolean>;

/** The server's security options. */
export interface ServerSecurityOptions extends CommonSecurityOptions {
  /**
   * The patterns the server accepts. Default: with a `psk` and a static key, XXpsk3 and IKpsk2;
   * with a `psk` alone, NNpsk0; with mutual authentication, XX and IK; otherwise NK, XX and IK.
   * NN and KK must be listed explicitly. With `encryption: false`, only plaintext is accepted.
   */
  accept?: readonly PatternName[];
  /** The server's static key pair: required for every pattern but NN and NNpsk0. */
  staticKey?: KeyPair;
  /**
   * Client public keys allowed to connect (mutual authentication). With exactly one key, KK may
   * be accepted.
   */
  clientKeys?: readonly Uint8Array[];
  /** Called with the client's static public key (mutual authentication); `true` admits it. */
  authorize?: Authorizer;
  /** A 32-byte pre-shared key (the server then accepts only psk patterns). */
  psk?: Uint8Array;
  /**
   * Session resumption: issue a session ticket after each handshake of a client that asks for
   * one, and accept the tickets these keys sealed (docs/SECURITY.md, "Session resumption"). One
   * issuer serves every handshake of the server. Off when absent.
   */
  resumption?: SessionTicketIssuer;
}

/**
 * Facts about a pattern this library runs, derived from its tokens in `noise/patterns.ts`: the
 * server is the responder, the client the initiator.
 */
export interface PatternInfo {
  /** Noise messages in the handshake (2 or 3). */
  messages: 2 | 3;
  /** Whether the server has a static key. */
  serverStatic: boolean;
  /** Whether the client knows the server key before the handshake. */
  serverKnown: boolean;
  /** Whether the client has and sends (or pre-shares) a static key. */
  clientStatic: boolean;
  /** Whether the server knows the client key before the handshake (KK). */
  clientKnown: boolean;
  /** Whether a psk is mixed in. */
  psk: boolean;
}

/**
 * The facts of one pattern, read from its Noise definition: a side has a static key when a
 * pre-message or one of its own messages carries the token `s`, and the other side knows it
 * before the handshake when a pre-message does.
 */
function patternInfo(name: PatternName): PatternInfo {
  const pattern = getPattern(name);
  const sends = (initiator: boolean): boolean =>
    pattern.messages.some((tokens, i) => (i % 2 === 0) === initiator && tokens.includes("s"));
  const messages = pattern.messages.length;
  if (messages !== 2 && messages !== 3) {
    throw new RangeError(`Pattern "${name}" has ${messages} messages: expected 2 or 3`);
  }
  const serverKnown = pattern.responderPreMessage.includes("s");
  const clientKnown = pattern.initiatorPreMessage.includes("s");
  return Object.freeze({
    messages,
    serverStatic: serverKnown || sends(false),
    serverKnown,
    clientStatic: clientKnown || sends(true),
    clientKnown,
    psk: pattern.pskCount > 0,
  });
}

/** Per-pattern facts, for every {@linkcode PatternName}. */
export const PATTERN_INFO: Readonly<Record<PatternName, PatternInfo>> = Object.freeze(
  Object.fromEntries(PATTERN_NAMES.map((name) => [name, patternInfo(name)])) as Record<
    PatternName,
    PatternInfo
  >,
);

/** The Noise protocol name of a pattern in the suite `25519_ChaChaPoly_SHA256`. */
export function protocolName(pattern: PatternName): string {
  return `Noise_${pattern}_25519_ChaChaPoly_SHA256`;
}

/** A client configuration after validation. */
export interface ClientPolicy {
  /** Plaintext or Noise. */
  mode: "plaintext" | "noise";
  /** The pattern, in noise mode. */
  pattern?: PatternName;
  /** The client's static key, when configured. */
  staticKey?: KeyPair;
  /** Pinned server keys. */
  pins: readonly Uint8Array[];
  /** The pre-shared key, for psk patterns. */
  psk?: Uint8Array;
  /** Trust on first use, when configured. */
  knownServers?: TrustOnFirstUse;
  /** Session resumption, when configured. */
  resumption?: ClientResumption;
  /** The feature bitmap to announce. */
  features: number;
  /** The largest record body to announce. */
  maxMessageSize?: number;
  /** The handshake time limit. */
  timeoutMs: number;
}

/** A server configuration after validation. */
export interface ServerPolicy {
  /** The accepted patterns, or `"plaintext"` alone. */
  accept: ReadonlySet<PatternName | "plaintext">;
  /** The server's static key. */
  staticKey?: KeyPair;
  /** The allow-list of client keys. */
  clientKeys?: readonly Uint8Array[];
  /** The authorization callback. */
  authorize?: Authorizer;
  /** Whether client keys are checked (allow-list or callback). */
  mutual: boolean;
  /** The pre-shared key, for psk patterns. */
  psk?: Uint8Array;
  /** The session ticket keys, when resumption is on. */
  resumption?: SessionTicketIssuer;
  /** The feature bitmap to announce. */
  features: number;
  /** The largest record body to announce. */
  maxMessageSize?: number;
  /** The handshake time limit. */
  timeoutMs: number;
}

function checkKey(what: string, key: unknown): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== KEY_SIZE) {
    throw new TypeError(
      `${what} must be a ${KEY_SIZE}-byte Uint8Array, got "${
        key instanceof Uint8Array ? `${key.length} bytes` : typeof key
      }"`,
    );
  }
  return key;
}

function checkKeyPair(what: string, pair: KeyPair | undefined): KeyPair | undefined {
  if (pair === undefined) return undefined;
  checkKey(`${what} public key`, pair.publicKey);
  checkKey(`${what} private key`, pair.privateKey);
  return pair;
}

function checkCommon(options: CommonSecurityOptions): {
  features: number;
  maxMessageSize?: number;
  timeoutMs: number;
} {
  const features = options.features ?? 0;
  if (!Number.isInteger(features) || features < 0 || (features & ~KNOWN_FEATURES) !== 0) {
    throw new RangeError(
      `Cannot announce features "${features}": only the bits 0x1 (lz4) and 0x2 (zstd) are defined`,
    );
  }
  const timeoutMs = positiveIntegerOption(
    "handshake timeout",
    options.handshakeTimeoutMs,
    DEFAULT_HANDSHAKE_TIMEOUT_MS,
  );
  const out: { features: number; maxMessageSize?: number; timeoutMs: number } = {
    features,
    timeoutMs,
  };
  if (options.maxMessageSize !== undefined) {
    const max = options.maxMessageSize;
    if (!Number.isInteger(max) || max < 1 || max > 0xffff_ffff) {
      throw new RangeError(
        `Cannot use max message size "${max}": it must be an integer from 1 to 4294967295`,
      );
    }
    out.maxMessageSize = max;
  }
  return out;
}

/** Throws for the security options given (not `undefined`) that plaintext mode would ignore. */
function refuseInPlaintext(options: Record<string, unknown>): void {
  const set = Object.keys(options).filter((name) => options[name] !== undefined);
  if (set.length > 0) {
    throw new TypeError(
      `Cannot use "${
        set.join('", "')
      }" with encryption disabled: plaintext mode cannot enforce them`,
    );
  }
}

/**
 * Validates client options and chooses the pattern.
 *
 * @param options The client options.
 * @returns The validated policy.
 * @throws {TypeError} For keys of the wrong size or options that the chosen mode cannot enforce.
 */
export function resolveClientPolicy(options: ClientSecurityOptions): ClientPolicy {
  const common = checkCommon(options);
  const pins = (options.serverKeys ?? []).map((key, i) => checkKey(`Server key ${i}`, key));
  const staticKey = checkKeyPair("Client static", options.staticKey);
  const psk = options.psk === undefined ? undefined : checkKey("Pre-shared key", options.psk);
  const tofu = options.knownServers;
  const resumption = options.resumption;
  if (resumption !== undefined) checkClientResumption(resumption);
  if (options.encryption === false) {
    refuseInPlaintext({
      pattern: options.pattern,
      serverKeys: pins.length > 0 ? pins : undefined,
      staticKey,
      psk,
      knownServers: tofu,
      resumption,
    });
    return { mode: "plaintext", pins, ...common };
  }
  let pattern = options.pattern;
  if (pattern === undefined) {
    if (psk !== undefined) {
      pattern = pins.length === 0 && staticKey === undefined && tofu === undefined
        ? "NNpsk0"
        : "XXpsk3";
    } else if (pins.length === 1 && staticKey === undefined && tofu === undefined) {
      pattern = "NK";
    } else {
      pattern = "XX";
    }
  }
  const facts = PATTERN_INFO[pattern];
  if (facts === undefined) throw new TypeError(`Unknown handshake pattern "${pattern}"`);
  if (facts.psk !== (psk !== undefined)) {
    throw new TypeError(
      facts.psk
        ? `Pattern "${pattern}" needs a psk`
        : `Pattern "${pattern}" cannot use the configured psk; choose a psk pattern`,
    );
  }
  if (facts.serverKnown && pins.length !== 1) {
    throw new TypeError(`Pattern "${pattern}" needs exactly one server key, got "${pins.length}"`);
  }
  if (!facts.serverStatic && pins.length > 0) {
    throw new TypeError(`Pattern "${pattern}" cannot check the configured server keys`);
  }
  // A pattern whose server knows the client's key (KK), or that sends the client's key to a server
  // the client knows in advance (IK), is chosen to authenticate the client: it needs a configured
  // key. XX generates one for a client without.
  if ((facts.clientKnown || (facts.clientStatic && facts.serverKnown)) && staticKey === undefined) {
    throw new TypeError(`Pattern "${pattern}" needs the client's staticKey`);
  }
  if (!facts.clientStatic && staticKey !== undefined) {
    throw new TypeError(`Pattern "${pattern}" cannot send the configured client staticKey`);
  }
  if (tofu !== undefined && (facts.serverKnown || !facts.serverStatic || pins.length > 0)) {
    throw new TypeError(
      `Trust on first use needs XX or XXpsk3 without serverKeys, not "${pattern}"`,
    );
  }
  const policy: ClientPolicy = { mode: "noise", pattern, pins, ...common };
  if (staticKey !== undefined) policy.staticKey = staticKey;
  if (psk !== undefined) policy.psk = psk;
  if (tofu !== undefined) policy.knownServers = tofu;
  if (resumption !== undefined) policy.resumption = resumption;
  return policy;
}

function checkClientResumption(resumption: ClientResumption): void {
  if (
    typeof resumption !== "object" || resumption === null ||
    typeof resumption.store?.take !== "function" || typeof resumption.name !== "string" ||
    resumption.name === ""
  ) {
    throw new TypeError(
      "The resumption option must be { store: SessionTicketStore, name: a non-empty string }",
    );
  }
}

/**
 * The patterns a server accepts when its options list none (docs/PROTOCOL.md, "Patterns a server
 * accepts by default"): with a `psk` and a static key, XXpsk3 and IKpsk2; with a `psk` alone,
 * NNpsk0; with a static key and mutual authentication (`clientKeys` or `authorize`), XX and IK,
 * the patterns that carry a client key; with a static key alone, NK, XX and IK. NN and KK are
 * never accepted by default. This is the only place the rule is written: the server policy and
 * the configuration's `allow_unauthenticated` both use it.
 *
 * @example The defaults of a server with a static key
 * ```ts
 * import { defaultAcceptedPatterns } from "./policy.ts";
 * import { generateKeyPair } from "./keys.ts";
 * import assert from "node:assert/strict";
 *
 * const staticKey = generateKeyPair();
 * assert.deepEqual(defaultAcceptedPatterns({ staticKey }), ["NK", "XX", "IK"]);
 * assert.deepEqual(defaultAcceptedPatterns({ staticKey, authorize: () => true }), ["XX", "IK"]);
 * assert.deepEqual(defaultAcceptedPatterns({ psk: new Uint8Array(32) }), ["NNpsk0"]);
 * ```
 *
 * @param options The server's keys and client checks.
 * @returns The patterns, or an empty list when no pattern can run with these options (no static
 * key and no psk, or mutual authentication with a psk but no static key).
 */
export function defaultAcceptedPatterns(
  options: Pick<ServerSecurityOptions, "staticKey" | "psk" | "clientKeys" | "authorize">,
): PatternName[] {
  const mutual = options.clientKeys !== undefined || options.authorize !== undefined;
  if (options.psk !== undefined) {
    if (options.staticKey !== undefined) return ["XXpsk3", "IKpsk2"];
    return mutual ? [] : ["NNpsk0"];
  }
  if (options.staticKey === undefined) return [];
  return mutual ? ["XX", "IK"] : ["NK", "XX", "IK"];
}

/**
 * Validates server options and computes the accepted patterns.
 *
 * @param options The server options.
 * @returns The validated policy.
 * @throws {TypeError} For keys of the wrong size or a pattern the configuration cannot run or
 * enforce.
 */
export function resolveServerPolicy(options: ServerSecurityOptions): ServerPolicy {
  const common = checkCommon(options);
  const staticKey = checkKeyPair("Server static", options.staticKey);
  const clientKeys = options.clientKeys?.map((key, i) => checkKey(`Client key ${i}`, key));
  const authorize = options.authorize;
  if (authorize !== undefined && typeof authorize !== "function") {
    throw new TypeError("The authorize option must be a function");
  }
  const psk = options.psk === undefined ? undefined : checkKey("Pre-shared key", options.psk);
  const mutual = clientKeys !== undefined || authorize !== undefined;
  const resumption = options.resumption;
  if (resumption !== undefined && typeof resumption?.open !== "function") {
    throw new TypeError("The resumption option must be a SessionTicketIssuer");
  }
  if (options.encryption === false) {
    refuseInPlaintext({
      accept: options.accept,
      staticKey,
      clientKeys,
      authorize,
      psk,
      resumption,
    });
    return { accept: new Set(["plaintext"]), mutual: false, ...common };
  }
  let accept: readonly PatternName[];
  if (options.accept !== undefined) {
    if (options.accept.length === 0) throw new TypeError("The accept list is empty");
    accept = options.accept;
  } else {
    accept = defaultAcceptedPatterns(options);
    if (accept.length === 0) {
      throw new TypeError(
        psk !== undefined
          ? "Mutual authentication needs the server's staticKey"
          : "A server needs a staticKey, a psk, or an explicit accept list (NN must be listed to be used)",
      );
    }
  }
  for (const pattern of accept) {
    const facts = PATTERN_INFO[pattern];
    if (facts === undefined) throw new TypeError(`Unknown handshake pattern "${pattern}"`);
    if (facts.serverStatic && staticKey === undefined) {
      throw new TypeError(`Pattern "${pattern}" needs the server's staticKey`);
    }
    if (facts.psk !== (psk !== undefined)) {
      throw new TypeError(
        facts.psk
          ? `Pattern "${pattern}" needs a psk`
          : `Pattern "${pattern}" cannot use the configured psk; accept only psk patterns`,
      );
    }
    if (mutual && !facts.clientStatic) {
      throw new TypeError(
        `Pattern "${pattern}" cannot authenticate clients, but clientKeys or authorize is set`,
      );
    }
    if (facts.clientKnown && clientKeys?.length !== 1) {
      throw new TypeError(`Pattern "${pattern}" needs exactly one entry in clientKeys`);
    }
  }
  const policy: ServerPolicy = { accept: new Set(accept), mutual, ...common };
  if (staticKey !== undefined) policy.staticKey = staticKey;
  if (clientKeys !== undefined) policy.clientKeys = clientKeys;
  if (authorize !== undefined) policy.authorize = authorize;
  if (psk !== undefined) policy.psk = psk;
  if (resumption !== undefined) policy.resumption = resumption;
  return policy;
}
