/**
 * The attacker process of the hostile-peer benchmark. `--attack` chooses what it does; it
 * prints one JSON line with what it did and what the server answered, then exits (`preauth`
 * first prints a `holding` line and waits for `release` on stdin). It exits when stdin closes
 * or after `--max-seconds`.
 *
 * - `preauth --sockets N --announce L [--body B]`: N raw sockets each send a handshake packet
 *   header announcing an L-byte payload and then B bytes of it (default: all but the last byte,
 *   at most 1 MiB), and stay open.
 * - `logflood --peers K --records R --messages M [--seconds S]`: K authenticated raw peers (NK
 *   handshake) each send R DATA records of M one-byte messages of an unknown type (un-numbered,
 *   nobody handles them); with `--seconds`, each peer reconnects and does it again until S
 *   seconds have passed.
 * - `keyupdate --mode pairs|consecutive --per-connection P [--seconds S] [--peers K]`: K raw
 *   peers send P (KEY_UPDATE, DATA(ping)) pairs, or P consecutive KEY_UPDATE records, in one
 *   write; with `--seconds`, they reconnect until S seconds have passed.
 * - `flood --mode handshake|replay --seconds S --concurrency C`: C loops that open a socket and
 *   run a complete NK handshake (`handshake`), or replay one recorded first handshake message
 *   and wait for the server's answer (`replay`), then close it, for S seconds.
 *
 * - `burn --seconds S`: no traffic, only CPU for S seconds (the control of the floods: what
 *   honest clients lose to processes that merely share the machine).
 *
 * Started by `bench/hostile/main.ts`; not meant to be run by hand.
 *
 * @module
 */

import { encodeBatch } from "../../src/core/batch.ts";
import type { Message } from "../../src/core/message.ts";
import { encodePackets, HEADER_SIZE } from "../../src/core/packet.ts";
import { decodeBatch } from "../../src/core/batch.ts";
import { clientHandshake } from "../../src/secure/handshake_runner.ts";
import { FrameReader } from "../../src/service/frame_reader.ts";
import { type RawPeer, rawSecurePeer } from "../../tests/_hostile_peer.ts";
import { exitAfter, fromHex, median, parseArgs, report, sleep, StdinLines } from "./common.ts";

const args = parseArgs(Deno.args);
exitAfter(Number(args.get("max-seconds") ?? 120), `attacker ${args.get("attack")}`);
const attack = args.get("attack");
const port = Number(args.get("port"));
const serverKey = fromHex(args.get("key") ?? "");
const stdin = new StdinLines(() => Deno.exit(0));

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Writes `data`; returns the bytes the socket took before an error (the server closed). */
async function writeCounting(conn: Deno.Conn, data: Uint8Array): Promise<number> {
  let offset = 0;
  try {
    while (offset < data.length) offset += await conn.write(data.subarray(offset));
  } catch {
    // Reset or broken pipe: the server closed the socket.
  }
  return offset;
}

// ---------------------------------------------------------------------------------------------
// preauth

