/**
 * The compression algorithms of the wire format, their ids (carried in the flags byte of a batch
 * entry) and the handshake feature bits that announce them. The algorithms themselves are in
 * `src/compression/`.
 *
 * @module
 */

/** A compression algorithm that a batch entry may use. */
export type CompressionAlgorithm = "lz4" | "zstd";

/** Compression ids carried in the low two bits of a batch entry's flags byte (0: none). */
export const COMPRESSION_IDS: { readonly lz4: 1; readonly zstd: 2 } = { lz4: 1, zstd: 2 } as const;

/**
 * Every {@linkcode CompressionAlgorithm}, in id order: the keys of {@linkcode COMPRESSION_IDS},
 * so the list cannot miss an algorithm that has an id.
 */
export const COMPRESSION_ALGORITHMS: readonly CompressionAlgorithm[] = Object.freeze(
  Object.keys(COMPRESSION_IDS) as CompressionAlgorithm[],
);

/**
 * Returns the handshake feature bit that announces support for `algorithm`:
 * `1 << (id - 1)`, so LZ4 is `0x1` and Zstd is `0x2`.
 *
 * @example Feature bits
 * ```ts
 * import { compressionFeatureBit } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(compressionFeatureBit("lz4") | compressionFeatureBit("zstd"), 0x3);
 * ```
 *
 * @param algorithm The algorithm.
 * @returns Its feature bit.
 */
export function compressionFeatureBit(algorithm: CompressionAlgorithm): number {
  const id = COMPRESSION_IDS[algorithm];
  if (id === undefined) throw new TypeError(`Unknown compression algorithm "${algorithm}"`);
  return 1 << (id - 1);
}
