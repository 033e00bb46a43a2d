/**
 * The `npro` command: run a daemon, talk to one, manage keys, certificates and configuration.
 * Built on [commander](https://github.com/tj/commander.js) (chosen over citty, cac, yargs and
 * clipanion for its "did you mean" on commands and options, per-command help and an exit hook,
 * with no dependencies; the comparison is in docs/CLI.md).
 *
 * ```
 * npro serve [--config path] [--address host:port] [--admin host:port] [--workers n]
 *            [--reuse-port] [TLS server flags]
 * npro ping [--address host:port] [--server-key key | --known-servers path]
 *           [--count n] [--interval s] [--timeout s] [--config path] [TLS client flags]
 * npro echo <text...> [--json] [--address host:port] [--server-key key | --known-servers path]
 * npro keygen [--out path [--force]]
 * npro cert [--ca | --issuer ca.pem --issuer-key ca.key [--usage server|client|both]]
 *           [--name cn] [--alt name]... [--days n] --cert-out path --key-out path [--force]
 * npro config example | npro config check <path>
 * npro cluster status [--config path] [--address host:port] [--rounds n] [--json]
 * npro <command> --help | npro --version
 * ```
 *
 * Exit codes: 0 success, 1 a failure (the server is down, a handshake failed, a file exists),
 * 2 a usage error (an unknown command or option, a missing or malformed argument).
 *
 * @example Run the command line from code
 * ```ts
 * import { main } from "@npro/network-protocol/cli";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await main(["--version"]), 0);
 * ```
 *
 * @example Run npro from JSR
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-env=NETWORK_PROTOCOL_* --allow-read=. \
 *   jsr:@npro/network-protocol/cli serve
 * ```
 *
 * @module
 */

import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import {
  ConfigError,
  configWarnings,
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
import { formatPingSummary, pingSummary } from "./ping_stats.ts";
import { addClusterCommands } from "./cluster.ts";
import { VERSION } from "./version.ts";
import { runWorkers, type WorkerPlan } from "./workers.ts";

/** A mistake in how the command was called: reported with a pointer to its help, exit code 2. */
class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Writes a line to standard output. */
function out(line: string): void {
  console.log(line);
}

/** Writes a line to standard error. */
function note(line: string): void {
  console.error(line);
}

async function loadFor(args: { config?: string | undefined }): Promise<NetworkConfig> {
  return await loadConfig({
    ...(args.config === undefined ? {} : { path: args.config }),
    env: true,
  });
}

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

/** The TLS options as commander names them (camelCase). */
interface TlsOptionValues {
  tls?: boolean;
  tlsBackend?: string;
  tlsMinVersion?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientAuth?: string;
  tlsClientCa?: string;
  tlsClientPin?: string[];
  tlsCa?: string;
  tlsServerName?: string;
  tlsPin?: string[];
  tlsPinOnly?: boolean;
}

/** Maps commander's option values onto the flag names {@linkcode withTlsFlags} reads. */
function tlsArgs(v: TlsOptionValues): TlsArgs {
  return {
    tls: v.tls,
    "tls-backend": v.tlsBackend,
    "tls-min-version": v.tlsMinVersion,
    "tls-cert": v.tlsCert,
    "tls-key": v.tlsKey,
    "tls-client-auth": v.tlsClientAuth,
    "tls-client-ca": v.tlsClientCa,
    "tls-client-pin": v.tlsClientPin,
    "tls-ca": v.tlsCa,
    "tls-server-name": v.tlsServerName,
    "tls-pin": v.tlsPin,
    "tls-pin-only": v.tlsPinOnly,
  };
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

/**
 * Connects as `npro ping` and `npro echo` do: `--known-servers` replaces
 * `security.known_servers_path`, `--server-key` pins one key (and wins over trust on first use).
 * Prints one warning line on stderr when nothing authenticates the server, and one line when a
 * key is recorded on first use.
 */
async function connectFor(values: ClientArgs): Promise<Client> {
  let config = withTlsFlags(await loadFor(values), tlsArgs(values), "client");
  if (values.knownServers !== undefined) {
    if (values.knownServers === "") throw new UsageError('Invalid --known-servers ""');
    config = {
      ...config,
      security: { ...config.security, knownServersPath: values.knownServers },
    };
  }
  const serverKey = values.serverKey === undefined ? undefined : decodeKey(values.serverKey);
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

/** Collects a repeatable option's values. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** A parser for an integer option in a range. */
function integer(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`Expected an integer from ${min} to ${max}.`);
    }
    return n;
  };
}

