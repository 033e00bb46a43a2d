/**
 * The shape of a configuration: one interface per section, and the options of the functions
 * that build one. Defaults, ranges, units and environment names are not repeated here: they are
 * in the one table of `schema.ts`, and docs/CONFIGURATION.md lists them (generated from it).
 *
 * @module
 */

import type { CompressionAlgorithm } from "../core/compression_ids.ts";
import type { PatternName } from "../secure/hello.ts";
import type { TransportKind } from "../transport/types.ts";

/** The Noise handshake patterns a configuration may name: the patterns the library runs. */
export type HandshakePatternName = PatternName;

/**
 * The log level names a configuration accepts (`"warning"` is accepted as a synonym of
 * `"warn"`; names are case-insensitive).
 */
export type LogLevelName = "trace" | "debug" | "info" | "warn" | "warning" | "error" | "fatal";

/** The `[server]` section: the daemon. Durations are milliseconds. */
export interface ServerConfig {
  /**
   * Listen address: `host:port`, `[ipv6]:port`, or an absolute socket path when
   * `transport.kind` is `"unix"`. Port 0 picks a free port.
   */
  address: string;
  /**
   * In-flight requests per connection; at the limit the server stops reading that socket so TCP
   * pushes back on the peer.
   */
  backpressureLimit: number;
  /** The handshake must finish within this many milliseconds. */
  connectionTimeout: number;
  /** A connection with no traffic at all for this long is closed; 0 disables. */
  idleTimeout: number;
  /** Send a Ping after this long without traffic; a peer that misses 3 is dead. */
  heartbeatInterval: number;
  /** Graceful drain on shutdown, after which connections are closed by force. */
  shutdownTimeout: number;
  /** Connections beyond this are refused at accept time. */
  maxConnections: number;
  /** Connections still handshaking beyond this are refused at accept time. */
  maxHandshakes: number;
  /**
   * New handshakes admitted per second for the whole server (a token bucket holding one
   * second's worth); past it a new connection waits for its turn. 0 disables.
   */
  handshakeRate: number;
  /**
   * New handshakes admitted per second from one source address (IPv6 grouped by /64); 0
   * disables. Behind a proxy that hides client addresses, raise it or set 0.
   */
  handshakeRatePerAddress: number;
  /**
   * Protocol violations (unknown opcodes, empty records, ...) a connection may commit within a
   * minute; one more closes it with CLOSE code 2.
   */
  maxProtocolViolations: number;
  /**
   * Drain a connection (GOAWAY, then CLOSE 1) after about this many ms (90 to 100 %, at random);
   * 0 disables.
   */
  maxConnectionAge: number;
  /**
   * Read a PROXY protocol header (v1 or v2) at the start of every connection, within
   * `connectionTimeout`: the client address it names is the one that logs, per-address limits and
   * handlers see. Only `trustedProxies` may connect; a connection without a valid header is closed.
   */
  proxyProtocol: boolean;
  /** Addresses and CIDR ranges allowed to connect and send a PROXY header (`proxyProtocol`). */
  trustedProxies: string[];
  /**
   * On a drain (`Server.drain()`, SIGTERM to `npro serve`): how long `/readyz` reports not ready
   * while the daemon still accepts, so that a load balancer stops sending first; 0: at once.
   */
  drainGrace: number;
  /**
   * Listen with `SO_REUSEPORT` (the `tcp` transport only), so that several processes share
   * `address` and the kernel spreads connections over them.
   */
  reusePort: boolean;
  /**
   * `npro serve` runs this many daemon processes on `address` with `reusePort`; worker `i` (0 to
   * workers - 1) serves its admin endpoint on the port of `admin.address` plus `i`.
   */
  workers: number;
}

/**
 * The `[admin]` section: the health endpoint of {@linkcode serve} (docs/DEPLOYMENT.md).
 *
 * @example Turn the health endpoint on
 * ```ts
 * import { createConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = createConfig({ admin: { address: "127.0.0.1:9100" } });
 * assert.equal(config.admin.address, "127.0.0.1:9100");
 * ```
 */
export interface AdminConfig {
  /**
   * `host:port` of the HTTP admin endpoint (`/livez`, `/readyz`, `/metrics`), on its own port with its own
   * `--allow-net`; empty: off.
   */
  address: string;
}

