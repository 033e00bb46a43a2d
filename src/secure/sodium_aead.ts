/**
 * ChaCha20-Poly1305 (IETF) through libsodium's WebAssembly build, for small inputs: Deno's
 * `node:crypto` pays a fixed cost of about 4-5 µs per call (a Node cipher object per record,
 * 14-17 µs in a running server), libsodium's raw module about 0.5 µs at 64 bytes. The module is
 * loaded asynchronously the first time it is asked for; until it is ready (and if it never is),
 * callers use `node:crypto`.
 *
 * Inputs are copied into one region of WebAssembly memory reserved at load time, sealed or
 * opened there, and copied out; the key and the plaintext are zeroed in that region after each
 * call (ciphertexts are not secret and stay until the next call overwrites them).
 *
 * @module
 */

import sodium from "libsodium-wrappers";
import { Slab } from "../core/slab.ts";

/** The largest plaintext (or ciphertext body) the region holds: above it, callers use node:crypto. */
export const SODIUM_MAX_INPUT = 4096;
/** The largest associated data the region holds (Noise uses none, or the 32-byte handshake hash). */
export const SODIUM_MAX_AD = 64;
/** The largest HKDF salt and input key material (Noise uses 32-byte chaining keys and inputs). */
export const SODIUM_MAX_HKDF_INPUT = 64;
/** The most bytes one HKDF call returns (three 32-byte Noise outputs). */
export const SODIUM_MAX_HKDF_OUTPUT = 96;

const KEY_LENGTH = 32;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;

/** The parts of libsodium's raw Emscripten module this file uses. */
interface RawSodium {
  readonly HEAPU8: Uint8Array;
  _malloc(size: number): number;
  /** (c, clen_p, m, mlen lo, mlen hi, ad, adlen lo, adlen hi, nsec, npub, k) */
  _crypto_aead_chacha20poly1305_ietf_encrypt(...args: number[]): number;
  /** (m, mlen_p, nsec, c, clen lo, clen hi, ad, adlen lo, adlen hi, npub, k) */
  _crypto_aead_chacha20poly1305_ietf_decrypt(...args: number[]): number;
  /** (prk, salt, salt_len, ikm, ikm_len) */
  _crypto_kdf_hkdf_sha256_extract(...args: number[]): number;
  /** (out, out_len, ctx, ctx_len, prk) */
  _crypto_kdf_hkdf_sha256_expand(...args: number[]): number;
}

/** Sealing and opening in libsodium's memory. */
export interface SodiumAead {
  /**
   * Seals `plaintext` (at most {@linkcode SODIUM_MAX_INPUT} bytes, `ad` at most
   * {@linkcode SODIUM_MAX_AD}).
   *
   * @param key The 32-byte key.
   * @param nonce The 12-byte nonce.
   * @param ad The associated data.
   * @param plaintext The plaintext.
   * @returns `ciphertext || tag`, a new array.
   */
  seal(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /**
   * Seals the first `length` bytes of `buffer` in place: the ciphertext overwrites them and the
   * tag follows (`buffer` has 16 bytes of room after the plaintext; `length` at most
   * {@linkcode SODIUM_MAX_INPUT}).
   *
   * @param key The 32-byte key.
   * @param nonce The 12-byte nonce.
   * @param ad The associated data.
   * @param buffer The plaintext, then room for the tag.
   * @param length The plaintext length.
   */
  sealInPlace(
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    buffer: Uint8Array,
    length: number,
  ): void;
  /**
   * Opens `ciphertext` (its body at most {@linkcode SODIUM_MAX_INPUT} bytes).
   *
   * @param key The 32-byte key.
   * @param nonce The 12-byte nonce.
   * @param ad The associated data.
   * @param ciphertext `ciphertext || tag`.
   * @returns The plaintext, or `null` when the tag does not verify. The plaintext is a view
   * into a shared block of 16 KiB (a fresh allocation per call costs more than the cipher).
   */
  open(
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    ciphertext: Uint8Array,
  ): Uint8Array | null;
  /**
   * RFC 5869 HKDF-SHA-256 with empty info (the Noise HKDF): extract with `salt`, expand to
   * `length` bytes. Salt and input at most {@linkcode SODIUM_MAX_HKDF_INPUT} bytes each, output at
   * most {@linkcode SODIUM_MAX_HKDF_OUTPUT}.
   *
   * @param salt The salt (Noise: the chaining key).
   * @param inputKeyMaterial The input key material.
   * @param length The output length.
   * @returns The output, a new array.
   */
  hkdf(salt: Uint8Array, inputKeyMaterial: Uint8Array, length: number): Uint8Array;
}

/** Refuses what would not fit in the region: writing past it would corrupt libsodium's heap. */
function checkRegion(inputLength: number, adLength: number): void {
  if (inputLength < 0 || inputLength > SODIUM_MAX_INPUT || adLength > SODIUM_MAX_AD) {
    throw new RangeError(
      `Cannot use libsodium for "${inputLength}" bytes with "${adLength}" bytes of associated data: the limits are "${SODIUM_MAX_INPUT}" and "${SODIUM_MAX_AD}"`,
    );
  }
}

class RegionAead implements SodiumAead {
  readonly #raw: RawSodium;
  readonly #key: number;
  readonly #nonce: number;
  readonly #ad: number;
  readonly #input: number;
  readonly #output: number;
  readonly #salt: number;
  readonly #ikm: number;
  readonly #prk: number;
  readonly #okm: number;
  /** Where opened plaintexts go: views into 16 KiB blocks (at most 2 KiB each). */
  readonly #slab = new Slab(16 * 1024);

