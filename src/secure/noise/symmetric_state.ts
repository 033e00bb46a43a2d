/**
 * The Noise `SymmetricState` (rev 34 section 5.2): the chaining key, the handshake hash and the
 * handshake cipher state.
 *
 * @module
 */

import { type CryptoProvider, KEY_LENGTH } from "../crypto.ts";
import { defaultProvider } from "../default_provider.ts";
import { CipherState } from "./cipher_state.ts";

const EMPTY = new Uint8Array(0);

/**
 * The symmetric half of a Noise handshake: it mixes every public key, DH output, PSK and
 * ciphertext into the chaining key `ck` and the handshake hash `h`, and encrypts handshake
 * payloads with `h` as associated data. {@linkcode HandshakeState} drives it; use it directly
 * only to build a custom handshake.
 *
 * @example Mix a key and encrypt a payload
 * ```ts
 * import { SymmetricState } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * const a = new SymmetricState("Noise_NN_25519_ChaChaPoly_SHA256");
 * const b = new SymmetricState("Noise_NN_25519_ChaChaPoly_SHA256");
 * const secret = new Uint8Array(32).fill(9);
 * a.mixKey(secret);
 * b.mixKey(secret);
 * const sealed = a.encryptAndHash(new Uint8Array([1, 2, 3]));
 * assert.deepEqual(b.decryptAndHash(sealed), new Uint8Array([1, 2, 3]));
 * assert.deepEqual(a.handshakeHash, b.handshakeHash);
 * ```
 */
export class SymmetricState {
  #ck: Uint8Array;
  #h: Uint8Array;
  readonly #cipher: CipherState;
  readonly #provider: CryptoProvider;

  /**
   * `InitializeSymmetric(protocolName)`: `h` is the name padded with zeros to 32 bytes, or its
   * SHA-256 when longer; `ck = h`; no key.
   *
   * @param protocolName The full Noise protocol name.
   * @param provider The crypto provider; {@linkcode defaultProvider} when omitted.
   */
  constructor(protocolName: string, provider?: CryptoProvider) {
    this.#provider = provider ?? defaultProvider();
    const name = new TextEncoder().encode(protocolName);
    if (name.length <= KEY_LENGTH) {
      this.#h = new Uint8Array(KEY_LENGTH);
      this.#h.set(name);
    } else {
      this.#h = this.#provider.sha256(name);
    }
    this.#ck = this.#h.slice();
    this.#cipher = new CipherState(undefined, this.#provider);
  }

  /**
   * `MixKey(ikm)`: `(ck, k) = HKDF(ck, ikm, 2)`, then a fresh key with nonce 0.
   *
   * @param inputKeyMaterial A DH output, a public key (PSK handshakes) or other key material.
   */
  mixKey(inputKeyMaterial: Uint8Array): void {
    const [ck, k] = this.#provider.hkdf(this.#ck, inputKeyMaterial, 2) as [Uint8Array, Uint8Array];
    this.#ck.fill(0);
    this.#ck = ck;
    this.#cipher.initializeKey(k);
    k.fill(0);
  }

  /**
   * `MixHash(data)`: `h = SHA-256(h || data)`.
   *
   * @param data The bytes to bind into the transcript.
   */
  mixHash(data: Uint8Array): void {
    this.#h = this.#provider.sha256(this.#h, data);
  }

  /**
   * `MixKeyAndHash(ikm)` for PSKs: `(ck, temp_h, k) = HKDF(ck, ikm, 3)`, `MixHash(temp_h)`, then
   * a fresh key.
   *
   * @param inputKeyMaterial The pre-shared key.
   */
  mixKeyAndHash(inputKeyMaterial: Uint8Array): void {
    const [ck, th, k] = this.#provider.hkdf(this.#ck, inputKeyMaterial, 3) as [
      Uint8Array,
      Uint8Array,
      Uint8Array,
    ];
    this.#ck.fill(0);
    this.#ck = ck;
    this.mixHash(th);
    this.#cipher.initializeKey(k);
    k.fill(0);
  }

  /** Whether a handshake key has been set (after the first DH or PSK). */
  get hasKey(): boolean {
    return this.#cipher.hasKey();
  }

  /** A copy of the handshake hash `h` (`GetHandshakeHash`). */
  get handshakeHash(): Uint8Array {
    return this.#h.slice();
  }

  /**
   * `EncryptAndHash(plaintext)`: encrypts with `h` as associated data (or passes the bytes through
   * when there is no key yet), then mixes the result into `h`.
   *
   * @param plaintext The bytes to send.
   * @returns The bytes to put in the handshake message.
   */
  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.#cipher.encryptWithAd(this.#h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  /**
   * `DecryptAndHash(ciphertext)`: decrypts with `h` as associated data (or passes the bytes
   * through when there is no key yet), then mixes the ciphertext into `h`.
   *
   * @param ciphertext The bytes from the handshake message.
   * @returns The plaintext.
   * @throws {ProtocolError} `AuthenticationFailed` when the tag does not verify.
   */
  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.#cipher.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  /**
   * Derives a secret for use outside the handshake from the chaining key, domain-separated by
   * `label`: the first output of `HKDF(ck, label, 2)` (the second is erased). `Split()` runs
   * `HKDF(ck, empty, 2)`, so a non-empty label never yields a transport key. Call it before
   * {@linkcode SymmetricState.split}, which erases `ck`.
   *
   * @param label A non-empty ASCII label naming the secret's use.
   * @returns A 32-byte secret.
   * @throws {TypeError} When the label is empty.
   */
  deriveSecret(label: Uint8Array): Uint8Array {
    if (label.length === 0) throw new TypeError("A derived secret needs a non-empty label");
    const [secret, other] = this.#provider.hkdf(this.#ck, label, 2) as [Uint8Array, Uint8Array];
    other.fill(0);
    return secret;
  }

  /**
   * `Split()`: derives the two transport cipher states, initiator-to-responder first, and erases
   * the chaining key and the handshake key. `handshakeHash` stays readable.
   *
   * @returns The initiator-to-responder and responder-to-initiator cipher states.
   */
  split(): [CipherState, CipherState] {
    const [k1, k2] = this.#provider.hkdf(this.#ck, EMPTY, 2) as [Uint8Array, Uint8Array];
    const result: [CipherState, CipherState] = [
      new CipherState(k1, this.#provider),
      new CipherState(k2, this.#provider),
    ];
    k1.fill(0);
    k2.fill(0);
    this.#ck.fill(0);
    this.#cipher.destroy();
    return result;
  }
}