/** The `[client]` section. Durations are milliseconds. */
export interface ClientConfig {
  /**
   * Server address: `host:port`, `[ipv6]:port`, or an absolute socket path. When
   * `transport.kind` is `"unix"` and this key is not set, the parsers use `server.address`.
   */
  address: string;
  /** Connect and handshake must finish within this many milliseconds. */
  connectionTimeout: number;
  /** A single write must finish within this many milliseconds. */
  operationTimeout: number;
  /** Wait at most this long for a reply. */
  responseTimeout: number;
  /** Send a Ping after this long without traffic. */
  heartbeatInterval: number;
  /** Reconnect after a lost connection. */
  autoReconnect: boolean;
  /** Reconnection attempts before giving up. */
  maxReconnectAttempts: number;
  /** First backoff step; each attempt waits a random time up to the (doubled) step. */
  reconnectDelay: number;
  /** Cap of the backoff step. */
  maxReconnectDelay: number;
}

/** The `[transport]` section. */
export interface TransportConfig {
  /** `"tcp"`, `"unix"` or `"tls"`. */
  kind: TransportKind;
  /** Largest packet payload in bytes, also the cap on decompressed size. */
  maxPayloadSize: number;
  /**
   * Run the Noise secure channel. `false` sends plaintext (allowed, with a warning from
   * {@linkcode configWarnings}, except over TLS).
   */
  encryptionEnabled: boolean;
  /** Permission bits of a Unix socket file. */
  unixSocketMode: number;
  /** PEM certificate chain of the TLS server; `""` for none. */
  tlsCertPath: string;
  /** PEM private key of `tlsCertPath`; `""` for none. */
  tlsKeyPath: string;
  /** PEM CA bundle to trust instead of the system roots; `""` for the system roots. */
  tlsCaPath: string;
  /** Name to verify in the server certificate; `""` means the address host. */
  tlsServerName: string;
  /** ALPN protocol names. */
  tlsAlpn: string[];
  /** The TLS implementation: `"auto"` (node when an option needs it), `"native"`, `"node"`. */
  tlsBackend: "auto" | "native" | "node";
  /** The lowest TLS version accepted: `"1.2"` or `"1.3"`. */
  tlsMinVersion: "1.2" | "1.3";
  /** Server: client certificates (mutual TLS): `"none"`, `"request"` or `"require"`. */
  tlsClientAuth: "none" | "request" | "require";
  /** Server: PEM CA bundle that signs acceptable client certificates; `""` for none. */
  tlsClientCaPath: string;
  /** Server: SHA-256 fingerprints of acceptable client certificates. */
  tlsClientCertFingerprints: string[];
  /** Server: SHA-256 SPKI hashes (base64) of acceptable client public keys. */
  tlsClientSpkiPins: string[];
  /** Client: PEM certificate chain presented to servers that ask for one; `""` for none. */
  tlsClientCertPath: string;
  /** Client: PEM private key of `tlsClientCertPath`; `""` for none. */
  tlsClientKeyPath: string;
  /** Client: SHA-256 fingerprints the server certificate must match. */
  tlsServerCertFingerprints: string[];
  /** Client: SHA-256 SPKI hashes (base64) the server's public key must match. */
  tlsServerSpkiPins: string[];
  /** Client: trust the server pins alone (no CA, name or date checks). */
  tlsPinOnly: boolean;
}

/** The `[security]` section: the Noise secure channel. */
export interface SecurityConfig {
  /** Noise handshake pattern. */
  pattern: HandshakePatternName;
  /** File holding this side's static X25519 key pair; `""` generates one per process. */
  staticKeyPath: string;
  /** base64url X25519 public keys of the servers a client accepts (pins). */
  serverKeys: string[];
  /** base64url X25519 public keys of the clients a server accepts; `[]` = no client auth. */
  allowedKeys: string[];
  /** File holding the 32-byte pre-shared key of the psk patterns; `""` for none. */
  pskPath: string;
  /** Must be `true` to use the unauthenticated NN pattern. */
  allowUnauthenticated: boolean;
  /** Known-servers file for trust on first use; `""` disables it. */
  knownServersPath: string;
  /** Rekey a direction after this many records. */
  rekeyAfterRecords: number;
  /** Rekey a direction after this many bytes. */
  rekeyAfterBytes: number;
  /** Rekey a direction after this many milliseconds. */
  rekeyAfterMs: number;
  /** Session resumption with tickets: a server issues them, a client keeps and offers them. */
  resumption: boolean;
  /** How long a session may be resumed after its full handshake, in milliseconds. */
  ticketLifetimeMs: number;
  /** How often a server replaces its ticket key, in milliseconds (at most the lifetime). */
  ticketKeyRotationMs: number;
}

