/**
 * The daemon behind an L4 proxy (issue 16, item 4): `server.proxy_protocol` with
 * `server.trusted_proxies`. A relay written here plays the proxy for the exact cases (a chosen
 * client address, a missing or late header, an untrusted peer); real HAProxy 2.6 with
 * `send-proxy-v2` checks the same against the reference implementation.
 */

import assert from "node:assert/strict";
import { ConfigError } from "../src/config/error.ts";
import { loadConfig } from "../src/config/load.ts";
import { createConfig } from "../src/config/parse.ts";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { Dispatcher } from "../src/protocol/dispatcher.ts";
import { generateKeyPair } from "../src/secure/keys.ts";
import { PROXY_V2_SIGNATURE } from "../src/transport/proxy_protocol.ts";
import { freePort, haproxyPath } from "./_deploy_helpers.ts";

const encoder = new TextEncoder();

/** A dispatcher whose WHO command answers with the address the server sees for the client. */
function whoDispatcher(): Dispatcher {
  return new Dispatcher().register("WHO", (_message, ctx) => {
    const addr = ctx.remoteAddr as Deno.NetAddr | undefined;
    return {
      type: "custom",
      command: "WHO",
      payload: encoder.encode(addr === undefined ? "?" : `${addr.hostname}:${addr.port}`),
    };
  });
}

async function who(client: { request(m: never): Promise<unknown> }): Promise<string> {
  const reply = await client.request(
    { type: "custom", command: "WHO", payload: new Uint8Array() } as never,
  ) as { payload: Uint8Array };
  return new TextDecoder().decode(reply.payload);
}

function v2Header(src: [number, number, number, number], sport: number): Uint8Array {
  return Uint8Array.of(
    ...PROXY_V2_SIGNATURE,
    0x21,
    0x11,
    0,
    12,
    ...src,
    127,
    0,
    0,
    1,
    sport >> 8,
    sport & 0xff,
    0x23,
    0x28,
  );
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

/**
 * A one-connection-at-a-time relay on 127.0.0.1: for each client it connects to `target`, writes
 * `header` (if any), then copies both ways until either side ends.
 */
function relay(target: number, header: Uint8Array | undefined) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const pumps: Promise<void>[] = [];
  const conns: Deno.Conn[] = [];
  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
        await writeAll(to, buffer.subarray(0, n));
      }
    } catch {
      // Either side went away.
    }
    for (const conn of [from, to]) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  };
  const accepting = (async () => {
    for await (const client of listener) {
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port: target });
      conns.push(client, upstream);
      if (header !== undefined) await writeAll(upstream, header);
      pumps.push(pump(client, upstream), pump(upstream, client));
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting.catch(() => {});
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await Promise.all(pumps);
    },
  };
}

const proxyConfig = (trusted: string[], connectionTimeout = 2000) => ({
  server: { proxyProtocol: true, trustedProxies: trusted, connectionTimeout },
});

Deno.test("proxy protocol: configuration needs trusted proxies, valid ranges and the TCP transport", async () => {
  const problems = (input: Parameters<typeof createConfig>[0]) => {
    try {
      createConfig(input);
      return "";
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.message;
    }
  };
  assert.match(problems({ server: { proxyProtocol: true } }), /trusted_proxies must list/);
  assert.match(
    problems({ server: { proxyProtocol: true, trustedProxies: ["10.0.0.0/33"] } }),
    /Cannot trust PROXY source "10.0.0.0\/33"/,
  );
  assert.match(
    problems({
      server: { proxyProtocol: true, trustedProxies: ["127.0.0.1"] },
      transport: { kind: "unix" },
    }),
    /works with the "tcp" transport only/,
  );
  assert.equal(
    problems({ server: { proxyProtocol: true, trustedProxies: ["::1", "10.0.0.0/8"] } }),
    "",
  );
  const fromEnv = await loadConfig({
    env: {
      NETWORK_PROTOCOL_SERVER_PROXY_PROTOCOL: "true",
      NETWORK_PROTOCOL_SERVER_TRUSTED_PROXIES: "127.0.0.1, 10.0.0.0/8",
    },
  });
  assert.equal(fromEnv.server.proxyProtocol, true);
  assert.deepEqual(fromEnv.server.trustedProxies, ["127.0.0.1", "10.0.0.0/8"]);
});

