/**
 * The `npro` command: run a daemon, talk to one, manage keys, certificates and configuration.
 *
 * ```
 * npro serve [--config path] [--address host:port] [TLS server flags]
 * npro ping [--address host:port] [--server-key key | --known-servers path] [--count n] [--config path] [TLS client flags]
 * npro echo <text> [--address host:port] [--server-key key | --known-servers path] [--config path] [TLS client flags]
 * npro keygen [--out path]
 * npro cert [--ca | --issuer ca.pem --issuer-key ca.key [--usage server|client|both]]
 *           [--name cn] [--alt name]... [--days n] --cert-out path --key-out path
 * npro config example | npro config check <path>
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  ConfigError,
  exampleConfig,
  loadConfig,
  type NetworkConfig,
  type TransportConfig,
  validateConfig,
} from "../config/mod.ts";
import { ProtocolError } from "../errors.ts";
import { setupLogging } from "../log_setup.ts";
import { Dispatcher, registerStandardHandlers } from "../protocol/dispatcher.ts";
import {
  decodeKey,
  encodeKey,
  fingerprint,
  generateKeyPair,
  writeKeyFile,
} from "../secure/keys.ts";
import {
  type CertificateUsage,
  generateCertificateAuthority,
  generateSelfSignedCert,
  issueCertificate,
} from "../transport/certs.ts";
import { certificateSpkiPin } from "../transport/peer_certificate.ts";
import { type Client, connect } from "../service/client.ts";
import { serve } from "../service/daemon.ts";
import { formatAddr } from "../transport/address.ts";

const USAGE = `Usage: npro <command> [options]

Commands:
  serve    Run the daemon (default: 127.0.0.1:9000, TCP, Noise XX, PING and ECHO handlers)
  ping     Send PING requests and print round-trip times
  echo     Send an ECHO request and print the answer
  keygen   Generate a static X25519 key pair (written 0600 with --out)
  cert     Generate a TLS certificate: self-signed (CA:FALSE, so clients can pin it), a small
           CA (--ca), or a server or client certificate signed by it (--issuer, --issuer-key)
  config   "config example" prints an annotated config.toml; "config check <path>" validates one

Common options:
  --config <path>      TOML configuration (environment: NETWORK_PROTOCOL_<SECTION>_<KEY>)
  --address <addr>     host:port, [v6]:port, or a socket path (transport.kind = "unix")
  --server-key <key>   the server's base64url public key to pin (printed by "npro serve")
  --known-servers <path>
                       trust on first use: record the server's key in this file on the first
                       connection, refuse a changed key later (security.known_servers_path)
  --help               this text

TLS flags (any of them sets transport.kind = "tls"; each maps to a transport.tls_* key):
  --tls                      use TLS with the configuration's other TLS keys
  --tls-backend <b>          auto, native or node (tls_backend)
  --tls-min-version <v>      1.2 or 1.3 (tls_min_version)
 serve:
  --tls-cert <path>          server certificate chain, PEM (tls_cert_path)
  --tls-key <path>           its private key (tls_key_path)
  --tls-client-auth <mode>   none, request or require: mutual TLS (tls_client_auth)
  --tls-client-ca <path>     CA bundle of client certificates (tls_client_ca_path)
  --tls-client-pin <pin>     a client certificate fingerprint (AB:CD:...) or SPKI pin (base64);
                             repeatable (tls_client_cert_fingerprints, tls_client_spki_pins)
 ping, echo:
  --tls-ca <path>            CA bundle that signs the server certificate (tls_ca_path)
  --tls-server-name <name>   name the server certificate must carry (tls_server_name)
  --tls-cert <path>          client certificate chain, PEM (tls_client_cert_path)
  --tls-key <path>           its private key (tls_client_key_path)
  --tls-pin <pin>            a server certificate fingerprint or SPKI pin; repeatable
                             (tls_server_cert_fingerprints, tls_server_spki_pins)
  --tls-pin-only             trust the pins alone, no CA (tls_pin_only)
`;

/** Writes a line to standard output. */
function out(line: string): void {
  console.log(line);
}

async function loadFor(args: { config?: string | undefined }): Promise<NetworkConfig> {
  return await loadConfig({
    ...(args.config === undefined ? {} : { path: args.config }),
    env: true,
  });
}

/** The TLS flags both roles take. */
const TLS_COMMON_OPTIONS = {
  tls: { type: "boolean" },
  "tls-backend": { type: "string" },
  "tls-min-version": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
} as const;

