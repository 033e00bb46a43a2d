/**
 * Incremental packet decoding for byte streams, and Web Streams adapters that work on batches.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import {
  encodePackets,
  HEADER_SIZE,
  type Packet,
  type PacketLimitOptions,
  readPacketHeader,
  resolveMaxPayloadSize,
} from "./packet.ts";
import { Slab } from "./slab.ts";

/**
 * The smallest buffer started for a packet that does not arrive whole: enough for the small
 * packets of a handshake, small enough that a stalled peer costs little.
 */
const MIN_PAYLOAD_BLOCK = 4096;
/** Packets up to this size (a handshake packet included) grow in one step past the first block. */
const DIRECT_GROWTH = 128 * 1024;

/** The placeholder payload of an idle decoder (never handed out: `#begin` allocates). */
const NO_PAYLOAD = new Uint8Array(0);

/** Options for {@linkcode PacketDecoder}. */
export interface PacketDecoderOptions extends PacketLimitOptions {
  /**
   * Payloads of at most this many bytes are copied out of the pushed chunk (into a shared 64 KiB
   * slab, which is much cheaper than one allocation per copy), so that a small packet does not
   * keep a large read buffer alive; larger payloads that arrive whole inside one chunk are
   * returned as views of it (zero-copy). Default 4096; 0 never copies.
   */
  copyThreshold?: number;
  /**
   * Set to `true` when the caller reuses the chunk it pushes (for example a read buffer): every
   * payload is then copied out. Default `false`: pushed chunks belong to the decoder.
   */
  reusesInput?: boolean;
}

/**
 * An incremental packet decoder that accepts any segmentation of a byte stream. The header is
 * validated as soon as its 9 bytes are there, so a packet announcing more than the limit is
 * rejected before a single payload byte is buffered. Memory held for an incomplete packet grows
 * with the bytes actually received, never with the length a header claims.
 *
 * After it throws, the decoder is dead: every later call throws the same error.
 *
 * @example Decode packets from arbitrary chunks
 * ```ts
 * import { encodePacket, PacketDecoder } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodePacket({ version: 2, payload: new Uint8Array([1, 2, 3]) });
 * const decoder = new PacketDecoder();
 * assert.deepEqual(decoder.push(bytes.subarray(0, 4)), []);
 * const [packet] = decoder.push(bytes.subarray(4));
 * assert.deepEqual([...packet!.payload], [1, 2, 3]);
 * ```
 */
export class PacketDecoder {
  #max: number;
  #copyThreshold: number;
  #reusesInput: boolean;
  /** Bytes of a partial header. */
  #header: Uint8Array | undefined; // Only for a header split across chunks.
  #headerFill = 0;
  /** Payload length of the packet being assembled, or -1 while reading a header. */
  #length = -1;
  #version = 0;
  /** The payload being assembled, grown as bytes arrive. */
  #payload: Uint8Array = NO_PAYLOAD;
  #payloadFill = 0;
  #preallocateLimit = 0;
  #error: unknown = undefined;
  #slab: Slab | undefined; // Made on first copy: idle decoders hold no buffer.
  /** Where the last push stopped in its chunk (for {@linkcode PacketDecoder.pushOne}). */
  #consumed = 0;

  /**
   * Creates a decoder.
   *
   * @param options Limits and copy behaviour.
   */
  constructor(options?: PacketDecoderOptions) {
    this.#max = resolveMaxPayloadSize(options);
    const threshold = options?.copyThreshold ?? 4096;
    if (!Number.isSafeInteger(threshold) || threshold < 0) {
      throw new RangeError(
        `Cannot use copy threshold "${threshold}": it must be a non-negative integer`,
      );
    }
    this.#copyThreshold = threshold;
    this.#reusesInput = options?.reusesInput ?? false;
  }

  /**
   * The payload limit that headers are checked against. It may be changed between pushes: a
   * connection reads its handshake with a small limit and raises it once the peer is
   * authenticated, so that no unauthenticated peer can make it buffer a large packet.
   *
   * @example Raise the limit after a handshake
   * ```ts
   * import { encodePacket, PacketDecoder } from "@npro/network-protocol/core";
   * import assert from "node:assert/strict";
   *
   * const decoder = new PacketDecoder({ maxPayloadSize: 16 });
   * decoder.maxPayloadSize = 1024;
   * const [packet] = decoder.push(encodePacket({ version: 2, payload: new Uint8Array(100) }));
   * assert.equal(packet!.payload.length, 100);
   * ```
   */
  get maxPayloadSize(): number {
    return this.#max;
  }

