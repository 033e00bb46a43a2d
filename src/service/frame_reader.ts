/**
 * The frame source of a connection: reads a `Deno.Conn` with `conn.read()` into a reused,
 * adaptively sized buffer (it never touches `conn.readable`, so half-close keeps working) and
 * decodes packets incrementally.
 *
 * @module
 */

import { PacketDecoder } from "../core/codec.ts";
import type { Packet } from "../core/packet.ts";
import { ProtocolError } from "../errors.ts";

/** The smallest read buffer: idle connections hold no more than this. */
export const MIN_READ_BUFFER = 1024;
/** The largest read buffer, reached after reads that fill the buffer. */
export const MAX_READ_BUFFER = 256 * 1024;

/** Options for {@linkcode FrameReader}. */
export interface FrameReaderOptions {
  /** The packet payload limit (default 16 MiB). */
  maxPayloadSize?: number;
}

/**
 * Reads batches of packets from a connection. The payloads of a batch are views into the read
 * buffer and stay valid only until the next call to {@linkcode FrameReader.read}: process them
 * (decrypt, decode) before reading again.
 *
 * @example Read packets from a socket
 * ```ts
 * import { encodePackets, FrameReader } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const server = await listener.accept();
 * await client.write(encodePackets([
 *   { version: 2, payload: new Uint8Array([1]) },
 *   { version: 2, payload: new Uint8Array([2]) },
 * ]));
 * client.close();
 * const reader = new FrameReader(server);
 * const packets = [];
 * for (let batch = await reader.read(); batch !== null; batch = await reader.read()) {
 *   packets.push(...batch.map((p) => p.payload[0]));
 * }
 * assert.deepEqual(packets, [1, 2]);
 * server.close();
 * listener.close();
 * ```
 */
export class FrameReader {
  readonly #conn: Deno.Conn;
  readonly #decoder: PacketDecoder;
  #buffer: Uint8Array = new Uint8Array(MIN_READ_BUFFER);
  #fullReads = 0;
  #smallReads = 0;
  #eof = false;
  /** Packets of the last batch not yet taken by {@linkcode FrameReader.readPacket}. */
  #queue: Packet[] = [];
  #queueIndex = 0;

  /**
   * Creates a reader.
   *
   * @param conn The connection to read.
   * @param options The packet limit.
   */
  constructor(conn: Deno.Conn, options?: FrameReaderOptions) {
    this.#conn = conn;
    this.#decoder = new PacketDecoder({
      ...(options?.maxPayloadSize === undefined ? {} : { maxPayloadSize: options.maxPayloadSize }),
      // Payloads are views of the read buffer: the caller consumes them before the next read.
      copyThreshold: 0,
    });
  }

  /** Whether the peer ended the stream. */
  get eof(): boolean {
    return this.#eof;
  }

  /** The bytes of an incomplete packet held by the decoder. */
  get bufferedBytes(): number {
    return this.#decoder.bufferedBytes;
  }

  /** Bytes currently allocated for reading. */
  get bufferSize(): number {
    return this.#buffer.length;
  }

  /**
   * Takes the packets that {@linkcode FrameReader.readPacket} left unconsumed.
   *
   * @returns The packets, in order.
   */
  takeQueued(): Packet[] {
    const rest = this.#queue.slice(this.#queueIndex);
    this.#queue = [];
    this.#queueIndex = 0;
    return rest;
  }

  /**
   * Reads until at least one packet is complete, or the stream ends.
   *
   * @returns The completed packets, or `null` at a clean end of stream.
   * @throws {ProtocolError} For bad framing, `Truncated` when the stream ends inside a packet.
   */
  async read(): Promise<Packet[] | null> {
    for (;;) {
      if (this.#eof) return null;
      const buffer = this.#buffer;
      let n: number | null;
      try {
        n = await this.#conn.read(buffer);
      } catch (cause) {
        throw new ProtocolError("ConnectionClosed", "Connection failed while reading", { cause });
      }
      if (n === null) {
        this.#eof = true;
        this.#decoder.finish();
        return null;
      }
      this.#adapt(n, buffer.length);
      const packets = this.#decoder.push(buffer.subarray(0, n));
      if (packets.length > 0) return packets;
    }
  }

  /**
   * Reads one packet (for the handshake). Packets of the same read that follow it stay queued
   * and are returned by later calls or {@linkcode FrameReader.takeQueued}. A pending read cannot
   * be cancelled: close the connection to end it.
   *
   * @returns The packet, or `null` at end of stream.
   */
  async readPacket(): Promise<Packet | null> {
    if (this.#queueIndex < this.#queue.length) return this.#queue[this.#queueIndex++]!;
    const packets = await this.read();
    if (packets === null) return null;
    // Later packets must survive the next read: copy them out of the read buffer.
    this.#queue = packets.map((p, i) =>
      i === 0 ? p : { version: p.version, payload: p.payload.slice() }
    );
    this.#queueIndex = 1;
    return this.#queue[0]!;
  }

  #adapt(n: number, size: number): void {
    if (n === size) {
      this.#smallReads = 0;
      if (++this.#fullReads >= 2 && size < MAX_READ_BUFFER) {
        this.#buffer = new Uint8Array(size * 4);
        this.#fullReads = 0;
      }
    } else if (size > MIN_READ_BUFFER && n < size >>> 4) {
      this.#fullReads = 0;
      if (++this.#smallReads >= 64) {
        this.#buffer = new Uint8Array(MIN_READ_BUFFER);
        this.#smallReads = 0;
      }
    }
  }
}
