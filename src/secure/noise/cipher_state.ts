/**
 * The Noise `CipherState` (rev 34 section 5.1): a key and a 64-bit counter nonce.
 *
 * @module
 */

import { ProtocolError } from "../../errors.ts";
import { type CryptoProvider, KEY_LENGTH, NONCE_LENGTH, TAG_LENGTH } from "../crypto.ts";
import { defaultProvider } from "../default_provider.ts";

/**
 * The highest nonce this library uses: 2^53 - 2. It keeps the counter a safe JavaScript integer
 * and is unreachable in practice (285 years at a million records per second). Noise reserves
 * 2^64 - 1 for {@linkcode CipherState.rekey}.
 */
export const MAX_NONCE = Number.MAX_SAFE_INTEGER - 1;

const EMPTY = new Uint8Array(0);
const ZEROS = new Uint8Array(KEY_LENGTH);
const NONCE = new Uint8Array(NONCE_LENGTH);
const NONCE_VIEW = new DataView(NONCE.buffer);
/** The reserved nonce 2^64 - 1 used by REKEY: 4 zero bytes, then 8 bytes of 0xff. */
const REKEY_NONCE = Uint8Array.of(0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);

/**
 * A Noise cipher state: ChaCha20-Poly1305 with an implicit counter nonce (4 zero bytes, then the
 * counter as a 64-bit little-endian integer). Every call is synchronous. Without a key,
 * {@linkcode CipherState.encryptWithAd} and {@linkcode CipherState.decryptWithAd} return their
 * input unchanged, as Noise specifies for the first handshake messages.
 *
 * The counter advances after every successful call. A failed decryption throws
 * `ProtocolError("AuthenticationFailed")` and leaves the counter unchanged; the caller must then
 * stop using the state (Noise section 5).
 *
 * @example Encrypt and decrypt in step
 * ```ts
 * import { CipherState } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const sender = new CipherState(key);
 * const receiver = new CipherState(key);
 * const record = sender.encryptWithAd(new Uint8Array(), new TextEncoder().encode("hi"));
 * assert.equal(new TextDecoder().decode(receiver.decryptWithAd(new Uint8Array(), record)), "hi");
 * assert.equal(receiver.nonce, 1);
 * ```
 */
export class CipherState {
  #key: Uint8Array | undefined;
  #n = 0;
  readonly #provider: CryptoProvider;

  /**
   * Creates a cipher state.
   *
   * @param key The 32-byte key (copied), or nothing for an empty state.
   * @param provider The crypto provider; {@linkcode defaultProvider} when omitted.
   */
  constructor(key?: Uint8Array, provider?: CryptoProvider) {
    this.#provider = provider ?? defaultProvider();
    this.initializeKey(key);
  }

