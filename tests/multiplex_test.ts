/**
 * Multiplexing (issue 13): fair fragmentation of large messages, streams with flow control,
 * GOAWAY. Live TCP sockets and the in-memory transport; hostile peers over TCP.
 */
import assert from "node:assert/strict";
import {
  type Client,
  connect,
  Dispatcher,
  isProtocolError,
  type Message,
  PeerClosedError,
  registerStandardHandlers,
  serve,
  type Server,
  type Stream,
  StreamError,
  StreamResetCode,
} from "../mod.ts";
import { decodeBatch, encodeBatch } from "../src/core/batch.ts";
import {
  decodeMessage,
  encodedMessageSize,
  encodeMessage,
  INITIAL_BULK_WINDOW,
  MessageTag,
} from "../src/core/message.ts";
import { writePacketHeader } from "../src/core/packet.ts";
import { PacketDecoder } from "../src/core/codec.ts";
import { FrameReader } from "../src/service/frame_reader.ts";
import { Connection } from "../src/service/connection.ts";
import { LATENCY_IN_FLIGHT, Outbox, StreamLane } from "../src/service/outbox.ts";
import { RecordEncoder } from "../src/secure/record_encoder.ts";
import { RecordDecoder } from "../src/secure/record_decoder.ts";
import { channelPair } from "./_secure_helpers.ts";
import { type MultiplexOptions, resolveMultiplex } from "../src/service/connection_options.ts";
import { MemoryTransport } from "../src/transport/memory_transport.ts";
import { memoryConnPair } from "../src/transport/memory_conn.ts";
import { createConfig, validateConfig } from "../src/config/mod.ts";
import type { Transport } from "../src/transport/types.ts";
import { rawSecurePeer, readUntilServerCloses } from "./_hostile_peer.ts";
import { waitFor } from "./_service_helpers.ts";

const enc = new TextEncoder();

function custom(command: string, payload: Uint8Array): Message {
  return { type: "custom", command, payload };
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 255;
  return out;
}

const BIG = pattern(8 << 20, 7);

function dispatcher(): Dispatcher {
  const d = registerStandardHandlers(new Dispatcher());
  d.register("E", (message) => message);
  d.register("BIG", (message) => {
    const size = message.type === "custom"
      ? new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0)
      : 0;
    return custom("BIG", size === BIG.length ? BIG : pattern(size, 7));
  });
  d.registerStream("ECHO", async (stream) => {
    await stream.readable.pipeTo(stream.writable);
  });
  d.registerStream("SINK", async (stream) => {
    let total = 0;
    for await (const chunk of stream.readable) total += chunk.length;
    const writer = stream.writable.getWriter();
    await writer.write(enc.encode(String(total)));
    await writer.close();
  });
  // Writes until reset: for the stopped-reader test.
  d.registerStream("SOURCE", async (stream, ctx) => {
    const writer = stream.writable.getWriter();
    const chunk = new Uint8Array(64 * 1024);
    try {
      while (!ctx.signal.aborted) await writer.write(chunk);
    } catch {
      // Reset by the client.
    }
  });
  return d;
}

function bigRequest(size: number): Message {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, size);
  return custom("BIG", payload);
}

interface Pair extends AsyncDisposable {
  server: Server;
  client: Client;
}

