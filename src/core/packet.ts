/**
 * The packet: the framing unit of the protocol. A packet is a 9-byte header (the magic bytes
 * `NPRO`, a version byte and a big-endian u32 payload length) followed by the payload.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/** The four magic bytes that start every packet: ASCII `NPRO` (`4E 50 52 4F`). */
export const MAGIC_BYTES: readonly [0x4e, 0x50, 0x52, 0x4f] = [0x4e, 0x50, 0x52, 0x4f];

/** The protocol version this library writes. Versions 1 (the original's framing) and 2 parse. */
export const PROTOCOL_VERSION = 2;

/** The packet versions {@linkcode decodePacket} and the stream decoder accept. */
export const SUPPORTED_VERSIONS: readonly number[] = [1, 2];

/** The size of the packet header in bytes: 4 magic + 1 version + 4 length. */
export const HEADER_SIZE = 9;

/** The default largest payload a packet may carry: 16 MiB. */
export const MAX_PAYLOAD_SIZE: number = 16 * 1024 * 1024;

/** The largest payload length the header can express (u32). */
const U32_MAX = 0xffff_ffff;

/**
 * A packet: a version and a payload. The payload of a decoded packet may be a view into the
 * bytes it was decoded from; copy it if those bytes are reused.
 */
export interface Packet {
  /** The packet version (1 or 2). */
  version: number;
  /** The payload bytes. */
  payload: Uint8Array;
}

/** Options for decoding packets. */
export interface PacketLimitOptions {
  /**
   * The largest payload accepted, in bytes (default {@linkcode MAX_PAYLOAD_SIZE}). A header
   * announcing more is rejected with `OversizedPacket` before any payload byte is buffered.
   */
  maxPayloadSize?: number;
}

/** Resolves and validates a `maxPayloadSize` option. */
export function resolveMaxPayloadSize(options?: PacketLimitOptions): number {
  const max = options?.maxPayloadSize ?? MAX_PAYLOAD_SIZE;
  if (!Number.isSafeInteger(max) || max < 0 || max > U32_MAX) {
    throw new RangeError(
      `Cannot use max payload size "${max}": it must be an integer from 0 to ${U32_MAX}`,
    );
  }
  return max;
}

/**
 * Validates the 9-byte header that starts at `offset` of `bytes` and returns the payload length
 * it announces. The caller guarantees that `HEADER_SIZE` bytes are available.
 *
 * @example Read a header
 * ```ts
 * import { readPacketHeader } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const header = new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 2, 0, 0, 0, 5]);
 * assert.equal(readPacketHeader(header, 0, 1024), 5);
 * ```
 *
 * @param bytes The buffer holding the header.
 * @param offset Where the header starts.
 * @param maxPayloadSize The largest payload length accepted.
 * @returns The payload length.
 * @throws {ProtocolError} `InvalidHeader`, `UnsupportedVersion` or `OversizedPacket`.
 */
export function readPacketHeader(
  bytes: Uint8Array,
  offset: number,
  maxPayloadSize: number,
): number {
  if (
    bytes[offset] !== 0x4e || bytes[offset + 1] !== 0x50 || bytes[offset + 2] !== 0x52 ||
    bytes[offset + 3] !== 0x4f
  ) {
    throw new ProtocolError(
      "InvalidHeader",
      `Packet does not start with the magic bytes "NPRO": got "${
        hex(bytes.subarray(offset, offset + 4))
      }"`,
    );
  }
  const version = bytes[offset + 4]!;
  if (!SUPPORTED_VERSIONS.includes(version)) {
    throw new ProtocolError(
      "UnsupportedVersion",
      `Packet version "${version}" is not supported: expected ${SUPPORTED_VERSIONS.join(" or ")}`,
    );
  }
  const length = ((bytes[offset + 5]! << 24) >>> 0) + (bytes[offset + 6]! << 16) +
    (bytes[offset + 7]! << 8) + bytes[offset + 8]!;
  if (length > maxPayloadSize) {
    throw new ProtocolError(
      "OversizedPacket",
      `Packet payload length "${length}" exceeds the limit "${maxPayloadSize}"`,
    );
  }
  return length;
}

