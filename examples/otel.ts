/**
 * The server's metrics exported through OpenTelemetry instead of (or beside) the Prometheus
 * `/metrics` endpoint: `exportToOpenTelemetry(server.metricsRegistry, meter)` with the meter of
 * `@opentelemetry/api`. Under Deno's built-in OpenTelemetry (`OTEL_DENO=true`) that meter is
 * Deno's own, which pushes OTLP to `OTEL_EXPORTER_OTLP_ENDPOINT` (default
 * `http://localhost:4318`) every `OTEL_METRIC_EXPORT_INTERVAL` ms; without it the API is a no-op
 * and the example still runs. docs/DEPLOYMENT.md, "OpenTelemetry".
 *
 * Run (a collector listening on 127.0.0.1:4318):
 *   OTEL_DENO=true OTEL_METRIC_EXPORT_INTERVAL=500 \
 *     deno run --allow-net=127.0.0.1 --allow-env=OTEL_DENO,OTEL_METRIC_EXPORT_INTERVAL examples/otel.ts
 */
import { metrics } from "@opentelemetry/api";
import {
  connect,
  Dispatcher,
  exportToOpenTelemetry,
  registerStandardHandlers,
  serve,
} from "@npro/network-protocol";

await using server = await serve(
  { address: "127.0.0.1:0" },
  registerStandardHandlers(new Dispatcher()),
);
// The application's own metric, served and exported with the server's.
const greetings = server.metricsRegistry.counter("app_greetings_total", "Greetings sent.")
  .labels({});
using _bridge = exportToOpenTelemetry(server.metricsRegistry, metrics.getMeter("npro"));

const { port } = server.addr as Deno.NetAddr;
{
  await using client = await connect({
    address: `127.0.0.1:${port}`,
    security: { serverKeys: [server.publicKey!] },
  });
  for (let i = 0; i < 10; i++) {
    await client.request({ type: "echo", text: `hello ${i}` });
    greetings.inc();
  }
}
// Long enough for one export at the interval the run asked for (Deno exports again at exit).
const interval = Number(Deno.env.get("OTEL_METRIC_EXPORT_INTERVAL") ?? "0");
if (interval > 0) await new Promise((resolve) => setTimeout(resolve, interval * 2));
console.log(
  server.metrics().split("\n").filter((l) => l.startsWith("npro_requests_total")).join("\n"),
);