async function pair(
  options: {
    transport?: Transport;
    server?: MultiplexOptions;
    client?: MultiplexOptions;
    dispatcher?: Dispatcher;
    heartbeat?: number;
  } = {},
): Promise<Pair> {
  const multiplexConfig = (m: MultiplexOptions | undefined) =>
    m === undefined ? {} : {
      multiplex: {
        ...(m.maxInboundStreams === undefined ? {} : { maxInboundStreams: m.maxInboundStreams }),
        ...(m.maxOutboundStreams === undefined ? {} : { maxOutboundStreams: m.maxOutboundStreams }),
        ...(m.initialWindow === undefined ? {} : { initialWindow: m.initialWindow }),
        ...(m.maxWindow === undefined ? {} : { maxWindow: m.maxWindow }),
        ...(m.connectionWindow === undefined ? {} : { connectionWindow: m.connectionWindow }),
        ...(m.openTimeoutMs === undefined ? {} : { openTimeout: m.openTimeoutMs }),
      },
    };
  const server = await serve({
    address: "127.0.0.1:0",
    ...(options.transport === undefined ? {} : { transport: options.transport }),
    config: {
      ...multiplexConfig(options.server),
      ...(options.heartbeat === undefined ? {} : {
        server: { heartbeatInterval: options.heartbeat },
      }),
    },
  }, options.dispatcher ?? dispatcher());
  const { port } = server.addr as Deno.NetAddr;
  const client = await connect({
    address: `127.0.0.1:${port}`,
    ...(options.transport === undefined ? {} : { transport: options.transport }),
    security: { serverKeys: [server.publicKey!] },
    autoReconnect: false,
    config: {
      ...multiplexConfig(options.client),
      ...(options.heartbeat === undefined ? {} : {
        client: { heartbeatInterval: options.heartbeat },
      }),
    },
  });
  return {
    server,
    client,
    async [Symbol.asyncDispose]() {
      await client.close();
      await server.shutdown(2000);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Wire format

Deno.test("multiplex messages: exact bytes of every new tag, and back", () => {
  const cases: [Message, string][] = [
    [
      { type: "fragment", id: 1, total: 300, chunk: new Uint8Array([5, 6]) },
      "15 01 ac 02 02 05 06",
    ],
    [
      { type: "stream_open", id: 1, window: 262144, command: "UP", metadata: new Uint8Array([9]) },
      "16 01 80 80 10 02 55 50 01 09",
    ],
    [{ type: "stream_accept", id: 2, window: 65536 }, "17 02 80 80 04"],
    [{ type: "stream_data", id: 1, data: enc.encode("hi") }, "18 01 02 68 69"],
    [{ type: "stream_end", id: 1 }, "19 01"],
    [{ type: "stream_window", id: 1, delta: 131072 }, "1a 01 80 80 08"],
    [{ type: "stream_reset", id: 3, code: 1 }, "1b 03 01"],
    [
      { type: "goaway", lastRequest: 300, lastStream: 5, code: 1, reason: "bye" },
      "1c ac 02 05 01 03 62 79 65",
    ],
    [{ type: "window", delta: 131072 }, "1d 80 80 08"],
  ];
  for (const [message, hex] of cases) {
    const bytes = encodeMessage(message);
    assert.equal([...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" "), hex);
    assert.deepEqual(decodeMessage(bytes), message);
  }
  assert.equal(MessageTag.GoAway, 0x1c);
  // Invalid forms are refused both ways.
  assert.throws(() => decodeMessage(new Uint8Array([0x18, 0x01, 0x00])), /empty/);
  assert.throws(() => decodeMessage(new Uint8Array([0x1a, 0x01, 0x00])), /"0"/);
  assert.throws(() => decodeMessage(new Uint8Array([0x15, 0x01, 0x01, 0x02, 1, 2])), /exceeds/);
  assert.throws(() => decodeMessage(new Uint8Array([0x10, 0x01, 0x00, 0x19, 0x01])), /nests/);
  assert.throws(() => encodeMessage({ type: "stream_data", id: 1, data: new Uint8Array(0) }));
  assert.throws(() => encodeMessage({ type: "stream_window", id: 1, delta: 2 ** 32 }));
});

Deno.test("multiplex messages: the worked example of PROTOCOL.md, byte for byte", () => {
  const packet = (messages: Message[]) => {
    const batch = encodeBatch(messages);
    const out = new Uint8Array(9 + batch.length);
    out.set([0x4e, 0x50, 0x52, 0x4f, 0x02]);
    writePacketHeader(out, 0, batch.length);
    out.set(batch, 9);
    return [...out].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  };
  const up = { type: "stream_open", command: "UP", window: 262144 } as const;
  assert.equal(
    packet([{ ...up, id: 1, metadata: new Uint8Array(0) }]),
    "4e 50 52 4f 02 00 00 00 0b 00 09 16 01 80 80 10 02 55 50 00",
  );
  assert.equal(
    packet([{ type: "stream_accept", id: 1, window: 262144 }]),
    "4e 50 52 4f 02 00 00 00 07 00 05 17 01 80 80 10",
  );
  assert.equal(
    packet([{ type: "stream_data", id: 1, data: enc.encode("hello") }, {
      type: "stream_end",
      id: 1,
    }]),
    "4e 50 52 4f 02 00 00 00 0e 00 08 18 01 05 68 65 6c 6c 6f 00 02 19 01",
  );
  assert.equal(
    packet([{ type: "stream_data", id: 1, data: enc.encode("5") }, { type: "stream_end", id: 1 }]),
    "4e 50 52 4f 02 00 00 00 0a 00 04 18 01 01 35 00 02 19 01",
  );
  assert.equal(
    packet([{ ...up, id: 3, metadata: enc.encode("k") }]),
    "4e 50 52 4f 02 00 00 00 0c 00 0a 16 03 80 80 10 02 55 50 01 6b",
  );
  assert.equal(
    packet([{ type: "stream_reset", id: 3, code: 1 }]),
    "4e 50 52 4f 02 00 00 00 05 00 03 1b 03 01",
  );
  const hex = (m: Message) =>
    [...encodeMessage(m)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  assert.equal(
    hex({ type: "goaway", lastRequest: 7, lastStream: 3, code: 1, reason: "server shutting down" }),
    "1c 07 03 01 14 73 65 72 76 65 72 20 73 68 75 74 74 69 6e 67 20 64 6f 77 6e",
  );
  assert.equal(hex({ type: "stream_window", id: 1, delta: 393216 }), "1a 01 80 80 18");
  // The fragments of custom("X", 100,000 bytes) with a 64 KiB frame, as the outbox cuts them.
  const whole = encodeMessage(custom("X", new Uint8Array(100_000)));
  assert.equal(whole.length, 100_006);
  const starts = [[0, 6], [6, 65_542], [65_542, 100_006]].map(([a, b]) =>
    hex({ type: "fragment", id: 1, total: whole.length, chunk: whole.subarray(a, b) }).slice(0, 23)
  );
  assert.deepEqual(starts, [
    "15 01 a6 8d 06 06 05 01",
    "15 01 a6 8d 06 80 80 04",
    "15 01 a6 8d 06 a0 8d 02",
  ]);
});

/** The packet decoder and surplus messages of each raw conn read by `readMessages`. */
const rawReaders = new WeakMap<Deno.Conn, { decoder: PacketDecoder; extra: Message[] }>();

/** Reads the batches a peer writes on a raw conn: `count` messages, in order. */
async function readMessages(conn: Deno.Conn, count: number): Promise<Message[]> {
  let state = rawReaders.get(conn);
  if (state === undefined) {
    rawReaders.set(conn, state = { decoder: new PacketDecoder(), extra: [] });
  }
  const messages = state.extra.splice(0, count);
  const buffer = new Uint8Array(1 << 20);
  while (messages.length < count) {
    const n = await conn.read(buffer);
    if (n === null) break;
    for (const packet of state.decoder.push(buffer.subarray(0, n))) {
      messages.push(...decodeBatch(packet.payload.slice()));
    }
  }
  state.extra.push(...messages.splice(count));
  return messages;
}

/** Writes all of `data` (a write may take only part of it). */
async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += await conn.write(data.subarray(offset));
}

function bareConnection(conn: Deno.Conn, features: number): Connection {
  return new Connection(
    conn,
    new FrameReader(conn),
    { channel: null, pattern: "plaintext", features, pinned: false },
    // The smallest window: these tests read what is sent, and no grant comes first.
    { role: "client", multiplex: { bulkWindow: INITIAL_BULK_WINDOW } },
  );
}

Deno.test("fragments: a message over the frame size travels as fragments only when negotiated", async () => {
  for (const features of [0, 4]) {
    const [a, b] = memoryConnPair();
    const connection = bareConnection(a, features);
    try {
      const payload = pattern(100_000, 1); // within the initial bulk window (128 KiB)
      connection.send(custom("X", payload));
      connection.send({ type: "echo", text: "after" });
      const expected = features === 0 ? 2 : 4; // head, 2 body chunks, echo
      const messages = await readMessages(b, expected);
      if (features === 0) {
        assert.deepEqual(messages, [custom("X", payload), { type: "echo", text: "after" }]);
      } else {
        const fragments = messages.filter((m) => m.type === "fragment");
        assert.deepEqual(fragments.map((f) => f.type === "fragment" ? f.chunk.length : 0), [
          6,
          65536,
          34464,
        ]);
        // The echo after it waits: un-numbered messages keep their order.
        assert.deepEqual(messages.at(-1), { type: "echo", text: "after" });
        const whole = new Uint8Array(fragments[0]!.type === "fragment" ? fragments[0]!.total : 0);
        let offset = 0;
        for (const f of fragments) {
          if (f.type !== "fragment") continue;
          whole.set(f.chunk, offset);
          offset += f.chunk.length;
        }
        assert.deepEqual(decodeMessage(whole), custom("X", payload));
      }
    } finally {
      await connection.close({ timeoutMs: 100 });
      b.close();
    }
  }
});

Deno.test("bulk window: at most 128 KiB of fragments in flight until the peer grants more", async () => {
  const [a, b] = memoryConnPair();
  const connection = bareConnection(a, 4);
  try {
    connection.send(custom("X", new Uint8Array(1 << 20)));
    const chunkBytes = (messages: Message[]) =>
      messages.reduce((n, m) => n + (m.type === "fragment" ? m.chunk.length : 0), 0);
    // The peer grants nothing: the sender stops at the initial window.
    const first = await readMessages(b, 3);
    const more = await Promise.race([
      readMessages(b, 1),
      new Promise<Message[]>((resolve) => setTimeout(() => resolve([]), 100)),
    ]);
    assert.equal(chunkBytes(first) + chunkBytes(more), 128 * 1024);
    // A grant lets the next 64 KiB go.
    const grant = encodeBatch([{ type: "window", delta: 65536 }]);
    const packet = new Uint8Array(9 + grant.length);
    writePacketHeader(packet, 0, grant.length);
    packet.set(grant, 9);
    await writeAll(b, packet);
    assert.equal(chunkBytes(await readMessages(b, 1)), 65536);
  } finally {
    connection.abort();
    b.close();
  }
});

/** Fragment chunk bytes in `messages`. */
function chunkBytes(messages: Message[]): number {
  return messages.reduce((n, m) => n + (m.type === "fragment" ? m.chunk.length : 0), 0);
}

/** Sends the peer a `window` grant of `delta` on a raw plaintext pair. */
async function grantWindow(conn: Deno.Conn, delta: number): Promise<void> {
  const grant = encodeBatch([{ type: "window", delta }]);
  const packet = new Uint8Array(9 + grant.length);
  writePacketHeader(packet, 0, grant.length);
  packet.set(grant, 9);
  await writeAll(conn, packet);
}

/** A read of {@linkcode readUntilQuiet} still waiting, per connection (its messages count next). */
const pendingReads = new Map<Deno.Conn, Promise<Message[]>>();

/** Reads messages until none came for `quietMs`. */
async function readUntilQuiet(conn: Deno.Conn, quietMs: number): Promise<Message[]> {
  const all: Message[] = [];
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let read = pendingReads.get(conn);
    if (read === undefined) pendingReads.set(conn, read = readMessages(conn, 1));
    const more = await Promise.race([
      read,
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), quietMs)),
    ]);
    clearTimeout(timer);
    if (more === null) return all;
    pendingReads.delete(conn);
    all.push(...more);
  }
}