  /**
   * Sets a new key (copied) and resets the nonce to zero (`InitializeKey`).
   *
   * @param key The 32-byte key, or `undefined` to clear it.
   */
  initializeKey(key: Uint8Array | undefined): void {
    if (key !== undefined) {
      if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
        throw new TypeError(`Cipher key must be ${KEY_LENGTH} bytes, got "${key?.length}"`);
      }
    }
    this.#key?.fill(0);
    this.#key = key?.slice();
    this.#n = 0;
  }

  /**
   * Whether the state has a key.
   *
   * @returns `true` once a key is set.
   */
  hasKey(): boolean {
    return this.#key !== undefined;
  }

  /** The next nonce (the number of messages processed since the key was set). */
  get nonce(): number {
    return this.#n;
  }

  /**
   * Sets the next nonce (`SetNonce`).
   *
   * @param n An integer from 0 to 2^53 - 1.
   */
  setNonce(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`Nonce "${n}" is not an integer from 0 to 2^53 - 1`);
    }
    this.#n = n;
  }

  #prepareNonce(): Uint8Array {
    const n = this.#n;
    if (n > MAX_NONCE) {
      throw new ProtocolError(
        "LimitExceeded",
        `Nonce "${n}" exceeds the limit "${MAX_NONCE}"; the session must end`,
      );
    }
    // One scratch nonce for every cipher state: providers use it synchronously, and a buffer
    // per state would cost about 300 bytes for each side of each idle connection.
    NONCE_VIEW.setUint32(4, n >>> 0, true);
    NONCE_VIEW.setUint32(8, Math.floor(n / 0x1_0000_0000), true);
    return NONCE;
  }

  /**
   * Encrypts `plaintext` with the next nonce and `ad` as associated data.
   *
   * @param ad The associated data.
   * @param plaintext The bytes to encrypt.
   * @returns `ciphertext || tag` in a new array, or `plaintext` itself when there is no key.
   * @throws {ProtocolError} `LimitExceeded` when the nonce would pass 2^53 - 2.
   */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const key = this.#key;
    if (key === undefined) return plaintext;
    const out = this.#provider.encrypt(key, this.#prepareNonce(), ad, plaintext);
    this.#n++;
    return out;
  }

  /**
   * Encrypts the first `length` bytes of `buffer` in place with the next nonce and `ad` as
   * associated data: the ciphertext overwrites the plaintext and the 16-byte tag follows it.
   *
   * @example Seal into a buffer with room for the tag
   * ```ts
   * import { CipherState } from "@npro/network-protocol/noise";
   * import assert from "node:assert/strict";
   *
   * const key = crypto.getRandomValues(new Uint8Array(32));
   * const buffer = new Uint8Array(2 + 16);
   * buffer.set([1, 2]);
   * assert.equal(new CipherState(key).encryptInPlace(new Uint8Array(), buffer, 2), 18);
   * assert.deepEqual(new CipherState(key).decryptWithAd(new Uint8Array(), buffer), Uint8Array.of(1, 2));
   * ```
   *
   * @param ad The associated data.
   * @param buffer The plaintext, then at least 16 bytes of room (with a key).
   * @param length The plaintext length.
   * @returns The bytes now used in `buffer`: `length + 16`, or `length` when there is no key (the
   * plaintext is left as it is).
   * @throws {RangeError} When `buffer` has no room for the tag.
   * @throws {ProtocolError} `LimitExceeded` when the nonce would pass 2^53 - 2.
   */
  encryptInPlace(ad: Uint8Array, buffer: Uint8Array, length: number): number {
    const key = this.#key;
    if (key === undefined) return length;
    const provider = this.#provider;
    const nonce = this.#prepareNonce();
    if (provider.encryptInPlace !== undefined) {
      provider.encryptInPlace(key, nonce, ad, buffer, length);
    } else {
      if (length + TAG_LENGTH > buffer.length) {
        throw new RangeError(
          `Cannot encrypt "${length}" bytes in place in a buffer of "${buffer.length}" bytes: the tag needs "${TAG_LENGTH}" more`,
        );
      }
      buffer.set(provider.encrypt(key, nonce, ad, buffer.subarray(0, length)));
    }
    this.#n++;
    return length + TAG_LENGTH;
  }

  /**
   * Decrypts `ciphertext` with the next nonce and `ad` as associated data.
   *
   * @param ad The associated data.
   * @param ciphertext `ciphertext || tag`.
   * @returns The plaintext, or `ciphertext` itself when there is no key.
   * @throws {ProtocolError} `AuthenticationFailed` when the tag does not verify (the nonce is
   * unchanged); `LimitExceeded` when the nonce would pass 2^53 - 2.
   */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const key = this.#key;
    if (key === undefined) return ciphertext;
    const out = this.#provider.decrypt(key, this.#prepareNonce(), ad, ciphertext);
    this.#n++;
    return out;
  }

  /**
   * Replaces the key with `REKEY(k)`: the first 32 bytes of encrypting 32 zero bytes with the
   * nonce 2^64 - 1 (Noise section 4.2). The nonce is not reset (section 11.3).
   */
  rekey(): void {
    const key = this.#key;
    if (key === undefined) {
      throw new ProtocolError("Internal", "Cannot rekey a cipher state that has no key");
    }
    const out = this.#provider.encrypt(key, REKEY_NONCE, EMPTY, ZEROS);
    key.set(out.subarray(0, KEY_LENGTH));
    out.fill(0);
  }

  /** Erases the key (best effort in JavaScript); the state has no key afterwards. */
  destroy(): void {
    this.#key?.fill(0);
    this.#key = undefined;
  }
}
