// The fuzz targets under a fixed seed: no findings, and the mutated inputs of the hello and
// authenticated-record targets really reach the parsers (they are not all rejected before).
import assert from "node:assert/strict";
import { ProtocolError } from "../src/errors.ts";
import { runFuzz } from "../fuzz/engine.ts";
import type { FuzzTarget } from "../fuzz/target.ts";
import authenticatedRecord from "../fuzz/targets/authenticated_record.ts";
import hello from "../fuzz/targets/hello.ts";

const SEED = 20_240_601;
const ITERATIONS = 500;

/** Runs the target's seeds alone, then `ITERATIONS` inputs; returns both counter sets. */
function runTwice(
  target: FuzzTarget,
): { seeds: Record<string, number>; all: Record<string, number> } {
  const seeds = runFuzz(target, { seed: SEED, iterations: target.seeds.length });
  assert.equal(seeds.finding, undefined, `${target.name}: finding in the seeds`);
  const all = runFuzz(target, { seed: SEED, iterations: ITERATIONS });
  if (all.finding !== undefined) {
    throw new Error(`${target.name}: finding ${all.finding.error}`, { cause: all.finding.error });
  }
  assert.equal(all.execs, ITERATIONS);
  return { seeds: seeds.counters, all: all.counters };
}

Deno.test("fuzz targets: every target in fuzz/targets/ runs 200 inputs without a finding", async () => {
  const dir = new URL("../fuzz/targets/", import.meta.url);
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".ts")) names.push(entry.name);
  }
  assert.ok(names.includes("hello.ts") && names.includes("authenticated_record.ts"));
  for (const name of names.sort()) {
    const { default: target } = await import(new URL(name, dir).href) as { default: FuzzTarget };
    const result = runFuzz(target, { seed: SEED, iterations: 200 });
    assert.equal(result.finding, undefined, `${target.name}: ${result.finding?.error}`);
    assert.equal(result.execs, 200);
  }
});

Deno.test("fuzz targets: a fixed seed replays the same run", () => {
  const first = runFuzz(authenticatedRecord, { seed: SEED, iterations: 300 });
  const second = runFuzz(authenticatedRecord, { seed: SEED, iterations: 300 });
  assert.deepEqual(second.counters, first.counters);
  assert.equal(second.accepted, first.accepted);
});

Deno.test("fuzz targets: hello, mutated hellos reach the parameter parser", () => {
  const { seeds, all } = runTwice(hello);
  const mutated = (key: string) => all[key]! - seeds[key]!;
  // Mutations decode, and are refused both at the fixed header and inside the TLV block.
  assert.ok(mutated("decoded") >= 50, `decoded ${mutated("decoded")}`);
  assert.ok(mutated("canonical") >= 20, `canonical ${mutated("canonical")}`);
  assert.ok(mutated("rejectedPolicy") >= 20, `rejectedPolicy ${mutated("rejectedPolicy")}`);
  assert.ok(
    mutated("rejectedMalformed") >= 20,
    `rejectedMalformed ${mutated("rejectedMalformed")}`,
  );
  assert.equal(
    all.decoded! + all.rejectedPolicy! + all.rejectedMalformed!,
    ITERATIONS,
    "every input is decoded or rejected with a documented code",
  );
});

Deno.test("fuzz targets: authenticated_record, mutated plaintext reaches the batch parser", () => {
  const { seeds, all } = runTwice(authenticatedRecord);
  const mutated = (key: string) => all[key]! - seeds[key]!;
  // Authentication stops only empty inners (too short to be a record): the rest is opened.
  assert.ok(all.authFailed! * 10 < all.records!, `authFailed ${all.authFailed} of ${all.records}`);
  // Mutated DATA bodies reach decodeBatch; some decode, some are refused by it.
  assert.ok(
    mutated("dataReachedParser") >= 50,
    `dataReachedParser ${mutated("dataReachedParser")}`,
  );
  assert.ok(mutated("batchDecoded") >= 20, `batchDecoded ${mutated("batchDecoded")}`);
  assert.ok(mutated("batchRejected") >= 20, `batchRejected ${mutated("batchRejected")}`);
  assert.ok(
    mutated("rejectedInvalidMessage") >= 10,
    `rejectedInvalidMessage ${mutated("rejectedInvalidMessage")}`,
  );
  // With the decompressor, mutated compressed entries are decompressed or refused as corrupt.
  assert.ok(
    mutated("entriesDecompressed") >= 10,
    `entriesDecompressed ${mutated("entriesDecompressed")}`,
  );
  assert.ok(
    mutated("rejectedDecompressionFailure") >= 1,
    `rejectedDecompressionFailure ${mutated("rejectedDecompressionFailure")}`,
  );
  // The record-type parsing sees mutations too: bad types and contents, KEY_UPDATE, CLOSE.
  assert.ok(mutated("channelRejected") >= 20, `channelRejected ${mutated("channelRejected")}`);
  assert.ok(mutated("keyUpdates") >= 1, `keyUpdates ${mutated("keyUpdates")}`);
  // KEY_UPDATE right after another one, and the 101st at once, are refused (seeds).
  assert.ok(seeds.keyUpdatesRefused! >= 2, `keyUpdatesRefused ${seeds.keyUpdatesRefused}`);
  assert.ok(mutated("closes") >= 20, `closes ${mutated("closes")}`);
});

Deno.test("fuzz engine: an error other than ProtocolError is a finding, with its input", () => {
  const target: FuzzTarget = {
    name: "synthetic",
    seeds: [new Uint8Array([1, 2, 3])],
    run(input) {
      if (input.length === 0) throw new ProtocolError("Truncated", "empty");
      if (input.includes(0x42)) throw new TypeError("boom");
    },
  };
  const result = runFuzz(target, { seed: SEED, iterations: 100_000 });
  assert.ok(result.finding !== undefined);
  assert.ok(result.finding.error instanceof TypeError);
  assert.ok(result.finding.input.includes(0x42));
  assert.ok(result.execs < 100_000);
});