/** Reads `count` messages, the first from a read {@linkcode readUntilQuiet} left waiting. */
async function readCount(conn: Deno.Conn, count: number): Promise<Message[]> {
  const pending = pendingReads.get(conn);
  if (pending === undefined) return await readMessages(conn, count);
  pendingReads.delete(conn);
  const first = await pending;
  return [...first, ...await readMessages(conn, count - first.length)];
}

Deno.test("bulk window: bulk alone fills a large window; beside small messages at most 36 KiB is in flight", async () => {
  const [a, b] = memoryConnPair();
  const connection = bareConnection(a, 4);
  try {
    // The peer grants a 1 MiB window at once.
    await grantWindow(b, (1 << 20) - INITIAL_BULK_WINDOW);
    await new Promise((resolve) => setTimeout(resolve, 10));
    // Bulk alone: the whole window goes out without waiting for grants.
    connection.send(custom("X", new Uint8Array(900_000)));
    const alone = await readUntilQuiet(b, 100);
    assert.equal(chunkBytes(alone), 900_006);
    // Grants of what was received; then bulk with a small message beside it (a reply, a PONG).
    await grantWindow(b, 900_006);
    await new Promise((resolve) => setTimeout(resolve, 10));
    connection.send(custom("X", new Uint8Array(900_000)));
    connection.send({ type: "ping" });
    const beside = await readCount(b, 3);
    assert.deepEqual(beside[0], { type: "ping" });
    assert.equal(chunkBytes(beside), LATENCY_IN_FLIGHT);
    // A grant of 16 KiB lets 16 KiB more go while small messages are recent...
    connection.send({ type: "ping" });
    await grantWindow(b, 16384);
    const more = await readCount(b, 2);
    assert.deepEqual(more[0], { type: "ping" });
    assert.equal(chunkBytes(more), 16384);
    // ...and once none came for the hold, the rest of the window goes out without a grant.
    const rest = await readUntilQuiet(b, 100);
    assert.equal(chunkBytes(rest), 900_006 - LATENCY_IN_FLIGHT - 16384);
  } finally {
    connection.abort();
    b.close();
  }
});

/** An outbox whose writes are kept as the batches of the packets written. */
function recordingOutbox(): { outbox: Outbox; packets: Message[][]; chunks: () => number } {
  const packets: Message[][] = [];
  const decoder = new PacketDecoder();
  const outbox = new Outbox({
    conn: {
      write(data: Uint8Array): Promise<number> {
        for (const packet of decoder.push(data.slice())) {
          packets.push(decodeBatch(packet.payload.slice()));
        }
        return Promise.resolve(data.length);
      },
    },
    encoder: new RecordEncoder({ channel: null }),
    maxBytes: 64 << 20,
    host: { onWritten() {}, onWriteError() {}, onActivity() {} },
    frameSize: 65536,
  });
  return { outbox, packets, chunks: () => packets.reduce((n, p) => n + streamOrChunkBytes(p), 0) };
}

/** Fragment chunk and stream data bytes in `messages`. */
function streamOrChunkBytes(messages: Message[]): number {
  return messages.reduce(
    (n, m) =>
      n + (m.type === "fragment" ? m.chunk.length : m.type === "stream_data" ? m.data.length : 0),
    0,
  );
}

