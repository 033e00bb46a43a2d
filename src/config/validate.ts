/**
 * Validation: the checks of each key, generated from its entry in the schema table (kind,
 * range, allowed values, format), plus the few rules that relate two keys, written once here.
 *
 * @module
 */

import { isKeyText } from "../secure/keys.ts";
import { parseHostPort } from "../transport/address.ts";
import { TrustedProxies } from "../transport/proxy_protocol.ts";
import { TRANSPORT_KINDS, type TransportKind } from "../transport/types.ts";
import { errorMessage } from "../util/error_message.ts";
import { checkAddress, checkHost, splitPeerEntry } from "./address.ts";
import { defaultConfig } from "./defaults.ts";
import { isPlainTable } from "./layers.ts";
import { KEYS, listedValues, SECTIONS } from "./schema.ts";
import type { KeyInfo, SectionName } from "./spec.ts";
import { alternatives, describe, quote, quotedList } from "./text.ts";
import type { NetworkConfig } from "./types.ts";

/** A problem and the key it is about (for its origin: a TOML line, a variable). */
export interface Issue {
  /** `section.key` the issue is about, or a section name, or `""` for the whole object. */
  readonly path: string;
  /** The sentence. */
  readonly message: string;
}

const UNIT_SUFFIX = { ms: " ms", bytes: " bytes" } as const;

/**
 * Writes a file mode in octal: `0o600`.
 *
 * @param mode The mode.
 * @returns The text.
 */
export function octal(mode: number): string {
  return `0o${mode.toString(8).padStart(3, "0")}`;
}

/** The transport the address rules assume: the configured one when valid, else TCP. */
function kindOf(config: NetworkConfig): TransportKind {
  const kind = config.transport.kind;
  return TRANSPORT_KINDS.includes(kind) ? kind : "tcp";
}

/**
 * What a check found: a value of the wrong type, a value of the right type that breaks a rule of
 * its entry, or a valid value.
 */
type Verdict = "mistyped" | "invalid" | "valid";

/** Checks one value against its table entry. */
function checkKey(
  key: KeyInfo,
  value: unknown,
  config: NetworkConfig,
  push: (message: string) => void,
): Verdict {
  const path = key.path;
  switch (key.kind) {
    case "boolean":
      if (typeof value === "boolean") return "valid";
      push(`${path} must be a boolean, found ${describe(value)}`);
      return "mistyped";
    case "integer": {
      if (typeof value !== "number" || !Number.isSafeInteger(value)) {
        push(`${path} must be an integer, found ${describe(value)}`);
        return "mistyped";
      }
      if (key.zeroDisables && value === 0) return "valid";
      if (value >= key.min && value <= key.max) return "valid";
      if (key.octal) {
        push(
          `${path} must be a permission mode from ${octal(key.min)} to ${octal(key.max)} ` +
            `(write it as ${octal(key.default)} in TOML), found "${value}"`,
        );
      } else {
        const unit = key.unit === undefined ? "" : UNIT_SUFFIX[key.unit];
        push(
          `${path} must be from ${key.min}${unit} to ${key.max}${unit}${
            key.zeroDisables ? " (or 0 to disable)" : ""
          }, found "${value}"`,
        );
      }
      return "invalid";
    }
    case "string": {
      if (typeof value !== "string") {
        push(`${path} must be a string, found ${describe(value)}`);
        return "mistyped";
      }
      if (!value.isWellFormed()) {
        push(`${path} must be valid Unicode text (it contains a lone surrogate)`);
        return "mistyped";
      }
      if (key.values !== undefined) {
        const name = key.caseInsensitive ? value.toLowerCase() : value;
        if (!key.values.includes(name)) {
          push(`${path} must be one of ${quotedList(listedValues(key))}, found ${quote(value)}`);
          return "invalid";
        }
      }
      if (key.length !== undefined) {
        const { min, max } = key.length;
        if (value.length < min || value.length > max) {
          push(`${path} must be ${min} to ${max} characters long, found ${quote(value)}`);
          return "invalid";
        }
      }
      if (key.format === "host-name") {
        const problem = value === "" ? undefined : checkHost(value);
        if (problem !== undefined) push(`${path}: ${problem}`);
        return problem === undefined ? "valid" : "invalid";
      }
      if (key.format !== undefined) {
        const problem = checkAddress(value, kindOf(config), key.format === "listen-address");
        if (problem !== undefined) push(`${path} ${problem}`);
        return problem === undefined ? "valid" : "invalid";
      }
      return "valid";
    }
    case "strings": {
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
        push(`${path} must be an array of strings, found ${describe(value)}`);
        return "mistyped";
      }
      if (!value.every((v) => v.isWellFormed())) {
        push(`${path} must contain valid Unicode text`);
        return "mistyped";
      }
      let ok = true;
      const seen = new Set<string>();
      const fail = (message: string) => {
        push(message);
        ok = false;
      };
      for (const item of value) {
        const entry = `${path} entry ${quote(item)}`;
        const bytes = new TextEncoder().encode(item).length;
        if (key.keys && !isKeyText(item)) {
          fail(`${entry} is not a base64url X25519 public key (43 characters, 32 bytes)`);
        } else if (key.values !== undefined && !key.values.includes(item)) {
          fail(`${entry} must be ${alternatives(key.values)}`);
        } else if (
          key.itemBytes !== undefined && (bytes < key.itemBytes.min || bytes > key.itemBytes.max)
        ) {
          fail(`${entry} must be ${key.itemBytes.min} to ${key.itemBytes.max} bytes long`);
        } else if (key.unique && seen.has(item)) {
          fail(`${path} lists ${quote(item)} twice`);
        }
        seen.add(item);
      }
      return ok ? "valid" : "invalid";
    }
  }
}

