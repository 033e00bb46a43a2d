/**
 * A small metrics registry: counters, gauges and histograms with bounded labels, rendered in the
 * Prometheus text exposition format 0.0.4 (docs/DEPLOYMENT.md, "Metrics").
 *
 * Chosen by measurement over `@opentelemetry/api` and `prom-client` (docs/PERFORMANCE.md,
 * "Metrics"): an increment is one property add on a series object looked up once, and the module
 * has no dependency.
 *
 * @module
 */

import {
  type ConnectionObserver,
  type ConnectionStats,
  REQUEST_OUTCOMES,
  type RequestOutcome,
} from "./connection_stats.ts";

/** A label set: label name to value. Values must come from a bounded set (never an address). */
export type Labels = Readonly<Record<string, string>>;

/** One series of a counter: a value that only goes up. */
export interface CounterSeries {
  /** Adds `value` (default 1; must be 0 or more). */
  inc(value?: number): void;
  /** The current value. */
  readonly value: number;
}

/** One series of a histogram. */
export interface HistogramSeries {
  /** Records one observation. */
  observe(value: number): void;
  /** The number of observations. */
  readonly count: number;
  /** The sum of the observations. */
  readonly sum: number;
}

/** Options of {@linkcode MetricsRegistry}. */
export interface MetricsRegistryOptions {
  /** Prepended to every metric name (default `"npro_"`). */
  prefix?: string;
  /**
   * The most series one metric keeps (default 100). Past it, new label sets share one more series
   * whose labels are all `"other"`, so a mistaken label can never grow memory or a scrape without
   * bound.
   */
  maxSeriesPerMetric?: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

class Counter implements CounterSeries {
  value = 0;
  inc(value = 1): void {
    if (value < 0 || !Number.isFinite(value)) {
      throw new RangeError(`Cannot add "${value}" to a counter: it must be finite and 0 or more`);
    }
    this.value += value;
  }
}

class Histogram implements HistogramSeries {
  readonly bounds: readonly number[];
  /** Per bucket (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  count = 0;
  sum = 0;
  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.count++;
    this.sum += value;
  }
}

interface Family<S> {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  readonly labelNames: readonly string[];
  readonly series: Map<string, { labels: readonly string[]; series: S }>;
  readonly make: () => S;
  /** A family read at render: it emits each series' label values and value. */
  readonly collect?: (emit: (values: readonly string[], value: number) => void) => void;
}

/** A metric with labels: {@linkcode LabelledMetric.labels} gives one series (keep it). */
export interface LabelledMetric<S> {
  /**
   * The series of one label set (made on first use, then the same object).
   *
   * @param labels A value for every label name of the metric.
   * @returns The series.
   */
  labels(labels: Labels): S;
}

/**
 * Counters, gauges and histograms, rendered as Prometheus text. Look a series up once and keep
 * it: an increment is then one addition.
 *
 * @example Count refusals and render them
 * ```ts
 * import { MetricsRegistry } from "./metrics.ts";
 * import assert from "node:assert/strict";
 *
 * const registry = new MetricsRegistry();
 * const refused = registry.counter("refused_total", "Connections refused.", ["reason"]);
 * refused.labels({ reason: "connection_limit" }).inc();
 * assert.match(registry.render(), /^npro_refused_total\{reason="connection_limit"\} 1$/m);
 * ```
 */
export class MetricsRegistry {
  readonly #prefix: string;
  readonly #maxSeries: number;
  readonly #families = new Map<string, Family<unknown>>();
  readonly #hooks: (() => void)[] = [];

  /**
   * A registry.
   *
   * @param options The name prefix and the series cap.
   */
  constructor(options: MetricsRegistryOptions = {}) {
    this.#prefix = options.prefix ?? "npro_";
    this.#maxSeries = options.maxSeriesPerMetric ?? 100;
    if (!Number.isInteger(this.#maxSeries) || this.#maxSeries < 1) {
      throw new RangeError(`Cannot cap series at "${this.#maxSeries}": it must be an integer >= 1`);
    }
  }

  /**
   * A counter (its name should end in `_total`).
   *
   * @param name The name, without the prefix.
   * @param help One line of description.
   * @param labelNames The label names (bounded values only).
   * @returns The metric.
   */
  counter(name: string, help: string, labelNames: readonly string[] = []): LabelledMetric<
    CounterSeries
  > {
    return this.#add({ name, help, type: "counter", labelNames, make: () => new Counter() });
  }

  /**
   * A gauge read from `collect` at each render (a gauge costs nothing between scrapes).
   *
   * @param name The name, without the prefix.
   * @param help One line of description.
   * @param collect Returns the current value.
   */
  gauge(name: string, help: string, collect: () => number): void {
    this.#add({
      name,
      help,
      type: "gauge",
      labelNames: [],
      make: () => undefined,
      collect: (emit) => emit([], collect()),
    });
  }

