/**
 * Cluster peer monitoring in one process: the probe wire format, the detector on a virtual
 * clock (crashes, stalls, Lifeguard), membership from a resolver, identity checks (another key
 * at a known address, another node id), leave, pick and request, the events iterator, and the
 * `[cluster]` configuration.
 */

import assert from "node:assert/strict";
import {
  type Cluster,
  type ClusterEvent,
  type ClusterOptions,
  connect,
  createCluster,
  Dispatcher,
  dnsResolver,
  generateKeyPair,
  type KeyPair,
  NoPeerAvailable,
  parseConfig,
  ProtocolError,
} from "../mod.ts";
import { encodeMessage } from "../src/core/message.ts";
import {
  ClusterWireError,
  decodeClusterMessage,
  encodeClusterMessage,
} from "../src/service/cluster/wire.ts";
import { SimCluster } from "../bench/cluster/sim.ts";
import { freePorts, until } from "./_cluster_procs.ts";

const FAST = { probeIntervalMs: 50, probeTimeoutMs: 25, suspicionMultiplier: 4 } as const;

Deno.test("cluster wire: every kind round-trips; malformed payloads are refused", () => {
  const bootId = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const messages = [
    {
      kind: "ping",
      from: "a",
      bootId,
      incarnation: 3,
      target: "b",
      targetIncarnation: 7,
      suspect: true,
    },
    {
      kind: "ping-req",
      from: "a",
      bootId,
      incarnation: 0,
      target: "c",
      targetIncarnation: 0,
      suspect: false,
    },
    { kind: "ack", from: "b", bootId, incarnation: 8, leaving: false },
    { kind: "ack", from: "b", bootId, incarnation: 8, leaving: true },
    { kind: "nack", target: "c" },
    { kind: "leave", from: "a", bootId, incarnation: 3 },
  ] as const;
  for (const message of messages) {
    assert.deepEqual(decodeClusterMessage(encodeClusterMessage(message)), message);
  }
  const ping = encodeClusterMessage(messages[0]);
  assert.throws(
    () => decodeClusterMessage(Uint8Array.of(2, ...ping.subarray(1))),
    ClusterWireError,
  );
  assert.throws(() => decodeClusterMessage(Uint8Array.of(...ping, 0)), ClusterWireError);
  assert.throws(() => decodeClusterMessage(ping.subarray(0, ping.length - 1)), ClusterWireError);
  assert.throws(() => decodeClusterMessage(Uint8Array.of(1, 9, 0, 1, 0x61)), ClusterWireError);
  assert.throws(
    () => encodeClusterMessage({ ...messages[0], from: "x".repeat(256) }),
    RangeError,
  );
});

