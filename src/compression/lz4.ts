/**
 * LZ4 in the original crate's format: a 4-byte little-endian uncompressed size, then one LZ4
 * block (`lz4_flex::compress_prepend_size`). Backed by `lz4-wasm` (lz4_flex compiled to
 * WebAssembly), which is synchronous and needs no initialisation.
 *
 * Bomb protection: `lz4-wasm` grows its linear memory to whatever size the prefix claims before
 * it looks at the block, and that growth is permanent. So the prefix is read here and checked
 * against `maxSize`, and against the largest output an LZ4 block of this length can produce
 * (255 bytes per input byte), before the block reaches the WebAssembly module.
 *
 * @module
 */

import * as lz4wasm from "lz4-wasm";
import { ProtocolError } from "../errors.ts";

/** The length of the little-endian size prefix. */
export const LZ4_PREFIX_LENGTH = 4;

/**
 * The most an LZ4 block can expand: a run of 255-valued length bytes adds 255 output bytes per
 * input byte; the constant covers the first token, offset and the final literals.
 */
const LZ4_MAX_EXPANSION = 255;
const LZ4_EXPANSION_SLACK = 64;

/**
 * Reads the uncompressed size that an LZ4 body declares in its 4-byte little-endian prefix.
 *
 * @param data The compressed body.
 * @returns The declared size.
 * @throws {ProtocolError} `DecompressionFailure` when the body is shorter than the prefix.
 */
export function lz4DeclaredSize(data: Uint8Array): number {
  if (data.length < LZ4_PREFIX_LENGTH) {
    throw new ProtocolError(
      "DecompressionFailure",
      `LZ4 body of "${data.length}" bytes is shorter than its 4-byte size prefix`,
    );
  }
  return (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0;
}

/**
 * Compresses `data` into a 4-byte little-endian size prefix followed by one LZ4 block.
 *
 * @param data The bytes to compress (at most 4 GiB - 1).
 * @returns The compressed body.
 */
export function lz4Compress(data: Uint8Array): Uint8Array {
  if (data.length > 0xffffffff) {
    throw new RangeError(`LZ4 input of "${data.length}" bytes exceeds the limit "4294967295"`);
  }
  return lz4wasm.compress(data);
}

/**
 * Decompresses a body made by {@linkcode lz4Compress}. The declared size is checked against
 * `maxSize` and against what the block can possibly produce before anything is allocated.
 *
 * @param data The compressed body.
 * @param maxSize The largest decompressed size accepted.
 * @returns The decompressed bytes.
 * @throws {ProtocolError} `LimitExceeded` when the declared size exceeds `maxSize`,
 * `DecompressionFailure` when the body is corrupt or truncated.
 */
export function lz4Decompress(data: Uint8Array, maxSize: number): Uint8Array {
  const size = lz4DeclaredSize(data);
  if (size > maxSize) {
    throw new ProtocolError(
      "LimitExceeded",
      `LZ4 body declares "${size}" decompressed bytes, over the limit "${maxSize}"`,
    );
  }
  const blockLength = data.length - LZ4_PREFIX_LENGTH;
  if (size > blockLength * LZ4_MAX_EXPANSION + LZ4_EXPANSION_SLACK) {
    throw new ProtocolError(
      "DecompressionFailure",
      `LZ4 block of "${blockLength}" bytes cannot expand to the declared "${size}" bytes`,
    );
  }
  if (size === 0) {
    // lz4_flex writes a single zero token for empty input; anything else is corrupt.
    if (blockLength === 1 && data[LZ4_PREFIX_LENGTH] === 0) return new Uint8Array(0);
    throw new ProtocolError("DecompressionFailure", "LZ4 body of an empty input is malformed");
  }
  let out: Uint8Array;
  try {
    out = lz4wasm.decompress(data);
  } catch (error) {
    throw new ProtocolError(
      "DecompressionFailure",
      `LZ4 body could not be decompressed: ${describe(error)}`,
      { cause: error },
    );
  }
  if (out.length !== size) {
    throw new ProtocolError(
      "DecompressionFailure",
      `LZ4 body decompressed to "${out.length}" bytes instead of the declared "${size}"`,
    );
  }
  return out;
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