const TLS_SERVER_OPTIONS = {
  ...TLS_COMMON_OPTIONS,
  "tls-client-auth": { type: "string" },
  "tls-client-ca": { type: "string" },
  "tls-client-pin": { type: "string", multiple: true },
} as const;

const TLS_CLIENT_OPTIONS = {
  ...TLS_COMMON_OPTIONS,
  "tls-ca": { type: "string" },
  "tls-server-name": { type: "string" },
  "tls-pin": { type: "string", multiple: true },
  "tls-pin-only": { type: "boolean" },
} as const;

interface TlsArgs {
  tls?: boolean | undefined;
  "tls-backend"?: string | undefined;
  "tls-min-version"?: string | undefined;
  "tls-cert"?: string | undefined;
  "tls-key"?: string | undefined;
  "tls-client-auth"?: string | undefined;
  "tls-client-ca"?: string | undefined;
  "tls-client-pin"?: string[] | undefined;
  "tls-ca"?: string | undefined;
  "tls-server-name"?: string | undefined;
  "tls-pin"?: string[] | undefined;
  "tls-pin-only"?: boolean | undefined;
}

/** Splits pins into certificate fingerprints (hex pairs) and SPKI pins (base64). */
function splitPins(pins: readonly string[]): { fingerprints: string[]; spki: string[] } {
  const fingerprints: string[] = [];
  const spki: string[] = [];
  for (const pin of pins) {
    if (/^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{64}$/.test(pin)) fingerprints.push(pin);
    else spki.push(pin);
  }
  return { fingerprints, spki };
}

/**
 * Applies the TLS flags of one role to the configuration (any of them selects TLS) and
 * validates the result, so a bad flag is reported like a bad configuration key.
 */
function withTlsFlags(
  config: NetworkConfig,
  values: TlsArgs,
  role: "server" | "client",
): NetworkConfig {
  const t: Partial<TransportConfig> = {};
  const set = <K extends keyof TransportConfig>(key: K, value: TransportConfig[K] | undefined) => {
    if (value !== undefined) t[key] = value;
  };
  set("tlsBackend", values["tls-backend"] as TransportConfig["tlsBackend"] | undefined);
  set("tlsMinVersion", values["tls-min-version"] as TransportConfig["tlsMinVersion"] | undefined);
  if (role === "server") {
    set("tlsCertPath", values["tls-cert"]);
    set("tlsKeyPath", values["tls-key"]);
    set("tlsClientAuth", values["tls-client-auth"] as TransportConfig["tlsClientAuth"] | undefined);
    set("tlsClientCaPath", values["tls-client-ca"]);
    if (values["tls-client-pin"] !== undefined) {
      const { fingerprints, spki } = splitPins(values["tls-client-pin"]);
      t.tlsClientCertFingerprints = fingerprints;
      t.tlsClientSpkiPins = spki;
    }
  } else {
    set("tlsClientCertPath", values["tls-cert"]);
    set("tlsClientKeyPath", values["tls-key"]);
    set("tlsCaPath", values["tls-ca"]);
    set("tlsServerName", values["tls-server-name"]);
    set("tlsPinOnly", values["tls-pin-only"]);
    if (values["tls-pin"] !== undefined) {
      const { fingerprints, spki } = splitPins(values["tls-pin"]);
      t.tlsServerCertFingerprints = fingerprints;
      t.tlsServerSpkiPins = spki;
    }
  }
  if (Object.keys(t).length === 0 && values.tls !== true) return config;
  const merged: NetworkConfig = {
    ...config,
    transport: { ...config.transport, ...t, kind: "tls" },
  };
  const problems = validateConfig(merged);
  if (problems.length > 0) {
    throw new ConfigError("Invalid TLS flags", problems.map((p) => `flags: ${p}`));
  }
  return merged;
}

async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: "string" }, address: { type: "string" }, ...TLS_SERVER_OPTIONS },
  });
  const config = withTlsFlags(await loadFor(values), values, "server");
  await using _logging = await setupLogging(config.logging);
  const dispatcher = registerStandardHandlers(new Dispatcher());
  const controller = new AbortController();
  const server = await serve({
    config,
    ...(values.address === undefined ? {} : { address: values.address }),
    signal: controller.signal,
  }, dispatcher);
  out(`npro: listening on ${formatAddr(server.addr)} (${config.transport.kind}, pid ${Deno.pid})`);
  if (config.transport.kind === "tls") {
    const t = config.transport;
    out(
      `npro: TLS ${t.tlsMinVersion}+, client certificates ${t.tlsClientAuth}, backend ${t.tlsBackend}`,
    );
  }
  if (server.publicKey !== undefined) {
    out(`npro: server key ${encodeKey(server.publicKey)}`);
    out(`npro: server key fingerprint ${fingerprint(server.publicKey)}`);
  } else {
    out("npro: encryption is disabled: traffic is NOT protected");
  }
  const stop = () => controller.abort();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  try {
    await server.closed();
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, stop);
  }
  out("npro: stopped");
  return 0;
}