/**
 * Writes a packet, header then payload, into `target` at `offset` and returns the offset just
 * past it. Use it to put several packets into one buffer for a single write. The caller checks
 * the version and the length (as {@linkcode encodePacket} does).
 *
 * @example Write two packets into one buffer
 * ```ts
 * import { encodedPacketSize, writePacket } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const a = { version: 2, payload: new Uint8Array([1]) };
 * const b = { version: 2, payload: new Uint8Array([2, 3]) };
 * const out = new Uint8Array(encodedPacketSize(a.payload) + encodedPacketSize(b.payload));
 * const end = writePacket(out, writePacket(out, 0, a), b);
 * assert.equal(end, out.length);
 * ```
 *
 * @param target The buffer to write into; it must have room for the whole packet.
 * @param offset Where to start writing.
 * @param packet The packet: its version byte and its payload.
 * @returns The offset just past the written packet.
 */
export function writePacket(target: Uint8Array, offset: number, packet: Packet): number {
  const payload = packet.payload;
  putHeader(target, offset, payload.length, packet.version);
  target.set(payload, offset + HEADER_SIZE);
  return offset + HEADER_SIZE + payload.length;
}

/** Options of {@linkcode writePacketHeader}. */
export interface PacketHeaderOptions {
  /** The version byte (default {@linkcode PROTOCOL_VERSION}). */
  version?: number;
}

/**
 * Writes the 9-byte header of a packet announcing `length` payload bytes at `offset` of
 * `target`, for writers that put the payload in place themselves. The caller checks the length.
 *
 * @example Write a header, then the payload after it
 * ```ts
 * import { decodePacket, HEADER_SIZE, writePacketHeader } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const out = new Uint8Array(HEADER_SIZE + 2);
 * writePacketHeader(out, 0, 2);
 * out.set([7, 8], HEADER_SIZE);
 * assert.deepEqual([...decodePacket(out).payload], [7, 8]);
 * ```
 *
 * @param target The buffer to write into.
 * @param offset Where the header starts.
 * @param length The payload length it announces.
 * @param options The version byte.
 */
export function writePacketHeader(
  target: Uint8Array,
  offset: number,
  length: number,
  options?: PacketHeaderOptions,
): void {
  putHeader(target, offset, length, options?.version ?? PROTOCOL_VERSION);
}

/** The one writer of packet headers: magic, version, big-endian u32 length. */
function putHeader(target: Uint8Array, offset: number, length: number, version: number): void {
  target[offset] = 0x4e;
  target[offset + 1] = 0x50;
  target[offset + 2] = 0x52;
  target[offset + 3] = 0x4f;
  target[offset + 4] = version;
  target[offset + 5] = length >>> 24;
  target[offset + 6] = (length >>> 16) & 0xff;
  target[offset + 7] = (length >>> 8) & 0xff;
  target[offset + 8] = length & 0xff;
}

/**
 * Returns the encoded size of a packet carrying `payload`: {@linkcode HEADER_SIZE} plus its length.
 *
 * @example Size of a packet
 * ```ts
 * import { encodedPacketSize } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(encodedPacketSize(new Uint8Array(5)), 14);
 * ```
 *
 * @param payload The payload.
 * @returns The number of bytes of the encoded packet.
 */
export function encodedPacketSize(payload: Uint8Array): number {
  return HEADER_SIZE + payload.length;
}

/**
 * Encodes a packet into a new buffer: header then payload (the original's `to_bytes`).
 *
 * @example Encode a packet
 * ```ts
 * import { encodePacket } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodePacket({ version: 2, payload: new Uint8Array([1, 2, 3]) });
 * assert.deepEqual([...bytes], [0x4e, 0x50, 0x52, 0x4f, 2, 0, 0, 0, 3, 1, 2, 3]);
 * ```
 *
 * @param packet The packet to encode.
 * @param options The payload limit (default 16 MiB).
 * @returns The encoded bytes.
 * @throws {RangeError} If the version is not 1 or 2.
 * @throws {ProtocolError} `OversizedPacket` if the payload exceeds the limit.
 */
