/**
 * The load generator of the network benchmark: connects to one server process started by
 * `bench/net/main.ts` and runs the measures it is given, then prints one JSON line
 * `{"figures": Figure[]}`. For `idle` it prints `{"opened": n}`, then waits for `close` on stdin.
 *
 * Raw kinds use a raw Deno socket with 4-byte length framing; library kinds use `connect()`; the
 * js-libp2p-noise peer uses `libp2p_peer.ts` (loaded only for that kind).
 * Every measure warms up first, then counts for `--seconds`.
 *
 * @module
 */

import {
  ACK_ONLY,
  type Figure,
  fromHex,
  isPeer,
  isRaw,
  lines,
  type Measure,
  parseArgs,
  percentiles,
  type ServerKind,
  transportOf,
  writeAll,
} from "./common.ts";
import {
  type Client,
  type ClientResumption,
  connect,
  type ConnectOptions,
  createPool,
  generateKeyPair,
  type KeyPair,
  type Message,
  SessionTicketStore,
} from "../../mod.ts";
import { decodeBatch, encodePackets, type Packet, PacketDecoder } from "../../src/core/mod.ts";
import { clientHandshake, type HandshakeIO } from "../../src/secure/mod.ts";

const args = parseArgs(Deno.args);
const kind = args.get("kind") as ServerKind;
const address = args.get("address")!;
const publicKey = args.has("public-key") ? fromHex(args.get("public-key")!) : undefined;
const certPath = args.get("cert");
const certPem = certPath === undefined ? undefined : Deno.readTextFileSync(certPath);
const keyPath = args.get("key");
const measures = (args.get("measures") ?? "rtt").split(",") as Measure[];
const seconds = Number(args.get("seconds") ?? 1);
const warmSeconds = Number(args.get("warm") ?? Math.min(0.5, seconds / 2));
const concurrency = Number(args.get("concurrency") ?? 16);
const connections = Number(args.get("connections") ?? 10_000);
/**
 * `--start-at <epoch ms>`: the pooled measures wait, pool open, until this wall-clock time, so
 * that several client processes load the servers over the same window (the workers run).
 */
const startAt = args.has("start-at") ? Number(args.get("start-at")) : undefined;
const transport = transportOf(kind);

const now = () => performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Warms up, then counts how far `progress()` moves in `seconds`: the rate per second. */
async function countWindow(progress: () => number): Promise<{ rate: number; count: number }> {
  await sleep(warmSeconds * 1000);
  const t0 = now();
  const c0 = progress();
  await sleep(seconds * 1000);
  const count = progress() - c0;
  return { rate: count / ((now() - t0) / 1000), count };
}

/** Runs `once` back to back: warm-up, then round-trip samples for `seconds`. */
async function roundTrips(once: () => Promise<unknown>): Promise<Figure> {
  const samples: number[] = [];
  const warmEnd = now() + warmSeconds * 1000;
  let end = Infinity;
  for (;;) {
    const started = now();
    if (started > end) break;
    if (end === Infinity && started > warmEnd) end = started + seconds * 1000;
    await once();
    if (end !== Infinity) samples.push(now() - started);
  }
  const { median, p99 } = percentiles(samples);
  return {
    measure: "rtt",
    value: median * 1000,
    p99: p99 * 1000,
    unit: "µs",
    count: samples.length,
  };
}

// ---------------------------------------------------------------------------------------------
// Raw client.

async function rawConnect(): Promise<Deno.Conn> {
  if (transport === "unix") return await Deno.connect({ transport: "unix", path: address });
  const index = address.lastIndexOf(":");
  const hostname = address.slice(0, index);
  const port = Number(address.slice(index + 1));
  const tcp = await Deno.connect({ hostname, port });
  tcp.setNoDelay(true);
  if (transport === "tcp") return tcp;
  // As the library's TLS transport does: NODELAY on the TCP socket, then the upgrade.
  const tls = await Deno.startTls(tcp, { hostname, caCerts: [certPem!] });
  await tls.handshake();
  return tls;
}

function rawFrames(count: number, size: number, ackOnly: boolean): Uint8Array {
  const out = new Uint8Array(count * (4 + size));
  const view = new DataView(out.buffer);
  for (let i = 0; i < count; i++) {
    view.setUint32(i * (4 + size), (size | (ackOnly ? ACK_ONLY : 0)) >>> 0);
    out.fill(i & 0xff, i * (4 + size) + 4, (i + 1) * (4 + size));
  }
  return out;
}

