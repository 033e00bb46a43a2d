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

/**
 * The largest read buffer while the peer is not authenticated yet (handshake mode): handshake
 * packets are small, so a peer that sends a lot before it is authenticated makes the reader
 * hold at most this much besides the one packet being assembled.
 */
export const HANDSHAKE_READ_BUFFER = 4096;

/**
 * Once the session started, a packet of at most this many bytes gets its final buffer as soon as
 * a sixteenth of it arrived, and the rest of it is read straight into that buffer.
 */
export const PREALLOCATE_LIMIT = 1024 * 1024;

/** The rest of a packet is read straight into its buffer when at least this much is missing. */
export const DIRECT_READ = 16 * 1024;

/** Options for {@linkcode FrameReader}. */
export interface FrameReaderOptions {
  /**
   * The packet payload limit (default 16 MiB). For a reader that starts with a handshake, pass
   * the handshake limit here and raise it with {@linkcode FrameReader.startSession}.
   */
  maxPayloadSize?: number;
}

/**
 * Reads batches of packets from a connection. The payloads of a batch are views into the read
 * buffer and stay valid only until the next call to {@linkcode FrameReader.read}: process them
 * (decrypt, decode) before reading again.
 *
 * @example Read packets from a socket
 * ```ts
 * import { FrameReader } from "./frame_reader.ts";
 * import { encodePackets } from "@npro/network-protocol/core";
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
  #bytesRead = 0;
  /** Handshake mode (from the first readPacket to startSession): small read buffer. */
  #handshake = false;
  /** Bytes read after the last packet {@linkcode FrameReader.readPacket} returned, not parsed. */
  #unparsed: Uint8Array | undefined;

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
   * Bytes read from the connection since the session started ({@linkcode FrameReader.startSession};
   * before it, since the reader was made), framing included.
   */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** The packet payload limit that headers are checked against now. */
  get maxPayloadSize(): number {
    return this.#decoder.maxPayloadSize;
  }

  /**
   * Ends handshake mode once the peer is authenticated: raises the packet limit to the
   * session's. Bytes that arrived after the last handshake packet are parsed by the next
   * {@linkcode FrameReader.read}, under the new limit.
   *
   * @param maxPayloadSize The session's packet payload limit.
   */
  startSession(maxPayloadSize: number): void {
    this.#handshake = false;
    // What arrived after the last handshake packet belongs to the session.
    this.#bytesRead = this.#unparsed?.length ?? 0;
    this.#decoder.maxPayloadSize = maxPayloadSize;
    this.#decoder.preallocateLimit = PREALLOCATE_LIMIT;
  }

  /**
   * Reads until at least one packet is complete, or the stream ends.
   *
   * @returns The completed packets, or `null` at a clean end of stream.
   * @throws {ProtocolError} For bad framing, `Truncated` when the stream ends inside a packet.
   */
  read(): Promise<Packet[] | null> {
    const unparsed = this.#unparsed;
    if (unparsed !== undefined) {
      this.#unparsed = undefined;
      let packets: Packet[];
      try {
        packets = this.#decoder.push(unparsed);
      } catch (error) {
        return Promise.reject(error);
      }
      if (packets.length > 0) return Promise.resolve(packets);
    }
    return this.#next();
  }

  /**
   * Reads until a packet completes. A chain of promise callbacks rather than an async function:
   * an idle connection waits in one pending read with no suspended async frames of its own
   * (idle memory, docs/PERFORMANCE.md).
   */
  #next(): Promise<Packet[] | null> {
    if (this.#eof) return Promise.resolve(null);
    const direct = this.#handshake ? undefined : this.#decoder.directBuffer(DIRECT_READ);
    if (direct !== undefined) return this.#nextDirect(direct);
    const buffer = this.#buffer;
    let pending: Promise<number | null>;
    try {
      pending = this.#conn.read(buffer);
    } catch (cause) {
      return Promise.reject(readFailed(cause));
    }
    return pending.then((n) => {
      const chunk = this.#chunk(buffer, n);
      if (chunk === null) return null;
      const packets = this.#decoder.push(chunk);
      return packets.length > 0 ? packets : this.#next();
    }, (cause) => {
      throw readFailed(cause);
    });
  }

  /** Reads the rest of a large packet straight into its buffer (no copy from the read buffer). */
  #nextDirect(target: Uint8Array): Promise<Packet[] | null> {
    let pending: Promise<number | null>;
    try {
      pending = this.#conn.read(target);
    } catch (cause) {
      return Promise.reject(readFailed(cause));
    }
    return pending.then((n) => {
      if (n === null) {
        this.#eof = true;
        this.#decoder.finish();
        return null;
      }
      this.#bytesRead += n;
      const packets = this.#decoder.commitDirect(n);
      return packets.length > 0 ? packets : this.#next();
    }, (cause) => {
      throw readFailed(cause);
    });
  }

  /**
   * Reads one packet (for the handshake; it puts the reader in handshake mode, where the read
   * buffer stays at most {@linkcode HANDSHAKE_READ_BUFFER} bytes). The bytes of the same read
   * that follow the packet are kept unparsed, so that their headers are checked against the
   * limit in force when they are parsed: by a later call, or by
   * {@linkcode FrameReader.startSession}. A pending read cannot be cancelled: close the
   * connection to end it.
   *
   * @returns The packet, or `null` at end of stream.
   */
  async readPacket(): Promise<Packet | null> {
    this.#handshake = true;
    for (;;) {
      let chunk: Uint8Array | null | undefined = this.#unparsed;
      this.#unparsed = undefined;
      if (chunk === undefined) {
        if (this.#eof) return null;
        chunk = await this.#readChunk();
        if (chunk === null) return null;
      }
      const { packet, rest } = this.#decoder.pushOne(chunk);
      // What follows the packet is parsed later, with the limit then in force: it must survive
      // the next read into the same buffer, so it is copied (it is rarely more than a packet).
      if (rest.length > 0) this.#unparsed = chunk === this.#buffer ? rest.slice() : rest;
      if (packet !== undefined) return packet;
    }
  }

  /** One read into the buffer: the bytes read, or `null` at a clean end of stream. */
  async #readChunk(): Promise<Uint8Array | null> {
    const buffer = this.#buffer;
    let n: number | null;
    try {
      n = await this.#conn.read(buffer);
    } catch (cause) {
      throw readFailed(cause);
    }
    return this.#chunk(buffer, n);
  }

  /** The bytes a read of `n` put in `buffer`, or `null` at the end of the stream. */
  #chunk(buffer: Uint8Array, n: number | null): Uint8Array | null {
    if (n === null) {
      this.#eof = true;
      this.#decoder.finish();
      return null;
    }
    this.#bytesRead += n;
    this.#adapt(n, buffer.length);
    return buffer.subarray(0, n);
  }

  #adapt(n: number, size: number): void {
    if (n === size) {
      this.#smallReads = 0;
      const max = this.#handshake ? HANDSHAKE_READ_BUFFER : MAX_READ_BUFFER;
      if (++this.#fullReads >= 2 && size < max) {
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

function readFailed(cause: unknown): ProtocolError {
  return new ProtocolError("ConnectionClosed", "Connection failed while reading", { cause });
}
