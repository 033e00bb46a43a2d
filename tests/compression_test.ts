import assert from "node:assert/strict";
import fc from "fast-check";
import type { CompressionAlgorithm } from "../src/core/compression_ids.ts";
import { isProtocolError } from "../src/errors.ts";
import { compress, decompress, initCompression } from "../src/compression/compress.ts";
import { inspectZstd } from "../src/compression/zstd.ts";
import { random, textLike } from "../bench/compression_cli.ts";

const MiB = 1024 * 1024;
const ALGORITHMS: CompressionAlgorithm[] = ["lz4", "zstd"];

function assertProtocolError(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(isProtocolError(error), `expected a ProtocolError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return true;
  };
}

function roundTrip(data: Uint8Array, algorithm: CompressionAlgorithm, maxSize = 16 * MiB): void {
  const packed = compress(data, { algorithm });
  const back = decompress(packed, { algorithm, maxSize });
  assert.equal(back.length, data.length);
  assert.ok(back.every((b, i) => b === data[i]), `${algorithm} round trip of ${data.length} bytes`);
}

const SIZES = [0, 1, 511, 512, 513, 4095, 4096, 16384, 16385, 64 * 1024];

Deno.test("compress/decompress round trips from 0 B to 64 KiB, text and random, native Zstd", () => {
  for (const algorithm of ALGORITHMS) {
    for (const n of SIZES) {
      roundTrip(textLike(n), algorithm);
      roundTrip(random(n), algorithm);
    }
  }
});

Deno.test("round trips again with the WebAssembly Zstd build loaded", async () => {
  await initCompression();
  for (const n of SIZES) {
    roundTrip(textLike(n), "zstd");
    roundTrip(random(n), "zstd");
  }
});

Deno.test("round trip of 16 MiB, exactly at the limit, and one byte over it", () => {
  const data = textLike(16 * MiB);
  for (const algorithm of ALGORITHMS) {
    const packed = compress(data, { algorithm });
    assert.ok(packed.length < data.length / 2, `${algorithm} compresses text`);
    const back = decompress(packed, { algorithm, maxSize: 16 * MiB });
    assert.equal(back.length, data.length);
    assert.ok(back.every((b, i) => b === data[i]));
    assert.throws(
      () => decompress(packed, { algorithm, maxSize: 16 * MiB - 1 }),
      assertProtocolError("LimitExceeded"),
    );
  }
});

Deno.test("LZ4 uses the original's format: 4-byte little-endian size, then the block", () => {
  const data = textLike(70_000);
  const packed = compress(data, { algorithm: "lz4" });
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  assert.equal(view.getUint32(0, true), 70_000);
  // An empty input is the prefix 0 and one zero token.
  assert.deepEqual([...compress(new Uint8Array(0), { algorithm: "lz4" })], [0, 0, 0, 0, 0]);
});

Deno.test("Zstd output is exactly one frame that records its content size", () => {
  for (const n of [0, 1, 600, 5000, 20_000, 65_536, 70_000, 200_000]) {
    for (const data of [textLike(n), random(n)]) {
      const packed = compress(data, { algorithm: "zstd" });
      const info = inspectZstd(packed, 16 * MiB);
      assert.equal(info.frames, 1, `${n} bytes`);
      assert.equal(info.contentSize, n);
      assert.deepEqual(info.bounds, [0, packed.length]);
    }
  }
});

Deno.test("Zstd accepts concatenated frames and skippable frames, and refuses trailing bytes", () => {
  const a = textLike(3000, 1);
  const b = textLike(20_000, 2);
  const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
  const joined = concat(
    compress(a, { algorithm: "zstd" }),
    skippable,
    compress(b, { algorithm: "zstd" }),
  );
  assert.deepEqual(decompress(joined, { algorithm: "zstd", maxSize: MiB }), concat(a, b));
  assert.throws(
    () => decompress(concat(joined, new Uint8Array([1])), { algorithm: "zstd", maxSize: MiB }),
    assertProtocolError("DecompressionFailure"),
  );
  assert.throws(
    () => decompress(joined, { algorithm: "zstd", maxSize: 23_000 - 1 }),
    assertProtocolError("LimitExceeded"),
  );
});

Deno.test("levels: Zstd validates them, LZ4 has none", () => {
  const data = textLike(10_000);
  for (const level of [-5, 1, 3, 19]) {
    const packed = compress(data, { algorithm: "zstd", level });
    assert.deepEqual(decompress(packed, { algorithm: "zstd", maxSize: MiB }), data);
  }
  assert.throws(() => compress(data, { algorithm: "zstd", level: 23 }), RangeError);
  assert.throws(() => compress(data, { algorithm: "zstd", level: 1.5 }), RangeError);
  assert.throws(() => compress(data, { algorithm: "lz4", level: 1 }), RangeError);
  assert.throws(() => compress(data, { algorithm: "gzip" as CompressionAlgorithm }), TypeError);
  assert.throws(() => decompress(data, { algorithm: "lz4", maxSize: -1 }), RangeError);
  assert.throws(() => decompress(data, { algorithm: "lz4", maxSize: 1.5 }), RangeError);
});

Deno.test("random bytes give only typed errors (never a crash)", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 2048 }),
      fc.constantFrom(...ALGORITHMS),
      (bytes, algorithm) => {
        try {
          const out = decompress(bytes, { algorithm, maxSize: MiB });
          assert.ok(out.length <= MiB);
        } catch (error) {
          assert.ok(isProtocolError(error), `unexpected ${String(error)}`);
          assert.ok(["DecompressionFailure", "LimitExceeded"].includes(error.code));
        }
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("random bytes behind a valid header give only typed errors", () => {
  // Valid LZ4 prefixes and Zstd frame headers with garbage blocks reach the real decoders.
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 1024 }),
      fc.integer({ min: 0, max: 1 << 16 }),
      (tail, size) => {
        const lz4 = concat(new Uint8Array([size & 255, size >>> 8, 0, 0]), tail);
        // FHD 0x60: single segment, 4-byte content size; then a compressed block header.
        const zstd = concat(
          new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0xa0, size & 255, size >>> 8, 0, 0]),
          new Uint8Array([((tail.length << 3) | 0b101) & 255, tail.length >>> 5, 0]),
          tail,
        );
        for (const [algorithm, body] of [["lz4", lz4], ["zstd", zstd]] as const) {
          try {
            decompress(body, { algorithm, maxSize: MiB });
          } catch (error) {
            assert.ok(isProtocolError(error), `unexpected ${String(error)}`);
          }
        }
      },
    ),
    { numRuns: 1500 },
  );
});

Deno.test("every truncation of a valid body is refused with a typed error", () => {
  const data = textLike(5000);
  for (const algorithm of ALGORITHMS) {
    const packed = compress(data, { algorithm });
    for (let cut = 0; cut < packed.length; cut++) {
      assert.throws(
        () => decompress(packed.subarray(0, cut), { algorithm, maxSize: MiB }),
        (error) => isProtocolError(error, "DecompressionFailure"),
        `${algorithm} truncated to ${cut} of ${packed.length} bytes`,
      );
    }
  }
});

Deno.test("bit flips give the original bytes or a typed error", () => {
  const data = textLike(3000);
  fc.assert(
    fc.property(
      fc.constantFrom(...ALGORITHMS),
      fc.nat(),
      fc.integer({ min: 0, max: 7 }),
      (algorithm, position, bit) => {
        const packed = compress(data, { algorithm }).slice();
        packed[position % packed.length]! ^= 1 << bit;
        try {
          const out = decompress(packed, { algorithm, maxSize: MiB });
          assert.ok(out.length <= MiB);
        } catch (error) {
          assert.ok(isProtocolError(error), `unexpected ${String(error)}`);
        }
      },
    ),
    { numRuns: 1000 },
  );
});

// ---- interoperability with the zstd command-line tool ----

const zstdTool = findTool("zstd");
if (zstdTool === undefined) {
  console.warn("Skipping the zstd CLI interop tests: the `zstd` tool is not on PATH.");
}

Deno.test({
  name: "the zstd CLI decompresses our frames, and we decompress its output (file and stdin)",
  ignore: zstdTool === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "npro-zstd-" });
    try {
      for (const n of [0, 1, 513, 200_000]) {
        const data = textLike(n);
        // Ours -> CLI.
        await Deno.writeFile(`${dir}/ours.zst`, compress(data, { algorithm: "zstd" }));
        await run(zstdTool!, ["-q", "-d", "-f", `${dir}/ours.zst`, "-o", `${dir}/ours.out`]);
        assert.deepEqual(await Deno.readFile(`${dir}/ours.out`), data);
        // CLI (file input: records the content size) -> ours.
        await Deno.writeFile(`${dir}/plain`, data);
        await run(zstdTool!, ["-q", "-f", "-3", `${dir}/plain`, "-o", `${dir}/cli.zst`]);
        const fromFile = await Deno.readFile(`${dir}/cli.zst`);
        assert.equal(inspectZstd(fromFile, MiB).contentSize, n);
        assert.deepEqual(decompress(fromFile, { algorithm: "zstd", maxSize: MiB }), data);
        // CLI reading stdin: no content size, checksum on.
        const streamed = await run(zstdTool!, ["-q", "-c", "-"], data);
        if (n === 200_000) assert.equal(inspectZstd(streamed, MiB).contentSize, undefined);
        assert.deepEqual(decompress(streamed, { algorithm: "zstd", maxSize: MiB }), data);
        if (n > 0) {
          assert.throws(
            () => decompress(streamed, { algorithm: "zstd", maxSize: n - 1 }),
            assertProtocolError("LimitExceeded"),
          );
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

function findTool(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

async function run(command: string, args: string[], stdin?: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command(command, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  return stdout;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
