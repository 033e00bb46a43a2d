/**
 * Noise handshake patterns (rev 34 sections 7 and 9): the one-way, fundamental interactive and
 * deferred patterns, the `pskN` modifiers, and parsing of protocol names of the suite
 * `25519_ChaChaPoly_SHA256`.
 *
 * @module
 */

/** A token of a handshake message. */
export type Token = "e" | "s" | "ee" | "es" | "se" | "ss" | "psk";

/** A token of a pre-message (keys known before the handshake). */
export type PreMessageToken = "e" | "s";

/**
 * A handshake pattern, with its modifiers applied.
 *
 * @example Look at a pattern
 * ```ts
 * import { parseProtocolName } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * const { pattern } = parseProtocolName("Noise_XXpsk3_25519_ChaChaPoly_SHA256");
 * assert.deepEqual(pattern.messages[2], ["s", "se", "psk"]);
 * ```
 */
export interface HandshakePattern {
  /** The pattern name with modifiers, e.g. `XXpsk3`. */
  readonly name: string;
  /** The base pattern name, e.g. `XX`. */
  readonly baseName: string;
  /** The modifiers in order, e.g. `["psk3"]`. */
  readonly modifiers: readonly string[];
  /** The initiator's pre-message tokens (keys the responder knows in advance). */
  readonly initiatorPreMessage: readonly PreMessageToken[];
  /** The responder's pre-message tokens (keys the initiator knows in advance). */
  readonly responderPreMessage: readonly PreMessageToken[];
  /** The messages in order; the initiator writes even-indexed ones in interactive patterns. */
  readonly messages: readonly (readonly Token[])[];
  /** Whether only the initiator sends (N, K, X and their psk variants). */
  readonly oneWay: boolean;
  /** How many `psk` tokens the pattern has (the number of PSKs it needs). */
  readonly pskCount: number;
}

interface BasePattern {
  readonly i: readonly PreMessageToken[];
  readonly r: readonly PreMessageToken[];
  readonly m: readonly (readonly Token[])[];
}

const BASE_PATTERNS: Readonly<Record<string, BasePattern>> = {
  // One-way (section 7.4).
  N: { i: [], r: ["s"], m: [["e", "es"]] },
  K: { i: ["s"], r: ["s"], m: [["e", "es", "ss"]] },
  X: { i: [], r: ["s"], m: [["e", "es", "s", "ss"]] },
  // Fundamental interactive (section 7.5).
  NN: { i: [], r: [], m: [["e"], ["e", "ee"]] },
  NK: { i: [], r: ["s"], m: [["e", "es"], ["e", "ee"]] },
  NX: { i: [], r: [], m: [["e"], ["e", "ee", "s", "es"]] },
  XN: { i: [], r: [], m: [["e"], ["e", "ee"], ["s", "se"]] },
  XK: { i: [], r: ["s"], m: [["e", "es"], ["e", "ee"], ["s", "se"]] },
  XX: { i: [], r: [], m: [["e"], ["e", "ee", "s", "es"], ["s", "se"]] },
  KN: { i: ["s"], r: [], m: [["e"], ["e", "ee", "se"]] },
  KK: { i: ["s"], r: ["s"], m: [["e", "es", "ss"], ["e", "ee", "se"]] },
  KX: { i: ["s"], r: [], m: [["e"], ["e", "ee", "se", "s", "es"]] },
  IN: { i: [], r: [], m: [["e", "s"], ["e", "ee", "se"]] },
  IK: { i: [], r: ["s"], m: [["e", "es", "s", "ss"], ["e", "ee", "se"]] },
  IX: { i: [], r: [], m: [["e", "s"], ["e", "ee", "se", "s", "es"]] },
  // Deferred (section 7.6).
  NK1: { i: [], r: ["s"], m: [["e"], ["e", "ee", "es"]] },
  NX1: { i: [], r: [], m: [["e"], ["e", "ee", "s"], ["es"]] },
  X1N: { i: [], r: [], m: [["e"], ["e", "ee"], ["s"], ["se"]] },
  X1K: { i: [], r: ["s"], m: [["e", "es"], ["e", "ee"], ["s"], ["se"]] },
  XK1: { i: [], r: ["s"], m: [["e"], ["e", "ee", "es"], ["s", "se"]] },
  X1K1: { i: [], r: ["s"], m: [["e"], ["e", "ee", "es"], ["s"], ["se"]] },
  X1X: { i: [], r: [], m: [["e"], ["e", "ee", "s", "es"], ["s"], ["se"]] },
  XX1: { i: [], r: [], m: [["e"], ["e", "ee", "s"], ["es", "s", "se"]] },
  X1X1: { i: [], r: [], m: [["e"], ["e", "ee", "s"], ["es", "s"], ["se"]] },
  K1N: { i: ["s"], r: [], m: [["e"], ["e", "ee"], ["se"]] },
  K1K: { i: ["s"], r: ["s"], m: [["e", "es"], ["e", "ee"], ["se"]] },
  KK1: { i: ["s"], r: ["s"], m: [["e"], ["e", "ee", "se", "es"]] },
  K1K1: { i: ["s"], r: ["s"], m: [["e"], ["e", "ee", "es"], ["se"]] },
  K1X: { i: ["s"], r: [], m: [["e"], ["e", "ee", "s", "es"], ["se"]] },
  KX1: { i: ["s"], r: [], m: [["e"], ["e", "ee", "se", "s"], ["es"]] },
  K1X1: { i: ["s"], r: [], m: [["e"], ["e", "ee", "s"], ["se", "es"]] },
  I1N: { i: [], r: [], m: [["e", "s"], ["e", "ee"], ["se"]] },
  I1K: { i: [], r: ["s"], m: [["e", "es", "s"], ["e", "ee"], ["se"]] },
  IK1: { i: [], r: ["s"], m: [["e", "s"], ["e", "ee", "se", "es"]] },
  I1K1: { i: [], r: ["s"], m: [["e", "s"], ["e", "ee", "es"], ["se"]] },
  I1X: { i: [], r: [], m: [["e", "s"], ["e", "ee", "s", "es"], ["se"]] },
  IX1: { i: [], r: [], m: [["e", "s"], ["e", "ee", "se", "s"], ["es"]] },
  I1X1: { i: [], r: [], m: [["e", "s"], ["e", "ee", "s"], ["se", "es"]] },
};

