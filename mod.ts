/**
 * `@npro/network-protocol`: secure, fast, framed binary networking over TCP, Unix sockets and
 * TLS for Deno.
 *
 * The library is layered: packets and stream codecs (`encodePacket`, `PacketDecoder`),
 * messages and batches (`encodeMessage`, `encodeBatch`), and a dispatcher of handlers
 * (`Dispatcher`). Every failure a caller is expected to catch is a `ProtocolError` with a `code`.
 *
 * @example Frame, decode and dispatch a message
 * ```ts
 * import {
 *   decodeBatch,
 *   Dispatcher,
 *   encodeBatch,
 *   encodePacket,
 *   PacketDecoder,
 *   registerStandardHandlers,
 * } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const wire = encodePacket({ version: 2, payload: encodeBatch([{ type: "echo", text: "hi" }]) });
 * const [packet] = new PacketDecoder().push(wire);
 * const [message] = decodeBatch(packet!.payload);
 *
 * const dispatcher = registerStandardHandlers(new Dispatcher());
 * assert.deepEqual(await dispatcher.dispatch(message!), { type: "echo", text: "hi" });
 * ```
 *
 * @module
 */

export { isProtocolError, ProtocolError } from "./src/errors.ts";
export type { ProtocolErrorCode, ProtocolErrorOptions } from "./src/errors.ts";

export {
  decodePacket,
  encodedPacketSize,
  encodePacket,
  encodePackets,
  HEADER_SIZE,
  MAGIC_BYTES,
  MAX_PAYLOAD_SIZE,
  PROTOCOL_VERSION,
  readPacketHeader,
  SUPPORTED_VERSIONS,
  writePacket,
  writePacketHeader,
} from "./src/core/packet.ts";
export type { Packet, PacketHeaderOptions, PacketLimitOptions } from "./src/core/packet.ts";

export { PacketDecoder, PacketDecoderStream, PacketEncoderStream } from "./src/core/codec.ts";
export type { PacketDecoderOptions } from "./src/core/codec.ts";

export {
  decodeMessage,
  encodedMessageSize,
  encodeMessage,
  ErrorCodes,
  MessageTag,
  opcodeOf,
  RESERVED_OPCODES,
} from "./src/core/message.ts";
export type {
  CancelMessage,
  CustomMessage,
  DisconnectMessage,
  EchoMessage,
  ErrorMessage,
  Message,
  PingMessage,
  PongMessage,
  RequestMessage,
  ResponseMessage,
  UnknownMessage,
} from "./src/core/message.ts";
export { COMPRESSION_FLAG_MASK, decodeBatch, encodeBatch } from "./src/core/batch.ts";
export type {
  BodyCompressor,
  BodyDecompressor,
  DecodeBatchOptions,
  EncodeBatchOptions,
} from "./src/core/batch.ts";
export { COMPRESSION_IDS, compressionFeatureBit } from "./src/core/compression_ids.ts";
export type { CompressionAlgorithm } from "./src/core/compression_ids.ts";

export { Dispatcher, registerStandardHandlers } from "./src/protocol/dispatcher.ts";
export { ApplicationError, MIN_APPLICATION_ERROR_CODE } from "./src/protocol/application_error.ts";
export type { DispatchContext, Handler, HandlerContext } from "./src/protocol/dispatcher.ts";

export {
  configEnvNames,
  ConfigError,
  configWarnings,
  createConfig,
  defaultConfig,
  exampleConfig,
  loadConfig,
  parseConfig,
  saveConfig,
  stringifyConfig,
  validateConfig,
} from "./src/config/mod.ts";
export type {
  ClientConfig,
  CompressionConfig,
  ConfigEnv,
  HandshakePatternName,
  LoadConfigOptions,
  LoggingConfig,
  LogLevelName,
  NetworkConfig,
  NetworkConfigInput,
  ParseConfigOptions,
  SaveConfigOptions,
  SecurityConfig,
  ServerConfig,
  TransportConfig,
} from "./src/config/mod.ts";
export type { TransportKind } from "./src/transport/types.ts";

export { LOG_CATEGORY } from "./src/log.ts";
export { setupLogging, toLogLevel } from "./src/log_setup.ts";
export type { LogTapeLevel, SetupLoggingOptions } from "./src/log_setup.ts";

export {
  certificateFingerprint,
  createTransport,
  DEFAULT_ALPN_PROTOCOLS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MEMORY_HIGH_WATER_MARK,
  DEFAULT_UNIX_SOCKET_MODE,
  formatAddr,
  generateSelfSignedCert,
  memoryConnPair,
  MemoryTransport,
  parseHostPort,
  TcpTransport,
  tlsHandshake,
  TlsTransport,
  UnixTransport,
} from "./src/transport/mod.ts";
export type {
  HostPort,
  Listener,
  MemoryAddr,
  MemoryConn,
  MemoryConnOptions,
  MemoryConnPairOptions,
  MemoryListener,
  PemSource,
  SelfSignedCert,
  SelfSignedCertOptions,
  TcpTransportOptions,
  TlsClientOptions,
  TlsServerOptions,
  TlsTransportOptions,
  Transport,
  TransportConnectOptions,
  TransportListenOptions,
  TransportOptionsMap,
  UnixTransportOptions,
} from "./src/transport/mod.ts";