/** A parser for a number of seconds in a range, returned in milliseconds. */
function seconds(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`Expected a number of seconds from ${min} to ${max}.`);
    }
    return Math.round(n * 1000);
  };
}

/** Adds the TLS options of one role to a command. */
function addTlsOptions(command: Command, role: "server" | "client"): Command {
  command
    .option("--tls", "use TLS with the configuration's other TLS keys")
    .addOption(
      new Option("--tls-backend <backend>", "TLS implementation (tls_backend)").choices([
        "auto",
        "native",
        "node",
      ]),
    )
    .addOption(
      new Option("--tls-min-version <version>", "oldest TLS version (tls_min_version)").choices([
        "1.2",
        "1.3",
      ]),
    );
  if (role === "server") {
    return command
      .option("--tls-cert <path>", "server certificate chain, PEM (tls_cert_path)")
      .option("--tls-key <path>", "its private key (tls_key_path)")
      .addOption(
        new Option("--tls-client-auth <mode>", "mutual TLS (tls_client_auth)").choices([
          "none",
          "request",
          "require",
        ]),
      )
      .option("--tls-client-ca <path>", "CA bundle of client certificates (tls_client_ca_path)")
      .option(
        "--tls-client-pin <pin>",
        "a client certificate fingerprint (AB:CD:...) or SPKI pin (base64); repeatable",
        collect,
      );
  }
  return command
    .option("--tls-ca <path>", "CA bundle that signs the server certificate (tls_ca_path)")
    .option("--tls-server-name <name>", "name the server certificate must carry")
    .option("--tls-cert <path>", "client certificate chain, PEM (tls_client_cert_path)")
    .option("--tls-key <path>", "its private key (tls_client_key_path)")
    .option(
      "--tls-pin <pin>",
      "a server certificate fingerprint or SPKI pin (npro cert prints both); repeatable",
      collect,
    )
    .option("--tls-pin-only", "trust the pins alone, no CA (tls_pin_only)");
}

/** Adds the options `npro ping` and `npro echo` share. */
function addClientOptions(command: Command): Command {
  command
    .option("--config <path>", "TOML configuration (also NETWORK_PROTOCOL_<SECTION>_<KEY>)")
    .option("--address <addr>", "the server: host:port, [v6]:port or a socket path")
    .option("--server-key <key>", "the server's base64url public key to pin (npro serve prints it)")
    .option(
      "--known-servers <path>",
      "trust on first use: record the server's key in this file, refuse a changed key later",
    );
  return addTlsOptions(command, "client");
}

interface ClientArgs extends TlsOptionValues {
  config?: string;
  address?: string;
  serverKey?: string;
  knownServers?: string;
}

interface ServeArgs extends TlsOptionValues {
  config?: string;
  address?: string;
  admin?: string;
  workers?: number;
  reusePort?: boolean;
  stopWithParent?: boolean;
}

async function serveCommand(values: ServeArgs): Promise<number> {
  const config = withTlsFlags(await loadFor(values), tlsArgs(values), "server");
  const workers = values.workers ?? config.server.workers;
  if (workers > 1) return await runWorkers(workerPlan(config, values, workers), out, note);
  await using _logging = await setupLogging(config.logging);
  const controller = new AbortController();
  // Listen for signals before anything is printed: a supervisor that reads the "listening"
  // line and stops the daemon at once must get a graceful stop, not the default kill.
  const stop = () => controller.abort();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  if (values.stopWithParent === true) {
    // A worker of `npro serve --workers`: its parent holds the other end of standard input.
    void stdinEnded().then(() => {
      if (!controller.signal.aborted) note("npro: the parent process is gone: draining");
      stop();
    });
  }
  try {
    return await runServer(config, values, controller);
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, stop);
  }
}