Deno.test("proxy protocol: the handler sees the client the header names, not the proxy", async () => {
  const key = generateKeyPair();
  await using server = await serve(
    { address: "127.0.0.1:0", config: proxyConfig(["127.0.0.1"]), security: { staticKey: key } },
    whoDispatcher(),
  );
  const port = (server.addr as Deno.NetAddr).port;
  await using proxy = relay(port, v2Header([203, 0, 113, 5], 4444));
  await using client = await connect({
    address: `127.0.0.1:${proxy.port}`,
    security: { serverKeys: [key.publicKey] },
    autoReconnect: false,
  });
  assert.equal(await who(client), "203.0.113.5:4444");
});

Deno.test("proxy protocol: a peer outside the trusted ranges, a missing header and a late one are refused", async () => {
  const key = generateKeyPair();
  const security = { serverKeys: [key.publicKey] };
  // Not trusted: refused before a byte is read. Trusted, but the client's hello is no PROXY
  // header: refused too.
  for (const trusted of [["10.0.0.0/8"], ["127.0.0.1"]]) {
    await using server = await serve(
      { address: "127.0.0.1:0", config: proxyConfig(trusted), security: { staticKey: key } },
      whoDispatcher(),
    );
    await assert.rejects(
      connect({
        address: `127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
        security,
        autoReconnect: false,
      }),
    );
    assert.equal(server.connections.size, 0, `trusted ${trusted}`);
  }
  {
    // Trusted, silent: closed at server.connection_timeout.
    await using server = await serve(
      {
        address: "127.0.0.1:0",
        config: proxyConfig(["127.0.0.1"], 300),
        security: { staticKey: key },
      },
      whoDispatcher(),
    );
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: (server.addr as Deno.NetAddr).port,
    });
    const started = performance.now();
    try {
      assert.equal(await conn.read(new Uint8Array(16)), null);
    } catch {
      // A reset is a close too.
    } finally {
      conn.close();
    }
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 250 && elapsed < 3000, `closed after ${elapsed} ms`);
  }
});

Deno.test("proxy protocol: through real HAProxy with send-proxy-v2, the server sees the client's own address", async () => {
  const binary = await haproxyPath();
  const key = generateKeyPair();
  await using server = await serve(
    { address: "127.0.0.1:0", config: proxyConfig(["127.0.0.1"]), security: { staticKey: key } },
    whoDispatcher(),
  );
  const frontend = freePort();
  const dir = await Deno.makeTempDir();
  const config = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(
    config,
    [
      "global",
      "  maxconn 100",
      "  log stderr format raw local0 info",
      "defaults",
      "  log global",
      "  option tcplog",
      "  mode tcp",
      "  timeout connect 2s",
      "  timeout client 10s",
      "  timeout server 10s",
      "frontend fe",
      `  bind 127.0.0.1:${frontend}`,
      "  default_backend be",
      "backend be",
      `  server s1 127.0.0.1:${(server.addr as Deno.NetAddr).port} send-proxy-v2`,
      "",
    ].join("\n"),
  );
  const child = new Deno.Command(binary, {
    args: ["-f", config, "-db"],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Read HAProxy's messages as they come (an unread pipe could stall it), to show them on failure.
  const messages = new Response(child.stderr).text();
  try {
    // Wait until HAProxy serves (at most 5 s): a connection it accepts while it is still starting
    // may be closed without reaching the server, which is HAProxy's start-up, not the test.
    for (let i = 0;; i++) {
      try {
        await using probe = await connect({
          address: `127.0.0.1:${frontend}`,
          security: { serverKeys: [key.publicKey] },
          autoReconnect: false,
        });
        await who(probe);
        break;
      } catch (error) {
        if (i >= 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    for (let i = 0; i < 3; i++) {
      await using client = await connect({
        address: `127.0.0.1:${frontend}`,
        security: { serverKeys: [key.publicKey] },
        autoReconnect: false,
      });
      const local = client.connection!.localAddr as Deno.NetAddr;
      // HAProxy's PROXY v2 header names this client's own socket: its port, not HAProxy's.
      assert.equal(await who(client), `127.0.0.1:${local.port}`);
    }
  } catch (error) {
    child.kill("SIGTERM");
    throw new Error(`Through HAProxy: ${error}; HAProxy said: ${await messages}`, { cause: error });
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already stopped.
    }
    await child.status;
    await messages;
    await Deno.remove(dir, { recursive: true });
  }
});
