/**
 * Decompression bombs: a forged LZ4 size prefix of 0xFFFFFFF0, genuine LZ4 and Zstd bodies that
 * expand to 256 MiB (with and without a declared size, with RLE blocks and with compressed
 * blocks) must fail fast with `LimitExceeded` and leave no lasting memory growth: process RSS
 * and every WebAssembly memory are measured before and after.
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import { Buffer } from "node:buffer";
import * as lz4Module from "npm:lz4-wasm@0.9.2/lz4_wasm_bg.wasm";
import { isProtocolError } from "../src/errors.ts";
import { type BodyDecompressor, decodeBatch } from "../src/core/batch.ts";
import { encodedMessageSize, encodeMessage, type Message } from "../src/core/message.ts";
import { compress, decompress, initCompression } from "../src/compression/compress.ts";
import { createDecompressor } from "../src/compression/policy.ts";
import { inspectZstd } from "../src/compression/zstd.ts";

const MiB = 1024 * 1024;
const LIMIT = 16 * MiB;
const BOMB = 256 * MiB;
/**
 * A generous bound, below what one expanded bomb adds (256 MiB; 50 run). The Zstd streaming cap
 * legitimately decodes up to the limit (16 MiB) before it refuses, and those transient buffers
 * make RSS swing by up to about 100 MiB between samples on a loaded machine, without a trend.
 */
const MAX_RSS_GROWTH = 192 * MiB;
/** Not a performance assertion: a bomb that is not refused up front takes seconds and GiBs. */
const MAX_BOMB_MS = 5000;

// Count every page any WebAssembly memory grows by (lz4-wasm and the Emscripten Zstd build).
let wasmPagesGrown = 0;
const originalGrow = WebAssembly.Memory.prototype.grow;
WebAssembly.Memory.prototype.grow = function (this: WebAssembly.Memory, delta: number): number {
  wasmPagesGrown += delta;
  return originalGrow.call(this, delta);
};
const lz4Memory = (lz4Module as unknown as { memory: WebAssembly.Memory }).memory;

/** LZ4 body: size prefix, then one match of `size - 6` bytes of zeros and 5 final literals. */
function lz4Bomb(size: number): Uint8Array {
  const match = size - 1 - 5;
  let rest = match - 4 - 15;
  const extension: number[] = [];
  while (rest >= 255) {
    extension.push(255);
    rest -= 255;
  }
  extension.push(rest);
  const body = new Uint8Array(4 + 4 + extension.length + 6);
  new DataView(body.buffer).setUint32(0, size, true);
  body.set([0x1f, 0x00, 0x01, 0x00], 4); // token: 1 literal, long match; literal 0; offset 1
  body.set(extension, 8);
  body.set([0x50, 0, 0, 0, 0, 0], 8 + extension.length); // 5 final literals
  return body;
}