Deno.test("cluster wire: the example of docs/PROTOCOL.md is exact", async () => {
  const bootId = Uint8Array.from([0x8f, 0x1e, 0x5a, 0x33, 0x09, 0xc2, 0x7d, 0x44]);
  const payload = encodeClusterMessage({
    kind: "ping",
    from: "a",
    bootId,
    incarnation: 1,
    target: "b",
    targetIncarnation: 2,
    suspect: true,
  });
  const request = encodeMessage({
    type: "request",
    id: 5,
    message: { type: "custom", command: "npro.cluster", payload },
  });
  const hex = (bytes: Uint8Array) =>
    [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  const doc = await Deno.readTextFile(new URL("../docs/PROTOCOL.md", import.meta.url));
  assert.ok(doc.includes(hex(payload)), `docs/PROTOCOL.md shows the payload ${hex(payload)}`);
  assert.ok(doc.includes(hex(request)), `docs/PROTOCOL.md shows the request ${hex(request)}`);
});

Deno.test("cluster detector (virtual clock): a crash is declared dead by all, a stall by none", async () => {
  const settings = {
    probeIntervalMs: 1000,
    probeTimeoutMs: 500,
    indirectProbes: 3,
    suspicionMultiplier: 4,
    maxLocalHealth: 8,
  };
  const network = { baseMs: 0.3, jitterMs: 0.3, spikeProbability: 0, spikeMs: 0, loss: 0 };
  const sim = new SimCluster(6, settings, network, 7);
  sim.start();
  await sim.time.run(5_000);
  sim.crash("n5");
  sim.time.at(20_000, () => sim.stall("n1", 3_000));
  await sim.time.run(40_000);
  await sim.stop();
  const dead = sim.observations.filter((o) => o.event.type === "dead");
  assert.deepEqual(
    dead.map((o) => o.observer).sort(),
    ["n0", "n1", "n2", "n3", "n4"],
    "every survivor declared n5 dead, once",
  );
  for (const o of dead) {
    assert.equal((o.event as { peer: { id: string } }).peer.id, "n5");
    // The bound: one interval, the direct and indirect timeouts, the suspicion timeout (4 s).
    assert.ok(o.at - 5_000 <= 1000 + 3 * 500 + 4000, `${o.observer} after ${o.at - 5000} ms`);
  }
  // The stalled node was suspected by others and refuted; nobody was declared dead for it.
  assert.ok(sim.observations.some((o) => o.event.type === "suspect" && o.event.peer.id === "n1"));
});

Deno.test("cluster detector (virtual clock): Lifeguard holds a verdict back after a local stall", async () => {
  const deadAt = async (lifeguard: boolean): Promise<number> => {
    const settings = {
      probeIntervalMs: 1000,
      probeTimeoutMs: 500,
      indirectProbes: 2,
      suspicionMultiplier: 4,
      maxLocalHealth: 8,
      lifeguard,
    };
    const network = { baseMs: 0.3, jitterMs: 0.3, spikeProbability: 0, spikeMs: 0, loss: 0 };
    const sim = new SimCluster(3, settings, network, 3);
    sim.start();
    await sim.time.run(3_000);
    sim.crash("n2");
    // n0 suspects n2 within about 3 s; then n0's own loop stalls for 6 s, past the 4 s
    // suspicion timeout.
    sim.time.at(6_000, () => sim.stall("n0", 6_000));
    await sim.time.run(30_000);
    await sim.stop();
    const verdict = sim.observations.find((o) => o.observer === "n0" && o.event.type === "dead");
    assert.ok(verdict !== undefined);
    return verdict.at;
  };
  const without = await deadAt(false);
  const withLifeguard = await deadAt(true);
  // Without it, the verdict comes the moment the loop runs again; with it, only after the quiet
  // time and the suspicion deadline moved by the stall.
  assert.ok(without <= 12_100, `without Lifeguard: at ${without} ms`);
  assert.ok(withLifeguard >= 12_000 + 1500, `with Lifeguard: at ${withLifeguard} ms`);
});

async function node(
  id: string,
  options: ClusterOptions = {},
  staticKey: KeyPair = generateKeyPair(),
  port = 0,
): Promise<Cluster> {
  return await createCluster({
    ...FAST,
    ...options,
    self: { id, address: `127.0.0.1:${port}`, staticKey },
  });
}

function portOf(cluster: Cluster): number {
  return (cluster.addr as Deno.NetAddr).port;
}

function collect(cluster: Cluster): ClusterEvent[] {
  const events: ClusterEvent[] = [];
  void (async () => {
    for await (const event of cluster.events()) events.push(event);
  })();
  return events;
}

Deno.test("cluster: membership follows the record set of a resolver (SRV)", async () => {
  await using b = await node("b");
  await using c = await node("c");
  let records: Deno.SrvRecord[] = [];
  const srv = (port: number): Deno.SrvRecord => ({
    target: "127.0.0.1.",
    port,
    priority: 0,
    weight: 0,
  });
  const resolve = dnsResolver({
    name: "_npro._tcp.test",
    recordType: "SRV",
    resolveDns: () => Promise.resolve(records),
  });
  await using a = await node("a", { resolve, resolveIntervalMs: 60_000 });
  const events = collect(a);
  // Its own record comes back too: it is recognised by its boot id and never shown.
  records = [srv(portOf(a)), srv(portOf(b))];
  await a.resolveNow();
  const bKey = `127.0.0.1:${portOf(b)}`;
  const cKey = `127.0.0.1:${portOf(c)}`;
  await until(() => a.get(bKey)?.nodeId === "b", 5000, "a sees b");
  records = [srv(portOf(a)), srv(portOf(b)), srv(portOf(c))];
  await a.resolveNow();
  await until(() => a.get(cKey)?.nodeId === "c", 5000, "a sees c");
  records = [srv(portOf(a)), srv(portOf(c))];
  await a.resolveNow();
  assert.equal(a.get(bKey), undefined);
  assert.deepEqual(a.peers().map((p) => p.nodeId), ["c"]);
  await until(
    () => events.some((e) => e.type === "left" && e.peer.id === bKey && e.reason === "removed"),
    1000,
    "b left (removed)",
  );
  assert.ok(events.some((e) => e.type === "join" && e.peer.id === cKey));
  // Its own record: joined, then left once its first answer proved it was itself; never suspect.
  const self = `127.0.0.1:${portOf(a)}`;
  assert.deepEqual(
    events.filter((e) => "peer" in e && e.peer.id === self).map((e) => e.type),
    ["join", "left"],
  );
  // A failing lookup keeps the last list.
  records = undefined as unknown as Deno.SrvRecord[];
  await a.resolveNow();
  assert.deepEqual(a.peers().map((p) => p.nodeId), ["c"]);
});

Deno.test("cluster: another key at a known address is refused and reported", async () => {
  const [port] = freePorts(1);
  const b = await node("b", {}, generateKeyPair(), port);
  await using a = await node("a", { peers: [{ id: "b", address: `127.0.0.1:${port}` }] });
  const events = collect(a);
  await until(() => a.get("b")?.lastSeen !== undefined, 5000, "a sees b");
  const firstKey = a.get("b")!.fingerprint;
  await b.close();
  // An impostor on the same address, with the same id and another key.
  await using impostor = await node("b", {}, generateKeyPair(), port!);
  await until(
    () => events.some((e) => e.type === "refused" && e.reason === "key-mismatch"),
    5000,
    "a refused the impostor",
  );
  await until(() => a.get("b")?.state === "dead", 5000, "b is dead to a");
  assert.equal(a.get("b")!.fingerprint, firstKey);
  assert.ok(!events.some((e) => e.type === "alive" && e.peer.id === "b"));
  assert.match(
    a.metrics(),
    /^npro_cluster_identity_refusals_total\{reason="key-mismatch"\} [1-9]/m,
  );
  // The same series on the server's metrics (its admin endpoint's /metrics).
  assert.match(
    a.server.metrics(),
    /^npro_cluster_identity_refusals_total\{reason="key-mismatch"\} [1-9]/m,
  );
  assert.match(a.server.metrics(), /^npro_connections_open \d+$/m);
  // The impostor never received a cluster message (the handshake failed before any was sent).
  assert.equal(impostor.server.connections.size, 0);
});

Deno.test("cluster: a node reporting another id is refused", async () => {
  await using c = await node("c");
  await using a = await node("a", { peers: [{ id: "b", address: `127.0.0.1:${portOf(c)}` }] });
  const events = collect(a);
  await until(
    () => events.some((e) => e.type === "refused" && e.reason === "wrong-id"),
    5000,
    "a refused c posing as b",
  );
  assert.equal(a.get("b")?.lastSeen, undefined);
});

Deno.test("cluster: leave is seen as left, not dead; pick and request", async () => {
  const dispatcher = new Dispatcher().register("HELLO", () => ({ type: "echo", text: "from b" }));
  await using b = await node("b", { dispatcher });
  const [aPort] = freePorts(1);
  // c knows a, so that its leave reaches a.
  const c = await node("c", { peers: [{ id: "a", address: `127.0.0.1:${aPort}` }] });
  await using a = await node(
    "a",
    {
      peers: [
        { id: "b", address: `127.0.0.1:${portOf(b)}`, publicKey: b.publicKey },
        { id: "c", address: `127.0.0.1:${portOf(c)}` },
      ],
    },
    generateKeyPair(),
    aPort,
  );
  const events = collect(a);
  await until(
    () => a.peers().every((p) => p.lastSeen !== undefined && p.rttMs !== undefined),
    5000,
    "a sees b and c",
  );
  assert.ok(["b", "c"].includes(a.pick()!.id));
  const picked = new Set([a.pick("round-robin")!.id, a.pick("round-robin")!.id]);
  assert.deepEqual([...picked].sort(), ["b", "c"]);
  const reply = await a.request(
    { type: "custom", command: "HELLO", payload: new Uint8Array() },
    { peer: "b", timeoutMs: 2000 },
  );
  assert.deepEqual(reply, { type: "echo", text: "from b" });
  await assert.rejects(
    a.request({ type: "ping" }, { peer: "nobody", timeoutMs: 100 }),
    NoPeerAvailable,
  );
  await c.leave({ timeoutMs: 1000 });
  await until(() => a.get("c")?.state === "left", 5000, "c left");
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(a.get("c")?.state, "left");
  assert.ok(!events.some((e) => e.type === "dead"));
  assert.ok(events.some((e) => e.type === "left" && e.peer.id === "c" && e.reason === "leave"));
  await assert.rejects(a.request({ type: "ping" }, { peer: "c" }), NoPeerAvailable);
});

Deno.test("cluster: leave() with an aborted signal still closes the member", async () => {
  const b = await node("b");
  const a = await node("a", { peers: [{ id: "b", address: `127.0.0.1:${portOf(b)}` }] });
  await until(() => a.get("b")?.lastSeen !== undefined, 5000, "a sees b");
  const controller = new AbortController();
  controller.abort(new Error("no time to say goodbye"));
  await a.leave({ signal: controller.signal });
  assert.equal(a.isClosed, true);
  await b.close();
});

Deno.test("cluster: events are sent on changes only; iterators end at close and may detach", async () => {
  const b = await node("b");
  const a = await node("a", { peers: [{ id: "b", address: `127.0.0.1:${portOf(b)}` }] });
  const early = a.events();
  await early.return?.();
  const events = collect(a);
  await until(() => a.get("b")?.lastSeen !== undefined, 5000, "a sees b");
  await new Promise((resolve) => setTimeout(resolve, 500));
  // Ten probe rounds, no change: no event.
  assert.deepEqual(events.filter((e) => e.type !== "local-health"), []);
  await b.close();
  await until(() => a.get("b")?.state === "dead", 5000, "b dead");
  await a.close();
  await until(() => events.some((e) => e.type === "closed"), 1000, "closed event");
  assert.deepEqual(
    events.filter((e) => e.type !== "local-health").map((e) => e.type),
    ["suspect", "dead", "closed"],
  );
  assert.equal(a.isClosed, true);
  await assert.rejects(a.request({ type: "ping" }), ProtocolError);
});

Deno.test("cluster: options are checked", async () => {
  await assert.rejects(
    createCluster({
      self: { id: "a", address: "127.0.0.1:0" },
      probeIntervalMs: 100,
      probeTimeoutMs: 100,
    }),
    RangeError,
  );
  await assert.rejects(
    createCluster({ self: { id: "", address: "127.0.0.1:0" } }),
    TypeError,
  );
  // Refused after the server started: it is closed again (the sanitizers check it).
  const many = Array.from({ length: 1025 }, (_, i) => ({ address: `127.0.0.1:${i + 1}` }));
  await assert.rejects(
    createCluster({ self: { id: "a", address: "127.0.0.1:0" }, peers: many }),
    RangeError,
  );
  assert.throws(() => dnsResolver({ name: "x.test" }), TypeError);
  assert.throws(() => dnsResolver({ name: "x.test", port: 70000 }), RangeError);
});

Deno.test("cluster config: [cluster] keys, environment overrides and checks", () => {
  const config = parseConfig(
    `[cluster]\nnode_id = "a"\npeers = ["b@10.0.0.2:9000", "10.0.0.3:9000"]\nprobe_interval = 2000\n`,
    { env: { NETWORK_PROTOCOL_CLUSTER_PROBE_TIMEOUT: "700" } },
  );
  assert.equal(config.cluster.nodeId, "a");
  assert.equal(config.cluster.probeInterval, 2000);
  assert.equal(config.cluster.probeTimeout, 700);
  assert.deepEqual(config.cluster.peers, ["b@10.0.0.2:9000", "10.0.0.3:9000"]);
  assert.throws(
    () => parseConfig(`[cluster]\nprobe_interval = 500\nprobe_timeout = 500\n`),
    /cluster.probe_timeout "500" must be less than cluster.probe_interval "500"/,
  );
  assert.throws(() => parseConfig(`[cluster]\npeers = ["b@nowhere"]\n`), /cluster.peers/);
});

Deno.test("npro cluster status prints a table of the peers of [cluster]", async () => {
  await using b = await node("b", { probeIntervalMs: 200, probeTimeoutMs: 100 });
  const [unused] = freePorts(1);
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env=NETWORK_PROTOCOL_*",
      "--allow-read=.",
      new URL("../src/cli/main.ts", import.meta.url).pathname,
      "cluster",
      "status",
      "--rounds",
      "4",
    ],
    env: {
      NO_COLOR: "1",
      NETWORK_PROTOCOL_CLUSTER_PEERS: `b@127.0.0.1:${portOf(b)},c@127.0.0.1:${unused}`,
      NETWORK_PROTOCOL_CLUSTER_PROBE_INTERVAL: "200",
      NETWORK_PROTOCOL_CLUSTER_PROBE_TIMEOUT: "100",
    },
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(stdout);
  // c never answers: exit code 1.
  assert.equal(code, 1, text);
  const lines = text.trim().split("\n");
  assert.match(lines[0]!, /^ID +NODE +ADDRESS +STATE +RTT +LAST SEEN +INC +BOOT +KEY$/);
  assert.match(text, new RegExp(`^b +b +127\\.0\\.0\\.1:${portOf(b)} +alive +[\\d.]+ ms `, "m"));
  assert.match(text, /^c +- +127\.0\.0\.1:\d+ +(suspect|dead) +- +never /m);
});

