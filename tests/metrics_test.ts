/**
 * Metrics (issue 16, item 1): the registry's Prometheus text, `GET /metrics` on the admin endpoint
 * read by a small exposition-format parser, counters that move with traffic (accepted, refused by
 * reason, handshakes, closed), and bounded label cardinality under many distinct clients.
 */

import assert from "node:assert/strict";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { MetricsRegistry } from "../src/service/metrics.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";

interface Exposition {
  /** `name{a="x",b="y"}` (labels in their order) to value. */
  samples: Map<string, number>;
  /** Family name to type. */
  types: Map<string, string>;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/;
const LABEL_PAIR = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/;

/**
 * A strict reader of the Prometheus text format 0.0.4, as far as this library writes it: every
 * sample belongs to a family with `# HELP` and `# TYPE` before it, counters end in `_total`,
 * histogram samples are `_bucket` (with `le`, cumulative, ending at `+Inf` = `_count`), `_sum`
 * and `_count`.
 */
function parseExposition(text: string): Exposition {
  assert.ok(text.endsWith("\n"), "the exposition ends in a newline");
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const lastBucket = new Map<string, number>();
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ")) {
      const name = line.split(" ")[2]!;
      assert.ok(!helped.has(name), `HELP twice for ${name}`);
      helped.add(name);
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      assert.ok(helped.has(name!), `TYPE before HELP for ${name}`);
      assert.ok(["counter", "gauge", "histogram"].includes(type!), `unknown type ${type}`);
      if (type === "counter") assert.match(name!, /_total$/, `counter ${name} lacks _total`);
      types.set(name!, type!);
      continue;
    }
    assert.ok(!line.startsWith("#") && line !== "", `unexpected line "${line}"`);
    const match = SAMPLE.exec(line);
    assert.ok(match, `malformed sample "${line}"`);
    const [, name, , labelText = "", valueText] = match;
    const labels: [string, string][] = [];
    let rest = labelText;
    while (rest !== "") {
      const pair = LABEL_PAIR.exec(rest);
      assert.ok(pair, `malformed labels in "${line}"`);
      labels.push([pair[1]!, pair[2]!]);
      rest = rest.slice(pair[0].length);
    }
    const value = valueText === "+Inf" ? Infinity : Number(valueText);
    assert.ok(!Number.isNaN(value), `bad value in "${line}"`);
    const family = types.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, "");
    const type = types.get(family);
    assert.ok(type !== undefined, `sample "${name}" without a TYPE`);
    if (type === "histogram") {
      assert.notEqual(family, name, `histogram sample ${name} without a suffix`);
      const others = labels.filter(([label]) => label !== "le");
      const seriesKey = family + JSON.stringify(others);
      if (name!.endsWith("_bucket")) {
        assert.equal(labels.at(-1)?.[0], "le", `bucket without le: "${line}"`);
        const previous = lastBucket.get(seriesKey) ?? 0;
        assert.ok(value >= previous, `buckets not cumulative: "${line}"`);
        lastBucket.set(seriesKey, value);
      } else if (name!.endsWith("_count")) {
        assert.equal(value, lastBucket.get(seriesKey), `_count is not the +Inf bucket: "${line}"`);
      }
    }
    const key = `${name}{${labels.map(([k, v]) => `${k}="${v}"`).join(",")}}`;
    assert.ok(!samples.has(key), `duplicate series ${key}`);
    samples.set(key, value);
  }
  return { samples, types };
}

async function scrape(port: number): Promise<Exposition> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(await response.text());
}

