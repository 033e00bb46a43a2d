/**
 * The bridge from a {@linkcode MetricsRegistry} to an OpenTelemetry `Meter`, for services that
 * export OTLP (an OpenTelemetry SDK, or Deno's own export with `OTEL_DENO=true`) rather than serve
 * a Prometheus scrape (docs/DEPLOYMENT.md, "OpenTelemetry").
 *
 * Every family becomes observable instruments read when the SDK collects, from the same numbers
 * `/metrics` shows: nothing is added to the request path. The meter is typed by the few methods
 * used, so this module has no dependency: pass `metrics.getMeter("npro")` from
 * `@opentelemetry/api`.
 *
 * @module
 */

import type { MetricsRegistry } from "./metrics.ts";

/** What {@linkcode exportToOpenTelemetry} records into: the batch observer of an OpenTelemetry SDK. */
export interface OpenTelemetryBatchResult<O> {
  /**
   * Records one value of an instrument.
   *
   * @param observable The instrument.
   * @param value The value.
   * @param attributes The attributes (the sample's labels).
   */
  observe(observable: O, value: number, attributes?: Record<string, string>): void;
}

/**
 * The part of an OpenTelemetry `Meter` (`@opentelemetry/api`) that {@linkcode exportToOpenTelemetry}
 * uses.
 */
export interface OpenTelemetryMeter<O extends object> {
  /**
   * Creates an observable counter.
   *
   * @param name The instrument name.
   * @param options Its description.
   */
  createObservableCounter(name: string, options?: { description?: string }): O;
  /**
   * Creates an observable gauge.
   *
   * @param name The instrument name.
   * @param options Its description.
   */
  createObservableGauge(name: string, options?: { description?: string }): O;
  /**
   * Registers one callback that observes several instruments.
   *
   * @param callback Called at each collection.
   * @param observables The instruments it observes.
   */
  addBatchObservableCallback(
    callback: (result: OpenTelemetryBatchResult<O>) => void,
    observables: O[],
  ): void;
  /**
   * Removes a callback registered with `addBatchObservableCallback`.
   *
   * @param callback The callback.
   * @param observables The same instruments.
   */
  removeBatchObservableCallback(
    callback: (result: OpenTelemetryBatchResult<O>) => void,
    observables: O[],
  ): void;
}

/**
 * Mirrors `registry` into `meter`: counters become observable counters, gauges observable
 * gauges, and a histogram three observable counters, `<name>_bucket` (cumulative, with the `le`
 * attribute), `<name>_sum` and `<name>_count`, as in the text format. Instrument names and
 * attributes are the registry's names and labels. Families registered after the call are not
 * mirrored: register your own metrics first.
 *
 * @example Export a server's metrics through OpenTelemetry
 * ```ts ignore
 * import { metrics } from "npm:@opentelemetry/api@1";
 * import { Dispatcher, exportToOpenTelemetry, serve } from "@npro/network-protocol";
 *
 * const server = await serve({ address: "127.0.0.1:7000" }, new Dispatcher());
 * using _bridge = exportToOpenTelemetry(server.metricsRegistry, metrics.getMeter("npro"));
 * await server.closed();
 * ```
 *
 * @example Mirror a registry into a meter that records what it sees
 * ```ts
 * import { exportToOpenTelemetry, MetricsRegistry, type OpenTelemetryMeter } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const registry = new MetricsRegistry();
 * registry.counter("jobs_total", "Jobs.").labels({}).inc(2);
 * let collect: ((result: { observe(o: string, v: number): void }) => void) | undefined;
 * const meter: OpenTelemetryMeter<{ name: string }> = {
 *   createObservableCounter: (name) => ({ name }),
 *   createObservableGauge: (name) => ({ name }),
 *   addBatchObservableCallback: (callback) => collect = (r) => callback({ observe: (o, v) => r.observe(o.name, v) }),
 *   removeBatchObservableCallback: () => collect = undefined,
 * };
 * const bridge = exportToOpenTelemetry(registry, meter);
 * const seen: [string, number][] = [];
 * collect!({ observe: (name, value) => seen.push([name, value]) });
 * assert.deepEqual(seen, [["npro_jobs_total", 2]]);
 * bridge[Symbol.dispose]();
 * assert.equal(collect, undefined);
 * ```
 *
 * @param registry The registry (for a server, `server.metricsRegistry`).
 * @param meter An OpenTelemetry meter.
 * @returns Removes the bridge when disposed.
 */
export function exportToOpenTelemetry<O extends object>(
  registry: MetricsRegistry,
  meter: OpenTelemetryMeter<O>,
): Disposable {
  const instruments = new Map<string, O>();
  for (const family of registry.collect()) {
    const options = { description: family.help };
    if (family.type === "histogram") {
      for (const suffix of ["_bucket", "_sum", "_count"]) {
        instruments.set(
          family.name + suffix,
          meter.createObservableCounter(family.name + suffix, options),
        );
      }
    } else if (family.type === "counter") {
      instruments.set(family.name, meter.createObservableCounter(family.name, options));
    } else {
      instruments.set(family.name, meter.createObservableGauge(family.name, options));
    }
  }
  const callback = (result: OpenTelemetryBatchResult<O>): void => {
    for (const family of registry.collect()) {
      for (const sample of family.samples) {
        const instrument = instruments.get(sample.name);
        if (instrument !== undefined) {
          result.observe(instrument, sample.value, { ...sample.labels });
        }
      }
    }
  };
  const observables = [...instruments.values()];
  meter.addBatchObservableCallback(callback, observables);
  let removed = false;
  return {
    [Symbol.dispose]() {
      if (removed) return;
      removed = true;
      meter.removeBatchObservableCallback(callback, observables);
    },
  };
}