/** Zstd frame of `blocks` RLE blocks of 128 KiB zeros, declaring its size or not. */
function zstdRleBomb(blocks: number, declareSize: boolean): Uint8Array {
  const header = declareSize
    ? [0x28, 0xb5, 0x2f, 0xfd, 0x80, 0x38, ...u32(blocks * 128 * 1024)] // FCS 4 bytes, window 128 KiB
    : [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
  const out = new Uint8Array(header.length + blocks * 4);
  out.set(header);
  for (let i = 0; i < blocks; i++) {
    const last = i === blocks - 1 ? 1 : 0;
    const h = ((128 * 1024) << 3) | (1 << 1) | last; // RLE block of 131072 bytes
    out.set([h & 255, (h >>> 8) & 255, (h >>> 16) & 255, 0], header.length + i * 4);
  }
  return out;
}

function u32(v: number): number[] {
  return [v & 255, (v >>> 8) & 255, (v >>> 16) & 255, v >>> 24];
}

/** A Zstd stream of 256 MiB of a 7-byte pattern: compressed blocks, no declared size. */
async function zstdCompressedBlocksBomb(): Promise<Uint8Array> {
  const chunk = Buffer.alloc(MiB);
  for (let i = 0; i < chunk.length; i++) chunk[i] = 97 + (i % 7);
  const stream = zlib.createZstdCompress({
    params: { [zlib.constants.ZSTD_c_compressionLevel]: 1 },
  });
  const parts: Buffer[] = [];
  stream.on("data", (part: Buffer) => parts.push(part));
  const done = new Promise<void>((resolve, reject) => {
    stream.on("end", resolve);
    stream.on("error", reject);
  });
  for (let i = 0; i < BOMB / MiB; i++) {
    if (!stream.write(chunk)) await new Promise((resolve) => stream.once("drain", resolve));
  }
  stream.end();
  await done;
  return new Uint8Array(Buffer.concat(parts));
}

Deno.test("the bomb builders make genuine bodies (checked at a small size)", () => {
  const lz4 = decompress(lz4Bomb(MiB), { algorithm: "lz4", maxSize: MiB });
  assert.equal(lz4.length, MiB);
  assert.ok(lz4.every((b) => b === 0));
  for (const declare of [true, false]) {
    const zstd = decompress(zstdRleBomb(8, declare), { algorithm: "zstd", maxSize: MiB });
    assert.equal(zstd.length, MiB);
    assert.ok(zstd.every((b) => b === 0));
  }
});

interface BombReport {
  lines: string[];
  slowest: number;
  rssBefore: number;
  rssAfter: number;
  wasmPagesGrown: number;
  lz4Before: number;
  lz4After: number;
}

/**
 * Runs every bomb 10 times in this process and measures RSS (after a full GC when `gc` is
 * exposed) and WebAssembly memory before and after.
 */
async function runBombs(): Promise<BombReport> {
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
  await initCompression();
  const compressedBlocks = await zstdCompressedBlocksBomb();
  const info = inspectZstd(compressedBlocks, LIMIT); // passes the header walk: the cap must catch it
  assert.equal(info.contentSize, undefined);
  assert.ok(compressedBlocks.length < MiB, `stream is ${compressedBlocks.length} bytes`);

  const forged = new Uint8Array([0xf0, 0xff, 0xff, 0xff, 0x1f, 0x00, 0x01, 0x00, 0xff, 0xff]);
  const bombs: [string, "lz4" | "zstd", Uint8Array][] = [
    ["LZ4 forged prefix 0xFFFFFFF0", "lz4", forged],
    ["LZ4 256 MiB", "lz4", lz4Bomb(BOMB)],
    ["Zstd 256 MiB, declared size", "zstd", zstdRleBomb(BOMB / (128 * 1024), true)],
    ["Zstd 256 MiB, RLE blocks, no declared size", "zstd", zstdRleBomb(BOMB / (128 * 1024), false)],
    ["Zstd 256 MiB, compressed blocks, no declared size", "zstd", compressedBlocks],
  ];
  // Warm up every path once so that lazy allocations are not counted as growth.
  for (const [, algorithm, body] of bombs) {
    assert.throws(() => decompress(body, { algorithm, maxSize: LIMIT }));
  }
  gc();
  const rssBefore = Deno.memoryUsage().rss;
  const pagesBefore = wasmPagesGrown;
  const lz4Before = lz4Memory.buffer.byteLength;
  const lines: string[] = [];
  let slowest = 0;
  for (const [name, algorithm, body] of bombs) {
    for (let round = 0; round < 10; round++) {
      const start = performance.now();
      assert.throws(
        () => decompress(body, { algorithm, maxSize: LIMIT }),
        (error) => isProtocolError(error, "LimitExceeded"),
        name,
      );
      const ms = performance.now() - start;
      slowest = Math.max(slowest, ms);
      if (round === 0) lines.push(`${name}: ${body.length} bytes, refused in ${ms.toFixed(2)} ms`);
    }
  }
  gc();
  return {
    lines,
    slowest,
    rssBefore,
    rssAfter: Deno.memoryUsage().rss,
    wasmPagesGrown: wasmPagesGrown - pagesBefore,
    lz4Before,
    lz4After: lz4Memory.buffer.byteLength,
  };
}

if (import.meta.main && Deno.env.get("NPRO_BOMB_CHILD") === "1") {
  console.log(JSON.stringify(await runBombs()));
}

Deno.test("decompression bombs fail fast with LimitExceeded and leave no lasting memory growth", async () => {
  // A child process with an exposed GC, so that RSS is compared after collection.
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", new URL(import.meta.url).pathname],
    env: { NPRO_BOMB_CHILD: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const report = JSON.parse(
    new TextDecoder().decode(stdout).trim().split("\n").pop()!,
  ) as BombReport;
  console.log(
    [
      ...report.lines,
      `RSS ${(report.rssBefore / MiB).toFixed(1)} -> ${(report.rssAfter / MiB).toFixed(1)} MiB; ` +
      `wasm pages grown ${report.wasmPagesGrown}; ` +
      `lz4 wasm memory ${report.lz4Before} -> ${report.lz4After} bytes`,
    ].join("\n"),
  );
  assert.ok(report.slowest < MAX_BOMB_MS, `a bomb took ${report.slowest.toFixed(1)} ms`);
  assert.equal(report.wasmPagesGrown, 0, "no WebAssembly memory grew");
  assert.equal(report.lz4After, report.lz4Before);
  assert.ok(
    report.rssAfter - report.rssBefore < MAX_RSS_GROWTH,
    `RSS grew by ${report.rssAfter - report.rssBefore} bytes`,
  );
});

Deno.test("a declared size under the limit that the body cannot produce is refused before allocation", () => {
  const pagesBefore = wasmPagesGrown;
  const lz4Before = lz4Memory.buffer.byteLength;
  // Claims 16 MiB (the limit) with 6 bytes of block: at most 255 bytes per input byte.
  const claim = new Uint8Array([0, 0, 0, 1, 0x1f, 0, 1, 0, 0x50, 0]);
  assert.throws(
    () => decompress(claim, { algorithm: "lz4", maxSize: LIMIT }),
    (error) => isProtocolError(error, "DecompressionFailure"),
  );
  assert.equal(wasmPagesGrown - pagesBefore, 0);
  assert.equal(lz4Memory.buffer.byteLength, lz4Before);
});

Deno.test("a Zstd frame asking for a huge window is refused before decoding", () => {
  // Window descriptor 0xA8: windowLog 31 (2 GiB), no declared size, one empty raw block.
  const frame = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x01, 0x00, 0x00]);
  assert.throws(
    () => decompress(frame, { algorithm: "zstd", maxSize: LIMIT }),
    (error) => isProtocolError(error, "LimitExceeded"),
  );
});