  /**
   * A counter or gauge whose series are read at each render: `collect` calls `emit` once per
   * series with its label values (in the order of `labelNames`). For figures that something
   * else already counts, so nothing is added on the hot path.
   *
   * @example Report bytes each way from counts kept elsewhere
   * ```ts
   * import { MetricsRegistry } from "./metrics.ts";
   * import assert from "node:assert/strict";
   *
   * const registry = new MetricsRegistry();
   * const counts = { received: 10, sent: 20 };
   * registry.collected("bytes_total", "Bytes.", "counter", ["direction"], (emit) => {
   *   emit(["received"], counts.received);
   *   emit(["sent"], counts.sent);
   * });
   * assert.match(registry.render(), /^npro_bytes_total\{direction="sent"\} 20$/m);
   * ```
   *
   * @param name The name, without the prefix.
   * @param help One line of description.
   * @param type `"counter"` or `"gauge"`.
   * @param labelNames The label names (bounded values only).
   * @param collect Emits the series.
   */
  collected(
    name: string,
    help: string,
    type: "counter" | "gauge",
    labelNames: readonly string[],
    collect: (emit: (values: readonly string[], value: number) => void) => void,
  ): void {
    this.#add({ name, help, type, labelNames, make: () => undefined, collect });
  }

  /**
   * Runs `hook` at the start of each render, before any family is read (for example to take one
   * snapshot that several collected families read).
   *
   * @example One snapshot for two families
   * ```ts
   * import { MetricsRegistry } from "./metrics.ts";
   * import assert from "node:assert/strict";
   *
   * const registry = new MetricsRegistry();
   * let snapshot = { a: 0, b: 0 };
   * registry.beforeRender(() => snapshot = { a: 1, b: 2 });
   * registry.collected("a", "A.", "gauge", [], (emit) => emit([], snapshot.a));
   * registry.collected("b", "B.", "gauge", [], (emit) => emit([], snapshot.b));
   * assert.match(registry.render(), /^npro_b 2$/m);
   * ```
   *
   * @param hook The hook.
   */
  beforeRender(hook: () => void): void {
    this.#hooks.push(hook);
  }