function rawRtt(conn: Deno.Conn): Promise<Figure> {
  const frame = rawFrames(1, 64, false);
  const reply = new Uint8Array(4096);
  return roundTrips(async () => {
    await writeAll(conn, frame);
    let got = 0;
    while (got < frame.length) {
      const n = await conn.read(reply);
      if (n === null) throw new Error("Server closed the connection");
      got += n;
    }
  });
}

/**
 * Keeps between `window / 2` and `window` messages in flight: writes `window / 2` frames as one
 * buffer whenever enough replies arrived. Replies are counted by bytes (`replySize` each).
 */
async function rawWindow(
  conn: Deno.Conn,
  size: number,
  window: number,
  ackOnly: boolean,
): Promise<{ rate: number; count: number }> {
  const half = Math.max(1, Math.floor(window / 2));
  const chunk = rawFrames(half, size, ackOnly);
  const replySize = ackOnly ? 4 : 4 + size;
  let sent = 0;
  let received = 0;
  let replyBytes = 0;
  let running = true;
  let wake: (() => void) | null = null;
  const writer = (async () => {
    while (running) {
      if (sent - received > half) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      sent += half;
      await writeAll(conn, chunk);
    }
  })();
  const reader = (async () => {
    const buffer = new Uint8Array(256 * 1024);
    while (running || received < sent) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error("Server closed the connection");
      replyBytes += n;
      received = Math.floor(replyBytes / replySize);
      if (wake !== null && sent - received <= half) {
        const resolve: () => void = wake;
        wake = null;
        resolve();
      }
    }
  })();
  const result = await countWindow(() => received);
  running = false;
  const resolve = wake as (() => void) | null;
  resolve?.();
  await writer;
  await reader;
  return result;
}

