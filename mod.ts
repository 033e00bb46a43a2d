/**
 * `@npro/network-protocol`: secure, fast, framed binary networking over TCP, Unix sockets and
 * TLS for Deno.
 *
 * This root module is what an application uses: {@linkcode serve} a {@linkcode Dispatcher} of
 * handlers, {@linkcode connect} a client, the message types, the errors (every failure a caller
 * is expected to catch is a {@linkcode ProtocolError} with a `code`), keys, configuration,
 * logging set-up, cluster peer monitoring ({@linkcode createCluster}), and every type needed to
 * write the options of `serve` and `connect`.
 *
 * The pieces to build your own stack are in subpaths, one concept each: `/core` (packets, the
 * stream codec, message and batch encoding), `/secure` (the handshake drivers, the encrypted
 * record channel, `seal`), `/noise` (the Noise Protocol Framework), `/compression` (LZ4, Zstd,
 * the compression policy), `/transport` (the TCP, Unix socket and TLS transports, certificates)
 * and `/testing` (an in-memory transport for tests without sockets).
 *
 * @example Serve a handler and call it
 * ```ts
 * import { connect, Dispatcher, serve } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dispatcher = new Dispatcher().register("GREET", (message) => ({
 *   type: "echo",
 *   text: message.type === "custom" ? `hello, ${new TextDecoder().decode(message.payload)}` : "?",
 * }));
 * await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
 * const { port } = server.addr as Deno.NetAddr;
 * await using client = await connect({
 *   address: `127.0.0.1:${port}`,
 *   security: { serverKeys: [server.publicKey!] },
 * });
 * const payload = new TextEncoder().encode("ada");
 * const reply = await client.request({ type: "custom", command: "GREET", payload });
 * assert.deepEqual(reply, { type: "echo", text: "hello, ada" });
 * ```
 *
 * @module
 */

// Serving and connecting.
export { serve } from "./src/service/daemon.ts";
export type { ServeOptions, Server } from "./src/service/daemon.ts";
export { connect } from "./src/service/client.ts";
export type { Client, ClientStatus, ConnectOptions } from "./src/service/client.ts";
export { createPool } from "./src/service/pool.ts";
export { registerPoolMetrics } from "./src/service/pool_metrics.ts";
export type {
  AcquireOptions,
  Pool,
  PoolAddressStats,
  PoolBreakerOptions,
  PoolEvent,
  PoolHealthCheckOptions,
  PoolLease,
  PoolOptions,
  PoolStats,
  RetryPolicy,
} from "./src/service/pool.ts";
export { CircuitOpen, PoolExhausted } from "./src/service/pool_errors.ts";
export type { PoolExhaustedReason } from "./src/service/pool_errors.ts";
export type { BreakerState } from "./src/service/circuit_breaker.ts";
export { createCluster } from "./src/service/cluster/cluster.ts";
export type {
  Cluster,
  ClusterLeaveOptions,
  ClusterOptions,
  ClusterRequestOptions,
  LocalHealthInfo,
  PickStrategy,
} from "./src/service/cluster/cluster.ts";
export type { ClusterSettingsInput } from "./src/service/cluster/options.ts";
export type {
  ClusterEvent,
  PeerInfo,
  PeerResolver,
  PeerSpec,
  PeerState,
} from "./src/service/cluster/types.ts";
export { dnsResolver } from "./src/service/cluster/resolver.ts";
export type { DnsResolverOptions, ResolveDns } from "./src/service/cluster/resolver.ts";
export { NoPeerAvailable, PeerIdentityError } from "./src/service/cluster/errors.ts";
export type { Clock } from "./src/service/cluster/clock.ts";
export type { Connection, DrainOptions } from "./src/service/connection.ts";
export type { ConnectionStats } from "./src/service/connection_stats.ts";
export { MetricsRegistry } from "./src/service/metrics.ts";
export type {
  CounterSeries,
  HistogramSeries,
  LabelledMetric,
  Labels,
  MetricFamilySnapshot,
  MetricSample,
  MetricsRegistryOptions,
} from "./src/service/metrics.ts";
export { exportToOpenTelemetry } from "./src/service/otel.ts";
export type { OpenTelemetryBatchResult, OpenTelemetryMeter } from "./src/service/otel.ts";
export type {
  CloseOptions,
  MultiplexOptions,
  RequestOptions,
  SessionInfo,
} from "./src/service/connection_options.ts";

