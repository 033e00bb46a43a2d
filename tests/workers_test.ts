/**
 * Many processes on one port (issue 16): `TcpTransport({ reusePort })` and
 * `serve({ reusePort })` share a port through `SO_REUSEPORT` without `--unstable-net`, and
 * `npro serve --workers N` runs N processes that all receive connections, each with its own
 * admin port, drains them all on SIGTERM, and stops the group when one worker dies.
 */

import assert from "node:assert/strict";
import { ConfigError } from "../src/config/error.ts";
import { createConfig } from "../src/config/parse.ts";
import { ProtocolError } from "../src/errors.ts";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { Dispatcher } from "../src/protocol/dispatcher.ts";
import { decodeKey, generateKeyPair } from "../src/secure/keys.ts";
import { TcpTransport } from "../src/transport/tcp.ts";
import { workerAdminAddress } from "../src/cli/workers.ts";
import {
  CLI,
  freePort,
  freePorts,
  get,
  killQuietly,
  lines,
  metric,
  readUntil,
} from "./_deploy_helpers.ts";

/** Connections opened against the shared port: SO_REUSEPORT hashes each 4-tuple, so both
 * listeners miss out on all of them with probability 2^-(CONNECTIONS-1). */
const CONNECTIONS = 40;

Deno.test("reusePort: two TCP listeners share one port and both accept connections", async () => {
  const port = freePort();
  const transport = new TcpTransport({ reusePort: true });
  await using a = await transport.listen(`127.0.0.1:${port}`);
  await using b = await transport.listen(`127.0.0.1:${port}`);
  assert.equal((a.addr as Deno.NetAddr).port, port);
  assert.equal((b.addr as Deno.NetAddr).port, port);
  const counts = [0, 0];
  const accepting = [a, b].map(async (listener, i) => {
    for await (const conn of listener) {
      counts[i]!++;
      const buffer = new Uint8Array(2);
      const n = await conn.read(buffer);
      await conn.write(buffer.subarray(0, n ?? 0));
      conn.close();
    }
  });
  const client = new TcpTransport();
  for (let i = 0; i < CONNECTIONS; i++) {
    const conn = await client.connect(`127.0.0.1:${port}`, { timeoutMs: 5000 });
    await conn.write(new TextEncoder().encode("hi"));
    const buffer = new Uint8Array(2);
    assert.equal(await conn.read(buffer), 2);
    conn.close();
  }
  a.close();
  b.close();
  await Promise.all(accepting);
  assert.equal(counts[0]! + counts[1]!, CONNECTIONS);
  assert.ok(counts[0]! > 0 && counts[1]! > 0, `connections per listener: ${counts}`);
  // A listener without SO_REUSEPORT cannot join, nor take a port held without it.
  await using shared = await transport.listen(`127.0.0.1:${port}`);
  await assert.rejects(
    new TcpTransport().listen(`127.0.0.1:${port}`),
    (e: unknown) => e instanceof ProtocolError && e.code === "AddressInUse",
  );
  shared.close();
  await using plain = await new TcpTransport().listen(`127.0.0.1:${port}`);
  await assert.rejects(
    transport.listen(`127.0.0.1:${port}`),
    (e: unknown) => e instanceof ProtocolError && e.code === "AddressInUse",
  );
  plain.close();
  assert.throws(() => new TcpTransport({ reusePort: "yes" as never }), TypeError);
});

Deno.test("reusePort: two daemons serve one port; server.reuse_port is for tcp only", async () => {
  const port = freePort();
  const key = generateKeyPair();
  const daemon = (id: string) =>
    serve(
      { address: `127.0.0.1:${port}`, reusePort: true, security: { staticKey: key } },
      new Dispatcher().register("WHO", () => ({
        type: "custom",
        command: "WHO",
        payload: new TextEncoder().encode(id),
      })),
    );
  await using a = await daemon("a");
  await using _b = await daemon("b");
  const seen = new Map<string, number>();
  for (let i = 0; i < CONNECTIONS; i++) {
    await using client = await connect({
      address: `127.0.0.1:${port}`,
      security: { serverKeys: [key.publicKey] },
      autoReconnect: false,
    });
    const reply = await client.request(
      { type: "custom", command: "WHO", payload: new Uint8Array() },
    ) as { payload: Uint8Array };
    const id = new TextDecoder().decode(reply.payload);
    seen.set(id, (seen.get(id) ?? 0) + 1);
  }
  assert.ok((seen.get("a") ?? 0) > 0 && (seen.get("b") ?? 0) > 0, `replies: ${[...seen]}`);
  await assert.rejects(
    serve({ address: "127.0.0.1:0", reusePort: true, transport: new TcpTransport() }, a as never),
    TypeError,
  );
  assert.throws(
    () => createConfig({ server: { reusePort: true }, transport: { kind: "unix" } }),
    (e: unknown) => e instanceof ConfigError && /reuse_port works with the "tcp"/.test(e.message),
  );
  assert.throws(
    () => createConfig({ server: { workers: 2 }, transport: { kind: "unix" } }),
    (e: unknown) => e instanceof ConfigError && /server.workers above 1/.test(e.message),
  );
  assert.equal(workerAdminAddress("127.0.0.1:9100", 3), "127.0.0.1:9103");
  assert.throws(() => workerAdminAddress("127.0.0.1:65535", 1), RangeError);
});