async function runRaw(measure: Measure): Promise<Figure> {
  const conn = await rawConnect();
  try {
    switch (measure) {
      case "rtt":
        return await rawRtt(conn);
      case "stream64":
      case "request64": {
        const { rate, count } = await rawWindow(conn, 64, 4096, false);
        return { measure, value: rate, unit: "msg/s", count };
      }
      case "stream1k": {
        const { rate, count } = await rawWindow(conn, 1024, 1024, false);
        return { measure, value: rate, unit: "msg/s", count };
      }
      case "bulk64k": {
        const { rate, count } = await rawWindow(conn, 65536, 64, true);
        return { measure, value: (rate * 65536) / 1e6, unit: "MB/s", count };
      }
      case "bulk1m": {
        const { rate, count } = await rawWindow(conn, 1 << 20, 4, true);
        return { measure, value: (rate * (1 << 20)) / 1e6, unit: "MB/s", count };
      }
      default:
        throw new TypeError(`Cannot run measure "${measure}" here`);
    }
  } finally {
    conn.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Library client.

const clientKey: KeyPair = generateKeyPair();

function libraryOptions(): ConnectOptions {
  return {
    address,
    config: {
      transport: {
        kind: transport,
        encryptionEnabled: kind.includes("noise"),
        tlsBackend: kind.startsWith("lib-node-") ? "node" : "auto",
      },
      client: { autoReconnect: false },
      logging: { logLevel: "error" },
    },
    ...(publicKey === undefined ? {} : { security: { serverKeys: [publicKey] } }),
    ...(transport === "tls"
      ? {
        tls: {
          caCerts: [certPem!],
          ...(kind === "lib-node-mtls" ? { cert: certPem!, key: { path: keyPath! } } : {}),
        },
      }
      : {}),
  };
}

function custom(command: string, size: number): Message {
  return { type: "custom", command, payload: new Uint8Array(size).fill(7) };
}

function libraryRtt(client: Client): Promise<Figure> {
  const message = custom("E", 64);
  return roundTrips(() => client.request(message));
}

/**
 * Un-numbered messages, replies in order, read with `receiveBatch()`: between `window / 2` and
 * `window` in flight.
 */
async function libraryWindow(
  client: Client,
  message: Message,
  window: number,
): Promise<{ rate: number; count: number }> {
  const half = Math.max(1, Math.floor(window / 2));
  let sent = 0;
  let received = 0;
  let running = true;
  const loop = (async () => {
    while (running || received < sent) {
      if (running && sent - received <= half) {
        for (let i = 0; i < half; i++) client.send(message);
        sent += half;
      }
      const replies = await client.receiveBatch();
      if (replies === null) throw new Error("Server closed the connection");
      received += replies.length;
    }
  })();
  const result = await countWindow(() => received);
  running = false;
  await loop;
  return result;
}

/** Numbered requests: between `window / 2` and `window` promises pending. */
async function libraryRequests(
  client: Pick<Client, "request">,
  message: Message,
  window: number,
): Promise<{ rate: number; count: number }> {
  const half = Math.max(1, Math.floor(window / 2));
  let inflight = 0;
  let done = 0;
  let running = true;
  let failure: unknown;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const onDone = () => {
    inflight--;
    done++;
    if (!running) {
      if (inflight === 0) finish();
    } else if (inflight <= half) {
      issue();
    }
  };
  const onError = (error: unknown) => {
    failure ??= error;
    running = false;
    inflight--;
    if (inflight === 0) finish();
  };
  const issue = () => {
    while (running && inflight < window) {
      inflight++;
      client.request(message).then(onDone, onError);
    }
  };
  issue();
  const result = await countWindow(() => done);
  running = false;
  if (inflight > 0) await finished;
  if (failure !== undefined) throw failure;
  return result;
}

async function runLibrary(measure: Measure): Promise<Figure> {
  const client = await connect(libraryOptions());
  try {
    switch (measure) {
      case "rtt":
        return await libraryRtt(client);
      case "stream64": {
        const { rate, count } = await libraryWindow(client, custom("E", 64), 4096);
        return { measure, value: rate, unit: "msg/s", count };
      }
      case "stream1k": {
        const { rate, count } = await libraryWindow(client, custom("E", 1024), 1024);
        return { measure, value: rate, unit: "msg/s", count };
      }
      case "request64": {
        const { rate, count } = await libraryRequests(client, custom("E", 64), 4096);
        return { measure, value: rate, unit: "msg/s", count };
      }
      case "bulk64k": {
        const { rate, count } = await libraryWindow(client, custom("A", 65536), 64);
        return { measure, value: (rate * 65536) / 1e6, unit: "MB/s", count };
      }
      case "bulk1m": {
        const { rate, count } = await libraryWindow(client, custom("A", 1 << 20), 4);
        return { measure, value: (rate * (1 << 20)) / 1e6, unit: "MB/s", count };
      }
      case "stream64k":
        return await libraryStream(client);
      case "hol":
        return await headOfLine(client);
      case "pool64":
        return await pooledRequests(measure, POOL_CONNECTIONS);
      case "pool64x1":
        return await pooledRequests(measure, 1);
      default:
        throw new TypeError(`Cannot run measure "${measure}" here`);
    }
  } finally {
    await client.close();
  }
}

/** Connections of the pool in the `pool64` measure. */
const POOL_CONNECTIONS = 4;

/**
 * `pool64` and `pool64x1`: the `request64` load (64 B numbered requests, 2048 to 4096 pending)
 * through a pool of `connections` connections, opened before the measure (`pool64x1`, one
 * connection, is the pool's own cost; `pool64` adds the split over several connections).
 */
async function pooledRequests(measure: Measure, connections: number): Promise<Figure> {
  const { address: _, ...options } = libraryOptions();
  await using pool = createPool({
    ...options,
    address,
    minConnections: connections,
    maxConnections: connections,
    maxRequestsPerConnection: 4096 / connections,
    maxWaiters: 4096,
    healthCheck: { idleMs: 0, intervalMs: 0 },
  });
  const started = performance.now();
  while (pool.stats().open < connections) {
    if (performance.now() - started > 10_000) throw new Error("The pool did not open in 10 s");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  if (startAt !== undefined) {
    const wait = startAt - Date.now();
    if (wait < 0) throw new Error(`The pool opened ${-wait} ms after --start-at`);
    await sleep(wait);
  }
  const { rate, count } = await libraryRequests(pool, custom("E", 64), 4096);
  return { measure, value: rate, unit: "msg/s", count };
}

/** One stream, 64 KiB writes back to back: MB/s of bytes the server's window let through. */
async function libraryStream(client: Client): Promise<Figure> {
  const stream = await client.openStream("SINK");
  const writer = stream.writable.getWriter();
  const chunk = new Uint8Array(65536).fill(7);
  let written = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      await writer.write(chunk);
      written++;
    }
    await writer.close();
  })();
  const { rate, count } = await countWindow(() => written);
  running = false;
  await loop;
  const answer = await new Response(stream.readable).text();
  if (Number(answer) !== written * 65536) {
    throw new Error(`Stream server counted ${answer} bytes, the client wrote ${written * 65536}`);
  }
  return { measure: "stream64k", value: (rate * 65536) / 1e6, unit: "MB/s", count };
}

