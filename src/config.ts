/**
 * Configuration: defaults, TOML files, environment overrides and validation.
 *
 * A configuration has six sections (`server`, `client`, `transport`, `security`, `compression`,
 * `logging`). Every key has a default, so any partial TOML file (even an empty one) is valid.
 * Values are layered: defaults, then the TOML file, then `NETWORK_PROTOCOL_<SECTION>_<KEY>`
 * environment variables. Problems are reported all at once, each with the TOML line or the
 * environment variable it came from. See `docs/CONFIGURATION.md` for every key.
 *
 * TOML and environment names are snake_case (`server.backpressure_limit`,
 * `NETWORK_PROTOCOL_SERVER_BACKPRESSURE_LIMIT`); the TypeScript properties are camelCase
 * (`config.server.backpressureLimit`). Durations are integer milliseconds, sizes are bytes.
 *
 * @example Parse a partial file
 * ```ts
 * import { parseConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = parseConfig('[server]\naddress = "0.0.0.0:7000"\n');
 * assert.equal(config.server.address, "0.0.0.0:7000");
 * assert.equal(config.server.backpressureLimit, 32);
 * ```
 *
 * @module
 */

import { parse as parseToml, stringify as stringifyToml, TomlError } from "smol-toml";
import { ProtocolError } from "./errors.ts";
import type { CompressionAlgorithm } from "./core/message.ts";
import type { PatternName } from "./secure/hello.ts";
import type { TransportKind } from "./transport/types.ts";

// ---------------------------------------------------------------------------------------------
// Types

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
   * `transport.kind` is `"unix"`. Port 0 picks a free port. Default `"127.0.0.1:9000"`.
   */
  address: string;
  /**
   * In-flight requests per connection; at the limit the server stops reading that socket so TCP
   * pushes back on the peer. Default 32.
   */
  backpressureLimit: number;
  /** The handshake must finish within this many milliseconds. Default 5000. */
  connectionTimeout: number;
  /** A connection with no traffic at all for this long is closed; 0 disables. Default 60000. */
  idleTimeout: number;
  /** Send a Ping after this long without traffic; a peer that misses 3 is dead. Default 15000. */
  heartbeatInterval: number;
  /** Graceful drain on shutdown, after which connections are closed by force. Default 10000. */
  shutdownTimeout: number;
  /** Connections beyond this are refused at accept time. Default 1000. */
  maxConnections: number;
  /** Connections still handshaking beyond this are refused at accept time. Default 256. */
  maxHandshakes: number;
  /**
   * New handshakes admitted per second for the whole server (a token bucket holding one
   * second's worth); connections beyond it are closed at accept time. 0 disables. Default 1000.
   */
  handshakeRate: number;
  /**
   * New handshakes admitted per second from one source address (IPv6 grouped by /64); 0
   * disables. Behind a proxy that hides client addresses, raise it or set 0. Default 100.
   */
  handshakeRatePerAddress: number;
  /**
   * Protocol violations (unknown opcodes, empty records, ...) a connection may commit within a
   * minute; one more closes it with CLOSE code 2. Default 16.
   */
  maxProtocolViolations: number;
}

/** The `[client]` section. Durations are milliseconds. */
export interface ClientConfig {
  /**
   * Server address: `host:port`, `[ipv6]:port`, or an absolute socket path. Default
   * `"127.0.0.1:9000"`; when `transport.kind` is `"unix"` and this key is not set, the parsers use
   * `server.address`.
   */
  address: string;
  /** Connect and handshake must finish within this many milliseconds. Default 5000. */
  connectionTimeout: number;
  /** A single write must finish within this many milliseconds. Default 3000. */
  operationTimeout: number;
  /** Wait at most this long for a reply. Default 30000. */
  responseTimeout: number;
  /** Send a Ping after this long without traffic. Default 15000. */
  heartbeatInterval: number;
  /** Reconnect after a lost connection. Default `true`. */
  autoReconnect: boolean;
  /** Reconnection attempts before giving up. Default 3. */
  maxReconnectAttempts: number;
  /** First backoff step; each attempt waits a random time up to the (doubled) step. Default 1000. */
  reconnectDelay: number;
  /** Cap of the backoff step. Default 30000. */
  maxReconnectDelay: number;
}

/** The `[transport]` section. */
export interface TransportConfig {
  /** `"tcp"`, `"unix"` or `"tls"`. Default `"tcp"`. */
  kind: TransportKind;
  /** Largest packet payload, also the cap on decompressed size. Default 16 MiB. */
  maxPayloadSize: number;
  /**
   * Run the Noise secure channel. Default `true`. `false` sends plaintext (allowed, with a
   * warning from {@linkcode configWarnings}, except over TLS).
   */
  encryptionEnabled: boolean;
  /** Permission bits of a Unix socket file. Default `0o600`. */
  unixSocketMode: number;
  /** PEM certificate chain (TLS server, or client certificate). Default `""`. */
  tlsCertPath: string;
  /** PEM private key of `tlsCertPath`. Default `""`. */
  tlsKeyPath: string;
  /** PEM CA bundle to trust instead of the system roots. Default `""`. */
  tlsCaPath: string;
  /** Name to verify in the server certificate; default `""` means the address host. */
  tlsServerName: string;
  /** ALPN protocol names. Default `["npro/2"]`. */
  tlsAlpn: string[];
}

/** The `[security]` section: the Noise secure channel. */
export interface SecurityConfig {
  /** Noise handshake pattern. Default `"XX"`. */
  pattern: HandshakePatternName;
  /** File holding this side's static X25519 key pair. Default `""` (generated per process). */
  staticKeyPath: string;
  /** base64url X25519 public keys of the servers a client accepts (pins). Default `[]`. */
  serverKeys: string[];
  /** base64url X25519 public keys of the clients a server accepts; `[]` = no client auth. */
  allowedKeys: string[];
  /** File holding the 32-byte pre-shared key of the psk patterns. Default `""`. */
  pskPath: string;
  /** Must be `true` to use the unauthenticated NN pattern. Default `false`. */
  allowUnauthenticated: boolean;
  /** Known-servers file for trust on first use. Default `""` (disabled). */
  knownServersPath: string;
  /** Rekey a direction after this many records. Default 1048576 (2^20). */
  rekeyAfterRecords: number;
  /** Rekey a direction after this many bytes. Default 1073741824 (1 GiB). */
  rekeyAfterBytes: number;
  /** Rekey a direction after this many milliseconds. Default 600000 (10 minutes). */
  rekeyAfterMs: number;
}

/** The `[compression]` section. */
export interface CompressionConfig {
  /** Compress outgoing payloads (negotiated with the peer). Default `false`. */
  enabled: boolean;
  /** Algorithm used to send. Default `"lz4"`. */
  algorithm: CompressionAlgorithm;
  /** Zstd level 1..22; ignored by LZ4. Default 3. */
  level: number;
  /** Payloads smaller than this many bytes are sent uncompressed. Default 512. */
  threshold: number;
  /** Algorithms announced to and accepted from the peer. Default `["lz4", "zstd"]`. */
  accept: CompressionAlgorithm[];
}

/** The `[logging]` section, used by the CLI's {@linkcode setupLogging}. */
export interface LoggingConfig {
  /** Application name, added to JSON records. Default `"network-protocol"`. */
  appName: string;
  /** Lowest level logged. Default `"info"`. */
  logLevel: LogLevelName;
  /** Log to standard error. Default `true`. */
  logToConsole: boolean;
  /** Append to `logFilePath`. Default `false`. */
  logToFile: boolean;
  /** Log file path (required when `logToFile` is `true`). Default `""`. */
  logFilePath: string;
  /** JSON Lines instead of text. Default `false`. */
  jsonFormat: boolean;
}

/** A complete configuration. Build one with {@linkcode defaultConfig} or {@linkcode loadConfig}. */
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

