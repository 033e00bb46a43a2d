/**
 * The configuration schema: ONE table with every key's section, TypeScript name (the TOML and
 * environment names are derived from it), kind, default, range or allowed values, unit,
 * description and the modules that read it. Everything else is generated from this table:
 * {@linkcode defaultConfig}, the type and range checks of `validateConfig`, the environment
 * variable names, `exampleConfig()`/`stringifyConfig()` comments and the key tables of
 * docs/CONFIGURATION.md (`deno task config:docs`). Rules that relate two keys are the only
 * checks written by hand (`validate.ts`).
 *
 * The table is typed by the section interfaces of `types.ts`, so the compiler refuses a key
 * without an entry, an entry without a key, and a default of the wrong type.
 *
 * @module
 */

import { COMPRESSION_ALGORITHMS } from "../core/compression_ids.ts";
import { PATTERN_NAMES } from "../secure/hello.ts";
import { DEFAULT_ALPN_PROTOCOLS } from "../transport/tls.ts";
import { TRANSPORT_KINDS } from "../transport/types.ts";
import type {
  AnySpec,
  KeyInfo,
  SectionName,
  SectionSchema,
  StringSpec,
  StringsSpec,
} from "./spec.ts";
import type { LogLevelName, NetworkConfig } from "./types.ts";

/** The prefix of every environment variable. */
export const ENV_PREFIX = "NETWORK_PROTOCOL_";

// Keyed by the union, so the compiler keeps LOG_LEVEL_NAMES complete.
const LEVELS: Record<LogLevelName, true> = {
  trace: true,
  debug: true,
  info: true,
  warn: true,
  warning: true,
  error: true,
  fatal: true,
};

/** Every {@linkcode LogLevelName}, from the lowest level to the highest. */
export const LOG_LEVEL_NAMES: readonly LogLevelName[] = Object.freeze(
  Object.keys(LEVELS) as LogLevelName[],
);

const MIB = 1024 * 1024;
const DAEMON = "service/daemon.ts";
const CLIENT = "service/client.ts";
const CONNECTION_OPTIONS = "service/connection_options.ts";
const SESSION = "service/session.ts";
const TRANSPORT_CONFIG = "service/transport_config.ts";
const LOG = "log_setup.ts";
const POOL = "service/pool.ts";
const CLUSTER = "service/cluster/options.ts";
const CLI = "cli/main.ts";

