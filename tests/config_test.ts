import assert from "node:assert/strict";
import fc from "fast-check";
import {
  configEnvNames,
  ConfigError,
  configWarnings,
  createConfig,
  defaultConfig,
  exampleConfig,
  loadConfig,
  type NetworkConfig,
  parseConfig,
  saveConfig,
  stringifyConfig,
  validateConfig,
} from "../src/config/mod.ts";
import { isProtocolError } from "../src/errors.ts";

/** The original's example config.toml, from its configuration guide, unchanged. */
const ORIGINAL_EXAMPLE = `# Server-specific configuration
[server]
address = "127.0.0.1:9000"
backpressure_limit = 32
connection_timeout = 5000 # milliseconds
heartbeat_interval = 15000 # milliseconds
# Client-specific configuration
[client]
address = "127.0.0.1:9000"
connection_timeout = 5000 # milliseconds
response_timeout = 30000 # milliseconds
# Transport configuration
[transport]
compression_enabled = false
encryption_enabled = true
# Logging configuration
[logging]
app_name = "my-application"
log_level = "info" # options: trace, debug, info, warn, error
log_to_console = true
`;

const KEY_A = "3p7bfXt9wbTTW2HC7OQ1Nz-DQ8hbeGdNrfx-FG-IK08";
const KEY_B = "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo";

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    assert.ok(isProtocolError(error, "ConfigError"));
    return error;
  }
  assert.fail("expected a ConfigError");
}

