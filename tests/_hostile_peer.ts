/**
 * A hostile peer for tests: a raw TCP socket that runs a real Noise handshake with the
 * library's own client driver, then writes hand-made records (anything a modified client could
 * send) and reads what the server answers, record by record.
 */
import assert from "node:assert/strict";
import { encodeBatch } from "../src/core/batch.ts";
import type { Message } from "../src/core/message.ts";
import { encodePackets, type Packet } from "../src/core/packet.ts";
import { ProtocolError } from "../src/errors.ts";
import type { SecureChannel } from "../src/secure/channel.ts";
import { clientHandshake } from "../src/secure/handshake_runner.ts";
import { FrameReader } from "../src/service/frame_reader.ts";

/** An authenticated raw session with a server. */
export interface RawPeer extends AsyncDisposable {
  conn: Deno.Conn;
  channel: SecureChannel;
  reader: FrameReader;
  /** Writes record payloads as version-2 packets, in one write. */
  write(records: Uint8Array[]): Promise<void>;
  /** Seals batches of messages into DATA records and writes them in one write. */
  send(batches: Message[][]): Promise<void>;
}

/**
 * Runs an NK handshake with the server at `port` and returns the raw session; `features` are
 * the hello's feature bits (0x4: multiplexing).
 */
export async function rawSecurePeer(
  port: number,
  serverKey: Uint8Array,
  features = 0,
): Promise<RawPeer> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new FrameReader(conn, { maxPayloadSize: 70_000 });
  const write = async (records: Uint8Array[]) => {
    const data = encodePackets(records.map((payload) => ({ version: 2, payload })));
    let offset = 0;
    while (offset < data.length) offset += await conn.write(data.subarray(offset));
  };
  try {
    const result = await clientHandshake({
      readPacket: () => reader.readPacket(),
      writePackets: (payloads) => write(payloads),
    }, { serverKeys: [serverKey], features });
    reader.startSession(16 * 1024 * 1024);
    const channel = result.channel!;
    return {
      conn,
      channel,
      reader,
      write,
      send: (batches) => {
        const records: Uint8Array[] = [];
        for (const batch of batches) channel.sealData(encodeBatch(batch), records);
        return write(records);
      },
      [Symbol.asyncDispose]() {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
        return Promise.resolve();
      },
    };
  } catch (error) {
    conn.close();
    throw error;
  }
}

/** What the server's last records said before its socket closed. */
export interface ServerEnding {
  /** The CLOSE record's code and reason, when the server sent one. */
  close?: { code: number; reason: string };
  /** DATA records received before the end. */
  dataRecords: number;
}

/**
 * Reads and opens the server's records until its socket ends; fails when it is still open after
 * `timeoutMs` (so a test proves that the server closed the connection, within that time).
 */
export async function readUntilServerCloses(
  peer: RawPeer,
  timeoutMs: number,
): Promise<ServerEnding> {
  const ending: ServerEnding = { dataRecords: 0 };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    peer.conn.close();
  }, timeoutMs);
  try {
    for (;;) {
      let packets: Packet[] | null;
      try {
        packets = await peer.reader.read();
      } catch (error) {
        if (timedOut) break;
        if (error instanceof ProtocolError && error.code === "ConnectionClosed") return ending;
        throw error;
      }
      if (packets === null) return ending;
      for (const packet of packets) {
        if (ending.close !== undefined) continue;
        const opened = peer.channel.open(packet.payload);
        if (opened.type === "data") ending.dataRecords++;
        if (opened.type === "close") ending.close = { code: opened.code, reason: opened.reason };
      }
    }
  } finally {
    clearTimeout(timer);
  }
  assert.fail(`the server did not close the connection within ${timeoutMs} ms`);
}
