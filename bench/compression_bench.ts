/**
 * Compression micro-benchmarks: every implementation at 512 B, 64 KiB and 1 MiB on text-like and
 * random data, compress and decompress, grouped so that `deno bench` shows each one relative to
 * LZ4. MB/s = size / time per iteration; ratios are printed once at start-up. For the side-by-side
 * comparison with the `lz4`/`zstd` tools (target P7) run `deno run -A bench/compression_cli.ts`.
 *
 * Usage: `deno bench -A bench/compression_bench.ts`
 *
 * @module
 */

import { compress, decompress, initCompression } from "../src/compression/compress.ts";
import { zstdCompress, zstdDecompress } from "../src/compression/zstd.ts";
import { CompressionPolicy } from "../src/compression/policy.ts";
import { random, textLike } from "./compression_cli.ts";

await initCompression();

const SIZES: [string, number][] = [["512 B", 512], ["64 KiB", 64 * 1024], ["1 MiB", 1024 * 1024]];
const ratios: string[] = [];

for (const [kind, make] of [["text", textLike], ["random", random]] as const) {
  for (const [label, size] of SIZES) {
    const data = make(size);
    const lz4 = compress(data, { algorithm: "lz4" });
    const zstd = zstdCompress(data, 1);
    ratios.push(
      `${kind} ${label}: lz4 ${(size / lz4.length).toFixed(2)}, zstd-1 ${
        (size / zstd.length).toFixed(2)
      }`,
    );
    const compressGroup = `compress ${kind} ${label}`;
    const decompressGroup = `decompress ${kind} ${label}`;
    Deno.bench(`lz4-wasm compress ${kind} ${label}`, {
      group: compressGroup,
      baseline: true,
    }, () => {
      compress(data, { algorithm: "lz4" });
    });
    for (const impl of ["auto", "native", "wasm"] as const) {
      Deno.bench(`zstd-1 ${impl} compress ${kind} ${label}`, { group: compressGroup }, () => {
        zstdCompress(data, 1, impl);
      });
    }
    Deno.bench(`lz4-wasm decompress ${kind} ${label}`, {
      group: decompressGroup,
      baseline: true,
    }, () => {
      decompress(lz4, { algorithm: "lz4", maxSize: size });
    });
    for (const impl of ["auto", "native", "wasm"] as const) {
      const options = { implementation: impl };
      Deno.bench(`zstd-1 ${impl} decompress ${kind} ${label}`, { group: decompressGroup }, () => {
        zstdDecompress(zstd, size, options);
      });
    }
  }
}

// The policy's per-message cost on a body it skips (entropy) and one it compresses.
const policy = new CompressionPolicy({ algorithm: "lz4" });
const randomBody = random(4096);
const textBody = textLike(4096);
Deno.bench("policy skip random 4 KiB (entropy sample)", { group: "policy 4 KiB" }, () => {
  policy.compress(randomBody);
});
Deno.bench("policy lz4 text 4 KiB", { group: "policy 4 KiB", baseline: true }, () => {
  policy.compress(textBody);
});

console.log(`Compression ratios (in/out): ${ratios.join("; ")}`);
