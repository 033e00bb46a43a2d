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
  args: Deno.args,
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

const detections: number[] = [];
let missed = 0;
for (const crash of crashes) {
  for (const observer of ids) {
    if (observer === crash.id) continue;
    // Observers that were themselves down during the window are left out.
    if (!upAt(observer, crash.at) || !upAt(observer, crash.restartAt - 1)) continue;
    const seen = sim.observations.find((o) =>
      o.observer === observer && o.event.type === "dead" && o.event.peer.id === crash.id &&
      o.at >= crash.at && o.at < crash.restartAt
    );
    if (seen === undefined) missed++;
    else detections.push(seen.at - crash.at);
  }
}
detections.sort((a, b) => a - b);
const q = (p: number): number =>
  detections.length === 0
    ? NaN
    : detections[Math.min(detections.length - 1, Math.ceil(p * detections.length) - 1)]!;
/** Whether `id` stalled (for at least `minMs`) at some time within `windowMs` before `at`. */
function stalledWithin(id: string, at: number, windowMs: number, minMs = 0): boolean {
  return (stallTimes.get(id) ?? []).some(([from, to]) =>
    from <= at && to >= at - windowMs && to - from >= minMs
  );
}
// A verdict may follow a stall by a probe round, the probe timeouts and the suspicion timeout.
const window = settings.probeIntervalMs * 2 + settings.probeTimeoutMs * 3 +
  suspicionTimeout(settings.suspicionMultiplier, n, settings.probeIntervalMs);
let falseDead = 0;
let deadOfStalledTarget = 0;
let deadByStalledObserver = 0;
let falseSuspect = 0;
let refuted = 0;
let restarts = 0;
for (const o of sim.observations) {
  const e = o.event;
  if (e.type === "dead" && upAt(e.peer.id, o.at)) {
    // A peer that stalled longer than the suspicion timeout was, for that long, dead.
    const suspicionMs = suspicionTimeout(settings.suspicionMultiplier, n, settings.probeIntervalMs);
    if (stalledWithin(e.peer.id, o.at, window, suspicionMs)) deadOfStalledTarget++;
    else if (stalledWithin(o.observer, o.at, window)) deadByStalledObserver++;
    else falseDead++;
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
  suspicionTimeoutMs: suspicionTimeout(settings.suspicionMultiplier, n, settings.probeIntervalMs),
  detectionMs: {
    count: detections.length,
    median: Math.round(q(0.5)),
    p99: Math.round(q(0.99)),
    max: Math.round(detections.at(-1) ?? NaN),
  },
  missedDetections: missed,
  falseDead,
  deadByStalledObserver,
  deadOfStalledTarget,
  falseSuspect,
  refutedSuspicions: refuted,
  restartsSeen: restarts,
  wallSeconds: Math.round(wallMs / 100) / 10,
};
if (values.json) {
  console.log(JSON.stringify(result));
} else {
  console.log(
    `${n} nodes, ${result.simulatedMinutes} simulated min (seed ${seed}, lifeguard ${settings.lifeguard}), ` +
      `${crashes.length} crashes, ${stalls} stalls, ${overloaded.length} overloaded nodes, wall ${result.wallSeconds} s`,
  );
  console.log(
    `detection ms: median ${result.detectionMs.median}, p99 ${result.detectionMs.p99}, max ${result.detectionMs.max} ` +
      `(${detections.length} observations, ${missed} missed; suspicion timeout ${
        Math.round(result.suspicionTimeoutMs)
      } ms)`,
  );
  console.log(
    `false positives: ${falseDead} dead, ${deadByStalledObserver} dead by a stalled observer, ` +
      `${falseSuspect} suspect (${refuted} suspicions refuted); ${deadOfStalledTarget} dead ` +
      `verdicts on a peer stalled longer than the suspicion timeout; ${restarts} restarts seen`,
  );
}
