/**
 * The health endpoint and the drain (issue 16, items 2 and 3): `/livez` and `/readyz` on their own
 * port, `Server.drain()` turning readiness off while the daemon still accepts, and `npro serve`
 * draining on SIGTERM with `/readyz` at 503 before its connections close.
 */

import assert from "node:assert/strict";
import { ConfigError } from "../src/config/error.ts";
import { loadConfig } from "../src/config/load.ts";
import { createConfig } from "../src/config/parse.ts";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { decodeKey } from "../src/secure/keys.ts";
import { lines } from "./_deploy_helpers.ts";

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

Deno.test("health: /livez and /readyz on their own port, 404 elsewhere, 405 for other methods", async () => {
  await using server = await serve(
    { address: "127.0.0.1:0", admin: { address: "127.0.0.1:0" } },
    new Dispatcher(),
  );
  const base = `http://127.0.0.1:${server.adminAddr!.port}`;
  assert.notEqual(server.adminAddr!.port, (server.addr as Deno.NetAddr).port);
  assert.deepEqual(await get(`${base}/livez`), { status: 200, body: "ok\n" });
  assert.deepEqual(await get(`${base}/readyz`), { status: 200, body: "ready\n" });
  assert.equal((await get(`${base}/metrics/x`)).status, 404);
  const post = await fetch(`${base}/readyz`, { method: "POST", body: "x" });
  await post.body?.cancel();
  assert.equal(post.status, 405);
});

Deno.test("health: a drain turns /readyz to 503 at once, keeps accepting for its delay, then stops and closes the endpoint", async () => {
  const dispatcher = registerStandardHandlers(new Dispatcher());
  const server = await serve(
    { address: "127.0.0.1:0", admin: { address: "127.0.0.1:0" } },
    dispatcher,
  );
  const base = `http://127.0.0.1:${server.adminAddr!.port}`;
  const address = `127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
  const security = { serverKeys: [server.publicKey!] };
  const before = await connect({ address, security, autoReconnect: false });
  const draining = server.drain({ readinessDelayMs: 400 });
  assert.equal(server.ready, false);
  assert.equal((await get(`${base}/readyz`)).status, 503);
  assert.equal((await get(`${base}/livez`)).status, 200);
  // Still accepting during the delay: a balancer that has not noticed yet loses nothing.
  const during = await connect({ address, security, autoReconnect: false });
  assert.deepEqual(await during.request({ type: "echo", text: "late" }), {
    type: "echo",
    text: "late",
  });
  assert.deepEqual(await before.request({ type: "ping" }), { type: "pong" });
  await draining;
  assert.equal(server.isClosed, true);
  await assert.rejects(fetch(`${base}/readyz`));
  await before.close();
  await during.close();
  await assert.rejects(server.drain({ readinessDelayMs: -1 }), RangeError);
});

Deno.test("health: admin.address is validated, read from the environment, and off by default", async () => {
  assert.equal(createConfig().admin.address, "");
  assert.throws(
    () => createConfig({ admin: { address: "localhost" } }),
    (e: unknown) => e instanceof ConfigError && /admin.address "localhost" must be/.test(e.message),
  );
  const config = await loadConfig({
    env: {
      NETWORK_PROTOCOL_ADMIN_ADDRESS: "[::1]:9100",
      NETWORK_PROTOCOL_SERVER_DRAIN_GRACE: "1500",
    },
  });
  assert.equal(config.admin.address, "[::1]:9100");
  assert.equal(config.server.drainGrace, 1500);
});

Deno.test("health: npro serve --admin drains on SIGTERM: /readyz is 503 before its connections close", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env=NETWORK_PROTOCOL_*",
      new URL("../src/cli/main.ts", import.meta.url).pathname,
      "serve",
      "--address",
      "127.0.0.1:0",
      "--admin",
      "127.0.0.1:0",
    ],
    env: { NETWORK_PROTOCOL_SERVER_DRAIN_GRACE: "600", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const output = lines(child.stdout);
  try {
    let address = "";
    let health = "";
    let key = "";
    while (address === "" || health === "" || key === "") {
      const next = await output.next();
      if (next.done) throw new Error("npro serve ended before it was ready");
      const line = next.value;
      address ||= /listening on (\S+)/.exec(line)?.[1] ?? "";
      health ||= /health endpoint (\S+)/.exec(line)?.[1] ?? "";
      key ||= /server key ([A-Za-z0-9_-]{43})$/.exec(line)?.[1] ?? "";
    }
    assert.equal((await get(health)).status, 200);
    await using client = await connect({
      address,
      security: { serverKeys: [decodeKey(key)] },
      autoReconnect: false,
    });
    let closedAt = Infinity;
    const closed = client.closed().then(() => (closedAt = performance.now()));
    child.kill("SIGTERM");
    let notReadyAt = Infinity;
    for (let i = 0; i < 100 && notReadyAt === Infinity; i++) {
      try {
        if ((await get(health)).status === 503) notReadyAt = performance.now();
      } catch {
        break; // The endpoint is gone: the drain is over.
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // During the grace the connection still works.
    assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
    await closed;
    assert.ok(notReadyAt < closedAt, `503 at ${notReadyAt}, closed at ${closedAt}`);
    assert.equal((await child.status).code, 0);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already ended.
    }
    await output.return(undefined);
    await child.status;
  }
});
