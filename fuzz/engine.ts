/**
 * The mutation engine behind `deno task fuzz` (fuzz/main.ts) and the fuzz target tests: a seeded
 * PRNG, the mutator (bit flips, byte changes, insertions, deletions, splices, truncations and
 * interesting integers) and {@linkcode runFuzz}, which runs one target for a time or a number of
 * inputs and stops at the first finding.
 *
 * @module
 */

import type { FuzzTarget } from "./target.ts";

/** mulberry32: a small seeded PRNG so that every run can be replayed with `--seed`. */
export function prng(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The PRNG state of one target under a run seed: each target gets its own stream. */
export function targetSeed(seed: number, name: string): number {
  return (seed ^ [...name].reduce((h, c) => Math.imul(h, 31) + c.charCodeAt(0), 7)) >>> 0;
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x7fffffff, 0xffffffff, 0x01000000];

/** Returns a random input (10 %) or a mutation of one pool entry (1 to 4 rounds). */
export function mutate(rand: () => number, pool: Uint8Array[]): Uint8Array {
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

/** Encodes bytes as hex. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** How long or how much {@linkcode runFuzz} runs. */
export interface RunOptions {
  /** The run seed; the target's stream is derived from it and the target's name. */
  seed: number;
  /** Stop after this many milliseconds (with or without `iterations`, whichever comes first). */
  durationMs?: number;
  /** Stop after this many inputs, the seeds included. */
  iterations?: number;
  /** A single input taking longer than this is a finding (default 2000 ms). */
  maxRunMs?: number;
}

/** The outcome of {@linkcode runFuzz}. */
export interface RunResult {
  /** Inputs run, the seeds included. */
  execs: number;
  /** Inputs that `run` returned from without throwing. */
  accepted: number;
  /** The slowest single input, in milliseconds. */
  slowestMs: number;
  /** The target's counters after the run (they are reset at its start). */
  counters: Record<string, number>;
  /** The first finding, if any: what went wrong and the input that did it. */
  finding?: { error: unknown; input: Uint8Array };
}

/**
 * Runs `target` over its seeds, then over mutations of a pool that starts with the seeds and
 * keeps some inputs that `run` accepted. A `ProtocolError` from `run` is a rejected input; any
 * other error, or an input slower than `maxRunMs`, is a finding and stops the run.
 *
 * @param target The target.
 * @param options The seed and the limits; at least one of `durationMs` and `iterations`.
 * @returns The counts and the finding, if any.
 */
export function runFuzz(target: FuzzTarget, options: RunOptions): RunResult {
  const { durationMs, iterations } = options;
  if (durationMs === undefined && iterations === undefined) {
    throw new TypeError("runFuzz needs durationMs or iterations");
  }
  const maxRunMs = options.maxRunMs ?? 2000;
  if (target.counters !== undefined) {
    for (const key of Object.keys(target.counters)) target.counters[key] = 0;
  }
  const rand = prng(targetSeed(options.seed, target.name));
  const pool: Uint8Array[] = target.seeds.map((s) => s.slice());
  const deadline = durationMs === undefined ? Infinity : performance.now() + durationMs;
  const limit = iterations ?? Infinity;
  let execs = 0;
  let accepted = 0;
  let slowestMs = 0;
  let finding: RunResult["finding"];
  while (execs < limit && performance.now() < deadline) {
    const input = execs < pool.length ? pool[execs]! : mutate(rand, pool);
    const started = performance.now();
    let failure: unknown;
    let ok = true;
    try {
      target.run(input);
    } catch (error) {
      ok = false;
      if (!(error instanceof Error) || error.name !== "ProtocolError") failure = error;
    }
    const elapsed = performance.now() - started;
    slowestMs = Math.max(slowestMs, elapsed);
    if (failure === undefined && elapsed > maxRunMs) {
      failure = new Error(`Run took ${elapsed.toFixed(0)} ms (limit ${maxRunMs} ms)`);
    }
    execs++;
    if (failure !== undefined) {
      finding = { error: failure, input };
      break;
    }
    if (ok) accepted++;
    // Keep a bounded pool of inputs that decoded without error: they reach deeper code.
    if (ok && pool.length < 256 && rand() < 0.05) pool.push(input);
  }
  const result: RunResult = {
    execs,
    accepted,
    slowestMs,
    counters: { ...target.counters },
  };
  if (finding !== undefined) result.finding = finding;
  return result;
}
