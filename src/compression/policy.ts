/**
 * Compression policy for message bodies: which algorithm, from which size, when to skip, what
 * the peers negotiated, and the decompressor that enforces all of it on the receiving side.
 *
 * Compression is off by default ({@linkcode planCompression} with `enabled: false`, the
 * default, announces nothing and accepts nothing). When on, each side announces the algorithms
 * it accepts as handshake feature bits, a sender uses its configured algorithm when the peer
 * announced it (else the first shared one), and a receiver refuses any algorithm outside the
 * shared set with `PolicyViolation`. Only
 * DATA records carry message batches, so handshake, KEY_UPDATE and CLOSE records are never
 * compressed; tiny control messages (Ping, Pong, Cancel) fall under the threshold.
 *
 * The skip rule was chosen by measurement on mixed data (docs/PERFORMANCE.md, "Compression"):
 * an order-0 entropy estimate over a 512-byte sample spread across the body skips random,
 * encrypted and already-compressed bodies (7.4-7.6 bits/byte) without trying; everything else
 * is compressed and kept only when it saves at least 1/16 of the body.
 *
 * @module
 */

import type { BodyCompressor, BodyDecompressor } from "../core/batch.ts";
import {
  COMPRESSION_ALGORITHMS,
  COMPRESSION_IDS,
  type CompressionAlgorithm,
  compressionFeatureBit,
} from "../core/compression_ids.ts";
import { ProtocolError } from "../errors.ts";
import { lz4Compress, lz4Decompress } from "./lz4.ts";
import {
  ZSTD_DEFAULT_LEVEL,
  ZSTD_MAX_LEVEL,
  ZSTD_MIN_LEVEL,
  zstdCompress,
  zstdDecompress,
} from "./zstd.ts";

/** The default size below which bodies are sent uncompressed, in bytes (the original's). */
export const DEFAULT_COMPRESSION_THRESHOLD = 512;
/** The default entropy, in bits per byte of the sample, above which compression is not tried. */
export const DEFAULT_MAX_ENTROPY = 7.0;
/** The default share of the body that compression must save for the result to be kept. */
export const DEFAULT_MIN_SAVINGS = 1 / 16;

const SAMPLE_RUNS = 16;
const SAMPLE_RUN_LENGTH = 32;
const SAMPLE_SIZE = SAMPLE_RUNS * SAMPLE_RUN_LENGTH;

// c * log2(c) for every count a 512-byte sample can hold.
const C_LOG_C = new Float64Array(SAMPLE_SIZE + 1);
for (let c = 1; c <= SAMPLE_SIZE; c++) C_LOG_C[c] = c * Math.log2(c);
const counts = new Uint16Array(256);

/**
 * Estimates the order-0 Shannon entropy of `data` in bits per byte from a sample of at most
 * 512 bytes: the whole body when it is that small, otherwise 16 runs of 32 bytes spread evenly
 * across it, so a text header in front of a binary blob does not decide alone. Random and
 * already-compressed data measure about 7.5; text and JSON 4-5; base64 about 6.
 *
 * @example Text versus random bytes
 * ```ts
 * import { sampleEntropy } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * assert.ok(sampleEntropy(new TextEncoder().encode("abcabcabd".repeat(100))) < 2);
 * assert.ok(sampleEntropy(crypto.getRandomValues(new Uint8Array(4096))) > 7);
 * ```
 *
 * @param data The bytes to sample.
 * @returns The estimate, from 0 to 8 (0 for empty input).
 */
export function sampleEntropy(data: Uint8Array): number {
  const n = data.length;
  if (n === 0) return 0;
  counts.fill(0);
  let total: number;
  if (n <= SAMPLE_SIZE) {
    for (let i = 0; i < n; i++) counts[data[i]!]!++;
    total = n;
  } else {
    const step = Math.floor((n - SAMPLE_RUN_LENGTH) / (SAMPLE_RUNS - 1));
    for (let run = 0; run < SAMPLE_RUNS; run++) {
      const start = run * step;
      for (let i = start; i < start + SAMPLE_RUN_LENGTH; i++) counts[data[i]!]!++;
    }
    total = SAMPLE_SIZE;
  }
  let sum = 0;
  for (let b = 0; b < 256; b++) sum += C_LOG_C[counts[b]!]!;
  return Math.log2(total) - sum / total;
}

