/**
 * `seal` and `open`: one-shot authenticated encryption with XChaCha20-Poly1305 and a random
 * 24-byte nonce, for data at rest or messages outside a Noise session (the original crate's
 * `crypto::encrypt` / `crypto::decrypt`).
 *
 * @module
 */

import { hchacha, xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ProtocolError } from "../errors.ts";
import { type CryptoProvider, KEY_LENGTH, TAG_LENGTH } from "./crypto.ts";
import { defaultProvider } from "./default_provider.ts";

/** Length in bytes of the random XChaCha20 nonce at the start of a sealed box. */
export const SEAL_NONCE_LENGTH = 24;
/** Bytes a sealed box adds to its plaintext: the nonce and the tag. */
export const SEAL_OVERHEAD: number = SEAL_NONCE_LENGTH + TAG_LENGTH;

/**
 * Options of {@linkcode seal}, {@linkcode open}, {@linkcode xchachaEncrypt} and
 * {@linkcode xchachaDecrypt}.
 */
export interface SealOptions {
  /**
   * Associated data: authenticated but neither encrypted nor stored in the box, so opening
   * must be given the same bytes (default: none).
   */
  additionalData?: Uint8Array;
  /**
   * The provider whose ChaCha20-Poly1305 runs after the HChaCha20 subkey derivation. The
   * default provider (the hybrid where node:crypto works) is the fast path; `portableProvider` gives a
   * pure-TypeScript path.
   */
  provider?: CryptoProvider;
}

const EMPTY = new Uint8Array(0);
const SIGMA = Uint32Array.of(0x61707865, 0x3320646e, 0x79622d32, 0x6b206574);
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
    throw new TypeError(
      `Seal key must be a Uint8Array of ${KEY_LENGTH} bytes, got "${
        key instanceof Uint8Array ? key.length : typeof key
      }"`,
    );
  }
}

function checkNonce(nonce: Uint8Array): void {
  if (!(nonce instanceof Uint8Array) || nonce.length !== SEAL_NONCE_LENGTH) {
    throw new RangeError(`XChaCha20 nonce length "${nonce?.length}" is not "${SEAL_NONCE_LENGTH}"`);
  }
}

/** Copies `bytes` into a fresh aligned array and views it as 32-bit words (little-endian host). */
function words(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.slice().buffer);
}

/**
 * The XChaCha20 subkey and ChaCha20 nonce for `nonce24` (draft-irtf-cfrg-xchacha section 2.3):
 * `HChaCha20(key, nonce[0..16])` and `0x00000000 || nonce[16..24]`.
 */
function derive(key: Uint8Array, nonce24: Uint8Array): { subkey: Uint8Array; nonce: Uint8Array } {
  const out = new Uint32Array(8);
  const keyWords = words(key);
  hchacha(SIGMA, keyWords, words(nonce24.subarray(0, 16)), out);
  keyWords.fill(0);
  const nonce = new Uint8Array(12);
  nonce.set(nonce24.subarray(16, 24), 4);
  return { subkey: new Uint8Array(out.buffer), nonce };
}

/**
 * XChaCha20-Poly1305 encryption with an explicit nonce. Prefer {@linkcode seal}, which draws the
 * nonce at random; a repeated nonce under one key breaks confidentiality and integrity.
 *
 * @example Encrypt with a fixed nonce (test vectors)
 * ```ts
 * import { xchachaEncrypt } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const out = xchachaEncrypt(new Uint8Array(32), new Uint8Array(24), new Uint8Array(5));
 * assert.equal(out.length, 5 + 16);
 * ```
 *
 * @param key The 32-byte key.
 * @param nonce The 24-byte nonce.
 * @param plaintext The bytes to encrypt.
 * @param options Associated data, and the provider for the ChaCha20-Poly1305 step (the default
 * one when omitted).
 * @returns `ciphertext || tag`.
 */
export function xchachaEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  options: SealOptions = {},
): Uint8Array {
  checkKey(key);
  checkNonce(nonce);
  const ad = options.additionalData ?? EMPTY;
  const provider = options.provider;
  if (!LITTLE_ENDIAN) return xchacha20poly1305(key, nonce, ad).encrypt(plaintext);
  const derived = derive(key, nonce);
  try {
    return (provider ?? defaultProvider()).encrypt(derived.subkey, derived.nonce, ad, plaintext);
  } finally {
    derived.subkey.fill(0);
  }
}

