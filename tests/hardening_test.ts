/**
 * What hostile peers broke (issue 10, research/hostile-peer-findings.md), each as a test that
 * failed before its fix: pre-authentication memory, handshake admission, log volume, held
 * replies, KEY_UPDATE and empty-record storms, heartbeats and the idle timeout, typed endings.
 */
import assert from "node:assert/strict";
import { defaultConfig, type NetworkConfigInput } from "../src/config/mod.ts";
import { encodeBatch } from "../src/core/batch.ts";
import { ErrorCodes, type Message } from "../src/core/message.ts";
import { PacketDecoder } from "../src/core/codec.ts";
import { encodePackets, HEADER_SIZE } from "../src/core/packet.ts";
import { setupLogging } from "../src/log_setup.ts";
import { LogBudget } from "../src/log_budget.ts";
import { ApplicationError } from "../src/protocol/application_error.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { CloseCode } from "../src/secure/channel.ts";
import { MAX_HANDSHAKE_PAYLOAD } from "../src/secure/handshake.ts";
import { generateKeyPair } from "../src/secure/keys.ts";
import { addressKey, HandshakeAdmission } from "../src/service/admission.ts";
import { connect } from "../src/service/client.ts";
import { PeerClosedError, RemoteError } from "../src/service/connection.ts";
import { serve, type Server } from "../src/service/daemon.ts";
import { FrameReader, HANDSHAKE_READ_BUFFER } from "../src/service/frame_reader.ts";
import { portOf, readUntilClosed, waitFor } from "./_service_helpers.ts";
import { rawSecurePeer, readUntilServerCloses } from "./_hostile_peer.ts";

const LOOPBACK = "127.0.0.1:0";
const serverKey = generateKeyPair();

function serveWith(config: NetworkConfigInput, dispatcher?: Dispatcher): Promise<Server> {
  return serve(
    { address: LOOPBACK, config, security: { staticKey: serverKey } },
    dispatcher ?? registerStandardHandlers(new Dispatcher()),
  );
}

function custom(command: string, payload = new Uint8Array()): Message {
  return { type: "custom", command, payload };
}

// -- 1. No memory before authentication ----------------------------------------------------

Deno.test("a handshake packet announcing more than the handshake limit is refused at its header", async () => {
  // A long handshake time limit: the server must close because of the header, not the timer.
  await using server = await serveWith({ server: { connectionTimeout: 60_000 } });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(server.addr) });
  const header = new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 2, 0x01, 0x00, 0x00, 0x00]); // 16 MiB
  await conn.write(header);
  await conn.write(new Uint8Array(1000));
  const { how } = await readUntilClosed(conn, 10_000);
  assert.ok(how === "eof" || how === "reset");
  await waitFor(() => server.handshaking === 0, 5000, "the handshake slot to be released");
});

Deno.test("a stalled handshake packet holds only what was received, within the documented bound", () => {
  const decoder = new PacketDecoder({ maxPayloadSize: MAX_HANDSHAKE_PAYLOAD });
  const header = new Uint8Array(HEADER_SIZE);
  header.set([0x4e, 0x50, 0x52, 0x4f, 2]);
  new DataView(header.buffer).setUint32(5, MAX_HANDSHAKE_PAYLOAD);
  assert.deepEqual(decoder.push(header), []);
  assert.deepEqual(decoder.push(new Uint8Array(100)), []);
  assert.equal(decoder.bufferedBytes, HEADER_SIZE + 100);
  // One byte more than the handshake limit is refused at the header.
  const over = new PacketDecoder({ maxPayloadSize: MAX_HANDSHAKE_PAYLOAD });
  new DataView(header.buffer).setUint32(5, MAX_HANDSHAKE_PAYLOAD + 1);
  assert.throws(() => over.push(header), { code: "OversizedPacket" });
  assert.ok(HANDSHAKE_READ_BUFFER + MAX_HANDSHAKE_PAYLOAD < 80 * 1024);
});

Deno.test("a large packet right after the last handshake packet is parsed with the session limit", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  try {
    const big = new Uint8Array(200_000).fill(7);
    await client.write(encodePackets([
      { version: 2, payload: new Uint8Array([1, 2, 3]) },
      { version: 2, payload: big },
    ]));
    const reader = new FrameReader(server, { maxPayloadSize: MAX_HANDSHAKE_PAYLOAD });
    const first = await reader.readPacket();
    assert.deepEqual([...first!.payload], [1, 2, 3]);
    reader.startSession(1024 * 1024);
    const packets = [];
    while (packets.length === 0) packets.push(...(await reader.read())!);
    assert.equal(packets[0]!.payload.length, big.length);
  } finally {
    client.close();
    server.close();
    listener.close();
  }
});

// -- 2. Handshake admission ------------------------------------------------------------------

