/**
 * Compression against the command-line tools, in one run: writes text-like and random files of
 * 512 B, 64 KiB and 1 MiB to a temporary directory, runs `lz4 -b1` and `zstd -b1` on them,
 * measures our implementations on the same bytes, prints a table with the ratios ours/CLI
 * (target P7: LZ4 at least 0.4x, Zstd at least 0.5x), then a table of the skip rule on mixed
 * data, and removes the directory.
 *
 * Usage: `deno run -A bench/compression_cli.ts [--seconds 0.3]`
 *
 * The deterministic data generators are exported for the tests and `compression_bench.ts`.
 *
 * @module
 */

import zlib from "node:zlib";

/** A small deterministic PRNG (mulberry32) returning numbers in [0, 1). */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ("the of and to in is that for it as was with be by on not he this are or his from " +
  "at which but have an they you were her she there been one all we their has would when if so " +
  "no will more can what about up said out time into some them other").split(" ");

function word(r: () => number): string {
  return WORDS[Math.floor(r() * WORDS.length)]!;
}

/** `n` bytes of JSON log lines (the "text-like" data of the benchmarks). */
export function textLike(n: number, seed = 1): Uint8Array {
  const r = prng(seed);
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; length < n; i++) {
    const line = JSON.stringify({
      ts: 1700000000000 + i * 137,
      level: ["info", "warn", "debug"][Math.floor(r() * 3)],
      user: `user${Math.floor(r() * 500)}`,
      msg: Array.from({ length: 4 + Math.floor(r() * 8) }, () => word(r)).join(" "),
      latencyMs: Math.floor(r() * 2000) / 10,
    }) + "\n";
    parts.push(line);
    length += line.length;
  }
  return new TextEncoder().encode(parts.join("")).slice(0, n);
}

/** `n` bytes of English-like prose. */
export function english(n: number, seed = 2): Uint8Array {
  const r = prng(seed);
  const parts: string[] = [];
  let length = 0;
  while (length < n) {
    const w = word(r);
    const piece = r() < 0.08 ? `${w[0]!.toUpperCase()}${w.slice(1)}. ` : `${w} `;
    parts.push(piece);
    length += piece.length;
  }
  return new TextEncoder().encode(parts.join("")).slice(0, n);
}

/** `n` pseudo-random bytes (incompressible). */
export function random(n: number, seed = 3): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 256) | 0;
  return out;
}

/** `n` bytes of base64 text of random bytes (6 bits per byte). */
export function base64(n: number): Uint8Array {
  const raw = random(Math.ceil(n * 3 / 4) + 3, 4);
  let s = "";
  for (let i = 0; i < raw.length; i++) s += String.fromCharCode(raw[i]!);
  return new TextEncoder().encode(btoa(s)).slice(0, n);
}

/** `n` bytes of gzip output (already compressed). */
export function gzipped(n: number): Uint8Array {
  let source = n * 4;
  for (;;) {
    const out = zlib.gzipSync(english(source, 5));
    if (out.length >= n) return new Uint8Array(out.buffer, out.byteOffset, n).slice();
    source *= 2;
  }
}

/** `n` bytes of a slowly drifting Float64 series (sensor-like binary). */
export function float64Series(n: number): Uint8Array {
  const r = prng(9);
  const values = new Float64Array(Math.ceil(n / 8));
  let v = 20;
  for (let i = 0; i < values.length; i++) {
    v += (r() - 0.5) * 0.1;
    values[i] = v;
  }
  return new Uint8Array(values.buffer, 0, n);
}

/** `n` bytes of small unsigned 32-bit integers (ids, counters). */
export function uint32Column(n: number): Uint8Array {
  const r = prng(10);
  const values = new Uint32Array(Math.ceil(n / 4));
  for (let i = 0; i < values.length; i++) values[i] = 1000 + Math.floor(r() * 5000);
  return new Uint8Array(values.buffer, 0, n);
}

/** `n` bytes: a 256-byte JSON header followed by random bytes. */
export function headerThenRandom(n: number): Uint8Array {
  const out = random(n, 11);
  out.set(textLike(Math.min(256, n)));
  return out;
}

/** The mixed data set the skip rule was chosen on. */
export const MIXED_DATA: Readonly<Record<string, (n: number) => Uint8Array>> = {
  json: (n) => textLike(n),
  english: (n) => english(n),
  base64,
  float64: float64Series,
  uint32: uint32Column,
  "json+random": headerThenRandom,
  gzip: gzipped,
  random: (n) => random(n),
};

// ---------------------------------------------------------------------------------------------
// The script: `deno run -A bench/compression_cli.ts [--seconds 0.3]`
// ---------------------------------------------------------------------------------------------

interface Speed {
  ratio: number;
  compress: number;
  decompress: number;
}

/** Median MB/s (10^6 bytes of uncompressed data per second) of `fn` over 5 samples. */
export function speed(fn: () => void, bytes: number, sampleMs: number): number {
  let iterations = 1;
  for (;;) {
    const start = performance.now();
    for (let i = 0; i < iterations; i++) fn();
    if (performance.now() - start >= sampleMs / 4) break;
    iterations *= 2;
  }
  const samples: number[] = [];
  for (let s = 0; s < 5; s++) {
    const start = performance.now();
    for (let i = 0; i < iterations; i++) fn();
    samples.push((bytes * iterations) / 1e6 / ((performance.now() - start) / 1000));
  }
  return samples.sort((a, b) => a - b)[2]!;
}

