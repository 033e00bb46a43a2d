/**
 * The default crypto provider and how it is chosen: {@linkcode hybridProvider} (node:crypto, with
 * libsodium's WebAssembly ChaCha20-Poly1305 for small inputs and HKDF once it is loaded) where
 * `node:crypto` works, otherwise `portableProvider`.
 *
 * @module
 */

import { constantTimeEqual } from "../util/bytes.ts";
import {
  authFailed,
  checkAeadArguments,
  checkCiphertext,
  checkInPlace,
  type CryptoProvider,
  nativeProvider,
  nativeWorks,
  ONE,
  portableProvider,
  TAG_LENGTH,
  TWO,
} from "./crypto.ts";
import {
  loadSodiumAead,
  SODIUM_MAX_AD,
  SODIUM_MAX_HKDF_INPUT,
  type SodiumAead,
} from "./sodium_aead.ts";

/**
 * Plaintexts up to this many bytes are sealed by libsodium once it is loaded: measured with
 * `deno bench -A bench/aead_crossover_bench.ts`, libsodium seals 64 B 5.1x, 1 KiB 2.5x and 2 KiB
 * 1.2x faster than node:crypto, and 3 KiB at the same speed.
 */
export const SODIUM_SEAL_MAX = 2048;
/**
 * Ciphertext bodies up to this many bytes are opened by libsodium once it is loaded: it opens
 * 64 B 3.4x and 1 KiB 1.5x faster than node:crypto, 2 KiB 5 % slower (same benchmark).
 */
export const SODIUM_OPEN_MAX = 1536;

/** libsodium's engine, once loaded and checked against node:crypto with a known answer. */
let sodiumEngine: SodiumAead | undefined;
let sodiumStarted: Promise<void> | undefined;

function startSodium(): Promise<void> {
  sodiumStarted ??= loadSodiumAead().then((engine) => {
    const key = new Uint8Array(32).fill(3);
    const nonce = new Uint8Array(12).fill(5);
    const expected = nativeProvider.encrypt(key, nonce, ONE, TWO);
    const sealed = engine.seal(key, nonce, ONE, TWO);
    const opened = engine.open(key, nonce, ONE, sealed);
    const inPlace = new Uint8Array(TWO.length + TAG_LENGTH);
    inPlace.set(TWO);
    engine.sealInPlace(key, nonce, ONE, inPlace, TWO.length);
    const [h1, h2, h3] = nativeProvider.hkdf(key, nonce, 3);
    const okm = engine.hkdf(key, nonce, 96);
    if (
      constantTimeEqual(expected, sealed) && constantTimeEqual(expected, inPlace) &&
      opened !== null && constantTimeEqual(opened, TWO) &&
      constantTimeEqual(okm.subarray(0, 32), h1!) && constantTimeEqual(okm.subarray(32, 64), h2!) &&
      constantTimeEqual(okm.subarray(64), h3!)
    ) {
      sodiumEngine = engine;
    }
  }, () => {
    // No WebAssembly or no memory: node:crypto does everything, as before.
  });
  return sodiumStarted;
}

function hybridEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  ad: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  const engine = sodiumEngine;
  if (engine === undefined || plaintext.length > SODIUM_SEAL_MAX || ad.length > SODIUM_MAX_AD) {
    return nativeProvider.encrypt(key, nonce, ad, plaintext);
  }
  checkAeadArguments(key, nonce);
  return engine.seal(key, nonce, ad, plaintext);
}

function hybridEncryptInPlace(
  key: Uint8Array,
  nonce: Uint8Array,
  ad: Uint8Array,
  buffer: Uint8Array,
  length: number,
): void {
  const engine = sodiumEngine;
  if (engine === undefined || length > SODIUM_SEAL_MAX || ad.length > SODIUM_MAX_AD) {
    nativeProvider.encryptInPlace!(key, nonce, ad, buffer, length);
    return;
  }
  checkAeadArguments(key, nonce);
  checkInPlace(buffer, length);
  engine.sealInPlace(key, nonce, ad, buffer, length);
}

function hybridDecrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  ad: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array {
  const engine = sodiumEngine;
  if (
    engine === undefined || ciphertext.length - TAG_LENGTH > SODIUM_OPEN_MAX ||
    ad.length > SODIUM_MAX_AD
  ) {
    return nativeProvider.decrypt(key, nonce, ad, ciphertext);
  }
  checkAeadArguments(key, nonce);
  checkCiphertext(ciphertext);
  const plaintext = engine.open(key, nonce, ad, ciphertext);
  if (plaintext === null) throw authFailed();
  return plaintext;
}