async function configErrorAsync(fn: () => Promise<unknown>): Promise<ConfigError> {
  try {
    await fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("defaults match the design and are fresh copies", () => {
  const config = defaultConfig();
  assert.deepEqual(config.server, {
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
    maxConnectionAge: 0,
    proxyProtocol: false,
    trustedProxies: [],
    drainGrace: 0,
    reusePort: false,
    workers: 1,
  });
  assert.deepEqual(config.client, {
    address: "127.0.0.1:9000",
    connectionTimeout: 5000,
    operationTimeout: 3000,
    responseTimeout: 30000,
    heartbeatInterval: 15000,
    autoReconnect: true,
    maxReconnectAttempts: 3,
    reconnectDelay: 1000,
    maxReconnectDelay: 30000,
  });
  assert.deepEqual(config.transport, {
    kind: "tcp",
    maxPayloadSize: 16777216,
    encryptionEnabled: true,
    unixSocketMode: 0o600,
    tlsCertPath: "",
    tlsKeyPath: "",
    tlsCaPath: "",
    tlsServerName: "",
    tlsAlpn: ["npro/2"],
    tlsBackend: "auto",
    tlsMinVersion: "1.2",
    tlsClientAuth: "none",
    tlsClientCaPath: "",
    tlsClientCertFingerprints: [],
    tlsClientSpkiPins: [],
    tlsClientCertPath: "",
    tlsClientKeyPath: "",
    tlsServerCertFingerprints: [],
    tlsServerSpkiPins: [],
    tlsPinOnly: false,
  });
  assert.deepEqual(config.security, {
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
    resumption: false,
    ticketLifetimeMs: 3600000,
    ticketKeyRotationMs: 3600000,
  });
  assert.deepEqual(config.compression, {
    enabled: false,
    algorithm: "lz4",
    level: 3,
    threshold: 512,
    accept: ["lz4", "zstd"],
  });
  assert.deepEqual(config.logging, {
    appName: "network-protocol",
    logLevel: "info",
    logToConsole: true,
    logToFile: false,
    logFilePath: "",
    jsonFormat: false,
  });
  assert.deepEqual(validateConfig(config), []);
  config.transport.tlsAlpn.push("h2");
  config.server.maxConnections = 1;
  assert.deepEqual(defaultConfig().transport.tlsAlpn, ["npro/2"]);
  assert.equal(defaultConfig().server.maxConnections, 1000);
  assert.notEqual(defaultConfig(), defaultConfig());
});

Deno.test("an empty or comment-only file gives the defaults", () => {
  assert.deepEqual(parseConfig(""), defaultConfig());
  assert.deepEqual(parseConfig("# nothing\n\n"), defaultConfig());
});

Deno.test("the original's example config.toml parses unchanged", () => {
  const config = parseConfig(ORIGINAL_EXAMPLE);
  const expected = defaultConfig();
  expected.logging.appName = "my-application";
  assert.deepEqual(config, expected);
  // transport.compression_enabled is an alias of compression.enabled.
  const enabled = parseConfig(
    ORIGINAL_EXAMPLE.replace("compression_enabled = false", "compression_enabled = true"),
  );
  assert.equal(enabled.compression.enabled, true);
});

Deno.test("partial files: one key, dotted keys, inline tables", () => {
  const a = parseConfig('[logging]\nlog_level = "debug"\n');
  assert.equal(a.logging.logLevel, "debug");
  assert.deepEqual({ ...a, logging: defaultConfig().logging }, defaultConfig());

  const b = parseConfig('server.address = "[::1]:0"\nclient.auto_reconnect = false\n');
  assert.equal(b.server.address, "[::1]:0");
  assert.equal(b.client.autoReconnect, false);

  const c = parseConfig(
    'compression = { enabled = true, algorithm = "zstd", level = 19 }\n' +
      "[transport]\nunix_socket_mode = 0o660\nmax_payload_size = 1_048_576\n",
  );
  assert.equal(c.compression.enabled, true);
  assert.equal(c.compression.algorithm, "zstd");
  assert.equal(c.compression.level, 19);
  assert.equal(c.transport.unixSocketMode, 0o660);
  assert.equal(c.transport.maxPayloadSize, 1048576);
});

Deno.test("aliases: the original's transport compression keys", () => {
  const config = parseConfig(
    "[transport]\ncompression_enabled = true\ncompression_level = 9\ncompression_threshold_bytes = 1024\n",
  );
  assert.equal(config.compression.enabled, true);
  assert.equal(config.compression.level, 9);
  assert.equal(config.compression.threshold, 1024);
  // Both set to the same value: fine.
  assert.equal(
    parseConfig("[transport]\ncompression_level = 5\n[compression]\nlevel = 5\n").compression.level,
    5,
  );
  // Both set to different values: a problem naming both lines.
  const error = configError(() =>
    parseConfig("[transport]\ncompression_level = 5\n[compression]\nlevel = 7\n")
  );
  assert.equal(error.problems.length, 1);
  assert.match(
    error.problems[0]!,
    /^line 4: compression\.level \("7"\) conflicts with transport\.compression_level \("5", line 2\)/,
  );
});

Deno.test("environment: every kind of value, layered over the TOML", () => {
  const toml = '[server]\nbackpressure_limit = 64\naddress = "10.0.0.1:1"\n';
  const config = parseConfig(toml, {
    env: {
      NETWORK_PROTOCOL_SERVER_BACKPRESSURE_LIMIT: "128",
      NETWORK_PROTOCOL_LOGGING_LOG_LEVEL: "debug",
      NETWORK_PROTOCOL_CLIENT_AUTO_RECONNECT: "0",
      NETWORK_PROTOCOL_LOGGING_JSON_FORMAT: "TRUE",
      NETWORK_PROTOCOL_COMPRESSION_ENABLED: "1",
      NETWORK_PROTOCOL_COMPRESSION_ACCEPT: "zstd, lz4",
      NETWORK_PROTOCOL_TRANSPORT_TLS_ALPN: "",
      NETWORK_PROTOCOL_SECURITY_SERVER_KEYS: `${KEY_A},${KEY_B}`,
      NETWORK_PROTOCOL_TRANSPORT_UNIX_SOCKET_MODE: "0660",
      NETWORK_PROTOCOL_UNRELATED: "ignored",
    },
  });
  assert.equal(config.server.backpressureLimit, 128);
  assert.equal(config.server.address, "10.0.0.1:1");
  assert.equal(config.logging.logLevel, "debug");
  assert.equal(config.client.autoReconnect, false);
  assert.equal(config.logging.jsonFormat, true);
  assert.equal(config.compression.enabled, true);
  assert.deepEqual(config.compression.accept, ["zstd", "lz4"]);
  assert.deepEqual(config.transport.tlsAlpn, []);
  assert.deepEqual(config.security.serverKeys, [KEY_A, KEY_B]);
  assert.equal(config.transport.unixSocketMode, 0o660);

  // A getter works like a record.
  const seen: string[] = [];
  const viaGetter = parseConfig("", {
    env: (name) => {
      seen.push(name);
      return name === "NETWORK_PROTOCOL_SERVER_ADDRESS" ? "example.com:8080" : undefined;
    },
  });
  assert.equal(viaGetter.server.address, "example.com:8080");
  assert.deepEqual(seen.toSorted(), configEnvNames().toSorted());
  assert.ok(seen.every((name) => name.startsWith("NETWORK_PROTOCOL_")));
});

Deno.test("environment: the original's four names, and precedence", () => {
  const config = parseConfig("", {
    env: {
      NETWORK_PROTOCOL_SERVER_ADDRESS: "0.0.0.0:8080",
      NETWORK_PROTOCOL_BACKPRESSURE_LIMIT: "7",
      NETWORK_PROTOCOL_CONNECTION_TIMEOUT_MS: "10000",
      NETWORK_PROTOCOL_HEARTBEAT_INTERVAL_MS: "2000",
    },
  });
  assert.equal(config.server.address, "0.0.0.0:8080");
  assert.equal(config.server.backpressureLimit, 7);
  assert.equal(config.server.connectionTimeout, 10000);
  assert.equal(config.client.connectionTimeout, 10000);
  assert.equal(config.server.heartbeatInterval, 2000);
  assert.equal(config.client.heartbeatInterval, 15000);

  // The specific name wins over the legacy one, and both win over the file.
  const layered = parseConfig("[client]\nconnection_timeout = 700\n", {
    env: {
      NETWORK_PROTOCOL_CONNECTION_TIMEOUT_MS: "10000",
      NETWORK_PROTOCOL_CLIENT_CONNECTION_TIMEOUT: "2500",
    },
  });
  assert.equal(layered.server.connectionTimeout, 10000);
  assert.equal(layered.client.connectionTimeout, 2500);

  // The alias names work in the environment too, and conflict like in TOML.
  assert.equal(
    parseConfig("", { env: { NETWORK_PROTOCOL_TRANSPORT_COMPRESSION_LEVEL: "9" } }).compression
      .level,
    9,
  );
  const conflict = configError(() =>
    parseConfig("", {
      env: {
        NETWORK_PROTOCOL_TRANSPORT_COMPRESSION_LEVEL: "9",
        NETWORK_PROTOCOL_COMPRESSION_LEVEL: "4",
      },
    })
  );
  assert.match(
    conflict.message,
    /NETWORK_PROTOCOL_COMPRESSION_LEVEL.*conflicts with NETWORK_PROTOCOL_TRANSPORT_COMPRESSION_LEVEL/,
  );
});

Deno.test("environment: bad values are errors naming the variable, all at once", () => {
  const error = configError(() =>
    parseConfig("", {
      env: {
        NETWORK_PROTOCOL_SERVER_BACKPRESSURE_LIMIT: "12abc",
        NETWORK_PROTOCOL_CLIENT_AUTO_RECONNECT: "yes",
        NETWORK_PROTOCOL_CONNECTION_TIMEOUT_MS: "1.5",
        NETWORK_PROTOCOL_COMPRESSION_ACCEPT: "lz4,,zstd",
        NETWORK_PROTOCOL_TRANSPORT_UNIX_SOCKET_MODE: "0999",
        NETWORK_PROTOCOL_SERVER_MAX_CONNECTIONS: "99999999999999999999",
        NETWORK_PROTOCOL_SERVER_SHUTDOWN_TIMEOUT: "",
        NETWORK_PROTOCOL_LOGGING_LOG_LEVEL: "loud",
      },
    })
  );
  const expected = [
    /^NETWORK_PROTOCOL_CONNECTION_TIMEOUT_MS: server\.connection_timeout must be an integer, found "1\.5"$/,
    /^NETWORK_PROTOCOL_SERVER_BACKPRESSURE_LIMIT: server\.backpressure_limit must be an integer, found "12abc"$/,
    /^NETWORK_PROTOCOL_SERVER_SHUTDOWN_TIMEOUT: .*must be an integer, found ""$/,
    /^NETWORK_PROTOCOL_SERVER_MAX_CONNECTIONS: .*out of range/,
    /^NETWORK_PROTOCOL_CLIENT_AUTO_RECONNECT: client\.auto_reconnect must be true, false, 1 or 0, found "yes"$/,
    /^NETWORK_PROTOCOL_TRANSPORT_UNIX_SOCKET_MODE: .*octal/,
    /^NETWORK_PROTOCOL_COMPRESSION_ACCEPT: .*empty items/,
    /^NETWORK_PROTOCOL_LOGGING_LOG_LEVEL: logging\.log_level must be one of/,
  ];
  for (const pattern of expected) {
    assert.ok(error.problems.some((p) => pattern.test(p)), `missing ${pattern}\n${error.message}`);
  }
  // A legacy name that sets two keys is parsed and reported once.
  assert.equal(error.problems.filter((p) => p.includes("CONNECTION_TIMEOUT_MS")).length, 1);
  assert.equal(error.problems.length, expected.length);
  assert.ok(error.problems.every((p) => p.startsWith("NETWORK_PROTOCOL_")));
  assert.equal(error.message.split("\n").length, error.problems.length + 1);
});

Deno.test("unknown keys and wrong types are reported with their lines, all at once", () => {
  const toml = [
    "[server]", // 1
    'address = "127.0.0.1:9000"', // 2
    "adress = 1", // 3
    'backpressure_limit = "32"', // 4
    "", // 5
    "[client]", // 6
    "auto_reconnect = 1", // 7
    "connection_timeout = 1.5", // 8
    "[servr]", // 9
    "x = 1", // 10
    "[transport]", // 11
    "tls_alpn = [1, 2]", // 12
    "max_payload_size = 9007199254740993", // 13
    "kind = 5", // 14
    "logging = 3", // 15
  ].join("\n");
  const error = configError(() => parseConfig(toml, { source: "my.toml" }));
  assert.match(error.message, /^Configuration "my\.toml" is invalid \(9 problems\):\n/);
  assert.deepEqual(error.problems, [
    'line 3: unknown key "server.adress" (did you mean "address"?)',
    'line 4: server.backpressure_limit must be an integer, found a string ("32")',
    "line 7: client.auto_reconnect must be a boolean, found an integer (1)",
    "line 8: client.connection_timeout must be an integer, found a float (1.5)",
    'line 9: unknown section "servr" (did you mean "server"?)',
    "line 12: transport.tls_alpn must be an array of strings, found an array",
    "line 13: transport.max_payload_size must be an integer, found an integer (9007199254740993)",
    "line 14: transport.kind must be a string, found an integer (5)",
    'line 15: unknown key "transport.logging"',
  ]);
  for (const problem of error.problems) assert.ok(error.message.includes(problem));
});

Deno.test("a syntax error is a ConfigError with line, column and cause", () => {
  const error = configError(() => parseConfig('[server]\naddress = "x\n'));
  assert.equal(error.line, 2);
  assert.equal(typeof error.column, "number");
  assert.ok(error.cause instanceof Error);
  assert.match(error.message, /not valid TOML/);
  assert.match(error.problems[0]!, /^line 2, column \d+: /);
  // A duplicate table is a syntax error too.
  assert.equal(configError(() => parseConfig("[server]\n[server]\n")).line, 2);
});

Deno.test("prototype-pollution keys are rejected", () => {
  for (
    const toml of [
      "[__proto__]\npolluted = 1\n",
      "[server]\n__proto__ = { polluted = 1 }\n",
      "constructor.prototype.polluted = 1\n",
      '[server."__proto__"]\npolluted = 1\n',
    ]
  ) {
    const error = configError(() => parseConfig(toml));
    assert.ok(error.cause !== undefined || error.problems.length > 0, toml);
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal((Object.prototype as Record<string, unknown>).polluted, undefined);
  // Through createConfig as well: __proto__ is not a section.
  const input = JSON.parse('{"__proto__": {"polluted": 1}}');
  configError(() => createConfig(input));
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("validation: every range, every problem at once", () => {
  const cases: [string, (c: NetworkConfig) => void, RegExp][] = [
    [
      "backpressure 0",
      (c) => (c.server.backpressureLimit = 0),
      /server\.backpressure_limit must be from 1 to 1000000, found "0"/,
    ],
    [
      "backpressure max",
      (c) => (c.server.backpressureLimit = 1_000_001),
      /server\.backpressure_limit/,
    ],
    [
      "connection timeout low",
      (c) => (c.server.connectionTimeout = 99),
      /server\.connection_timeout must be from 100 ms to 300000 ms/,
    ],
    [
      "connection timeout high",
      (c) => (c.client.connectionTimeout = 300_001),
      /client\.connection_timeout/,
    ],
    [
      "idle negative",
      (c) => (c.server.idleTimeout = -1),
      /server\.idle_timeout .*\(or 0 to disable\)/,
    ],
    [
      "heartbeat high",
      (c) => (c.server.heartbeatInterval = 3_600_001),
      /server\.heartbeat_interval/,
    ],
    ["heartbeat low", (c) => (c.client.heartbeatInterval = 50), /client\.heartbeat_interval/],
    ["shutdown low", (c) => (c.server.shutdownTimeout = 99), /server\.shutdown_timeout/],
    ["shutdown high", (c) => (c.server.shutdownTimeout = 600_001), /server\.shutdown_timeout/],
    ["max connections", (c) => (c.server.maxConnections = 100_001), /server\.max_connections/],
    ["max handshakes", (c) => (c.server.maxHandshakes = 0), /server\.max_handshakes/],
    ["operation timeout", (c) => (c.client.operationTimeout = 9), /client\.operation_timeout/],
    ["response timeout", (c) => (c.client.responseTimeout = 99), /client\.response_timeout/],
    [
      "reconnect attempts",
      (c) => (c.client.maxReconnectAttempts = 0),
      /max_reconnect_attempts must be greater than 0 when client\.auto_reconnect/,
    ],
    ["reconnect delay", (c) => (c.client.reconnectDelay = 60_001), /client\.reconnect_delay/],
    [
      "max reconnect delay",
      (c) => (c.client.maxReconnectDelay = 500),
      /max_reconnect_delay "500" must not be less than/,
    ],
    [
      "payload low",
      (c) => (c.transport.maxPayloadSize = 1023),
      /transport\.max_payload_size must be from 1024 bytes to 104857600 bytes/,
    ],
    [
      "payload high",
      (c) => (c.transport.maxPayloadSize = 100 * 1024 * 1024 + 1),
      /transport\.max_payload_size/,
    ],
    [
      "payload float",
      (c) => (c.transport.maxPayloadSize = 2048.5),
      /transport\.max_payload_size must be an integer/,
    ],
    ["level", (c) => (c.compression.level = 23), /compression\.level must be from 1 to 22/],
    [
      "threshold",
      (c) => (c.compression.threshold = 16777217),
      /compression\.threshold "16777217" must not exceed transport\.max_payload_size/,
    ],
    [
      "algorithm",
      (c) => (c.compression.algorithm = "gzip" as "lz4"),
      /compression\.algorithm must be one of "lz4", "zstd", found "gzip"/,
    ],
    [
      "accept",
      (c) => (c.compression.accept = ["lz4", "brotli" as "lz4"]),
      /compression\.accept entry "brotli"/,
    ],
    ["accept dup", (c) => (c.compression.accept = ["lz4", "lz4"]), /lists "lz4" twice/],
    ["accept algorithm", (c) => {
      c.compression.enabled = true;
      c.compression.accept = ["zstd"];
    }, /compression\.accept must include compression\.algorithm "lz4"/],
    [
      "log file",
      (c) => (c.logging.logToFile = true),
      /log_file_path is required when logging\.log_to_file is true/,
    ],
    ["no output", (c) => (c.logging.logToConsole = false), /at least one output/],
    [
      "level name",
      (c) => (c.logging.logLevel = "verbose" as "info"),
      /logging\.log_level must be one of/,
    ],
    [
      "app name",
      (c) => (c.logging.appName = "x".repeat(65)),
      /logging\.app_name must be 1 to 64 characters/,
    ],
    [
      "bad key",
      (c) => (c.security.serverKeys = ["not-a-key"]),
      /security\.server_keys entry "not-a-key" is not a base64url X25519 public key/,
    ],
    [
      "non-canonical key",
      (c) => (c.security.allowedKeys = [KEY_A.slice(0, 42) + "9"]),
      /security\.allowed_keys entry/,
    ],
    [
      "padded std base64 key",
      (c) => (c.security.allowedKeys = [KEY_B.replace("_", "/")]),
      /security\.allowed_keys entry/,
    ],
    ["dup key", (c) => (c.security.allowedKeys = [KEY_A, KEY_A]), /lists .* twice/],
    [
      "NN",
      (c) => (c.security.pattern = "NN"),
      /"NN" authenticates neither side; set security\.allow_unauthenticated = true/,
    ],
    ["pattern", (c) => (c.security.pattern = "XK" as "XX"), /security\.pattern must be one of/],
    [
      "psk missing",
      (c) => (c.security.pattern = "XXpsk3"),
      /security\.pattern "XXpsk3" needs security\.psk_path/,
    ],
    [
      "psk unused",
      (c) => (c.security.pskPath = "/etc/psk"),
      /psk_path is set but security\.pattern "XX" does not use/,
    ],
    ["rekey records", (c) => (c.security.rekeyAfterRecords = 0), /security\.rekey_after_records/],
    ["rekey ms", (c) => (c.security.rekeyAfterMs = 999), /security\.rekey_after_ms/],
    [
      "tls pair",
      (c) => (c.transport.tlsCertPath = "/c.pem"),
      /tls_cert_path and transport\.tls_key_path must be set together/,
    ],
    [
      "tls server name",
      (c) => (c.transport.tlsServerName = "bad name"),
      /transport\.tls_server_name/,
    ],
    [
      "alpn empty",
      (c) => (c.transport.tlsAlpn = [""]),
      /transport\.tls_alpn entry "" must be 1 to 255 bytes/,
    ],
    [
      "mode",
      (c) => (c.transport.unixSocketMode = 600),
      /unix_socket_mode must be a permission mode from 0o000 to 0o777 \(write it as 0o600 in TOML\), found "600"/,
    ],
    [
      "kind",
      (c) => (c.transport.kind = "udp" as "tcp"),
      /transport\.kind must be one of "tcp", "unix", "tls"/,
    ],
    [
      "lone surrogate",
      (c) => (c.security.staticKeyPath = "\ud800"),
      /static_key_path must be valid Unicode/,
    ],
    [
      "type",
      (c) => ((c.client as unknown as Record<string, unknown>).autoReconnect = "yes"),
      /client\.auto_reconnect must be a boolean/,
    ],
  ];
  const all = defaultConfig();
  for (const [name, mutate, pattern] of cases) {
    const config = defaultConfig();
    mutate(config);
    const problems = validateConfig(config);
    assert.ok(problems.some((p) => pattern.test(p)), `${name}: ${JSON.stringify(problems)}`);
    mutate(all);
  }
  // Several problems at once, each a sentence.
  const problems = validateConfig(all);
  assert.ok(problems.length >= 20, `only ${problems.length} problems`);
  // Boundaries are inclusive.
  const edge = defaultConfig();
  edge.server.backpressureLimit = 1_000_000;
  edge.server.connectionTimeout = 100;
  edge.server.heartbeatInterval = 3_600_000;
  edge.server.idleTimeout = 0;
  edge.server.maxConnections = 100_000;
  edge.transport.maxPayloadSize = 1024;
  edge.multiplex.frameSize = 1024;
  edge.compression.threshold = 1024;
  edge.compression.level = 22;
  edge.client.reconnectDelay = 10;
  edge.client.maxReconnectDelay = 10;
  edge.client.autoReconnect = false;
  edge.client.maxReconnectAttempts = 0;
  edge.transport.unixSocketMode = 0o777;
  edge.security.pattern = "NN";
  edge.security.allowUnauthenticated = true;
  assert.deepEqual(validateConfig(edge), []);
});

Deno.test("validation: addresses", () => {
  const ok = [
    "127.0.0.1:9000",
    "0.0.0.0:0",
    "[::1]:9000",
    "[::]:65535",
    "localhost:80",
    "example.com:8080",
    "a-b.example.:1",
  ];
  const bad = [
    "",
    "127.0.0.1",
    "::1:9000",
    "[::1]",
    "[zz]:1",
    "host:65536",
    "host:-1",
    "256.1.1.1:80",
    "bad_host:80",
    "999.1.1.1:80",
    "/tmp/x.sock",
  ];
  for (const address of ok) {
    const config = defaultConfig();
    config.server.address = address;
    assert.deepEqual(validateConfig(config), [], address);
  }
  for (const address of bad) {
    const config = defaultConfig();
    config.server.address = address;
    assert.equal(validateConfig(config).length, 1, address);
    assert.match(validateConfig(config)[0]!, /^server\.address /);
  }
  // A client cannot connect to port 0.
  const client = defaultConfig();
  client.client.address = "127.0.0.1:0";
  assert.match(validateConfig(client)[0]!, /client\.address port must be from 1 to 65535/);
  // Unix sockets need absolute paths (and the same applies to the client address).
  const unix = defaultConfig();
  unix.transport.kind = "unix";
  unix.server.address = "/run/npro.sock";
  unix.client.address = "relative.sock";
  assert.deepEqual(validateConfig(unix), [
    'client.address must be an absolute socket path when transport.kind is "unix", found "relative.sock"',
  ]);
  unix.client.address = "/" + "x".repeat(200);
  assert.match(validateConfig(unix)[0]!, /longer than 107 bytes/);
});

Deno.test("validation problems from a file carry their line", () => {
  const error = configError(() =>
    parseConfig('[server]\nbackpressure_limit = 0\n[security]\npattern = "NN"\n', {
      env: { NETWORK_PROTOCOL_COMPRESSION_LEVEL: "0" },
    })
  );
  assert.deepEqual(error.problems.map((p) => p.split(":")[0]), [
    "line 2",
    "line 4",
    "NETWORK_PROTOCOL_COMPRESSION_LEVEL",
  ]);
});

Deno.test("warnings: plaintext, unpinned servers, compression, idle timeout", () => {
  const defaults = configWarnings(defaultConfig());
  assert.equal(defaults.length, 1);
  assert.match(defaults[0]!, /does not authenticate the server/);
  assert.deepEqual(configWarnings(createConfig({ security: { serverKeys: [KEY_A] } })), []);

  const plain = createConfig({ transport: { encryptionEnabled: false } });
  assert.deepEqual(validateConfig(plain), []);
  assert.ok(configWarnings(plain).some((w) => /encryption_enabled is false/.test(w)));
  const tls = createConfig({ transport: { encryptionEnabled: false, kind: "tls" } });
  assert.ok(!configWarnings(tls).some((w) => /encryption_enabled/.test(w)));

  const misc = createConfig({
    server: { idleTimeout: 1000, heartbeatInterval: 5000 },
    compression: { enabled: true },
    security: { pattern: "NN", allowUnauthenticated: true },
  });
  const warnings = configWarnings(misc);
  assert.ok(warnings.some((w) => /CRIME/.test(w)));
  assert.ok(warnings.some((w) => /idle connections close before the first heartbeat/.test(w)));
  assert.ok(warnings.some((w) => /"NN" authenticates neither side/.test(w)));
});

Deno.test("createConfig: partial objects, unknown keys and wrong types", () => {
  const config = createConfig({
    client: { responseTimeout: 1000 },
    logging: { logLevel: "warning" },
  });
  assert.equal(config.client.responseTimeout, 1000);
  assert.equal(config.logging.logLevel, "warning");
  const input = { server: { adress: "x", maxConnections: "5" }, nope: {} } as unknown as Parameters<
    typeof createConfig
  >[0];
  const error = configError(() => createConfig(input));
  assert.deepEqual(error.problems, [
    'options: unknown key "server.adress" (did you mean "address"?)',
    'options: server.max_connections must be an integer, found a string ("5")',
    'options: unknown section "nope"',
  ]);
  // The input is copied, not kept.
  const alpn = ["a"];
  const copy = createConfig({ transport: { tlsAlpn: alpn } });
  alpn.push("b");
  assert.deepEqual(copy.transport.tlsAlpn, ["a"]);
});

Deno.test("exampleConfig: every key commented, parses back to the defaults", async () => {
  const text = exampleConfig();
  assert.deepEqual(parseConfig(text), defaultConfig());
  const lines = text.split("\n");
  let keys = 0;
  for (let i = 0; i < lines.length; i++) {
    if (/^[a-z_]+ = /.test(lines[i]!)) {
      keys++;
      assert.match(lines[i - 1]!, /^# env: NETWORK_PROTOCOL_[A-Z_]+$/);
      assert.match(lines[i - 2]!, /^# \S/);
    }
  }
  const defaults = defaultConfig() as unknown as Record<string, Record<string, unknown>>;
  const expectedKeys = Object.values(defaults).reduce((n, s) => n + Object.keys(s).length, 0);
  assert.equal(keys, expectedKeys);
  assert.match(text, /^unix_socket_mode = 0o600$/m);
  // The shipped example file is this text.
  const shipped = await Deno.readTextFile(new URL("../examples/config.toml", import.meta.url));
  assert.equal(shipped, text);
});

Deno.test("saveConfig and loadConfig round trip in a temporary directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "npro_config_" });
  try {
    const config = defaultConfig();
    config.server.address = "[::1]:7000";
    config.security.allowedKeys = [KEY_A, KEY_B];
    config.logging.appName = 'quote " back \\ slash é 😀';
    config.transport.unixSocketMode = 0o640;
    const path = `${dir}/config.toml`;
    await saveConfig(path, config);
    assert.deepEqual(await loadConfig({ path }), config);
    assert.deepEqual(await loadConfig({ path: new URL(`file://${path}`) }), config);
    // Only the final file is left behind.
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names, ["config.toml"]);
    // Environment overrides apply over the file.
    const overridden = await loadConfig({
      path,
      env: { NETWORK_PROTOCOL_SERVER_MAX_CONNECTIONS: "9" },
    });
    assert.equal(overridden.server.maxConnections, 9);

    // An invalid configuration is not written.
    const invalid = defaultConfig();
    invalid.server.backpressureLimit = 0;
    const refused = await configErrorAsync(() => saveConfig(`${dir}/bad.toml`, invalid));
    assert.match(refused.message, /Refusing to save/);
    await assert.rejects(Deno.stat(`${dir}/bad.toml`), Deno.errors.NotFound);

    // Problems in a loaded file name the file.
    await Deno.writeTextFile(`${dir}/typo.toml`, "[server]\nadress = 1\n");
    const typo = await configErrorAsync(() => loadConfig({ path: `${dir}/typo.toml` }));
    assert.ok(typo.message.startsWith(`Configuration "${dir}/typo.toml" is invalid`));

    // Oversized and non-UTF-8 files are refused.
    await Deno.writeTextFile(`${dir}/big.toml`, "#".repeat(1024 * 1024 + 1));
    assert.match(
      (await configErrorAsync(() => loadConfig({ path: `${dir}/big.toml` }))).message,
      /larger than/,
    );
    await Deno.writeFile(`${dir}/bin.toml`, new Uint8Array([0x61, 0xff, 0xfe]));
    assert.match(
      (await configErrorAsync(() => loadConfig({ path: `${dir}/bin.toml` }))).message,
      /UTF-8/,
    );

    // Aborting before reading.
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await assert.rejects(loadConfig({ path, signal: controller.signal }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig: a missing file names the path and keeps the cause; no path gives defaults", async () => {
  const error = await configErrorAsync(() => loadConfig({ path: "/nonexistent/npro/config.toml" }));
  assert.equal(error.message, 'Configuration file "/nonexistent/npro/config.toml" does not exist');
  assert.ok(error.cause instanceof Deno.errors.NotFound);
  assert.deepEqual(await loadConfig(), defaultConfig());
  assert.equal(
    (await loadConfig({ env: { NETWORK_PROTOCOL_BACKPRESSURE_LIMIT: "5" } })).server
      .backpressureLimit,
    5,
  );
  const bad = await configErrorAsync(() =>
    loadConfig({ env: { NETWORK_PROTOCOL_BACKPRESSURE_LIMIT: "x" } })
  );
  assert.match(bad.problems[0]!, /^NETWORK_PROTOCOL_BACKPRESSURE_LIMIT: /);
});

Deno.test("loadConfig env: true reads only known names (--allow-env=NETWORK_PROTOCOL_* is enough)", async () => {
  const configUrl = new URL("../src/config/mod.ts", import.meta.url).href;
  const script = `
    import { loadConfig } from ${JSON.stringify(configUrl)};
    const config = await loadConfig({ env: true });
    console.log(JSON.stringify([config.server.backpressureLimit, config.logging.logLevel]));
  `;
  const command = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      "--no-prompt",
      "--allow-env=NETWORK_PROTOCOL_*",
      script,
    ],
    env: {
      NETWORK_PROTOCOL_SERVER_BACKPRESSURE_LIMIT: "77",
      NETWORK_PROTOCOL_LOGGING_LOG_LEVEL: "warn",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  });
  const output = await command.output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.equal(new TextDecoder().decode(output.stdout).trim(), '[77,"warn"]');
});

const KEY = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) =>
  btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "")
);
const TEXT = fc.string({ unit: "binary", maxLength: 40 });

const VALID_CONFIG: fc.Arbitrary<NetworkConfig> = fc.record({
  server: fc.record({
    address: fc.constantFrom("127.0.0.1:9000", "[::1]:0", "example.com:443", "0.0.0.0:65535"),
    backpressureLimit: fc.integer({ min: 1, max: 1_000_000 }),
    connectionTimeout: fc.integer({ min: 100, max: 300_000 }),
    idleTimeout: fc.oneof(fc.constant(0), fc.integer({ min: 100, max: 86_400_000 })),
    heartbeatInterval: fc.integer({ min: 100, max: 3_600_000 }),
    shutdownTimeout: fc.integer({ min: 100, max: 600_000 }),
    maxConnections: fc.integer({ min: 1, max: 100_000 }),
    maxHandshakes: fc.integer({ min: 1, max: 100_000 }),
    handshakeRate: fc.integer({ min: 0, max: 1_000_000 }),
    handshakeRatePerAddress: fc.integer({ min: 0, max: 1_000_000 }),
    maxProtocolViolations: fc.integer({ min: 0, max: 1_000_000 }),
    maxConnectionAge: fc.constant(defaultConfig().server.maxConnectionAge),
    // The PROXY protocol needs the TCP transport and a trusted proxy: off, with some ranges.
    proxyProtocol: fc.constant(false),
    trustedProxies: fc.constantFrom<string[]>([], ["127.0.0.1"], ["10.0.0.0/8", "::1"]),
    drainGrace: fc.integer({ min: 0, max: 600_000 }),
    // SO_REUSEPORT needs the TCP transport.
    reusePort: fc.constant(false),
    // More than one worker needs the TCP transport too.
    workers: fc.constant(1),
  }, { noNullPrototype: true }),
  client: fc.record({
    address: fc.constantFrom("127.0.0.1:9000", "[::1]:1", "localhost:8080"),
    connectionTimeout: fc.integer({ min: 100, max: 300_000 }),
    operationTimeout: fc.integer({ min: 10, max: 300_000 }),
    responseTimeout: fc.integer({ min: 100, max: 3_600_000 }),
    heartbeatInterval: fc.integer({ min: 100, max: 3_600_000 }),
    autoReconnect: fc.boolean(),
    maxReconnectAttempts: fc.integer({ min: 1, max: 1_000_000 }),
    reconnectDelay: fc.integer({ min: 10, max: 60_000 }),
    maxReconnectDelay: fc.integer({ min: 60_000, max: 3_600_000 }),
  }, { noNullPrototype: true }),
  transport: fc.record({
    kind: fc.constantFrom("tcp" as const, "tls" as const),
    maxPayloadSize: fc.integer({ min: 1_048_576, max: 100 * 1024 * 1024 }),
    encryptionEnabled: fc.boolean(),
    unixSocketMode: fc.integer({ min: 0, max: 0o777 }),
    tlsCertPath: TEXT,
    tlsKeyPath: TEXT,
    tlsCaPath: TEXT,
    tlsServerName: fc.constantFrom("", "example.com", "localhost"),
    tlsAlpn: fc.array(fc.string({ minLength: 1, maxLength: 20 }), { maxLength: 3 }),
    tlsBackend: fc.constantFrom("auto" as const, "node" as const),
    tlsMinVersion: fc.constantFrom("1.2" as const, "1.3" as const),
    tlsClientAuth: fc.constant("require" as const),
    tlsClientCaPath: fc.constant("ca.pem"),
    tlsClientCertFingerprints: fc.constantFrom<string[]>([], [Array(32).fill("AB").join(":")]),
    tlsClientSpkiPins: fc.constantFrom<string[]>(
      [],
      ["O8i8q0aBwX0jCNMgsFZo+GbzxdU1QIwgXodBOOE4+Ww="],
    ),
    tlsClientCertPath: fc.constant(""),
    tlsClientKeyPath: fc.constant(""),
    tlsServerCertFingerprints: fc.constant<string[]>([Array(32).fill("cd").join("")]),
    tlsServerSpkiPins: fc.constant<string[]>([]),
    tlsPinOnly: fc.boolean(),
  }, { noNullPrototype: true }),
  security: fc.record({
    pattern: fc.constantFrom("NK" as const, "XX" as const, "IK" as const, "KK" as const),
    staticKeyPath: TEXT,
    serverKeys: fc.uniqueArray(KEY, { maxLength: 3 }),
    allowedKeys: fc.uniqueArray(KEY, { maxLength: 3 }),
    pskPath: fc.constant(""),
    allowUnauthenticated: fc.boolean(),
    knownServersPath: TEXT,
    rekeyAfterRecords: fc.integer({ min: 1, max: 2 ** 53 - 2 }),
    rekeyAfterBytes: fc.integer({ min: 1024, max: Number.MAX_SAFE_INTEGER }),
    rekeyAfterMs: fc.integer({ min: 1000, max: 86_400_000 }),
    resumption: fc.boolean(),
    // Rotation never exceeds the lifetime (a rule between the two keys).
    ticketLifetimeMs: fc.constant(604_800_000),
    ticketKeyRotationMs: fc.integer({ min: 1000, max: 604_800_000 }),
  }, { noNullPrototype: true }),
  compression: fc.record({
    enabled: fc.boolean(),
    algorithm: fc.constantFrom("lz4" as const, "zstd" as const),
    level: fc.integer({ min: 1, max: 22 }),
    threshold: fc.integer({ min: 0, max: 1_048_576 }),
    accept: fc.constantFrom<("lz4" | "zstd")[]>(["lz4", "zstd"], ["zstd", "lz4"]),
  }, { noNullPrototype: true }),
  multiplex: fc.constant(defaultConfig().multiplex),
  pool: fc.constant(defaultConfig().pool),
  cluster: fc.constant(defaultConfig().cluster),
  admin: fc.record({
    address: fc.constantFrom("", "127.0.0.1:9100", "[::1]:0"),
  }, { noNullPrototype: true }),
  logging: fc.record({
    appName: fc.string({ unit: "binary", minLength: 1, maxLength: 32 }),
    logLevel: fc.constantFrom(
      "trace" as const,
      "debug" as const,
      "info" as const,
      "warn" as const,
      "warning" as const,
      "error" as const,
      "fatal" as const,
    ),
    logToConsole: fc.boolean(),
    logToFile: fc.boolean(),
    logFilePath: fc.string({ unit: "binary", minLength: 1, maxLength: 40 }),
    jsonFormat: fc.boolean(),
  }, { noNullPrototype: true }),
}, { noNullPrototype: true }).map((config) => {
  // Keep cross-key rules satisfied.
  if (config.transport.tlsCertPath === "") config.transport.tlsKeyPath = "";
  else if (config.transport.tlsKeyPath === "") config.transport.tlsKeyPath = "key.pem";
  if (!config.logging.logToConsole && !config.logging.logToFile) config.logging.logToConsole = true;
  return config;
});

Deno.test("property: valid configurations round-trip through the saved TOML", () => {
  fc.assert(
    fc.property(VALID_CONFIG, (config) => {
      assert.deepEqual(validateConfig(config), []);
      assert.deepEqual(parseConfig(stringifyConfig(config)), config);
    }),
    { numRuns: 300 },
  );
});

Deno.test("property: saveConfig files load back equal", async () => {
  const dir = await Deno.makeTempDir({ prefix: "npro_config_prop_" });
  try {
    await fc.assert(
      fc.asyncProperty(VALID_CONFIG, async (config) => {
        const path = `${dir}/c.toml`;
        await saveConfig(path, config);
        assert.deepEqual(await loadConfig({ path }), config);
      }),
      { numRuns: 25 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("property: arbitrary TOML text never escapes as anything but ConfigError", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 200 }), (text) => {
      try {
        parseConfig(text);
      } catch (error) {
        assert.ok(error instanceof ConfigError, String(error));
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("a validation problem set through an alias names the alias", () => {
  const error = configError(() => parseConfig("[transport]\ncompression_level = 30\n"));
  assert.deepEqual(error.problems, [
    'line 2: compression.level must be from 1 to 22, found "30" (set as transport.compression_level)',
  ]);
});

Deno.test("unix: client.address follows server.address unless set", () => {
  const config = parseConfig('[server]\naddress = "/run/npro.sock"\n[transport]\nkind = "unix"\n');
  assert.equal(config.client.address, "/run/npro.sock");
  const explicit = parseConfig(
    '[server]\naddress = "/run/a.sock"\n[client]\naddress = "/run/b.sock"\n[transport]\nkind = "unix"\n',
  );
  assert.equal(explicit.client.address, "/run/b.sock");
  const viaEnv = parseConfig("", {
    env: {
      NETWORK_PROTOCOL_TRANSPORT_KIND: "unix",
      NETWORK_PROTOCOL_SERVER_ADDRESS: "/tmp/x.sock",
    },
  });
  assert.equal(viaEnv.client.address, "/tmp/x.sock");
  // Without a server path the default TCP address is reported, for both sides.
  const error = configError(() => parseConfig('[transport]\nkind = "unix"\n'));
  assert.equal(error.problems.length, 2);
});

Deno.test("the TOML examples in docs/CONFIGURATION.md are valid", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/CONFIGURATION.md", import.meta.url));
  const blocks = [...doc.matchAll(/```toml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length >= 2);
  for (const block of blocks) parseConfig(block);
});
