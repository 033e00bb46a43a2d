/**
 * The cluster failure detector under simulated load: 20 nodes for 10 simulated minutes on a
 * virtual clock (docs/CLUSTER.md, "Measured"). Nodes crash and restart, some stall their event
 * loop, messages are delayed, jittered, spiked and lost; the run reports the detection time of
 * crashes (median, p99, max, over every observer) and the false positives (peers declared dead,
 * or suspected, while they were up).
 *
 * Run (no permissions needed):
 *
 * ```sh
 * deno run bench/cluster_sim.ts                      # defaults: 20 nodes, 10 minutes, seed 1
 * deno run bench/cluster_sim.ts --no-lifeguard       # the same run without local health
 * deno run bench/cluster_sim.ts --suspicion-multiplier 2 --json
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type NetworkModel, SimCluster } from "./cluster/sim.ts";
import { suspicionTimeout } from "../src/service/cluster/membership.ts";

const { values } = parseArgs({
  // `deno task bench:cluster -- --json` passes the "--" on.
  args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
  options: {
    nodes: { type: "string", default: "20" },
    minutes: { type: "string", default: "10" },
    seed: { type: "string", default: "1" },
    "probe-interval": { type: "string", default: "1000" },
    "probe-timeout": { type: "string", default: "500" },
    indirect: { type: "string", default: "3" },
    "suspicion-multiplier": { type: "string", default: "4" },
    "loss": { type: "string", default: "0.01" },
    "stall-every": { type: "string", default: "10000" },
    "stall-min": { type: "string", default: "200" },
    "stall-max": { type: "string", default: "2500" },
    overloaded: { type: "string", default: "2" },
    "overload-max": { type: "string", default: "1000" },
    "no-lifeguard": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});

const n = Number(values.nodes);
const durationMs = Number(values.minutes) * 60_000;
const settings = {
  probeIntervalMs: Number(values["probe-interval"]),
  probeTimeoutMs: Number(values["probe-timeout"]),
  indirectProbes: Number(values.indirect),
  suspicionMultiplier: Number(values["suspicion-multiplier"]),
  maxLocalHealth: 8,
  lifeguard: !values["no-lifeguard"],
};
const network: NetworkModel = {
  baseMs: 0.3,
  jitterMs: 0.5,
  spikeProbability: 0.02,
  spikeMs: 400,
  loss: Number(values.loss),
};
const seed = Number(values.seed);
const sim = new SimCluster(n, settings, network, seed);
const random = (() => {
  let a = (seed * 7919) >>> 0;
  return () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 4294967296;
  };
})();

/** When each node was down: [from, to) intervals. */
const downtime = new Map<string, [number, number][]>();
const crashes: { id: string; at: number; restartAt: number }[] = [];
const ids = [...sim.nodes.keys()];
const CRASH_EVERY = 40_000;
const DOWN_FOR = 25_000;
for (let t = 30_000; t + DOWN_FOR < durationMs; t += CRASH_EVERY) {
  const id = ids[Math.floor(random() * ids.length)]!;
  crashes.push({ id, at: t, restartAt: t + DOWN_FOR });
  const list = downtime.get(id) ?? [];
  list.push([t, t + DOWN_FOR]);
  downtime.set(id, list);
  sim.time.at(t, () => sim.crash(id));
  sim.time.at(t + DOWN_FOR, () => sim.restart(id));
}
// Periodic local stalls: a node's event loop blocks for 0.2 to 2.5 s (by default).
const stallEvery = Number(values["stall-every"]);
let stalls = 0;
const stallTimes = new Map<string, [number, number][]>();
for (let t = 5_000; stallEvery > 0 && t < durationMs; t += stallEvery) {
  const id = ids[Math.floor(random() * ids.length)]!;
  const min = Number(values["stall-min"]);
  const ms = min + random() * (Number(values["stall-max"]) - min);
  sim.time.at(t, () => {
    if (!sim.nodes.get(id)!.down) {
      stalls++;
      sim.stall(id, ms);
      const list = stallTimes.get(id) ?? [];
      list.push([t, t + ms]);
      stallTimes.set(id, list);
    }
  });
}

// Overloaded nodes (Consul's "an overloaded agent can cause another node to fail"): their event
// loop blocks for 50 to 1000 ms (--overload-max) every 1 to 4 s, all the run long.
const overloaded = ids.slice(0, Number(values.overloaded));
for (const id of overloaded) {
  for (let t = 2_000 + random() * 2_000; t < durationMs; t += 1_000 + random() * 3_000) {
    const ms = 50 + random() * (Number(values["overload-max"]) - 50);
    const at = t;
    sim.time.at(at, () => {
      if (!sim.nodes.get(id)!.down) {
        sim.stall(id, ms);
        const list = stallTimes.get(id) ?? [];
        list.push([at, at + ms]);
        stallTimes.set(id, list);
      }
    });
  }
}

const started = performance.now();
sim.start();
await sim.time.run(durationMs);
await sim.stop();
const wallMs = performance.now() - started;

function upAt(id: string, at: number): boolean {
  return !(downtime.get(id) ?? []).some(([from, to]) => at >= from && at < to);
}

