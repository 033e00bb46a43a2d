/**
 * A small mutation fuzzer over the targets in `fuzz/targets/`: random inputs and mutations of
 * each target's seeds (bit flips, byte changes, insertions, deletions, splices, truncations and
 * interesting integers). A target may throw only `ProtocolError`; anything else, or a single
 * run slower than `--max-run-ms`, is a finding: the input is printed in hex and written to
 * `.tmp/fuzz-findings/`, and the process exits with code 1.
 *
 * Usage: deno task fuzz [--seconds 60] [--target name] [--seed 1] [--max-run-ms 2000]
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { FuzzTarget } from "./target.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "60" },
    target: { type: "string" },
    seed: { type: "string" },
    "max-run-ms": { type: "string", default: "2000" },
  },
});
const seconds = Number(values.seconds);
const maxRunMs = Number(values["max-run-ms"]);
if (!(seconds > 0) || !(maxRunMs > 0)) {
  throw new RangeError("--seconds and --max-run-ms must be > 0");
}
const seed = values.seed === undefined ? (Date.now() >>> 0) : Number(values.seed) >>> 0;

const targets: FuzzTarget[] = [];
const dir = new URL("./targets/", import.meta.url);
const names: string[] = [];
for await (const entry of Deno.readDir(dir)) {
  if (entry.isFile && entry.name.endsWith(".ts")) names.push(entry.name);
}
for (const name of names.sort()) {
  const mod = await import(new URL(name, dir).href) as { default: FuzzTarget };
  if (values.target === undefined || mod.default.name === values.target) targets.push(mod.default);
}
if (targets.length === 0) throw new Error(`No fuzz target matches "${values.target}"`);

/** mulberry32: a small seeded PRNG so that every run can be replayed with `--seed`. */
function prng(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x7fffffff, 0xffffffff, 0x01000000];

function mutate(rand: () => number, pool: Uint8Array[]): Uint8Array {
  const int = (n: number) => Math.floor(rand() * n);
  if (pool.length === 0 || rand() < 0.1) {
    const out = new Uint8Array(int(256));
    for (let i = 0; i < out.length; i++) out[i] = int(256);
    return out;
  }
  let data = pool[int(pool.length)]!.slice();
  const rounds = 1 + int(4);
  for (let r = 0; r < rounds; r++) {
    switch (int(7)) {
      case 0: // bit flip
        if (data.length > 0) data[int(data.length)]! ^= 1 << int(8);
        break;
      case 1: // random byte
        if (data.length > 0) data[int(data.length)] = int(256);
        break;
      case 2: { // insert bytes
        const at = int(data.length + 1);
        const extra = new Uint8Array(1 + int(16)).map(() => int(256));
        const out = new Uint8Array(data.length + extra.length);
        out.set(data.subarray(0, at));
        out.set(extra, at);
        out.set(data.subarray(at), at + extra.length);
        data = out;
        break;
      }
      case 3: { // delete a range
        const at = int(data.length + 1);
        const n = int(16);
        data = new Uint8Array([...data.subarray(0, at), ...data.subarray(at + n)]);
        break;
      }
      case 4: // truncate
        data = data.slice(0, int(data.length + 1));
        break;
      case 5: { // splice with another pool entry
        const other = pool[int(pool.length)]!;
        const at = int(data.length + 1);
        data = new Uint8Array([...data.subarray(0, at), ...other.subarray(int(other.length + 1))]);
        break;
      }
      case 6: { // interesting big-endian u32
        if (data.length >= 4) {
          const at = int(data.length - 3);
          new DataView(data.buffer, data.byteOffset).setUint32(
            at,
            INTERESTING[int(INTERESTING.length)]!,
          );
        }
        break;
      }
    }
  }
  return data;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const perTargetMs = (seconds * 1000) / targets.length;
let findings = 0;
let total = 0;
for (const target of targets) {
  const rand = prng(
    seed ^ [...target.name].reduce((h, c) => Math.imul(h, 31) + c.charCodeAt(0), 7),
  );
  const pool: Uint8Array[] = target.seeds.map((s) => s.slice());
  const deadline = performance.now() + perTargetMs;
  let execs = 0;
  let slowest = 0;
  while (performance.now() < deadline) {
    const input = execs < pool.length ? pool[execs]! : mutate(rand, pool);
    const started = performance.now();
    let failure: unknown;
    let accepted = true;
    try {
      target.run(input);
    } catch (error) {
      accepted = false;
      if (!(error instanceof Error) || error.name !== "ProtocolError") failure = error;
    }
    const elapsed = performance.now() - started;
    slowest = Math.max(slowest, elapsed);
    if (failure === undefined && elapsed > maxRunMs) {
      failure = new Error(`Run took ${elapsed.toFixed(0)} ms (limit ${maxRunMs} ms)`);
    }
    execs++;
    if (failure !== undefined) {
      findings++;
      const file = `.tmp/fuzz-findings/${target.name}-${hex(input).slice(0, 16)}.bin`;
      await Deno.mkdir(".tmp/fuzz-findings", { recursive: true });
      await Deno.writeFile(file, input);
      console.error(
        `FINDING in "${target.name}" (seed ${seed}): ${failure}\n  input: ${hex(input)}`,
      );
      break;
    }
    // Keep a bounded pool of inputs that decoded without error: they reach deeper code.
    if (accepted && pool.length < 256 && rand() < 0.05) pool.push(input);
  }
  total += execs;
  console.log(
    `fuzz ${target.name}: ${execs} runs in ${(perTargetMs / 1000).toFixed(1)} s, ` +
      `slowest ${slowest.toFixed(1)} ms`,
  );
}
console.log(
  `fuzz: ${total} runs over ${targets.length} targets, seed ${seed}, ${findings} findings`,
);
if (findings > 0) Deno.exit(1);
