import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeBatch, encodeBatch } from "../src/core/batch.ts";
import { encodeMessage, type Message } from "../src/core/message.ts";
import { isProtocolError } from "../src/errors.ts";
import zlib from "node:zlib";
import { compress } from "../src/compression/compress.ts";
import { inspectZstd, zstdDecompress } from "../src/compression/zstd.ts";
import {
  compressionFeatureBits,
  CompressionPolicy,
  createDecompressor,
  localCompressionBits,
  negotiateCompression,
  planCompression,
  sampleEntropy,
} from "../src/compression/policy.ts";
import { base64, gzipped, random, textLike } from "../bench/compression_cli.ts";

const MiB = 1024 * 1024;

Deno.test("threshold: 511 bytes go as they are, 512 are compressed (default)", () => {
  for (const algorithm of ["lz4", "zstd"] as const) {
    const policy = new CompressionPolicy({ algorithm });
    assert.equal(policy.threshold, 512);
    assert.equal(policy.compress(textLike(511)).id, 0);
    const { id, body } = policy.compress(textLike(512));
    assert.equal(id, algorithm === "lz4" ? 1 : 2);
    assert.ok(body.length < 512);
    assert.equal(policy.stats.skippedSmall, 1);
    assert.equal(policy.stats.compressed, 1);
  }
});

Deno.test("skip rule: random and compressed bodies are not tried, base64 with LZ4 fails the ratio", () => {
  const policy = new CompressionPolicy({ algorithm: "lz4" });
  for (const body of [random(4096), gzipped(4096)]) {
    const result = policy.compress(body);
    assert.equal(result.id, 0);
    assert.equal(result.body, body);
  }
  assert.equal(policy.stats.skippedEntropy, 2);
  // base64 is about 6 bits per byte: LZ4 (no entropy coder) cannot shrink it, Zstd can.
  assert.equal(policy.compress(base64(4096)).id, 0);
  assert.equal(policy.stats.skippedRatio, 1);
  assert.equal(new CompressionPolicy({ algorithm: "zstd" }).compress(base64(4096)).id, 2);
  // The original's rule (compress only under 4.0 bits/byte) would skip JSON; ours compresses it.
  assert.ok(sampleEntropy(textLike(4096)) > 4.0);
  assert.equal(policy.compress(textLike(4096)).id, 1);
});

Deno.test("sampleEntropy is bounded and separates text from random", () => {
  assert.equal(sampleEntropy(new Uint8Array(0)), 0);
  assert.equal(sampleEntropy(new Uint8Array(10_000)), 0);
  assert.ok(sampleEntropy(random(100_000)) > 7.4);
  assert.ok(sampleEntropy(textLike(100_000)) < 5.5);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 5000 }), (bytes) => {
      const h = sampleEntropy(bytes);
      assert.ok(h >= 0 && h <= 8 + 1e-9, String(h));
    }),
  );
});

Deno.test("policy options are validated", () => {
  assert.throws(() => new CompressionPolicy({ algorithm: "lz4", level: 3 }), RangeError);
  assert.throws(() => new CompressionPolicy({ algorithm: "zstd", level: 99 }), RangeError);
  assert.throws(() => new CompressionPolicy({ algorithm: "lz4", threshold: -1 }), RangeError);
  assert.throws(() => new CompressionPolicy({ algorithm: "lz4", maxEntropy: 9 }), RangeError);
  assert.throws(() => new CompressionPolicy({ algorithm: "lz4", minSavings: 1 }), RangeError);
  assert.throws(() => new CompressionPolicy({ algorithm: "brotli" as "lz4" }), TypeError);
  assert.throws(() => createDecompressor({ accept: ["lz4"], maxSize: -1 }), RangeError);
});

const BIG_ECHO: Message = { type: "echo", text: new TextDecoder().decode(textLike(20_000)) };

Deno.test("batches: large messages are compressed, tiny control messages are not", () => {
  for (const algorithm of ["lz4", "zstd"] as const) {
    const messages: Message[] = [
      { type: "ping" },
      BIG_ECHO,
      { type: "cancel", id: 7 },
      { type: "custom", command: "BLOB", payload: random(8000) },
      { type: "pong" },
    ];
    const policy = new CompressionPolicy({ algorithm });
    const packed = encodeBatch(messages, { compressor: policy });
    assert.ok(packed.length < encodeBatch(messages).length - 10_000);
    assert.equal(policy.stats.compressed, 1);
    assert.equal(policy.stats.skippedSmall, 3);
    assert.equal(policy.stats.skippedEntropy, 1);
    const decompressor = createDecompressor({ accept: [algorithm], maxSize: 16 * MiB });
    assert.deepEqual(decodeBatch(packed, { decompressor }), messages);
    // Without a decompressor (compression not negotiated) a compressed entry is refused.
    assert.throws(() => decodeBatch(packed), (e) => isProtocolError(e, "PolicyViolation"));
  }
});

Deno.test("an algorithm that was not negotiated, or an unknown id, is a PolicyViolation", () => {
  const packed = encodeBatch([BIG_ECHO], {
    compressor: new CompressionPolicy({ algorithm: "zstd" }),
  });
  const lz4Only = createDecompressor({ accept: ["lz4"], maxSize: 16 * MiB });
  assert.throws(
    () => decodeBatch(packed, { decompressor: lz4Only }),
    (e) => isProtocolError(e, "PolicyViolation"),
  );
  const both = createDecompressor({ accept: ["lz4", "zstd"], maxSize: 16 * MiB });
  assert.throws(
    () => both.decompress(3, new Uint8Array(8)),
    (e) => isProtocolError(e, "PolicyViolation"),
  );
  assert.throws(
    () => both.decompress(0, new Uint8Array(8)),
    (e) => isProtocolError(e, "PolicyViolation"),
  );
});