/** Starts `npro serve --workers 2` with a key file and an admin base port. */
async function startWorkers(dir: string, extraEnv: Record<string, string> = {}) {
  const [port, admin] = freePorts(2) as [number, number];
  // Both admin ports must be free: base + 1 too.
  Deno.listen({ hostname: "127.0.0.1", port: admin + 1 }).close();
  const keyFile = `${dir}/key.json`;
  const keygen = await new Deno.Command(Deno.execPath(), {
    args: ["run", `--allow-read=${dir}`, `--allow-write=${dir}`, CLI, "keygen", "--out", keyFile],
    stdout: "null",
    stderr: "null",
  }).output();
  assert.equal(keygen.code, 0);
  await Deno.writeTextFile(
    `${dir}/config.toml`,
    `[server]\naddress = "127.0.0.1:${port}"\nworkers = 2\n\n` +
      `[admin]\naddress = "127.0.0.1:${admin}"\n\n[security]\nstatic_key_path = "${keyFile}"\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-run=deno",
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      "--allow-env=NETWORK_PROTOCOL_*",
      CLI,
      "serve",
      "--config",
      `${dir}/config.toml`,
    ],
    env: { NO_COLOR: "1", ...extraEnv },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const errors = new Response(child.stderr).text();
  const output = lines(child.stdout);
  const seen = await readUntil(
    output,
    (s) =>
      s.filter((l) => /npro: health endpoint/.test(l)).length === 2 &&
      s.filter((l) => /npro: server key [A-Za-z0-9_-]{43}$/.test(l)).length === 2,
    60_000,
  ).catch(async (error) => {
    killQuietly(child, "SIGTERM");
    throw new Error(`${error}\nstderr: ${await errors}`);
  });
  const key = /server key ([A-Za-z0-9_-]{43})$/.exec(
    seen.find((l) => /server key \S{43}$/.test(l))!,
  )![1]!;
  const pids = seen.map((l) => /worker \d started \(pid (\d+)\)/.exec(l)?.[1]).filter((p) =>
    p !== undefined
  ).map(Number);
  return { child, output, errors, seen, port, admin, key: decodeKey(key), pids };
}

/**
 * Kills the parent and its workers (all started by this test): a worker outliving its parent
 * would keep the parent's output pipes open, and the test waiting on them, forever.
 */
function stopAll(run: { child: Deno.ChildProcess; pids: number[] }): void {
  killQuietly(run.child);
  for (const pid of run.pids) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Already ended.
    }
  }
}

/** Runs `body` against `npro serve --workers 2` in a temporary directory, then stops everything. */
async function withWorkers(
  body: (run: Awaited<ReturnType<typeof startWorkers>>) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const run = await startWorkers(dir);
    try {
      await body(run);
    } finally {
      stopAll(run);
      await run.output.return(undefined);
      await run.child.status;
      await run.errors;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("npro serve --workers 2: both processes take connections, each with its own admin port; SIGTERM drains both", async () => {
  await withWorkers(async (run) => {
    const { port, admin, key } = run;
    // Every worker prints the same key (security.static_key_path) and its own pid.
    const listening = run.seen.filter((l) => /listening on 127\.0\.0\.1:\d+ \(tcp, pid/.test(l));
    assert.equal(new Set(listening.map((l) => /pid (\d+)/.exec(l)?.[1])).size, 2);
    for (let i = 0; i < CONNECTIONS; i++) {
      await using client = await connect({
        address: `127.0.0.1:${port}`,
        security: { serverKeys: [key] },
        autoReconnect: false,
      });
      assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
    }
    const accepted = [];
    for (const p of [admin, admin + 1]) {
      const { status, body } = await get(`http://127.0.0.1:${p}/metrics`);
      assert.equal(status, 200);
      accepted.push(metric(body, "npro_connections_accepted_total"));
    }
    assert.equal(accepted[0]! + accepted[1]!, CONNECTIONS);
    assert.ok(accepted[0]! > 0 && accepted[1]! > 0, `accepted per worker: ${accepted}`);
    run.child.kill("SIGTERM");
    const rest = await readUntil(run.output, (s) => s.some((l) => /all 2 workers/.test(l)), 30_000);
    assert.equal(rest.filter((l) => l === "npro: stopped").length, 2);
    assert.equal((await run.child.status).code, 0);
  });
});