export { constantTimeEqual } from "./src/util/bytes.ts";
export {
  decodeKey,
  encodeKey,
  fingerprint,
  formatKeyFile,
  generateKeyPair,
  parseKeyFile,
  publicKeyOf,
  readKeyFile,
  writeKeyFile,
} from "./src/secure/keys.ts";
export type { KeyPair, ReadKeyFileOptions, WriteKeyFileOptions } from "./src/secure/keys.ts";
export {
  open,
  seal,
  SEAL_NONCE_LENGTH,
  SEAL_OVERHEAD,
  xchachaDecrypt,
  xchachaEncrypt,
} from "./src/secure/seal.ts";
export type { SealOptions } from "./src/secure/seal.ts";
export type { CryptoProvider } from "./src/secure/crypto.ts";
export type { CipherState } from "./src/secure/noise/cipher_state.ts";
export {
  CloseCode,
  DEFAULT_MAX_KEY_UPDATES_PER_SECOND,
  DEFAULT_MIN_KEY_UPDATE_INTERVAL_MS,
  DEFAULT_REKEY_AFTER_BYTES,
  DEFAULT_REKEY_AFTER_MS,
  DEFAULT_REKEY_AFTER_RECORDS,
  MAX_CLOSE_REASON_BYTES,
  MAX_RECORD_NONCE,
  RECORD_TAG_SIZE,
  RecordType,
  SecureChannel,
} from "./src/secure/channel.ts";
export type {
  ChannelKeys,
  CloseInfo,
  OpenedRecord,
  SecureChannelOptions,
} from "./src/secure/channel.ts";
export { ClientHandshake, MAX_HANDSHAKE_PAYLOAD, ServerHandshake } from "./src/secure/handshake.ts";
export type { HandshakeDriver, HandshakeResult, SessionHandshake } from "./src/secure/handshake.ts";
export {
  clientHandshake,
  performHandshake,
  serverHandshake,
} from "./src/secure/handshake_runner.ts";
export type { HandshakeIO, HandshakeRunOptions } from "./src/secure/handshake_runner.ts";
export { DEFAULT_HANDSHAKE_TIMEOUT_MS } from "./src/secure/policy.ts";
export type {
  Authorizer,
  ClientSecurityOptions,
  CommonSecurityOptions,
  ServerSecurityOptions,
  TrustOnFirstUse,
} from "./src/secure/policy.ts";
export type { PatternName } from "./src/secure/hello.ts";
export { KnownServersFile, MemoryKnownServers } from "./src/secure/known_servers.ts";
export type { KnownServers } from "./src/secure/known_servers.ts";
export { SecureStream } from "./src/secure/stream.ts";

export { Connection, PeerClosedError, RemoteError } from "./src/service/connection.ts";
export type {
  CloseOptions,
  ConnectionOptions,
  RequestOptions,
  SessionInfo,
} from "./src/service/connection.ts";
export { addressKey, HandshakeAdmission } from "./src/service/admission.ts";
export type { AdmissionVerdict, HandshakeAdmissionOptions } from "./src/service/admission.ts";
export { LogBudget } from "./src/log_budget.ts";
export type { LogBudgetOptions } from "./src/log_budget.ts";
export { serve } from "./src/service/daemon.ts";
export type { ServeOptions, Server } from "./src/service/daemon.ts";
export { connect } from "./src/service/client.ts";
export type { Client, ClientStatus, ConnectOptions } from "./src/service/client.ts";
export { FrameReader } from "./src/service/frame_reader.ts";
export type { FrameReaderOptions } from "./src/service/frame_reader.ts";

export { compress, decompress, initCompression } from "./src/compression/compress.ts";
export type {
  CompressOptions,
  DecompressOptions,
  InitCompressionOptions,
} from "./src/compression/compress.ts";
export {
  compressionFeatureBits,
  CompressionPolicy,
  createDecompressor,
  DEFAULT_COMPRESSION_THRESHOLD,
  DEFAULT_MAX_ENTROPY,
  DEFAULT_MIN_SAVINGS,
  localCompressionBits,
  negotiateCompression,
  planCompression,
  sampleEntropy,
} from "./src/compression/policy.ts";
export type {
  CompressionPlan,
  CompressionPolicyOptions,
  CompressionSettings,
  CompressionStats,
  DecompressorOptions,
} from "./src/compression/policy.ts";
export { inspectZstd } from "./src/compression/zstd.ts";
export type { ZstdFrameInfo } from "./src/compression/zstd.ts";