function hybridHkdf(
  chainingKey: Uint8Array,
  inputKeyMaterial: Uint8Array,
  outputs: 2 | 3,
): Uint8Array[] {
  const engine = sodiumEngine;
  if (
    engine === undefined || chainingKey.length > SODIUM_MAX_HKDF_INPUT ||
    inputKeyMaterial.length > SODIUM_MAX_HKDF_INPUT || (outputs !== 2 && outputs !== 3)
  ) {
    return nativeProvider.hkdf(chainingKey, inputKeyMaterial, outputs);
  }
  const okm = engine.hkdf(chainingKey, inputKeyMaterial, outputs * 32);
  const result = [okm.subarray(0, 32), okm.subarray(32, 64)];
  if (outputs === 3) result.push(okm.subarray(64, 96));
  return result;
}

/**
 * The default provider where `node:crypto` works: {@linkcode nativeProvider} for everything,
 * except ChaCha20-Poly1305 on small inputs (at most {@linkcode SODIUM_SEAL_MAX} bytes sealed,
 * {@linkcode SODIUM_OPEN_MAX} opened) and the Noise HKDF, which run in libsodium's WebAssembly
 * build once it is loaded: node:crypto costs 4-6 µs per AEAD call whatever the size, libsodium
 * about 1 µs at 64 B, and its HKDF is about a quarter faster (docs/PERFORMANCE.md).
 * libsodium loads in the background the first time the default provider is chosen (about 6 ms);
 * until then, and if it cannot load, node:crypto does everything. Both produce the same bytes
 * (checked with a known answer before libsodium is used); call {@linkcode initCrypto} to wait for
 * it.
 *
 * @example Seal with one engine, open with the other
 * ```ts
 * import { hybridProvider, initCrypto, nativeProvider } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * await initCrypto();
 * const key = new Uint8Array(32), nonce = new Uint8Array(12), ad = new Uint8Array(0);
 * const sealed = hybridProvider.encrypt(key, nonce, ad, new Uint8Array([1, 2, 3]));
 * assert.deepEqual(nativeProvider.decrypt(key, nonce, ad, sealed), new Uint8Array([1, 2, 3]));
 * ```
 */
export const hybridProvider: CryptoProvider = {
  ...nativeProvider,
  name: "hybrid",
  encrypt: hybridEncrypt,
  decrypt: hybridDecrypt,
  encryptInPlace: hybridEncryptInPlace,
  hkdf: hybridHkdf,
};

/**
 * Whether the default provider's small inputs run in libsodium now (for tests and benchmarks).
 *
 * @returns `true` once libsodium is loaded and checked.
 */
export function sodiumInUse(): boolean {
  return sodiumEngine !== undefined;
}

/**
 * Loads libsodium for the default provider's small-input AEAD and resolves when it is in use (or
 * known to be unavailable, in which case node:crypto keeps doing everything). Optional: without
 * it the default provider starts with node:crypto and switches by itself a few milliseconds
 * later. `serve()` calls it before listening.
 *
 * @example Wait for the fast path at start-up
 * ```ts
 * import { defaultProvider, initCrypto } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * await initCrypto();
 * assert.ok(["hybrid", "portable"].includes(defaultProvider().name));
 * ```
 *
 * @returns A promise that never rejects.
 */
export function initCrypto(): Promise<void> {
  return defaultProvider() === hybridProvider ? startSodium() : Promise.resolve();
}

let selected: CryptoProvider | undefined;

/**
 * The provider to use when none is given: {@linkcode hybridProvider} (node:crypto, with
 * libsodium for small AEAD inputs once loaded) when `node:crypto` offers a working
 * `chacha20-poly1305` and `x25519` (checked once with known answers), otherwise
 * {@linkcode portableProvider}. The first call starts loading libsodium in the background.
 *
 * @example Pick the default provider
 * ```ts
 * import { defaultProvider } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * assert.ok(["hybrid", "portable"].includes(defaultProvider().name));
 * ```
 *
 * @returns The provider for this runtime.
 */
export function defaultProvider(): CryptoProvider {
  if (selected === undefined) {
    selected = nativeWorks() ? hybridProvider : portableProvider;
    if (selected === hybridProvider) void startSodium();
  }
  return selected;
}
