/**
 * The cluster's metrics: peers by state (a `state` label with four values, never a peer as a label),
 * transitions, probes by kind and outcome, identity refusals, local health.
 *
 * @module
 */

import type { CounterSeries, HistogramSeries, MetricsRegistry } from "../metrics.ts";
import type { ProbeOutcome } from "./detector.ts";
import type { PeerInfo, PeerState } from "./types.ts";

const STATES: readonly PeerState[] = ["alive", "suspect", "dead", "left"];
const TRANSITIONS = ["join", "suspect", "alive", "dead", "left", "updated"] as const;
const RTT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The series of a cluster, looked up once. */
export interface ClusterMetrics {
  /** The registry. */
  readonly registry: MetricsRegistry;
  /** Transitions, by event type. */
  readonly transitions: Readonly<Record<(typeof TRANSITIONS)[number], CounterSeries>>;
  /** Identity refusals, by reason. */
  readonly refusals: Readonly<Record<"key-mismatch" | "wrong-id", CounterSeries>>;
  /** Stalls of this node's event loop. */
  readonly stalls: CounterSeries;
  /** Round trips of direct probes answered. */
  readonly rtt: HistogramSeries;
  /**
   * Counts a probe.
   *
   * @param kind Direct or indirect.
   * @param outcome What came of it.
   */
  probe(kind: "direct" | "indirect", outcome: ProbeOutcome): void;
}

/**
 * Registers the cluster's metrics in a registry (the member's server's: they appear on its
 * `metrics()` and `/metrics`).
 *
 * @example Peers by state
 * ```ts
 * import { clusterMetrics } from "./metrics.ts";
 * import { MetricsRegistry } from "../metrics.ts";
 * import assert from "node:assert/strict";
 *
 * const metrics = clusterMetrics(new MetricsRegistry(), () => [], () => 0);
 * assert.match(metrics.registry.render(), /^npro_cluster_peers\{state="alive"\} 0$/m);
 * ```
 *
 * @param registry Where the metrics go.
 * @param peers Reads the peers at each render.
 * @param healthScore Reads the local health score at each render.
 * @returns The series.
 */
export function clusterMetrics(
  registry: MetricsRegistry,
  peers: () => readonly PeerInfo[],
  healthScore: () => number,
): ClusterMetrics {
  registry.collected(
    "cluster_peers",
    "Peers this node sees, by state (alive, suspect, dead, left).",
    "gauge",
    ["state"],
    (emit) => {
      const counts: Record<PeerState, number> = { alive: 0, suspect: 0, dead: 0, left: 0 };
      for (const peer of peers()) counts[peer.state]++;
      for (const state of STATES) emit([state], counts[state]);
    },
  );
  registry.gauge(
    "cluster_local_health_score",
    "Lifeguard score of this node (timeouts are multiplied by score + 1).",
    healthScore,
  );
  const transitionMetric = registry.counter(
    "cluster_transitions_total",
    "Membership events, by type (join, suspect, alive, dead, left, updated).",
    ["event"],
  );
  const transitions = Object.fromEntries(
    TRANSITIONS.map((event) => [event, transitionMetric.labels({ event })]),
  ) as Record<(typeof TRANSITIONS)[number], CounterSeries>;
  const refusalMetric = registry.counter(
    "cluster_identity_refusals_total",
    "Peers refused for presenting another key or node id, by reason.",
    ["reason"],
  );
  const refusals = {
    "key-mismatch": refusalMetric.labels({ reason: "key-mismatch" }),
    "wrong-id": refusalMetric.labels({ reason: "wrong-id" }),
  };
  const stalls = registry.counter(
    "cluster_local_stalls_total",
    "Stalls of this node's event loop (no verdicts were given for a while after each).",
  ).labels({});
  const probes = registry.counter(
    "cluster_probes_total",
    "Probes sent, by kind (direct, indirect) and outcome (ack, failed, inconclusive).",
    ["kind", "outcome"],
  );
  const rtt = registry.histogram(
    "cluster_probe_rtt_seconds",
    "Round trips of direct probes answered.",
    RTT_BUCKETS,
  ).labels({});
  return {
    registry,
    transitions,
    refusals,
    stalls,
    rtt,
    probe(kind, outcome) {
      probes.labels({ kind, outcome }).inc();
    },
  };
}