/** THE table. Sections and keys are in the order of the annotated TOML and the docs. */
export const SCHEMA: { readonly [S in SectionName]: SectionSchema<NetworkConfig[S]> } = {
  server: {
    address: {
      kind: "string",
      default: "127.0.0.1:9000",
      format: "listen-address",
      description:
        'Listen address: "host:port", "[ipv6]:port", or an absolute path when transport.kind = "unix".',
      readBy: [DAEMON],
    },
    backpressureLimit: {
      kind: "integer",
      default: 32,
      min: 1,
      max: 1_000_000,
      description: "In-flight requests per connection; at the limit the server stops reading.",
      readBy: [DAEMON],
    },
    connectionTimeout: {
      kind: "integer",
      default: 5000,
      min: 100,
      max: 300_000,
      unit: "ms",
      description: "The handshake must finish within this many ms.",
      readBy: [DAEMON, SESSION, TRANSPORT_CONFIG],
    },
    idleTimeout: {
      kind: "integer",
      default: 60_000,
      min: 100,
      max: 86_400_000,
      unit: "ms",
      zeroDisables: true,
      description: "Close a connection with no traffic for this many ms.",
      readBy: [DAEMON],
    },
    heartbeatInterval: {
      kind: "integer",
      default: 15_000,
      min: 100,
      max: 3_600_000,
      unit: "ms",
      description: "Ping after this many idle ms; a peer that misses 3 is dead.",
      readBy: [DAEMON],
    },
    shutdownTimeout: {
      kind: "integer",
      default: 10_000,
      min: 100,
      max: 600_000,
      unit: "ms",
      description: "Graceful drain on shutdown in ms, then connections are closed.",
      readBy: [DAEMON],
    },
    maxConnections: {
      kind: "integer",
      default: 1000,
      min: 1,
      max: 100_000,
      description: "Connections beyond this are refused at accept time.",
      readBy: [DAEMON],
    },
    maxHandshakes: {
      kind: "integer",
      default: 256,
      min: 1,
      max: 100_000,
      description: "Connections still handshaking beyond this are refused.",
      readBy: [DAEMON],
    },
    handshakeRate: {
      kind: "integer",
      default: 1000,
      min: 1,
      max: 1_000_000,
      zeroDisables: true,
      description: "New handshakes per second, whole server; more wait for their turn.",
      readBy: [DAEMON],
    },
    handshakeRatePerAddress: {
      kind: "integer",
      default: 100,
      min: 1,
      max: 1_000_000,
      zeroDisables: true,
      description:
        "New handshakes per second from one address, IPv6 by /64, bursts of 10 s' worth; more are refused.",
      readBy: [DAEMON],
    },
    maxProtocolViolations: {
      kind: "integer",
      default: 16,
      min: 0,
      max: 1_000_000,
      description: "Protocol violations a connection may commit per minute before CLOSE 2.",
      readBy: [DAEMON],
    },
    maxConnectionAge: {
      kind: "integer",
      default: 0,
      min: 1000,
      max: 30 * 86_400_000,
      unit: "ms",
      zeroDisables: true,
      description:
        "Drain a connection (GOAWAY, then CLOSE 1) after about this long, so that clients move to new servers; 0 keeps connections.",
      readBy: [DAEMON],
    },
    proxyProtocol: {
      kind: "boolean",
      default: false,
      description:
        "Read a PROXY v1/v2 header from every connection (within connection_timeout); its client address is the one logs, limits and handlers see.",
      readBy: [DAEMON],
    },
    trustedProxies: {
      kind: "strings",
      default: [],
      unique: true,
      itemBytes: { min: 1, max: 64 },
      description:
        'Addresses and CIDR ranges ("10.0.0.0/8", "::1") allowed to connect with proxy_protocol; others are refused.',
      readBy: [DAEMON],
    },
    drainGrace: {
      kind: "integer",
      default: 0,
      min: 0,
      max: 600_000,
      unit: "ms",
      description:
        "On a drain (SIGTERM), /readyz says not ready this long while the daemon still accepts, so that a balancer stops first.",
      readBy: [DAEMON],
    },
    reusePort: {
      kind: "boolean",
      default: false,
      description:
        "Listen with SO_REUSEPORT (tcp only), so that several processes share server.address; the kernel spreads connections over them.",
      readBy: [TRANSPORT_CONFIG],
    },
    workers: {
      kind: "integer",
      default: 1,
      min: 1,
      max: 64,
      description:
        "npro serve runs this many processes on server.address (reuse_port); worker i's admin endpoint is on admin.address's port + i.",
      readBy: [CLI],
    },
  },
  client: {
    address: {
      kind: "string",
      default: "127.0.0.1:9000",
      format: "connect-address",
      description:
        'Server address: "host:port", "[ipv6]:port", or a socket path (unix: defaults to server.address).',
      readBy: [CLIENT, SESSION],
    },
    connectionTimeout: {
      kind: "integer",
      default: 5000,
      min: 100,
      max: 300_000,
      unit: "ms",
      description: "Connect and handshake within this many ms.",
      readBy: [CLIENT, SESSION],
    },
    operationTimeout: {
      kind: "integer",
      default: 3000,
      min: 10,
      max: 300_000,
      unit: "ms",
      description: "A single write must finish within this many ms.",
      readBy: [CLIENT],
    },
    responseTimeout: {
      kind: "integer",
      default: 30_000,
      min: 100,
      max: 3_600_000,
      unit: "ms",
      description: "Wait at most this many ms for a reply.",
      readBy: [CLIENT],
    },
    heartbeatInterval: {
      kind: "integer",
      default: 15_000,
      min: 100,
      max: 3_600_000,
      unit: "ms",
      description: "Ping after this many idle ms.",
      readBy: [CLIENT],
    },
    autoReconnect: {
      kind: "boolean",
      default: true,
      description: "Reconnect after a lost connection.",
      readBy: [CLIENT],
    },
    maxReconnectAttempts: {
      kind: "integer",
      default: 3,
      min: 0,
      max: 1_000_000,
      description: "Attempts before giving up; must be > 0 when auto_reconnect is on.",
      readBy: [CLIENT],
    },
    reconnectDelay: {
      kind: "integer",
      default: 1000,
      min: 10,
      max: 60_000,
      unit: "ms",
      description: "First backoff step in ms; exponential with full jitter.",
      readBy: [CLIENT],
    },
    maxReconnectDelay: {
      kind: "integer",
      default: 30_000,
      min: 10,
      max: 3_600_000,
      unit: "ms",
      description: "Cap of the backoff step in ms; not less than reconnect_delay.",
      readBy: [CLIENT],
    },
  },
  transport: {
    kind: {
      kind: "string",
      default: "tcp",
      values: TRANSPORT_KINDS,
      description: "The transport of the daemon and the client.",
      readBy: [TRANSPORT_CONFIG],
    },
    maxPayloadSize: {
      kind: "integer",
      default: 16 * MIB,
      min: 1024,
      max: 100 * MIB,
      unit: "bytes",
      description: "Largest packet payload in bytes, also the decompressed-size cap.",
      readBy: [DAEMON, CLIENT, SESSION],
    },
    encryptionEnabled: {
      kind: "boolean",
      default: true,
      description: "Run the Noise secure channel (false = plaintext; allowed, with a warning).",
      readBy: [SESSION],
    },
    unixSocketMode: {
      kind: "integer",
      default: 0o600,
      min: 0o000,
      max: 0o777,
      octal: true,
      description: "Permission bits of a Unix socket file.",
      readBy: [TRANSPORT_CONFIG],
    },
    tlsCertPath: {
      kind: "string",
      default: "",
      description:
        "PEM certificate chain of the TLS server (a client's own is tls_client_cert_path).",
      readBy: [TRANSPORT_CONFIG],
    },
    tlsKeyPath: {
      kind: "string",
      default: "",
      description: "PEM private key of tls_cert_path.",
      readBy: [TRANSPORT_CONFIG],
    },
    tlsCaPath: {
      kind: "string",
      default: "",
      description: 'PEM CA bundle to trust instead of the system roots ("" = system roots).',
      readBy: [TRANSPORT_CONFIG],
    },
    tlsServerName: {
      kind: "string",
      default: "",
      format: "host-name",
      description: 'Name to verify in the server certificate ("" = the address host).',
      readBy: [TRANSPORT_CONFIG],
    },
    tlsAlpn: {
      kind: "strings",
      default: [...DEFAULT_ALPN_PROTOCOLS],
      itemBytes: { min: 1, max: 255 },
      description: "ALPN protocol names.",
      readBy: [TRANSPORT_CONFIG],
    },
    tlsBackend: {
      kind: "string",
      default: "auto",
      values: ["auto", "native", "node"],
      description:
        'TLS implementation: "native" (Deno\'s rustls), "node" (node:tls: mTLS, pins), "auto" (node when an option needs it).',
      readBy: [TRANSPORT_CONFIG],
    },
    tlsMinVersion: {
      kind: "string",
      default: "1.2",
      values: ["1.2", "1.3"],
      description: 'Lowest TLS version accepted ("1.3" needs the node backend).',
      readBy: [TRANSPORT_CONFIG],
    },
    tlsClientAuth: {
      kind: "string",
      default: "none",
      values: ["none", "request", "require"],
      description:
        'Server: ask for client certificates (mutual TLS); the original\'s verify_client = true is "require".',
      readBy: [TRANSPORT_CONFIG],
    },
    tlsClientCaPath: {
      kind: "string",
      default: "",
      description:
        "Server: PEM CA bundle that signs acceptable client certificates (the original's server ca_path).",
      readBy: [TRANSPORT_CONFIG],
    },
    tlsClientCertFingerprints: {
      kind: "strings",
      default: [],
      unique: true,
      description:
        'Server: SHA-256 fingerprints of acceptable client certificates ("AB:CD:..."), no CA needed.',
      readBy: [TRANSPORT_CONFIG],
    },
    tlsClientSpkiPins: {
      kind: "strings",
      default: [],
      unique: true,
      description:
        "Server: SHA-256 SPKI hashes (base64) of acceptable client public keys, no CA needed.",
      readBy: [TRANSPORT_CONFIG],
    },
    tlsClientCertPath: {
      kind: "string",
      default: "",
      description: "Client: PEM certificate chain presented to servers that ask for one.",
      readBy: [TRANSPORT_CONFIG],
    },
    tlsClientKeyPath: {
      kind: "string",
      default: "",
      description: "Client: PEM private key of tls_client_cert_path.",
      readBy: [TRANSPORT_CONFIG],
    },
    tlsServerCertFingerprints: {
      kind: "strings",
      default: [],
      unique: true,
      description:
        'Client: SHA-256 fingerprints the server certificate must match ("AB:CD:..."); [] = no pin.',
      readBy: [TRANSPORT_CONFIG],
    },
    tlsServerSpkiPins: {
      kind: "strings",
      default: [],
      unique: true,
      description:
        "Client: SHA-256 SPKI hashes (base64) of the server's public key; one match of either kind suffices.",
      readBy: [TRANSPORT_CONFIG],
    },
    tlsPinOnly: {
      kind: "boolean",
      default: false,
      description:
        "Client: trust the server pins alone (no CA, name or date checks; for self-signed servers).",
      readBy: [TRANSPORT_CONFIG],
    },
  },
  security: {
    pattern: {
      kind: "string",
      default: "XX",
      values: PATTERN_NAMES,
      description: "Noise handshake pattern.",
      readBy: [SESSION],
    },
    staticKeyPath: {
      kind: "string",
      default: "",
      description:
        'File with this side\'s static key pair ("" = a new key per process when the patterns need one).',
      readBy: [SESSION],
    },
    serverKeys: {
      kind: "strings",
      default: [],
      keys: true,
      unique: true,
      description: "Server public keys a client accepts (pins); [] = no pinning (warned).",
      readBy: [SESSION],
    },
    allowedKeys: {
      kind: "strings",
      default: [],
      keys: true,
      unique: true,
      description: "Client public keys a server accepts; [] = no client authentication.",
      readBy: [SESSION],
    },
    pskPath: {
      kind: "string",
      default: "",
      description: "File with the 32-byte pre-shared key (psk patterns only).",
      readBy: [SESSION],
    },
    allowUnauthenticated: {
      kind: "boolean",
      default: false,
      description: 'Must be true to use the unauthenticated "NN" pattern.',
      readBy: [SESSION],
    },
    knownServersPath: {
      kind: "string",
      default: "",
      description:
        'Known-servers file for trust on first use, keyed by client.address ("" = disabled; its directory must exist).',
      readBy: [SESSION],
    },
    rekeyAfterRecords: {
      kind: "integer",
      default: 1_048_576,
      min: 1,
      max: 2 ** 53 - 2,
      description: "Rekey a direction after this many records.",
      readBy: [SESSION],
    },
    rekeyAfterBytes: {
      kind: "integer",
      default: 1024 * MIB,
      min: 1024,
      max: Number.MAX_SAFE_INTEGER,
      unit: "bytes",
      description: "Rekey a direction after this many bytes.",
      readBy: [SESSION],
    },
    rekeyAfterMs: {
      kind: "integer",
      default: 600_000,
      min: 1000,
      max: 86_400_000,
      unit: "ms",
      description: "Rekey a direction after this many ms.",
      readBy: [SESSION],
    },
    resumption: {
      kind: "boolean",
      default: false,
      description:
        "Session resumption: servers issue session tickets, clients resume with them (1 keygen + 1 DH per side).",
      readBy: [SESSION],
    },
    ticketLifetimeMs: {
      kind: "integer",
      default: 3_600_000,
      min: 1000,
      max: 604_800_000,
      unit: "ms",
      description:
        "Server: a session may be resumed for this many ms after its full handshake (at most 7 days).",
      readBy: [SESSION],
    },
    ticketKeyRotationMs: {
      kind: "integer",
      default: 3_600_000,
      min: 1000,
      max: 604_800_000,
      unit: "ms",
      description:
        "Server: the ticket key is replaced every this many ms; at most ticket_lifetime_ms.",
      readBy: [SESSION],
    },
  },
  compression: {
    enabled: {
      kind: "boolean",
      default: false,
      description: "Compress outgoing payloads (negotiated).",
      readBy: [SESSION],
    },
    algorithm: {
      kind: "string",
      default: "lz4",
      values: COMPRESSION_ALGORITHMS,
      description: "Algorithm used to send.",
      readBy: [SESSION],
    },
    level: {
      kind: "integer",
      default: 3,
      min: 1,
      max: 22,
      description: "Zstd level; ignored by lz4.",
      readBy: [SESSION],
    },
    threshold: {
      kind: "integer",
      default: 512,
      min: 0,
      max: 100 * MIB,
      unit: "bytes",
      description:
        "Payloads smaller than this many bytes are sent uncompressed; at most max_payload_size.",
      readBy: [SESSION],
    },
    accept: {
      kind: "strings",
      default: ["lz4", "zstd"],
      values: COMPRESSION_ALGORITHMS,
      unique: true,
      description: "Algorithms announced to and accepted from the peer when `enabled` is true; " +
        "with compression off no compression bit is announced.",
      readBy: [SESSION],
    },
  },
  multiplex: {
    frameSize: {
      kind: "integer",
      default: 65_536,
      min: 1024,
      max: 16 * MIB,
      unit: "bytes",
      description:
        "Messages larger than this travel as fragments, interleaved with other traffic; also the largest stream chunk.",
      readBy: [CONNECTION_OPTIONS],
    },
    maxInboundStreams: {
      kind: "integer",
      default: 100,
      min: 0,
      max: 100_000,
      description: "Streams the peer may have open on one connection; more are refused.",
      readBy: [CONNECTION_OPTIONS],
    },
    maxOutboundStreams: {
      kind: "integer",
      default: 100,
      min: 0,
      max: 100_000,
      description: "Streams this side may have open on one connection.",
      readBy: [CONNECTION_OPTIONS],
    },
    initialWindow: {
      kind: "integer",
      default: 262_144,
      min: 1024,
      max: 1024 * MIB,
      unit: "bytes",
      description: "Receive window a stream starts with.",
      readBy: [CONNECTION_OPTIONS],
    },
    maxWindow: {
      kind: "integer",
      default: 16 * MIB,
      min: 1024,
      max: 4095 * MIB,
      unit: "bytes",
      description:
        "Largest receive window of one stream: the window doubles while the reader keeps up.",
      readBy: [CONNECTION_OPTIONS],
    },
    connectionWindow: {
      kind: "integer",
      default: 64 * MIB,
      min: 1024,
      max: 64 * 1024 * MIB,
      unit: "bytes",
      description:
        "Receive window of all streams of a connection together: the memory they may buffer; at least (max_inbound_streams + max_outbound_streams) x initial_window.",
      readBy: [CONNECTION_OPTIONS],
    },
    openTimeout: {
      kind: "integer",
      default: 10_000,
      min: 10,
      max: 600_000,
      unit: "ms",
      description: "Opening a stream fails when the peer has not accepted it within this time.",
      readBy: [CONNECTION_OPTIONS],
    },
    bulkWindow: {
      kind: "integer",
      default: 1_048_576,
      min: 131_072,
      max: 4095 * MIB,
      unit: "bytes",
      description:
        "Bytes of fragments and stream data the peer may have in flight on a connection (at least two frames): bulk alone uses all of it, beside small messages the sender keeps at most 36 KiB in flight; raise it for links with a large bandwidth x delay.",
      readBy: [CONNECTION_OPTIONS],
    },
  },
  pool: {
    addresses: {
      kind: "strings",
      default: [],
      description:
        'Server addresses ("host:port", "[ipv6]:port" or a socket path) the pool spreads connections over; empty: client.address.',
      readBy: [POOL],
    },
    minConnections: {
      kind: "integer",
      default: 0,
      min: 0,
      max: 10_000,
      description:
        "Connections kept open even when idle (opened at start); at most max_connections.",
      readBy: [POOL],
    },
    maxConnections: {
      kind: "integer",
      default: 4,
      min: 1,
      max: 10_000,
      description: "Connections open or opening at most, over all addresses (leases included).",
      readBy: [POOL],
    },
    maxRequestsPerConnection: {
      kind: "integer",
      default: 100,
      min: 1,
      max: 1_000_000,
      description:
        "Requests in flight on one connection; when every connection has this many, another is opened or callers wait.",
      readBy: [POOL],
    },
    idleTimeout: {
      kind: "integer",
      default: 30_000,
      min: 100,
      max: 86_400_000,
      unit: "ms",
      zeroDisables: true,
      description:
        "Idle connections above min_connections close after this long; createPool requires it below server.idle_timeout.",
      readBy: [POOL],
    },
    maxLifetime: {
      kind: "integer",
      default: 1_800_000,
      min: 1000,
      max: 30 * 86_400_000,
      unit: "ms",
      zeroDisables: true,
      description:
        "A connection takes no new requests after 90 to 100 % of this (at random), finishes those in flight, closes and is replaced.",
      readBy: [POOL],
    },
    acquireTimeout: {
      kind: "integer",
      default: 5000,
      min: 1,
      max: 3_600_000,
      unit: "ms",
      description:
        "A caller waits at most this long for capacity (and never past its own time limit), then fails with PoolExhausted.",
      readBy: [POOL],
    },
    maxWaiters: {
      kind: "integer",
      default: 1000,
      min: 0,
      max: 1_000_000,
      description:
        "Callers waiting for capacity at once; one more fails at once with PoolExhausted.",
      readBy: [POOL],
    },
    healthCheckIdle: {
      kind: "integer",
      default: 5000,
      min: 1,
      max: 86_400_000,
      unit: "ms",
      zeroDisables: true,
      description: "A connection idle longer than this is checked with a PING before it is used.",
      readBy: [POOL],
    },
    healthCheckInterval: {
      kind: "integer",
      default: 30_000,
      min: 10,
      max: 86_400_000,
      unit: "ms",
      zeroDisables: true,
      description: "Idle connections are checked with a PING this often.",
      readBy: [POOL],
    },
    healthCheckTimeout: {
      kind: "integer",
      default: 2000,
      min: 1,
      max: 300_000,
      unit: "ms",
      description:
        "A PING not answered within this time fails the check and closes the connection.",
      readBy: [POOL],
    },
    breakerThreshold: {
      kind: "integer",
      default: 5,
      min: 0,
      max: 1_000_000,
      description:
        "Consecutive failures to connect (or health checks) that open an address's circuit breaker; 0 disables it.",
      readBy: [POOL],
    },
    breakerCooldown: {
      kind: "integer",
      default: 10_000,
      min: 1,
      max: 3_600_000,
      unit: "ms",
      description: "An open breaker tries no connection for this long, then lets probes through.",
      readBy: [POOL],
    },
    breakerMaxCooldown: {
      kind: "integer",
      default: 60_000,
      min: 1,
      max: 3_600_000,
      unit: "ms",
      description:
        "The cool-down doubles after each failed probe, up to this; not less than breaker_cooldown.",
      readBy: [POOL],
    },
    breakerProbes: {
      kind: "integer",
      default: 1,
      min: 1,
      max: 1000,
      description:
        "Connection attempts (connect and PING) a half-open breaker lets through at once.",
      readBy: [POOL],
    },
    retryAttempts: {
      kind: "integer",
      default: 3,
      min: 1,
      max: 100,
      description:
        "Attempts of a request in all, counting the first, when the earlier ones were provably not processed (never written, or NotProcessed after GOAWAY).",
      readBy: [POOL],
    },
  },
  cluster: {
    nodeId: {
      kind: "string",
      default: "",
      length: { min: 0, max: 255 },
      description:
        "This node's id in the cluster (what its answers report); empty: the host name (needs --allow-sys=hostname).",
      readBy: [CLUSTER],
    },
    peers: {
      kind: "strings",
      default: [],
      itemBytes: { min: 1, max: 600 },
      unique: true,
      description:
        'Static peers: "id@host:port" (the peer must report that id), or "host:port" (known by its address).',
      readBy: [CLUSTER],
    },
    dnsName: {
      kind: "string",
      default: "",
      length: { min: 0, max: 253 },
      description:
        'A DNS name whose records list the peers (a Kubernetes headless Service, Consul); "" is none.',
      readBy: [CLUSTER],
    },
    dnsRecordType: {
      kind: "string",
      default: "A",
      values: ["A", "AAAA", "SRV"],
      description: "The record type of dns_name; SRV records give each peer's port.",
      readBy: [CLUSTER],
    },
    dnsPort: {
      kind: "integer",
      default: 0,
      min: 0,
      max: 65_535,
      description: "The peers' port for A and AAAA records; 0 is the port of server.address.",
      readBy: [CLUSTER],
    },
    resolveInterval: {
      kind: "integer",
      default: 30_000,
      min: 100,
      max: 86_400_000,
      unit: "ms",
      description: "How often dns_name is looked up again (a failed lookup keeps the last list).",
      readBy: [CLUSTER],
    },
    probeInterval: {
      kind: "integer",
      default: 1000,
      min: 10,
      max: 600_000,
      unit: "ms",
      description:
        "Time between probe rounds (each round probes every peer once); shorter detects sooner and costs more messages.",
      readBy: [CLUSTER],
    },
    probeTimeout: {
      kind: "integer",
      default: 500,
      min: 5,
      max: 600_000,
      unit: "ms",
      description:
        "A direct probe fails after this long; keep it above the 99th percentile round trip, below probe_interval.",
      readBy: [CLUSTER],
    },
    indirectProbes: {
      kind: "integer",
      default: 3,
      min: 0,
      max: 16,
      description:
        "Peers asked to probe a peer that did not answer before it is suspected (0 disables indirect probes).",
      readBy: [CLUSTER],
    },
    suspicionMultiplier: {
      kind: "integer",
      default: 4,
      min: 1,
      max: 100,
      description:
        "A suspect is declared dead after this x max(1, log10 n) x probe_interval without refuting (n: the cluster size).",
      readBy: [CLUSTER],
    },
    maxLocalHealth: {
      kind: "integer",
      default: 8,
      min: 1,
      max: 64,
      description:
        "Lifeguard: the largest multiplier of probe intervals and timeouts while this node itself is unhealthy (1 keeps them fixed; a stall still holds verdicts back).",
      readBy: [CLUSTER],
    },
    leaveTimeout: {
      kind: "integer",
      default: 2000,
      min: 1,
      max: 300_000,
      unit: "ms",
      description: "leave() waits at most this long for the peers to hear of it.",
      readBy: [CLUSTER],
    },
  },
  admin: {
    address: {
      kind: "string",
      default: "",
      length: { min: 0, max: 300 },
      description:
        'host:port of the HTTP admin endpoint (/livez, /readyz, /metrics) of serve(); "" is off.',
      readBy: [DAEMON],
    },
  },
  logging: {
    appName: {
      kind: "string",
      default: "network-protocol",
      length: { min: 1, max: 64 },
      description: "Application name, added to JSON records.",
      readBy: [LOG],
    },
    logLevel: {
      kind: "string",
      default: "info",
      values: LOG_LEVEL_NAMES,
      unlisted: ["warning"],
      caseInsensitive: true,
      description: 'Lowest level logged; "warning" is a synonym of "warn".',
      readBy: [LOG],
    },
    logToConsole: {
      kind: "boolean",
      default: true,
      description: "Log to standard error.",
      readBy: [LOG],
    },
    logToFile: {
      kind: "boolean",
      default: false,
      description: "Append to log_file_path.",
      readBy: [LOG],
    },
    logFilePath: {
      kind: "string",
      default: "",
      description: "Log file (required when log_to_file = true).",
      readBy: [LOG],
    },
    jsonFormat: {
      kind: "boolean",
      default: false,
      description: "JSON Lines instead of text.",
      readBy: [LOG],
    },
  },
};

