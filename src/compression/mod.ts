/**
 * Compression: LZ4 and Zstd with size limits that make decompression bombs fail before any
 * allocation, and the per-message policy (threshold, skip rule, negotiation).
 *
 * @module
 */

export {
  compress,
  type CompressOptions,
  decompress,
  type DecompressOptions,
  initCompression,
  type InitCompressionOptions,
} from "./compress.ts";
export {
  compressionFeatureBits,
  type CompressionPlan,
  CompressionPolicy,
  type CompressionPolicyOptions,
  type CompressionSettings,
  type CompressionStats,
  createDecompressor,
  type DecompressorOptions,
  DEFAULT_COMPRESSION_THRESHOLD,
  DEFAULT_MAX_ENTROPY,
  DEFAULT_MIN_SAVINGS,
  localCompressionBits,
  negotiateCompression,
  planCompression,
  sampleEntropy,
} from "./policy.ts";
export { inspectZstd, type ZstdFrameInfo } from "./zstd.ts";