/**
 * A {@linkcode ProtocolError} with code `"ConfigError"` that lists every problem found. Its
 * message has one problem per line; {@linkcode ConfigError.problems} has them as an array.
 *
 * @example Inspect the problems
 * ```ts
 * import { ConfigError, parseConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * try {
 *   parseConfig("[server]\nadress = 1\nbackpressure_limit = 0\n");
 *   assert.fail("expected a ConfigError");
 * } catch (error) {
 *   assert.ok(error instanceof ConfigError);
 *   assert.equal(error.code, "ConfigError");
 *   assert.equal(error.problems.length, 2);
 *   assert.match(error.problems[0]!, /^line 2: unknown key "server.adress"/);
 * }
 * ```
 */
export class ConfigError extends ProtocolError {
  /** Every problem, one sentence each, prefixed with its origin (`line 3: ...`). */
  readonly problems: readonly string[];
  /** Line of a TOML syntax error (1-based), if that is the failure. */
  readonly line: number | undefined;
  /** Column of a TOML syntax error (1-based), if that is the failure. */
  readonly column: number | undefined;

  /**
   * Creates a configuration error.
   *
   * @param summary The first line of the message.
   * @param problems The problems, listed one per line after the summary.
   * @param options The cause and, for syntax errors, the position.
   */
  constructor(
    summary: string,
    problems: readonly string[],
    options?: { cause?: unknown; line?: number; column?: number },
  ) {
    super(
      "ConfigError",
      problems.length === 0 ? summary : `${summary}\n${problems.map((p) => `  - ${p}`).join("\n")}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "ConfigError";
    this.problems = Object.freeze([...problems]);
    this.line = options?.line;
    this.column = options?.column;
  }
}

// ---------------------------------------------------------------------------------------------
// Schema

type SectionName = keyof NetworkConfig;
type ValueKind = "string" | "integer" | "boolean" | "strings";

interface KeySpec {
  /** snake_case name used in TOML and environment variables. */
  readonly key: string;
  readonly kind: ValueKind;
  /** One-line comment in the annotated TOML. */
  readonly doc: string;
  /** Octal integer (file modes). */
  readonly octal?: boolean;
}

const SECTIONS: readonly SectionName[] = [
  "server",
  "client",
  "transport",
  "security",
  "compression",
  "logging",
];

const SECTION_DOCS: Record<SectionName, string> = {
  server: "The daemon. Durations are milliseconds.",
  client: "The client. Durations are milliseconds.",
  transport: "Transport and packet limits.",
  security: "The Noise secure channel (keys are base64url X25519 public keys).",
  compression: "Payload compression: negotiated, per message, applied before encryption.",
  logging: "Logging of the npro CLI (the library itself never configures logging).",
};

const SCHEMA: Record<SectionName, readonly KeySpec[]> = {
  server: [
    {
      key: "address",
      kind: "string",
      doc:
        'Listen address: "host:port", "[ipv6]:port", or an absolute path when transport.kind = "unix".',
    },
    {
      key: "backpressure_limit",
      kind: "integer",
      doc: "In-flight requests per connection; at the limit the server stops reading (1..1000000).",
    },
    {
      key: "connection_timeout",
      kind: "integer",
      doc: "The handshake must finish within this many ms (100..300000).",
    },
    {
      key: "idle_timeout",
      kind: "integer",
      doc: "Close a connection with no traffic for this many ms; 0 disables (100..86400000).",
    },
    {
      key: "heartbeat_interval",
      kind: "integer",
      doc: "Ping after this many idle ms; a peer that misses 3 is dead (100..3600000).",
    },
    {
      key: "shutdown_timeout",
      kind: "integer",
      doc: "Graceful drain on shutdown in ms, then connections are closed (100..600000).",
    },
    {
      key: "max_connections",
      kind: "integer",
      doc: "Connections beyond this are refused at accept time (1..100000).",
    },
    {
      key: "max_handshakes",
      kind: "integer",
      doc: "Connections still handshaking beyond this are refused (1..100000).",
    },
    {
      key: "handshake_rate",
      kind: "integer",
      doc: "New handshakes per second, whole server; more are refused (1..1000000, 0 disables).",
    },
    {
      key: "handshake_rate_per_address",
      kind: "integer",
      doc: "New handshakes per second from one address, IPv6 by /64 (1..1000000, 0 disables).",
    },
    {
      key: "max_protocol_violations",
      kind: "integer",
      doc: "Protocol violations a connection may commit per minute before CLOSE 2 (0..1000000).",
    },
  ],
  client: [
    {
      key: "address",
      kind: "string",
      doc:
        'Server address: "host:port", "[ipv6]:port", or a socket path (unix: defaults to server.address).',
    },
    {
      key: "connection_timeout",
      kind: "integer",
      doc: "Connect and handshake within this many ms (100..300000).",
    },
    {
      key: "operation_timeout",
      kind: "integer",
      doc: "A single write must finish within this many ms (10..300000).",
    },
    {
      key: "response_timeout",
      kind: "integer",
      doc: "Wait at most this many ms for a reply (100..3600000).",
    },
    {
      key: "heartbeat_interval",
      kind: "integer",
      doc: "Ping after this many idle ms (100..3600000).",
    },
    { key: "auto_reconnect", kind: "boolean", doc: "Reconnect after a lost connection." },
    {
      key: "max_reconnect_attempts",
      kind: "integer",
      doc: "Attempts before giving up; must be > 0 when auto_reconnect is on (0..1000000).",
    },
    {
      key: "reconnect_delay",
      kind: "integer",
      doc: "First backoff step in ms; exponential with full jitter (10..60000).",
    },
    {
      key: "max_reconnect_delay",
      kind: "integer",
      doc: "Cap of the backoff step in ms (reconnect_delay..3600000).",
    },
  ],
  transport: [
    { key: "kind", kind: "string", doc: 'Transport: "tcp", "unix" or "tls".' },
    {
      key: "max_payload_size",
      kind: "integer",
      doc: "Largest packet payload in bytes, also the decompressed-size cap (1024..104857600).",
    },
    {
      key: "encryption_enabled",
      kind: "boolean",
      doc: "Run the Noise secure channel (false = plaintext; allowed, with a warning).",
    },
    {
      key: "unix_socket_mode",
      kind: "integer",
      octal: true,
      doc: "Permission bits of a Unix socket file (0o000..0o777).",
    },
    {
      key: "tls_cert_path",
      kind: "string",
      doc: "PEM certificate chain (TLS server, or client certificate).",
    },
    { key: "tls_key_path", kind: "string", doc: "PEM private key of tls_cert_path." },
    {
      key: "tls_ca_path",
      kind: "string",
      doc: 'PEM CA bundle to trust instead of the system roots ("" = system roots).',
    },
    {
      key: "tls_server_name",
      kind: "string",
      doc: 'Name to verify in the server certificate ("" = the address host).',
    },
    { key: "tls_alpn", kind: "strings", doc: "ALPN protocol names." },
  ],
  security: [
    {
      key: "pattern",
      kind: "string",
      doc: 'Noise pattern: "NN", "NK", "XX", "IK", "KK", "NNpsk0", "XXpsk3" or "IKpsk2".',
    },
    {
      key: "static_key_path",
      kind: "string",
      doc: 'File with this side\'s static key pair ("" = a new key per process).',
    },
    {
      key: "server_keys",
      kind: "strings",
      doc: "Server public keys a client accepts (pins); [] = no pinning (warned).",
    },
    {
      key: "allowed_keys",
      kind: "strings",
      doc: "Client public keys a server accepts; [] = no client authentication.",
    },
    {
      key: "psk_path",
      kind: "string",
      doc: "File with the 32-byte pre-shared key (psk patterns only).",
    },
    {
      key: "allow_unauthenticated",
      kind: "boolean",
      doc: 'Must be true to use the unauthenticated "NN" pattern.',
    },
    {
      key: "known_servers_path",
      kind: "string",
      doc: 'Known-servers file for trust on first use ("" = disabled).',
    },
    {
      key: "rekey_after_records",
      kind: "integer",
      doc: "Rekey a direction after this many records (1..2^53-2).",
    },
    {
      key: "rekey_after_bytes",
      kind: "integer",
      doc: "Rekey a direction after this many bytes (1024..2^53-1).",
    },
    {
      key: "rekey_after_ms",
      kind: "integer",
      doc: "Rekey a direction after this many ms (1000..86400000).",
    },
  ],
  compression: [
    { key: "enabled", kind: "boolean", doc: "Compress outgoing payloads (negotiated)." },
    { key: "algorithm", kind: "string", doc: 'Algorithm used to send: "lz4" or "zstd".' },
    { key: "level", kind: "integer", doc: "Zstd level (1..22); ignored by lz4." },
    {
      key: "threshold",
      kind: "integer",
      doc: "Payloads smaller than this many bytes are sent uncompressed (0..max_payload_size).",
    },
    {
      key: "accept",
      kind: "strings",
      doc: "Algorithms announced to and accepted from the peer.",
    },
  ],
  logging: [
    { key: "app_name", kind: "string", doc: "Application name, added to JSON records (1..64)." },
    {
      key: "log_level",
      kind: "string",
      doc: 'Lowest level: "trace", "debug", "info", "warn", "error" or "fatal".',
    },
    { key: "log_to_console", kind: "boolean", doc: "Log to standard error." },
    { key: "log_to_file", kind: "boolean", doc: "Append to log_file_path." },
    {
      key: "log_file_path",
      kind: "string",
      doc: "Log file (required when log_to_file = true).",
    },
    { key: "json_format", kind: "boolean", doc: "JSON Lines instead of text." },
  ],
};

/** The original's `[transport]` compression keys, accepted as aliases. */
const ALIASES: Readonly<Record<string, { section: SectionName; key: string }>> = {
  "transport.compression_enabled": { section: "compression", key: "enabled" },
  "transport.compression_level": { section: "compression", key: "level" },
  "transport.compression_threshold_bytes": { section: "compression", key: "threshold" },
  "transport.compression_threshold": { section: "compression", key: "threshold" },
};

const ENV_PREFIX = "NETWORK_PROTOCOL_";

/** The original's environment variable names (applied before the generic names). */
const LEGACY_ENV: readonly { name: string; targets: readonly string[] }[] = [
  { name: "NETWORK_PROTOCOL_BACKPRESSURE_LIMIT", targets: ["server.backpressure_limit"] },
  {
    name: "NETWORK_PROTOCOL_CONNECTION_TIMEOUT_MS",
    targets: ["server.connection_timeout", "client.connection_timeout"],
  },
  { name: "NETWORK_PROTOCOL_HEARTBEAT_INTERVAL_MS", targets: ["server.heartbeat_interval"] },
];

const DEFAULTS: NetworkConfig = {
  server: {
    address: "127.0.0.1:9000",
    backpressureLimit: 32,
    connectionTimeout: 5000,
    idleTimeout: 60000,
    heartbeatInterval: 15000,
    shutdownTimeout: 10000,
    maxConnections: 1000,
    maxHandshakes: 256,
    handshakeRate: 1000,
    handshakeRatePerAddress: 100,
    maxProtocolViolations: 16,
  },
  client: {
    address: "127.0.0.1:9000",
    connectionTimeout: 5000,
    operationTimeout: 3000,
    responseTimeout: 30000,
    heartbeatInterval: 15000,
    autoReconnect: true,
    maxReconnectAttempts: 3,
    reconnectDelay: 1000,
    maxReconnectDelay: 30000,
  },
  transport: {
    kind: "tcp",
    maxPayloadSize: 16777216,
    encryptionEnabled: true,
    unixSocketMode: 0o600,
    tlsCertPath: "",
    tlsKeyPath: "",
    tlsCaPath: "",
    tlsServerName: "",
    tlsAlpn: ["npro/2"],
  },
  security: {
    pattern: "XX",
    staticKeyPath: "",
    serverKeys: [],
    allowedKeys: [],
    pskPath: "",
    allowUnauthenticated: false,
    knownServersPath: "",
    rekeyAfterRecords: 1048576,
    rekeyAfterBytes: 1073741824,
    rekeyAfterMs: 600000,
  },
  compression: {
    enabled: false,
    algorithm: "lz4",
    level: 3,
    threshold: 512,
    accept: ["lz4", "zstd"],
  },
  logging: {
    appName: "network-protocol",
    logLevel: "info",
    logToConsole: true,
    logToFile: false,
    logFilePath: "",
    jsonFormat: false,
  },
};

function camel(snake: string): string {
  return snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function envName(section: string, key: string): string {
  return `${ENV_PREFIX}${section.toUpperCase()}_${key.toUpperCase()}`;
}

function findSpec(section: SectionName, key: string): KeySpec | undefined {
  return SCHEMA[section].find((s) => s.key === key);
}

// ---------------------------------------------------------------------------------------------
// Public helpers

/**
 * Returns the default configuration, a fresh deep copy on each call.
 *
 * @example Defaults
 * ```ts
 * import { defaultConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = defaultConfig();
 * assert.equal(config.server.address, "127.0.0.1:9000");
 * assert.equal(config.security.pattern, "XX");
 * config.server.maxConnections = 5; // a copy: the next call is unaffected
 * assert.equal(defaultConfig().server.maxConnections, 1000);
 * ```
 *
 * @returns A new default configuration.
 */
export function defaultConfig(): NetworkConfig {
  return structuredClone(DEFAULTS);
}

/**
 * Lists every environment variable name the configuration reads: one
 * `NETWORK_PROTOCOL_<SECTION>_<KEY>` per key, the aliases, and the original's names.
 *
 * @example Names
 * ```ts
 * import { configEnvNames } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const names = configEnvNames();
 * assert.ok(names.includes("NETWORK_PROTOCOL_SERVER_BACKPRESSURE_LIMIT"));
 * assert.ok(names.includes("NETWORK_PROTOCOL_CONNECTION_TIMEOUT_MS"));
 * ```
 *
 * @returns The names, in the order they are applied.
 */
export function configEnvNames(): string[] {
  const names = LEGACY_ENV.map((l) => l.name);
  for (const alias of Object.keys(ALIASES)) {
    const [section, key] = alias.split(".") as [string, string];
    names.push(envName(section, key));
  }
  for (const section of SECTIONS) {
    for (const spec of SCHEMA[section]) names.push(envName(section, spec.key));
  }
  return names;
}

// ---------------------------------------------------------------------------------------------
// Layers: values collected from one source (TOML, environment, object), keyed "section.key".

interface Setting {
  readonly value: string | number | boolean | string[];
  /** Where the value came from: `line 3`, an environment variable name, or `options`. */
  readonly origin: string;
  /** The name it was set under (an alias, or the key itself). */
  readonly via: string;
}

type Layer = Map<string, Setting>;

function describe(value: unknown): string {
  if (typeof value === "bigint") return `an integer (${value})`;
  if (typeof value === "number") {
    return Number.isInteger(value) ? `an integer (${value})` : `a float (${value})`;
  }
  if (typeof value === "string") return `a string (${quote(value)})`;
  if (typeof value === "boolean") return `a boolean (${value})`;
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date-time";
  if (value === null) return "null";
  if (typeof value === "object") return "a table";
  return typeof value;
}

function quote(value: unknown): string {
  const text = typeof value === "string" ? value : String(value);
  const shown = text.length > 60 ? `${text.slice(0, 57)}...` : text;
  return JSON.stringify(shown);
}

const KIND_WORDS: Record<ValueKind, string> = {
  string: "a string",
  integer: "an integer",
  boolean: "a boolean",
  strings: "an array of strings",
};

/**
 * Converts a raw value (TOML, with integers as bigint, or a JS object) to the key's kind, or
 * returns `undefined` when the type is wrong.
 */
function coerce(
  spec: KeySpec,
  raw: unknown,
  integersAsNumbers: boolean,
): string | number | boolean | string[] | undefined {
  switch (spec.kind) {
    case "string":
      return typeof raw === "string" ? raw : undefined;
    case "boolean":
      return typeof raw === "boolean" ? raw : undefined;
    case "integer":
      if (typeof raw === "bigint") {
        return raw >= BigInt(Number.MIN_SAFE_INTEGER) && raw <= BigInt(Number.MAX_SAFE_INTEGER)
          ? Number(raw)
          : undefined;
      }
      if (integersAsNumbers && typeof raw === "number" && Number.isSafeInteger(raw)) return raw;
      return undefined;
    case "strings":
      return Array.isArray(raw) && raw.every((v) => typeof v === "string")
        ? [...raw as string[]]
        : undefined;
  }
}

function setInLayer(
  layer: Layer,
  target: string,
  setting: Setting,
  problems: string[],
): void {
  const previous = layer.get(target);
  if (previous !== undefined && !sameValue(previous.value, setting.value)) {
    problems.push(
      `${setting.origin}: ${setting.via} (${
        quote(setting.value)
      }) conflicts with ${previous.via} ` +
        `(${quote(previous.value)}, ${previous.origin}); they set the same option, keep one`,
    );
    return;
  }
  if (previous === undefined) layer.set(target, setting);
}

function sameValue(a: Setting["value"], b: Setting["value"]): boolean {
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => v === b[i]);
  }
  return a === b;
}

function suggest(name: string, candidates: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(name.length / 3))
    ? ` (did you mean ${quote(best)}?)`
    : "";
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 8) return Infinity;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        prev[j]! + 1,
        row[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length]!;
}

function isPlainTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date);
}

function layerFromToml(doc: Record<string, unknown>, text: string, problems: string[]): Layer {
  const layer: Layer = new Map();
  const lines = new LineIndex(text);
  for (const [section, table] of Object.entries(doc)) {
    if (!(SECTIONS as readonly string[]).includes(section)) {
      const line = lines.find([section]);
      problems.push(
        `${lineOrigin(line)}: unknown section ${quote(section)}${suggest(section, SECTIONS)}`,
      );
      continue;
    }
    const name = section as SectionName;
    if (!isPlainTable(table)) {
      problems.push(
        `${lineOrigin(lines.find([section]))}: ${section} must be a table, found ${
          describe(table)
        }`,
      );
      continue;
    }
    for (const [key, raw] of Object.entries(table)) {
      const path = `${section}.${key}`;
      const origin = lineOrigin(lines.find([section, key]));
      const alias = ALIASES[path];
      const spec = alias ? findSpec(alias.section, alias.key) : findSpec(name, key);
      if (spec === undefined) {
        const known = SCHEMA[name].map((s) => s.key);
        problems.push(`${origin}: unknown key ${quote(path)}${suggest(key, known)}`);
        continue;
      }
      const value = coerce(spec, raw, false);
      if (value === undefined) {
        problems.push(
          `${origin}: ${path} must be ${KIND_WORDS[spec.kind]}, found ${describe(raw)}`,
        );
        continue;
      }
      const target = alias ? `${alias.section}.${alias.key}` : path;
      setInLayer(layer, target, { value, origin, via: path }, problems);
    }
  }
  return layer;
}

function lineOrigin(line: number | undefined): string {
  return line === undefined ? "config" : `line ${line}`;
}

/**
 * Finds the line that sets a key path, by scanning table headers and `key =` lines (smol-toml
 * reports positions only for syntax errors). Best effort: falls back to the nearest parent.
 */
class LineIndex {
  readonly #entries: { path: string; line: number }[] = [];

  constructor(text: string) {
    let table: string[] = [];
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line.startsWith("[")) {
        const match = /^\[\[?([^\]]*)\]\]?/.exec(line);
        if (match) {
          table = splitDotted(match[1]!);
          this.#entries.push({ path: table.join("."), line: i + 1 });
        }
        continue;
      }
      const match =
        /^((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=/
          .exec(line);
      if (match) {
        const keys = splitDotted(match[1]!);
        // Every prefix of a dotted key is also "defined" on this line (`server.address = ...`).
        for (let n = 1; n <= keys.length; n++) {
          this.#entries.push({ path: [...table, ...keys.slice(0, n)].join("."), line: i + 1 });
        }
      }
    }
  }

  find(path: readonly string[]): number | undefined {
    for (let n = path.length; n > 0; n--) {
      const wanted = path.slice(0, n).join(".");
      const hit = this.#entries.find((e) => e.path === wanted);
      if (hit) return hit.line;
    }
    return undefined;
  }
}

function splitDotted(text: string): string[] {
  const parts: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(?:\.|$)/gy;
  let match: RegExpExecArray | null;
  while (re.lastIndex < text.length && (match = re.exec(text)) !== null) {
    parts.push(match[1] ?? match[2] ?? match[3] ?? "");
    if (match[0].length === 0) break;
  }
  return parts;
}

function resolveEnv(env: ConfigEnv | boolean | undefined): (name: string) => string | undefined {
  if (env === undefined || env === false) return () => undefined;
  if (env === true) {
    return (name) => {
      try {
        return Deno.env.get(name);
      } catch (error) {
        throw new ConfigError(
          `Cannot read the environment variable ${quote(name)}; ` +
            `run with --allow-env=${ENV_PREFIX}* or do not ask for environment overrides`,
          [],
          { cause: error },
        );
      }
    };
  }
  if (typeof env === "function") return env;
  return (name) => Object.hasOwn(env, name) ? env[name] : undefined;
}

function parseEnvValue(spec: KeySpec, text: string): string | number | boolean | string[] | {
  error: string;
} {
  switch (spec.kind) {
    case "string":
      return text;
    case "boolean": {
      const t = text.trim().toLowerCase();
      if (t === "true" || t === "1") return true;
      if (t === "false" || t === "0") return false;
      return { error: `must be true, false, 1 or 0, found ${quote(text)}` };
    }
    case "integer": {
      const t = text.trim();
      if (spec.octal) {
        const m = /^(?:0o)?([0-7]{1,4})$/i.exec(t);
        if (!m) {
          return { error: `must be an octal mode such as 600 or 0o600, found ${quote(text)}` };
        }
        return Number.parseInt(m[1]!, 8);
      }
      if (!/^[+-]?\d+$/.test(t)) return { error: `must be an integer, found ${quote(text)}` };
      const n = Number(t);
      if (!Number.isSafeInteger(n)) return { error: `is out of range, found ${quote(text)}` };
      return n;
    }
    case "strings": {
      if (text.trim() === "") return [];
      const items = text.split(",").map((s) => s.trim());
      if (items.some((s) => s === "")) {
        return {
          error: `must be a comma-separated list without empty items, found ${quote(text)}`,
        };
      }
      return items;
    }
  }
}

function layerFromEnv(get: (name: string) => string | undefined, problems: string[]): Layer {
  const read = (name: string, via: string, spec: KeySpec): Setting | undefined => {
    const text = get(name);
    if (text === undefined) return undefined;
    const value = parseEnvValue(spec, text);
    if (typeof value === "object" && !Array.isArray(value)) {
      problems.push(`${name}: ${via} ${value.error}`);
      return undefined;
    }
    return { value, origin: name, via: name };
  };
  // The original's names first: the specific NETWORK_PROTOCOL_<SECTION>_<KEY> names win.
  const layer: Layer = new Map();
  for (const legacy of LEGACY_ENV) {
    const [section, key] = legacy.targets[0]!.split(".") as [SectionName, string];
    const setting = read(legacy.name, legacy.targets[0]!, findSpec(section, key)!);
    if (setting !== undefined) { for (const target of legacy.targets) layer.set(target, setting); }
  }
  const specific: Layer = new Map();
  for (const [alias, target] of Object.entries(ALIASES)) {
    const [section, key] = alias.split(".") as [string, string];
    const setting = read(envName(section, key), alias, findSpec(target.section, target.key)!);
    if (setting !== undefined) {
      setInLayer(specific, `${target.section}.${target.key}`, setting, problems);
    }
  }
  for (const section of SECTIONS) {
    for (const spec of SCHEMA[section]) {
      const path = `${section}.${spec.key}`;
      const setting = read(envName(section, spec.key), path, spec);
      if (setting !== undefined) setInLayer(specific, path, setting, problems);
    }
  }
  for (const [target, setting] of specific) layer.set(target, setting);
  return layer;
}

function layerFromObject(input: unknown, problems: string[]): Layer {
  const layer: Layer = new Map();
  if (input === undefined) return layer;
  if (!isPlainTable(input)) {
    problems.push(`options: the configuration must be an object, found ${describe(input)}`);
    return layer;
  }
  for (const [section, table] of Object.entries(input)) {
    if (!(SECTIONS as readonly string[]).includes(section)) {
      problems.push(`options: unknown section ${quote(section)}${suggest(section, SECTIONS)}`);
      continue;
    }
    const name = section as SectionName;
    if (table === undefined) continue;
    if (!isPlainTable(table)) {
      problems.push(`options: ${section} must be an object, found ${describe(table)}`);
      continue;
    }
    for (const [prop, raw] of Object.entries(table)) {
      const spec = SCHEMA[name].find((s) => camel(s.key) === prop);
      if (spec === undefined) {
        const known = SCHEMA[name].map((s) => camel(s.key));
        problems.push(`options: unknown key ${quote(`${section}.${prop}`)}${suggest(prop, known)}`);
        continue;
      }
      if (raw === undefined) continue;
      const value = coerce(spec, raw, true);
      if (value === undefined) {
        problems.push(
          `options: ${section}.${spec.key} must be ${KIND_WORDS[spec.kind]}, found ${
            describe(raw)
          }`,
        );
        continue;
      }
      layer.set(`${section}.${spec.key}`, { value, origin: "options", via: `${section}.${prop}` });
    }
  }
  return layer;
}

function applyLayers(layers: readonly Layer[]): NetworkConfig {
  const config = defaultConfig();
  const sections = config as unknown as Record<string, Record<string, unknown>>;
  for (const layer of layers) {
    for (const [path, setting] of layer) {
      const [section, key] = path.split(".") as [string, string];
      const value = setting.value;
      sections[section]![camel(key)] = Array.isArray(value) ? [...value] : value;
    }
  }
  return config;
}

interface Issue {
  /** `section.key` the issue is about (for its origin). */
  readonly path: string;
  readonly message: string;
}

function finish(layers: readonly Layer[], problems: string[], summary: string): NetworkConfig {
  const config = applyLayers(layers);
  // A Unix socket path is the same for both sides: the client connects where the server listens
  // unless client.address is set explicitly.
  if (config.transport.kind === "unix" && !layers.some((l) => l.has("client.address"))) {
    config.client.address = config.server.address;
  }
  for (const issue of collectIssues(config)) {
    let setting: Setting | undefined;
    for (const layer of layers) setting = layer.get(issue.path) ?? setting;
    if (setting === undefined) {
      problems.push(issue.message);
    } else {
      const alias = setting.via !== issue.path && setting.via !== setting.origin
        ? ` (set as ${setting.via})`
        : "";
      problems.push(`${setting.origin}: ${issue.message}${alias}`);
    }
  }
  if (problems.length > 0) {
    throw new ConfigError(
      `${summary} (${problems.length} problem${problems.length === 1 ? "" : "s"}):`,
      problems,
    );
  }
  return config;
}

/**
 * Parses a TOML configuration, layers environment overrides over it, and validates the result.
 * Missing keys take their defaults. Unknown keys, wrong types and invalid values are all
 * reported at once, each with its line (or environment variable).
 *
 * @example Parse with environment overrides
 * ```ts
 * import { parseConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = parseConfig("[server]\nbackpressure_limit = 64\n", {
 *   env: { NETWORK_PROTOCOL_LOGGING_LOG_LEVEL: "debug" },
 * });
 * assert.equal(config.server.backpressureLimit, 64);
 * assert.equal(config.logging.logLevel, "debug");
 * ```
 *
 * @param tomlText The TOML document.
 * @param options Environment overrides and the document's name for messages.
 * @returns The validated configuration.
 * @throws {ConfigError} On a syntax error, unknown keys, wrong types or invalid values.
 */
export function parseConfig(tomlText: string, options: ParseConfigOptions = {}): NetworkConfig {
  if (typeof tomlText !== "string") {
    throw new TypeError(`The TOML text must be a string, found ${describe(tomlText)}`);
  }
  const label = options.source === undefined
    ? "Configuration"
    : `Configuration ${quote(options.source)}`;
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(tomlText, {
      integersAsBigInt: true,
      unsafeKeyBehaviour: "throw",
      maxDepth: 16,
    }) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      const reason = error.message.split("\n")[0]!.replace(/^Invalid TOML document:\s*/, "");
      const problem = `line ${error.line}, column ${error.column}: ${reason}`;
      throw new ConfigError(`${label} is not valid TOML:`, [problem], {
        cause: error,
        line: error.line,
        column: error.column,
      });
    }
    throw error;
  }
  const problems: string[] = [];
  const tomlLayer = layerFromToml(doc, tomlText, problems);
  const envLayer = layerFromEnv(resolveEnv(options.env), problems);
  return finish([tomlLayer, envLayer], problems, `${label} is invalid`);
}

/**
 * Builds a configuration from defaults and a partial object (camelCase keys), and validates it.
 *
 * @example Override a few keys
 * ```ts
 * import { createConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = createConfig({ server: { address: "[::1]:0" }, compression: { enabled: true } });
 * assert.equal(config.server.address, "[::1]:0");
 * assert.equal(config.compression.enabled, true);
 * assert.equal(config.client.responseTimeout, 30000);
 * ```
 *
 * @param input The keys to change; the rest take their defaults.
 * @returns The validated configuration (a new object; `input` is not kept).
 * @throws {ConfigError} On unknown keys, wrong types or invalid values.
 */
export function createConfig(input: NetworkConfigInput = {}): NetworkConfig {
  const problems: string[] = [];
  const layer = layerFromObject(input, problems);
  return finish([layer], problems, "Configuration is invalid");
}

/**
 * Reads a TOML configuration file (or starts from the defaults when no path is given), layers
 * environment overrides over it and validates the result.
 *
 * @example Defaults plus environment
 * ```ts
 * import { loadConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = await loadConfig({ env: { NETWORK_PROTOCOL_SERVER_ADDRESS: "0.0.0.0:9100" } });
 * assert.equal(config.server.address, "0.0.0.0:9100");
 * ```
 *
 * @param options The file, environment overrides, an abort signal and a timeout.
 * @returns The validated configuration.
 * @throws {ConfigError} When the file is missing or unreadable, or the configuration is invalid.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<NetworkConfig> {
  if (options.path === undefined) {
    const problems: string[] = [];
    const envLayer = layerFromEnv(resolveEnv(options.env), problems);
    return finish([envLayer], problems, "Configuration is invalid");
  }
  const path = options.path instanceof URL ? options.path : String(options.path);
  const name = path instanceof URL ? path.href : path;
  const text = await readBounded(path, name, options.signal, options.timeout ?? 10_000);
  const parseOptions: ParseConfigOptions = { source: name };
  if (options.env !== undefined) parseOptions.env = options.env;
  return parseConfig(text, parseOptions);
}

const MAX_CONFIG_BYTES = 1024 * 1024;

async function readBounded(
  path: string | URL,
  name: string,
  signal: AbortSignal | undefined,
  timeout: number,
): Promise<string> {
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new RangeError(
      `The timeout must be a positive number of milliseconds, found "${timeout}"`,
    );
  }
  signal?.throwIfAborted();
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ConfigError(`Configuration file ${quote(name)} does not exist`, [], {
        cause: error,
      });
    }
    throw new ConfigError(
      `Cannot open configuration file ${quote(name)}: ${(error as Error).message}`,
      [],
      { cause: error },
    );
  }
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      file.close();
    }
  };
  let reason: "timeout" | "abort" | undefined;
  const onAbort = () => {
    reason ??= "abort";
    close();
  };
  const timer = setTimeout(() => {
    reason ??= "timeout";
    close();
  }, timeout);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const chunks: Uint8Array[] = [];
    let total = 0;
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      let n: number | null;
      try {
        n = await file.read(buffer);
      } catch (error) {
        if (reason === "abort") {
          throw new ProtocolError("Cancelled", `Reading ${quote(name)} was aborted`, {
            cause: signal?.reason,
          });
        }
        if (reason === "timeout") {
          throw new ProtocolError("Timeout", `Reading ${quote(name)} took over ${timeout} ms`);
        }
        throw new ConfigError(
          `Cannot read configuration file ${quote(name)}: ${(error as Error).message}`,
          [],
          { cause: error },
        );
      }
      if (n === null) break;
      total += n;
      if (total > MAX_CONFIG_BYTES) {
        throw new ConfigError(
          `Configuration file ${quote(name)} is larger than the limit "${MAX_CONFIG_BYTES}" bytes`,
          [],
        );
      }
      chunks.push(buffer.slice(0, n));
    }
    if (reason === "abort") {
      throw new ProtocolError("Cancelled", `Reading ${quote(name)} was aborted`, {
        cause: signal?.reason,
      });
    }
    const bytes = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.length;
    }
    try {
      return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
    } catch (error) {
      throw new ConfigError(`Configuration file ${quote(name)} is not valid UTF-8`, [], {
        cause: error,
      });
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    close();
  }
}

// ---------------------------------------------------------------------------------------------
// Validation

const PATTERNS: readonly HandshakePatternName[] = [
  "NN",
  "NK",
  "XX",
  "IK",
  "KK",
  "NNpsk0",
  "XXpsk3",
  "IKpsk2",
];
const TRANSPORTS: readonly TransportKind[] = ["tcp", "unix", "tls"];
const ALGORITHMS: readonly CompressionAlgorithm[] = ["lz4", "zstd"];
const LEVELS: readonly string[] = ["trace", "debug", "info", "warn", "warning", "error", "fatal"];
const MIB = 1024 * 1024;

const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
/** Canonical unpadded base64url of 32 bytes (the last character carries 2 bits + 4 zero bits). */
const KEY_B64URL = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

function checkHost(host: string): string | undefined {
  if (host.startsWith("[")) {
    if (!host.endsWith("]")) return "an IPv6 host must be written in brackets, as [::1]:9000";
    const inner = host.slice(1, -1);
    if (!/^[0-9A-Fa-f:.]+$/.test(inner) || !inner.includes(":")) {
      return `${quote(inner)} is not an IPv6 address`;
    }
    try {
      new URL(`http://[${inner}]/`);
    } catch {
      return `${quote(inner)} is not an IPv6 address`;
    }
    return undefined;
  }
  if (host.includes(":")) return "an IPv6 host must be written in brackets, as [::1]:9000";
  if (IPV4.test(host)) return undefined;
  if (host.length === 0) return "the host is empty";
  const labels = host.endsWith(".") ? host.slice(0, -1).split(".") : host.split(".");
  if (host.length > 253 || !labels.every((l) => LABEL.test(l))) {
    return `${quote(host)} is neither an IP address nor a valid host name`;
  }
  if (/^\d+$/.test(labels[labels.length - 1]!)) return `${quote(host)} is not a valid IPv4 address`;
  return undefined;
}

function checkAddress(
  address: string,
  kind: TransportKind,
  allowPortZero: boolean,
): string | undefined {
  if (address.length === 0) return "must not be empty";
  if (kind === "unix") {
    if (!address.startsWith("/") && !/^[A-Za-z]:[\\/]/.test(address)) {
      return `must be an absolute socket path when transport.kind is "unix", found ${
        quote(address)
      }`;
    }
    if (new TextEncoder().encode(address).length > 107) {
      return `socket path ${quote(address)} is longer than 107 bytes`;
    }
    if (address.includes("\0")) return "must not contain a NUL character";
    return undefined;
  }
  const colon = address.lastIndexOf(":");
  if (colon < 0) return `must be host:port, found ${quote(address)}`;
  const host = address.slice(0, colon);
  const port = address.slice(colon + 1);
  const hostProblem = checkHost(host);
  if (hostProblem !== undefined) return `${hostProblem}, in ${quote(address)}`;
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
    return `port ${quote(port)} must be an integer from ${allowPortZero ? 0 : 1} to 65535`;
  }
  if (!allowPortZero && Number(port) === 0) return `port must be from 1 to 65535, found "0"`;
  return undefined;
}

function collectIssues(config: NetworkConfig): Issue[] {
  const issues: Issue[] = [];
  const push = (path: string, message: string) => issues.push({ path, message });
  const int = (
    path: string,
    value: unknown,
    min: number,
    max: number,
    unit = "",
    zeroAllowed = false,
  ) => {
    if (typeof value !== "number" || !Number.isSafeInteger(value)) {
      push(path, `${path} must be an integer, found ${describe(value)}`);
      return false;
    }
    if (zeroAllowed && value === 0) return true;
    if (value < min || value > max) {
      push(
        path,
        `${path} must be from ${min}${unit} to ${max}${unit}${
          zeroAllowed ? " (or 0 to disable)" : ""
        }, found "${value}"`,
      );
      return false;
    }
    return true;
  };
  const str = (path: string, value: unknown): value is string => {
    if (typeof value !== "string") {
      push(path, `${path} must be a string, found ${describe(value)}`);
      return false;
    }
    if (!value.isWellFormed()) {
      push(path, `${path} must be valid Unicode text (it contains a lone surrogate)`);
      return false;
    }
    return true;
  };
  const bool = (path: string, value: unknown) => {
    if (typeof value !== "boolean") {
      push(path, `${path} must be a boolean, found ${describe(value)}`);
    }
  };
  const list = (path: string, value: unknown): value is string[] => {
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
      push(path, `${path} must be an array of strings, found ${describe(value)}`);
      return false;
    }
    if (!value.every((v) => v.isWellFormed())) {
      push(path, `${path} must contain valid Unicode text`);
      return false;
    }
    return true;
  };
  const oneOf = (path: string, value: unknown, allowed: readonly string[]) => {
    if (!str(path, value)) return false;
    if (!allowed.includes(value)) {
      push(
        path,
        `${path} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, found ${quote(value)}`,
      );
      return false;
    }
    return true;
  };
  const keys = (path: string, value: unknown) => {
    if (!list(path, value)) return;
    const seen = new Set<string>();
    for (const key of value) {
      if (!KEY_B64URL.test(key)) {
        push(
          path,
          `${path} entry ${
            quote(key)
          } is not a base64url X25519 public key (43 characters, 32 bytes)`,
        );
      } else if (seen.has(key)) {
        push(path, `${path} lists ${quote(key)} twice`);
      }
      seen.add(key);
    }
  };

  if (typeof config !== "object" || config === null) {
    return [{
      path: "",
      message: `The configuration must be an object, found ${describe(config)}`,
    }];
  }
  for (const section of SECTIONS) {
    if (!isPlainTable(config[section])) {
      issues.push({
        path: section,
        message: `${section} must be an object, found ${describe(config[section])}`,
      });
    }
  }
  if (issues.length > 0) return issues;
  const { server: s, client: c, transport: t, security: sec, compression: z, logging: l } = config;

  const kindOk = oneOf("transport.kind", t.kind, TRANSPORTS);
  const kind: TransportKind = kindOk ? t.kind : "tcp";

  // server
  if (str("server.address", s.address)) {
    const problem = checkAddress(s.address, kind, true);
    if (problem !== undefined) push("server.address", `server.address ${problem}`);
  }
  int("server.backpressure_limit", s.backpressureLimit, 1, 1_000_000);
  int("server.connection_timeout", s.connectionTimeout, 100, 300_000, " ms");
  int("server.idle_timeout", s.idleTimeout, 100, 86_400_000, " ms", true);
  int("server.heartbeat_interval", s.heartbeatInterval, 100, 3_600_000, " ms");
  int("server.shutdown_timeout", s.shutdownTimeout, 100, 600_000, " ms");
  int("server.max_connections", s.maxConnections, 1, 100_000);
  int("server.max_handshakes", s.maxHandshakes, 1, 100_000);
  int("server.handshake_rate", s.handshakeRate, 1, 1_000_000, "", true);
  int("server.handshake_rate_per_address", s.handshakeRatePerAddress, 1, 1_000_000, "", true);
  int("server.max_protocol_violations", s.maxProtocolViolations, 0, 1_000_000);

  // client
  if (str("client.address", c.address)) {
    const problem = checkAddress(c.address, kind, false);
    if (problem !== undefined) push("client.address", `client.address ${problem}`);
  }
  int("client.connection_timeout", c.connectionTimeout, 100, 300_000, " ms");
  int("client.operation_timeout", c.operationTimeout, 10, 300_000, " ms");
  int("client.response_timeout", c.responseTimeout, 100, 3_600_000, " ms");
  int("client.heartbeat_interval", c.heartbeatInterval, 100, 3_600_000, " ms");
  bool("client.auto_reconnect", c.autoReconnect);
  if (int("client.max_reconnect_attempts", c.maxReconnectAttempts, 0, 1_000_000)) {
    if (c.autoReconnect === true && c.maxReconnectAttempts === 0) {
      push(
        "client.max_reconnect_attempts",
        "client.max_reconnect_attempts must be greater than 0 when client.auto_reconnect is true",
      );
    }
  }
  const delayOk = int("client.reconnect_delay", c.reconnectDelay, 10, 60_000, " ms");
  if (int("client.max_reconnect_delay", c.maxReconnectDelay, 10, 3_600_000, " ms") && delayOk) {
    if (c.maxReconnectDelay < c.reconnectDelay) {
      push(
        "client.max_reconnect_delay",
        `client.max_reconnect_delay "${c.maxReconnectDelay}" must not be less than ` +
          `client.reconnect_delay "${c.reconnectDelay}"`,
      );
    }
  }

  // transport
  const payloadOk = int("transport.max_payload_size", t.maxPayloadSize, 1024, 100 * MIB, " bytes");
  bool("transport.encryption_enabled", t.encryptionEnabled);
  if (typeof t.unixSocketMode !== "number" || !Number.isSafeInteger(t.unixSocketMode)) {
    push(
      "transport.unix_socket_mode",
      `transport.unix_socket_mode must be an integer, found ${describe(t.unixSocketMode)}`,
    );
  } else if (t.unixSocketMode < 0 || t.unixSocketMode > 0o777) {
    push(
      "transport.unix_socket_mode",
      `transport.unix_socket_mode must be a permission mode from 0o000 to 0o777 ` +
        `(write it as 0o600 in TOML), found "${t.unixSocketMode}"`,
    );
  }
  const certOk = str("transport.tls_cert_path", t.tlsCertPath);
  const keyOk = str("transport.tls_key_path", t.tlsKeyPath);
  if (certOk && keyOk && (t.tlsCertPath === "") !== (t.tlsKeyPath === "")) {
    push(
      t.tlsCertPath === "" ? "transport.tls_cert_path" : "transport.tls_key_path",
      "transport.tls_cert_path and transport.tls_key_path must be set together",
    );
  }
  str("transport.tls_ca_path", t.tlsCaPath);
  if (str("transport.tls_server_name", t.tlsServerName) && t.tlsServerName !== "") {
    const problem = checkHost(t.tlsServerName);
    if (problem !== undefined) {
      push("transport.tls_server_name", `transport.tls_server_name: ${problem}`);
    }
  }
  if (list("transport.tls_alpn", t.tlsAlpn)) {
    for (const name of t.tlsAlpn) {
      const bytes = new TextEncoder().encode(name).length;
      if (bytes === 0 || bytes > 255) {
        push(
          "transport.tls_alpn",
          `transport.tls_alpn entry ${quote(name)} must be 1 to 255 bytes long`,
        );
      }
    }
  }

  // security
  const patternOk = oneOf("security.pattern", sec.pattern, PATTERNS);
  str("security.static_key_path", sec.staticKeyPath);
  keys("security.server_keys", sec.serverKeys);
  keys("security.allowed_keys", sec.allowedKeys);
  const pskOk = str("security.psk_path", sec.pskPath);
  bool("security.allow_unauthenticated", sec.allowUnauthenticated);
  str("security.known_servers_path", sec.knownServersPath);
  if (patternOk) {
    if (sec.pattern === "NN" && sec.allowUnauthenticated !== true) {
      push(
        "security.pattern",
        'security.pattern "NN" authenticates neither side; set security.allow_unauthenticated = true to use it',
      );
    }
    const usesPsk = sec.pattern.includes("psk");
    if (pskOk && usesPsk && sec.pskPath === "") {
      push("security.psk_path", `security.pattern ${quote(sec.pattern)} needs security.psk_path`);
    }
    if (pskOk && !usesPsk && sec.pskPath !== "") {
      push(
        "security.psk_path",
        `security.psk_path is set but security.pattern ${
          quote(sec.pattern)
        } does not use a pre-shared key`,
      );
    }
  }
  int("security.rekey_after_records", sec.rekeyAfterRecords, 1, 2 ** 53 - 2);
  int("security.rekey_after_bytes", sec.rekeyAfterBytes, 1024, Number.MAX_SAFE_INTEGER, " bytes");
  int("security.rekey_after_ms", sec.rekeyAfterMs, 1000, 86_400_000, " ms");

  // compression
  bool("compression.enabled", z.enabled);
  const algorithmOk = oneOf("compression.algorithm", z.algorithm, ALGORITHMS);
  int("compression.level", z.level, 1, 22);
  if (int("compression.threshold", z.threshold, 0, 100 * MIB, " bytes") && payloadOk) {
    if (z.threshold > t.maxPayloadSize) {
      push(
        "compression.threshold",
        `compression.threshold "${z.threshold}" must not exceed transport.max_payload_size "${t.maxPayloadSize}"`,
      );
    }
  }
  if (list("compression.accept", z.accept)) {
    const seen = new Set<string>();
    for (const name of z.accept) {
      if (!(ALGORITHMS as readonly string[]).includes(name)) {
        push(
          "compression.accept",
          `compression.accept entry ${quote(name)} must be "lz4" or "zstd"`,
        );
      } else if (seen.has(name)) {
        push("compression.accept", `compression.accept lists ${quote(name)} twice`);
      }
      seen.add(name);
    }
    if (z.enabled === true && algorithmOk && !(z.accept as string[]).includes(z.algorithm)) {
      push(
        "compression.accept",
        `compression.accept must include compression.algorithm ${
          quote(z.algorithm)
        } when compression is enabled`,
      );
    }
  }

  // logging
  if (str("logging.app_name", l.appName) && (l.appName.length < 1 || l.appName.length > 64)) {
    push(
      "logging.app_name",
      `logging.app_name must be 1 to 64 characters long, found ${quote(l.appName)}`,
    );
  }
  if (str("logging.log_level", l.logLevel) && !LEVELS.includes(l.logLevel.toLowerCase())) {
    push(
      "logging.log_level",
      `logging.log_level must be one of "trace", "debug", "info", "warn", "error", "fatal", found ${
        quote(l.logLevel)
      }`,
    );
  }
  bool("logging.log_to_console", l.logToConsole);
  bool("logging.log_to_file", l.logToFile);
  bool("logging.json_format", l.jsonFormat);
  if (str("logging.log_file_path", l.logFilePath) && l.logToFile === true && l.logFilePath === "") {
    push(
      "logging.log_file_path",
      "logging.log_file_path is required when logging.log_to_file is true",
    );
  }
  if (l.logToConsole === false && l.logToFile === false) {
    push(
      "logging.log_to_console",
      "logging needs at least one output: set logging.log_to_console or logging.log_to_file to true",
    );
  }
  return issues;
}

/**
 * Checks a configuration and returns every problem at once, in plain sentences (an empty array
 * means valid). Names in the messages are the TOML names (`server.backpressure_limit`).
 *
 * @example Validate
 * ```ts
 * import { defaultConfig, validateConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = defaultConfig();
 * assert.deepEqual(validateConfig(config), []);
 * config.server.backpressureLimit = 0;
 * config.compression.level = 99;
 * assert.equal(validateConfig(config).length, 2);
 * ```
 *
 * @param config The configuration to check.
 * @returns The problems, one sentence each.
 */
export function validateConfig(config: NetworkConfig): string[] {
  return collectIssues(config).map((issue) => issue.message);
}

/**
 * Returns things that are allowed but weaken security or are probably a mistake (plaintext,
 * unpinned servers, compression before encryption, an idle timeout shorter than the heartbeat).
 * The CLI logs them at startup.
 *
 * @example Plaintext is a warning, not an error
 * ```ts
 * import { configWarnings, createConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = createConfig({ transport: { encryptionEnabled: false } });
 * assert.ok(configWarnings(config).some((w) => w.includes("encryption_enabled")));
 * ```
 *
 * @param config A configuration (valid or not).
 * @returns The warnings, one sentence each.
 */
export function configWarnings(config: NetworkConfig): string[] {
  const warnings: string[] = [];
  const { server: s, transport: t, security: sec, compression: z } = config;
  if (t.encryptionEnabled === false && t.kind !== "tls") {
    warnings.push(
      `transport.encryption_enabled is false: traffic over ${t.kind} is neither encrypted nor authenticated`,
    );
  }
  if (t.encryptionEnabled !== false || t.kind === "tls") {
    if (sec.pattern === "NN") {
      warnings.push(
        `security.pattern "NN" authenticates neither side: anyone on the path can impersonate the peer`,
      );
    } else if (
      (sec.pattern === "XX" || sec.pattern === "XXpsk3") && sec.serverKeys.length === 0 &&
      sec.knownServersPath === ""
    ) {
      warnings.push(
        "security.server_keys is empty and security.known_servers_path is not set: " +
          "a client with this configuration does not authenticate the server",
      );
    }
    if (sec.allowUnauthenticated === true && sec.pattern !== "NN") {
      warnings.push(
        'security.allow_unauthenticated is true: a server with this configuration accepts clients that use the unauthenticated "NN" pattern',
      );
    }
  }
  if (z.enabled === true) {
    warnings.push(
      "compression.enabled is true: compressing secrets together with attacker-controlled data " +
        "can leak them through message sizes (CRIME); enable it only for payloads where that is safe",
    );
  }
  if (s.idleTimeout !== 0 && s.idleTimeout <= s.heartbeatInterval) {
    warnings.push(
      `server.idle_timeout "${s.idleTimeout}" is not greater than server.heartbeat_interval ` +
        `"${s.heartbeatInterval}": idle connections close before the first heartbeat`,
    );
  }
  return warnings;
}

// ---------------------------------------------------------------------------------------------
// Output

function tomlValue(spec: KeySpec, value: unknown): string {
  if (spec.octal && typeof value === "number" && Number.isSafeInteger(value) && value >= 0) {
    return `0o${value.toString(8).padStart(3, "0")}`;
  }
  // smol-toml writes strings and arrays with correct escaping; take the right-hand side.
  const line = stringifyToml({ v: value }).trimEnd();
  return line.slice(line.indexOf("=") + 1).trim();
}

/**
 * Writes a configuration as annotated TOML: every key, with a comment and its environment
 * variable. {@linkcode parseConfig} reads it back to an equal configuration.
 *
 * @example Round trip
 * ```ts
 * import { createConfig, parseConfig, stringifyConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = createConfig({ client: { autoReconnect: false } });
 * assert.deepEqual(parseConfig(stringifyConfig(config)), config);
 * ```
 *
 * @param config The configuration to write.
 * @returns The TOML text.
 */
export function stringifyConfig(config: NetworkConfig): string {
  const out: string[] = [
    "# @npro/network-protocol configuration.",
    "#",
    "# Every key is optional: a missing key takes its default. Durations are integer",
    "# milliseconds and sizes are bytes. Each key can be overridden by the environment",
    "# variable named next to it; environment values win over this file.",
    "# See docs/CONFIGURATION.md for the details.",
  ];
  const sections = config as unknown as Record<string, Record<string, unknown>>;
  for (const section of SECTIONS) {
    out.push("", `# ${SECTION_DOCS[section]}`, `[${section}]`);
    for (const spec of SCHEMA[section]) {
      out.push(`# ${spec.doc}`, `# env: ${envName(section, spec.key)}`);
      out.push(`${spec.key} = ${tomlValue(spec, sections[section]?.[camel(spec.key)])}`);
    }
  }
  return out.join("\n") + "\n";
}

/**
 * Returns the annotated example configuration: every key with a comment, set to its default.
 * Parsing it gives exactly {@linkcode defaultConfig}.
 *
 * @example The example parses to the defaults
 * ```ts
 * import { defaultConfig, exampleConfig, parseConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseConfig(exampleConfig()), defaultConfig());
 * ```
 *
 * @returns The TOML text.
 */
export function exampleConfig(): string {
  return stringifyConfig(DEFAULTS);
}

/**
 * Validates a configuration and writes it as annotated TOML (see {@linkcode stringifyConfig}).
 * The file is written to a temporary name next to `path` and renamed over it, so readers never
 * see a partial file.
 *
 * @example Save and load
 * ```ts
 * import { defaultConfig, loadConfig, saveConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * try {
 *   const config = defaultConfig();
 *   config.server.maxConnections = 50;
 *   await saveConfig(`${dir}/config.toml`, config);
 *   assert.deepEqual(await loadConfig({ path: `${dir}/config.toml` }), config);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 *
 * @param path The file to write.
 * @param config The configuration.
 * @param options An abort signal.
 * @returns A promise that resolves once the file is in place.
 * @throws {ConfigError} When the configuration is invalid or the file cannot be written.
 */
export async function saveConfig(
  path: string | URL,
  config: NetworkConfig,
  options: SaveConfigOptions = {},
): Promise<void> {
  const issues = validateConfig(config);
  if (issues.length > 0) {
    throw new ConfigError(
      `Refusing to save an invalid configuration (${issues.length} problem${
        issues.length === 1 ? "" : "s"
      }):`,
      issues,
    );
  }
  const text = stringifyConfig(config);
  const target = path instanceof URL ? path : String(path);
  const name = target instanceof URL ? target.href : target;
  const temporary = target instanceof URL
    ? new URL(`${target.href}.${crypto.randomUUID()}.tmp`)
    : `${target}.${crypto.randomUUID()}.tmp`;
  try {
    const writeOptions: Deno.WriteFileOptions = { createNew: true };
    if (options.signal !== undefined) writeOptions.signal = options.signal;
    await Deno.writeTextFile(temporary, text, writeOptions);
    await Deno.rename(temporary, target);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    if (options.signal?.aborted) {
      throw new ProtocolError("Cancelled", `Saving ${quote(name)} was aborted`, {
        cause: options.signal.reason,
      });
    }
    throw new ConfigError(
      `Cannot write configuration file ${quote(name)}: ${(error as Error).message}`,
      [],
      {
        cause: error,
      },
    );
  }
}