/** The sum of the samples of `name` whose labels include every `labels` pair. */
function total(exposition: Exposition, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [key, value] of exposition.samples) {
    if (!key.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))) sum += value;
  }
  return sum;
}

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = performance.now() + 5000;
  while (!(await condition())) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test("metrics: the registry renders counters, gauges and histograms in the text format", () => {
  const registry = new MetricsRegistry({ maxSeriesPerMetric: 3 });
  const counter = registry.counter("events_total", 'Events "seen"\\ by kind.', ["kind"]);
  counter.labels({ kind: "a" }).inc();
  counter.labels({ kind: 'q"\\\n' }).inc(2);
  registry.gauge("open", "Open things.", () => 7);
  const histogram = registry.histogram("wait_seconds", "Waits.", [0.1, 1]);
  const series = histogram.labels({});
  for (const value of [0.05, 0.5, 0.5, 5]) series.observe(value);
  const text = registry.render();
  const { samples, types } = parseExposition(text);
  assert.equal(samples.get('npro_events_total{kind="a"}'), 1);
  assert.equal(samples.get('npro_events_total{kind="q\\"\\\\\\n"}'), 2);
  assert.equal(samples.get("npro_open{}"), 7);
  assert.equal(samples.get('npro_wait_seconds_bucket{le="0.1"}'), 1);
  assert.equal(samples.get('npro_wait_seconds_bucket{le="1"}'), 3);
  assert.equal(samples.get('npro_wait_seconds_bucket{le="+Inf"}'), 4);
  assert.equal(samples.get("npro_wait_seconds_sum{}"), 6.05);
  assert.equal(samples.get("npro_wait_seconds_count{}"), 4);
  assert.deepEqual([...types], [
    ["npro_events_total", "counter"],
    ["npro_open", "gauge"],
    ["npro_wait_seconds", "histogram"],
  ]);
  assert.match(text, /^# HELP npro_events_total Events "seen"\\\\ by kind\.$/m);
  // Past the cap, new label sets share one "other" series.
  for (let i = 0; i < 50; i++) counter.labels({ kind: `k${i}` }).inc();
  assert.equal(
    parseExposition(registry.render()).samples.get('npro_events_total{kind="other"}'),
    49,
  );
  // The counter: "a", the escaped one, "k0" (the third, at the cap) and "other".
  assert.equal(registry.seriesCount, 4 + 1 + 1);
  assert.throws(() => counter.labels({ kind: "a" }).inc(-1), RangeError);
  assert.throws(() => registry.counter("events_total", "again"), TypeError);
  assert.throws(() => registry.counter("bad name", "x"), TypeError);
  assert.throws(() => registry.histogram("h", "x", [1, 0.5]), RangeError);
});

Deno.test("metrics: GET /metrics counts accepted connections, handshakes, refusals by reason and closes", async () => {
  const dispatcher = registerStandardHandlers(new Dispatcher());
  await using server = await serve({
    address: "127.0.0.1:0",
    admin: { address: "127.0.0.1:0" },
    config: { server: { maxConnections: 1 } },
  }, dispatcher);
  const adminPort = server.adminAddr!.port;
  const address = `127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
  const before = await scrape(adminPort);
  assert.equal(total(before, "npro_connections_open"), 0);
  assert.equal(total(before, "npro_connections_accepted_total"), 0);
  for (
    const reason of [
      "connection_limit",
      "handshake_limit",
      "address_rate",
      "handshake_rate",
      "untrusted_proxy",
      "proxy_header",
    ]
  ) {
    assert.equal(before.samples.get(`npro_connections_refused_total{reason="${reason}"}`), 0);
  }
  assert.equal(before.types.get("npro_handshake_duration_seconds"), "histogram");

  const client = await connect({
    address,
    security: { serverKeys: [server.publicKey!] },
    autoReconnect: false,
  });
  assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
  const during = await scrape(adminPort);
  assert.equal(total(during, "npro_connections_open"), 1);
  assert.equal(total(during, "npro_connections_accepted_total"), 1);
  assert.equal(total(during, "npro_handshakes_total", { outcome: "ok" }), 1);
  assert.equal(total(during, "npro_handshake_duration_seconds_count", { outcome: "ok" }), 1);
  assert.ok(total(during, "npro_handshake_duration_seconds_sum", { outcome: "ok" }) > 0);

  // Over server.max_connections: refused at accept time, by reason.
  const refused = await Deno.connect({
    hostname: "127.0.0.1",
    port: Number(address.split(":")[1]),
  });
  await until(
    async () => total(await scrape(adminPort), "npro_connections_refused_total") === 1,
    "the refusal",
  );
  const after = await scrape(adminPort);
  assert.equal(after.samples.get('npro_connections_refused_total{reason="connection_limit"}'), 1);
  assert.equal(total(after, "npro_connections_accepted_total"), 1);
  refused.close();

  await client.close();
  await until(
    async () => total(await scrape(adminPort), "npro_connections_closed_total") === 1,
    "the close",
  );
  const closed = await scrape(adminPort);
  assert.equal(total(closed, "npro_connections_open"), 0);
  assert.equal(server.metrics().includes("npro_connections_closed_total{reason="), true);
});

Deno.test("metrics: a connection from an untrusted proxy is counted by its reason", async () => {
  await using server = await serve({
    address: "127.0.0.1:0",
    config: { server: { proxyProtocol: true, trustedProxies: ["10.9.9.9"] } },
  }, new Dispatcher());
  const port = (server.addr as Deno.NetAddr).port;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await until(
    () =>
      Promise.resolve(
        /^npro_connections_refused_total\{reason="untrusted_proxy"\} 1$/m.test(server.metrics()),
      ),
    "the refusal",
  );
  conn.close();
});

Deno.test("metrics: 1,000 clients from distinct ports add no series (labels stay bounded)", async () => {
  const dispatcher = registerStandardHandlers(new Dispatcher());
  await using server = await serve({
    address: "127.0.0.1:0",
    config: { server: { handshakeRatePerAddress: 0 } },
  }, dispatcher);
  const port = (server.addr as Deno.NetAddr).port;
  // One real client first, so that every label a client can produce is there.
  const client = await connect({
    address: `127.0.0.1:${port}`,
    security: { serverKeys: [server.publicKey!] },
    autoReconnect: false,
  });
  await client.request({ type: "ping" });
  await client.close();
  await until(
    () => Promise.resolve(/^npro_connections_closed_total\{/m.test(server.metrics())),
    "the first close",
  );
  const seriesBefore = parseExposition(server.metrics()).samples.size;
  // 1,000 connections, 50 at a time, each from its own ephemeral port; each fails its handshake.
  const ports = new Set<number>();
  for (let batch = 0; batch < 20; batch++) {
    const conns = await Promise.all(
      Array.from({ length: 50 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
    );
    for (const conn of conns) {
      ports.add((conn.localAddr as Deno.NetAddr).port);
      conn.close();
    }
  }
  assert.ok(ports.size >= 900, `only ${ports.size} distinct ports`);
  await until(
    () => {
      const { samples } = parseExposition(server.metrics());
      const seen = total({ samples, types: new Map() }, "npro_connections_accepted_total") +
        total({ samples, types: new Map() }, "npro_connections_refused_total");
      const failed = total({ samples, types: new Map() }, "npro_handshakes_total", {
        outcome: "failed",
      });
      return Promise.resolve(seen === 1001 && failed === 1000);
    },
    "every connection to be counted",
  );
  const text = server.metrics();
  const { samples } = parseExposition(text);
  // The one new series: npro_handshakes_total{pattern="unknown",outcome="failed"}.
  assert.equal(samples.size, seriesBefore + 1, "only the failed-handshake series is new");
  assert.ok(!text.includes("127.0.0.1"), "a peer address in a label");
  for (const port of [...ports].slice(0, 50)) assert.ok(!text.includes(`${port}"`));
});