/**
 * Head-of-line blocking: numbered PINGs one at a time on an idle connection, then the same while
 * two 8 MiB replies are always in flight on that connection (the issue 13 measure).
 */
async function headOfLine(client: Client): Promise<Figure> {
  const ping: Message = { type: "ping" };
  const idle = await roundTrips(() => client.request(ping));
  let running = true;
  let bigReplies = 0;
  const big = custom("BIG", 0);
  const loadStarted = now();
  const load = Array.from({ length: 2 }, async () => {
    while (running) {
      const reply = await client.request(big);
      if (reply.type !== "custom" || reply.payload.length !== 8 << 20) {
        throw new Error("BIG reply is not 8 MiB");
      }
      bigReplies++;
    }
  });
  const loaded = await roundTrips(() => client.request(ping));
  // The 8 MiB replies completed while the PINGs ran (warm-up included): what latency costs bulk.
  const replyRate = (bigReplies * 8) / ((now() - loadStarted) / 1000);
  running = false;
  await Promise.all(load);
  if (bigReplies === 0) throw new Error("No 8 MiB reply completed during the measure");
  return {
    measure: "hol",
    value: loaded.value,
    p99: loaded.p99!,
    idle: idle.value,
    idleP99: idle.p99!,
    replies: replyRate,
    unit: "µs",
    count: loaded.count,
  };
}

// ---------------------------------------------------------------------------------------------
// The js-libp2p-noise peer: full XX handshakes and one-way 64 KiB bulk.

type PeerModule = typeof import("./libp2p_peer.ts");
let peerModule: PeerModule | undefined;
let peerClient: Awaited<ReturnType<PeerModule["libp2pClient"]>> | undefined;

async function peer(): Promise<[PeerModule, NonNullable<typeof peerClient>]> {
  peerModule ??= await import("./libp2p_peer.ts");
  peerClient ??= await peerModule.libp2pClient(address, publicKey!);
  return [peerModule, peerClient];
}

async function runPeer(measure: Measure): Promise<Figure> {
  const [module, client] = await peer();
  if (measure !== "bulk64k") throw new TypeError(`Cannot run measure "${measure}" here`);
  const { rate, count } = await module.libp2pBulk(client, 65536, 64, countWindow);
  return { measure, value: (rate * 65536) / 1e6, unit: "MB/s", count };
}

// ---------------------------------------------------------------------------------------------
// Handshakes per second and idle connections.

/** One native TLS 1.3 handshake, then close (the baseline). */
async function tlsHandshake(): Promise<void> {
  const index = address.lastIndexOf(":");
  const conn = await Deno.connectTls({
    hostname: address.slice(0, index),
    port: Number(address.slice(index + 1)),
    caCerts: [certPem!],
  });
  await conn.handshake();
  conn.close();
}