function isFingerprint(pin: string): boolean {
  return /^[0-9A-Fa-f]{64}$/.test(pin) || /^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$/.test(pin);
}

/** A rule that relates keys. */
interface Rule {
  /** The keys that must have passed their own checks for the rule to apply. */
  readonly needs: readonly string[];
  /** The keys that need only to have the right type (their other problems are reported). */
  readonly typed?: readonly string[];
  /** Returns the key to report against and the problem, when the rule is broken. */
  readonly check: (config: NetworkConfig) => readonly [path: string, message: string] | undefined;
}

/** Every rule between keys. Everything else is checked from the schema table. */
const RULES: readonly Rule[] = [
  {
    needs: ["admin.address"],
    check: ({ admin }) => {
      if (admin.address === "") return undefined;
      try {
        const { port } = parseHostPort(admin.address);
        if (port === undefined) throw new TypeError("no port");
        return undefined;
      } catch {
        return [
          "admin.address",
          `admin.address "${admin.address}" must be "host:port" or "[ipv6]:port" (or empty: off)`,
        ];
      }
    },
  },
  {
    needs: ["server.trusted_proxies", "server.reuse_port", "server.workers", "transport.kind"],
    check: (config) => {
      const s = config.server;
      if (s.proxyProtocol && config.transport.kind !== "tcp") {
        return [
          "server.proxy_protocol",
          `server.proxy_protocol works with the "tcp" transport only, not "${config.transport.kind}"`,
        ];
      }
      if (s.reusePort && config.transport.kind !== "tcp") {
        return [
          "server.reuse_port",
          `server.reuse_port works with the "tcp" transport only, not "${config.transport.kind}"`,
        ];
      }
      if (s.workers > 1 && config.transport.kind !== "tcp") {
        return [
          "server.workers",
          `server.workers above 1 needs the "tcp" transport (SO_REUSEPORT), not "${config.transport.kind}"`,
        ];
      }
      if (s.proxyProtocol && s.trustedProxies.length === 0) {
        return [
          "server.trusted_proxies",
          "server.trusted_proxies must list the proxies' addresses when server.proxy_protocol is true",
        ];
      }
      try {
        new TrustedProxies(s.trustedProxies);
        return undefined;
      } catch (error) {
        return ["server.trusted_proxies", `server.trusted_proxies: ${errorMessage(error)}`];
      }
    },
  },
  {
    needs: ["client.max_reconnect_attempts"],
    check: ({ client: c }) =>
      c.autoReconnect === true && c.maxReconnectAttempts === 0
        ? [
          "client.max_reconnect_attempts",
          "client.max_reconnect_attempts must be greater than 0 when client.auto_reconnect is true",
        ]
        : undefined,
  },
  {
    needs: ["client.reconnect_delay", "client.max_reconnect_delay"],
    check: ({ client: c }) =>
      c.maxReconnectDelay < c.reconnectDelay
        ? [
          "client.max_reconnect_delay",
          `client.max_reconnect_delay "${c.maxReconnectDelay}" must not be less than ` +
          `client.reconnect_delay "${c.reconnectDelay}"`,
        ]
        : undefined,
  },
  {
    needs: ["transport.tls_cert_path", "transport.tls_key_path"],
    check: ({ transport: t }) =>
      (t.tlsCertPath === "") !== (t.tlsKeyPath === "")
        ? [
          t.tlsCertPath === "" ? "transport.tls_cert_path" : "transport.tls_key_path",
          "transport.tls_cert_path and transport.tls_key_path must be set together",
        ]
        : undefined,
  },
  {
    needs: ["transport.tls_client_cert_path", "transport.tls_client_key_path"],
    check: ({ transport: t }) =>
      (t.tlsClientCertPath === "") !== (t.tlsClientKeyPath === "")
        ? [
          t.tlsClientCertPath === ""
            ? "transport.tls_client_cert_path"
            : "transport.tls_client_key_path",
          "transport.tls_client_cert_path and transport.tls_client_key_path must be set together",
        ]
        : undefined,
  },
  {
    needs: ["transport.tls_client_cert_fingerprints", "transport.tls_server_cert_fingerprints"],
    check: ({ transport: t }) => {
      for (
        const [path, pins] of [
          ["transport.tls_client_cert_fingerprints", t.tlsClientCertFingerprints],
          ["transport.tls_server_cert_fingerprints", t.tlsServerCertFingerprints],
        ] as const
      ) {
        const bad = pins.find((pin) => !isFingerprint(pin));
        if (bad !== undefined) {
          return [
            path,
            `${path} entry ${quote(bad)} is not a SHA-256 fingerprint (32 hex pairs, "AB:CD:...")`,
          ];
        }
      }
      return undefined;
    },
  },
  {
    needs: ["transport.tls_client_spki_pins", "transport.tls_server_spki_pins"],
    check: ({ transport: t }) => {
      for (
        const [path, pins] of [
          ["transport.tls_client_spki_pins", t.tlsClientSpkiPins],
          ["transport.tls_server_spki_pins", t.tlsServerSpkiPins],
        ] as const
      ) {
        const bad = pins.find((pin) => !/^(sha256\/\/?)?[A-Za-z0-9+/]{43}=$/i.test(pin));
        if (bad !== undefined) {
          return [
            path,
            `${path} entry ${
              quote(bad)
            } is not an SPKI pin (base64 of a SHA-256 digest, 44 characters)`,
          ];
        }
      }
      return undefined;
    },
  },
  {
    needs: [
      "transport.tls_client_auth",
      "transport.tls_client_ca_path",
      "transport.tls_client_cert_fingerprints",
      "transport.tls_client_spki_pins",
    ],
    check: ({ transport: t }) => {
      const verifiers = t.tlsClientCaPath !== "" || t.tlsClientCertFingerprints.length > 0 ||
        t.tlsClientSpkiPins.length > 0;
      if (t.tlsClientAuth === "none" && verifiers) {
        return [
          "transport.tls_client_auth",
          'transport.tls_client_ca_path, tls_client_cert_fingerprints and tls_client_spki_pins need transport.tls_client_auth "request" or "require" (it is "none": no client certificate would be asked for)',
        ];
      }
      if (t.tlsClientAuth !== "none" && !verifiers) {
        return [
          "transport.tls_client_auth",
          `transport.tls_client_auth ${
            quote(t.tlsClientAuth)
          } needs transport.tls_client_ca_path, tls_client_cert_fingerprints or tls_client_spki_pins: nothing would say which client certificates are good`,
        ];
      }
      return undefined;
    },
  },
  {
    needs: [
      "transport.tls_pin_only",
      "transport.tls_server_cert_fingerprints",
      "transport.tls_server_spki_pins",
    ],
    check: ({ transport: t }) =>
      t.tlsPinOnly && t.tlsServerCertFingerprints.length === 0 && t.tlsServerSpkiPins.length === 0
        ? [
          "transport.tls_pin_only",
          "transport.tls_pin_only = true needs transport.tls_server_cert_fingerprints or tls_server_spki_pins: without a pin nothing would be trusted",
        ]
        : undefined,
  },
  {
    needs: [
      "transport.tls_backend",
      "transport.tls_client_auth",
      "transport.tls_min_version",
      "transport.tls_pin_only",
      "transport.tls_server_cert_fingerprints",
      "transport.tls_server_spki_pins",
    ],
    check: ({ transport: t }) => {
      if (t.tlsBackend !== "native") return undefined;
      const needsNode = [
        ...(t.tlsClientAuth !== "none" ? ["tls_client_auth"] : []),
        ...(t.tlsMinVersion === "1.3" ? ["tls_min_version"] : []),
        ...(t.tlsServerCertFingerprints.length > 0 ? ["tls_server_cert_fingerprints"] : []),
        ...(t.tlsServerSpkiPins.length > 0 ? ["tls_server_spki_pins"] : []),
        ...(t.tlsPinOnly ? ["tls_pin_only"] : []),
      ];
      return needsNode.length > 0
        ? [
          "transport.tls_backend",
          `transport.tls_backend "native" cannot enforce transport.${
            needsNode.join(", ")
          } (Deno's native TLS cannot request or see peer certificates, nor require TLS 1.3); use "node" or "auto"`,
        ]
        : undefined;
    },
  },
  {
    needs: ["security.pattern"],
    check: ({ security: s }) =>
      s.pattern === "NN" && s.allowUnauthenticated !== true
        ? [
          "security.pattern",
          'security.pattern "NN" authenticates neither side; set security.allow_unauthenticated = true to use it',
        ]
        : undefined,
  },
  {
    needs: ["security.pattern", "security.psk_path"],
    check: ({ security: s }) => {
      const usesPsk = s.pattern.includes("psk");
      if (usesPsk && s.pskPath === "") {
        return [
          "security.psk_path",
          `security.pattern ${quote(s.pattern)} needs security.psk_path`,
        ];
      }
      if (!usesPsk && s.pskPath !== "") {
        return [
          "security.psk_path",
          `security.psk_path is set but security.pattern ${
            quote(s.pattern)
          } does not use a pre-shared key`,
        ];
      }
      return undefined;
    },
  },
  {
    needs: ["security.ticket_lifetime_ms", "security.ticket_key_rotation_ms"],
    check: ({ security: s }) =>
      s.ticketKeyRotationMs > s.ticketLifetimeMs
        ? [
          "security.ticket_key_rotation_ms",
          `security.ticket_key_rotation_ms "${s.ticketKeyRotationMs}" must not exceed ` +
          `security.ticket_lifetime_ms "${s.ticketLifetimeMs}": a ticket never outlives its key`,
        ]
        : undefined,
  },
  {
    needs: ["compression.threshold", "transport.max_payload_size"],
    check: ({ compression: z, transport: t }) =>
      z.threshold > t.maxPayloadSize
        ? [
          "compression.threshold",
          `compression.threshold "${z.threshold}" must not exceed transport.max_payload_size "${t.maxPayloadSize}"`,
        ]
        : undefined,
  },
  {
    needs: ["compression.algorithm"],
    typed: ["compression.accept"],
    check: ({ compression: z }) =>
      z.enabled === true && !z.accept.includes(z.algorithm)
        ? [
          "compression.accept",
          `compression.accept must include compression.algorithm ${
            quote(z.algorithm)
          } when compression is enabled`,
        ]
        : undefined,
  },
  {
    needs: ["multiplex.initial_window", "multiplex.max_window"],
    check: ({ multiplex: m }) =>
      m.initialWindow > m.maxWindow
        ? [
          "multiplex.initial_window",
          `multiplex.initial_window "${m.initialWindow}" must not exceed multiplex.max_window "${m.maxWindow}"`,
        ]
        : undefined,
  },
  {
    needs: [
      "multiplex.connection_window",
      "multiplex.max_window",
      "multiplex.initial_window",
      "multiplex.max_inbound_streams",
      "multiplex.max_outbound_streams",
    ],
    check: ({ multiplex: m }) => {
      // The memory streams may buffer per connection: every stream can get its initial window,
      // and one stream can grow to the largest window.
      const needed = (m.maxInboundStreams + m.maxOutboundStreams) * m.initialWindow;
      return m.connectionWindow < needed || m.connectionWindow < m.maxWindow
        ? [
          "multiplex.connection_window",
          `multiplex.connection_window "${m.connectionWindow}" must hold multiplex.max_window "${m.maxWindow}" and ` +
          `(max_inbound_streams + max_outbound_streams) x initial_window "${needed}"`,
        ]
        : undefined;
    },
  },
  {
    needs: ["multiplex.bulk_window", "multiplex.frame_size"],
    check: ({ multiplex: m }) =>
      m.bulkWindow < 2 * m.frameSize
        ? [
          "multiplex.bulk_window",
          `multiplex.bulk_window "${m.bulkWindow}" must be at least twice multiplex.frame_size "${m.frameSize}"`,
        ]
        : undefined,
  },
  {
    needs: ["pool.min_connections", "pool.max_connections"],
    check: ({ pool: p }) =>
      p.minConnections > p.maxConnections
        ? [
          "pool.min_connections",
          `pool.min_connections "${p.minConnections}" must not exceed pool.max_connections "${p.maxConnections}"`,
        ]
        : undefined,
  },
  {
    needs: ["pool.breaker_cooldown", "pool.breaker_max_cooldown"],
    check: ({ pool: p }) =>
      p.breakerMaxCooldown < p.breakerCooldown
        ? [
          "pool.breaker_max_cooldown",
          `pool.breaker_max_cooldown "${p.breakerMaxCooldown}" must not be less than pool.breaker_cooldown "${p.breakerCooldown}"`,
        ]
        : undefined,
  },
  {
    needs: ["pool.addresses"],
    check: (config) => {
      for (const address of config.pool.addresses) {
        const problem = checkAddress(address, kindOf(config), false);
        if (problem !== undefined) return ["pool.addresses", `pool.addresses: ${problem}`];
      }
      return undefined;
    },
  },
  {
    needs: ["cluster.probe_timeout", "cluster.probe_interval"],
    check: ({ cluster: c }) =>
      c.probeTimeout >= c.probeInterval
        ? [
          "cluster.probe_timeout",
          `cluster.probe_timeout "${c.probeTimeout}" must be less than cluster.probe_interval "${c.probeInterval}"`,
        ]
        : undefined,
  },
  {
    needs: ["cluster.peers"],
    check: (config) => {
      for (const entry of config.cluster.peers) {
        const { id, address } = splitPeerEntry(entry);
        if (id !== undefined && new TextEncoder().encode(id).length > 255) {
          return ["cluster.peers", `cluster.peers: the id of "${entry}" is longer than 255 bytes`];
        }
        const problem = checkAddress(address, kindOf(config), false);
        if (problem !== undefined) return ["cluster.peers", `cluster.peers: ${problem}`];
      }
      return undefined;
    },
  },
  {
    needs: ["logging.log_file_path"],
    check: ({ logging: l }) =>
      l.logToFile === true && l.logFilePath === ""
        ? [
          "logging.log_file_path",
          "logging.log_file_path is required when logging.log_to_file is true",
        ]
        : undefined,
  },
  {
    needs: [],
    check: ({ logging: l }) =>
      l.logToConsole === false && l.logToFile === false
        ? [
          "logging.log_to_console",
          "logging needs at least one output: set logging.log_to_console or logging.log_to_file to true",
        ]
        : undefined,
  },
];

