/**
 * The encrypted session, in pieces: the sans-I/O handshake drivers ({@linkcode ClientHandshake},
 * {@linkcode ServerHandshake}) and the functions that run them over packet I/O; the record
 * channel that a finished handshake yields ({@linkcode SecureChannel}: DATA, KEY_UPDATE and CLOSE
 * records with rekeying); the session's two stages, messages to records
 * ({@linkcode RecordEncoder}) and records to messages ({@linkcode RecordDecoder}), with their
 * Web Streams forms ({@linkcode MessageEncoderStream}, {@linkcode MessageDecoderStream},
 * {@linkcode SecureStream}); and one-shot `seal`/`open` with XChaCha20-Poly1305 for data outside
 * a session.
 *
 * `serve` and `connect` from the root run all of this for you. Use this module to put the
 * protocol's security on your own I/O. The option types of the handshake
 * (`ClientSecurityOptions`, `ServerSecurityOptions`), the key helpers and `CloseCode` are in the
 * root; the Noise states, `CipherState` and the crypto providers are in `/noise`.
 *
 * @example Run a handshake in memory, then send a record
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
 * const [record] = client.result().channel!.sealData(new TextEncoder().encode("hi"));
 * const opened = server.result().channel!.open(record!);
 * assert.equal(opened.type === "data" && new TextDecoder().decode(opened.body), "hi");
 * ```
 *
 * @module
 */

export { SecureChannel } from "./channel.ts";
export type { ChannelKeys, OpenedRecord } from "./channel.ts";
export {
  MAX_CLOSE_REASON_BYTES,
  MAX_RECORD_NONCE,
  RECORD_TAG_SIZE,
  RecordType,
} from "./record_format.ts";
export type { CloseInfo } from "./record_format.ts";
export {
  DEFAULT_MAX_KEY_UPDATES_PER_SECOND,
  DEFAULT_MIN_KEY_UPDATE_INTERVAL_MS,
  DEFAULT_REKEY_AFTER_BYTES,
  DEFAULT_REKEY_AFTER_MS,
  DEFAULT_REKEY_AFTER_RECORDS,
} from "./channel_options.ts";
export type { SecureChannelOptions } from "./channel_options.ts";
export { SecureStream } from "./stream.ts";
export { RecordDecoder } from "./record_decoder.ts";
export type { RecordDecoderHost, RecordDecoderOptions } from "./record_decoder.ts";
export { RecordEncoder } from "./record_encoder.ts";
export type { RecordEncoderOptions } from "./record_encoder.ts";
export { MessageDecoderStream } from "./message_decoder_stream.ts";
export type { MessageDecoderStreamOptions } from "./message_decoder_stream.ts";
export { MessageEncoderStream } from "./message_encoder_stream.ts";
export type { MessageEncoderStreamOptions } from "./message_encoder_stream.ts";

export { ClientHandshake, ServerHandshake } from "./handshake.ts";
export type { SessionHandshake } from "./handshake.ts";
export { MAX_HANDSHAKE_PAYLOAD } from "./handshake_driver.ts";
export type { HandshakeDriver, HandshakeResult } from "./handshake_driver.ts";
export { clientHandshake, performHandshake, serverHandshake } from "./handshake_runner.ts";
export type { HandshakeIO, HandshakeRunOptions } from "./handshake_runner.ts";
export { DEFAULT_HANDSHAKE_TIMEOUT_MS } from "./policy.ts";
export { TicketReceiver } from "./session_ticket.ts";

export {
  open,
  seal,
  SEAL_NONCE_LENGTH,
  SEAL_OVERHEAD,
  xchachaDecrypt,
  xchachaEncrypt,
} from "./seal.ts";
export type { SealOptions } from "./seal.ts";
export { constantTimeEqual } from "../util/bytes.ts";