async function preauth(): Promise<void> {
  const sockets = Number(args.get("sockets") ?? 200);
  const announce = Number(args.get("announce"));
  const body = Number(args.get("body") ?? Math.min(announce - 1, 1024 * 1024));
  const header = new Uint8Array(HEADER_SIZE);
  header.set([0x4e, 0x50, 0x52, 0x4f, 2]);
  new DataView(header.buffer).setUint32(5, announce);
  const chunk = new Uint8Array(64 * 1024);
  const t0 = performance.now();
  const conns = await Promise.all(
    Array.from({ length: sockets }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  const closedAfter: (number | undefined)[] = new Array(sockets).fill(undefined);
  // A read that ends (EOF or reset) means the server closed the socket.
  const watchers = conns.map(async (conn, i) => {
    const buffer = new Uint8Array(1024);
    try {
      while ((await conn.read(buffer)) !== null) {
        // The server sends nothing before the hello is complete.
      }
    } catch {
      // Reset, or closed by us.
    }
    closedAfter[i] ??= performance.now() - t0;
  });
  const written = await Promise.all(conns.map(async (conn, i) => {
    let n = await writeCounting(conn, header);
    while (n < HEADER_SIZE + body && closedAfter[i] === undefined) {
      const size = Math.min(chunk.length, HEADER_SIZE + body - n);
      const wrote = await writeCounting(conn, chunk.subarray(0, size));
      n += wrote;
      if (wrote < size) break;
    }
    return n;
  }));
  const writtenMs = performance.now() - t0;
  await sleep(400); // let the server read what the sockets took
  const closed = closedAfter.filter((t) => t !== undefined) as number[];
  report({
    holding: true,
    sockets,
    announce,
    bodyTarget: body,
    bytesWritten: written.reduce((a, b) => a + b, 0),
    medianBytesWritten: median(written),
    writtenMs,
    closedByServer: closed.length,
    medianCloseMs: median(closed),
  });
  while ((await stdin.next()) !== "release") {
    // Wait for the orchestrator to measure.
  }
  for (const conn of conns) closeQuietly(conn);
  await Promise.all(watchers);
  report({ released: true });
}

// ---------------------------------------------------------------------------------------------
// Authenticated raw peers

interface Ending {
  /** The server's CLOSE, when it sent one. */
  close?: { code: number; reason: string };
  /** Messages in the DATA records the server sent. */
  messages: number;
  /** Whether the server ended the connection within the time limit. */
  ended: boolean;
  /** Milliseconds from the end of our write to the end of the connection. */
  ms: number;
}

/** Reads the server's records until its socket ends, at most `timeoutMs`. */
async function readUntilEnd(peer: RawPeer, timeoutMs: number): Promise<Ending> {
  const t0 = performance.now();
  const ending: Ending = { messages: 0, ended: false, ms: 0 };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(peer.conn);
  }, timeoutMs);
  try {
    for (;;) {
      const packets = await peer.reader.read();
      if (packets === null) break;
      for (const packet of packets) {
        if (ending.close !== undefined) continue;
        const opened = peer.channel.open(packet.payload);
        if (opened.type === "data") ending.messages += decodeBatch(opened.body).length;
        if (opened.type === "close") ending.close = { code: opened.code, reason: opened.reason };
      }
    }
  } catch {
    // Reset by the server, or closed by the timer.
  } finally {
    clearTimeout(timer);
  }
  ending.ended = !timedOut;
  ending.ms = performance.now() - t0;
  closeQuietly(peer.conn);
  return ending;
}

/** Totals over the connections of an authenticated attack. */
class Tally {
  connections = 0;
  handshakeFailures = 0;
  bytesWritten = 0;
  recordsWritten = 0;
  notEnded = 0;
  readonly closeCodes: Record<string, number> = {};
  readonly reasons: string[] = [];
  readonly endMs: number[] = [];
  readonly perConnection: number[] = [];

  add(ending: Ending, bytes: number, records: number, serverCount: number): void {
    this.connections++;
    this.bytesWritten += bytes;
    this.recordsWritten += records;
    if (!ending.ended) this.notEnded++;
    const code = ending.close === undefined ? "none" : String(ending.close.code);
    this.closeCodes[code] = (this.closeCodes[code] ?? 0) + 1;
    if (ending.close !== undefined && this.reasons.length < 3) {
      if (!this.reasons.includes(ending.close.reason)) this.reasons.push(ending.close.reason);
    }
    this.endMs.push(ending.ms);
    this.perConnection.push(serverCount);
  }

  summary(): Record<string, unknown> {
    return {
      connections: this.connections,
      handshakeFailures: this.handshakeFailures,
      bytesWritten: this.bytesWritten,
      recordsWritten: this.recordsWritten,
      notEndedByServer: this.notEnded,
      closeCodes: this.closeCodes,
      reasons: this.reasons,
      medianEndMs: median(this.endMs),
      maxEndMs: Math.max(0, ...this.endMs),
      perConnectionMedian: median(this.perConnection),
      perConnectionTotal: this.perConnection.reduce((a, b) => a + b, 0),
    };
  }
}

/**
 * Runs `peers` loops that connect, write what `build` seals and read until the server ends
 * the connection; once, or again and again for `seconds`.
 */
async function authenticatedAttack(
  build: (peer: RawPeer) => Uint8Array[],
  count: (ending: Ending) => number,
): Promise<void> {
  const peers = Number(args.get("peers") ?? 1);
  const seconds = Number(args.get("seconds") ?? 0);
  const tally = new Tally();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(Array.from({ length: peers }, async () => {
    do {
      let peer: RawPeer;
      try {
        peer = await rawSecurePeer(port, serverKey);
      } catch {
        // Refused (admission) or failed: an attacker just tries again.
        tally.handshakeFailures++;
        await sleep(5);
        continue;
      }
      const records = build(peer);
      const data = encodePackets(records.map((payload) => ({ version: 2, payload })));
      const bytes = await writeCounting(peer.conn, data);
      const ending = await readUntilEnd(peer, 15_000);
      tally.add(ending, bytes, records.length, count(ending));
    } while (performance.now() < deadline);
  }));
  report({ ...tally.summary(), seconds: (performance.now() - t0) / 1000 });
}

