/**
 * Zstandard: standard frames that record their content size, so the `zstd` command-line tool
 * reads ours and we read its output.
 *
 * Two implementations, chosen per call by measurement (docs/PERFORMANCE.md, "Compression"):
 *
 * - `node:zlib` (native libzstd): always available and synchronous, but about 15-20 µs of fixed
 *   cost per call. Used for every input until {@linkcode initZstdWasm} has run, and afterwards for
 *   compression inputs of 4 KiB and more and frames that decompress to more than 16 KiB.
 * - `@bokuweb/zstd-wasm` (libzstd in WebAssembly): several times faster on small inputs, but it
 *   needs an asynchronous initialisation, so it is only used after {@linkcode initZstdWasm}
 *   (exported as `initCompression`).
 *
 * Bomb protection, before any decompression: the frame structure is walked (headers and block
 * headers only, no decoding), which rejects truncated and trailing bytes, sums the declared
 * content sizes and the sizes of raw and RLE blocks, and checks both and the window size against
 * the limit. The native decoder then runs with `maxOutputLength`, which libzstd enforces while it
 * streams, and with `ZSTD_d_windowLogMax`; the WebAssembly decoder only gets frames whose declared
 * size is known and small, and writes into a buffer of exactly that size.
 *
 * @module
 */

import zlib from "node:zlib";
import { ProtocolError } from "../errors.ts";

/** The smallest compression level libzstd accepts (`ZSTD_minCLevel()`). */
export const ZSTD_MIN_LEVEL = -131072;
/** The largest compression level libzstd accepts (`ZSTD_maxCLevel()`). */
export const ZSTD_MAX_LEVEL = 22;
/** The level used when none is given: libzstd's and the `zstd` tool's default. */
export const ZSTD_DEFAULT_LEVEL = 3;

/** Below this input size compression uses the WebAssembly build, once loaded (measured). */
const WASM_COMPRESS_BELOW = 4096;
/** Frames declaring at most this many bytes decompress with the WebAssembly build (measured). */
const WASM_DECOMPRESS_UP_TO = 16384;
/** The window the decoder accepts whatever the limit is: what `zstd` levels 1-19 use at most. */
const MIN_WINDOW_CAP = 8 * 1024 * 1024;
/** The largest output chunk the native decoder allocates at once. */
const MAX_CHUNK = 1024 * 1024;
const MAX_BLOCK_SIZE = 128 * 1024;

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

const constants = zlib.constants as unknown as Record<string, number>;
const C_LEVEL = constants.ZSTD_c_compressionLevel!;
const D_WINDOW_LOG_MAX = constants.ZSTD_d_windowLogMax!;

interface ZstdWasm {
  compress(data: Uint8Array, level: number): Uint8Array;
  decompress(data: Uint8Array, options: { defaultHeapSize: number }): Uint8Array;
}

let wasm: ZstdWasm | undefined;
let wasmLoading: Promise<void> | undefined;

/**
 * Loads the WebAssembly build of libzstd (`@bokuweb/zstd-wasm`) so that small inputs use it.
 * Optional: without it every call uses `node:zlib`. Safe to call more than once.
 *
 * @returns A promise that settles when the module is ready.
 */
export function initZstdWasm(): Promise<void> {
  if (wasm !== undefined) return Promise.resolve();
  wasmLoading ??= (async () => {
    const mod = await import("@bokuweb/zstd-wasm");
    await mod.init();
    wasm = { compress: mod.compress, decompress: mod.decompress };
  })().catch((error) => {
    wasmLoading = undefined;
    throw error;
  });
  return wasmLoading;
}

/**
 * Reports whether the WebAssembly build is loaded.
 *
 * @returns `true` after {@linkcode initZstdWasm} has finished.
 */
export function isZstdWasmLoaded(): boolean {
  return wasm !== undefined;
}

/** Which implementation {@linkcode zstdCompress} and {@linkcode zstdDecompress} use. */
export type ZstdImplementation = "auto" | "native" | "wasm";

/**
 * Compresses `data` into one Zstandard frame that records the content size.
 *
 * @param data The bytes to compress.
 * @param level The compression level, an integer from -131072 to 22 (default 3).
 * @param implementation `auto` (default) picks by size; `native` and `wasm` force one (for
 * benchmarks; `wasm` requires {@linkcode initZstdWasm}).
 * @returns The frame.
 */