Deno.test("handshake admission: the address rate refuses, the server rate makes them wait", () => {
  const admission = new HandshakeAdmission({ rate: 5, ratePerAddress: 1 });
  const a: Deno.NetAddr = { transport: "tcp", hostname: "198.51.100.1", port: 1 };
  const b: Deno.NetAddr = { transport: "tcp", hostname: "198.51.100.2", port: 1 };
  let ok = 0;
  for (let i = 0; i < 20; i++) if (admission.admit(a, 0) === "ok") ok++;
  assert.equal(ok, 5, "the server bucket holds one second's worth");
  assert.equal(admission.admit(b, 0), "server rate");
  assert.ok(admission.waitMs(0) > 0 && admission.waitMs(0) <= 200);
  assert.equal(admission.take(200), true);
  // Address a used 5 of its 10-second burst (10); the rest of its 20 attempts hit the server rate.
  for (let t = 1000; t < 3000; t += 200) admission.admit(a, t);
  let refused = false;
  for (let i = 0; i < 20; i++) if (admission.admit(a, 3000) === "address rate") refused = true;
  assert.ok(refused);
});

Deno.test("handshake admission keys IPv6 by /64 and IPv4-mapped addresses as IPv4", () => {
  const v6 = (hostname: string): Deno.NetAddr => ({ transport: "tcp", hostname, port: 1 });
  assert.equal(addressKey(v6("2001:db8:1:2::5")), addressKey(v6("2001:db8:1:2:ffff::9")));
  assert.notEqual(addressKey(v6("2001:db8:1:2::5")), addressKey(v6("2001:db8:1:3::5")));
  assert.equal(addressKey(v6("::ffff:192.0.2.1")), "192.0.2.1");
  assert.equal(addressKey(v6("192.0.2.1")), "192.0.2.1");
  assert.equal(addressKey({ transport: "unix", path: "/tmp/x" }), undefined);
});

Deno.test("past the per-address handshake rate a connection is closed before it is read", async () => {
  await using server = await serveWith({
    server: { handshakeRatePerAddress: 1, connectionTimeout: 60_000 }, // a burst of 10
  });
  const port = portOf(server.addr);
  const held: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 10; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    await waitFor(() => server.handshaking === 10, 5000, "10 handshakes to start");
    using refused = await Deno.connect({ hostname: "127.0.0.1", port });
    const { bytes } = await readUntilClosed(refused, 5000);
    assert.equal(bytes, 0);
    assert.equal(server.handshaking, 10);
  } finally {
    for (const conn of held) conn.close();
  }
});

