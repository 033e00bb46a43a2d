import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;
const env = { NO_COLOR: "1", RUST_BACKTRACE: "0" };

/** Runs an example with the permissions its header documents and returns its output. */
async function run(file: string, permissions: string[], args: string[] = []): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command("deno", {
    args: ["run", ...permissions, `examples/${file}`, ...args],
    cwd: root,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, `${file} failed:\n${out}\n${new TextDecoder().decode(stderr)}`);
  return out;
}

Deno.test("example: echo server and echo client", async () => {
  const server = new Deno.Command("deno", {
    args: ["run", "--allow-net=127.0.0.1", "examples/echo_server.ts", "127.0.0.1:0"],
    cwd: root,
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stopped = false;
  try {
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) break;
      text += value;
    }
    const match = /listening (\S+) key (\S+)/.exec(text);
    assert.ok(match, text);
    const out = await run("echo_client.ts", ["--allow-net=127.0.0.1"], [
      match[1]!,
      match[2]!,
      "hi",
    ]);
    assert.match(out, /echo: hi/);
    assert.match(out, /ping: \d+\.\d+ ms/);
    server.kill("SIGINT");
    assert.equal((await server.status).code, 0);
    stopped = true;
  } finally {
    if (!stopped) {
      server.kill("SIGKILL");
      await server.status;
    }
    await lines.cancel();
  }
});

Deno.test("example: a custom handler with async work", async () => {
  const out = await run("custom_handler.ts", ["--allow-net=127.0.0.1"]);
  assert.match(out, /apple: 3/);
  assert.match(out, /pear: 0/);
  assert.match(out, /kiwi: failed/);
});

Deno.test("example: the original's Multiplexer on requests, fragments, a stream and GOAWAY", async () => {
  const out = await run("multiplexer.ts", ["--allow-net=127.0.0.1"]);
  assert.match(out, /100 concurrent requests: all matched/);
  assert.match(out, /small request beside a 4 MiB one: 42, large: 4194304 bytes/);
  assert.match(out, /stream upload: the server counted 20971520 bytes/);
  assert.match(out, /a request running at GOAWAY: custom/);
  assert.match(out, /a request after GOAWAY: NotProcessed/);
});

Deno.test("example: a pool over two servers, a lease, a shutdown with GOAWAY and an open breaker", async () => {
  const out = await run("pool.ts", ["--allow-net=127.0.0.1"]);
  assert.match(out, /1000 requests: 1000 answered by a and b, [1-4] connections opened \(max 4\)/);
  assert.match(out, /lease on [ab]: ping true/);
  assert.match(out, /shutdown of a: 200 answered, \d+ sent again, 0 ran twice/);
  assert.match(out, /refused: circuit open, retry after 5 s/);
});

Deno.test("example: Unix socket", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/npro.sock`;
  try {
    const out = await run(
      "unix_socket.ts",
      [`--allow-read=${path}`, `--allow-write=${path}`, `--allow-net=unix:${path}`],
      [path],
    );
    assert.match(out, /echo: over a unix socket/);
    assert.match(out, /socket mode: 600/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("example: TLS with a generated certificate", async () => {
  const out = await run("tls.ts", ["--allow-net=127.0.0.1,localhost"]);
  assert.match(out, /echo: over TLS \+ Noise/);
});

Deno.test("example: mutual TLS with a small CA made by npro cert", async () => {
  const dir = await Deno.makeTempDir({ prefix: "npro-pki-" });
  try {
    // The commands of the example's header, through the CLI with narrow permissions.
    const npro = async (args: string[]) => {
      const { code, stdout, stderr } = await new Deno.Command("deno", {
        args: ["run", `--allow-read=${dir}`, `--allow-write=${dir}`, "src/cli/main.ts", ...args],
        cwd: root,
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(stdout);
      assert.equal(code, 0, `npro ${args.join(" ")}:\n${text}${new TextDecoder().decode(stderr)}`);
      return text;
    };
    const ca = ["--issuer", `${dir}/ca.pem`, "--issuer-key", `${dir}/ca.key`];
    assert.match(
      await npro([
        "cert",
        "--ca",
        "--name",
        "npro example CA",
        "--cert-out",
        `${dir}/ca.pem`,
        "--key-out",
        `${dir}/ca.key`,
      ]),
      /CA certificate/,
    );
    await npro([
      "cert",
      ...ca,
      "--usage",
      "server",
      "--name",
      "localhost",
      "--alt",
      "localhost",
      "--alt",
      "127.0.0.1",
      "--cert-out",
      `${dir}/server.pem`,
      "--key-out",
      `${dir}/server.key`,
    ]);
    const client = await npro([
      "cert",
      ...ca,
      "--usage",
      "client",
      "--name",
      "client-1",
      "--cert-out",
      `${dir}/client.pem`,
      "--key-out",
      `${dir}/client.key`,
    ]);
    assert.match(client, /client certificate signed by/);
    assert.match(client, /spki pin: [A-Za-z0-9+/]{43}=/);
    const out = await run("mtls.ts", ["--allow-net=127.0.0.1,localhost", `--allow-read=${dir}`], [
      dir,
    ]);
    assert.match(out, /echo: over mutual TLS \+ Noise/);
    assert.match(out, /server sees client certificate CN "client-1"/);
    assert.match(out, /client sees server certificate CN "localhost"/);
    assert.match(out, /stranger refused: TlsError/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("example: a client with reconnection", async () => {
  const out = await run("reconnecting_client.ts", ["--allow-net=127.0.0.1"]);
  assert.match(out, /in flight: Connection closed before request 1 was answered/);
  assert.match(out, /status: reconnecting/);
  assert.match(out, /echo: back again/);
  assert.match(out, /status: closed/);
});

Deno.test("example: cluster peer monitoring with three members, a death and a leave", async () => {
  const out = await run("cluster.ts", ["--allow-net=127.0.0.1"]);
  assert.match(out, /peer b: alive, rtt \d+\.\d+ ms, incarnation 0/);
  assert.match(out, /the nearest peer answered: [bc]/);
  assert.match(out, /a sees c: suspect\na sees c: dead/);
  assert.match(out, /a sees b: left/);
  assert.doesNotMatch(out, /a sees b: dead/);
  assert.match(out, /alive peers of a: 0/);
});