// Handlers.
export { Dispatcher, registerStandardHandlers } from "./src/protocol/dispatcher.ts";
export type { DispatchContext, Handler, HandlerContext } from "./src/protocol/dispatcher.ts";
export type { OpenStreamOptions, Stream, StreamHandler } from "./src/protocol/stream.ts";
export {
  decodeJson,
  decodeText,
  encodeJson,
  encodeText,
  INVALID_JSON_REQUEST,
  JsonPayloadError,
} from "./src/protocol/json.ts";
export type { DecodeJsonOptions, JsonHandler, RegisterJsonOptions } from "./src/protocol/json.ts";

// Messages.
export { ErrorCodes, StreamResetCode } from "./src/core/message.ts";
export type {
  CancelMessage,
  CustomMessage,
  DisconnectMessage,
  EchoMessage,
  ErrorMessage,
  FragmentMessage,
  GoAwayMessage,
  Message,
  PingMessage,
  PongMessage,
  RequestMessage,
  ResponseMessage,
  StreamAcceptMessage,
  StreamDataMessage,
  StreamEndMessage,
  StreamOpenMessage,
  StreamResetMessage,
  StreamWindowMessage,
  TicketMessage,
  UnknownMessage,
  WindowMessage,
} from "./src/core/message.ts";

// Errors.
export { isProtocolError, ProtocolError, StreamError } from "./src/errors.ts";
export type { ProtocolErrorCode, ProtocolErrorOptions } from "./src/errors.ts";
export { PeerClosedError } from "./src/service/peer_closed_error.ts";
export { RemoteError } from "./src/service/remote_error.ts";
export { ApplicationError, MIN_APPLICATION_ERROR_CODE } from "./src/protocol/application_error.ts";
export { CloseCode } from "./src/secure/record_format.ts";

// Security options and trust on first use.
export type {
  Authorizer,
  ClientSecurityOptions,
  CommonSecurityOptions,
  ServerSecurityOptions,
  TrustOnFirstUse,
} from "./src/secure/policy.ts";
export type { PatternName } from "./src/secure/hello.ts";
export { KnownServersFile, MemoryKnownServers } from "./src/secure/known_servers.ts";
export { ServerKeyChangedError } from "./src/secure/handshake_trust.ts";
export type { KnownServers } from "./src/secure/known_servers.ts";
export { SessionTicketIssuer, SessionTicketStore } from "./src/secure/session_ticket.ts";
export type {
  ClientResumption,
  SessionTicketIssuerOptions,
  SessionTicketStoreOptions,
  StoredTicket,
  TicketState,
} from "./src/secure/session_ticket.ts";

// Keys.
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

// Configuration.
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
  AdminConfig,
  ClientConfig,
  ClusterConfig,
  CompressionConfig,
  ConfigEnv,
  HandshakePatternName,
  LoadConfigOptions,
  LoggingConfig,
  LogLevelName,
  MultiplexConfig,
  NetworkConfig,
  NetworkConfigInput,
  ParseConfigOptions,
  PoolConfig,
  SaveConfigOptions,
  SecurityConfig,
  ServerConfig,
  TransportConfig,
} from "./src/config/mod.ts";

// Logging.
export { LOG_CATEGORY } from "./src/log.ts";
export { setupLogging, toLogLevel } from "./src/log_setup.ts";
export type { LogTapeLevel, SetupLoggingOptions } from "./src/log_setup.ts";

// The types of the `transport`, `tls` and `compression` options of serve and connect.
export type {
  Listener,
  Transport,
  TransportConnectOptions,
  TransportKind,
  TransportListenOptions,
} from "./src/transport/types.ts";
export type {
  PemSource,
  TlsBackend,
  TlsClientOptions,
  TlsServerOptions,
} from "./src/transport/tls.ts";
export type { TlsPeer } from "./src/transport/tls_node.ts";
export type { PeerCertificateInfo } from "./src/transport/peer_certificate.ts";
export type { CompressionSettings } from "./src/compression/policy.ts";
export type { CompressionAlgorithm } from "./src/core/compression_ids.ts";