/** The `[compression]` section. */
export interface CompressionConfig {
  /** Compress outgoing payloads (negotiated with the peer). */
  enabled: boolean;
  /** Algorithm used to send. */
  algorithm: CompressionAlgorithm;
  /** Zstd level 1..22; ignored by LZ4. */
  level: number;
  /** Payloads smaller than this many bytes are sent uncompressed. */
  threshold: number;
  /** Algorithms announced to and accepted from the peer. */
  accept: CompressionAlgorithm[];
}

/**
 * The `[multiplex]` section: fragmentation of large messages and streams (docs/SERVICE.md,
 * "Fragments and streams").
 *
 * @example Read the defaults
 * ```ts
 * import { defaultConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const { multiplex } = defaultConfig();
 * assert.equal(multiplex.frameSize, 65536);
 * assert.equal(multiplex.initialWindow, 262144);
 * ```
 */
export interface MultiplexConfig {
  /** Messages larger than this many bytes travel as fragments; also the largest stream chunk. */
  frameSize: number;
  /** Streams the peer may have open on one connection; more are refused. */
  maxInboundStreams: number;
  /** Streams this side may have open on one connection. */
  maxOutboundStreams: number;
  /** The receive window a stream starts with, in bytes. */
  initialWindow: number;
  /** The largest receive window of one stream (auto-tuning), in bytes. */
  maxWindow: number;
  /** The most receive window all streams of a connection hold together, in bytes. */
  connectionWindow: number;
  /** How long opening a stream waits for the peer to accept it, in ms. */
  openTimeout: number;
  /** Bytes of fragments and stream data the peer may have in flight on a connection. */
  bulkWindow: number;
}

/**
 * The `[pool]` section: the connection pool of {@linkcode createPool} (docs/SERVICE.md,
 * "Connection pool"). Durations are milliseconds.
 *
 * @example Read the defaults
 * ```ts
 * import { defaultConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const { pool } = defaultConfig();
 * assert.equal(pool.maxConnections, 4);
 * assert.equal(pool.idleTimeout, 30000);
 * ```
 */
export interface PoolConfig {
  /** Server addresses; empty: `client.address`. */
  addresses: string[];
  /** Connections kept open even when idle. */
  minConnections: number;
  /** Connections open or opening at most, over all addresses. */
  maxConnections: number;
  /** Requests in flight on one connection before another one is opened (or callers wait). */
  maxRequestsPerConnection: number;
  /** Idle connections above `minConnections` close after this long; 0 disables. */
  idleTimeout: number;
  /** Connections are drained and replaced after 90 to 100 % of this; 0 disables. */
  maxLifetime: number;
  /** How long a caller waits for capacity. */
  acquireTimeout: number;
  /** Callers that may wait for capacity at once; more fail at once. */
  maxWaiters: number;
  /** A connection idle longer than this is checked with a PING before it is used; 0 disables. */
  healthCheckIdle: number;
  /** Idle connections are checked with a PING this often; 0 disables. */
  healthCheckInterval: number;
  /** A health check fails when the PING is not answered within this time. */
  healthCheckTimeout: number;
  /** Consecutive failures to connect that open an address's circuit breaker; 0 disables. */
  breakerThreshold: number;
  /** How long an open breaker waits before it lets probes through. */
  breakerCooldown: number;
  /** The longest cool-down (it doubles after each failed probe). */
  breakerMaxCooldown: number;
  /** Connection attempts a half-open breaker lets through at once. */
  breakerProbes: number;
  /** Attempts of a request in all, when the earlier ones were provably not processed. */
  retryAttempts: number;
}

/**
 * The `[cluster]` section: peer monitoring of {@linkcode createCluster} (docs/CLUSTER.md).
 * Durations are milliseconds.
 *
 * @example Read the defaults
 * ```ts
 * import { defaultConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const { cluster } = defaultConfig();
 * assert.equal(cluster.probeInterval, 1000);
 * assert.equal(cluster.suspicionMultiplier, 4);
 * ```
 */