export function encodePacket(packet: Packet, options?: PacketLimitOptions): Uint8Array {
  checkEncodable(packet.version, packet.payload.length, resolveMaxPayloadSize(options));
  const out = new Uint8Array(HEADER_SIZE + packet.payload.length);
  writePacket(out, 0, packet);
  return out;
}

/**
 * Encodes several packets into ONE buffer, so that a batch costs a single write.
 *
 * @example Encode a batch
 * ```ts
 * import { encodePackets, HEADER_SIZE } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodePackets([
 *   { version: 2, payload: new Uint8Array([1]) },
 *   { version: 2, payload: new Uint8Array([2]) },
 * ]);
 * assert.equal(bytes.length, 2 * (HEADER_SIZE + 1));
 * ```
 *
 * @param packets The packets, in order.
 * @param options The payload limit (default 16 MiB).
 * @returns The concatenated encoded packets.
 */
export function encodePackets(
  packets: readonly Packet[],
  options?: PacketLimitOptions,
): Uint8Array {
  const max = resolveMaxPayloadSize(options);
  let size = 0;
  for (const packet of packets) {
    checkEncodable(packet.version, packet.payload.length, max);
    size += HEADER_SIZE + packet.payload.length;
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const packet of packets) offset = writePacket(out, offset, packet);
  return out;
}

/**
 * Decodes exactly one packet from `bytes` (the original's `from_bytes`), checking the magic, the
 * version, the length limit and that the buffer holds exactly the announced payload. The returned
 * payload is a view into `bytes` (zero-copy).
 *
 * @example Decode the original's documented example
 * ```ts
 * import { decodePacket } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 0x01, 0, 0, 0, 5, 1, 2, 3, 4, 5]);
 * const packet = decodePacket(bytes);
 * assert.equal(packet.version, 1);
 * assert.deepEqual([...packet.payload], [1, 2, 3, 4, 5]);
 * ```
 *
 * @param bytes The encoded packet.
 * @param options The payload limit (default 16 MiB).
 * @returns The packet.
 * @throws {ProtocolError} `Truncated` if bytes are missing, `InvalidHeader` for a bad magic or
 * trailing bytes, `UnsupportedVersion`, or `OversizedPacket`.
 */
export function decodePacket(bytes: Uint8Array, options?: PacketLimitOptions): Packet {
  const max = resolveMaxPayloadSize(options);
  if (bytes.length < HEADER_SIZE) {
    throw new ProtocolError(
      "Truncated",
      `Packet is truncated: got ${bytes.length} bytes, the header alone needs ${HEADER_SIZE}`,
    );
  }
  const length = readPacketHeader(bytes, 0, max);
  const end = HEADER_SIZE + length;
  if (bytes.length < end) {
    throw new ProtocolError(
      "Truncated",
      `Packet is truncated: its header announces ${length} payload bytes but only ${
        bytes.length - HEADER_SIZE
      } follow`,
    );
  }
  if (bytes.length > end) {
    throw new ProtocolError(
      "InvalidHeader",
      `Packet has ${
        bytes.length - end
      } bytes after the ${length} payload bytes its header announces`,
    );
  }
  return { version: bytes[4]!, payload: bytes.subarray(HEADER_SIZE, end) };
}

function checkEncodable(version: number, length: number, max: number): void {
  if (!SUPPORTED_VERSIONS.includes(version)) {
    throw new RangeError(
      `Cannot encode packet version "${version}": expected ${SUPPORTED_VERSIONS.join(" or ")}`,
    );
  }
  if (length > max) {
    throw new ProtocolError(
      "OversizedPacket",
      `Packet payload length "${length}" exceeds the limit "${max}"`,
    );
  }
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}