Deno.test("bulk window: beside a small message no frame beyond the latency bound is written, and the small message has a record of its own", async () => {
  const { outbox, packets, chunks } = recordingOutbox();
  try {
    outbox.grant((1 << 20) - INITIAL_BULK_WINDOW);
    // A large message, then a PING: the PING goes first, alone in its packet (record), then
    // at most LATENCY_IN_FLIGHT of fragments, none larger.
    outbox.enqueue(custom("X", new Uint8Array(500_000)), false);
    outbox.enqueue({ type: "ping" }, false);
    await outbox.flushNow();
    assert.deepEqual(packets[0], [{ type: "ping" }]);
    assert.equal(chunks(), LATENCY_IN_FLIGHT);
    for (const packet of packets.slice(1)) {
      for (const m of packet) {
        assert.equal(m.type, "fragment");
        assert.ok(m.type === "fragment" && m.chunk.length <= LATENCY_IN_FLIGHT);
      }
    }
    // Stream data is cut to the bound as well: a stream's 64 KiB frame beside a PONG.
    outbox.grant(LATENCY_IN_FLIGHT);
    packets.length = 0;
    const lane = new StreamLane();
    const data = new Uint8Array(65536).fill(3);
    const frame: Message = { type: "stream_data", id: 1, data };
    outbox.enqueueStream(lane, frame, encodedMessageSize(frame));
    outbox.enqueue({ type: "pong" }, false);
    await outbox.flushNow();
    assert.deepEqual(packets[0], [{ type: "pong" }]);
    assert.ok(chunks() <= LATENCY_IN_FLIGHT, `${chunks()} bytes of bulk beside a PONG`);
    for (const packet of packets.slice(1)) {
      for (const m of packet) {
        assert.ok(m.type !== "stream_data" || m.data.length <= LATENCY_IN_FLIGHT);
      }
    }
    // Once the latency hold is over, the rest (stream data whole again) goes out with no grant.
    await waitFor(() => chunks() === 500_006 + 65536 - LATENCY_IN_FLIGHT, 2000, "the rest");
    const sent = packets.flat().filter((m) => m.type === "stream_data");
    const joined = new Uint8Array(65536);
    let offset = 0;
    for (const m of sent) {
      if (m.type !== "stream_data") continue;
      joined.set(m.data, offset);
      offset += m.data.length;
    }
    assert.deepEqual(joined, data);
  } finally {
    outbox.close();
  }
});

Deno.test("bulk window: window and stream window grants beside bulk leave it the whole window", async () => {
  const { outbox, chunks } = recordingOutbox();
  try {
    outbox.grant((1 << 20) - INITIAL_BULK_WINDOW);
    outbox.enqueue(custom("X", new Uint8Array(900_000)), false);
    // Grants flow with bulk (a stream receiver's credit, the connection's window): they are
    // small control messages but do not make the bulk in flight small.
    outbox.enqueue({ type: "stream_window", id: 2, delta: 131072 }, false);
    outbox.enqueue({ type: "window", delta: 32768 }, false);
    await outbox.flushNow();
    assert.equal(chunks(), 900_006);
  } finally {
    outbox.close();
  }
});

Deno.test("bulk window: a peer granting only every 32 KiB (the documented rule) never stalls bulk beside PINGs", async () => {
  const [a, b] = memoryConnPair();
  const connection = bareConnection(a, 4);
  const decoder = new PacketDecoder();
  let pinging = true;
  try {
    // The peer: a 1 MiB window, grants back exactly when 32 KiB accumulated (never earlier),
    // and a PING every millisecond, so small messages (PONGs) always flow beside the bulk.
    await grantWindow(b, (1 << 20) - INITIAL_BULK_WINDOW);
    const ping = encodeBatch([{ type: "ping" }]);
    const pingPacket = new Uint8Array(9 + ping.length);
    writePacketHeader(pingPacket, 0, ping.length);
    pingPacket.set(ping, 9);
    const pinger = (async () => {
      while (pinging) {
        await writeAll(b, pingPacket);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    const size = 2_000_000;
    const started = performance.now();
    connection.send(custom("X", new Uint8Array(size - 6))); // 6 bytes of header
    let received = 0;
    let ungranted = 0;
    let pongs = 0;
    let stalls = 0;
    const buffer = new Uint8Array(1 << 20);
    while (received < size) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        b.read(buffer),
        new Promise<"stalled">((resolve) => timer = setTimeout(() => resolve("stalled"), 3000)),
      ]);
      clearTimeout(timer);
      if (n === "stalled") {
        stalls++;
        break;
      }
      if (n === null) break;
      for (const packet of decoder.push(buffer.subarray(0, n))) {
        for (const m of decodeBatch(packet.payload.slice())) {
          if (m.type === "pong") pongs++;
          if (m.type !== "fragment") continue;
          received += m.chunk.length;
          ungranted += m.chunk.length;
          // Never more in flight than the latency bound or the whole window.
          assert.ok(ungranted <= 1 << 20);
          if (ungranted >= 32768) {
            await grantWindow(b, ungranted);
            ungranted = 0;
          }
        }
      }
    }
    assert.equal(stalls, 0, `the sender stalled after ${received} of ${size} bytes`);
    assert.equal(received, size);
    assert.ok(pongs > 0, "PONGs flowed beside the bulk");
    assert.ok(performance.now() - started < 10_000);
    pinging = false;
    await pinger;
  } finally {
    pinging = false;
    connection.abort();
    b.close();
  }
});

Deno.test("bulk window: a receiver with a large window grants back every 32 KiB, and what each read brought", async () => {
  const [a, b] = memoryConnPair();
  const connection = new Connection(
    a,
    new FrameReader(a),
    { channel: null, pattern: "plaintext", features: 4, pinned: false },
    { role: "client", multiplex: { bulkWindow: 1 << 20 } },
  );
  try {
    // The window beyond the initial one is granted first.
    assert.deepEqual(await readMessages(b, 1), [{
      type: "window",
      delta: (1 << 20) - INITIAL_BULK_WINDOW,
    }]);
    // 40,000 bytes received: granted back at once (not after a quarter of the 1 MiB window).
    const batch = encodeBatch([{
      type: "fragment",
      id: 1,
      total: 100_000,
      chunk: new Uint8Array(40_000),
    }]);
    const packet = new Uint8Array(9 + batch.length);
    writePacketHeader(packet, 0, batch.length);
    packet.set(batch, 9);
    await writeAll(b, packet);
    assert.deepEqual(await readMessages(b, 1), [{ type: "window", delta: 40_000 }]);
    // Less than 32 KiB is granted back too, at the end of the read that brought it: a sender
    // keeping little in flight beside small messages gets its window back at once.
    const small = encodeBatch([{
      type: "fragment",
      id: 1,
      total: 100_000,
      chunk: new Uint8Array(10_000),
    }]);
    const smallPacket = new Uint8Array(9 + small.length);
    writePacketHeader(smallPacket, 0, small.length);
    smallPacket.set(small, 9);
    await writeAll(b, smallPacket);
    assert.deepEqual(await readMessages(b, 1), [{ type: "window", delta: 10_000 }]);
  } finally {
    connection.abort();
    b.close();
  }
});

