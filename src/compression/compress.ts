/**
 * The compression front door: {@linkcode compress} and {@linkcode decompress} for LZ4 and Zstd,
 * synchronous so that they fit the per-message hot path, and {@linkcode initCompression} to load
 * the optional WebAssembly Zstd build that speeds up small messages.
 *
 * @module
 */

import type { CompressionAlgorithm } from "../core/compression_ids.ts";
import { ProtocolError } from "../errors.ts";
import { deadline } from "../util/async.ts";
import { checkTimeout } from "../util/options.ts";
import { lz4Compress, lz4Decompress } from "./lz4.ts";
import { initZstdWasm, zstdCompress, zstdDecompress } from "./zstd.ts";

/** Options of {@linkcode compress}. */
export interface CompressOptions {
  /** The algorithm: `lz4` (fast, modest ratio) or `zstd` (better ratio). */
  algorithm: CompressionAlgorithm;
  /**
   * Zstd level, an integer from -131072 to 22 (default 3, like the `zstd` tool). LZ4 has no
   * levels; a level given with `lz4` is a `RangeError`.
   */
  level?: number;
}

/** Options of {@linkcode decompress}. */
export interface DecompressOptions {
  /** The algorithm the body was compressed with. */
  algorithm: CompressionAlgorithm;
  /**
   * The largest decompressed size accepted, in bytes. Checked against the declared size before
   * anything is allocated and enforced while Zstd output streams. Use the packet limit.
   */
  maxSize: number;
}

/**
 * Compresses `data`. Synchronous.
 *
 * LZ4 produces the original crate's format: a 4-byte little-endian uncompressed size followed by
 * one LZ4 block. Zstd produces one standard frame that records its content size, readable by
 * the `zstd` tool.
 *
 * @example Round trip with Zstd
 * ```ts
 * import { compress, decompress } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * const text = new TextEncoder().encode("hello ".repeat(200));
 * const packed = compress(text, { algorithm: "zstd" });
 * assert.ok(packed.length < text.length);
 * assert.deepEqual(decompress(packed, { algorithm: "zstd", maxSize: 1 << 20 }), text);
 * ```
 *
 * @param data The bytes to compress.
 * @param options The algorithm and, for Zstd, the level.
 * @returns The compressed bytes.
 * @throws {TypeError} For an unknown algorithm.
 * @throws {RangeError} For an invalid level, or a level given with LZ4.
 */
export function compress(data: Uint8Array, options: CompressOptions): Uint8Array {
  switch (options.algorithm) {
    case "lz4":
      if (options.level !== undefined) {
        throw new RangeError(`LZ4 has no compression levels, got level "${options.level}"`);
      }
      return lz4Compress(data);
    case "zstd":
      return zstdCompress(data, options.level);
    default:
      throw new TypeError(`Unknown compression algorithm "${String(options.algorithm)}"`);
  }
}

/**
 * Decompresses `data`, never returning (or allocating for) more than `maxSize` bytes.
 * Synchronous. Only call it on authenticated data (after the record was decrypted).
 *
 * @example A decompression bomb is refused before allocation
 * ```ts
 * import { ProtocolError } from "@npro/network-protocol";
 * import { decompress } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * const forged = new Uint8Array([0xf0, 0xff, 0xff, 0xff, 0x00]);
 * assert.throws(
 *   () => decompress(forged, { algorithm: "lz4", maxSize: 16 * 1024 * 1024 }),
 *   (error) => error instanceof ProtocolError && error.code === "LimitExceeded",
 * );
 * ```
 *
 * @param data The compressed bytes.
 * @param options The algorithm and the size limit.
 * @returns The decompressed bytes.
 * @throws {ProtocolError} `LimitExceeded` when the output would exceed `maxSize`,
 * `DecompressionFailure` when the input is corrupt or truncated.
 * @throws {TypeError} For an unknown algorithm.
 * @throws {RangeError} When `maxSize` is not a non-negative safe integer.
 */
export function decompress(data: Uint8Array, options: DecompressOptions): Uint8Array {
  const { maxSize } = options;
  if (!Number.isSafeInteger(maxSize) || maxSize < 0) {
    throw new RangeError(`Decompression limit "${maxSize}" is not a non-negative integer`);
  }
  switch (options.algorithm) {
    case "lz4":
      return lz4Decompress(data, maxSize);
    case "zstd":
      return zstdDecompress(data, maxSize);
    default:
      throw new TypeError(`Unknown compression algorithm "${String(options.algorithm)}"`);
  }
}

/** Options of {@linkcode initCompression}. */
export interface InitCompressionOptions {
  /** Stops waiting for the module (it may still finish loading in the background). */
  signal?: AbortSignal;
  /** Gives up waiting after this many milliseconds (default 10000). */
  timeout?: number;
}

/**
 * Loads the WebAssembly build of Zstd (`@bokuweb/zstd-wasm`), which makes Zstd several times
 * faster on messages under a few KiB (see docs/PERFORMANCE.md). Optional: without it, Zstd uses
 * `node:zlib` for every size and everything still works. LZ4 needs no initialisation. Calling it
 * again is cheap.
 *
 * @example Load once at start-up
 * ```ts
 * import { compress, initCompression } from "@npro/network-protocol/compression";
 * import assert from "node:assert/strict";
 *
 * await initCompression();
 * assert.ok(compress(new Uint8Array(600), { algorithm: "zstd" }).length < 600);
 * ```
 *
 * @param options An abort signal and a timeout.
 * @returns A promise that settles when the module is ready.
 * @throws {ProtocolError} `Cancelled` when aborted, `Timeout` when the timeout passes.
 * @throws {TypeError} When `timeout` is not a finite number.
 * @throws {RangeError} When `timeout` is outside 1 to 2^31 - 1 ms.
 */
export async function initCompression(options?: InitCompressionOptions): Promise<void> {
  const timeout = checkTimeout("timeout", options?.timeout ?? 10_000);
  await deadline("Compression initialisation", timeout, initZstdWasm, {
    signal: options?.signal,
    timeoutError: () =>
      new ProtocolError("Timeout", `Compression initialisation took over "${timeout}" ms`),
  });
}