/** Resolves when standard input ends (or cannot be read): for a worker, its parent is gone. */
async function stdinEnded(): Promise<void> {
  try {
    for await (const _ of Deno.stdin.readable) { /* nothing is ever written */ }
  } catch {
    // Closed or unreadable: the same.
  }
}

/** Checks that `workers` processes can share the address and lists what each one needs. */
function workerPlan(config: NetworkConfig, values: ServeArgs, workers: number): WorkerPlan {
  if (config.transport.kind !== "tcp") {
    throw new ProtocolError(
      "ConfigError",
      `--workers needs the "tcp" transport (SO_REUSEPORT), not "${config.transport.kind}"`,
    );
  }
  const s = config.security;
  if (config.transport.encryptionEnabled && s.staticKeyPath === "") {
    throw new ProtocolError(
      "ConfigError",
      "--workers needs security.static_key_path (npro keygen --out): without it each worker " +
        "would make a key of its own, and clients would meet a different key per connection",
    );
  }
  const may = (name: "read" | "write", path: string) =>
    path !== "" && Deno.permissions.querySync({ name, path }).state === "granted";
  const server = config.server;
  return {
    workers,
    address: values.address ?? server.address,
    admin: values.admin ?? config.admin.address,
    configPath: values.config,
    readPaths: [s.staticKeyPath, s.pskPath].filter((path) => may("read", path)),
    writePaths: config.logging.logToFile && may("write", config.logging.logFilePath)
      ? [config.logging.logFilePath]
      : [],
    stopTimeoutMs: server.drainGrace + server.shutdownTimeout,
  };
}

async function runServer(
  config: NetworkConfig,
  values: ServeArgs,
  controller: AbortController,
): Promise<number> {
  const dispatcher = registerStandardHandlers(new Dispatcher());
  const server = await serve({
    config,
    ...(values.address === undefined ? {} : { address: values.address }),
    ...(values.admin === undefined ? {} : { admin: { address: values.admin } }),
    ...(values.reusePort === true ? { reusePort: true } : {}),
  }, dispatcher);
  // A signal drains: /readyz turns 503, the daemon keeps accepting for server.drain_grace, then
  // shuts down gracefully (docs/DEPLOYMENT.md).
  const drain = () => void server.drain();
  if (controller.signal.aborted) drain();
  else controller.signal.addEventListener("abort", drain, { once: true });
  out(`npro: listening on ${formatAddr(server.addr)} (${config.transport.kind}, pid ${Deno.pid})`);
  if (server.adminAddr !== undefined) {
    out(`npro: health endpoint http://${formatAddr(server.adminAddr)}/readyz`);
  }
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
  await server.closed();
  out("npro: stopped");
  return 0;
}

interface PingArgs extends ClientArgs {
  count: number;
  interval: number;
  timeout: number;
}

/**
 * Pings like ping(8): a line per reply, a line per lost reply, then the summary. Ctrl-C stops
 * early and still prints the summary. Exit code 0 when at least one reply came back, else 1.
 */
