/**
 * The OpenTelemetry bridge (docs/DEPLOYMENT.md, "OpenTelemetry"): a server's registry mirrored
 * into a real `@opentelemetry/sdk-metrics` meter reports the same numbers as `/metrics`.
 */

import assert from "node:assert/strict";
import { AggregationTemporality, MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { exportToOpenTelemetry } from "../src/service/otel.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";

/** A reader that collects on demand (what an exporter's reader does on its schedule). */
class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

interface Point {
  attributes: Record<string, unknown>;
  value: unknown;
}

async function points(reader: OnDemandReader): Promise<Map<string, Point[]>> {
  const { resourceMetrics, errors } = await reader.collect();
  assert.deepEqual(errors, []);
  const byName = new Map<string, Point[]>();
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      byName.set(
        metric.descriptor.name,
        metric.dataPoints.map((p) => ({ attributes: { ...p.attributes }, value: p.value })),
      );
    }
  }
  return byName;
}

function valueOf(all: Map<string, Point[]>, name: string, attributes: Record<string, string> = {}) {
  const point = all.get(name)?.find((p) =>
    Object.entries(attributes).every(([k, v]) => p.attributes[k] === v) &&
    Object.keys(p.attributes).length === Object.keys(attributes).length
  );
  return point?.value;
}

Deno.test("otel: the registry mirrored into an OpenTelemetry SDK meter reports what /metrics reports", async () => {
  const dispatcher = registerStandardHandlers(new Dispatcher());
  await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
  const appCounter = server.metricsRegistry.counter("app_jobs_total", "Jobs.", ["queue"]);
  const reader = new OnDemandReader();
  const provider = new MeterProvider({ readers: [reader] });
  const bridge = exportToOpenTelemetry(server.metricsRegistry, provider.getMeter("npro"));

  await using client = await connect({
    address: `127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    security: { serverKeys: [server.publicKey!] },
    autoReconnect: false,
  });
  for (let i = 0; i < 5; i++) await client.request({ type: "echo", text: `e${i}` });
  appCounter.labels({ queue: "a" }).inc(7);

  const all = await points(reader);
  assert.equal(valueOf(all, "npro_connections_open"), 1);
  assert.equal(valueOf(all, "npro_connections_accepted_total"), 1);
  assert.equal(valueOf(all, "npro_requests_total", { opcode: "ECHO", outcome: "ok" }), 5);
  assert.equal(valueOf(all, "npro_request_duration_seconds_count", { opcode: "ECHO" }), 5);
  assert.equal(
    valueOf(all, "npro_request_duration_seconds_bucket", { opcode: "ECHO", le: "+Inf" }),
    5,
  );
  assert.equal(valueOf(all, "npro_app_jobs_total", { queue: "a" }), 7);
  // The same figures as the text format.
  const text = server.metrics();
  const received = Number(/^npro_bytes_total\{direction="received"\} (\d+)$/m.exec(text)![1]);
  assert.equal(valueOf(all, "npro_bytes_total", { direction: "received" }), received);
  assert.ok(received > 0);

  // Disposed: the bridge observes no more (the SDK keeps the last cumulative value).
  bridge[Symbol.dispose]();
  await client.request({ type: "echo", text: "after" });
  assert.match(server.metrics(), /^npro_requests_total\{opcode="ECHO",outcome="ok"\} 6$/m);
  const after = await points(reader);
  assert.notEqual(valueOf(after, "npro_requests_total", { opcode: "ECHO", outcome: "ok" }), 6);
  await provider.shutdown();
});

Deno.test("otel: examples/otel.ts under Deno's built-in OpenTelemetry pushes the server's metrics as OTLP", async () => {
  // A stand-in collector: takes OTLP/HTTP JSON and keeps the metrics requests.
  const bodies: unknown[] = [];
  const collector = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const text = await request.text();
      if (new URL(request.url).pathname === "/v1/metrics") bodies.push(JSON.parse(text));
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  );
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-env=OTEL_DENO,OTEL_METRIC_EXPORT_INTERVAL",
        "examples/otel.ts",
      ],
      env: {
        OTEL_DENO: "true",
        OTEL_METRIC_EXPORT_INTERVAL: "300",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.addr.port}`,
        NO_COLOR: "1",
      },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(120_000),
    }).output();
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.match(
      new TextDecoder().decode(output.stdout),
      /^npro_requests_total\{opcode="ECHO",outcome="ok"\} 10$/m,
    );
    // deno-lint-ignore no-explicit-any
    type Json = any;
    const seen = new Map<string, number>();
    for (const body of bodies as Json[]) {
      for (const resource of body.resourceMetrics ?? []) {
        for (const scope of resource.scopeMetrics ?? []) {
          for (const metric of scope.metrics ?? []) {
            const data = metric.sum ?? metric.gauge;
            for (const point of data?.dataPoints ?? []) {
              const attributes = (point.attributes ?? []).map((a: Json) =>
                `${a.key}=${a.value.stringValue}`
              ).sort().join(",");
              const value = Number(point.asInt ?? point.asDouble);
              const key = `${metric.name}{${attributes}}`;
              seen.set(key, Math.max(seen.get(key) ?? 0, value));
            }
          }
        }
      }
    }
    assert.equal(seen.get("npro_requests_total{opcode=ECHO,outcome=ok}"), 10);
    assert.equal(seen.get("npro_app_greetings_total{}"), 10);
    assert.equal(seen.get("npro_connections_accepted_total{}"), 1);
  } finally {
    await collector.shutdown();
  }
});
