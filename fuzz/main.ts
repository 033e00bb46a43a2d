/**
 * A small mutation fuzzer over the targets in `fuzz/targets/`: random inputs and mutations of
 * each target's seeds (bit flips, byte changes, insertions, deletions, splices, truncations and
 * interesting integers; see `fuzz/engine.ts`). A target may throw only `ProtocolError`; anything
 * else, or a single run slower than `--max-run-ms`, is a finding: the input is printed in hex and
 * written to `.tmp/fuzz-findings/`, and the process exits with code 1. Targets that count what
 * their inputs reached (for example how many batches decoded) print their counters.
 *
 * Usage: deno task fuzz [--seconds 60] [--target name] [--seed 1] [--max-run-ms 2000]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hex, runFuzz } from "./engine.ts";
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

const perTargetMs = (seconds * 1000) / targets.length;
let findings = 0;
let total = 0;
for (const target of targets) {
  const result = runFuzz(target, { seed, durationMs: perTargetMs, maxRunMs });
  total += result.execs;
  if (result.finding !== undefined) {
    findings++;
    const { error, input } = result.finding;
    const file = `.tmp/fuzz-findings/${target.name}-${hex(input).slice(0, 16)}.bin`;
    await Deno.mkdir(".tmp/fuzz-findings", { recursive: true });
    await Deno.writeFile(file, input);
    console.error(`FINDING in "${target.name}" (seed ${seed}): ${error}\n  input: ${hex(input)}`);
  }
  const counters = Object.entries(result.counters).map(([key, n]) => `${key} ${n}`).join(", ");
  console.log(
    `fuzz ${target.name}: ${result.execs} runs (${result.accepted} accepted) in ` +
      `${(perTargetMs / 1000).toFixed(1)} s, slowest ${result.slowestMs.toFixed(1)} ms` +
      (counters === "" ? "" : `; ${counters}`),
  );
}
console.log(
  `fuzz: ${total} runs over ${targets.length} targets, seed ${seed}, ${findings} findings`,
);
if (findings > 0) Deno.exit(1);