function logflood(): Promise<void> {
  const records = Number(args.get("records") ?? 5);
  const messages = Number(args.get("messages") ?? 65_000);
  const unknown: Message = { type: "unknown", tag: 0x7f };
  const body = encodeBatch(Array.from({ length: messages }, () => unknown));
  return authenticatedAttack((peer) => {
    const out: Uint8Array[] = [];
    for (let i = 0; i < records; i++) peer.channel.sealData(body, out);
    return out;
  }, (ending) => ending.messages);
}

function keyupdate(): Promise<void> {
  const mode = args.get("mode") ?? "pairs";
  const per = Number(args.get("per-connection") ?? 1000);
  const ping = encodeBatch([{ type: "ping" }]);
  return authenticatedAttack((peer) => {
    const out: Uint8Array[] = [];
    for (let i = 0; i < per; i++) {
      peer.channel.sealKeyUpdate(out);
      if (mode === "pairs") peer.channel.sealData(ping, out);
    }
    return out;
  }, (ending) => {
    // The server's reason names the record that broke the rule: records 0..n were opened.
    const match = /record "(\d+)"/.exec(ending.close?.reason ?? "");
    return match === null ? NaN : Number(match[1]) + 1;
  });
}

// ---------------------------------------------------------------------------------------------
// Handshake floods

async function flood(): Promise<void> {
  const mode = args.get("mode") ?? "handshake";
  const seconds = Number(args.get("seconds") ?? 5);
  const concurrency = Number(args.get("concurrency") ?? 32);
  let firstMessage: Uint8Array | undefined;
  if (mode === "replay") {
    // Record the first handshake message of one real handshake.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const reader = new FrameReader(conn, { maxPayloadSize: 70_000 });
    try {
      await clientHandshake({
        readPacket: () => reader.readPacket(),
        writePackets: async (payloads) => {
          const data = encodePackets(payloads.map((payload) => ({ version: 2, payload })));
          firstMessage ??= data;
          await writeCounting(conn, data);
        },
      }, { serverKeys: [serverKey] });
    } finally {
      closeQuietly(conn);
    }
  }
  let ok = 0;
  let refused = 0;
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const buffer = new Uint8Array(4096);
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) {
      let conn: Deno.Conn;
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
      } catch {
        errors++;
        await sleep(5);
        continue;
      }
      try {
        if (mode === "replay") {
          await writeCounting(conn, firstMessage!);
          const n = await conn.read(buffer);
          if (n !== null && n > 0) ok++;
          else refused++;
        } else {
          const reader = new FrameReader(conn, { maxPayloadSize: 70_000 });
          await clientHandshake({
            readPacket: () => reader.readPacket(),
            writePackets: async (payloads) => {
              const data = encodePackets(payloads.map((payload) => ({ version: 2, payload })));
              let offset = 0;
              while (offset < data.length) offset += await conn.write(data.subarray(offset));
            },
          }, { serverKeys: [serverKey] });
          ok++;
        }
      } catch {
        refused++;
      } finally {
        closeQuietly(conn);
      }
    }
  }));
  const elapsed = (performance.now() - t0) / 1000;
  report({ mode, ok, refused, errors, seconds: elapsed, okPerSecond: ok / elapsed });
}

/** The control of the floods: only takes CPU (no traffic), for as long as a flood runs. */
function burn(): void {
  const seconds = Number(args.get("seconds") ?? 5);
  const deadline = performance.now() + seconds * 1000;
  let spins = 0;
  while (performance.now() < deadline) spins++;
  report({ mode: "burn", ok: 0, refused: 0, errors: 0, spins, seconds });
}

switch (attack) {
  case "preauth":
    await preauth();
    break;
  case "logflood":
    await logflood();
    break;
  case "keyupdate":
    await keyupdate();
    break;
  case "flood":
    await flood();
    break;
  case "burn":
    burn();
    break;
  default:
    throw new TypeError(`Unknown attack "${attack}"`);
}
Deno.exit(0);
