/**
 * Metrics (issue 16, item 1): the registry's Prometheus text, `GET /metrics` on the admin endpoint
 * read by a small exposition-format parser, counters that move with traffic (accepted, refused by
 * reason, handshakes, closed), and bounded label cardinality under many distinct clients.
 */

import assert from "node:assert/strict";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { MetricsRegistry } from "../src/service/metrics.ts";
import { createPool } from "../src/service/pool.ts";
import { registerPoolMetrics } from "../src/service/pool_metrics.ts";
import type { Transport } from "../src/transport/types.ts";
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

Deno.test("metrics: 10,000 clients from distinct addresses add no series (labels stay bounded)", async () => {
  const dispatcher = registerStandardHandlers(new Dispatcher());
  // Behind a (trusted) proxy, so that each client has its own address, as the daemon sees it.
  await using server = await serve({
    address: "127.0.0.1:0",
    config: {
      server: {
        proxyProtocol: true,
        trustedProxies: ["127.0.0.1"],
        handshakeRate: 0,
        maxHandshakes: 10_000,
      },
    },
  }, dispatcher);
  const port = (server.addr as Deno.NetAddr).port;
  const encoder = new TextEncoder();
  // A client that closes at once may end before its header is read (refused: proxy_header) or
  // after (a failed handshake): either way counted under a bounded label.
  const ended = (exposition: Exposition) =>
    total(exposition, "npro_handshakes_total", { outcome: "failed" }) +
    total(exposition, "npro_connections_refused_total", { reason: "proxy_header" });
  const connectAs = async (i: number): Promise<Deno.Conn> => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const source = `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
    // The header, then a packet that is no handshake message: the handshake fails.
    await conn.write(encoder.encode(`PROXY TCP4 ${source} 10.255.0.1 ${1024 + i} 7000\r\n`));
    await conn.write(new Uint8Array([0, 0, 0, 2, 0xff, 0xff]));
    return conn;
  };
  // One complete client first (PROXY header, handshake, requests), so that every label a
  // client can produce is there.
  const first = await connectAs(1_000_000);
  first.close();
  const viaProxy: Transport = {
    kind: "tcp",
    listen: () => Promise.reject(new Error("not used")),
    connect: async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(encoder.encode("PROXY TCP4 10.200.0.1 10.255.0.1 4000 7000\r\n"));
      return conn;
    },
  };
  const client = await connect({
    address: `127.0.0.1:${port}`,
    security: { serverKeys: [server.publicKey!] },
    autoReconnect: false,
    transport: viaProxy,
  });
  await client.request({ type: "ping" });
  await client.request({ type: "custom", command: "NOPE", payload: new Uint8Array() }).catch(
    () => {},
  );
  await client.close();
  await until(
    () =>
      Promise.resolve(
        /^npro_connections_closed_total\{/m.test(server.metrics()) &&
          ended(parseExposition(server.metrics())) === 1,
      ),
    "the first close",
  );
  const seriesBefore = parseExposition(server.metrics()).samples.size;
  // 10,000 clients, 100 at a time, each from its own address and port; each ends its
  // connection after the PROXY header and a bad packet (a failed handshake).
  const n = 10_000;
  for (let batch = 0; batch < n / 100; batch++) {
    const conns = await Promise.all(
      Array.from({ length: 100 }, (_, j) => connectAs(batch * 100 + j)),
    );
    for (const conn of conns) conn.close();
  }
  await until(
    () => {
      const exposition = parseExposition(server.metrics());
      return Promise.resolve(ended(exposition) >= n + 1);
    },
    "every connection to be counted",
  );
  const text = server.metrics();
  const { samples } = parseExposition(text);
  // Each client had an address of its own: the per-address handshake rate refused none.
  assert.equal(samples.get('npro_connections_refused_total{reason="address_rate"}'), 0);
  assert.ok(
    samples.size <= seriesBefore + 1,
    `series grew from ${seriesBefore} to ${samples.size}`,
  );
  assert.ok(!/10\.\d+\.\d+\.\d+/.test(text), "a peer address in a label");
  assert.ok(!text.includes("127.0.0.1"), "a proxy address in a label");
});

Deno.test("metrics: requests, bytes, records, rekeys, compression, pauses, streams and violations move with traffic", async () => {
  const big = new TextEncoder().encode("compressible ".repeat(400));
  const dispatcher = registerStandardHandlers(new Dispatcher())
    .register("BIG", () => ({ type: "custom", command: "BIG", payload: big }))
    .register("FAIL", () => {
      throw new Error("handler failure on purpose");
    })
    .register("SLOW", async (message) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      return message;
    })
    .registerStream("SINK", async (stream) => {
      for await (const _ of stream.readable) { /* drain */ }
      await stream.writable.close();
    });
  const config = {
    security: { rekeyAfterRecords: 4 },
    compression: { enabled: true, algorithm: "lz4" as const, threshold: 64 },
    server: { backpressureLimit: 1 },
  };
  await using server = await serve({ address: "127.0.0.1:0", config }, dispatcher);
  const before = parseExposition(server.metrics());
  for (const name of ["npro_bytes_total", "npro_records_total", "npro_key_updates_total"]) {
    assert.equal(before.types.get(name), "counter");
    assert.equal(total(before, name), 0);
  }
  await using client = await connect({
    address: `127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    security: { serverKeys: [server.publicKey!] },
    config: { compression: config.compression },
    autoReconnect: false,
  });
  for (let i = 0; i < 12; i++) {
    assert.equal((await client.request({ type: "echo", text: `n${i}` })).type, "echo");
    await new Promise((resolve) => setTimeout(resolve, 12)); // past the rekey's minimum interval
  }
  for (let i = 0; i < 3; i++) {
    await client.request({ type: "custom", command: "BIG", payload: new Uint8Array() });
  }
  await assert.rejects(
    client.request({ type: "custom", command: "FAIL", payload: new Uint8Array() }),
  );
  await assert.rejects(
    client.request({ type: "custom", command: "NO_SUCH", payload: new Uint8Array() }),
  );
  // backpressure_limit 1 and async handlers: reading pauses while one runs.
  await Promise.all(
    Array.from(
      { length: 8 },
      () => client.request({ type: "custom", command: "SLOW", payload: new Uint8Array(8) }),
    ),
  );
  const stream = await client.openStream("SINK");
  const writer = stream.writable.getWriter();
  await writer.write(new Uint8Array(1000));
  await writer.close();
  for await (const _ of stream.readable) { /* the server's end */ }
  // An un-numbered message nobody handles: a protocol violation of the client.
  client.send({ type: "custom", command: "NOBODY", payload: new Uint8Array() });
  await until(
    () => Promise.resolve(/^npro_protocol_violations_total\{/m.test(server.metrics())),
    "the violation",
  );

  const during = parseExposition(server.metrics());
  assert.equal(
    during.samples.get('npro_requests_total{opcode="ECHO",outcome="ok"}'),
    12,
  );
  assert.equal(during.samples.get('npro_requests_total{opcode="BIG",outcome="ok"}'), 3);
  assert.equal(
    during.samples.get('npro_requests_total{opcode="FAIL",outcome="handler_failed"}'),
    1,
  );
  assert.equal(
    during.samples.get('npro_requests_total{opcode="unknown",outcome="unknown_opcode"}'),
    2, // NO_SUCH (numbered) and NOBODY (un-numbered): never a label of their own
  );
  assert.equal(during.samples.get('npro_requests_total{opcode="SLOW",outcome="ok"}'), 8);
  assert.equal(during.samples.get('npro_request_duration_seconds_count{opcode="SLOW"}'), 8);
  assert.ok(during.samples.get('npro_request_duration_seconds_sum{opcode="SLOW"}')! >= 0.035);
  assert.ok(!server.metrics().includes("NO_SUCH") && !server.metrics().includes("NOBODY"));
  assert.equal(during.samples.get('npro_protocol_violations_total{kind="unknown_opcode"}'), 1);
  assert.ok(total(during, "npro_read_pauses_total") >= 1, "reading paused at the limit");
  assert.equal(total(during, "npro_streams_opened_total"), 1);

  // Bytes and records: what the client's side counted, seen from the server, each way.
  const mine = client.connection!.stats();
  const received = during.samples.get('npro_bytes_total{direction="received"}')!;
  const sent = during.samples.get('npro_bytes_total{direction="sent"}')!;
  assert.ok(received > 0 && sent > 0);
  assert.equal(received, mine.bytesSent, "server received what the client sent");
  assert.ok(sent <= mine.bytesReceived + 64, "server sent what the client read (in flight aside)");
  assert.equal(
    during.samples.get('npro_records_total{direction="received"}'),
    mine.recordsSent,
  );
  assert.ok(during.samples.get('npro_key_updates_total{direction="sent"}')! >= 1, "server rekeyed");
  assert.ok(mine.keyUpdatesReceived >= 1);
  const compressedBefore = during.samples.get('npro_compression_bytes_total{stage="before"}')!;
  const compressedAfter = during.samples.get('npro_compression_bytes_total{stage="after"}')!;
  assert.ok(total(during, "npro_compressed_bodies_total") >= 3);
  assert.ok(compressedBefore >= 3 * big.length && compressedAfter < compressedBefore / 4);

  // A closed connection's figures stay in the totals.
  await client.close();
  await until(
    () => Promise.resolve(/^npro_connections_closed_total\{/m.test(server.metrics())),
    "the close",
  );
  const after = parseExposition(server.metrics());
  assert.ok(after.samples.get('npro_bytes_total{direction="received"}')! >= received);
  assert.equal(total(after, "npro_streams_open"), 0);
  assert.equal(total(after, "npro_streams_opened_total"), 1);
});