/** Writes a line to standard error. */
function note(line: string): void {
  console.error(line);
}

interface ClientArgs extends TlsArgs {
  config?: string | undefined;
  address?: string | undefined;
  "server-key"?: string | undefined;
  "known-servers"?: string | undefined;
}

const CLIENT_OPTIONS = {
  config: { type: "string" },
  address: { type: "string" },
  "server-key": { type: "string" },
  "known-servers": { type: "string" },
  ...TLS_CLIENT_OPTIONS,
} as const;

/**
 * Joins `--server-key` and its value into one argument: a base64url key may start with "-",
 * which `parseArgs` would otherwise refuse as ambiguous (it takes it for an option).
 *
 * @param argv The command's arguments.
 * @returns The same arguments, `--server-key KEY` written as `--server-key=KEY`.
 */
function joinKeyValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (arg === "--server-key" && i + 1 < argv.length) out.push(`${arg}=${argv[++i]}`);
    else out.push(arg);
  }
  return out;
}

/**
 * Connects as `npro ping` and `npro echo` do: `--known-servers` replaces
 * `security.known_servers_path`, `--server-key` pins one key (and wins over trust on first use).
 * Prints one warning line on stderr when nothing authenticates the server, and one line when a
 * key is recorded on first use.
 */
async function connectFor(values: ClientArgs): Promise<Client> {
  let config = withTlsFlags(await loadFor(values), values, "client");
  if (values["known-servers"] !== undefined) {
    if (values["known-servers"] === "") throw new TypeError('Invalid --known-servers ""');
    config = {
      ...config,
      security: { ...config.security, knownServersPath: values["known-servers"] },
    };
  }
  const serverKey = values["server-key"] === undefined
    ? undefined
    : decodeKey(values["server-key"]);
  const s = config.security;
  if (!config.transport.encryptionEnabled) {
    note(
      "npro: warning: encryption is disabled: the server is not authenticated and traffic is not protected",
    );
  } else if (
    serverKey === undefined && s.serverKeys.length === 0 && s.knownServersPath === "" &&
    s.pskPath === "" && config.transport.kind !== "tls"
  ) {
    note(
      "npro: warning: the server is not authenticated: pass --server-key <key> " +
        "(printed by npro serve) or --known-servers <path>",
    );
  }
  const client = await connect({
    config,
    ...(values.address === undefined ? {} : { address: values.address }),
    ...(serverKey === undefined ? {} : { security: { serverKeys: [serverKey] } }),
    autoReconnect: false,
  });
  const peer = client.connection?.peerCertificate;
  if (peer !== undefined) {
    note(
      `npro: server certificate CN "${peer.subject.CN ?? "?"}", issuer "${
        peer.issuer.CN ?? "?"
      }", fingerprint ${peer.fingerprint256}`,
    );
  }
  const session = client.connection?.session;
  const key = session?.remoteStaticKey;
  if (
    session !== undefined && !session.pinned && key !== undefined && serverKey === undefined &&
    s.serverKeys.length === 0 && s.knownServersPath !== ""
  ) {
    note(
      `npro: trusting the server on first use: recorded its key (fingerprint ${
        fingerprint(key)
      }) in "${s.knownServersPath}"`,
    );
  }
  return client;
}

async function pingCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: joinKeyValues(argv),
    options: { ...CLIENT_OPTIONS, count: { type: "string", default: "3" } },
  });
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`Invalid --count "${values.count}"`);
  }
  await using client = await connectFor(values);
  const connection = client.connection!;
  for (let i = 0; i < count; i++) {
    const rtt = await connection.ping();
    out(`pong from ${formatAddr(connection.remoteAddr)}: time=${rtt.toFixed(3)} ms`);
  }
  return 0;
}

async function echoCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: joinKeyValues(argv),
    allowPositionals: true,
    options: CLIENT_OPTIONS,
  });
  await using client = await connectFor(values);
  const reply = await client.request({ type: "echo", text: positionals.join(" ") });
  out(reply.type === "echo" ? reply.text : JSON.stringify(reply));
  return 0;
}