/** An open Noise session made with the library's client handshake over a plain socket. */
interface LeanSession {
  conn: Deno.Conn;
  /** Whether the handshake resumed a session from a ticket. */
  resumed: boolean;
  /** Reads the session's first records until the server's ticket arrived and is stored. */
  readTicket(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Runs the library's client handshake (`XX` with a static key, or `NK`) over a plain socket.
 * The lean client keeps the load generator's own cost down, so the figures are the server's
 * rather than the client's (`connect()` adds configuration and reconnection machinery that a
 * load generator does not need).
 */
async function noiseSession(
  pattern: "XX" | "NK",
  resumption?: ClientResumption,
): Promise<LeanSession> {
  const index = address.lastIndexOf(":");
  const conn = await Deno.connect({
    hostname: address.slice(0, index),
    port: Number(address.slice(index + 1)),
  });
  conn.setNoDelay(true);
  const write = (payloads: Uint8Array[]) =>
    writeAll(conn, encodePackets(payloads.map((payload) => ({ version: 2, payload }))));
  try {
    const decoder = new PacketDecoder();
    const queue: Packet[] = [];
    const buffer = new Uint8Array(4096);
    const io: HandshakeIO = {
      async readPacket() {
        while (queue.length === 0) {
          const n = await conn.read(buffer);
          if (n === null) return null;
          queue.push(...decoder.push(buffer.subarray(0, n)));
        }
        return queue.shift()!;
      },
      writePackets: write,
    };
    const result = await clientHandshake(io, {
      pattern,
      serverKeys: [publicKey!],
      ...(pattern === "XX" ? { staticKey: clientKey } : {}),
      ...(resumption === undefined ? {} : { resumption }),
    });
    const channel = result.channel;
    return {
      conn,
      resumed: result.resumed,
      async readTicket() {
        const receiver = result.ticketReceiver;
        while (receiver?.waiting === true) {
          const packet = await io.readPacket(AbortSignal.timeout(10_000));
          if (packet === null) throw new Error("The server closed before sending its ticket");
          const record = channel!.open(packet.payload);
          if (record.type !== "data") continue;
          for (const message of decodeBatch(record.body)) {
            if (message.type === "ticket") receiver.accept(message);
          }
        }
      },
      async close() {
        try {
          await write(channel!.sealClose(0, "bye"));
        } finally {
          conn.close();
        }
      },
    };
  } catch (error) {
    conn.close();
    throw error;
  }
}

/** One full Noise XX handshake, then an authenticated CLOSE. */
async function noiseHandshake(): Promise<void> {
  const session = await noiseSession("XX");
  await session.close();
}

/** Every worker's tickets (one name per worker, so that each resumes its own chain). */
const tickets = new SessionTicketStore();
/** Resumption attempts that fell back to a full handshake after a worker's first session. */
let fellBack = 0;

/**
 * A worker's resumed handshakes against the library's server started with `--resumption`
 * (P5c). Its first call runs a full XX handshake (in the warm-up) to get a ticket; every later
 * call resumes with the newest ticket (tickets are single-use), waits for the session's first
 * record (the new ticket, so that the next call can resume again), then sends CLOSE. A call
 * that had to fall back to a full handshake is counted in `fellBack`, and the measure fails.
 */
function resumer(worker: number): () => Promise<void> {
  const resumption = { store: tickets, name: `${address}#${worker}` };
  let first = true;
  return async () => {
    const session = await noiseSession("XX", resumption);
    try {
      if (!first && !session.resumed) fellBack++;
      first = false;
      await session.readTicket();
    } finally {
      await session.close();
    }
  };
}

async function handshakes(measure: "handshakes" | "handshakes-resumed"): Promise<Figure> {
  let done = 0;
  let running = true;
  let one = isRaw(kind) ? tlsHandshake : noiseHandshake;
  if (isPeer(kind)) {
    const [module, client] = await peer();
    one = () => module.libp2pHandshake(client);
  }
  const workers = Array.from({ length: concurrency }, async (_, worker) => {
    const run = measure === "handshakes-resumed" ? resumer(worker) : one;
    while (running) {
      await run();
      done++;
    }
  });
  const result = await countWindow(() => done);
  running = false;
  await Promise.all(workers);
  if (fellBack > 0) {
    throw new Error(`${fellBack} resumed handshakes fell back to a full handshake`);
  }
  return {
    measure,
    value: result.rate,
    unit: "handshakes/s",
    count: result.count,
    total: done,
  };
}

async function idle(): Promise<void> {
  const open: { close(): unknown }[] = [];
  let next = 0;
  const opener = async () => {
    while (next < connections) {
      next++;
      if (isRaw(kind)) {
        open.push(await rawConnect());
      } else {
        open.push(await noiseSession("NK"));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, opener));
  console.log(JSON.stringify({ opened: open.length }));
  for await (const line of lines(Deno.stdin.readable)) {
    if (line === "close") break;
  }
  await Promise.all(open.map(async (c) => {
    try {
      await c.close();
    } catch {
      // Closing anyway.
    }
  }));
}

// ---------------------------------------------------------------------------------------------

if (measures.includes("idle")) {
  await idle();
} else {
  const figures: Figure[] = [];
  for (const measure of measures) {
    if (measure === "handshakes" || measure === "handshakes-resumed") {
      figures.push(await handshakes(measure));
    } else if (isPeer(kind)) figures.push(await runPeer(measure));
    else if (isRaw(kind)) figures.push(await runRaw(measure));
    else figures.push(await runLibrary(measure));
  }
  console.log(JSON.stringify({ figures }));
}
Deno.exit(0);