Deno.test("npro serve --workers 2: a worker that dies stops the group (no restart), exit 1", async () => {
  await withWorkers(async (run) => {
    assert.equal(run.pids.length, 2);
    // The worker is a child of the npro process this test started.
    Deno.kill(run.pids[0]!, "SIGKILL");
    const rest = await readUntil(run.output, (s) => s.some((l) => /all 2 workers/.test(l)), 30_000);
    assert.equal(rest.filter((l) => l === "npro: stopped").length, 1);
    assert.equal((await run.child.status).code, 1);
    assert.match(await run.errors, /worker 0 \(pid \d+\) exited unexpectedly \(signal SIGKILL\)/);
  });
});

Deno.test("npro serve --workers 2: workers drain and exit when their parent is killed (kill -9)", async () => {
  await withWorkers(async (run) => {
    assert.equal(run.pids.length, 2);
    // SIGKILL: the parent forwards nothing; its workers see their standard input end.
    run.child.kill("SIGKILL");
    assert.equal((await run.child.status).signal, "SIGKILL");
    const deadline = performance.now() + 30_000;
    const alive = (pid: number) => {
      try {
        Deno.kill(pid, "SIGCONT"); // a no-op signal to a live process, ESRCH once it is gone
        return true;
      } catch {
        return false;
      }
    };
    while (run.pids.some(alive)) {
      assert.ok(performance.now() < deadline, "a worker outlived its parent by 30 s");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // Both drained (the pipes they inherited from the parent carry their last lines).
    const rest = await readUntil(
      run.output,
      (seen) => seen.filter((l) => l === "npro: stopped").length === 2,
      10_000,
    );
    assert.equal(rest.filter((l) => l === "npro: stopped").length, 2);
    assert.match(await run.errors, /the parent process is gone: draining/);
  });
});

Deno.test("npro serve --workers: refused for port 0, without a key file, without --allow-run, and for other transports", async () => {
  const run = (args: string[], env: Record<string, string> = {}) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-env=NETWORK_PROTOCOL_*",
        CLI,
        "serve",
        ...args,
      ],
      env: { NO_COLOR: "1", ...env },
      stdout: "null",
      stderr: "piped",
    }).output();
  const noKey = await run(["--workers", "2", "--address", "127.0.0.1:9000"]);
  assert.equal(noKey.code, 1);
  assert.match(new TextDecoder().decode(noKey.stderr), /needs security.static_key_path/);
  const portZero = await run(["--workers", "2", "--address", "127.0.0.1:0"], {
    NETWORK_PROTOCOL_TRANSPORT_ENCRYPTION_ENABLED: "false",
  });
  assert.equal(portZero.code, 1);
  assert.match(new TextDecoder().decode(portZero.stderr), /needs a fixed port/);
  const noRun = await run(["--workers", "2", "--address", `127.0.0.1:${freePort()}`], {
    NETWORK_PROTOCOL_TRANSPORT_ENCRYPTION_ENABLED: "false",
  });
  assert.equal(noRun.code, 1);
  assert.match(new TextDecoder().decode(noRun.stderr), /--workers needs --allow-run=deno/);
  const unix = await run(["--workers", "2"], {
    NETWORK_PROTOCOL_TRANSPORT_KIND: "unix",
    NETWORK_PROTOCOL_SERVER_ADDRESS: "/tmp/npro-workers-test.sock",
    NETWORK_PROTOCOL_CLIENT_ADDRESS: "/tmp/npro-workers-test.sock",
  });
  assert.equal(unix.code, 1);
  assert.match(new TextDecoder().decode(unix.stderr), /needs the "tcp" transport/);
});