  set maxPayloadSize(value: number) {
    this.#max = resolveMaxPayloadSize({ maxPayloadSize: value });
  }

  /**
   * Packets of at most this many bytes get a buffer of their final size as soon as a sixteenth
   * of them arrived, instead of growing with the bytes received (default 0: always grow). A
   * connection raises it once its session starts, so that large packets are read straight into
   * their final buffer ({@linkcode PacketDecoder.directBuffer}) with no growth copies; a peer
   * that announces a large packet and stalls then holds at most 16 times what it sent, and never
   * more than this limit.
   *
   * @example Allocate large packets at once
   * ```ts
   * import { encodePacket, PacketDecoder } from "@npro/network-protocol/core";
   * import assert from "node:assert/strict";
   *
   * const decoder = new PacketDecoder();
   * decoder.preallocateLimit = 1024 * 1024;
   * const bytes = encodePacket({ version: 2, payload: new Uint8Array(100_000) });
   * decoder.push(bytes.subarray(0, 50_000));
   * // The header is 9 bytes: 49,991 payload bytes arrived, the buffer has room for the rest.
   * assert.equal(decoder.directBuffer(1)!.length, 100_000 - 49_991);
   * ```
   */
  get preallocateLimit(): number {
    return this.#preallocateLimit;
  }