  /**
   * A histogram with the given bucket upper bounds (ascending; `+Inf` is added).
   *
   * @param name The name, without the prefix.
   * @param help One line of description.
   * @param buckets The upper bounds.
   * @param labelNames The label names (bounded values only).
   * @returns The metric.
   */
  histogram(
    name: string,
    help: string,
    buckets: readonly number[],
    labelNames: readonly string[] = [],
  ): LabelledMetric<HistogramSeries> {
    for (let i = 0; i < buckets.length; i++) {
      if (!Number.isFinite(buckets[i]!) || (i > 0 && buckets[i]! <= buckets[i - 1]!)) {
        throw new RangeError(`Cannot use buckets [${buckets}]: they must be finite and ascending`);
      }
    }
    const bounds = [...buckets];
    return this.#add({
      name,
      help,
      type: "histogram",
      labelNames,
      make: () => new Histogram(bounds),
    });
  }

  #add<S>(
    spec: Omit<Family<S>, "series" | "name"> & { name: string },
  ): LabelledMetric<S> {
    const name = this.#prefix + spec.name;
    if (!NAME.test(name)) throw new TypeError(`Cannot register metric "${name}": invalid name`);
    if (this.#families.has(name)) {
      throw new TypeError(`Cannot register metric "${name}": already registered`);
    }
    for (const label of spec.labelNames) {
      if (!LABEL.test(label) || label === "le") {
        throw new TypeError(`Cannot register metric "${name}": invalid label "${label}"`);
      }
    }
    const family: Family<S> = { ...spec, name, series: new Map() };
    this.#families.set(name, family as Family<unknown>);
    const max = this.#maxSeries;
    return {
      labels: (labels: Labels = {}): S => {
        const values = family.labelNames.map((label) => labels[label] ?? "");
        let key = values.join("\u0000");
        let entry = family.series.get(key);
        if (entry === undefined) {
          if (family.series.size >= max) {
            values.fill("other");
            key = values.join("\u0000");
            entry = family.series.get(key);
          }
          if (entry === undefined) {
            entry = { labels: values, series: family.make() };
            family.series.set(key, entry);
          }
        }
        return entry.series;
      },
    };
  }

  /** The number of series (for tests and budgets). */
  get seriesCount(): number {
    let n = 0;
    for (const hook of this.#hooks) hook();
    for (const family of this.#families.values()) {
      if (family.collect === undefined) n += family.series.size;
      else family.collect(() => n++);
    }
    return n;
  }

  /**
   * The Prometheus text exposition (format 0.0.4, content type
   * `text/plain; version=0.0.4; charset=utf-8`).
   *
   * @returns The text, ending in a newline.
   */
  render(): string {
    const lines: string[] = [];
    for (const family of this.collect()) {
      lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
      lines.push(`# TYPE ${family.name} ${family.type}`);
      for (const sample of family.samples) {
        const pairs = Object.entries(sample.labels).map(([label, value]) =>
          `${label}="${escapeLabel(value)}"`
        );
        const set = pairs.length > 0 ? `{${pairs.join(",")}}` : "";
        lines.push(`${sample.name}${set} ${formatNumber(sample.value)}`);
      }
    }
    return lines.join("\n") + "\n";
  }

  /**
   * Every family with its samples now, as {@linkcode MetricsRegistry.render} writes them (a
   * histogram as cumulative `_bucket` samples with an `le` label, then `_sum` and `_count`): for
   * exporters other than the text format, such as `exportToOpenTelemetry`.
   *
   * @example Read a counter's samples
   * ```ts
   * import { MetricsRegistry } from "./metrics.ts";
   * import assert from "node:assert/strict";
   *
   * const registry = new MetricsRegistry();
   * registry.counter("jobs_total", "Jobs.", ["queue"]).labels({ queue: "a" }).inc(3);
   * const [family] = registry.collect();
   * assert.deepEqual(family!.samples, [
   *   { name: "npro_jobs_total", labels: { queue: "a" }, value: 3 },
   * ]);
   * ```
   *
   * @returns The families, in registration order.
   */
  collect(): MetricFamilySnapshot[] {
    for (const hook of this.#hooks) hook();
    const families: MetricFamilySnapshot[] = [];
    for (const family of this.#families.values()) {
      const samples: MetricSample[] = [];
      const labelsOf = (values: readonly string[]): Record<string, string> => {
        const labels: Record<string, string> = {};
        family.labelNames.forEach((label, i) => labels[label] = values[i] ?? "");
        return labels;
      };
      if (family.collect !== undefined) {
        family.collect((values, value) => {
          samples.push({ name: family.name, labels: labelsOf(values), value });
        });
      } else {
        const entries = [...family.series.values()].sort((a, b) =>
          a.labels.join("\u0000") < b.labels.join("\u0000") ? -1 : 1
        );
        for (const { labels: values, series } of entries) {
          const labels = labelsOf(values);
          if (series instanceof Histogram) {
            let cumulative = 0;
            for (let i = 0; i <= series.bounds.length; i++) {
              cumulative += series.counts[i]!;
              const le = i < series.bounds.length ? formatNumber(series.bounds[i]!) : "+Inf";
              samples.push({
                name: `${family.name}_bucket`,
                labels: { ...labels, le },
                value: cumulative,
              });
            }
            samples.push({ name: `${family.name}_sum`, labels, value: series.sum });
            samples.push({ name: `${family.name}_count`, labels, value: series.count });
          } else {
            samples.push({ name: family.name, labels, value: (series as Counter).value });
          }
        }
      }
      families.push({ name: family.name, help: family.help, type: family.type, samples });
    }
    return families;
  }
}

/** One sample of a {@linkcode MetricFamilySnapshot}. */
export interface MetricSample {
  /** The sample's name: the family's, or with `_bucket`, `_sum` or `_count` for a histogram. */
  readonly name: string;
  /** Label name to value (a histogram bucket's upper bound is `le`). */
  readonly labels: Readonly<Record<string, string>>;
  /** The value. */
  readonly value: number;
}

/** A metric family and its samples at one moment ({@linkcode MetricsRegistry.collect}). */
export interface MetricFamilySnapshot {
  /** The name, prefix included. */
  readonly name: string;
  /** The description. */
  readonly help: string;
  /** The kind. */
  readonly type: "counter" | "gauge" | "histogram";
  /** The samples, in the text format's order. */
  readonly samples: readonly MetricSample[];
}

function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

function escapeLabel(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** Why the daemon refused a connection (the `reason` label of `npro_connections_refused_total`). */
export type RefusalReason =
  | "connection_limit"
  | "handshake_limit"
  | "address_rate"
  | "handshake_rate"
  | "untrusted_proxy"
  | "proxy_header";

const REFUSALS: readonly RefusalReason[] = [
  "connection_limit",
  "handshake_limit",
  "address_rate",
  "handshake_rate",
  "untrusted_proxy",
  "proxy_header",
];

/** Handshake durations: 1 ms to 10 s (a handshake is about 1-5 ms; the limit is seconds). */
const HANDSHAKE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** What the daemon reads to render its gauges. */
export interface DaemonGauges {
  /** Open connections (handshake finished). */
  open(): number;
  /** Connections in their handshake (or waiting for a PROXY header or a handshake turn). */
  handshaking(): number;
  /** Requests being handled, over every open connection. */
  inFlight(): number;
  /** Bytes queued to send, over every open connection. */
  queuedBytes(): number;
  /** What every connection moved and did, open and closed ones added up (read once per render). */
  traffic(): ConnectionStats;
  /**
   * Whether an opcode may be a label value: registered on the dispatcher (a bounded set chosen by
   * the application). Others are counted as `"unknown"`.
   */
  knownOpcode(opcode: string): boolean;
}

/** The daemon's series, looked up once (docs/DEPLOYMENT.md, "Metrics"). */
export interface DaemonMetrics {
  /** The registry they live in. */
  readonly registry: MetricsRegistry;
  /** A connection passed the accept-time checks. */
  readonly accepted: CounterSeries;
  /** A connection refused, by reason (every reason is present, at 0 until used). */
  readonly refused: Readonly<Record<RefusalReason, CounterSeries>>;
  /**
   * A handshake ended.
   *
   * @param pattern The Noise pattern, `"plaintext"`, or `"unknown"` when it failed early.
   * @param ok Whether it succeeded.
   * @param seconds How long it took.
   */
  handshake(pattern: string, ok: boolean, seconds: number): void;
  /**
   * A connection closed.
   *
   * @param reason `"normal"` or the error code (a bounded set).
   */
  closed(reason: string): void;
  /** Given to every connection: counts requests and protocol violations. */
  readonly observer: ConnectionObserver;
}

/** Request durations: 50 µs to 10 s. */
const REQUEST_BUCKETS = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  10,
];

/** The series of one opcode, looked up on its first request. */
interface OpcodeSeries {
  /** The opcode, or `"unknown"`. */
  readonly label: string;
  readonly outcomes: Record<RequestOutcome, CounterSeries | undefined>;
  readonly duration: HistogramSeries;
}

/**
 * The daemon's metrics in `registry`: connection gauges (read at render), accepted and refused
 * connections, handshakes by pattern and outcome with their duration, closed connections.
 *
 * @example Render the daemon's metrics before any traffic
 * ```ts
 * import { daemonMetrics, MetricsRegistry } from "./metrics.ts";
 * import { emptyStats } from "./connection_stats.ts";
 * import assert from "node:assert/strict";
 *
 * const metrics = daemonMetrics(new MetricsRegistry(), {
 *   open: () => 0,
 *   handshaking: () => 0,
 *   inFlight: () => 0,
 *   queuedBytes: () => 0,
 *   traffic: () => emptyStats(),
 *   knownOpcode: () => true,
 * });
 * metrics.accepted.inc();
 * assert.match(metrics.registry.render(), /^npro_connections_accepted_total 1$/m);
 * ```
 *
 * @param registry Where the metrics go.
 * @param gauges The values read at each render.
 * @returns The series.
 */
export function daemonMetrics(registry: MetricsRegistry, gauges: DaemonGauges): DaemonMetrics {
  registry.gauge("connections_open", "Open connections (handshake finished).", gauges.open);
  registry.gauge(
    "connections_handshaking",
    "Connections in their handshake (or reading a PROXY header, or waiting for a turn).",
    gauges.handshaking,
  );
  registry.gauge(
    "requests_in_flight",
    "Requests being handled, over every open connection.",
    gauges.inFlight,
  );
  registry.gauge(
    "outbound_queued_bytes",
    "Bytes queued to send, over every open connection.",
    gauges.queuedBytes,
  );
  const accepted = registry.counter(
    "connections_accepted_total",
    "Connections that passed the accept-time limits.",
  ).labels({});
  const refusedMetric = registry.counter(
    "connections_refused_total",
    "Connections refused before their handshake, by reason.",
    ["reason"],
  );
  const refused = Object.fromEntries(
    REFUSALS.map((reason) => [reason, refusedMetric.labels({ reason })]),
  ) as Record<RefusalReason, CounterSeries>;
  const handshakes = registry.counter(
    "handshakes_total",
    "Handshakes ended, by pattern and outcome (ok, failed).",
    ["pattern", "outcome"],
  );
  const duration = registry.histogram(
    "handshake_duration_seconds",
    "Handshake duration, by outcome (ok, failed).",
    HANDSHAKE_BUCKETS,
    ["outcome"],
  );
  const durationOk = duration.labels({ outcome: "ok" });
  const durationFailed = duration.labels({ outcome: "failed" });
  const closed = registry.counter(
    "connections_closed_total",
    "Connections closed after their handshake, by reason (normal, or the error code).",
    ["reason"],
  );
  let traffic: ConnectionStats = gauges.traffic();
  registry.beforeRender(() => traffic = gauges.traffic());
  const eachWay =
    (received: () => number, sent: () => number) =>
    (emit: (values: readonly string[], value: number) => void) => {
      emit(["received"], received());
      emit(["sent"], sent());
    };
  registry.collected(
    "bytes_total",
    "Bytes read and written after the handshakes, framing included, by direction.",
    "counter",
    ["direction"],
    eachWay(() => traffic.bytesReceived, () => traffic.bytesSent),
  );
  registry.collected(
    "records_total",
    "Encrypted records opened and sealed, by direction (0 for plaintext connections).",
    "counter",
    ["direction"],
    eachWay(() => traffic.recordsReceived, () => traffic.recordsSent),
  );
  registry.collected(
    "key_updates_total",
    "Rekeys: KEY_UPDATE records opened (the peers') and sealed (this server's), by direction.",
    "counter",
    ["direction"],
    eachWay(() => traffic.keyUpdatesReceived, () => traffic.keyUpdatesSent),
  );
  registry.collected(
    "compressed_bodies_total",
    "Message bodies sent compressed.",
    "counter",
    [],
    (emit) => emit([], traffic.compressedBodies),
  );
  registry.collected(
    "compression_bytes_total",
    "Bytes of the bodies sent compressed, before and after compression (the saving is the difference).",
    "counter",
    ["stage"],
    (emit) => {
      emit(["before"], traffic.compressedBytesIn);
      emit(["after"], traffic.compressedBytesOut);
    },
  );
  registry.collected(
    "read_pauses_total",
    "Times a connection stopped reading at a bound (handlers, outbound bytes, receive queue).",
    "counter",
    [],
    (emit) => emit([], traffic.readPauses),
  );
  registry.collected(
    "streams_opened_total",
    "Streams opened, by either side.",
    "counter",
    [],
    (emit) => emit([], traffic.streamsOpened),
  );
  registry.collected(
    "streams_open",
    "Streams open now.",
    "gauge",
    [],
    (emit) => emit([], traffic.streamsOpen),
  );
  const requests = registry.counter(
    "requests_total",
    "Requests and un-numbered messages handled, by opcode (registered ones, else unknown) and outcome.",
    ["opcode", "outcome"],
  );
  const requestDuration = registry.histogram(
    "request_duration_seconds",
    "Time from the start of a handler to its reply, by opcode.",
    REQUEST_BUCKETS,
    ["opcode"],
  );
  const violations = registry.counter(
    "protocol_violations_total",
    "Protocol violations of peers, by kind.",
    ["kind"],
  );
  const byOpcode = new Map<string, OpcodeSeries>();
  const seriesOf = (opcode: string): OpcodeSeries => {
    let series = byOpcode.get(opcode);
    if (series === undefined) {
      const label = gauges.knownOpcode(opcode) ? opcode : "unknown";
      series = byOpcode.get(label);
      if (series === undefined) {
        series = {
          label,
          outcomes: Object.fromEntries(
            REQUEST_OUTCOMES.map((outcome) => [outcome, undefined]),
          ) as Record<RequestOutcome, CounterSeries | undefined>,
          duration: requestDuration.labels({ opcode: label }),
        };
        byOpcode.set(label, series);
      }
      // Known opcodes are cached under their name; unknown ones all share one entry, uncached.
      if (label === opcode) byOpcode.set(opcode, series);
    }
    return series;
  };
  const observer: ConnectionObserver = {
    request(opcode, outcome, seconds) {
      const series = seriesOf(opcode);
      const counter = series.outcomes[outcome] ??= requests.labels({
        opcode: series.label,
        outcome,
      });
      counter.inc();
      series.duration.observe(seconds);
    },
    violation(kind) {
      violations.labels({ kind: kind.replaceAll(" ", "_") }).inc();
    },
  };
  return {
    registry,
    accepted,
    refused,
    handshake(pattern, ok, seconds) {
      handshakes.labels({ pattern, outcome: ok ? "ok" : "failed" }).inc();
      (ok ? durationOk : durationFailed).observe(seconds);
    },
    closed(reason) {
      closed.labels({ reason }).inc();
    },
    observer,
  };
}