Deno.test("metrics: registerPoolMetrics reports a pool's connections, requests, breakers and failures", async () => {
  const dispatcher = registerStandardHandlers(new Dispatcher());
  await using upstream = await serve({ address: "127.0.0.1:0" }, dispatcher);
  // An address where nothing listens: its connects fail and its breaker opens.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = (probe.addr as Deno.NetAddr).port;
  probe.close();
  await using pool = createPool({
    address: [`127.0.0.1:${(upstream.addr as Deno.NetAddr).port}`, `127.0.0.1:${deadPort}`],
    security: { serverKeys: [upstream.publicKey!] },
    circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000, probes: 1 },
    maxConnections: 4,
    maxRequestsPerConnection: 1,
  });
  const registry = new MetricsRegistry();
  registerPoolMetrics(registry, { upstream: pool });
  await Promise.all(Array.from({ length: 20 }, () => pool.request({ type: "ping" })));
  await until(
    () => Promise.resolve(pool.stats().addresses[`127.0.0.1:${deadPort}`]?.breaker === "open"),
    "the dead address's breaker to open",
  );
  const { samples, types } = parseExposition(registry.render());
  assert.equal(types.get("npro_pool_connections"), "gauge");
  assert.equal(types.get("npro_pool_connections_created_total"), "counter");
  const stats = pool.stats();
  assert.ok(stats.open >= 1);
  assert.equal(samples.get('npro_pool_connections{pool="upstream",state="open"}'), stats.open);
  assert.equal(samples.get('npro_pool_connections_created_total{pool="upstream"}'), stats.created);
  assert.equal(samples.get('npro_pool_requests_in_flight{pool="upstream"}'), 0);
  assert.equal(samples.get('npro_pool_waiting{pool="upstream"}'), 0);
  const failures = samples.get('npro_pool_connect_failures_total{pool="upstream"}')!;
  assert.equal(failures, stats.failedConnects);
  assert.ok(failures >= 1, "the dead address was tried");
  assert.equal(samples.get('npro_pool_breakers{pool="upstream",state="open"}'), 1);
  assert.equal(samples.get('npro_pool_breakers{pool="upstream",state="closed"}'), 1);
  assert.equal(
    samples.get('npro_pool_acquire_failures_total{pool="upstream",reason="timeout"}'),
    0,
  );
  const text = registry.render();
  assert.ok(!text.includes(String(deadPort)), "an address in a label");
});