  constructor(raw: RawSodium) {
    this.#raw = raw;
    const size = KEY_LENGTH + NONCE_LENGTH + SODIUM_MAX_AD + 2 * (SODIUM_MAX_INPUT + TAG_LENGTH) +
      2 * SODIUM_MAX_HKDF_INPUT + KEY_LENGTH + SODIUM_MAX_HKDF_OUTPUT;
    const base = raw._malloc(size);
    if (base === 0) throw new Error("libsodium could not reserve its buffer");
    this.#key = base;
    this.#nonce = base + KEY_LENGTH;
    this.#ad = this.#nonce + NONCE_LENGTH;
    this.#input = this.#ad + SODIUM_MAX_AD;
    this.#output = this.#input + SODIUM_MAX_INPUT + TAG_LENGTH;
    this.#salt = this.#output + SODIUM_MAX_INPUT + TAG_LENGTH;
    this.#ikm = this.#salt + SODIUM_MAX_HKDF_INPUT;
    this.#prk = this.#ikm + SODIUM_MAX_HKDF_INPUT;
    this.#okm = this.#prk + KEY_LENGTH;
  }

  hkdf(salt: Uint8Array, inputKeyMaterial: Uint8Array, length: number): Uint8Array {
    if (
      salt.length > SODIUM_MAX_HKDF_INPUT || inputKeyMaterial.length > SODIUM_MAX_HKDF_INPUT ||
      !Number.isInteger(length) || length < 1 || length > SODIUM_MAX_HKDF_OUTPUT
    ) {
      throw new RangeError(
        `Cannot use libsodium's HKDF for a "${salt.length}"-byte salt, "${inputKeyMaterial.length}" bytes of input and "${length}" bytes of output: the limits are "${SODIUM_MAX_HKDF_INPUT}", "${SODIUM_MAX_HKDF_INPUT}" and "${SODIUM_MAX_HKDF_OUTPUT}"`,
      );
    }
    const raw = this.#raw;
    const heap = raw.HEAPU8;
    heap.set(salt, this.#salt);
    heap.set(inputKeyMaterial, this.#ikm);
    raw._crypto_kdf_hkdf_sha256_extract(
      this.#prk,
      this.#salt,
      salt.length,
      this.#ikm,
      inputKeyMaterial.length,
    );
    raw._crypto_kdf_hkdf_sha256_expand(this.#okm, length, 0, 0, this.#prk);
    const out = heap.slice(this.#okm, this.#okm + length);
    // Every input and intermediate here is secret (chaining keys, DH outputs, the PRK).
    heap.fill(0, this.#salt, this.#okm + length);
    return out;
  }

  seal(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const n = plaintext.length;
    const heap = this.#encrypt(key, nonce, ad, plaintext, n);
    const out = heap.slice(this.#output, this.#output + n + TAG_LENGTH);
    heap.fill(0, this.#input, this.#input + n);
    return out;
  }

  sealInPlace(
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    buffer: Uint8Array,
    length: number,
  ): void {
    const heap = this.#encrypt(key, nonce, ad, buffer.subarray(0, length), length);
    buffer.set(heap.subarray(this.#output, this.#output + length + TAG_LENGTH));
    heap.fill(0, this.#input, this.#input + length);
  }

  /** Checks the sizes and copies the key, nonce, associated data and input into the region. */
  #load(
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    input: Uint8Array,
    n: number,
  ): Uint8Array {
    checkRegion(n, ad.length);
    // Read the heap view on every call: it changes when the module's memory grows.
    const heap = this.#raw.HEAPU8;
    heap.set(key, this.#key);
    heap.set(nonce, this.#nonce);
    if (ad.length > 0) heap.set(ad, this.#ad);
    heap.set(input, this.#input);
    return heap;
  }

  /** Encrypts into the output region; returns the heap view (the key is already erased). */
  #encrypt(
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    plaintext: Uint8Array,
    n: number,
  ): Uint8Array {
    const heap = this.#load(key, nonce, ad, plaintext, n);
    this.#raw._crypto_aead_chacha20poly1305_ietf_encrypt(
      this.#output,
      0,
      this.#input,
      n,
      0,
      this.#ad,
      ad.length,
      0,
      0,
      this.#nonce,
      this.#key,
    );
    heap.fill(0, this.#key, this.#key + KEY_LENGTH);
    return heap;
  }

  open(
    key: Uint8Array,
    nonce: Uint8Array,
    ad: Uint8Array,
    ciphertext: Uint8Array,
  ): Uint8Array | null {
    const n = ciphertext.length - TAG_LENGTH;
    const heap = this.#load(key, nonce, ad, ciphertext, n);
    const status = this.#raw._crypto_aead_chacha20poly1305_ietf_decrypt(
      this.#output,
      0,
      0,
      this.#input,
      ciphertext.length,
      0,
      this.#ad,
      ad.length,
      0,
      this.#nonce,
      this.#key,
    );
    heap.fill(0, this.#key, this.#key + KEY_LENGTH);
    if (status !== 0) return null;
    const out = this.#slab.copy(heap, this.#output, this.#output + n);
    heap.fill(0, this.#output, this.#output + n);
    return out;
  }
}

let loading: Promise<SodiumAead> | undefined;

/**
 * Loads libsodium (once; about 5-6 ms, asynchronous) and reserves its region.
 *
 * @returns The engine, once loaded.
 * @throws {Error} When the WebAssembly module cannot be loaded; later calls try again.
 */
export function loadSodiumAead(): Promise<SodiumAead> {
  loading ??= (async () => {
    await sodium.ready;
    return new RegionAead((sodium as unknown as { libsodium: RawSodium }).libsodium);
  })().catch((error) => {
    loading = undefined;
    throw error;
  });
  return loading;
}