export function zstdCompress(
  data: Uint8Array,
  level: number = ZSTD_DEFAULT_LEVEL,
  implementation: ZstdImplementation = "auto",
): Uint8Array {
  if (!Number.isInteger(level) || level < ZSTD_MIN_LEVEL || level > ZSTD_MAX_LEVEL) {
    throw new RangeError(
      `Zstd level "${level}" is not an integer from "${ZSTD_MIN_LEVEL}" to "${ZSTD_MAX_LEVEL}"`,
    );
  }
  if (
    implementation === "wasm" ||
    (implementation === "auto" && wasm !== undefined && data.length < WASM_COMPRESS_BELOW)
  ) {
    return requireWasm().compress(data, level);
  }
  const out = zlib.zstdCompressSync(data, {
    pledgedSrcSize: data.length,
    params: { [C_LEVEL]: level },
  } as zlib.ZstdOptions);
  // node:zlib in Deno 2.9 sometimes appends an empty frame after the real one (seen when the
  // frame ends on an output chunk boundary); drop it so that the output is exactly one frame.
  let end = out.byteLength;
  while (end > EMPTY_FRAME.length && endsWithEmptyFrame(out, end)) end -= EMPTY_FRAME.length;
  return new Uint8Array(out.buffer, out.byteOffset, end);
}

/** The frame libzstd writes for empty input: single segment, size 0, one empty raw block. */
const EMPTY_FRAME = [0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00];

function endsWithEmptyFrame(data: Uint8Array, end: number): boolean {
  const start = end - EMPTY_FRAME.length;
  for (let i = 0; i < EMPTY_FRAME.length; i++) {
    if (data[start + i] !== EMPTY_FRAME[i]) return false;
  }
  return true;
}

/** What the frame headers of a Zstandard body declare, found without decompressing it. */
export interface ZstdFrameInfo {
  /** The number of Zstandard frames (skippable frames not counted). */
  frames: number;
  /** The sum of the declared content sizes, or `undefined` when a frame does not declare one. */
  contentSize: number | undefined;
  /** A lower bound of the decompressed size: the bytes of raw and RLE blocks. */
  minimumSize: number;
  /** The largest window any frame asks for. */
  windowSize: number;
  /** Where each Zstandard frame starts and ends, `[start, end)` pairs in order. */
  bounds: number[];
}

/**
 * Walks the frame and block headers of a Zstandard body without decompressing it, checking the
 * declared sizes against `maxSize`.
 *
 * @param data The compressed body.
 * @param maxSize The largest decompressed size accepted.
 * @param windowLimit The largest window accepted (at least 8 MiB whatever is given); default
 * `maxSize`. The batch decoder gives a smaller `maxSize` (what is left of a batch's budget) but
 * keeps the window limit of a whole body, which a frame close to its content size may need.
 * @returns What the headers declare.
 * @throws {ProtocolError} `LimitExceeded` when a declared size or the window exceeds the limit,
 * `DecompressionFailure` when the structure is malformed, truncated or followed by extra bytes.
 */
