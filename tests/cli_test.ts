import assert from "node:assert/strict";
import { main } from "../src/cli/main.ts";
import { parseConfig } from "../src/config/mod.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { encodeKey, fingerprint, generateKeyPair, readKeyFile } from "../src/secure/keys.ts";
import { serve, type Server } from "../src/service/daemon.ts";
import { X509Certificate } from "node:crypto";
import { makePki } from "./_tls_pki.ts";
import { formatPingSummary, pingSummary } from "../src/cli/ping_stats.ts";
import { VERSION } from "../src/cli/version.ts";

const root = new URL("..", import.meta.url).pathname;

/** Reads lines from a stream until one matches, returning every line read so far. */
async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  pattern: RegExp,
  timeoutMs: number,
): Promise<string[]> {
  const lines: string[] = [];
  let buffer = "";
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const parts = buffer.split("\n");
    buffer = parts.pop()!;
    lines.push(...parts);
    if (parts.some((line) => pattern.test(line))) return lines;
  }
  throw new Error(`No line matched ${pattern}; got:\n${lines.join("\n")}${buffer}`);
}

Deno.test("deno task serve starts, answers npro ping, and exits 0 on SIGINT", async () => {
  const child = new Deno.Command("deno", {
    args: ["task", "serve"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderrText = child.stderr.pipeThrough(new TextDecoderStream());
  const stderrDone = Array.fromAsync(stderrText);
  let exited = false;
  let daemonPid = 0;
  const kill = () => {
    const stops = [
      () => daemonPid > 0 && Deno.kill(daemonPid, "SIGKILL"),
      () => child.kill("SIGKILL"),
    ];
    for (const stop of stops) {
      try {
        stop();
      } catch {
        // Already gone.
      }
    }
  };
  // Never hang CI: whatever happens, both processes are gone after 60 s and the test fails.
  const watchdog = setTimeout(kill, 60_000);
  try {
    const lines = await readUntil(stdout, /server key fingerprint/, 30_000);
    assert.ok(lines.some((l) => l.includes("listening on 127.0.0.1:9000")), lines.join("\n"));
    const key = lines.find((l) => l.startsWith("npro: server key "))!.split(" ")[3]!;
    // `deno task` runs the daemon as its child: signal the daemon itself, by its PID (a signal
    // to the task runner is not always forwarded before the runner exits).
    daemonPid = Number(/pid (\d+)/.exec(lines.join("\n"))![1]);
    const ping = await new Deno.Command("deno", {
      // `=`: a base64url key may start with "-", which parseArgs refuses as a separate argument.
      args: ["task", "npro", "ping", `--server-key=${key}`, "--count", "2"],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
    }).output();
    const pingOut = new TextDecoder().decode(ping.stdout);
    assert.equal(ping.code, 0, new TextDecoder().decode(ping.stderr));
    assert.equal(pingOut.match(/pong from 127\.0\.0\.1:9000/g)?.length, 2, pingOut);
    Deno.kill(daemonPid, "SIGINT");
    const status = await child.status;
    exited = true;
    assert.equal(status.code, 0);
    const rest = await readUntil(stdout, /npro: stopped/, 10_000);
    assert.ok(rest.length > 0);
  } finally {
    clearTimeout(watchdog);
    if (!exited) {
      kill();
      await child.status;
    }
    await stdout.cancel();
    await stderrDone;
  }
});

Deno.test("npro keygen writes a 0600 key file that reads back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/server.key`;
    assert.equal(await main(["keygen", "--out", path]), 0);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const pair = await readKeyFile(path);
    assert.equal(pair.publicKey.length, 32);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("npro cert writes a certificate and a 0600 key", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const code = await main([
      "cert",
      "--name",
      "localhost",
      "--cert-out",
      `${dir}/cert.pem`,
      "--key-out",
      `${dir}/key.pem`,
    ]);
    assert.equal(code, 0);
    assert.match(await Deno.readTextFile(`${dir}/cert.pem`), /BEGIN CERTIFICATE/);
    assert.equal((await Deno.stat(`${dir}/key.pem`)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("npro config example prints TOML that parses to the defaults; bad commands fail", async () => {
  const lines: string[] = [];
  const original = console.log;
  console.log = (line: string) => lines.push(line);
  try {
    assert.equal(await main(["config", "example"]), 0);
  } finally {
    console.log = original;
  }
  assert.ok(parseConfig(lines.join("\n")));
  const error = console.error;
  console.error = () => {};
  try {
    assert.equal(await main(["nope"]), 2);
    assert.equal(await main(["config", "check", "/nonexistent/npro.toml"]), 1);
  } finally {
    console.error = error;
  }
});

/** Runs the CLI in this process, capturing what it prints. */
async function runCli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...parts: unknown[]) => out.push(parts.join(" "));
  console.error = (...parts: unknown[]) => err.push(parts.join(" "));
  try {
    const code = await main(args);
    return { code, out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

async function cliServer(staticKey = generateKeyPair()): Promise<Server> {
  return await serve(
    { address: "127.0.0.1:0", security: { staticKey } },
    registerStandardHandlers(new Dispatcher()),
  );
}

function cliAddress(server: Server): string {
  return `127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
}

Deno.test("npro ping and echo without a pinned key print one warning line on stderr", async () => {
  await using server = await cliServer();
  const address = cliAddress(server);
  const ping = await runCli(["ping", "--address", address, "--count", "1"]);
  assert.equal(ping.code, 0, ping.err.join("\n"));
  assert.equal(ping.err.length, 1, ping.err.join("\n"));
  assert.match(ping.err[0]!, /^npro: warning: .*not authenticated/);
  assert.equal(ping.out.filter((l) => l.startsWith("pong from")).length, 1);
  const echo = await runCli(["echo", "hi", "--address", address]);
  assert.equal(echo.code, 0, echo.err.join("\n"));
  assert.deepEqual(echo.out, ["hi"]);
  assert.equal(echo.err.length, 1, echo.err.join("\n"));
  assert.match(echo.err[0]!, /not authenticated/);
  // A pinned key: no warning at all.
  const pinned = await runCli([
    "ping",
    "--address",
    address,
    "--count",
    "1",
    `--server-key=${encodeKey(server.publicKey!)}`,
  ]);
  assert.equal(pinned.code, 0, pinned.err.join("\n"));
  assert.deepEqual(pinned.err, []);
});

Deno.test("npro ping --known-servers records the key first, then requires it; a changed key fails", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/known_servers`;
    await using server = await cliServer();
    const address = cliAddress(server);
    const first = await runCli([
      "ping",
      "--address",
      address,
      "--count",
      "1",
      "--known-servers",
      path,
    ]);
    assert.equal(first.code, 0, first.err.join("\n"));
    assert.equal(first.err.length, 1, first.err.join("\n"));
    assert.ok(!/warning/.test(first.err[0]!), first.err[0]);
    assert.match(first.err[0]!, /first use/);
    assert.ok(first.err[0]!.includes(fingerprint(server.publicKey!)), first.err[0]);
    assert.match(await Deno.readTextFile(path), new RegExp(`^${address} `, "m"));
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);

    const second = await runCli(["echo", "again", "--address", address, "--known-servers", path]);
    assert.equal(second.code, 0, second.err.join("\n"));
    assert.deepEqual(second.out, ["again"]);
    assert.deepEqual(second.err, []);

    // Another server now answers at a known address: its key changed.
    await using other = await cliServer();
    const otherAddress = cliAddress(other);
    await Deno.writeTextFile(
      path,
      `${otherAddress} ${encodeKey(server.publicKey!)}\n`,
      { mode: 0o600 },
    );
    const changed = await runCli([
      "ping",
      "--address",
      otherAddress,
      "--count",
      "1",
      "--known-servers",
      path,
    ]);
    assert.equal(changed.code, 1);
    const text = changed.err.join("\n");
    assert.match(text, /HandshakeFailed: The key of server .* CHANGED/);
    assert.ok(text.includes(path), text);
    assert.ok(text.includes(fingerprint(server.publicKey!)), text);
    assert.ok(text.includes(fingerprint(other.publicKey!)), text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("npro ping and echo take a --server-key value that starts with a dash", async () => {
  // One key in 64 encodes with a leading "-" in base64url; parseArgs took it for an option.
  let staticKey = generateKeyPair();
  for (let i = 0; i < 5000 && !encodeKey(staticKey.publicKey).startsWith("-"); i++) {
    staticKey = generateKeyPair();
  }
  const key = encodeKey(staticKey.publicKey);
  assert.ok(key.startsWith("-"), "found a key that starts with a dash");
  await using server = await cliServer(staticKey);
  const address = cliAddress(server);
  const ping = await runCli(["ping", "--server-key", key, "--address", address, "--count", "1"]);
  assert.equal(ping.code, 0, ping.err.join("\n"));
  assert.deepEqual(ping.err, []);
  const echo = await runCli(["echo", "--server-key", key, "--address", address, "--", "-n"]);
  assert.equal(echo.code, 0, echo.err.join("\n"));
  assert.deepEqual(echo.out, ["-n"]);
});

Deno.test("npro serve and npro ping with mutual TLS flags; npro cert makes a CA and signs", async () => {
  const pki = await makePki();
  const child = new Deno.Command("deno", {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${pki.dir}`,
      "--allow-env=NETWORK_PROTOCOL_*",
      "src/cli/main.ts",
      "serve",
      "--address",
      "127.0.0.1:0",
      "--tls-cert",
      pki.server.certPath,
      "--tls-key",
      pki.server.keyPath,
      "--tls-client-auth",
      "require",
      "--tls-client-ca",
      pki.ca.certPath,
      "--tls-min-version",
      "1.3",
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderrDone = Array.fromAsync(child.stderr.pipeThrough(new TextDecoderStream()));
  let exited = false;
  const watchdog = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, 30_000);
  try {
    const lines = await readUntil(stdout, /server key fingerprint/, 20_000);
    const text = lines.join("\n");
    assert.match(text, /TLS 1\.3\+, client certificates require, backend auto/);
    const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(text)![1]);
    const key = /npro: server key (\S+)/.exec(text)![1]!;
    const common = [
      "--address",
      `localhost:${port}`,
      `--server-key=${key}`,
      "--tls-ca",
      pki.ca.certPath,
    ];
    // With the CA-signed client certificate: served; the server's certificate is shown.
    const notes: string[] = [];
    const outs: string[] = [];
    const saved = { log: console.log, error: console.error };
    console.log = (line: string) => outs.push(line);
    console.error = (line: string) => notes.push(line);
    let served: number, refused: number, badFlag: number;
    try {
      served = await main([
        "ping",
        ...common,
        "--count",
        "1",
        "--tls-cert",
        pki.client.certPath,
        "--tls-key",
        pki.client.keyPath,
        "--tls-pin",
        pki.server.fingerprint,
      ]);
      // Without a certificate: refused, and the error says so.
      refused = await main([
        "echo",
        "hi",
        ...common,
        "--tls-cert",
        pki.otherClient.certPath,
        "--tls-key",
        pki.otherClient.keyPath,
      ]);
      badFlag = await main(["ping", ...common, "--tls-pin-only"]);
    } finally {
      Object.assign(console, saved);
    }
    assert.equal(served, 0, notes.join("\n"));
    assert.ok(outs.some((line) => /pong from/.test(line)), outs.join("\n"));
    assert.ok(
      notes.some((line) => line.includes(`fingerprint ${pki.server.fingerprint}`)),
      notes.join("\n"),
    );
    assert.equal(refused, 1);
    assert.ok(
      notes.some((line) => /TlsError: The server refused the client certificate/.test(line)),
      notes.join("\n"),
    );
    assert.equal(badFlag, 1);
    assert.ok(notes.some((line) => /tls_pin_only = true needs/.test(line)), notes.join("\n"));

    // npro cert: a CA, then a client certificate it signs, usable right away.
    const ca = `${pki.dir}/cli-ca`;
    assert.equal(
      await main([
        "cert",
        "--ca",
        "--name",
        "cli CA",
        "--cert-out",
        `${ca}.pem`,
        "--key-out",
        `${ca}.key`,
      ]),
      0,
    );
    assert.equal((await Deno.stat(`${ca}.key`)).mode! & 0o777, 0o600);
    assert.equal(
      await main([
        "cert",
        "--issuer",
        `${ca}.pem`,
        "--issuer-key",
        `${ca}.key`,
        "--usage",
        "client",
        "--name",
        "cli-client",
        "--cert-out",
        `${pki.dir}/cli-client.pem`,
        "--key-out",
        `${pki.dir}/cli-client.key`,
      ]),
      0,
    );
    const issued = new X509Certificate(await Deno.readTextFile(`${pki.dir}/cli-client.pem`));
    assert.ok(issued.checkIssued(new X509Certificate(await Deno.readTextFile(`${ca}.pem`))));
    assert.equal(
      await main([
        "cert",
        "--ca",
        "--issuer",
        `${ca}.pem`,
        "--issuer-key",
        `${ca}.key`,
        "--cert-out",
        "x",
        "--key-out",
        "y",
      ]),
      2, // A usage error: --ca takes no --issuer.
    );

    Deno.kill(child.pid, "SIGINT");
    const status = await child.status;
    exited = true;
    assert.equal(status.code, 0);
  } finally {
    clearTimeout(watchdog);
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await child.status;
    }
    await stdout.cancel();
    await stderrDone;
    await Deno.remove(pki.dir, { recursive: true });
  }
});

Deno.test("npro --version prints deno.json's version; every command's --help exits 0 with its usage", async () => {
  const { version } = JSON.parse(await Deno.readTextFile(`${root}deno.json`)) as {
    version: string;
  };
  assert.equal(VERSION, version);
  for (const flag of ["--version", "-V"]) {
    const result = await runCli([flag]);
    assert.equal(result.code, 0);
    assert.deepEqual(result.out, [version]);
  }
  const commands = [
    ["serve", /--address <addr>[\s\S]*--tls-client-auth <mode>/],
    ["ping", /--count <n>[\s\S]*--interval <seconds>[\s\S]*--timeout <seconds>/],
    ["echo", /<text\.\.\.>[\s\S]*--json/],
    ["keygen", /--out <path>[\s\S]*--force/],
    ["cert", /--cert-out <path>[\s\S]*--issuer-key <path>[\s\S]*--usage <usage>[\s\S]*--force/],
    ["config", /example[\s\S]*check <path>/],
    ["config example", /annotated/],
    ["config check", /<path>/],
  ] as const;
  for (const [command, options] of commands) {
    const words = command.split(" ");
    // "npro help ping", and for a subcommand "npro config help check".
    const helpCommand = [...words.slice(0, -1), "help", words.at(-1)!];
    for (const help of [[...words, "--help"], helpCommand]) {
      const result = await runCli(help);
      const text = result.out.join("\n");
      assert.equal(result.code, 0, `${help.join(" ")}: ${result.err.join("\n")}`);
      assert.match(text, new RegExp(`^Usage: npro ${command} `), help.join(" "));
      assert.match(text, options, help.join(" "));
      assert.deepEqual(result.err, []);
    }
  }
  const top = await runCli(["--help"]);
  assert.equal(top.code, 0);
  for (const command of ["serve", "ping", "echo", "keygen", "cert", "config"]) {
    assert.match(top.out.join("\n"), new RegExp(`^  ${command}\\b`, "m"));
  }
});

Deno.test("npro usage errors exit 2 with a suggestion and no stack trace", async () => {
  const cases: [string[], RegExp][] = [
    [[], /^Usage: npro /],
    [["pnig"], /unknown command 'pnig'\n\(Did you mean ping\?\)/],
    [["ping", "--adress", "x"], /unknown option '--adress'\n\(Did you mean --address\?\)/],
    [["echo"], /missing required argument 'text'/],
    [
      ["ping", "--count", "abc"],
      /'-c, --count <n>' argument 'abc' is invalid\. Expected an integer/,
    ],
    [["ping", "--interval", "-1"], /argument '-1' is invalid/],
    [["cert", "--key-out", "k"], /required option '--cert-out <path>' not specified/],
    [["cert", "--usage", "web", "--cert-out", "c", "--key-out", "k"], /Allowed choices are server/],
    [
      ["cert", "--issuer", "ca.pem", "--cert-out", "c", "--key-out", "k"],
      /--issuer-key go together/,
    ],
    [["config"], /^Usage: npro config /],
    [["config", "chek"], /Did you mean check\?/],
    [["keygen", "extra"], /too many arguments/],
    [["serve", "--tls-client-auth", "maybe"], /Allowed choices are none, request, require/],
  ];
  for (const [args, expected] of cases) {
    const result = await runCli(args);
    const text = result.err.join("\n");
    assert.equal(result.code, 2, `npro ${args.join(" ")}: ${text}`);
    assert.match(text, expected, `npro ${args.join(" ")}`);
    assert.ok(!/^\s+at /m.test(text), text);
    assert.deepEqual(result.out, [], `npro ${args.join(" ")}`);
  }
});

Deno.test("npro cert and keygen refuse to overwrite without --force", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const args = ["cert", "--cert-out", `${dir}/c.pem`, "--key-out", `${dir}/k.pem`];
    assert.equal((await runCli(args)).code, 0);
    const before = await Deno.readTextFile(`${dir}/c.pem`);
    const again = await runCli(args);
    assert.equal(again.code, 1);
    assert.match(
      again.err.join("\n"),
      /AlreadyExists: File ".*c\.pem" already exists; pass --force/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/c.pem`), before);
    const forced = await runCli([...args, "--force"]);
    assert.equal(forced.code, 0, forced.err.join("\n"));
    assert.notEqual(await Deno.readTextFile(`${dir}/c.pem`), before);
    assert.equal((await Deno.stat(`${dir}/k.pem`)).mode! & 0o777, 0o600);

    const key = ["keygen", "--out", `${dir}/server.key`];
    assert.equal((await runCli(key)).code, 0);
    const refused = await runCli(key);
    assert.equal(refused.code, 1);
    assert.match(refused.err.join("\n"), /already exists; pass --force/);
    assert.equal((await runCli([...key, "--force"])).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("npro config check prints warnings as well as errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/plain.toml`, "[transport]\nencryption_enabled = false\n");
    const plain = await runCli(["config", "check", `${dir}/plain.toml`]);
    assert.equal(plain.code, 0, plain.err.join("\n"));
    assert.match(plain.err.join("\n"), /^npro: warning: transport\.encryption_enabled is false/m);
    assert.match(plain.out.join("\n"), /is valid \(\d+ warnings?\)/);
    await Deno.writeTextFile(`${dir}/bad.toml`, '[server]\nadress = 1\nidle_timeout = "60s"\n');
    const bad = await runCli(["config", "check", `${dir}/bad.toml`]);
    assert.equal(bad.code, 1);
    const text = bad.err.join("\n");
    assert.match(text, /did you mean "address"/);
    assert.match(text, /idle_timeout/);
    assert.ok(!/^\s+at /m.test(text), text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("npro ping prints a line per reply and ping(8)'s summary; npro echo --json", async () => {
  await using server = await cliServer();
  const address = cliAddress(server);
  const key = `--server-key=${encodeKey(server.publicKey!)}`;
  const ping = await runCli(["ping", "--address", address, key, "-c", "3", "-i", "0.01"]);
  assert.equal(ping.code, 0, ping.err.join("\n"));
  assert.equal(ping.out[0], `PING ${address}`);
  for (let seq = 1; seq <= 3; seq++) {
    assert.match(
      ping.out[seq]!,
      new RegExp(`^pong from ${address}: seq=${seq} time=\\d+\\.\\d{3} ms$`),
    );
  }
  assert.equal(ping.out[4], `--- ${address} ping statistics ---`);
  assert.match(ping.out[5]!, /^3 sent, 3 received, 0% loss, time \d+ ms$/);
  assert.match(ping.out[6]!, /^rtt min\/avg\/max\/stddev = [\d.]+\/[\d.]+\/[\d.]+\/[\d.]+ ms$/);

  const echo = await runCli(["echo", "--json", "--address", address, key, "hello", "world"]);
  assert.equal(echo.code, 0, echo.err.join("\n"));
  const json = JSON.parse(echo.out[0]!);
  assert.equal(json.text, "hello world");
  assert.equal(json.address, address);
  assert.equal(typeof json.timeMs, "number");
});

Deno.test("pingSummary computes loss and min/avg/max/stddev as ping(8) does", () => {
  const summary = pingSummary(4, [1, 2, 3]);
  assert.equal(summary.lossPercent, 25);
  assert.deepEqual(
    { ...summary.rtt, stddev: Number(summary.rtt!.stddev.toFixed(6)) },
    { min: 1, avg: 2, max: 3, stddev: 0.816497 },
  );
  assert.deepEqual(formatPingSummary("h:1", summary, 3001.2), [
    "--- h:1 ping statistics ---",
    "4 sent, 3 received, 25% loss, time 3001 ms",
    "rtt min/avg/max/stddev = 1.000/2.000/3.000/0.816 ms",
  ]);
  assert.deepEqual(formatPingSummary("h:1", pingSummary(3, []), 10), [
    "--- h:1 ping statistics ---",
    "3 sent, 0 received, 100% loss, time 10 ms",
  ]);
});
