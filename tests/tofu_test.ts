/**
 * Trust on first use through the configuration: `security.known_servers_path` (and its
 * environment variable) wired through `connect()`.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../src/config/mod.ts";
import { isProtocolError, ProtocolError } from "../src/errors.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { ClientHandshake, ServerHandshake } from "../src/secure/handshake.ts";
import { type HandshakeIO, performHandshake } from "../src/secure/handshake_runner.ts";
import { encodeKey, fingerprint, generateKeyPair } from "../src/secure/keys.ts";
import { KnownServersFile } from "../src/secure/known_servers.ts";
import { connect } from "../src/service/client.ts";
import { serve, type Server } from "../src/service/daemon.ts";
import type { Packet } from "../src/core/packet.ts";

function addressOf(server: Server): string {
  return `127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
}

async function startServer(): Promise<Server> {
  return await serve(
    { address: "127.0.0.1:0", security: { staticKey: generateKeyPair() } },
    registerStandardHandlers(new Dispatcher()),
  );
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "npro-tofu-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A client config with trust on first use and short time limits. */
function tofuConfig(path: string) {
  return {
    security: { knownServersPath: path },
    client: { connectionTimeout: 3000 },
  };
}

Deno.test("TOFU: the first connect records the key (0600) under the address, later ones require it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/known_servers`;
    await using server = await startServer();
    const address = addressOf(server);
    {
      await using client = await connect({ config: tofuConfig(path), address });
      assert.equal(client.connection!.session.pinned, false);
      assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
    }
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const text = await Deno.readTextFile(path);
    assert.match(text, new RegExp(`^${address} ${encodeKey(server.publicKey!)}$`, "m"));
    assert.deepEqual(await new KnownServersFile(path).get(address), server.publicKey);
    {
      await using client = await connect({ config: tofuConfig(path), address });
      assert.equal(client.connection!.session.pinned, true);
      assert.equal(client.connection!.session.pattern, "XX");
    }
    // An explicit pin wins over the configured file, which is then neither read nor written.
    await Deno.remove(path);
    {
      await using client = await connect({
        config: tofuConfig(path),
        address,
        security: { serverKeys: [server.publicKey!] },
      });
      assert.equal(client.connection!.session.pinned, true);
      assert.equal(client.connection!.session.pattern, "NK");
    }
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  });
});

Deno.test("TOFU: a changed server key fails with a message that says so, names the file and both fingerprints", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/known_servers`;
    await using first = await startServer();
    await using second = await startServer();
    // The second server's address is known with the first server's key: its key "changed".
    await new KnownServersFile(path).set(addressOf(second), first.publicKey!);
    const before = await Deno.readTextFile(path);
    const error = await connect({ config: tofuConfig(path), address: addressOf(second) }).then(
      (client) => {
        void client.close();
        assert.fail("connected to a server whose key changed");
      },
      (e) => e,
    );
    assert.ok(isProtocolError(error, "HandshakeFailed"), String(error));
    assert.match(error.message, /CHANGED/);
    assert.ok(error.message.includes(`"${path}"`), error.message);
    assert.ok(error.message.includes(`"${addressOf(second)}"`), error.message);
    assert.ok(error.message.includes(fingerprint(first.publicKey!)), error.message);
    assert.ok(error.message.includes(fingerprint(second.publicKey!)), error.message);
    // The file keeps the recorded key, and the server never completed a handshake.
    assert.equal(await Deno.readTextFile(path), before);
    assert.equal(second.connections.size, 0);
  });
});

Deno.test("TOFU: a changed key is refused before the client's last handshake message", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/known_servers`;
    const recorded = generateKeyPair();
    await new KnownServersFile(path).set("db:9000", recorded.publicKey);
    const sent: { from: string }[] = [];
    const queues: Packet[][] = [[], []];
    const waiters: (((p: Packet | null) => void) | undefined)[] = [undefined, undefined];
    let closed = false;
    const end = (me: 0 | 1): HandshakeIO => ({
      readPacket: () => {
        const next = queues[me]!.shift();
        if (next) return Promise.resolve(next);
        if (closed) return Promise.resolve(null);
        return new Promise((resolve) => (waiters[me] = resolve));
      },
      writePackets: (payloads) => {
        for (const payload of payloads) {
          sent.push({ from: me === 0 ? "client" : "server" });
          const packet = { version: 2, payload };
          const waiter = waiters[1 - me];
          waiters[1 - me] = undefined;
          if (waiter) waiter(packet);
          else queues[1 - me]!.push(packet);
        }
        return Promise.resolve();
      },
    });
    const client = new ClientHandshake({
      knownServers: { store: new KnownServersFile(path), name: "db:9000" },
      handshakeTimeoutMs: 2000,
    });
    const server = new ServerHandshake({ staticKey: generateKeyPair(), handshakeTimeoutMs: 2000 });
    const serverRun = performHandshake(end(1), server).catch((e) => e);
    const error = await performHandshake(end(0), client).catch((e) => e);
    // The client gave up: the server's pending read sees the end of the stream.
    closed = true;
    for (const waiter of waiters) waiter?.(null);
    await serverRun;
    assert.ok(error instanceof ProtocolError && error.code === "HandshakeFailed", String(error));
    assert.match(error.message, /CHANGED/);
    assert.deepEqual(sent.map((m) => m.from), ["client", "server"]);
  });
});

Deno.test("TOFU: the environment variable NETWORK_PROTOCOL_SECURITY_KNOWN_SERVERS_PATH is honoured", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/from_env`;
    await using server = await startServer();
    const config = await loadConfig({
      env: { NETWORK_PROTOCOL_SECURITY_KNOWN_SERVERS_PATH: path },
    });
    {
      await using _client = await connect({ config, address: addressOf(server) });
    }
    assert.deepEqual(await new KnownServersFile(path).get(addressOf(server)), server.publicKey);
  });
});

Deno.test("TOFU: a missing directory fails the handshake instead of skipping the record", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/missing/known_servers`;
    await using server = await startServer();
    const error = await connect({ config: tofuConfig(path), address: addressOf(server) }).then(
      (client) => {
        void client.close();
        assert.fail("connected without recording the key");
      },
      (e) => e,
    );
    assert.ok(isProtocolError(error, "HandshakeFailed"), String(error));
    assert.match(error.message, /Cannot record the key of server/);
    assert.match(error.message, /directory does not exist/);
    assert.equal(server.connections.size, 0);
  });
});

Deno.test("TOFU: a pattern that sends no server key is a configuration error, found before dialling", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/known_servers`;
    const error = await connect({
      config: {
        security: { knownServersPath: path, pattern: "NN", allowUnauthenticated: true },
        client: { connectionTimeout: 1000 },
      },
      // Nothing listens here: the configuration must fail first.
      address: "127.0.0.1:9",
    }).then(() => assert.fail("connected"), (e) => e);
    assert.ok(isProtocolError(error, "ConfigError"), String(error));
    assert.match(error.message, /known_servers_path/);
    assert.match(error.message, /"NN"/);
  });
});
