import assert from "node:assert/strict";
import { type Client, connect } from "../src/service/client.ts";
import { serve, type Server } from "../src/service/daemon.ts";
import { encodePacket } from "../src/core/packet.ts";
import { encodeBatch } from "../src/core/batch.ts";
import { ErrorCodes, type Message } from "../src/core/message.ts";
import { generateKeyPair } from "../src/secure/keys.ts";
import { generateSelfSignedCert } from "../src/transport/certs.ts";
import { ProtocolError } from "../src/errors.ts";
import { type Connection, RemoteError } from "../src/service/connection.ts";
import type { CompressionPolicy } from "../src/compression/policy.ts";
import {
  add,
  PATIENT_HANDSHAKE_MS,
  plaintextPair,
  portOf,
  PROMPT_CLOSE_MS,
  readUntilClosed,
  SHORT_HANDSHAKE_MS,
  STALLED_CLOSE_MS,
  sumOf,
  testDispatcher,
  waitFor,
  writeAll,
} from "./_service_helpers.ts";

const LOOPBACK = "127.0.0.1:0";

Deno.test("request/reply in every security mode over TCP", async (t) => {
  const serverKey = generateKeyPair();
  const clientKey = generateKeyPair();
  const psk = crypto.getRandomValues(new Uint8Array(32));
  const modes: {
    name: string;
    server: Parameters<typeof serve>[0];
    client: (port: number) => Parameters<typeof connect>[0];
    pattern: string;
  }[] = [
    {
      name: "NK (pinned server key)",
      server: { address: LOOPBACK, security: { staticKey: serverKey } },
      client: (port) => ({
        address: `127.0.0.1:${port}`,
        security: { serverKeys: [serverKey.publicKey] },
      }),
      pattern: "NK",
    },
    {
      name: "XX (no pin)",
      server: { address: LOOPBACK, security: { staticKey: serverKey } },
      client: (port) => ({ address: `127.0.0.1:${port}` }),
      pattern: "XX",
    },
    {
      name: "XX mutual (allow-list)",
      server: {
        address: LOOPBACK,
        security: { staticKey: serverKey, clientKeys: [clientKey.publicKey] },
      },
      client: (port) => ({
        address: `127.0.0.1:${port}`,
        security: {
          staticKey: clientKey,
          serverKeys: [serverKey.publicKey, generateKeyPair().publicKey],
        },
      }),
      pattern: "XX",
    },
    {
      name: "XXpsk3",
      server: { address: LOOPBACK, security: { staticKey: serverKey, psk } },
      client: (port) => ({ address: `127.0.0.1:${port}`, security: { psk, pattern: "XXpsk3" } }),
      pattern: "XXpsk3",
    },
    {
      name: "NN (explicitly allowed)",
      server: { address: LOOPBACK, security: { accept: ["NN"] } },
      client: (port) => ({ address: `127.0.0.1:${port}`, security: { pattern: "NN" } }),
      pattern: "NN",
    },
    {
      name: "plaintext (both sides disabled encryption)",
      server: { address: LOOPBACK, config: { transport: { encryptionEnabled: false } } },
      client: (port) => ({
        address: `127.0.0.1:${port}`,
        config: { transport: { encryptionEnabled: false } },
      }),
      pattern: "plaintext",
    },
  ];
  for (const mode of modes) {
    await t.step(mode.name, async () => {
      await using server = await serve(mode.server, testDispatcher());
      await using client = await connect(mode.client(portOf(server.addr)));
      assert.equal(client.connection?.session.pattern, mode.pattern);
      assert.equal(sumOf(await client.request(add(40, 2))), 42);
      assert.deepEqual(await client.request({ type: "echo", text: "héllo" }), {
        type: "echo",
        text: "héllo",
      });
      if (mode.pattern !== "plaintext" && mode.pattern !== "NN" && mode.pattern !== "XXpsk3") {
        assert.deepEqual(client.remoteStaticKey, serverKey.publicKey);
      }
    });
  }
});

