/**
 * The cost of the daemon's metrics (docs/PERFORMANCE.md, "Metrics"): an increment of a held
 * counter series, a label lookup, a histogram observation and a render of the daemon's set.
 *
 * Run: deno bench bench/metrics_bench.ts
 *
 * @module
 */

import { daemonMetrics, MetricsRegistry } from "../src/service/metrics.ts";
import { emptyStats } from "../src/service/connection_stats.ts";

const registry = new MetricsRegistry();
const counter = registry.counter("requests_total", "Requests.", ["outcome"]);
const held = counter.labels({ outcome: "ok" });
const labels = { outcome: "ok" };
const histogram = registry.histogram("latency_seconds", "Latency.", [0.001, 0.01, 0.1, 1], [
  "outcome",
]).labels(labels);
const daemon = daemonMetrics(new MetricsRegistry(), {
  open: () => 10,
  handshaking: () => 0,
  inFlight: () => 0,
  queuedBytes: () => 0,
  traffic: () => emptyStats(),
  knownOpcode: (opcode) => opcode === "ECHO",
});
daemon.accepted.inc();
daemon.handshake("XX", true, 0.002);
daemon.closed("normal");

Deno.bench("counter: held series inc()", { group: "metrics", baseline: true }, () => {
  held.inc();
});
Deno.bench("counter: labels() lookup then inc()", { group: "metrics" }, () => {
  counter.labels(labels).inc();
});
Deno.bench("histogram: held series observe()", { group: "metrics" }, () => {
  histogram.observe(0.0007);
});
Deno.bench("observer: one request (opcode lookup, counter, histogram)", {
  group: "metrics",
}, () => {
  daemon.observer.request("ECHO", "ok", 0.0002);
});
Deno.bench("render: the daemon's metrics", { group: "render" }, () => {
  daemon.registry.render();
});