Deno.test("fragments: small requests pass 8 MiB replies, and un-numbered messages keep their order (TCP)", async () => {
  await using p = await pair();
  const big = [1, 2, 3].map(() => p.client.request(bigRequest(8 << 20)));
  let bigDone = 0;
  for (const b of big) void b.then(() => bigDone++);
  // Pings while the large replies flow: they come back long before the large ones finish.
  let pingsBeforeBig = 0;
  const started = performance.now();
  while (bigDone === 0 && performance.now() - started < 5000) {
    await p.client.request({ type: "ping" });
    if (bigDone === 0) pingsBeforeBig++;
  }
  const replies = await Promise.all(big);
  for (const reply of replies) {
    assert.ok(reply.type === "custom" && reply.payload.length === 8 << 20);
    assert.deepEqual(reply.payload.subarray(0, 1000), pattern(1000, 7));
    assert.equal(reply.payload[(8 << 20) - 1], BIG[(8 << 20) - 1]);
  }
  // Whole messages let a ping through only after a whole 8 MiB reply; fragments interleave it.
  // (Both ends share one event loop here; bench:net measures the latency in two processes.)
  assert.ok(pingsBeforeBig >= 1, `${pingsBeforeBig} pings passed before the first 8 MiB reply`);
  // Un-numbered: small, large, small, large, small arrive in order.
  const sent = [10, 300_000, 20, 150_000, 30].map((n, i) => custom("E", pattern(n, i)));
  for (const message of sent) p.client.send(message);
  const received: Message[] = [];
  while (received.length < sent.length) received.push(...(await p.client.receiveBatch())!);
  assert.deepEqual(
    received.map((m) => m.type === "custom" ? m.payload.length : -1),
    sent.map((m) => m.type === "custom" ? m.payload.length : -1),
  );
  assert.deepEqual(received, sent);
});

Deno.test("fragments: a hostile peer's oversized, overflowing or unnegotiated fragments close with a typed CLOSE", async () => {
  const server = await serve({
    address: "127.0.0.1:0",
    config: {
      transport: { maxPayloadSize: 1 << 20 },
      multiplex: { bulkWindow: INITIAL_BULK_WINDOW },
    },
  }, dispatcher());
  try {
    const { port } = server.addr as Deno.NetAddr;
    const cases: [string, number, Message[], number][] = [
      ["total over the largest message", 4, [{
        type: "fragment",
        id: 1,
        total: 2 << 20,
        chunk: new Uint8Array(10),
      }], 3],
      ["chunks beyond the total", 4, [
        { type: "fragment", id: 1, total: 12, chunk: new Uint8Array(10) },
        { type: "fragment", id: 1, total: 12, chunk: new Uint8Array(10) },
      ], 2],
      [
        "messages in progress beyond twice the largest",
        4,
        [0, 1, 2].map((i) => ({
          type: "fragment" as const,
          id: i + 1,
          total: 900_000,
          chunk: new Uint8Array(10),
        })),
        3,
      ],
      [
        "fragment bytes beyond the bulk window (128 KiB)",
        4,
        // One chunk larger than the whole window (grants follow what was received).
        [{ type: "fragment", id: 1, total: 200_000, chunk: new Uint8Array(140_000) }],
        2,
      ],
      ["fragments without multiplexing", 0, [{
        type: "fragment",
        id: 1,
        total: 12,
        chunk: new Uint8Array(10),
      }], 2],
    ];
    for (const [name, features, messages, code] of cases) {
      await using peer = await rawSecurePeer(port, server.publicKey!, features);
      await peer.send([messages]);
      const ending = await readUntilServerCloses(peer, 3000);
      assert.equal(ending.close?.code, code, name);
    }
  } finally {
    await server.shutdown(1000);
  }
});

// ---------------------------------------------------------------------------------------------
// Streams

async function readAll(stream: Stream): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream.readable).arrayBuffer());
}

Deno.test("streams: 256 MiB each way through one stream with bounded memory (in-memory pair)", async () => {
  const transport = new MemoryTransport();
  await using p = await pair({ transport });
  const total = 256 << 20;
  const chunk = pattern(64 * 1024, 3);
  const stream = await p.client.openStream("ECHO");
  const client = p.client.connection!;
  const server = [...p.server.connections][0]!;
  let peakOutbound = 0;
  let peakMemory = 0;
  const base = Deno.memoryUsage();
  const sampler = setInterval(() => {
    peakOutbound = Math.max(peakOutbound, client.outboundBytes, server.outboundBytes);
    const m = Deno.memoryUsage();
    peakMemory = Math.max(peakMemory, m.heapUsed + m.external - base.heapUsed - base.external);
  }, 10);
  try {
    const writing = (async () => {
      const writer = stream.writable.getWriter();
      for (let sent = 0; sent < total; sent += chunk.length) await writer.write(chunk);
      await writer.close();
    })();
    let received = 0;
    for await (const piece of stream.readable) {
      // Sampled check of the content at its offset in the repeated pattern.
      const at = received % chunk.length;
      assert.equal(piece[0], chunk[at]);
      assert.equal(piece[piece.length - 1], chunk[(at + piece.length - 1) % chunk.length]);
      received += piece.length;
    }
    await writing;
    assert.equal(received, total);
    assert.equal(await stream.closed(), undefined);
  } finally {
    clearInterval(sampler);
  }
  // Each side queues at most its outbound bound plus one write; the windows bound the rest.
  assert.ok(peakOutbound <= 8.5 * 1024 * 1024, `peak outbound ${peakOutbound}`);
  assert.ok(peakMemory < 192 * 1024 * 1024, `peak JS memory growth ${peakMemory}`);
});

Deno.test("streams: 100 concurrent streams and unary traffic over TCP, nothing lost, duplicated or reordered", async () => {
  await using p = await pair();
  const streams = 100;
  const perStream = 40; // messages of 1..4 KiB with a sequence number
  const run = async (s: number) => {
    const stream = await p.client.openStream("ECHO", { metadata: new Uint8Array([s]) });
    assert.deepEqual(stream.metadata, new Uint8Array([s]));
    const expected: Uint8Array[] = [];
    const writer = stream.writable.getWriter();
    const writing = (async () => {
      for (let i = 0; i < perStream; i++) {
        const piece = pattern(1024 * (1 + (i % 4)), s * 1000 + i);
        new DataView(piece.buffer).setUint32(0, s * 1000 + i);
        expected.push(piece);
        await writer.write(piece);
      }
      await writer.close();
    })();
    const back = await readAll(stream);
    await writing;
    let offset = 0;
    for (const piece of expected) {
      assert.deepEqual(back.subarray(offset, offset + piece.length), piece, `stream ${s}`);
      offset += piece.length;
    }
    assert.equal(offset, back.length);
  };
  let unary = 0;
  let running = true;
  const unaryLoop = (async () => {
    while (running) {
      const reply = await p.client.request(custom("E", new Uint8Array([unary & 255])));
      assert.ok(reply.type === "custom" && reply.payload[0] === (unary & 255));
      unary++;
    }
  })();
  await Promise.all(Array.from({ length: streams }, (_, s) => run(s)));
  running = false;
  await unaryLoop;
  assert.ok(unary >= 2, `${unary} unary requests`);
  assert.equal(p.client.connection!.openStreams, 0);
});