Deno.test("cluster: a leave counts only from the member itself (its Noise key)", async () => {
  await using c = await node("c");
  await using a = await node("a", { peers: [{ id: "c", address: `127.0.0.1:${portOf(c)}` }] });
  await until(() => a.get("c")?.bootId !== undefined, 5000, "a sees c");
  const hexBytes = (hex: string) => Uint8Array.from(hex.match(/../g)!.map((h) => parseInt(h, 16)));
  // Another client, with its own key, forges c's leave.
  await using forger = await connect({
    address: `127.0.0.1:${portOf(a)}`,
    security: { serverKeys: [a.publicKey], staticKey: generateKeyPair() },
    autoReconnect: false,
  });
  const payload = encodeClusterMessage({
    kind: "leave",
    from: "c",
    bootId: hexBytes(c.bootId),
    incarnation: 0,
  });
  const reply = await forger.request(
    { type: "custom", command: "npro.cluster", payload },
    { timeoutMs: 2000 },
  );
  assert.equal(reply.type, "custom");
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(a.get("c")?.state, "alive");
});

Deno.test("cluster: aborting the signal closes it; peers() filters by state", async () => {
  const controller = new AbortController();
  await using b = await node("b");
  const a = await node("a", {
    peers: [{ id: "b", address: `127.0.0.1:${portOf(b)}` }, { id: "c", address: "127.0.0.1:1" }],
    signal: controller.signal,
  });
  await until(() => a.get("b")?.lastSeen !== undefined, 5000, "a sees b");
  await until(() => a.get("c")?.state !== "alive", 5000, "c suspected");
  assert.deepEqual(a.peers({ state: "alive" }).map((p) => p.id), ["b"]);
  assert.deepEqual(a.peers({ state: ["suspect", "dead"] }).map((p) => p.id), ["c"]);
  controller.abort();
  await a.closed();
  assert.equal(a.isClosed, true);
});