/** Options of {@linkcode CompressionPolicy}. */
export interface CompressionPolicyOptions {
  /** The algorithm to compress with (one the peer announced). */
  algorithm: CompressionAlgorithm;
  /** Bodies smaller than this many bytes are sent as they are (default 512). */
  threshold?: number;
  /** Zstd level (default 3); must be left out for LZ4. */
  level?: number;
  /** Bodies whose sampled entropy exceeds this, in bits per byte, are not tried (default 7.0; 8 tries every body). */
  maxEntropy?: number;
  /** The share of the body compression must save to be kept, from 0 to 1 (default 1/16). */
  minSavings?: number;
}

/** Counters of what a {@linkcode CompressionPolicy} did, for metrics. */
export interface CompressionStats {
  /** Bodies sent compressed. */
  compressed: number;
  /** Bodies under the threshold. */
  skippedSmall: number;
  /** Bodies whose sampled entropy was over the limit. */
  skippedEntropy: number;
  /** Bodies compressed, then sent as they were because the saving was too small. */
  skippedRatio: number;
  /** Bytes of the bodies sent compressed, before compression. */
  bytesIn: number;
  /** Bytes of the bodies sent compressed, after compression. */
  bytesOut: number;
}

/**
 * Decides, per message body, whether and how to compress it; plugs into `encodeBatch` as its
 * `compressor`. Synchronous, as the batch encoder requires. Bodies under the threshold, with a
 * sampled entropy over `maxEntropy`, or that compress by less than `minSavings` go uncompressed
 * (id 0). Each body is compressed on its own: no dictionary or state is shared between messages.
 *
 * @example Compress large, repetitive bodies only
 * ```ts
 * import { CompressionPolicy } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * const policy = new CompressionPolicy({ algorithm: "lz4" });
 * assert.equal(policy.compress(new Uint8Array(100)).id, 0); // under the threshold
 * const big = new TextEncoder().encode("log line 42: all good\n".repeat(100));
 * const { id, body } = policy.compress(big);
 * assert.equal(id, 1); // LZ4
 * assert.ok(body.length < big.length);
 * ```
 */