/** Detection times (ms) by healthy and by overloaded observers, and crashes not seen in time. */
const detections = { healthy: [] as number[], overloaded: [] as number[] };
const missed = { healthy: 0, overloaded: 0 };
for (const crash of crashes) {
  for (const observer of ids) {
    if (observer === crash.id) continue;
    // Observers that were themselves down during the window are left out.
    if (!upAt(observer, crash.at) || !upAt(observer, crash.restartAt - 1)) continue;
    const kind = overloaded.includes(observer) ? "overloaded" : "healthy";
    const seen = sim.observations.find((o) =>
      o.observer === observer && o.event.type === "dead" && o.event.peer.id === crash.id &&
      o.at >= crash.at && o.at < crash.restartAt
    );
    if (seen === undefined) missed[kind]++;
    else detections[kind].push(seen.at - crash.at);
  }
}
function stats(values: number[]): { count: number; median: number; p99: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const q = (p: number): number =>
    sorted.length === 0
      ? NaN
      : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
  return {
    count: sorted.length,
    median: Math.round(q(0.5)),
    p99: Math.round(q(0.99)),
    max: Math.round(sorted.at(-1) ?? NaN),
  };
}
/** Whether `id` stalled (for at least `minMs`) at some time within `windowMs` before `at`. */
function stalledWithin(id: string, at: number, windowMs: number, minMs = 0): boolean {
  return (stallTimes.get(id) ?? []).some(([from, to]) =>
    from <= at && to >= at - windowMs && to - from >= minMs
  );
}
const suspicionMs = suspicionTimeout(settings.suspicionMultiplier, n, settings.probeIntervalMs);
// A verdict may follow a stall by a probe round, the probe timeouts and the suspicion timeout.
const window = settings.probeIntervalMs * 2 + settings.probeTimeoutMs * 3 + suspicionMs;
/**
 * Dead verdicts on peers that were up: by a stalled (or overloaded) observer, on an overloaded
 * peer, on any other peer; verdicts on a peer just stalled longer than the suspicion timeout are
 * counted apart (for that long it was as good as dead).
 */
const falseDead = { byStalledObserver: 0, onOverloaded: 0, other: 0 };
let deadOfLongStall = 0;
let falseSuspect = 0;
let refuted = 0;
let restarts = 0;
for (const o of sim.observations) {
  const e = o.event;
  if (e.type === "dead" && upAt(e.peer.id, o.at)) {
    if (stalledWithin(e.peer.id, o.at, window, suspicionMs)) deadOfLongStall++;
    else if (stalledWithin(o.observer, o.at, window)) falseDead.byStalledObserver++;
    else if (overloaded.includes(e.peer.id)) falseDead.onOverloaded++;
    else falseDead.other++;
  }
  if (e.type === "suspect" && upAt(e.peer.id, o.at)) falseSuspect++;
  if (e.type === "alive" && e.from === "suspect") refuted++;
  if (e.type === "updated" && e.reason === "restarted") restarts++;
}
const result = {
  nodes: n,
  simulatedMinutes: durationMs / 60_000,
  seed,
  settings,
  network,
  crashes: crashes.length,
  stalls,
  overloaded: overloaded.length,
  suspicionTimeoutMs: Math.round(suspicionMs),
  detectionMs: {
    all: stats([...detections.healthy, ...detections.overloaded]),
    healthyObservers: stats(detections.healthy),
    overloadedObservers: stats(detections.overloaded),
  },
  missedDetections: missed,
  falseDead,
  deadOfLongStall,
  falseSuspect,
  refutedSuspicions: refuted,
  restartsSeen: restarts,
  wallSeconds: Math.round(wallMs / 100) / 10,
};
if (values.json) {
  console.log(JSON.stringify(result));
} else {
  const line = (name: string, d: ReturnType<typeof stats>, miss: number) =>
    `${name}: median ${d.median}, p99 ${d.p99}, max ${d.max} ms (${d.count} seen, ${miss} missed)`;
  console.log(
    `${n} nodes, ${result.simulatedMinutes} simulated min (seed ${seed}, lifeguard ${settings.lifeguard}), ` +
      `${crashes.length} crashes, ${stalls} stalls, ${overloaded.length} overloaded nodes, ` +
      `suspicion timeout ${result.suspicionTimeoutMs} ms, wall ${result.wallSeconds} s`,
  );
  console.log(
    line("detection, healthy observers", result.detectionMs.healthyObservers, missed.healthy),
  );
  console.log(
    line(
      "detection, overloaded observers",
      result.detectionMs.overloadedObservers,
      missed.overloaded,
    ),
  );
  console.log(
    `false dead: ${falseDead.other} on healthy peers, ${falseDead.onOverloaded} on overloaded peers, ` +
      `${falseDead.byStalledObserver} by a stalled observer; ${deadOfLongStall} dead verdicts on a ` +
      `peer stalled longer than the suspicion timeout`,
  );
  console.log(
    `false suspect: ${falseSuspect} (${refuted} suspicions refuted); ${restarts} restarts seen`,
  );
}
