/**
 * A client's pools in a {@linkcode MetricsRegistry}: connections by state, requests in flight,
 * waiters, breakers by state, and the pools' counters (docs/DEPLOYMENT.md, "Metrics").
 *
 * @module
 */

import type { BreakerState } from "./circuit_breaker.ts";
import type { MetricsRegistry } from "./metrics.ts";
import type { Pool, PoolStats } from "./pool.ts";

const BREAKER_STATES: readonly BreakerState[] = ["closed", "open", "half-open"];

/**
 * Registers the metrics of `pools` in `registry`, read from `pool.stats()` at each render (nothing
 * is added to the request path). Each pool is labelled by its key in `pools` (`pool="orders"`), a
 * name the application chooses; addresses are never labels (breakers are counted by state).
 * Register every pool of the registry in one call: the metric names can be registered once.
 *
 * | metric                                   | type    | labels                                                 |
 * | ---------------------------------------- | ------- | ------------------------------------------------------ |
 * | `npro_pool_connections`                  | gauge   | `pool`, `state` (open, opening, idle, leased)          |
 * | `npro_pool_requests_in_flight`           | gauge   | `pool`                                                 |
 * | `npro_pool_waiting`                      | gauge   | `pool`                                                 |
 * | `npro_pool_breakers`                     | gauge   | `pool`, `state` (closed, open, half-open)              |
 * | `npro_pool_connections_created_total`    | counter | `pool`                                                 |
 * | `npro_pool_connections_closed_total`     | counter | `pool`                                                 |
 * | `npro_pool_connect_failures_total`       | counter | `pool`                                                 |
 * | `npro_pool_acquire_failures_total`       | counter | `pool`, `reason` (timeout, queue-full)                 |
 * | `npro_pool_retries_total`                | counter | `pool`                                                 |
 *
 * @example Serve a pool's figures on the server's `/metrics`
 * ```ts
 * import { createPool, Dispatcher, registerPoolMetrics, registerStandardHandlers, serve } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * await using upstream = await serve({ address: "127.0.0.1:0" }, registerStandardHandlers(new Dispatcher()));
 * await using pool = createPool({
 *   address: `127.0.0.1:${(upstream.addr as Deno.NetAddr).port}`,
 *   security: { serverKeys: [upstream.publicKey!] },
 * });
 * registerPoolMetrics(upstream.metricsRegistry, { upstream: pool });
 * await pool.request({ type: "ping" });
 * assert.match(upstream.metrics(), /^npro_pool_connections\{pool="upstream",state="open"\} 1$/m);
 * ```
 *
 * @param registry Where the metrics go (for example `server.metricsRegistry`).
 * @param pools The pools, by the name their label takes.
 */
export function registerPoolMetrics(
  registry: MetricsRegistry,
  pools: Readonly<Record<string, Pool>>,
): void {
  const entries = Object.entries(pools);
  let stats: [string, PoolStats][] = [];
  registry.beforeRender(() => stats = entries.map(([name, pool]) => [name, pool.stats()]));
  type Emit = (values: readonly string[], value: number) => void;
  const each = (read: (s: PoolStats) => number) => (emit: Emit) => {
    for (const [name, s] of stats) emit([name], read(s));
  };
  registry.collected(
    "pool_connections",
    "Pool connections by state (open counts every open one; idle and leased are among them).",
    "gauge",
    ["pool", "state"],
    (emit) => {
      for (const [name, s] of stats) {
        emit([name, "open"], s.open);
        emit([name, "opening"], s.opening);
        emit([name, "idle"], s.idle);
        emit([name, "leased"], s.leased);
      }
    },
  );
  registry.collected(
    "pool_requests_in_flight",
    "Pool requests in flight.",
    "gauge",
    ["pool"],
    each((s) => s.inFlight),
  );
  registry.collected(
    "pool_waiting",
    "Callers waiting for pool capacity.",
    "gauge",
    ["pool"],
    each((s) => s.waiting),
  );
  registry.collected(
    "pool_breakers",
    "The pool's per-address circuit breakers, by state.",
    "gauge",
    ["pool", "state"],
    (emit) => {
      for (const [name, s] of stats) {
        const counts = new Map<BreakerState, number>(BREAKER_STATES.map((state) => [state, 0]));
        for (const address of Object.values(s.addresses)) {
          counts.set(address.breaker, (counts.get(address.breaker) ?? 0) + 1);
        }
        for (const state of BREAKER_STATES) emit([name, state], counts.get(state)!);
      }
    },
  );
  registry.collected(
    "pool_connections_created_total",
    "Connections the pool opened.",
    "counter",
    ["pool"],
    each((s) => s.created),
  );
  registry.collected(
    "pool_connections_closed_total",
    "Connections the pool closed or lost.",
    "counter",
    ["pool"],
    each((s) => s.closed),
  );
  registry.collected(
    "pool_connect_failures_total",
    "Failed attempts to connect.",
    "counter",
    ["pool"],
    each((s) => s.failedConnects),
  );
  registry.collected(
    "pool_acquire_failures_total",
    "Callers refused capacity: timeout (waited past their limit) or queue-full (max waiters).",
    "counter",
    ["pool", "reason"],
    (emit) => {
      for (const [name, s] of stats) {
        emit([name, "timeout"], s.acquireTimeouts);
        emit([name, "queue-full"], s.rejected);
      }
    },
  );
  registry.collected(
    "pool_retries_total",
    "Requests sent again because they were provably not processed.",
    "counter",
    ["pool"],
    each((s) => s.retries),
  );
}