  set preallocateLimit(value: number) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(
        `Cannot use preallocation limit "${value}": it must be a non-negative integer`,
      );
    }
    this.#preallocateLimit = value;
  }

  /**
   * The free part of the buffer of a packet in progress, when at least `minimum` bytes of it are
   * still missing: the caller reads the stream straight into it and reports how many bytes it
   * wrote with {@linkcode PacketDecoder.commitDirect}, saving the copy through a read buffer.
   * Its length never exceeds what the packet still needs, so a read into it never takes bytes
   * of the next packet.
   *
   * @example Read the rest of a packet in place
   * ```ts
   * import { encodePacket, PacketDecoder } from "@npro/network-protocol/core";
   * import assert from "node:assert/strict";
   *
   * const decoder = new PacketDecoder();
   * const bytes = encodePacket({ version: 2, payload: new Uint8Array(10_000).fill(7) });
   * decoder.push(bytes.subarray(0, 5_000));
   * const target = decoder.directBuffer(1024)!;
   * const rest = bytes.subarray(5_000, 5_000 + target.length);
   * target.set(rest);
   * const packets = decoder.commitDirect(rest.length);
   * assert.equal(packets.length, rest.length === bytes.length - 5_000 ? 1 : 0);
   * ```
   *
   * @param minimum The fewest missing bytes worth a direct read.
   * @returns The free bytes of the packet's buffer, or `undefined` (no packet in progress, fewer
   * than `minimum` bytes missing, or a failed decoder).
   */
  directBuffer(minimum: number): Uint8Array | undefined {
    if (this.#error !== undefined || this.#length < 0) return undefined;
    const fill = this.#payloadFill;
    if (this.#length - fill < minimum) return undefined;
    if (this.#payload.length === fill) this.#ensure(fill + 1);
    return this.#payload.subarray(fill, this.#payload.length);
  }

  /**
   * Records `n` bytes written into the buffer returned by {@linkcode PacketDecoder.directBuffer}.
   *
   * @param n The bytes written at its start.
   * @returns The completed packet, or nothing yet.
   * @throws {RangeError} For more bytes than that buffer held.
   */
  commitDirect(n: number): Packet[] {
    const fill = this.#payloadFill + n;
    if (this.#length < 0 || !Number.isInteger(n) || n < 0 || fill > this.#payload.length) {
      throw new RangeError(`Cannot commit "${n}" bytes: no direct buffer holds them`);
    }
    this.#payloadFill = fill;
    if (fill < this.#length) return [];
    const out: Packet[] = [];
    this.#complete(out);
    return out;
  }

  /** The number of bytes held for a packet that is not complete yet. */
  get bufferedBytes(): number {
    return this.#length < 0 ? this.#headerFill : HEADER_SIZE + this.#payloadFill;
  }

  /** Whether the decoder holds part of a packet (a stream ending now would be truncated). */
  get hasPartialPacket(): boolean {
    return this.bufferedBytes > 0;
  }

  /**
   * Feeds a chunk of the stream and returns every packet it completes, in order.
   *
   * @param chunk The next bytes of the stream.
   * @returns The packets completed by this chunk (possibly none).
   * @throws {ProtocolError} `InvalidHeader`, `UnsupportedVersion` or `OversizedPacket`.
   */
  push(chunk: Uint8Array): Packet[] {
    return this.#guarded(chunk, Infinity);
  }

  /**
   * Feeds a chunk but completes at most one packet. The bytes that follow that packet are not
   * parsed (their headers are not checked yet) and are returned as `rest`, a view of `chunk`,
   * to be pushed later, for example once {@linkcode PacketDecoder.maxPayloadSize} was raised.
   *
   * @example Take the first packet, keep the rest unparsed
   * ```ts
   * import { encodePackets, PacketDecoder } from "@npro/network-protocol/core";
   * import assert from "node:assert/strict";
   *
   * const bytes = encodePackets([
   *   { version: 2, payload: new Uint8Array([1]) },
   *   { version: 2, payload: new Uint8Array(100) },
   * ]);
   * const decoder = new PacketDecoder({ maxPayloadSize: 10 });
   * const { packet, rest } = decoder.pushOne(bytes);
   * assert.deepEqual([...packet!.payload], [1]);
   * decoder.maxPayloadSize = 100;
   * assert.equal(decoder.push(rest)[0]!.payload.length, 100);
   * ```
   *
   * @param chunk The next bytes of the stream.
   * @returns The packet it completes, if any, and the unparsed rest of `chunk`.
   * @throws {ProtocolError} `InvalidHeader`, `UnsupportedVersion` or `OversizedPacket`.
   */
  pushOne(chunk: Uint8Array): { packet: Packet | undefined; rest: Uint8Array } {
    const [packet] = this.#guarded(chunk, 1);
    return { packet, rest: chunk.subarray(this.#consumed) };
  }

  #guarded(chunk: Uint8Array, maxPackets: number): Packet[] {
    if (this.#error !== undefined) throw this.#error;
    try {
      return this.#push(chunk, maxPackets);
    } catch (error) {
      this.#error = error;
      this.#payload = NO_PAYLOAD;
      throw error;
    }
  }

  /**
   * Declares the end of the stream.
   *
   * @throws {ProtocolError} `Truncated` if part of a packet is still buffered.
   */
  finish(): void {
    if (this.#error !== undefined) throw this.#error;
    if (this.hasPartialPacket) {
      this.#error = new ProtocolError(
        "Truncated",
        `Stream ended inside a packet: ${this.bufferedBytes} bytes of it were received`,
      );
      throw this.#error;
    }
  }

  #push(chunk: Uint8Array, maxPackets: number): Packet[] {
    const out: Packet[] = [];
    let offset = 0;
    const end = chunk.length;
    while (offset < end && out.length < maxPackets) {
      if (this.#length < 0) {
        if (this.#headerFill === 0 && end - offset >= HEADER_SIZE) {
          // Fast path: a whole header inside the chunk.
          const length = readPacketHeader(chunk, offset, this.#max);
          const version = chunk[offset + 4]!;
          const start = offset + HEADER_SIZE;
          if (end - start >= length) {
            out.push({ version, payload: this.#take(chunk, start, length) });
            offset = start + length;
            continue;
          }
          this.#begin(version, length, end - start);
          offset = start;
          continue;
        }
        const n = Math.min(HEADER_SIZE - this.#headerFill, end - offset);
        const header = this.#header ??= new Uint8Array(HEADER_SIZE);
        header.set(chunk.subarray(offset, offset + n), this.#headerFill);
        this.#headerFill += n;
        offset += n;
        if (this.#headerFill < HEADER_SIZE) break;
        const length = readPacketHeader(header, 0, this.#max);
        this.#headerFill = 0;
        this.#begin(header[4]!, length, end - offset);
        if (length === 0) this.#complete(out);
        continue;
      }
      const need = this.#length - this.#payloadFill;
      const n = Math.min(need, end - offset);
      this.#ensure(this.#payloadFill + n);
      this.#payload.set(chunk.subarray(offset, offset + n), this.#payloadFill);
      this.#payloadFill += n;
      offset += n;
      if (this.#payloadFill === this.#length) this.#complete(out);
    }
    this.#consumed = offset;
    return out;
  }

  #take(chunk: Uint8Array, start: number, length: number): Uint8Array {
    if (this.#reusesInput || length <= this.#copyThreshold) {
      return (this.#slab ??= new Slab()).copy(chunk, start, start + length);
    }
    return chunk.subarray(start, start + length);
  }

  #begin(version: number, length: number, available: number): void {
    this.#version = version;
    this.#length = length;
    this.#payloadFill = 0;
    // Never allocate what a header merely claims: start with what arrived (at least a small
    // block) and grow with received bytes, so a peer that announces a large packet and stalls
    // costs only what it sent.
    this.#payload = new Uint8Array(
      length <= this.#preallocateLimit && available * 16 >= length
        ? length
        : Math.min(length, Math.max(available, MIN_PAYLOAD_BLOCK)),
    );
  }

  #ensure(size: number): void {
    if (size <= this.#payload.length) return;
    // A packet of at most DIRECT_GROWTH bytes grows to its full length at once, once more than
    // the first block arrived: doubling through 8, 16, 32 and 64 KiB left about 124 KiB of freed
    // copies per stalled handshake in the allocator (bench:hostile), against 74 KiB this way.
    const grown = new Uint8Array(
      this.#length <= DIRECT_GROWTH ||
        (this.#length <= this.#preallocateLimit && size * 16 >= this.#length)
        ? this.#length
        : Math.min(this.#length, Math.max(size, this.#payload.length * 2)),
    );
    grown.set(this.#payload.subarray(0, this.#payloadFill));
    this.#payload = grown;
  }

  #complete(out: Packet[]): void {
    out.push({ version: this.#version, payload: this.#payload });
    this.#payload = NO_PAYLOAD;
    this.#payloadFill = 0;
    this.#length = -1;
  }
}

/**
 * A `TransformStream` from stream bytes to batches of packets: each input chunk yields one
 * batch with every packet it completes (chunks that complete none yield nothing). The stream
 * errors with a {@linkcode ProtocolError} on bad input, and with `Truncated` if the input ends
 * inside a packet.
 *
 * @example Decode a byte stream
 * ```ts
 * import { encodePackets, PacketDecoderStream } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodePackets([
 *   { version: 2, payload: new Uint8Array([1]) },
 *   { version: 2, payload: new Uint8Array([2]) },
 * ]);
 * const batches = await Array.fromAsync(
 *   ReadableStream.from([bytes]).pipeThrough(new PacketDecoderStream()),
 * );
 * assert.equal(batches.length, 1);
 * assert.equal(batches[0]!.length, 2);
 * ```
 */
export class PacketDecoderStream extends TransformStream<Uint8Array, Packet[]> {
  /**
   * Creates the stream.
   *
   * @param options Limits and copy behaviour of the underlying {@linkcode PacketDecoder}.
   */
  constructor(options?: PacketDecoderOptions) {
    const decoder = new PacketDecoder(options);
    super({
      transform(chunk, controller) {
        const packets = decoder.push(chunk);
        if (packets.length > 0) controller.enqueue(packets);
      },
      flush() {
        decoder.finish();
      },
    });
  }
}

/**
 * A `TransformStream` from packets (one, or a batch) to bytes: each input becomes ONE output
 * chunk, so that a batch costs a single write downstream.
 *
 * @example Encode a batch
 * ```ts
 * import { HEADER_SIZE, PacketEncoderStream } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const chunks = await Array.fromAsync(
 *   ReadableStream.from([[
 *     { version: 2, payload: new Uint8Array([1]) },
 *     { version: 2, payload: new Uint8Array([2]) },
 *   ]]).pipeThrough(new PacketEncoderStream()),
 * );
 * assert.equal(chunks.length, 1);
 * assert.equal(chunks[0]!.length, 2 * (HEADER_SIZE + 1));
 * ```
 */
export class PacketEncoderStream extends TransformStream<Packet | Packet[], Uint8Array> {
  /**
   * Creates the stream.
   *
   * @param options The payload limit (default 16 MiB).
   */
  constructor(options?: PacketLimitOptions) {
    const max = resolveMaxPayloadSize(options);
    super({
      transform(input, controller) {
        const packets = Array.isArray(input) ? input : [input];
        if (packets.length > 0) controller.enqueue(encodePackets(packets, { maxPayloadSize: max }));
      },
    });
  }
}