Deno.test("a client pinned to another key is refused and nothing is served", async () => {
  const serverKey = generateKeyPair();
  await using server = await serve(
    { address: LOOPBACK, security: { staticKey: serverKey } },
    testDispatcher(),
  );
  await assert.rejects(
    connect({
      address: `127.0.0.1:${portOf(server.addr)}`,
      security: { serverKeys: [generateKeyPair().publicKey] },
      autoReconnect: false,
    }),
    (e) => e instanceof ProtocolError && e.code === "HandshakeFailed",
  );
  await waitFor(() => server.handshaking === 0 && server.connections.size === 0);
});

Deno.test("request/reply over a Unix socket", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/npro.sock`;
    const key = generateKeyPair();
    await using _server = await serve(
      { address: path, config: { transport: { kind: "unix" } }, security: { staticKey: key } },
      testDispatcher(),
    );
    const mode = (await Deno.stat(path)).mode! & 0o777;
    assert.equal(mode, 0o600);
    await using client = await connect({
      address: path,
      config: { transport: { kind: "unix" } },
      security: { serverKeys: [key.publicKey] },
    });
    assert.equal(sumOf(await client.request(add(1, 2))), 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("request/reply over TLS, with and without the inner Noise layer", async (t) => {
  const { certPem, keyPem } = await generateSelfSignedCert({
    commonName: "localhost",
    altNames: ["localhost", "127.0.0.1"],
    days: 1,
  });
  for (const encryption of [true, false]) {
    await t.step(encryption ? "TLS + Noise" : "TLS only", async () => {
      const key = generateKeyPair();
      await using server = await serve({
        address: LOOPBACK,
        config: { transport: { kind: "tls", encryptionEnabled: encryption } },
        tls: { cert: certPem, key: keyPem },
        security: encryption ? { staticKey: key } : {},
      }, testDispatcher());
      await using client = await connect({
        address: `localhost:${portOf(server.addr)}`,
        config: { transport: { kind: "tls", encryptionEnabled: encryption } },
        tls: { caCerts: [certPem] },
        security: encryption ? { serverKeys: [key.publicKey] } : {},
      });
      assert.equal(sumOf(await client.request(add(20, 22))), 42);
    });
  }
});

async function rawClient(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  return conn;
}

/**
 * A secure server with the given handshake timeout, and a client (without reconnection) that
 * completed its handshake; `goodSide` is the server's end of that client's connection.
 */
async function serverWithGoodClient(
  connectionTimeout: number,
): Promise<{ server: Server; good: Client; goodSide: Connection; port: number } & AsyncDisposable> {
  const key = generateKeyPair();
  const server = await serve({
    address: LOOPBACK,
    security: { staticKey: key },
    config: { server: { connectionTimeout } },
  }, testDispatcher());
  const port = portOf(server.addr);
  try {
    const good = await connect({
      address: `127.0.0.1:${port}`,
      security: { serverKeys: [key.publicKey] },
      autoReconnect: false,
    });
    await waitFor(() => server.connections.size === 1);
    return {
      server,
      good,
      goodSide: [...server.connections][0]!,
      port,
      async [Symbol.asyncDispose]() {
        await good[Symbol.asyncDispose]();
        await server[Symbol.asyncDispose]();
      },
    };
  } catch (error) {
    await server.shutdown();
    throw error;
  }
}

Deno.test("bad input closes only its own connection while others are served", async (t) => {
  // Input rejected as soon as it is read goes to a server whose handshake timeout cannot fire
  // before PROMPT_CLOSE_MS; input that stalls the handshake goes to one with a short timeout.
  await using patient = await serverWithGoodClient(PATIENT_HANDSHAKE_MS);
  await using strict = await serverWithGoodClient(SHORT_HANDSHAKE_MS);
  const attacks: [string, Uint8Array, typeof patient, number][] = [
    [
      "garbage bytes",
      new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      patient,
      PROMPT_CLOSE_MS,
    ],
    [
      "a header announcing 4 GiB",
      new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 2, 0xff, 0xff, 0xff, 0xff]),
      patient,
      PROMPT_CLOSE_MS,
    ],
    [
      "a plaintext batch where a hello is due",
      encodePacket({ version: 2, payload: encodeBatch([{ type: "ping" }]) }),
      patient,
      PROMPT_CLOSE_MS,
    ],
    [
      "a truncated frame (closed by the handshake timeout)",
      encodePacket({ version: 2, payload: new Uint8Array(100) }).subarray(0, 50),
      strict,
      STALLED_CLOSE_MS,
    ],
  ];
  let n = 0;
  for (const [name, bytes, target, withinMs] of attacks) {
    await t.step(name, async () => {
      const conn = await rawClient(target.port);
      await writeAll(conn, bytes);
      // Fails unless the SERVER closes it within `withinMs`.
      await readUntilClosed(conn, withinMs);
      conn.close();
      n++;
      assert.equal(sumOf(await target.good.request(add(n, 1))), n + 1);
    });
  }
  await t.step("slowloris: one byte every 50 ms, closed by the handshake timeout", async () => {
    const conn = await rawClient(strict.port);
    const hello = encodePacket({ version: 2, payload: new Uint8Array(40) });
    // Trickling the whole hello would take longer than STALLED_CLOSE_MS: the server must close
    // the connection while bytes are still arriving (a timer reset by each byte would not).
    assert.ok((hello.length - 1) * 50 > STALLED_CLOSE_MS);
    let ended = false;
    const closed = readUntilClosed(conn, STALLED_CLOSE_MS);
    // Handles the rejection until `await closed` below reports it.
    closed.then(() => ended = true, () => ended = true);
    let sent = 0;
    for (; sent < hello.length - 1 && !ended; sent++) {
      try {
        await conn.write(hello.subarray(sent, sent + 1));
      } catch {
        break; // Closed by the server.
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await closed;
    conn.close();
    assert.ok(sent < hello.length - 1, "the server waited for the whole hello");
    assert.equal(sumOf(await strict.good.request(add(2, 2))), 4);
  });
  // The good clients were never reconnected: their server-side connections are the ones from
  // before the attacks, still open, and the only ones.
  for (const { server, goodSide } of [patient, strict]) {
    await waitFor(() => server.handshaking === 0);
    assert.deepEqual([...server.connections], [goodSide]);
    assert.equal(goodSide.isClosed, false);
  }
});

Deno.test("connections beyond max_connections are refused; existing ones keep working", async () => {
  await using server = await serve({
    address: LOOPBACK,
    config: { transport: { encryptionEnabled: false }, server: { maxConnections: 3 } },
  }, testDispatcher());
  const address = `127.0.0.1:${portOf(server.addr)}`;
  const config = { transport: { encryptionEnabled: false } };
  const clients = [];
  for (let i = 0; i < 3; i++) clients.push(await connect({ address, config }));
  await waitFor(() => server.connections.size === 3);
  await assert.rejects(
    connect({ address, config, autoReconnect: false }),
    (e) => e instanceof ProtocolError,
  );
  for (const client of clients) assert.equal(sumOf(await client.request(add(3, 4))), 7);
  for (const client of clients) await client.close();
});

Deno.test("10,000 pipelined requests in one write never deadlock at backpressure 4", async () => {
  await using server = await serve({
    address: LOOPBACK,
    config: { transport: { encryptionEnabled: false }, server: { backpressureLimit: 4 } },
  }, testDispatcher());
  const conn = await rawClient(portOf(server.addr));
  try {
    // Plaintext hello (the client side of the handshake), then 10,000 requests in one write.
    const { ClientHandshake } = await import("../src/secure/handshake.ts");
    const driver = new ClientHandshake({ encryption: false });
    const hello = driver.start();
    const requests: Message[] = [];
    for (let i = 1; i <= 10_000; i++) {
      requests.push({
        type: "request",
        id: i,
        message: i % 2 === 0
          ? add(i, 1)
          : { type: "custom", command: "SLOW", payload: new Uint8Array([1]) },
      });
    }
    const packets = [
      ...hello.map((payload) => encodePacket({ version: 2, payload })),
      encodePacket({ version: 2, payload: encodeBatch(requests) }),
    ];
    const all = new Uint8Array(packets.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of packets) {
      all.set(p, offset);
      offset += p.length;
    }
    await writeAll(conn, all);
    // Read every answer.
    const { PacketDecoder } = await import("../src/core/codec.ts");
    const { decodeBatch } = await import("../src/core/batch.ts");
    const decoder = new PacketDecoder();
    const seen = new Set<number>();
    const buffer = new Uint8Array(65536);
    let first = true;
    const deadline = setTimeout(() => conn.close(), 20_000);
    try {
      while (seen.size < 10_000) {
        const n = await conn.read(buffer);
        if (n === null) break;
        for (const packet of decoder.push(buffer.slice(0, n))) {
          if (first) {
            driver.receive(packet.payload); // The server's plaintext reply.
            first = false;
            continue;
          }
          for (const m of decodeBatch(packet.payload)) {
            assert.equal(m.type, "response");
            const id = (m as { id: number }).id;
            assert.ok(!seen.has(id), `duplicate answer ${id}`);
            seen.add(id);
          }
        }
      }
    } finally {
      clearTimeout(deadline);
    }
    assert.equal(seen.size, 10_000);
  } finally {
    conn.close();
  }
});

Deno.test("a client that never reads leaves server memory bounded; others are unaffected", async () => {
  await using server = await serve({
    address: LOOPBACK,
    config: { transport: { encryptionEnabled: false } },
  }, testDispatcher());
  const address = `127.0.0.1:${portOf(server.addr)}`;
  const config = { transport: { encryptionEnabled: false } };
  await using reader = await connect({ address, config });
  await waitFor(() => server.connections.size === 1);
  // A raw socket floods ECHO requests of 60 KB and never reads the answers.
  const raw = await rawClient(portOf(server.addr));
  try {
    const { ClientHandshake } = await import("../src/secure/handshake.ts");
    const driver = new ClientHandshake({ encryption: false });
    for (const payload of driver.start()) await raw.write(encodePacket({ version: 2, payload }));
    await waitFor(() => server.connections.size === 2);
    const rawServerSide = [...server.connections].find((c) =>
      portOf(c.remoteAddr) === portOf(raw.localAddr)
    );
    assert.ok(rawServerSide !== undefined);
    let closedWith: unknown = "open";
    void rawServerSide.closed().then((e) => (closedWith = e));
    const text = "x".repeat(60_000);
    const batch = encodePacket({
      version: 2,
      payload: encodeBatch(
        Array.from({ length: 16 }, (_, i): Message => ({
          type: "request",
          id: i + 1,
          message: { type: "echo", text },
        })),
      ),
    });
    let written = 0;
    const writer = (async () => {
      try {
        for (let i = 0; i < 400; i++) {
          await writeAll(raw, batch);
          written += batch.length;
        }
      } catch {
        // The server may close us; either way it must not buffer without bound.
      }
    })();
    // Meanwhile the well-behaved client is served.
    for (let i = 0; i < 20; i++) {
      assert.equal(sumOf(await reader.request(add(i, i))), 2 * i);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(closedWith, "open", `the server closed the connection: ${closedWith}`);
    // Bounded: at most the outbound limit plus one batch of replies (8 MiB default + 1 MiB).
    assert.ok(
      rawServerSide.outboundBytes <= 8 * 1024 * 1024 + 2 * 1024 * 1024,
      `outbound ${rawServerSide.outboundBytes}`,
    );
    // The raw client could not push everything: TCP pushed back once the server stopped reading.
    assert.ok(written < 400 * batch.length, `the server read everything (${written} bytes)`);
    raw.close();
    await writer;
  } finally {
    try {
      raw.close();
    } catch {
      // closed
    }
  }
});

Deno.test("replies to un-numbered messages keep their order with async handlers", async () => {
  await using pair = await plaintextPair(testDispatcher());
  const { client } = pair;
  const sent: Message[] = [];
  for (let i = 0; i < 50; i++) {
    const message: Message = i % 3 === 0
      ? { type: "custom", command: "SLOW", payload: new Uint8Array([50 - i]) }
      : { type: "echo", text: `m${i}` };
    sent.push(message);
    client.send(message);
  }
  for (const expected of sent) assert.deepEqual(await client.receive(), expected);
});

Deno.test("receiveBatch hands over queued replies in order; a cancelled receive loses none", async () => {
  await using pair = await plaintextPair(testDispatcher());
  const { client } = pair;
  // A receive that is cancelled before anything arrives must not swallow the next message.
  const controller = new AbortController();
  const cancelled = client.receive(controller.signal);
  controller.abort();
  await assert.rejects(cancelled, (e) => e instanceof ProtocolError && e.code === "Cancelled");

  const sent: Message[] = [];
  for (let i = 0; i < 3000; i++) {
    const message: Message = { type: "echo", text: `m${i}` };
    sent.push(message);
    client.send(message);
  }
  const received: Message[] = [];
  let batches = 0;
  while (received.length < sent.length) {
    const batch = await client.receiveBatch();
    assert.ok(batch !== null && batch.length > 0 && batch.length <= 1024);
    received.push(...batch);
    batches++;
  }
  assert.deepEqual(received, sent);
  assert.ok(batches < sent.length / 4, `${batches} batches for ${sent.length} messages`);

  // Mixed with receive(): order is kept across both forms.
  for (let i = 0; i < 10; i++) client.send({ type: "echo", text: `n${i}` });
  const first = await client.receive();
  assert.deepEqual(first, { type: "echo", text: "n0" });
  const rest: Message[] = [];
  while (rest.length < 9) rest.push(...(await client.receiveBatch())!);
  assert.deepEqual(rest.map((m) => m.type === "echo" ? m.text : ""), [
    "n1",
    "n2",
    "n3",
    "n4",
    "n5",
    "n6",
    "n7",
    "n8",
    "n9",
  ]);
  const connection = client.connection!;
  await client.close();
  assert.equal(await connection.receiveBatch(), null);
});

Deno.test("a handler that reads its signal late still sees a cancel", async () => {
  const dispatcher = testDispatcher();
  const seen: boolean[] = [];
  let started: (signal: AbortSignal) => void = () => {};
  let gate = Promise.resolve();
  dispatcher.register("LATE", async (_message, ctx) => {
    started(ctx.signal);
    await gate; // Waits without watching its signal.
    seen.push(ctx.signal.aborted);
    return { type: "pong" };
  });
  await using server = await serve({
    address: LOOPBACK,
    config: { transport: { encryptionEnabled: false } },
  }, dispatcher);
  await using client = await connect({
    address: `127.0.0.1:${portOf(server.addr)}`,
    config: { transport: { encryptionEnabled: false } },
  });
  const controller = new AbortController();
  let open = (): void => {};
  gate = new Promise((resolve) => open = resolve);
  const running = new Promise<AbortSignal>((resolve) => started = resolve);
  const pending = client.request(
    { type: "custom", command: "LATE", payload: new Uint8Array() },
    { signal: controller.signal },
  );
  const handlerSignal = await running; // The handler has started and is waiting.
  controller.abort();
  await assert.rejects(pending, (e) => e instanceof ProtocolError && e.code === "Cancelled");
  await waitFor(() => handlerSignal.aborted, 5000, "the cancel to reach the handler's signal");
  open();
  await waitFor(() => seen.length === 1, 5000, "the handler to finish");
  assert.deepEqual(seen, [true]);
  // A request left alone is not aborted.
  assert.deepEqual(
    await client.request({ type: "custom", command: "LATE", payload: new Uint8Array() }),
    { type: "pong" },
  );
  assert.deepEqual(seen, [true, false]);
});

Deno.test("numbered requests complete in any order and cancel aborts the handler", async () => {
  const dispatcher = testDispatcher();
  // Ends only when its signal aborts: the request leaves `inflight` only through the cancel.
  dispatcher.register("HANG", (_message, ctx) =>
    new Promise((_, reject) => {
      ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
    }));
  await using pair = await plaintextPair(dispatcher);
  const { server, client } = pair;
  const order: string[] = [];
  const slow = client.request({ type: "custom", command: "SLOW", payload: new Uint8Array([100]) })
    .then(() => order.push("slow"));
  const fast = client.request(add(1, 1)).then(() => order.push("fast"));
  await Promise.all([slow, fast]);
  assert.deepEqual(order, ["fast", "slow"]);

  const controller = new AbortController();
  const pending = client.request(
    { type: "custom", command: "HANG", payload: new Uint8Array() },
    { signal: controller.signal },
  );
  const serverSide = [...server.connections][0]!;
  await waitFor(() => serverSide.inflight === 1, 5000, "the request to reach the handler");
  controller.abort();
  await assert.rejects(pending, (e) => e instanceof ProtocolError && e.code === "Cancelled");
  await waitFor(() => serverSide.inflight === 0, 5000, "the handler to be aborted");

  await assert.rejects(
    client.request({ type: "custom", command: "NOPE", payload: new Uint8Array() }),
    (e) => e instanceof RemoteError && e.remoteCode === ErrorCodes.UnknownOpcode,
  );
  await assert.rejects(
    client.request({ type: "custom", command: "SLOW", payload: new Uint8Array([200]) }, {
      timeoutMs: 30,
    }),
    (e) => e instanceof ProtocolError && e.code === "Timeout",
  );
});

Deno.test("graceful shutdown under load answers every request received before it", async () => {
  const key = generateKeyPair();
  const server = await serve({ address: LOOPBACK, security: { staticKey: key } }, testDispatcher());
  await using client = await connect({
    address: `127.0.0.1:${portOf(server.addr)}`,
    security: { serverKeys: [key.publicKey] },
    autoReconnect: false,
  });
  const results: Promise<Message>[] = [];
  for (let i = 0; i < 200; i++) {
    results.push(client.request(
      i % 2 === 0 ? add(i, 1) : { type: "custom", command: "SLOW", payload: new Uint8Array([30]) },
    ));
  }
  await client.connection!.flush();
  await waitFor(() => ([...server.connections][0]?.inflight ?? 0) > 0, 2000, "requests in flight");
  await server.shutdown(5000);
  const settled = await Promise.allSettled(results);
  assert.deepEqual(settled.filter((r) => r.status === "rejected"), []);
  assert.equal(await client.closed(), undefined);
});

Deno.test("a server restart makes clients reconnect; what was in flight is reported", async () => {
  const key = generateKeyPair();
  let server = await serve({ address: LOOPBACK, security: { staticKey: key } }, testDispatcher());
  const port = portOf(server.addr);
  const client = await connect({
    address: `127.0.0.1:${port}`,
    security: { serverKeys: [key.publicKey] },
    config: { client: { reconnectDelay: 20, maxReconnectAttempts: 20 } },
  });
  const statuses: string[] = [];
  const watching = (async () => {
    for await (const status of client.status()) statuses.push(status.type);
  })();
  assert.equal(sumOf(await client.request(add(1, 1))), 2);
  const inFlight = client.request({
    type: "custom",
    command: "SLOW",
    payload: new Uint8Array([200]),
  });
  const serverSide = [...server.connections][0]!;
  await waitFor(() => serverSide.inflight === 1, 5000, "the request to reach the handler");
  for (const connection of server.connections) connection.abort();
  await assert.rejects(
    inFlight,
    (e) => e instanceof ProtocolError && e.code === "ConnectionClosed",
  );
  await server.shutdown(100);
  server = await serve(
    { address: `127.0.0.1:${port}`, security: { staticKey: key } },
    testDispatcher(),
  );
  assert.equal(sumOf(await client.request(add(2, 3), { timeoutMs: 5000 })), 5);
  await client.close();
  await watching;
  await server.shutdown();
  assert.ok(statuses.includes("disconnected"), statuses.join());
  assert.ok(statuses.includes("reconnecting"), statuses.join());
  assert.equal(statuses.filter((s) => s === "connected").length >= 1, true);
  assert.equal(statuses.at(-1), "closed");
});

Deno.test("idle and heartbeat timeouts fire", async (t) => {
  await t.step("idle timeout closes a silent connection", async () => {
    await using server = await serve({
      address: LOOPBACK,
      config: { transport: { encryptionEnabled: false }, server: { idleTimeout: 150 } },
    }, testDispatcher());
    await using client = await connect({
      address: `127.0.0.1:${portOf(server.addr)}`,
      config: { transport: { encryptionEnabled: false } },
      autoReconnect: false,
    });
    const error = await client.closed();
    assert.equal(error, undefined);
  });
  await t.step("a peer that stops answering heartbeats is declared dead", async () => {
    await using server = await serve({
      address: LOOPBACK,
      config: {
        transport: { encryptionEnabled: false },
        server: { heartbeatInterval: 100, idleTimeout: 0 },
      },
    }, testDispatcher());
    // A raw client completes the plaintext hello and then never answers anything.
    const raw = await rawClient(portOf(server.addr));
    const { ClientHandshake } = await import("../src/secure/handshake.ts");
    for (const payload of new ClientHandshake({ encryption: false }).start()) {
      await raw.write(encodePacket({ version: 2, payload }));
    }
    await waitFor(() => server.connections.size === 1);
    const connection = [...server.connections][0]!;
    const started = performance.now();
    const error = await connection.closed();
    assert.ok(error instanceof ProtocolError && error.code === "Timeout", String(error));
    assert.ok(performance.now() - started >= 250);
    raw.close();
  });
  await t.step("heartbeats keep a live idle connection open and measure RTT", async () => {
    await using server = await serve({
      address: LOOPBACK,
      config: { transport: { encryptionEnabled: false }, server: { heartbeatInterval: 100 } },
    }, testDispatcher());
    await using client = await connect({
      address: `127.0.0.1:${portOf(server.addr)}`,
      config: { transport: { encryptionEnabled: false } },
    });
    await new Promise((r) => setTimeout(r, 400)); // Four heartbeat intervals without traffic.
    const connection = [...server.connections][0]!;
    assert.ok(!connection.isClosed);
    await waitFor(() => connection.rtt !== undefined, 5000, "a heartbeat round trip");
    assert.ok(connection.rtt! >= 0);
    assert.ok((await client.connection!.ping()) >= 0);
  });
});

Deno.test("compression is negotiated end to end and used only when both sides enable it", async (t) => {
  const key = generateKeyPair();
  const text = JSON.stringify(
    Array.from({ length: 2000 }, (_, i) => ({ id: i, name: `user-${i}`, active: i % 2 === 0 })),
  );
  for (
    const [name, serverOn, clientOn, algorithm, features] of [
      ["both enabled (lz4)", true, true, "lz4", 0x3],
      ["both enabled (zstd)", true, true, "zstd", 0x3],
      ["server only", true, false, "lz4", 0],
      ["client only", false, true, "lz4", 0],
    ] as const
  ) {
    await t.step(name, async () => {
      await using server = await serve({
        address: LOOPBACK,
        security: { staticKey: key },
        config: { compression: { enabled: serverOn, algorithm } },
      }, testDispatcher());
      await using client = await connect({
        address: `127.0.0.1:${portOf(server.addr)}`,
        security: { serverKeys: [key.publicKey] },
        config: { compression: { enabled: clientOn, algorithm } },
      });
      // The compression bits (0x4, multiplexing, is always negotiated between two libraries).
      assert.equal(client.connection!.session.features, features | 0x4);
      assert.deepEqual(await client.request({ type: "echo", text }), { type: "echo", text });
      const sent = client.connection!.compressor as CompressionPolicy | undefined;
      const replied = [...server.connections][0]!.compressor as CompressionPolicy | undefined;
      if (features === 0) {
        assert.equal(sent, undefined);
        assert.equal(replied, undefined);
      } else {
        assert.equal(sent!.algorithm, algorithm);
        // The text (about 100 KB) travels in two fragments, each compressed as an entry.
        assert.equal(sent!.stats.compressed, 2);
        assert.equal(replied!.stats.compressed, 2);
        assert.ok(replied!.stats.bytesOut < replied!.stats.bytesIn / 2);
      }
    });
  }
});