Deno.test("the decompressor caps every body at maxSize (the packet limit)", () => {
  const body = textLike(100_000);
  for (const algorithm of ["lz4", "zstd"] as const) {
    const id = algorithm === "lz4" ? 1 : 2;
    const decompressor = createDecompressor({ accept: [algorithm], maxSize: 99_999 });
    assert.throws(
      () => decompressor.decompress(id, compress(body, { algorithm })),
      (e) => isProtocolError(e, "LimitExceeded"),
    );
    assert.throws(
      () => decompressor.decompress(id, new Uint8Array([1, 2, 3])),
      (e) => isProtocolError(e, "DecompressionFailure"),
    );
  }
});

Deno.test("the decompressor takes a smaller limit per call and exposes its own as maxSize", () => {
  const body = textLike(100_000);
  for (const algorithm of ["lz4", "zstd"] as const) {
    const id = algorithm === "lz4" ? 1 : 2;
    const decompressor = createDecompressor({ accept: [algorithm], maxSize: 16 * MiB });
    assert.equal(decompressor.maxSize, 16 * MiB);
    const packed = compress(body, { algorithm });
    assert.deepEqual(decompressor.decompress(id, packed, 100_000), body);
    assert.throws(
      () => decompressor.decompress(id, packed, 99_999),
      (e) => isProtocolError(e, "LimitExceeded") && e.message.includes(`"99999"`),
    );
    // A larger limit than its own does not raise it.
    const small = createDecompressor({ accept: [algorithm], maxSize: 99_999 });
    assert.throws(
      () => small.decompress(id, packed, 32 * MiB),
      (e) => isProtocolError(e, "LimitExceeded"),
    );
    for (const limit of [-1, Number.NaN]) {
      assert.throws(() => decompressor.decompress(id, packed, limit), RangeError);
    }
  }
});

Deno.test("a smaller per-call limit does not shrink the Zstd window limit of a whole body", () => {
  // A streamed frame with a 16 MiB window and no declared size, holding a 1 KB message.
  const echo: Message = { type: "echo", text: "line ".repeat(200) };
  const body = encodeMessage(echo);
  const frame = new Uint8Array(zlib.zstdCompressSync(body, {
    params: { [zlib.constants.ZSTD_c_windowLog]: 24 },
  } as zlib.ZstdOptions));
  assert.equal(inspectZstd(frame, 16 * MiB).windowSize, 16 * MiB);
  // On its own with a 2 KiB limit, the window is over the 8 MiB floor and refused...
  assert.throws(
    () => zstdDecompress(frame, 2048),
    (e) => isProtocolError(e, "LimitExceeded"),
  );
  // ...but the decompressor keeps the window limit of its 16 MiB bodies.
  const decompressor = createDecompressor({ accept: ["zstd"], maxSize: 16 * MiB });
  assert.deepEqual(decompressor.decompress(2, frame, 2048), body);
  assert.deepEqual(zstdDecompress(frame, 2048, { windowLimit: 16 * MiB }), body);
  assert.ok(frame.length < 128, `${frame.length} bytes`);
  const batch = new Uint8Array([2, frame.length, ...frame]); // flags: Zstd; LEB128 length
  assert.deepEqual(decodeBatch(batch, { decompressor, maxDecodedBytes: 4096 }), [echo]);
});

Deno.test("negotiation: feature bits, intersection in local order, off by default", () => {
  assert.equal(compressionFeatureBits(["lz4"]), 0x1);
  assert.equal(compressionFeatureBits(["zstd", "lz4"]), 0x3);
  assert.deepEqual(negotiateCompression(["zstd", "lz4"], 0x3), ["zstd", "lz4"]);
  assert.deepEqual(negotiateCompression(["lz4", "zstd"], 0x2 | 0x80), ["zstd"]);
  assert.deepEqual(negotiateCompression(["lz4"], 0), []);

  assert.equal(localCompressionBits({}), 0);
  assert.equal(localCompressionBits({ enabled: false, accept: ["lz4"] }), 0);
  assert.equal(localCompressionBits({ enabled: true, accept: ["zstd"] }), 0x2);

  const off = planCompression({}, 0x3, 16 * MiB);
  assert.deepEqual(off, { algorithms: [], compressor: undefined, decompressor: undefined });
  const noCommon = planCompression({ enabled: true, accept: ["lz4"] }, 0x2, 16 * MiB);
  assert.equal(noCommon.compressor, undefined);
  assert.equal(noCommon.decompressor, undefined);

  const plan = planCompression(
    { enabled: true, accept: ["zstd", "lz4"], threshold: 100, level: 5 },
    0x1,
    16 * MiB,
  );
  assert.deepEqual(plan.algorithms, ["lz4"]);
  assert.equal(plan.compressor?.algorithm, "lz4"); // the Zstd level does not apply to LZ4
  assert.equal(plan.compressor?.threshold, 100);
  const both = planCompression(
    { enabled: true, algorithm: "lz4", accept: ["zstd", "lz4"] },
    0x3,
    1,
  );
  assert.equal(both.compressor?.algorithm, "lz4");
  assert.deepEqual(both.algorithms, ["zstd", "lz4"]);
  const packed = encodeBatch([BIG_ECHO], { compressor: plan.compressor! });
  assert.deepEqual(decodeBatch(packed, { decompressor: plan.decompressor! }), [BIG_ECHO]);
});