/**
 * XChaCha20-Poly1305 decryption with an explicit nonce; the counterpart of
 * {@linkcode xchachaEncrypt}. Prefer {@linkcode open}.
 *
 * @example Decrypt with a fixed nonce
 * ```ts
 * import { xchachaDecrypt, xchachaEncrypt } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const key = new Uint8Array(32), nonce = new Uint8Array(24);
 * const additionalData = new TextEncoder().encode("v1");
 * const sealed = xchachaEncrypt(key, nonce, new Uint8Array([7]), { additionalData });
 * assert.deepEqual(xchachaDecrypt(key, nonce, sealed, { additionalData }), new Uint8Array([7]));
 * ```
 *
 * @param key The 32-byte key.
 * @param nonce The 24-byte nonce.
 * @param ciphertext `ciphertext || tag`.
 * @param options The associated data given to {@linkcode xchachaEncrypt}, and the provider for
 * the ChaCha20-Poly1305 step (the default one when omitted).
 * @returns The plaintext.
 * @throws {ProtocolError} `AuthenticationFailed` when the tag does not verify.
 */
export function xchachaDecrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  options: SealOptions = {},
): Uint8Array {
  checkKey(key);
  checkNonce(nonce);
  const ad = options.additionalData ?? EMPTY;
  const provider = options.provider;
  if (!LITTLE_ENDIAN) {
    try {
      return xchacha20poly1305(key, nonce, ad).decrypt(ciphertext);
    } catch (cause) {
      throw new ProtocolError("AuthenticationFailed", "Ciphertext failed authentication", {
        cause,
      });
    }
  }
  const derived = derive(key, nonce);
  try {
    return (provider ?? defaultProvider()).decrypt(derived.subkey, derived.nonce, ad, ciphertext);
  } finally {
    derived.subkey.fill(0);
  }
}

/**
 * Encrypts and authenticates `plaintext` under a 32-byte key with XChaCha20-Poly1305 and a
 * random 24-byte nonce. The result is `nonce (24) || ciphertext || tag (16)`. Random 192-bit
 * nonces make it safe to seal any number of messages under one key.
 *
 * @example Seal and open
 * ```ts
 * import { open, seal } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const additionalData = new TextEncoder().encode("v1");
 * const box = seal(key, new TextEncoder().encode("secret"), { additionalData });
 * assert.equal(box.length, 24 + 6 + 16);
 * assert.equal(new TextDecoder().decode(open(key, box, { additionalData })), "secret");
 * ```
 *
 * @param key The 32-byte key.
 * @param plaintext The bytes to protect.
 * @param options Associated data that `open` must be given too (authenticated, not stored),
 * and the provider to use.
 * @returns The sealed box.
 * @throws {TypeError} When the key is not 32 bytes.
 */
export function seal(
  key: Uint8Array,
  plaintext: Uint8Array,
  options: SealOptions = {},
): Uint8Array {
  checkKey(key);
  const nonce = crypto.getRandomValues(new Uint8Array(SEAL_NONCE_LENGTH));
  const body = xchachaEncrypt(key, nonce, plaintext, options);
  const out = new Uint8Array(SEAL_NONCE_LENGTH + body.length);
  out.set(nonce);
  out.set(body, SEAL_NONCE_LENGTH);
  return out;
}

/**
 * Opens a box made by {@linkcode seal}: checks the tag and returns the plaintext. Nothing is
 * returned unless the box is authentic and `ad` matches.
 *
 * @example Detect tampering
 * ```ts
 * import { ProtocolError } from "@npro/network-protocol";
 * import { open, seal } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const box = seal(key, new Uint8Array([1, 2, 3]));
 * box[30]! ^= 1;
 * assert.throws(() => open(key, box), ProtocolError);
 * ```
 *
 * @param key The 32-byte key.
 * @param sealed The sealed box.
 * @param options The associated data given to `seal`, and the provider to use.
 * @returns The plaintext.
 * @throws {ProtocolError} `AuthenticationFailed` when the box is too short, was altered, or the
 * key or the associated data differ.
 */
export function open(key: Uint8Array, sealed: Uint8Array, options: SealOptions = {}): Uint8Array {
  checkKey(key);
  if (sealed.length < SEAL_OVERHEAD) {
    throw new ProtocolError(
      "AuthenticationFailed",
      `Sealed box length "${sealed.length}" is shorter than the minimum "${SEAL_OVERHEAD}"`,
    );
  }
  return xchachaDecrypt(
    key,
    sealed.subarray(0, SEAL_NONCE_LENGTH),
    sealed.subarray(SEAL_NONCE_LENGTH),
    options,
  );
}