// ---------------------------------------------------------------------------------------------
// Per-record (per-batch) cap: many compressed entries, each under the per-body limit, must not
// add up to more than the limit in one batch (issue 10, item 4).

/** A decompressor wrapper that records the limit every call got and what every call produced. */
function recording(inner: BodyDecompressor): {
  decompressor: BodyDecompressor;
  limits: (number | undefined)[];
  sizes: number[];
} {
  const limits: (number | undefined)[] = [];
  const sizes: number[] = [];
  const decompressor: BodyDecompressor = {
    decompress(id: number, body: Uint8Array, maxSize?: number): Uint8Array {
      limits.push(maxSize);
      const out = inner.decompress(id, body, maxSize);
      sizes.push(out.length);
      return out;
    },
  };
  if (inner.maxSize !== undefined) Object.assign(decompressor, { maxSize: inner.maxSize });
  return { decompressor, limits, sizes };
}

/** A custom message whose encoded body is exactly `size` bytes. */
function messageOf(size: number): Message {
  // Tag, "BLOB" with its length, the payload's LEB128 length (1 to 4 bytes), the payload.
  for (let lengthBytes = 1; lengthBytes <= 4; lengthBytes++) {
    const message: Message = {
      type: "custom",
      command: "BLOB",
      payload: new Uint8Array(size - 6 - lengthBytes),
    };
    if (encodedMessageSize(message) === size) return message;
  }
  throw new RangeError(`No custom message encodes to ${size} bytes`);
}

/** A batch of `count` copies of one entry: `flags` (the compression id) and `body`. */
function batchOf(count: number, flags: number, body: Uint8Array): Uint8Array {
  const head = [flags];
  for (let n = body.length;; n = Math.floor(n / 128)) {
    if (n < 128) {
      head.push(n);
      break;
    }
    head.push((n % 128) | 0x80);
  }
  const entry = new Uint8Array(head.length + body.length);
  entry.set(head);
  entry.set(body, head.length);
  const out = new Uint8Array(entry.length * count);
  for (let i = 0; i < count; i++) out.set(entry, i * entry.length);
  return out;
}

type Packer = [name: string, id: number, pack: (body: Uint8Array) => Uint8Array];
const PACKERS: Packer[] = [
  ["LZ4", 1, (body) => compress(body, { algorithm: "lz4" })],
  ["Zstd", 2, (body) => compress(body, { algorithm: "zstd" })],
  // Streamed frames do not declare their size: only libzstd's output cap stops them.
  ["Zstd without declared sizes", 2, (body) => new Uint8Array(zlib.zstdCompressSync(body))],
];

/** Asserts that no call was allowed more than what was left of `cap`, nor produced more. */
function assertWithin(cap: number, limits: (number | undefined)[], sizes: number[]): void {
  let used = 0;
  for (let i = 0; i < limits.length; i++) {
    const limit = limits[i];
    assert.ok(limit !== undefined && limit <= cap - used, `call ${i} got limit ${limit}`);
    if (i < sizes.length) used += sizes[i]!;
  }
  assert.ok(used <= cap, `${used} bytes decompressed, over the cap ${cap}`);
}