Deno.test("past the server-wide handshake rate clients wait for their turn and all succeed", async () => {
  await using server = await serveWith({ server: { handshakeRate: 4 } });
  const started = performance.now();
  const clients = await Promise.all(
    Array.from({ length: 10 }, () =>
      connect({
        address: `127.0.0.1:${portOf(server.addr)}`,
        security: { serverKeys: [serverKey.publicKey] },
      })),
  );
  const elapsed = performance.now() - started;
  try {
    for (const client of clients) await client.request({ type: "ping" });
    // 4 at once, then 4 per second: the last 6 cannot be admitted before 1.5 s have passed.
    assert.ok(elapsed >= 1400, `10 handshakes at 4 per second took ${elapsed.toFixed(0)} ms`);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});

// -- 3. Peer-caused log volume and protocol violations ------------------------------------

Deno.test("log budget: a few lines per kind and interval, then one summary", () => {
  const reports: [string, number][] = [];
  const budget = new LogBudget({
    linesPerInterval: 3,
    intervalMs: 1000,
    report: (kind, n) => reports.push([kind, n]),
  });
  let logged = 0;
  for (let i = 0; i < 10_000; i++) if (budget.allow("a", i / 100)) logged++;
  assert.equal(logged, 3);
  assert.equal(budget.allow("b", 50), true);
  // The next interval starts with a summary of the last one.
  assert.equal(budget.allow("a", 1000), true);
  assert.deepEqual(reports, [["a", 9997]]);
});

Deno.test("unknown opcodes: the connection closes with CLOSE 2 and the log stays small", async () => {
  const lines: string[] = [];
  await using _logging = await setupLogging(
    { ...defaultConfig().logging, logLevel: "info" },
    { write: (line) => lines.push(line) },
  );
  await using server = await serveWith({ server: { maxProtocolViolations: 16 } });
  await using peer = await rawSecurePeer(portOf(server.addr), serverKey.publicKey);
  const flood = Array.from({ length: 65_000 }, () => custom("NOPE"));
  const bytes = encodeBatch(flood).length;
  await peer.send([flood]);
  const ending = await readUntilServerCloses(peer, 10_000);
  assert.equal(ending.close?.code, CloseCode.ProtocolError, JSON.stringify(ending));
  assert.match(ending.close!.reason, /protocol violations/);
  const logBytes = lines.reduce((n, line) => n + line.length, 0);
  // Before: one warning per message (about 200 bytes of log per byte received).
  assert.ok(lines.length <= 20, `${lines.length} log lines`);
  assert.ok(logBytes / bytes < 0.01, `${logBytes} bytes of log for ${bytes} bytes received`);
});

Deno.test("empty DATA records are protocol violations", async () => {
  await using server = await serveWith({ server: { maxProtocolViolations: 3 } });
  await using peer = await rawSecurePeer(portOf(server.addr), serverKey.publicKey);
  const records: Uint8Array[] = [];
  for (let i = 0; i < 100; i++) peer.channel.sealData(new Uint8Array(0), records);
  await peer.write(records);
  const ending = await readUntilServerCloses(peer, 10_000);
  assert.equal(ending.close?.code, CloseCode.ProtocolError);
});

// -- 5. Replies held for ordering are bounded ------------------------------------------------

Deno.test("replies held behind a slow un-numbered handler pause reading at the backpressure limit", async () => {
  let echoes = 0;
  let release!: () => void;
  const slow = new Promise<void>((resolve) => (release = resolve));
  const dispatcher = new Dispatcher()
    .register("SLOW", async (message) => {
      await slow;
      return message;
    })
    .register("BIG", (message) => {
      echoes++;
      return message;
    });
  await using server = await serveWith({ server: { backpressureLimit: 8 } }, dispatcher);
  await using client = await connect({
    address: `127.0.0.1:${portOf(server.addr)}`,
    security: { serverKeys: [serverKey.publicKey] },
  });
  const connection = client.connection!;
  connection.send(custom("SLOW"));
  const payload = new Uint8Array(64 * 1024);
  // 200 x 64 KiB = 12.5 MiB: the client queues what its own outbound bound allows, waiting
  // (bounded in time) for the socket to take more while the server still reads.
  let sent = 0;
  const deadline = performance.now() + 3000;
  while (sent < 200 && performance.now() < deadline) {
    try {
      connection.send(custom("BIG", payload));
      sent++;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  // Before: every BIG was handled and its reply held (768 MiB in the study).
  assert.ok(echoes <= 8, `${echoes} replies held behind the slow one`);
  const [serverSide] = [...server.connections];
  assert.ok(serverSide!.outboundBytes <= 8 * 1024 * 1024 + 70_000);
  release();
  // Once the slow reply goes out, reading resumes and every queued message is answered.
  let replies = 0;
  while (replies < sent + 1) {
    const batch = await connection.receiveBatch();
    assert.ok(batch !== null);
    replies += batch.length;
  }
  assert.equal(echoes, sent);
});

// -- 6. KEY_UPDATE storms -----------------------------------------------------------------------

Deno.test("two KEY_UPDATEs without DATA between them end the session with CLOSE 2", async () => {
  await using server = await serveWith({});
  await using peer = await rawSecurePeer(portOf(server.addr), serverKey.publicKey);
  const records: Uint8Array[] = [];
  peer.channel.sealKeyUpdate(records);
  peer.channel.sealKeyUpdate(records);
  await peer.write(records);
  const ending = await readUntilServerCloses(peer, 10_000);
  assert.equal(ending.close?.code, CloseCode.ProtocolError);
  assert.match(ending.close!.reason, /KEY_UPDATE/);
});

Deno.test("more than 100 KEY_UPDATEs per second end the session with CLOSE 2", async () => {
  await using server = await serveWith({});
  await using peer = await rawSecurePeer(portOf(server.addr), serverKey.publicKey);
  const records: Uint8Array[] = [];
  const ping = encodeBatch([{ type: "ping" }]);
  for (let i = 0; i < 300; i++) {
    peer.channel.sealKeyUpdate(records);
    peer.channel.sealData(ping, records);
  }
  await peer.write(records);
  const ending = await readUntilServerCloses(peer, 10_000);
  assert.equal(ending.close?.code, CloseCode.ProtocolError);
  assert.match(ending.close!.reason, /KEY_UPDATEs per second/);
});

// -- 7. Heartbeats do not keep a connection alive ------------------------------------------

Deno.test("a client that only pings is closed at the idle timeout, with CLOSE 4", async () => {
  await using server = await serveWith({ server: { idleTimeout: 300, heartbeatInterval: 5000 } });
  await using client = await connect({
    address: `127.0.0.1:${portOf(server.addr)}`,
    security: { serverKeys: [serverKey.publicKey] },
    config: { client: { autoReconnect: false } },
  });
  const connection = client.connection!;
  const pinger = setInterval(() => void connection.ping().catch(() => {}), 50);
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const error = await Promise.race([
      connection.closed(),
      new Promise((resolve) => (timer = setTimeout(() => resolve("open"), 3000))),
    ]);
    clearTimeout(timer);
    assert.ok(error instanceof PeerClosedError, `still ${String(error)} after 3 s of pings`);
    assert.equal(error.closeCode, CloseCode.IdleTimeout);
  } finally {
    clearInterval(pinger);
  }
});

// -- 8. Typed endings, replies over the limit -------------------------------------------------

Deno.test("a malformed batch ends the session with CLOSE 2, not a bare socket close", async () => {
  await using server = await serveWith({});
  await using peer = await rawSecurePeer(portOf(server.addr), serverKey.publicKey);
  await peer.write(peer.channel.sealData(new Uint8Array([0xfc, 0xff, 0xff, 0xff])));
  const ending = await readUntilServerCloses(peer, 10_000);
  assert.equal(ending.close?.code, CloseCode.ProtocolError);
});

Deno.test("a shutdown sends CLOSE 1 and the client sees a clean end", async () => {
  const server = await serveWith({});
  await using peer = await rawSecurePeer(portOf(server.addr), serverKey.publicKey);
  await waitFor(() => server.connections.size === 1, 5000, "the session");
  const ending = readUntilServerCloses(peer, 10_000);
  await server.shutdown();
  assert.equal((await ending).close?.code, CloseCode.GoingAway);
});

Deno.test("a reply over the packet limit fails its request, not the connection", async () => {
  const dispatcher = registerStandardHandlers(new Dispatcher())
    .register("HUGE", () => custom("HUGE", new Uint8Array(64 * 1024)));
  await using server = await serveWith({ transport: { maxPayloadSize: 32 * 1024 } }, dispatcher);
  await using client = await connect({
    address: `127.0.0.1:${portOf(server.addr)}`,
    security: { serverKeys: [serverKey.publicKey] },
    config: { transport: { maxPayloadSize: 32 * 1024 } },
  });
  const error = await client.request(custom("HUGE")).catch((e) => e);
  assert.ok(error instanceof RemoteError, String(error));
  assert.equal(error.remoteCode, ErrorCodes.TooLarge);
  // The connection is still there, and the largest echo fits both ways.
  const connection = client.connection!;
  const max = connection.maxMessageSize;
  const text = "x".repeat(max - 16);
  const reply = await client.request({ type: "echo", text });
  assert.equal(reply.type === "echo" && reply.text.length, text.length);
});

Deno.test("handler errors: an ApplicationError's code reaches the peer, anything else is code 2", async () => {
  const dispatcher = new Dispatcher()
    .register("APP", () => {
      throw new ApplicationError(4001, "No such account");
    })
    .register("BUG", () => {
      throw new Error("secret detail");
    });
  await using server = await serveWith({}, dispatcher);
  await using client = await connect({
    address: `127.0.0.1:${portOf(server.addr)}`,
    security: { serverKeys: [serverKey.publicKey] },
  });
  const app = await client.request(custom("APP")).catch((e) => e);
  assert.equal(app.remoteCode, 4001);
  assert.match(app.message, /No such account/);
  const bug = await client.request(custom("BUG")).catch((e) => e);
  assert.equal(bug.remoteCode, ErrorCodes.HandlerFailed);
  assert.doesNotMatch(bug.message, /secret/);
  assert.throws(() => new ApplicationError(999, "x"), RangeError);
});

Deno.test("max_message is honoured: a server never sends a client more than it announced", async () => {
  const dispatcher = registerStandardHandlers(new Dispatcher())
    .register("HUGE", () => custom("HUGE", new Uint8Array(64 * 1024)));
  await using server = await serveWith({}, dispatcher); // 16 MiB packets
  await using client = await connect({
    address: `127.0.0.1:${portOf(server.addr)}`,
    security: { serverKeys: [serverKey.publicKey] },
    config: { transport: { maxPayloadSize: 32 * 1024 } },
  });
  assert.equal(client.connection!.session.remoteMaxMessageSize, 16 * 1024 * 1024 - 17);
  const [serverSide] = [...server.connections];
  assert.ok(serverSide!.maxMessageSize < 32 * 1024);
  const error = await client.request(custom("HUGE")).catch((e) => e);
  assert.ok(error instanceof RemoteError, String(error));
  assert.equal(error.remoteCode, ErrorCodes.TooLarge);
  assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
});

Deno.test("a version-1 packet after the handshake ends the session with CLOSE 2", async () => {
  await using server = await serveWith({});
  await using peer = await rawSecurePeer(portOf(server.addr), serverKey.publicKey);
  const [record] = peer.channel.sealData(encodeBatch([{ type: "ping" }]));
  const packet = encodePackets([{ version: 2, payload: record! }]);
  packet[4] = 1;
  await peer.conn.write(packet);
  const ending = await readUntilServerCloses(peer, 10_000);
  assert.equal(ending.close?.code, CloseCode.ProtocolError);
  assert.match(ending.close!.reason, /version/);
});