/** The base pattern names this library knows (one-way, fundamental and deferred). */
export const PATTERN_NAMES: readonly string[] = Object.freeze(Object.keys(BASE_PATTERNS));

const ONE_WAY = new Set(["N", "K", "X"]);
const PATTERN_RE = /^([NKXI]1?[NKX]?1?)((?:psk\d+)(?:\+psk\d+)*)?$/;

/**
 * Returns a handshake pattern by name, with `pskN` modifiers applied (`psk0` puts a `psk` token
 * at the start of the first message, `pskN` at the end of message N), e.g. `XX`, `XXpsk3`,
 * `NNpsk0+psk2`.
 *
 * @example Apply a psk modifier
 * ```ts
 * import { getPattern } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(getPattern("NNpsk0").messages[0], ["psk", "e"]);
 * assert.equal(getPattern("NNpsk0").pskCount, 1);
 * ```
 *
 * @param name The pattern name with modifiers.
 * @returns The pattern.
 * @throws {TypeError} When the pattern or a modifier is unknown or invalid.
 */
export function getPattern(name: string): HandshakePattern {
  const match = PATTERN_RE.exec(name);
  const baseName = match?.[1];
  const base = baseName === undefined ? undefined : BASE_PATTERNS[baseName];
  if (match === null || baseName === undefined || base === undefined) {
    throw new TypeError(`Handshake pattern "${name}" is not supported`);
  }
  const modifiers = match[2] === undefined ? [] : match[2].split("+");
  const messages = base.m.map((tokens) => [...tokens]);
  const seen = new Set<number>();
  for (const modifier of modifiers) {
    const position = Number(modifier.slice(3));
    if (
      seen.has(position) || position > messages.length || String(position) !== modifier.slice(3)
    ) {
      throw new TypeError(`Handshake pattern modifier "${modifier}" of "${name}" is invalid`);
    }
    seen.add(position);
    if (position === 0) messages[0]!.unshift("psk");
    else messages[position - 1]!.push("psk");
  }
  return Object.freeze({
    name,
    baseName,
    modifiers: Object.freeze(modifiers),
    initiatorPreMessage: base.i,
    responderPreMessage: base.r,
    messages: Object.freeze(messages.map((tokens) => Object.freeze(tokens))),
    oneWay: ONE_WAY.has(baseName),
    pskCount: modifiers.length,
  });
}

/** A parsed Noise protocol name. */
export interface ProtocolName {
  /** The full name, e.g. `Noise_XX_25519_ChaChaPoly_SHA256`. */
  readonly name: string;
  /** The handshake pattern with modifiers applied. */
  readonly pattern: HandshakePattern;
  /** The DH function: always `25519`. */
  readonly dh: "25519";
  /** The cipher: always `ChaChaPoly`. */
  readonly cipher: "ChaChaPoly";
  /** The hash: always `SHA256`. */
  readonly hash: "SHA256";
}

/**
 * Parses a Noise protocol name of the suite `25519_ChaChaPoly_SHA256`, such as
 * `Noise_XXpsk3_25519_ChaChaPoly_SHA256`.
 *
 * @example Parse a name
 * ```ts
 * import { parseProtocolName } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * const parsed = parseProtocolName("Noise_IK_25519_ChaChaPoly_SHA256");
 * assert.equal(parsed.pattern.baseName, "IK");
 * assert.deepEqual(parsed.pattern.responderPreMessage, ["s"]);
 * ```
 *
 * @param name The protocol name.
 * @returns The parsed name.
 * @throws {TypeError} When the name is malformed or names another suite or an unknown pattern.
 */
export function parseProtocolName(name: string): ProtocolName {
  const parts = name.split("_");
  if (parts.length !== 5 || parts[0] !== "Noise") {
    throw new TypeError(`Noise protocol name "${name}" is malformed`);
  }
  if (parts[2] !== "25519" || parts[3] !== "ChaChaPoly" || parts[4] !== "SHA256") {
    throw new TypeError(
      `Noise protocol name "${name}" uses an unsupported suite; only "25519_ChaChaPoly_SHA256" is supported`,
    );
  }
  return Object.freeze({
    name,
    pattern: getPattern(parts[1]!),
    dh: "25519",
    cipher: "ChaChaPoly",
    hash: "SHA256",
  });
}