/** One-line comments of the sections in the annotated TOML. */
export const SECTION_DOCS: Readonly<Record<SectionName, string>> = {
  server: "The daemon. Durations are milliseconds.",
  client: "The client. Durations are milliseconds.",
  transport: "Transport and packet limits.",
  security: "The Noise secure channel (keys are base64url X25519 public keys).",
  compression: "Payload compression: negotiated, per message, applied before encryption.",
  multiplex: "Fragmentation of large messages and streams with flow control.",
  pool: "The connection pool (createPool). Durations are milliseconds.",
  cluster: "Cluster peer monitoring (createCluster). Durations are milliseconds.",
  admin: "The health endpoint of the daemon (off unless an address is set).",
  logging: "Logging of the npro CLI (the library itself never configures logging).",
};

/** The sections, in order. */
export const SECTIONS: readonly SectionName[] = Object.freeze(
  Object.keys(SCHEMA) as SectionName[],
);

/** The TOML name of a TypeScript property: `backpressureLimit` to `backpressure_limit`. */
export function snakeCase(property: string): string {
  return property.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The environment variable of a TOML key path's parts. */
export function envName(section: string, name: string): string {
  return `${ENV_PREFIX}${section.toUpperCase()}_${name.toUpperCase()}`;
}

/** Every key, in table order, with its derived names. */
export const KEYS: readonly KeyInfo[] = Object.freeze(
  SECTIONS.flatMap((section) =>
    Object.entries(SCHEMA[section] as Record<string, AnySpec>).map(([property, spec]) => {
      const name = snakeCase(property);
      return Object.freeze({
        ...spec,
        section,
        property,
        name,
        path: `${section}.${name}`,
        env: envName(section, name),
      });
    })
  ),
);

const BY_PATH = new Map(KEYS.map((key) => [key.path, key]));

/** The keys of one section, in table order. */
export function sectionKeys(section: SectionName): KeyInfo[] {
  return KEYS.filter((key) => key.section === section);
}

/** The key at `section.name`, if there is one. */
export function findKey(path: string): KeyInfo | undefined {
  return BY_PATH.get(path);
}

/**
 * The values of an enumeration that messages and docs list (synonyms left out).
 *
 * @param spec A string key with values.
 * @returns The listed values.
 */
export function listedValues<T extends string>(spec: StringSpec<T> | StringsSpec<T>): T[] {
  const unlisted = spec.kind === "string" ? spec.unlisted ?? [] : [];
  return (spec.values ?? []).filter((v) => !unlisted.includes(v));
}

/** The original's `[transport]` compression keys, accepted as aliases: alias path to key path. */
export const ALIASES: Readonly<Record<string, string>> = {
  "transport.compression_enabled": "compression.enabled",
  "transport.compression_level": "compression.level",
  "transport.compression_threshold_bytes": "compression.threshold",
  "transport.compression_threshold": "compression.threshold",
};

/** The original's environment variable names (applied before the generic names). */
export const LEGACY_ENV: readonly { name: string; targets: readonly string[] }[] = [
  { name: "NETWORK_PROTOCOL_BACKPRESSURE_LIMIT", targets: ["server.backpressure_limit"] },
  {
    name: "NETWORK_PROTOCOL_CONNECTION_TIMEOUT_MS",
    targets: ["server.connection_timeout", "client.connection_timeout"],
  },
  { name: "NETWORK_PROTOCOL_HEARTBEAT_INTERVAL_MS", targets: ["server.heartbeat_interval"] },
];
