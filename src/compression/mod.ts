/**
 * Compression: LZ4 and Zstd with size limits that make decompression bombs fail before any
 * allocation, and the per-message policy (threshold, skip rule, negotiation).
 *
 * A connection compresses by itself when its `compression` settings (the root's
 * `CompressionSettings`, or the `[compression]` configuration section) enable it. Use this module
 * to compress data of your own, to load the faster WebAssembly Zstd build at start-up
 * ({@linkcode initCompression}), or to plan compression for a stack built from `/core` and
 * `/secure`.
 *
 * @example Compress a body and refuse a bomb
 * ```ts
 * import { isProtocolError } from "@npro/network-protocol";
 * import { compress, decompress, initCompression } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * await initCompression(); // optional: faster Zstd for small bodies
 * const text = new TextEncoder().encode("log line 42: all good\n".repeat(100));
 * const packed = compress(text, { algorithm: "zstd" });
 * assert.deepEqual(decompress(packed, { algorithm: "zstd", maxSize: text.length }), text);
 * assert.throws(
 *   () => decompress(packed, { algorithm: "zstd", maxSize: 100 }),
 *   (error) => isProtocolError(error, "LimitExceeded"),
 * );
 * ```
 *
 * @module
 */

export { compress, decompress, initCompression } from "./compress.ts";
export type { CompressOptions, DecompressOptions, InitCompressionOptions } from "./compress.ts";
export {
  compressionFeatureBits,
  CompressionPolicy,
  createDecompressor,
  DEFAULT_COMPRESSION_THRESHOLD,
  DEFAULT_MAX_ENTROPY,
  DEFAULT_MIN_SAVINGS,
  localCompressionBits,
  negotiateCompression,
  planCompression,
  sampleEntropy,
} from "./policy.ts";
export type {
  CompressionPlan,
  CompressionPolicyOptions,
  CompressionStats,
  DecompressorOptions,
} from "./policy.ts";
export { inspectZstd } from "./zstd.ts";
export type { ZstdFrameInfo } from "./zstd.ts";