export function inspectZstd(
  data: Uint8Array,
  maxSize: number,
  windowLimit: number = maxSize,
): ZstdFrameInfo {
  const windowCap = Math.max(windowLimit, MIN_WINDOW_CAP);
  const n = data.length;
  let p = 0;
  let frames = 0;
  let contentSize: number | undefined = 0;
  let minimumSize = 0;
  let windowSize = 0;
  const bounds: number[] = [];
  if (n === 0) corrupt("Zstd body is empty");
  while (p < n) {
    if (p + 4 > n) corrupt(`Zstd body ends inside a frame magic number at byte "${p}"`);
    const start = p;
    const magic = readU32(data, p);
    p += 4;
    if ((magic & SKIPPABLE_MAGIC_MASK) >>> 0 === SKIPPABLE_MAGIC) {
      if (p + 4 > n) corrupt(`Zstd skippable frame at byte "${p - 4}" is truncated`);
      const size = readU32(data, p);
      p += 4;
      if (size > n - p) corrupt(`Zstd skippable frame at byte "${p - 8}" is truncated`);
      p += size;
      continue;
    }
    if (magic !== ZSTD_MAGIC) {
      corrupt(`Zstd frame at byte "${p - 4}" has the wrong magic number "0x${hex(magic)}"`);
    }
    if (p >= n) corrupt("Zstd frame header is truncated");
    const descriptor = data[p++]!;
    const fcsFlag = descriptor >>> 6;
    const singleSegment = (descriptor >>> 5) & 1;
    const checksum = (descriptor >>> 2) & 1;
    const dictionaryFlag = descriptor & 3;
    if (descriptor & 0x08) corrupt("Zstd frame header sets the reserved bit");
    let window = 0;
    if (!singleSegment) {
      if (p >= n) corrupt("Zstd frame header is truncated");
      const wd = data[p++]!;
      const windowLog = 10 + (wd >>> 3);
      const base = 2 ** windowLog;
      window = base + (base / 8) * (wd & 7);
    }
    const dictionaryLength = [0, 1, 2, 4][dictionaryFlag]!;
    const fcsLength = fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag]!;
    if (p + dictionaryLength + fcsLength > n) corrupt("Zstd frame header is truncated");
    let dictionaryId = 0;
    for (let i = dictionaryLength - 1; i >= 0; i--) {
      dictionaryId = dictionaryId * 256 + data[p + i]!;
    }
    p += dictionaryLength;
    if (dictionaryId !== 0) {
      corrupt(`Zstd frame needs dictionary "${dictionaryId}", and none is configured`);
    }
    let fcs: number | undefined;
    if (fcsLength === 1) fcs = data[p]!;
    else if (fcsLength === 2) fcs = (data[p]! | (data[p + 1]! << 8)) + 256;
    else if (fcsLength === 4) fcs = readU32(data, p);
    else if (fcsLength === 8) fcs = readU32(data, p) + readU32(data, p + 4) * 2 ** 32;
    p += fcsLength;
    if (singleSegment) window = fcs!;
    if (fcs === undefined) contentSize = undefined;
    else if (contentSize !== undefined) contentSize += fcs;
    if (contentSize !== undefined && contentSize > maxSize) {
      throw new ProtocolError(
        "LimitExceeded",
        `Zstd body declares "${contentSize}" decompressed bytes, over the limit "${maxSize}"`,
      );
    }
    if (window > windowCap) {
      throw new ProtocolError(
        "LimitExceeded",
        `Zstd frame asks for a window of "${window}" bytes, over the limit "${windowCap}"`,
      );
    }
    if (window > windowSize) windowSize = window;
    const blockCap = Math.min(MAX_BLOCK_SIZE, Math.max(window, 1));
    for (;;) {
      if (p + 3 > n) corrupt(`Zstd block header at byte "${p}" is truncated`);
      const header = data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16);
      p += 3;
      const last = header & 1;
      const type = (header >>> 1) & 3;
      const size = header >>> 3;
      if (type === 3) corrupt(`Zstd block at byte "${p - 3}" has the reserved type`);
      if (size > blockCap) {
        corrupt(`Zstd block at byte "${p - 3}" is "${size}" bytes, over the limit "${blockCap}"`);
      }
      const stored = type === 1 ? 1 : size;
      if (stored > n - p) corrupt(`Zstd block at byte "${p - 3}" is truncated`);
      p += stored;
      if (type !== 2) {
        minimumSize += size;
        if (minimumSize > maxSize) {
          throw new ProtocolError(
            "LimitExceeded",
            `Zstd body decompresses to more than "${minimumSize}" bytes, over the limit "${maxSize}"`,
          );
        }
      }
      if (last) break;
    }
    if (checksum) {
      if (p + 4 > n) corrupt("Zstd frame checksum is truncated");
      p += 4;
    }
    frames++;
    bounds.push(start, p);
  }
  if (frames === 0) corrupt("Zstd body holds no frame");
  return { frames, contentSize, minimumSize, windowSize, bounds };
}

/** Options of {@linkcode zstdDecompress}. */
export interface ZstdDecompressOptions {
  /**
   * `auto` (default) picks by declared size; `native` and `wasm` force one (for benchmarks;
   * `wasm` only handles a single frame that declares its size).
   */
  implementation?: ZstdImplementation;
  /**
   * The largest window accepted (at least 8 MiB); default `maxSize`. See
   * {@linkcode inspectZstd}.
   */
  windowLimit?: number;
}

/**
 * Decompresses a Zstandard body (one or more frames), never producing more than `maxSize` bytes.
 *
 * @param data The compressed body.
 * @param maxSize The largest decompressed size accepted.
 * @param options The implementation and the window limit.
 * @returns The decompressed bytes.
 * @throws {ProtocolError} `LimitExceeded` beyond `maxSize` or the window limit,
 * `DecompressionFailure` when the body is corrupt or truncated.
 */
