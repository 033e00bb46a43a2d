/**
 * The Noise Protocol Framework (revision 34) for the suite `25519_ChaChaPoly_SHA256`: cipher,
 * symmetric and handshake states, a pattern table with the one-way, interactive and deferred
 * patterns and `pskN` modifiers, and the crypto providers behind them (`node:crypto` and
 * `@noble`). It passes every cacophony test vector for this suite with both providers.
 *
 * This is the low-level layer. Most applications use the library's secure channel, which picks
 * a pattern from configuration, frames the handshake and protects records.
 *
 * @example A one-round-trip NK handshake with a pinned server key
 * ```ts
 * import { generateKeyPair, HandshakeState } from "@npro/network-protocol/noise";
 * import assert from "node:assert/strict";
 *
 * const server = generateKeyPair();
 * const protocolName = "Noise_NK_25519_ChaChaPoly_SHA256";
 * const initiator = new HandshakeState({ protocolName, initiator: true, rs: server.publicKey });
 * const responder = new HandshakeState({ protocolName, initiator: false, s: server.privateKey });
 *
 * responder.readMessage(initiator.writeMessage());
 * const reply = initiator.readMessage(responder.writeMessage(new TextEncoder().encode("hello")));
 * assert.equal(new TextDecoder().decode(reply), "hello");
 *
 * const [send] = initiator.split();
 * const [receive] = responder.split();
 * const record = send.encryptWithAd(new Uint8Array(), new Uint8Array([1, 2, 3]));
 * assert.deepEqual(receive.decryptWithAd(new Uint8Array(), record), new Uint8Array([1, 2, 3]));
 * ```
 *
 * @module
 */

export { CipherState, MAX_NONCE } from "./cipher_state.ts";
export { SymmetricState } from "./symmetric_state.ts";
export {
  HandshakeState,
  type HandshakeStateOptions,
  MAX_MESSAGE_LENGTH,
} from "./handshake_state.ts";
export {
  getPattern,
  type HandshakePattern,
  parseProtocolName,
  PATTERN_NAMES,
  type PreMessageToken,
  type ProtocolName,
  type Token,
} from "./patterns.ts";
export {
  type CryptoProvider,
  KEY_LENGTH,
  nativeProvider,
  NONCE_LENGTH,
  portableProvider,
  TAG_LENGTH,
} from "../crypto.ts";
export { defaultProvider, hybridProvider, initCrypto } from "../default_provider.ts";
export { generateKeyPair, type KeyPair, publicKeyOf } from "../keys.ts";