Deno.test("streams: a reader that stops stalls only its own stream", async () => {
  const transport = new MemoryTransport();
  await using p = await pair({ transport });
  const stalled = await p.client.openStream("SOURCE");
  // Nobody reads `stalled`: its window fills, the server's writer waits for credit.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const server = [...p.server.connections][0]!;
  const latencies: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t = performance.now();
    await p.client.request({ type: "ping" });
    latencies.push(performance.now() - t);
  }
  latencies.sort((a, b) => a - b);
  const p99 = latencies[Math.floor(latencies.length * 0.99)]!;
  assert.ok(p99 < 50, `unary p99 ${p99.toFixed(2)} ms while a stream is stalled`);
  // Another stream flows.
  const other = await p.client.openStream("SINK");
  const writer = other.writable.getWriter();
  await writer.write(new Uint8Array(1 << 20));
  await writer.close();
  assert.equal(new TextDecoder().decode(await readAll(other)), String(1 << 20));
  // The stalled stream holds at most its window; the server's outbox is not growing with it.
  assert.ok(server.outboundBytes < 1 << 20, `server outbound ${server.outboundBytes}`);
  stalled.reset(1000);
  const ended = await stalled.closed();
  assert.ok(ended instanceof StreamError && ended.resetCode === 1000 && !ended.remote);
});

Deno.test("streams: half-close and reset in every state", async (t) => {
  const transport = new MemoryTransport();
  const seen: { id: number; error: unknown }[] = [];
  const d = dispatcher();
  // Reads until the end, then writes "done" and ends its side.
  d.registerStream("HALF", async (stream) => {
    await readAll(stream);
    const writer = stream.writable.getWriter();
    await writer.write(enc.encode("done"));
    await writer.close();
  });
  // Ends its own side first, then reads what the client sends.
  d.registerStream("FIRST", async (stream) => {
    await stream.closeWrite();
    seen.push({ id: stream.id, error: (await readAll(stream)).length });
  });
  // Waits to be reset by the client; records the error it sees.
  d.registerStream("WAIT", async (stream) => {
    try {
      await readAll(stream);
    } catch (error) {
      seen.push({ id: stream.id, error });
    }
  });
  // Reads to the end, then writes until the stream is reset; records why it stopped.
  d.registerStream("TAIL", async (stream, ctx) => {
    await readAll(stream);
    const writer = stream.writable.getWriter();
    try {
      for (;;) await writer.write(new Uint8Array(1000));
    } catch {
      seen.push({ id: stream.id, error: ctx.signal.reason });
    }
  });
  // Resets at once with an application code.
  d.registerStream("RESET", (stream) => stream.reset(1001));
  await using p = await pair({ transport, dispatcher: d });

  await t.step("client half-closes first, server answers and ends", async () => {
    const stream = await p.client.openStream("HALF");
    await stream.closeWrite();
    await stream.closeWrite(); // again: nothing
    assert.equal(new TextDecoder().decode(await readAll(stream)), "done");
    assert.equal(await stream.closed(), undefined);
    await assert.rejects(stream.writable.getWriter().write(new Uint8Array(1)));
  });
  await t.step("server half-closes first, client writes and ends", async () => {
    const stream = await p.client.openStream("FIRST");
    assert.equal((await readAll(stream)).length, 0);
    const writer = stream.writable.getWriter();
    await writer.write(new Uint8Array(5000));
    await writer.close();
    assert.equal(await stream.closed(), undefined);
    await waitFor(() => seen.some((s) => s.id === stream.id));
    assert.equal(seen.find((s) => s.id === stream.id)!.error, 5000);
  });
  await t.step("client resets an open stream: both sides see a StreamError", async () => {
    const stream = await p.client.openStream("WAIT");
    stream.reset(1002);
    await waitFor(() => seen.some((s) => s.id === stream.id));
    const error = seen.find((s) => s.id === stream.id)!.error;
    assert.ok(error instanceof StreamError && error.remote && error.resetCode === 1002);
    const local = await stream.closed();
    assert.ok(local instanceof StreamError && !local.remote && local.resetCode === 1002);
    await assert.rejects(readAll(stream), StreamError);
  });
  await t.step("client resets after half-closing, while the server still writes", async () => {
    const stream = await p.client.openStream("TAIL");
    await stream.closeWrite();
    const reader = stream.readable.getReader();
    assert.ok(!(await reader.read()).done);
    stream.reset(1003);
    await waitFor(() => seen.some((s) => s.id === stream.id));
    const error = seen.find((s) => s.id === stream.id)!.error;
    assert.ok(error instanceof StreamError && error.remote && error.resetCode === 1003);
    await assert.rejects(reader.read(), StreamError);
    assert.ok(await stream.closed() instanceof StreamError);
  });
  await t.step("server resets: the client's reads and writes fail with its code", async () => {
    const stream = await p.client.openStream("RESET");
    const error = await stream.closed();
    assert.ok(error instanceof StreamError && error.remote && error.resetCode === 1001);
    await assert.rejects(stream.writable.getWriter().write(new Uint8Array(1)), StreamError);
  });
  await t.step(
    "reset after both sides ended does nothing; dispose resets an unfinished one",
    async () => {
      const stream = await p.client.openStream("HALF");
      await stream.closeWrite();
      await readAll(stream);
      assert.equal(await stream.closed(), undefined);
      stream.reset(5); // finished: nothing is sent
      {
        await using abandoned = await p.client.openStream("WAIT");
        assert.equal(abandoned.command, "WAIT");
      }
      await waitFor(() => p.client.connection!.openStreams === 0);
    },
  );
  await t.step("the connection closing ends open streams with ConnectionClosed", async () => {
    const stream = await p.client.openStream("WAIT");
    await p.client.connection!.close({ timeoutMs: 500 });
    const error = await stream.closed();
    assert.ok(isProtocolError(error, "ConnectionClosed"));
  });
});

Deno.test("streams: limits, unknown commands, open timeout and cancel give typed errors", async () => {
  const transport = new MemoryTransport();
  await using p = await pair({
    transport,
    server: { maxInboundStreams: 2, connectionWindow: 64 << 20 },
    client: { maxOutboundStreams: 3, openTimeoutMs: 2000 },
  });
  const a = await p.client.openStream("SOURCE");
  const b = await p.client.openStream("SOURCE");
  // The server's limit: refused, typed, and the stream was not processed.
  const refused = await p.client.openStream("SOURCE").catch((e) => e);
  assert.ok(refused instanceof StreamError, String(refused));
  assert.equal(refused.code, "LimitExceeded");
  assert.equal(refused.resetCode, StreamResetCode.Refused);
  assert.ok(refused.remote);
  a.reset();
  b.reset();
  await Promise.all([a.closed(), b.closed()]);
  // A command without a stream handler.
  const c = await p.client.openStream("NOPE").catch((e) => e);
  assert.ok(c instanceof StreamError && c.code === "UnexpectedMessage", String(c));
  assert.equal(c.resetCode, StreamResetCode.UnknownCommand);
  // Cancelled before it was sent.
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(
    p.client.openStream("SOURCE", { signal: controller.signal }),
    (e) => isProtocolError(e, "Cancelled"),
  );
  // Bad arguments are built-in errors.
  await assert.rejects(p.client.openStream(""), TypeError);
  await assert.rejects(
    p.client.openStream("X", { metadata: new Uint8Array(16 * 1024 + 1) }),
    RangeError,
  );
  await assert.rejects(p.client.openStream("X", { timeoutMs: 0 }), RangeError);
});