Deno.test("a batch of 48 compressed 1 MiB entries is refused at the decompressor's 4 MiB cap", async () => {
  await initCompression();
  const message = messageOf(MiB);
  for (const [name, id, pack] of PACKERS) {
    const bytes = batchOf(48, id, pack(encodeMessage(message)));
    assert.ok(bytes.length < 256 * 1024, `${name}: ${bytes.length} bytes`);
    for (const ownedInput of [false, true]) {
      const inner = createDecompressor({ accept: ["lz4", "zstd"], maxSize: 4 * MiB });
      const { decompressor, limits, sizes } = recording(inner);
      assert.throws(
        () => decodeBatch(bytes, { decompressor, ownedInput }),
        (error) => isProtocolError(error, "LimitExceeded") && /limit "4194304"/.test(error.message),
        name,
      );
      assertWithin(4 * MiB, limits, sizes);
      assert.equal(sizes.length, 3, `${name}: three entries fit, the fourth is refused`);
    }
  }
});

Deno.test("maxDecodedBytes caps a batch below the decompressor's own limit", () => {
  const message = messageOf(MiB);
  for (const [name, id, pack] of PACKERS) {
    const bytes = batchOf(48, id, pack(encodeMessage(message)));
    const inner = createDecompressor({ accept: ["lz4", "zstd"], maxSize: 16 * MiB });
    const { decompressor, limits, sizes } = recording(inner);
    assert.throws(
      () => decodeBatch(bytes, { decompressor, maxDecodedBytes: 4 * MiB }),
      (error) => isProtocolError(error, "LimitExceeded"),
      name,
    );
    assertWithin(4 * MiB, limits, sizes);
  }
});

Deno.test("the issue's record: 48 Zstd entries of 16 MiB decompress to at most 16 MiB in total", () => {
  const body = compress(encodeMessage(messageOf(LIMIT)), { algorithm: "zstd" });
  const bytes = batchOf(48, 2, body);
  assert.ok(bytes.length < 64 * 1024, `${bytes.length} bytes`);
  const inner = createDecompressor({ accept: ["zstd"], maxSize: LIMIT });
  const { decompressor, limits, sizes } = recording(inner);
  assert.throws(
    () => decodeBatch(bytes, { decompressor, ownedInput: true }),
    (error) => isProtocolError(error, "LimitExceeded"),
  );
  assertWithin(LIMIT, limits, sizes);
  // The rest of the record counts too, so not even the first 16 MiB entry fits.
  assert.equal(limits.length, 1, "one call, refused before it decompressed anything");
  assert.equal(sizes.length, 0);
});

Deno.test("a compressed batch that decodes to exactly the cap decodes; one byte less refuses it", () => {
  const messages = [messageOf(MiB), messageOf(MiB), messageOf(MiB), messageOf(MiB - 4096)];
  for (const [name, id, pack] of PACKERS) {
    const bodies = messages.map((m) => pack(encodeMessage(m)));
    const parts = bodies.map((body) => batchOf(1, id, body));
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      bytes.set(part, offset);
      offset += part.length;
    }
    // The batch's length with every compressed body counted at its decompressed size.
    const decoded = bytes.length - bodies.reduce((n, b) => n + b.length, 0) + 4 * MiB - 4096;
    const decompressor = createDecompressor({ accept: ["lz4", "zstd"], maxSize: 16 * MiB });
    assert.equal(
      decodeBatch(bytes, { decompressor, maxDecodedBytes: decoded }).length,
      4,
      name,
    );
    assert.throws(
      () => decodeBatch(bytes, { decompressor, maxDecodedBytes: decoded - 1 }),
      (error) => isProtocolError(error, "LimitExceeded"),
      name,
    );
    // The default, the decompressor's own limit, fits it as well.
    assert.equal(decodeBatch(bytes, { decompressor }).length, 4, name);
  }
});

Deno.test("a record of 65,536 tiny compressed entries costs at most 4,096 decompressor calls", () => {
  const ping = encodeMessage({ type: "ping" });
  for (const [name, id, pack] of PACKERS) {
    const bytes = batchOf(65_536, id, pack(ping));
    const inner = createDecompressor({ accept: ["lz4", "zstd"], maxSize: LIMIT });
    const { decompressor, limits } = recording(inner);
    const start = performance.now();
    assert.throws(
      () => decodeBatch(bytes, { decompressor, ownedInput: true }),
      (error) =>
        isProtocolError(error, "LimitExceeded") && /"4096" compressed entries/.test(error.message),
      name,
    );
    const ms = performance.now() - start;
    assert.equal(limits.length, 4096, name);
    console.log(
      `${name}: ${bytes.length}-byte record of 65,536 entries refused in ${ms.toFixed(1)} ms`,
    );
  }
});
