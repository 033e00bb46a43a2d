/**
 * The wire format without I/O: packets (`NPRO` ‖ version ‖ u32 length ‖ payload) and their
 * incremental decoder, the Web Streams codec, the encoding of messages, and batches (one or more
 * messages in a packet's payload, each entry possibly compressed). Everything here is synchronous
 * and works on bytes, so it runs over any transport, in a test or in a worker.
 *
 * Most applications never need this module: `serve` and `connect` from the root frame, encrypt
 * and decode for them. The message types (`Message`, `RequestMessage`, ...) are in the root.
 *
 * @example Frame a batch of messages and read it back from arbitrary chunks
 * ```ts
 * import {
 *   decodeBatch,
 *   encodeBatch,
 *   encodePacket,
 *   PacketDecoder,
 *   PROTOCOL_VERSION,
 * } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const payload = encodeBatch([{ type: "ping" }, { type: "echo", text: "hi" }]);
 * const wire = encodePacket({ version: PROTOCOL_VERSION, payload });
 *
 * const decoder = new PacketDecoder();
 * const packets = [...decoder.push(wire.subarray(0, 5)), ...decoder.push(wire.subarray(5))];
 * assert.equal(packets.length, 1);
 * assert.deepEqual(decodeBatch(packets[0]!.payload), [{ type: "ping" }, { type: "echo", text: "hi" }]);
 * ```
 *
 * @module
 */

export {
  decodePacket,
  encodedPacketSize,
  encodePacket,
  encodePackets,
  HEADER_SIZE,
  MAGIC_BYTES,
  MAX_PAYLOAD_SIZE,
  PROTOCOL_VERSION,
  readPacketHeader,
  SUPPORTED_VERSIONS,
  writePacket,
  writePacketHeader,
} from "./packet.ts";
export type { Packet, PacketHeaderOptions, PacketLimitOptions } from "./packet.ts";
export { PacketDecoder, PacketDecoderStream, PacketEncoderStream } from "./codec.ts";
export type { PacketDecoderOptions } from "./codec.ts";
export {
  decodeMessage,
  encodedMessageSize,
  encodeMessage,
  MessageTag,
  opcodeOf,
  RESERVED_OPCODES,
} from "./message.ts";
export { COMPRESSION_FLAG_MASK, decodeBatch, encodeBatch } from "./batch.ts";
export type {
  BodyCompressor,
  BodyDecompressor,
  DecodeBatchOptions,
  EncodeBatchOptions,
} from "./batch.ts";
export { COMPRESSION_IDS, compressionFeatureBit } from "./compression_ids.ts";