export function zstdDecompress(
  data: Uint8Array,
  maxSize: number,
  options: ZstdDecompressOptions = {},
): Uint8Array {
  const implementation = options.implementation ?? "auto";
  const windowLimit = options.windowLimit ?? maxSize;
  const info = inspectZstd(data, maxSize, windowLimit);
  const size = info.contentSize;
  let out: Uint8Array;
  if (
    implementation === "wasm" ||
    (implementation === "auto" && wasm !== undefined && info.frames === 1 && size !== undefined &&
      size > 0 && size <= WASM_DECOMPRESS_UP_TO)
  ) {
    if (info.frames !== 1 || size === undefined) {
      throw new RangeError("The WebAssembly Zstd decoder needs one frame that declares its size");
    }
    try {
      out = requireWasm().decompress(data.subarray(info.bounds[0], info.bounds[1]), {
        defaultHeapSize: size,
      });
    } catch (error) {
      throw new ProtocolError("DecompressionFailure", `Zstd body is corrupt: ${describe(error)}`, {
        cause: error,
      });
    }
  } else if (info.frames === 1) {
    out = nativeDecompress(
      data.subarray(info.bounds[0], info.bounds[1]),
      maxSize,
      size,
      windowLimit,
    );
  } else {
    // node:zlib stops after the first frame, so each frame is decoded on its own.
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < info.bounds.length; i += 2) {
      const part = nativeDecompress(
        data.subarray(info.bounds[i]!, info.bounds[i + 1]!),
        maxSize - total,
        undefined,
        windowLimit,
      );
      parts.push(part);
      total += part.length;
    }
    out = new Uint8Array(total);
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
  }
  if (out.length > maxSize) {
    throw new ProtocolError(
      "LimitExceeded",
      `Zstd body decompressed to "${out.length}" bytes, over the limit "${maxSize}"`,
    );
  }
  if ((size !== undefined && out.length !== size) || out.length < info.minimumSize) {
    throw new ProtocolError(
      "DecompressionFailure",
      `Zstd body decompressed to "${out.length}" bytes, not the "${
        size ?? info.minimumSize
      }" it declares`,
    );
  }
  return out;
}

function nativeDecompress(
  frame: Uint8Array,
  maxSize: number,
  size: number | undefined,
  windowLimit: number,
): Uint8Array {
  const windowLogMax = Math.min(
    31,
    Math.max(10, Math.ceil(Math.log2(Math.max(windowLimit, MIN_WINDOW_CAP)))),
  );
  let buffer: Uint8Array;
  try {
    buffer = zlib.zstdDecompressSync(frame, {
      maxOutputLength: Math.max(1, maxSize),
      chunkSize: Math.min(MAX_CHUNK, Math.max(64, size ?? unknownSizeChunk(frame.length))),
      params: { [D_WINDOW_LOG_MAX]: windowLogMax },
    } as zlib.ZstdOptions);
  } catch (error) {
    if ((error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new ProtocolError(
        "LimitExceeded",
        `Zstd body decompresses to more than the limit "${maxSize}"`,
        { cause: error },
      );
    }
    throw new ProtocolError("DecompressionFailure", `Zstd body is corrupt: ${describe(error)}`, {
      cause: error,
    });
  }
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/**
 * The first output chunk for a frame that does not declare its size: eight times the frame,
 * from 1 KiB to 64 KiB. A flat 64 KiB made every tiny frame cost about 60 µs instead of 12
 * (measured on Deno 2.9), which a batch of thousands of tiny entries multiplies.
 */
function unknownSizeChunk(frameLength: number): number {
  return Math.min(64 * 1024, Math.max(1024, frameLength * 8));
}

function requireWasm(): ZstdWasm {
  if (wasm === undefined) {
    throw new RangeError("The WebAssembly Zstd build is not loaded: await initCompression() first");
  }
  return wasm;
}

function readU32(data: Uint8Array, p: number): number {
  return (data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16) | (data[p + 3]! << 24)) >>> 0;
}

function hex(value: number): string {
  return value.toString(16).padStart(8, "0");
}

function corrupt(message: string): never {
  throw new ProtocolError("DecompressionFailure", message);
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