async function pingCommand(values: PingArgs): Promise<number> {
  await using client = await connectFor(values);
  const connection = client.connection!;
  const target = formatAddr(connection.remoteAddr);
  out(`PING ${target}`);
  const stopped = new AbortController();
  const stop = () => stopped.abort();
  Deno.addSignalListener("SIGINT", stop);
  const started = performance.now();
  const rtts: number[] = [];
  let sent = 0;
  try {
    for (let seq = 1; values.count === 0 || seq <= values.count; seq++) {
      if (seq > 1) {
        await sleep(values.interval, stopped.signal);
        if (stopped.signal.aborted) break;
      }
      sent++;
      try {
        const rtt = await connection.ping({ timeoutMs: values.timeout, signal: stopped.signal });
        rtts.push(rtt);
        out(`pong from ${target}: seq=${seq} time=${rtt.toFixed(3)} ms`);
      } catch (error) {
        if (stopped.signal.aborted) {
          sent--;
          break;
        }
        if (!(error instanceof ProtocolError && error.code === "Timeout")) throw error;
        out(`no reply from ${target}: seq=${seq} (timeout ${values.timeout} ms)`);
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    for (
      const line of formatPingSummary(target, pingSummary(sent, rtts), performance.now() - started)
    ) {
      out(line);
    }
  }
  return rtts.length > 0 ? 0 : 1;
}

/** Waits `ms`, or less when the signal fires. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

interface EchoArgs extends ClientArgs {
  json?: boolean;
}

async function echoCommand(words: string[], values: EchoArgs): Promise<number> {
  await using client = await connectFor(values);
  const text = words.join(" ");
  const started = performance.now();
  const reply = await client.request({ type: "echo", text });
  const timeMs = performance.now() - started;
  if (values.json === true) {
    out(JSON.stringify({
      address: formatAddr(client.connection!.remoteAddr),
      text: reply.type === "echo" ? reply.text : null,
      reply: reply.type === "echo" ? undefined : reply.type,
      timeMs: Math.round(timeMs * 1000) / 1000,
    }));
  } else {
    out(reply.type === "echo" ? reply.text : JSON.stringify(reply));
  }
  return reply.type === "echo" ? 0 : 1;
}

/** Throws a clear error when `path` exists and `--force` is not given. */
async function refuseOverwrite(
  paths: readonly string[],
  force: boolean | undefined,
): Promise<void> {
  if (force === true) return;
  for (const path of paths) {
    try {
      await Deno.lstat(path);
    } catch (error) {
      // Without read permission the check is left to the write (createNew refuses it too).
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable) {
        continue;
      }
      throw error;
    }
    throw new Deno.errors.AlreadyExists(
      `File "${path}" already exists; pass --force to replace it`,
    );
  }
}

async function keygenCommand(values: { out?: string; force?: boolean }): Promise<number> {
  const pair = generateKeyPair();
  if (values.out !== undefined) {
    await refuseOverwrite([values.out], values.force);
    await writeKeyFile(values.out, pair, { overwrite: values.force === true });
    out(`npro: wrote ${values.out} (mode 0600)`);
  } else {
    if (values.force === true) throw new UsageError("--force applies to --out");
    out(`private: ${encodeKey(pair.privateKey)}`);
  }
  out(`public: ${encodeKey(pair.publicKey)}`);
  out(`fingerprint: ${fingerprint(pair.publicKey)}`);
  return 0;
}

interface CertArgs {
  name?: string;
  alt?: string[];
  days?: number;
  ca?: boolean;
  issuer?: string;
  issuerKey?: string;
  usage?: CertificateUsage;
  certOut: string;
  keyOut: string;
  force?: boolean;
}

async function certCommand(values: CertArgs): Promise<number> {
  if ((values.issuer === undefined) !== (values.issuerKey === undefined)) {
    throw new UsageError("--issuer and --issuer-key go together");
  }
  if (values.ca === true && values.issuer !== undefined) {
    throw new UsageError("--ca makes a self-signed CA: it takes no --issuer");
  }
  if (values.usage !== undefined && values.issuer === undefined) {
    throw new UsageError("--usage applies to certificates signed with --issuer");
  }
  if (values.ca === true && values.alt !== undefined) {
    throw new UsageError("--ca takes no --alt: a CA certificate names no host");
  }
  if (values.certOut === values.keyOut) {
    throw new UsageError(`--cert-out and --key-out are the same file "${values.certOut}"`);
  }
  await refuseOverwrite([values.certOut, values.keyOut], values.force);
  const days = values.days;
  let cert;
  let what: string;
  if (values.ca === true) {
    cert = await generateCertificateAuthority({
      commonName: values.name ?? "npro CA",
      ...(days === undefined ? {} : { days }),
    });
    what = "CA certificate (CA:TRUE, pathlen 0; keep its key offline)";
  } else if (values.issuer !== undefined) {
    const usage = values.usage ?? "both";
    const name = values.name ?? "localhost";
    const [certPem, keyPem] = await Promise.all([
      Deno.readTextFile(values.issuer),
      Deno.readTextFile(values.issuerKey!),
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
  const options = { createNew: values.force !== true };
  await Deno.writeTextFile(values.certOut, cert.certPem, options);
  await Deno.writeTextFile(values.keyOut, cert.keyPem, { ...options, mode: 0o600 });
  if (values.force === true) await Deno.chmod(values.keyOut, 0o600);
  out(`npro: wrote ${values.certOut} and ${values.keyOut} (key mode 0600): ${what}`);
  out(`fingerprint: ${cert.fingerprint}`);
  out(`spki pin: ${certificateSpkiPin(cert.certPem)}`);
  return 0;
}

async function configCheckCommand(path: string): Promise<number> {
  const config = await loadConfig({ path, env: true });
  const warnings = configWarnings(config);
  for (const warning of warnings) note(`npro: warning: ${warning}`);
  out(
    `npro: ${path} is valid${
      warnings.length === 0
        ? ""
        : ` (${warnings.length} warning${warnings.length === 1 ? "" : "s"})`
    }`,
  );
  return 0;
}

/** What a command's run left behind: its exit code and its name for error messages. */
interface RunState {
  code: number;
  name: string;
}

/** Builds the command tree; a new one per run, so `main` can be called more than once. */
function program(state: RunState): Command {
  const root = new Command("npro")
    .description(
      "Run a @npro/network-protocol daemon, talk to one, make keys, certificates and configuration.",
    )
    .version(VERSION, "-V, --version", "print the version")
    .helpOption("-h, --help", "print this help")
    .configureOutput({
      writeOut: (text) => out(text.replace(/\n$/, "")),
      writeErr: (text) => note(text.replace(/\n$/, "")),
      getOutHasColors: () => false,
      getErrHasColors: () => false,
      outputError: (text, write) => write(text.replace(/^error: /, "npro: ")),
    })
    .exitOverride()
    .showSuggestionAfterError(true)
    .allowExcessArguments(false)
    .addHelpText(
      "after",
      `
Exit codes: 0 success, 1 failure, 2 usage error. "npro <command> --help" shows a command's
options. Environment: NETWORK_PROTOCOL_<SECTION>_<KEY> overrides any configuration key.`,
    );
  const run =
    <A extends unknown[]>(name: string, fn: (...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      state.name = name;
      state.code = await fn(...args);
    };
  const add = (name: string, description: string, parent: Command = root): Command =>
    parent.command(name).description(description).showHelpAfterError(
      `(see "npro ${parent === root ? "" : `${parent.name()} `}${name} --help")`,
    );

  const serveCmd = add(
    "serve",
    "Run the daemon (default 127.0.0.1:9000, TCP, Noise XX, PING and ECHO handlers)",
  )
    .option("--config <path>", "TOML configuration (also NETWORK_PROTOCOL_<SECTION>_<KEY>)")
    .option("--address <addr>", "listen address: host:port, [v6]:port, or a socket path")
    .option(
      "--admin <addr>",
      "admin endpoint (GET /livez, /readyz, /metrics) on host:port; SIGTERM then drains (admin.address)",
    )
    .option(
      "--workers <n>",
      "run n processes sharing the address (SO_REUSEPORT); worker i's admin port is --admin's + i (server.workers)",
      integer(1, 64),
    )
    .option("--reuse-port", "listen with SO_REUSEPORT, to share the port with other processes")
    .addOption(
      new Option("--stop-with-parent", "drain and exit when standard input ends (workers)")
        .hideHelp(),
    );
  addTlsOptions(serveCmd, "server").action(run("serve", (o: ServeArgs) => serveCommand(o)));

  const pingCmd = addClientOptions(
    add("ping", "Send PING requests and print round-trip times, as ping(8) does"),
  )
    .option("-c, --count <n>", "pings to send; 0: until Ctrl-C", integer(0, 1_000_000), 3)
    .option("-i, --interval <seconds>", "wait between pings", seconds(0.001, 3600), 1000)
    .option("-W, --timeout <seconds>", "wait for each reply", seconds(0.001, 3600), 5000);
  pingCmd.action(run("ping", (o: PingArgs) => pingCommand(o)));

  addClientOptions(add("echo", "Send an ECHO request and print the answer"))
    .argument("<text...>", "the text to send (after -- when it starts with a dash)")
    .option("--json", 'print {"address","text","timeMs"} as one JSON line')
    .action(run("echo", (words: string[], o: EchoArgs) => echoCommand(words, o)));

  add("keygen", "Generate a static X25519 key pair (printed, or written 0600 with --out)")
    .option("--out <path>", "write the key pair to this file (mode 0600)")
    .option("--force", "replace the file when it exists")
    .action(run("keygen", (o: { out?: string; force?: boolean }) => keygenCommand(o)));

  add(
    "cert",
    "Make a TLS certificate: self-signed (CA:FALSE, pinnable), a small CA (--ca), or one it signs",
  )
    .requiredOption("--cert-out <path>", "write the certificate here (PEM)")
    .requiredOption("--key-out <path>", "write its private key here (PEM, mode 0600)")
    .option("--name <cn>", 'subject common name (default "localhost", or "npro CA" with --ca)')
    .option("--alt <name>", "a DNS name or IP address the certificate is for; repeatable", collect)
    .option("--days <n>", "validity in days (default 365, 3650 with --ca)", integer(1, 3650))
    .option("--ca", "make a CA (CA:TRUE, pathlen 0) to sign server and client certificates")
    .option("--issuer <path>", "sign with this CA certificate (PEM)")
    .option("--issuer-key <path>", "the CA's private key (PEM)")
    .addOption(
      new Option("--usage <usage>", "what the signed certificate is for (default both)").choices([
        "server",
        "client",
        "both",
      ]),
    )
    .option("--force", "replace the output files when they exist")
    .action(run("cert", (o: CertArgs) => certCommand(o)));

  const config = add("config", "Print an example configuration or check one");
  add("example", "Print an annotated config.toml with every key and its default", config)
    .action(run("config example", () => {
      out(exampleConfig());
      return Promise.resolve(0);
    }));
  add("check", "Validate a configuration file; print its errors and warnings", config)
    .argument("<path>", "the TOML file")
    .action(run("config check", (path: string) => configCheckCommand(path)));
  addClusterCommands(add, run, loadFor, out, integer);
  return root;
}

/** A hint for the errors a newcomer meets first. */
function hintFor(error: unknown, command: string): string | undefined {
  if (!(error instanceof ProtocolError)) return undefined;
  switch (error.code) {
    case "ConnectionRefused":
      return "is the server running? Check --address (default 127.0.0.1:9000)";
    case "PermissionDenied":
      return command === "serve"
        ? "deno task serve may listen on 127.0.0.1 only: widen --allow-net to listen elsewhere"
        : "widen --allow-net (or --allow-read, --allow-env) in the deno run command";
    case "AddressInUse":
      return "another process listens there: pick another --address";
    case "HandshakeFailed":
      return "did the server's key change (npro serve makes a new one at each start)? " +
        "Pass the key, not its fingerprint; do both sides agree on encryption and transport?";
    default:
      return undefined;
  }
}

/**
 * Runs the `npro` command line with the given arguments and returns the exit code: 0 on
 * success, 1 on a failure, 2 on a usage error. Errors are printed as one line (no stack
 * trace) on stderr; help and version on stdout.
 *
 * @example Print the version
 * ```ts
 * import { main } from "@npro/network-protocol/cli";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await main(["--version"]), 0);
 * ```
 *
 * @param args The command-line arguments (without the program name).
 * @returns The process exit code.
 */
export async function main(args: string[]): Promise<number> {
  const state: RunState = { code: 0, name: args[0] ?? "" };
  try {
    await program(state).parseAsync(args, { from: "user" });
    return state.code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed the help, the version or the usage error: help asked for exits
      // 0; help shown because a command is missing, and every usage error, exit 2.
      return error.exitCode === 0 ? 0 : 2;
    }
    const prefix = `npro ${state.name}`.trimEnd();
    if (error instanceof UsageError) {
      note(`${prefix}: ${error.message}\n(see "${prefix} --help")`);
      return 2;
    }
    const detail = error instanceof ProtocolError
      ? `${error.code}: ${error.message}`
      : error instanceof Error
      ? `${error.name}: ${error.message}`
      : String(error);
    note(`${prefix}: ${detail}`);
    const hint = hintFor(error, state.name);
    if (hint !== undefined) note(`npro: hint: ${hint}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