async function keygenCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { out: { type: "string" } } });
  const pair = generateKeyPair();
  if (values.out !== undefined) {
    await writeKeyFile(values.out, pair);
    out(`npro: wrote ${values.out} (mode 0600)`);
  } else {
    out(`private: ${encodeKey(pair.privateKey)}`);
  }
  out(`public: ${encodeKey(pair.publicKey)}`);
  out(`fingerprint: ${fingerprint(pair.publicKey)}`);
  return 0;
}

async function certCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      name: { type: "string" },
      alt: { type: "string", multiple: true },
      days: { type: "string" },
      ca: { type: "boolean" },
      issuer: { type: "string" },
      "issuer-key": { type: "string" },
      usage: { type: "string" },
      "cert-out": { type: "string" },
      "key-out": { type: "string" },
    },
  });
  if (values["cert-out"] === undefined || values["key-out"] === undefined) {
    throw new TypeError("npro cert needs --cert-out and --key-out");
  }
  if ((values.issuer === undefined) !== (values["issuer-key"] === undefined)) {
    throw new TypeError("npro cert needs --issuer and --issuer-key together");
  }
  if (values.ca === true && values.issuer !== undefined) {
    throw new TypeError("npro cert --ca makes a self-signed CA: it takes no --issuer");
  }
  if (values.usage !== undefined && values.issuer === undefined) {
    throw new TypeError("npro cert --usage applies to certificates signed with --issuer");
  }
  if (values.ca === true && values.alt !== undefined) {
    throw new TypeError("npro cert --ca takes no --alt: a CA certificate names no host");
  }
  const days = values.days === undefined ? undefined : Number(values.days);
  let cert;
  let what: string;
  if (values.ca === true) {
    cert = await generateCertificateAuthority({
      commonName: values.name ?? "npro CA",
      ...(days === undefined ? {} : { days }),
    });
    what = "CA certificate (CA:TRUE, pathlen 0; keep its key offline)";
  } else if (values.issuer !== undefined) {
    const usage = (values.usage ?? "both") as CertificateUsage;
    const name = values.name ?? "localhost";
    const [certPem, keyPem] = await Promise.all([
      Deno.readTextFile(values.issuer),
      Deno.readTextFile(values["issuer-key"]!),
    ]);
    cert = await issueCertificate({
      issuer: { certPem, keyPem },
      commonName: name,
      altNames: values.alt ?? (usage === "client" ? [name] : [name, "127.0.0.1"]),
      usage,
      days: days ?? 365,
    });
    what = `${
      usage === "both" ? "server and client" : usage
    } certificate signed by ${values.issuer}`;
  } else {
    const name = values.name ?? "localhost";
    cert = await generateSelfSignedCert({
      commonName: name,
      altNames: values.alt ?? [name, "127.0.0.1"],
      days: days ?? 365,
    });
    what = "self-signed certificate (CA:FALSE)";
  }
  await Deno.writeTextFile(values["cert-out"], cert.certPem);
  await Deno.writeTextFile(values["key-out"], cert.keyPem, { mode: 0o600 });
  out(`npro: wrote ${values["cert-out"]} and ${values["key-out"]} (key mode 0600): ${what}`);
  out(`fingerprint: ${cert.fingerprint}`);
  out(`spki pin: ${certificateSpkiPin(cert.certPem)}`);
  return 0;
}

async function configCommand(argv: string[]): Promise<number> {
  const [sub, path] = argv;
  if (sub === "example") {
    out(exampleConfig());
    return 0;
  }
  if (sub === "check" && path !== undefined) {
    await loadConfig({ path, env: true });
    out(`npro: ${path} is valid`);
    return 0;
  }
  throw new TypeError('Use "npro config example" or "npro config check <path>"');
}

/**
 * Runs the CLI with the given arguments and returns the exit code.
 *
 * @param args The command-line arguments (without the program name).
 * @returns The process exit code.
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "serve":
        return await serveCommand(rest);
      case "ping":
        return await pingCommand(rest);
      case "echo":
        return await echoCommand(rest);
      case "keygen":
        return await keygenCommand(rest);
      case "cert":
        return await certCommand(rest);
      case "config":
        return await configCommand(rest);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        out(USAGE);
        return command === undefined ? 2 : 0;
      default:
        console.error(`npro: unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    const detail = error instanceof ProtocolError
      ? `${error.code}: ${error.message}`
      : String(error);
    console.error(`npro ${command}: ${detail}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