export async function cliBench(tool: string, file: string): Promise<Speed | undefined> {
  const { code, stdout, stderr } = await new Deno.Command(tool, {
    args: ["-b1", "-i1", file],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  if (code !== 0) return undefined;
  const text = new TextDecoder().decode(stderr) + new TextDecoder().decode(stdout);
  const lines = text.split(/[\r\n]+/).filter((line) => /MB\/s.*MB\/s/.test(line));
  const last = lines.at(-1);
  if (last === undefined) return undefined;
  const m = /\(x?([\d.]+)\),\s*([\d.]+) MB\/s\s*,\s*([\d.]+) MB\/s/.exec(last);
  if (m === null) return undefined;
  return { ratio: Number(m[1]), compress: Number(m[2]), decompress: Number(m[3]) };
}

async function main(): Promise<void> {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    args: Deno.args,
    options: { seconds: { type: "string", default: "0.3" } },
  });
  const sampleMs = Number(values.seconds) * 1000;
  const { compress, decompress, initCompression } = await import(
    "../src/compression/compress.ts"
  );
  const { zstdCompress, zstdDecompress } = await import("../src/compression/zstd.ts");
  const { sampleEntropy, DEFAULT_MAX_ENTROPY, DEFAULT_MIN_SAVINGS } = await import(
    "../src/compression/policy.ts"
  );
  await initCompression();
  const fmt = (n: number, digits = 0) => n.toFixed(digits);

  console.log(`Deno ${Deno.version.deno}, V8 ${Deno.version.v8}, ${Deno.build.target}`);
  console.log("\n## Ours vs the CLI on the same files (level 1, MB/s of uncompressed data)\n");
  console.log(
    "| data | size | impl | ratio | compress | decompress | CLI ratio | CLI compress | CLI decompress | ours/CLI compress | ours/CLI decompress |",
  );
  console.log("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
  const dir = await Deno.makeTempDir({ prefix: "npro-compression-" });
  try {
    for (const [kind, make] of [["text", textLike], ["random", random]] as const) {
      for (const size of [512, 64 * 1024, 1024 * 1024]) {
        const data = make(size);
        const file = `${dir}/${kind}_${size}.bin`;
        await Deno.writeFile(file, data);
        const lz4Cli = await cliBench("lz4", file);
        const zstdCli = await cliBench("zstd", file);
        const rows: [string, Speed, Speed | undefined][] = [];
        const lz4Packed = compress(data, { algorithm: "lz4" });
        rows.push(["lz4-wasm", {
          ratio: size / lz4Packed.length,
          compress: speed(() => compress(data, { algorithm: "lz4" }), size, sampleMs),
          decompress: speed(
            () => decompress(lz4Packed, { algorithm: "lz4", maxSize: size }),
            size,
            sampleMs,
          ),
        }, lz4Cli]);
        for (const impl of ["auto", "native", "wasm"] as const) {
          const packed = zstdCompress(data, 1, impl);
          const options = { implementation: impl };
          rows.push([`zstd ${impl === "auto" ? "auto (shipped)" : impl}`, {
            ratio: size / packed.length,
            compress: speed(() => zstdCompress(data, 1, impl), size, sampleMs),
            decompress: speed(() => zstdDecompress(packed, size, options), size, sampleMs),
          }, zstdCli]);
        }
        for (const [impl, ours, cli] of rows) {
          const c = cli === undefined ? undefined : cli;
          console.log(
            `| ${kind} | ${size} | ${impl} | ${fmt(ours.ratio, 2)} | ${fmt(ours.compress)} | ${
              fmt(ours.decompress)
            } | ${c ? fmt(c.ratio, 2) : "-"} | ${c ? fmt(c.compress) : "-"} | ${
              c ? fmt(c.decompress) : "-"
            } | ${c ? fmt(ours.compress / c.compress, 2) : "-"} | ${
              c ? fmt(ours.decompress / c.decompress, 2) : "-"
            } |`,
          );
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  console.log("\n## Skip rule on mixed data (sampled entropy, ratios out/in at level 1)\n");
  console.log(
    "| data | size | entropy (bits/byte) | LZ4 out/in | Zstd out/in | LZ4 sent compressed | Zstd sent compressed | entropy µs | LZ4 µs | Zstd µs |",
  );
  console.log("|---|---:|---:|---:|---:|---|---|---:|---:|---:|");
  for (const size of [1024, 4096, 65536]) {
    for (const [kind, make] of Object.entries(MIXED_DATA)) {
      const data = make(size);
      const h = sampleEntropy(data);
      const lz = compress(data, { algorithm: "lz4" }).length / size;
      const zs = zstdCompress(data, 1).length / size;
      const keep = (r: number) =>
        h > DEFAULT_MAX_ENTROPY
          ? "no (entropy)"
          : r > 1 - DEFAULT_MIN_SAVINGS
          ? "no (ratio)"
          : "yes";
      const us = (fn: () => void) => size / speed(fn, size, sampleMs / 3);
      console.log(
        `| ${kind} | ${size} | ${fmt(h, 2)} | ${fmt(lz, 3)} | ${fmt(zs, 3)} | ${keep(lz)} | ${
          keep(zs)
        } | ${fmt(us(() => sampleEntropy(data)), 2)} | ${
          fmt(us(() => compress(data, { algorithm: "lz4" })), 1)
        } | ${fmt(us(() => zstdCompress(data, 1)), 1)} |`,
      );
    }
  }
}

if (import.meta.main) await main();