const ORDER = new Map(KEYS.map((key, i) => [key.path, i]));

/**
 * Checks a configuration: every key against its table entry, then the rules between keys.
 *
 * @param config The configuration (of any shape: this is also the check of untyped input).
 * @returns The issues, in table order.
 */
export function collectIssues(config: NetworkConfig): Issue[] {
  if (typeof config !== "object" || config === null) {
    return [{
      path: "",
      message: `The configuration must be an object, found ${describe(config)}`,
    }];
  }
  const issues: Issue[] = [];
  for (const section of SECTIONS) {
    if (!isPlainTable(config[section])) {
      issues.push({
        path: section,
        message: `${section} must be an object, found ${describe(config[section])}`,
      });
    }
  }
  if (issues.length > 0) return issues;
  const verdicts = new Map<string, Verdict>();
  const sections = config as unknown as Record<string, Record<string, unknown>>;
  for (const key of KEYS) {
    const push = (message: string) => issues.push({ path: key.path, message });
    verdicts.set(key.path, checkKey(key, sections[key.section]![key.property], config, push));
  }
  for (const rule of RULES) {
    if (!rule.needs.every((path) => verdicts.get(path) === "valid")) continue;
    if (!(rule.typed ?? []).every((path) => verdicts.get(path) !== "mistyped")) continue;
    const broken = rule.check(config);
    if (broken !== undefined) issues.push({ path: broken[0], message: broken[1] });
  }
  // Stable: the problems of one key stay in the order they were found.
  return issues.sort((a, b) => (ORDER.get(a.path) ?? -1) - (ORDER.get(b.path) ?? -1));
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
 * Checks one section on its own (the other sections at their defaults), with the same checks
 * and messages as {@linkcode validateConfig}: for code that takes only a section, such as
 * `setupLogging`.
 *
 * @example Check a logging section
 * ```ts
 * import { validateSection } from "./validate.ts";
 * import { defaultConfig } from "./defaults.ts";
 * import assert from "node:assert/strict";
 *
 * const logging = { ...defaultConfig().logging, logToFile: true };
 * assert.deepEqual(validateSection("logging", logging), [
 *   "logging.log_file_path is required when logging.log_to_file is true",
 * ]);
 * ```
 *
 * @param section The section's name.
 * @param values The section.
 * @returns The problems of that section, one sentence each.
 */
export function validateSection<S extends SectionName>(
  section: S,
  values: NetworkConfig[S],
): string[] {
  const config = defaultConfig();
  config[section] = values;
  return collectIssues(config)
    .filter((issue) => issue.path === section || issue.path.startsWith(`${section}.`))
    .map((issue) => issue.message);
}