export class CompressionPolicy implements BodyCompressor {
  /** The algorithm bodies are compressed with. */
  readonly algorithm: CompressionAlgorithm;
  /** Bodies smaller than this many bytes are not compressed. */
  readonly threshold: number;
  /** The sampled entropy, in bits per byte, above which compression is not tried. */
  readonly maxEntropy: number;
  /** The share of the body that compression must save. */
  readonly minSavings: number;
  /** What the policy did so far. */
  readonly stats: CompressionStats = {
    compressed: 0,
    skippedSmall: 0,
    skippedEntropy: 0,
    skippedRatio: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
  readonly #id: number;
  readonly #level: number;

  /**
   * Creates a policy.
   *
   * @param options The algorithm, threshold, level and skip rule.
   */
  constructor(options: CompressionPolicyOptions) {
    const { algorithm } = options;
    if (!COMPRESSION_ALGORITHMS.includes(algorithm)) {
      throw new TypeError(`Unknown compression algorithm "${String(algorithm)}"`);
    }
    const threshold = options.threshold ?? DEFAULT_COMPRESSION_THRESHOLD;
    if (!Number.isSafeInteger(threshold) || threshold < 0) {
      throw new RangeError(`Compression threshold "${threshold}" is not a non-negative integer`);
    }
    const maxEntropy = options.maxEntropy ?? DEFAULT_MAX_ENTROPY;
    if (!(maxEntropy >= 0 && maxEntropy <= 8)) {
      throw new RangeError(`Maximum entropy "${maxEntropy}" is not from 0 to 8 bits per byte`);
    }
    const minSavings = options.minSavings ?? DEFAULT_MIN_SAVINGS;
    if (!(minSavings >= 0 && minSavings < 1)) {
      throw new RangeError(`Minimum savings "${minSavings}" is not from 0 up to 1`);
    }
    if (algorithm === "lz4" && options.level !== undefined) {
      throw new RangeError(`LZ4 has no compression levels, got level "${options.level}"`);
    }
    const level = options.level ?? ZSTD_DEFAULT_LEVEL;
    if (!Number.isInteger(level) || level < ZSTD_MIN_LEVEL || level > ZSTD_MAX_LEVEL) {
      throw new RangeError(
        `Zstd level "${level}" is not an integer from "${ZSTD_MIN_LEVEL}" to "${ZSTD_MAX_LEVEL}"`,
      );
    }
    this.algorithm = algorithm;
    this.threshold = threshold;
    this.maxEntropy = maxEntropy;
    this.minSavings = minSavings;
    this.#id = COMPRESSION_IDS[algorithm];
    this.#level = level;
  }

  /**
   * Compresses one message body, or returns id 0 and the same body to send it as it is.
   *
   * @param body The encoded message.
   * @returns The compression id for the entry's flags and the body to send.
   */
  compress(body: Uint8Array): { id: number; body: Uint8Array } {
    const stats = this.stats;
    const n = body.length;
    if (n < this.threshold || n === 0) {
      stats.skippedSmall++;
      return { id: 0, body };
    }
    if (this.maxEntropy < 8 && sampleEntropy(body) > this.maxEntropy) {
      stats.skippedEntropy++;
      return { id: 0, body };
    }
    const packed = this.algorithm === "lz4" ? lz4Compress(body) : zstdCompress(body, this.#level);
    if (packed.length > n - n * this.minSavings || packed.length >= n) {
      stats.skippedRatio++;
      return { id: 0, body };
    }
    stats.compressed++;
    stats.bytesIn += n;
    stats.bytesOut += packed.length;
    return { id: this.#id, body: packed };
  }
}

/** Options of {@linkcode createDecompressor}. */
export interface DecompressorOptions {
  /** The algorithms the peer may use: the negotiated set. Any other is a `PolicyViolation`. */
  accept: readonly CompressionAlgorithm[];
  /**
   * The largest decompressed body accepted: the packet limit. It is also the decompressor's
   * `maxSize`, so `decodeBatch` caps what all the compressed entries of one batch decompress
   * to at this size too, unless it is given `maxDecodedBytes`.
   */
  maxSize: number;
}

/**
 * Creates the decompressor `decodeBatch` uses for compressed entries. Call it only on
 * authenticated data (the batch decoder runs after the record was decrypted). Each call
 * produces at most `options.maxSize` bytes, or the smaller `maxSize` it is given (what is left
 * of the batch's budget): LZ4's declared size and Zstd's declared sizes are checked against it
 * before anything is allocated, and libzstd's output cap enforces it on frames that do not
 * declare their size. The Zstd window is limited by `options.maxSize` (at least 8 MiB) alone.
 *
 * @example Refuse an algorithm that was not negotiated
 * ```ts
 * import { ProtocolError } from "@npro/network-protocol";
 * import { compress, createDecompressor } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * const decompressor = createDecompressor({ accept: ["lz4"], maxSize: 1 << 20 });
 * const body = new TextEncoder().encode("x".repeat(1000));
 * assert.deepEqual(decompressor.decompress(1, compress(body, { algorithm: "lz4" })), body);
 * assert.throws(
 *   () => decompressor.decompress(2, compress(body, { algorithm: "zstd" })),
 *   (error) => error instanceof ProtocolError && error.code === "PolicyViolation",
 * );
 * // A smaller limit for one call: what is left of a batch's budget.
 * assert.throws(
 *   () => decompressor.decompress(1, compress(body, { algorithm: "lz4" }), 999),
 *   (error) => error instanceof ProtocolError && error.code === "LimitExceeded",
 * );
 * assert.equal(decompressor.maxSize, 1 << 20);
 * ```
 *
 * @param options The accepted algorithms and the size limit.
 * @returns The decompressor, whose `maxSize` is `options.maxSize`.
 * @throws {RangeError} When `maxSize` is not a non-negative integer.
 * @throws {TypeError} For an unknown algorithm.
 */
export function createDecompressor(options: DecompressorOptions): BodyDecompressor {
  const { maxSize } = options;
  if (!Number.isSafeInteger(maxSize) || maxSize < 0) {
    throw new RangeError(`Decompression limit "${maxSize}" is not a non-negative integer`);
  }
  for (const algorithm of options.accept) {
    if (!COMPRESSION_ALGORITHMS.includes(algorithm)) {
      throw new TypeError(`Unknown compression algorithm "${String(algorithm)}"`);
    }
  }
  const lz4 = options.accept.includes("lz4");
  const zstd = options.accept.includes("zstd");
  return {
    maxSize,
    decompress(id: number, body: Uint8Array, limit?: number): Uint8Array {
      let cap = maxSize;
      if (limit !== undefined) {
        if (!(limit >= 0)) {
          throw new RangeError(`Decompression limit "${limit}" is not a non-negative number`);
        }
        if (limit < cap) cap = Math.floor(limit);
      }
      if (id === COMPRESSION_IDS.lz4 && lz4) return lz4Decompress(body, cap);
      if (id === COMPRESSION_IDS.zstd && zstd) {
        return zstdDecompress(body, cap, { windowLimit: maxSize });
      }
      throw new ProtocolError(
        "PolicyViolation",
        `Compression id "${id}" was not negotiated (accepted: "${options.accept.join(", ")}")`,
      );
    },
  };
}

/**
 * Returns the handshake feature bits that announce `algorithms` (LZ4 `0x1`, Zstd `0x2`).
 *
 * @example Announce both
 * ```ts
 * import { compressionFeatureBits } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * assert.equal(compressionFeatureBits(["lz4", "zstd"]), 0x3);
 * assert.equal(compressionFeatureBits([]), 0);
 * ```
 *
 * @param algorithms The algorithms this side accepts.
 * @returns The feature bits.
 */
export function compressionFeatureBits(algorithms: readonly CompressionAlgorithm[]): number {
  let bits = 0;
  for (const algorithm of algorithms) bits |= compressionFeatureBit(algorithm);
  return bits;
}

/**
 * Intersects the local list of algorithms with what the peer announced, keeping the local
 * order of preference. Bits the peer sets for algorithms this version does not know are
 * ignored (they are for future algorithms).
 *
 * @example Both sides support Zstd
 * ```ts
 * import { negotiateCompression } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(negotiateCompression(["zstd", "lz4"], 0x2), ["zstd"]);
 * assert.deepEqual(negotiateCompression(["lz4"], 0x2), []);
 * ```
 *
 * @param localAccept The algorithms this side supports, most preferred first.
 * @param peerFeatureBits The compression feature bits the peer announced.
 * @returns The algorithms both sides support, in local order.
 */
export function negotiateCompression(
  localAccept: readonly CompressionAlgorithm[],
  peerFeatureBits: number,
): CompressionAlgorithm[] {
  const result: CompressionAlgorithm[] = [];
  for (const algorithm of localAccept) {
    if ((peerFeatureBits & compressionFeatureBit(algorithm)) !== 0 && !result.includes(algorithm)) {
      result.push(algorithm);
    }
  }
  return result;
}

/**
 * Compression settings of a connection (the `[compression]` configuration section); compression
 * is off unless `enabled` is `true`.
 */
export interface CompressionSettings {
  /** Whether to announce, use and accept compression (default `false`). */
  enabled?: boolean;
  /** The algorithm to send with when the peer accepts it (default: the first negotiated). */
  algorithm?: CompressionAlgorithm;
  /** The algorithms to announce and accept, most preferred first (default `["lz4", "zstd"]`). */
  accept?: readonly CompressionAlgorithm[];
  /** Bodies smaller than this are not compressed (default 512 bytes). */
  threshold?: number;
  /** Zstd level (default 3); ignored when LZ4 is chosen. */
  level?: number;
  /** See {@linkcode CompressionPolicyOptions.maxEntropy}. */
  maxEntropy?: number;
  /** See {@linkcode CompressionPolicyOptions.minSavings}. */
  minSavings?: number;
}

/** What {@linkcode planCompression} decided for one connection. */
export interface CompressionPlan {
  /** The algorithms both sides support, in local order (empty when off). */
  algorithms: CompressionAlgorithm[];
  /** The compressor for outgoing batches, or `undefined` to send everything uncompressed. */
  compressor: CompressionPolicy | undefined;
  /** The decompressor for incoming batches, or `undefined` to refuse compressed entries. */
  decompressor: BodyDecompressor | undefined;
}

/**
 * Returns the feature bits this side announces in its handshake for `settings`: 0 when
 * compression is off (the default).
 *
 * @example Off by default
 * ```ts
 * import { localCompressionBits } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * assert.equal(localCompressionBits({}), 0);
 * assert.equal(localCompressionBits({ enabled: true }), 0x3);
 * ```
 *
 * @param settings The connection's compression settings.
 * @returns The feature bits to announce.
 */
export function localCompressionBits(settings: CompressionSettings): number {
  if (settings.enabled !== true) return 0;
  return compressionFeatureBits(settings.accept ?? COMPRESSION_ALGORITHMS);
}

/**
 * Turns the settings and what the peer announced into the compressor and decompressor of one
 * connection, after the handshake. The sender uses `settings.algorithm` when the peer announced
 * it, otherwise the first algorithm both announced; the receiver accepts exactly the algorithms
 * both announced. When off, or when the peers share no algorithm, nothing is compressed and
 * compressed entries from the peer are a `PolicyViolation`.
 *
 * @example Both peers enabled
 * ```ts
 * import { planCompression } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * const plan = planCompression({ enabled: true, accept: ["zstd", "lz4"] }, 0x3, 1 << 24);
 * assert.deepEqual(plan.algorithms, ["zstd", "lz4"]);
 * assert.equal(plan.compressor?.algorithm, "zstd");
 * assert.equal(planCompression({}, 0x3, 1 << 24).compressor, undefined);
 * ```
 *
 * @param settings This side's compression settings.
 * @param peerFeatureBits The compression feature bits the peer announced.
 * @param maxSize The packet limit, which caps every decompressed body.
 * @returns The negotiated algorithms, the compressor and the decompressor.
 */
export function planCompression(
  settings: CompressionSettings,
  peerFeatureBits: number,
  maxSize: number,
): CompressionPlan {
  if (settings.enabled !== true) {
    return { algorithms: [], compressor: undefined, decompressor: undefined };
  }
  const algorithms = negotiateCompression(
    settings.accept ?? COMPRESSION_ALGORITHMS,
    peerFeatureBits,
  );
  const preferred = settings.algorithm;
  const first = preferred !== undefined && algorithms.includes(preferred)
    ? preferred
    : algorithms[0];
  if (first === undefined) return { algorithms, compressor: undefined, decompressor: undefined };
  const options: CompressionPolicyOptions = { algorithm: first };
  if (settings.threshold !== undefined) options.threshold = settings.threshold;
  if (settings.level !== undefined && first === "zstd") options.level = settings.level;
  if (settings.maxEntropy !== undefined) options.maxEntropy = settings.maxEntropy;
  if (settings.minSavings !== undefined) options.minSavings = settings.minSavings;
  return {
    algorithms,
    compressor: new CompressionPolicy(options),
    decompressor: createDecompressor({ accept: algorithms, maxSize }),
  };
}