Deno.test("streams: this side's stream limit and the open timeout", async () => {
  // A peer that never answers: the server side of a raw pair whose reads are paused.
  const [a, b] = memoryConnPair();
  const connection = new Connection(
    a,
    new FrameReader(a),
    { channel: null, pattern: "plaintext", features: 4, pinned: false },
    {
      role: "client",
      multiplex: { maxOutboundStreams: 1, openTimeoutMs: 50, bulkWindow: INITIAL_BULK_WINDOW },
    },
  );
  try {
    const first = connection.openStream("X");
    await assert.rejects(connection.openStream("Y"), (e) => isProtocolError(e, "LimitExceeded"));
    const error = await first.catch((e) => e);
    assert.ok(error instanceof StreamError && error.code === "Timeout" && !error.remote);
    // The timed-out stream is gone: a new one may be opened (and is cancelled here).
    const controller = new AbortController();
    const second = connection.openStream("Z", { signal: controller.signal });
    controller.abort(new Error("changed my mind"));
    assert.ok(isProtocolError(await second.catch((e) => e), "Cancelled"));
    // The peer saw the opens and the resets, in that order.
    const messages = await readMessages(b, 4);
    assert.deepEqual(messages.map((m) => m.type), [
      "stream_open",
      "stream_reset",
      "stream_open",
      "stream_reset",
    ]);
    assert.deepEqual(messages[1], { type: "stream_reset", id: 1, code: StreamResetCode.Timeout });
  } finally {
    await connection.close({ timeoutMs: 100 });
    b.close();
  }
});

Deno.test("streams: a window violation or data on a stream that is not open closes with CLOSE 2 (TCP)", async () => {
  const server = await serve({
    address: "127.0.0.1:0",
    config: {
      multiplex: {
        initialWindow: 4096,
        maxWindow: 65536,
        maxInboundStreams: 1,
        connectionWindow: 1 << 20,
      },
    },
  }, dispatcher());
  try {
    const { port } = server.addr as Deno.NetAddr;
    const open: Message = {
      type: "stream_open",
      id: 1,
      window: 4096,
      command: "SINK",
      metadata: new Uint8Array(0),
    };
    const cases: [string, Message[][]][] = [
      ["data beyond the window", [[open], [{
        type: "stream_data",
        id: 1,
        data: new Uint8Array(4097),
      }]]],
      ["data on a stream never opened", [[{
        type: "stream_data",
        id: 3,
        data: new Uint8Array(1),
      }]]],
      ["data after its end", [[open], [{ type: "stream_end", id: 1 }, {
        type: "stream_data",
        id: 1,
        data: new Uint8Array(1),
      }]]],
      ["an id of the wrong parity", [[{ ...open, id: 2 }]]],
      ["an id reused", [[open, { type: "stream_reset", id: 1, code: 0 }, open]]],
    ];
    for (const [name, batches] of cases) {
      await using peer = await rawSecurePeer(port, server.publicKey!, 4);
      for (const batch of batches) await peer.send([batch]);
      const ending = await readUntilServerCloses(peer, 3000);
      assert.equal(ending.close?.code, 2, name);
      assert.match(ending.close?.reason ?? "", /stream/i, name);
    }
  } finally {
    await server.shutdown(1000);
  }
});

Deno.test("streams: data beyond the window this side granted fails the connection with PolicyViolation", async () => {
  // Our client against a server that lies about its window: the server side is raw.
  const [a, b] = memoryConnPair();
  const connection = bareConnection(a, 4);
  try {
    const opening = connection.openStream("X");
    await readMessages(b, 1);
    const accept = encodeBatch([{ type: "stream_accept", id: 1, window: 10 }]);
    const packet = new Uint8Array(9 + accept.length);
    writePacketHeader(packet, 0, accept.length);
    packet.set(accept, 9);
    await writeAll(b, packet);
    const stream = await opening;
    // 300 KB of data exceed the window this side granted (256 KiB).
    const data = encodeBatch([{ type: "stream_data", id: 1, data: new Uint8Array(300_000) }]);
    const flood = new Uint8Array(9 + data.length);
    writePacketHeader(flood, 0, data.length);
    flood.set(data, 9);
    const writing = writeAll(b, flood).catch(() => {});
    const error = await connection.closed();
    await writing;
    assert.ok(isProtocolError(error, "PolicyViolation"), String(error));
    assert.ok(isProtocolError(await stream.closed(), "ConnectionClosed"));
  } finally {
    connection.abort();
    b.close();
  }
});

// ---------------------------------------------------------------------------------------------
// GOAWAY

Deno.test("GOAWAY under load: every request is answered or failed as not processed, none run twice", async () => {
  const executed = new Map<number, number>();
  const d = registerStandardHandlers(new Dispatcher());
  d.register("WORK", async (message) => {
    const n = message.type === "custom"
      ? new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0)
      : -1;
    executed.set(n, (executed.get(n) ?? 0) + 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    return message;
  });
  // A low backpressure limit: requests wait unread in the socket when the server drains.
  const server = await serve({
    address: "127.0.0.1:0",
    config: { server: { backpressureLimit: 4 } },
  }, d);
  const { port } = server.addr as Deno.NetAddr;
  const client = await connect({
    address: `127.0.0.1:${port}`,
    security: { serverKeys: [server.publicKey!] },
    autoReconnect: false,
  });
  try {
    const results = new Map<number, "answered" | "not processed">();
    const failures: unknown[] = [];
    let n = 0;
    let running = true;
    const load = Array.from({ length: 128 }, async () => {
      while (running) {
        const id = n++;
        const payload = new Uint8Array(4);
        new DataView(payload.buffer).setUint32(0, id);
        try {
          const reply = await client.request(custom("WORK", payload));
          assert.ok(reply.type === "custom" && reply.payload.length === 4);
          results.set(id, "answered");
        } catch (error) {
          if (isProtocolError(error, "NotProcessed")) results.set(id, "not processed");
          else if (!isProtocolError(error, "ConnectionClosed")) failures.push(error);
          // After GOAWAY this connection takes nothing more (a pool would go elsewhere).
          running = false;
        }
      }
    });
    await waitFor(() => executed.size > 100, 10_000, "load");
    const connection = client.connection!;
    await server.shutdown(5000);
    running = false;
    await Promise.all(load);
    assert.deepEqual(failures, []);
    assert.ok(connection.goingAway, "the client received GOAWAY");
    let notProcessed = 0;
    for (const [id, outcome] of results) {
      if (outcome === "answered") assert.equal(executed.get(id), 1, `request ${id}`);
      else {
        assert.equal(
          executed.get(id),
          undefined,
          `request ${id} ran but was reported not processed`,
        );
        notProcessed++;
      }
    }
    // Every request that ran was answered.
    for (const id of executed.keys()) assert.equal(results.get(id), "answered", `request ${id}`);
    assert.ok(results.size > 100);
    assert.ok(notProcessed > 0, "no request was in flight beyond the GOAWAY");
    assert.equal(await client.closed(), undefined);
    console.log(`${results.size - notProcessed} answered, ${notProcessed} not processed`);
  } finally {
    await client.close();
    await server.shutdown(1000);
  }
});

