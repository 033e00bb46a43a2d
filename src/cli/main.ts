/**
 * The `npro` command: run a daemon, talk to one, manage keys, certificates and configuration.
 *
 * ```
 * npro serve [--config path] [--address host:port]
 * npro ping [--address host:port] [--server-key key | --known-servers path] [--count n] [--config path]
 * npro echo <text> [--address host:port] [--server-key key | --known-servers path] [--config path]
 * npro keygen [--out path]
 * npro cert [--name cn] [--alt name]... [--days n] --cert-out path --key-out path
 * npro config example | npro config check <path>
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { exampleConfig, loadConfig, type NetworkConfig } from "../config/mod.ts";
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
import { generateSelfSignedCert } from "../transport/certs.ts";
import { type Client, connect } from "../service/client.ts";
import { serve } from "../service/daemon.ts";
import { formatAddr } from "../transport/address.ts";

const USAGE = `Usage: npro <command> [options]

Commands:
  serve    Run the daemon (default: 127.0.0.1:9000, TCP, Noise XX, PING and ECHO handlers)
  ping     Send PING requests and print round-trip times
  echo     Send an ECHO request and print the answer
  keygen   Generate a static X25519 key pair (written 0600 with --out)
  cert     Generate a self-signed certificate for TLS (CA:FALSE, so clients can pin it)
  config   "config example" prints an annotated config.toml; "config check <path>" validates one

Common options:
  --config <path>      TOML configuration (environment: NETWORK_PROTOCOL_<SECTION>_<KEY>)
  --address <addr>     host:port, [v6]:port, or a socket path (transport.kind = "unix")
  --server-key <key>   the server's base64url public key to pin (printed by "npro serve")
  --known-servers <path>
                       trust on first use: record the server's key in this file on the first
                       connection, refuse a changed key later (security.known_servers_path)
  --help               this text
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

async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: "string" }, address: { type: "string" } },
  });
  const config = await loadFor(values);
  await using _logging = await setupLogging(config.logging);
  const dispatcher = registerStandardHandlers(new Dispatcher());
  const controller = new AbortController();
  const server = await serve({
    config,
    ...(values.address === undefined ? {} : { address: values.address }),
    signal: controller.signal,
  }, dispatcher);
  out(`npro: listening on ${formatAddr(server.addr)} (${config.transport.kind}, pid ${Deno.pid})`);
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

interface ClientArgs {
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
  let config = await loadFor(values);
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
      name: { type: "string", default: "localhost" },
      alt: { type: "string", multiple: true },
      days: { type: "string", default: "365" },
      "cert-out": { type: "string" },
      "key-out": { type: "string" },
    },
  });
  if (values["cert-out"] === undefined || values["key-out"] === undefined) {
    throw new TypeError("npro cert needs --cert-out and --key-out");
  }
  const cert = await generateSelfSignedCert({
    commonName: values.name,
    altNames: values.alt ?? [values.name, "127.0.0.1"],
    days: Number(values.days),
  });
  await Deno.writeTextFile(values["cert-out"], cert.certPem);
  await Deno.writeTextFile(values["key-out"], cert.keyPem, { mode: 0o600 });
  out(`npro: wrote ${values["cert-out"]} and ${values["key-out"]} (key mode 0600)`);
  out(`fingerprint: ${cert.fingerprint}`);
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