export interface ClusterConfig {
  /** This node's id; empty: the host name. */
  nodeId: string;
  /** Static peers, `"id@host:port"` (or `"host:port"`, known by its address). */
  peers: string[];
  /** A DNS name whose records list the peers; empty: none. */
  dnsName: string;
  /** The record type of `dnsName`: `A`, `AAAA` or `SRV`. */
  dnsRecordType: "A" | "AAAA" | "SRV";
  /** The peers' port for A and AAAA records; 0: the port of `server.address`. */
  dnsPort: number;
  /** How often the DNS name is looked up again. */
  resolveInterval: number;
  /** Time between probe rounds. */
  probeInterval: number;
  /** A direct probe fails after this long. */
  probeTimeout: number;
  /** Peers asked to probe a peer that did not answer. */
  indirectProbes: number;
  /** Suspicion timeout = this x max(1, log10 n) x `probeInterval`. */
  suspicionMultiplier: number;
  /** The largest multiplier of timeouts while this node is unhealthy (Lifeguard). */
  maxLocalHealth: number;
  /** `leave()` waits at most this long for its announcements. */
  leaveTimeout: number;
}

/** The `[logging]` section, used by the CLI's {@linkcode setupLogging}. */
export interface LoggingConfig {
  /** Application name, added to JSON records. */
  appName: string;
  /** Lowest level logged. */
  logLevel: LogLevelName;
  /** Log to standard error. */
  logToConsole: boolean;
  /** Append to `logFilePath`. */
  logToFile: boolean;
  /** Log file path (required when `logToFile` is `true`). */
  logFilePath: string;
  /** JSON Lines instead of text. */
  jsonFormat: boolean;
}

/**
 * A complete configuration. Build one with {@linkcode defaultConfig} or {@linkcode loadConfig}.
 * The default, range, unit and environment variable of every key are listed in
 * docs/CONFIGURATION.md.
 */
export interface NetworkConfig {
  /** The daemon. */
  server: ServerConfig;
  /** The client. */
  client: ClientConfig;
  /** Transport and packet limits. */
  transport: TransportConfig;
  /** The Noise secure channel. */
  security: SecurityConfig;
  /** Payload compression. */
  compression: CompressionConfig;
  /** Fragmentation and streams. */
  multiplex: MultiplexConfig;
  /** The connection pool. */
  pool: PoolConfig;
  /** Cluster peer monitoring. */
  cluster: ClusterConfig;
  /** The health endpoint. */
  admin: AdminConfig;
  /** Logging (CLI). */
  logging: LoggingConfig;
}

/** Any subset of a {@linkcode NetworkConfig}, for {@linkcode createConfig}. */
export type NetworkConfigInput = { [S in keyof NetworkConfig]?: Partial<NetworkConfig[S]> };

/**
 * Environment variables for {@linkcode parseConfig} and {@linkcode loadConfig}: a record of
 * names to values, or a getter. Only the known `NETWORK_PROTOCOL_*` names are read.
 */
export type ConfigEnv =
  | Readonly<Record<string, string | undefined>>
  | ((name: string) => string | undefined);

/** Options of {@linkcode parseConfig}. */
export interface ParseConfigOptions {
  /**
   * Environment overrides layered over the TOML: a record, a getter, or `true` for the process
   * environment (`Deno.env.get`, known names only). Default: none.
   */
  env?: ConfigEnv | boolean;
  /** Name of the document in error messages (a file path). Default `"config"`. */
  source?: string;
}

/** Options of {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /** TOML file to read; without it the defaults are used. */
  path?: string | URL;
  /**
   * Environment overrides: a record, a getter, or `true` for the process environment
   * (`Deno.env.get` of the known names only, so `--allow-env=NETWORK_PROTOCOL_*` is enough).
   * Default: none.
   */
  env?: ConfigEnv | boolean;
  /** Aborts reading the file. */
  signal?: AbortSignal;
  /** Milliseconds allowed for reading the file. Default 10000. */
  timeout?: number;
}

/** Options of {@linkcode saveConfig}. */
export interface SaveConfigOptions {
  /** Aborts the write. */
  signal?: AbortSignal;
}