Deno.test("GOAWAY: heartbeats are answered while draining, streams in progress finish, new ones are not processed", async () => {
  const transport = new MemoryTransport();
  const d = dispatcher();
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  d.register("HOLD", async (message) => {
    await released;
    return message;
  });
  await using p = await pair({ transport, dispatcher: d, heartbeat: 100 });
  const held = p.client.request(custom("HOLD", new Uint8Array(1)));
  const stream = await p.client.openStream("SINK");
  await waitFor(() => [...p.server.connections][0]?.inflight === 1);
  const shutdown = p.server.shutdown(5000);
  await waitFor(() => p.client.connection?.goingAway === true, 2000, "GOAWAY");
  // New requests and streams fail at once as not processed.
  await assert.rejects(
    p.client.request({ type: "ping" }),
    (e) => isProtocolError(e, "NotProcessed"),
  );
  const late = await p.client.openStream("SINK").catch((e) => e);
  assert.ok(isProtocolError(late, "NotProcessed"), String(late));
  // Four heartbeat intervals pass while draining: the connection stays alive (the server still
  // reads and answers the client's pings), and the stream opened before GOAWAY still works.
  await new Promise((resolve) => setTimeout(resolve, 450));
  assert.equal(p.client.connection?.isClosed, false);
  const writer = stream.writable.getWriter();
  await writer.write(new Uint8Array(300_000));
  await writer.close();
  assert.equal(new TextDecoder().decode(await readAll(stream)), "300000");
  release();
  assert.deepEqual(await held, custom("HOLD", new Uint8Array(1)));
  await shutdown;
  assert.equal(await p.client.closed(), undefined);
});

Deno.test("GOAWAY: server.max_connection_age drains old connections and the client reconnects", async () => {
  const transport = new MemoryTransport();
  await using server = await serve({
    address: "127.0.0.1:0",
    transport,
    config: { server: { maxConnectionAge: 1000 } },
  }, dispatcher());
  const { port } = server.addr as Deno.NetAddr;
  await using client = await connect({
    address: `127.0.0.1:${port}`,
    transport,
    security: { serverKeys: [server.publicKey!] },
    config: { client: { reconnectDelay: 10 } },
  });
  const first = client.connection!;
  const statuses = client.status();
  await waitFor(() => first.goingAway, 3000, "GOAWAY after the maximum age");
  assert.equal(await first.closed(), undefined);
  for await (const status of statuses) if (status.type === "connected") break;
  assert.notEqual(client.connection, first);
  assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
  await statuses.return?.();
});

// ---------------------------------------------------------------------------------------------
// Configuration

Deno.test("multiplex configuration: windows and stream counts are checked together", () => {
  const config = createConfig();
  assert.deepEqual(validateConfig(config), []);
  const many = {
    ...config,
    multiplex: {
      ...config.multiplex,
      maxInboundStreams: 1000,
      maxOutboundStreams: 1000,
      initialWindow: 1 << 20,
    },
  };
  const issues = validateConfig(many);
  assert.equal(issues.length, 1);
  assert.match(issues[0]!, /multiplex\.connection_window "67108864" must hold/);
  const inverted = {
    ...config,
    multiplex: { ...config.multiplex, initialWindow: 2 << 20, maxWindow: 1 << 20 },
  };
  assert.match(
    validateConfig(inverted)[0]!,
    /multiplex\.initial_window "2097152" must not exceed multiplex\.max_window "1048576"/,
  );
  assert.throws(
    () => createConfig({ multiplex: { maxInboundStreams: 1000 } }),
    /connection_window/,
  );
  assert.throws(() => resolveMultiplex({ initialWindow: 2 << 20, maxWindow: 1 << 20 }), RangeError);
  assert.throws(() => resolveMultiplex({ frameSize: 100 }), RangeError);
  assert.deepEqual(resolveMultiplex().frameSize, 65536);
});

Deno.test("peer closes: a PeerClosedError keeps its code", () => {
  assert.equal(new PeerClosedError(2, "x").code, "PolicyViolation");
});

Deno.test("records: small messages written ahead of bulk are sealed apart and handed over before the bulk is opened", () => {
  const { a: client, b: server } = channelPair();
  const encoder = new RecordEncoder({ channel: client });
  const fragment: Message = {
    type: "fragment",
    id: 1,
    total: 100_000,
    chunk: new Uint8Array(40_000),
  };
  const messages: Message[] = [{ type: "pong" }, { type: "window", delta: 4096 }, fragment];
  // The first two in a record of their own, the fragment in the next.
  const packets = new PacketDecoder().push(encoder.encode(messages, undefined, undefined, 2));
  assert.equal(packets.length, 2);
  assert.ok(packets[0]!.payload.length < 100);
  const decoder = new RecordDecoder({ channel: server });
  // The decoder stops after the small record: its messages are handled before the bulk is
  // opened.
  assert.equal(decoder.decode(packets, 0, true), 1);
  assert.deepEqual(decoder.take(), { type: "pong" });
  assert.deepEqual(decoder.take(), { type: "window", delta: 4096 });
  assert.equal(decoder.pending, false);
  assert.equal(decoder.decode(packets, 1, true), 2);
  assert.deepEqual(decoder.take(), fragment);
  // Without handOver (no bulk coming in: pipelined small messages) a read decodes in one go.
  const again = new PacketDecoder().push(encoder.encode(messages, undefined, undefined, 2));
  assert.equal(decoder.decode(again, 0), 2);
  // Without a split everything is one record, as before.
  assert.equal(new PacketDecoder().push(encoder.encode(messages)).length, 1);
});
