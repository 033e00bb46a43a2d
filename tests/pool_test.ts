/**
 * The connection pool (issue 14): limits under load, bounded waiting, refused connections,
 * stale connections, the circuit breaker, lifetimes, failover, leases, drain and close. Every
 * rule of ../shared/research/wave2-design.md section 1.3 is one test here. Plaintext over the
 * in-memory transport unless a test needs more (fast, and no port is left behind).
 */
import assert from "node:assert/strict";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { serve, type Server } from "../src/service/daemon.ts";
import { createPool, type Pool, type PoolEvent, type PoolOptions } from "../src/service/pool.ts";
import { CircuitOpen, PoolExhausted } from "../src/service/pool_errors.ts";
import { CircuitBreaker } from "../src/service/circuit_breaker.ts";
import { backoffCeiling } from "../src/service/backoff.ts";
import { isProtocolError } from "../src/errors.ts";
import { MemoryTransport } from "../src/transport/memory_transport.ts";
import type { Transport, TransportConnectOptions } from "../src/transport/types.ts";
import type { Message } from "../src/core/message.ts";
import type { NetworkConfigInput } from "../src/config/mod.ts";
import { waitFor } from "./_service_helpers.ts";

const PLAIN: NetworkConfigInput = {
  transport: { encryptionEnabled: false },
  client: { reconnectDelay: 10, maxReconnectDelay: 20 },
};

/** A request the server records by its id (the payload). */
function job(id: number, command = "JOB"): Message {
  return { type: "custom", command, payload: new TextEncoder().encode(String(id)) };
}

interface Recorder {
  dispatcher: Dispatcher;
  /** id -> times executed. */
  executed: Map<string, number>;
  running: number;
  peakRunning: number;
  /** Requests held until release() (command HOLD). */
  release(): void;
}

function recorder(delayMs = 0, standard = true): Recorder {
  const r: Recorder = {
    dispatcher: standard ? registerStandardHandlers(new Dispatcher()) : new Dispatcher(),
    executed: new Map(),
    running: 0,
    peakRunning: 0,
    release: () => {},
  };
  let held = Promise.withResolvers<void>();
  r.release = () => {
    held.resolve();
    held = Promise.withResolvers<void>();
  };
  const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    });
  const handle = async (message: Message, wait: () => Promise<void>) => {
    const id = message.type === "custom" ? new TextDecoder().decode(message.payload) : "?";
    r.executed.set(id, (r.executed.get(id) ?? 0) + 1);
    r.running++;
    r.peakRunning = Math.max(r.peakRunning, r.running);
    try {
      await wait();
    } finally {
      r.running--;
    }
    return message;
  };
  r.dispatcher.register(
    "JOB",
    (m, ctx) => handle(m, () => delayMs > 0 ? sleep(delayMs, ctx.signal) : Promise.resolve()),
  );
  r.dispatcher.register("HOLD", (m) => handle(m, () => held.promise));
  return r;
}

async function start(
  transport: Transport,
  dispatcher: Dispatcher,
  address = "127.0.0.1:0",
  config: NetworkConfigInput = {},
): Promise<Server> {
  return await serve({
    address,
    transport,
    config: { ...PLAIN, ...config, transport: { encryptionEnabled: false } },
  }, dispatcher);
}

function addressOf(server: Server): string {
  return `127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
}

function pool(transport: Transport, address: string | string[], options: PoolOptions = {}): Pool {
  return createPool({ address, transport, config: PLAIN, ...options });
}

/** Collects the pool's events until it closes. */
function events(p: Pool): { list: PoolEvent[]; done: Promise<void> } {
  const list: PoolEvent[] = [];
  const done = (async () => {
    for await (const event of p.status()) list.push(event);
  })();
  return { list, done };
}

/** A transport that counts connection attempts. */
class CountingTransport implements Transport {
  readonly inner: Transport;
  attempts = 0;
  constructor(inner: Transport) {
    this.inner = inner;
  }
  get kind() {
    return this.inner.kind;
  }
  listen(address: string, options?: Parameters<Transport["listen"]>[1]) {
    return this.inner.listen(address, options);
  }
  connect(address: string, options?: TransportConnectOptions) {
    this.attempts++;
    return this.inner.connect(address, options);
  }
}

Deno.test("pool: the maximum is never exceeded under 10,000 concurrent requests", async () => {
  const transport = new MemoryTransport();
  const r = recorder(1);
  await using server = await start(transport, r.dispatcher);
  await using p = pool(transport, addressOf(server), {
    maxConnections: 4,
    maxRequestsPerConnection: 50,
    maxWaiters: 10_000,
    acquireTimeoutMs: 20_000,
  });
  let peakOpen = 0;
  let peakServer = 0;
  let peakPerConnection = 0;
  const sampler = setInterval(() => {
    const s = p.stats();
    peakOpen = Math.max(peakOpen, s.open + s.opening);
    peakServer = Math.max(peakServer, server.connections.size);
  }, 1);
  try {
    const all = Array.from(
      { length: 10_000 },
      (_, i) =>
        p.request(job(i), { timeoutMs: 20_000 }).then((reply) => {
          const s = p.stats().addresses[addressOf(server)]!;
          peakPerConnection = Math.max(peakPerConnection, s.inFlight / Math.max(1, s.open));
          return reply;
        }),
    );
    // Sampled once everything is queued: open + opening never above 4.
    const s = p.stats();
    assert.ok(s.open + s.opening <= 4, JSON.stringify(s));
    const replies = await Promise.all(all);
    assert.equal(replies.length, 10_000);
  } finally {
    clearInterval(sampler);
  }
  const stats = p.stats();
  assert.ok(peakOpen <= 4, `peak open ${peakOpen}`);
  assert.ok(peakServer <= 4, `peak server connections ${peakServer}`);
  assert.ok(r.peakRunning <= 4 * 50, `peak running ${r.peakRunning}`);
  assert.ok(stats.created <= 4, `created ${stats.created}`);
  assert.equal(r.executed.size, 10_000);
  assert.ok([...r.executed.values()].every((n) => n === 1));
  assert.equal(stats.inFlight, 0);
  assert.equal(stats.waiting, 0);
});

Deno.test("pool: waiters beyond maxWaiters fail at once, past their deadline on time, and on abort", async () => {
  const transport = new MemoryTransport();
  const r = recorder();
  await using server = await start(transport, r.dispatcher);
  await using p = pool(transport, addressOf(server), {
    maxConnections: 1,
    maxRequestsPerConnection: 1,
    maxWaiters: 2,
    acquireTimeoutMs: 200,
  });
  const holding = p.request(job(0, "HOLD"), { timeoutMs: 5000 });
  await waitFor(() => r.running === 1);
  const started = performance.now();
  const w1 = p.request(job(1)).catch((e) => e);
  const w2 = p.request(job(2)).catch((e) => e);
  // The third waiter fails at once: the queue is full.
  const w3 = await p.request(job(3)).catch((e) => e);
  assert.ok(w3 instanceof PoolExhausted, String(w3));
  assert.equal(w3.reason, "queue-full");
  assert.equal(w3.code, "LimitExceeded");
  assert.ok(performance.now() - started < 50, `queue-full after ${performance.now() - started} ms`);
  // The two others fail on time, typed.
  for (const result of [await w1, await w2]) {
    assert.ok(result instanceof PoolExhausted, String(result));
    assert.equal(result.reason, "timeout");
    assert.ok(isProtocolError(result, "Timeout"));
  }
  const waited = performance.now() - started;
  assert.ok(waited >= 190 && waited < 450, `timed out after ${waited} ms`);
  assert.equal(p.stats().waiting, 0);
  // A waiter whose signal aborts leaves the queue at once.
  const controller = new AbortController();
  const w4 = p.acquire({ signal: controller.signal, timeoutMs: 5000 }).catch((e) => e);
  await waitFor(() => p.stats().waiting === 1);
  controller.abort();
  assert.ok(isProtocolError(await w4, "Cancelled"));
  assert.equal(p.stats().waiting, 0);
  // A request's own time limit bounds its wait too.
  const short = performance.now();
  const w5 = await p.request(job(5), { timeoutMs: 60 }).catch((e) => e);
  assert.ok(w5 instanceof PoolExhausted, String(w5));
  assert.ok(performance.now() - short < 250);
  r.release();
  assert.equal((await holding).type, "custom");
  assert.equal(p.stats().acquireTimeouts, 3);
  assert.equal(p.stats().rejected, 1);
  // Capacity is back: nothing is left waiting and the next request goes through.
  assert.equal((await p.request(job(6))).type, "custom");
  assert.deepEqual([...r.executed.keys()].sort(), ["0", "6"]);
});

Deno.test("pool: a server that refuses every connection makes acquire() and request() fail within their time limit", async () => {
  // A real loopback port that nothing listens on.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  listener.close();
  for (const circuitBreaker of [false, {}] as const) {
    await using p = createPool({
      address,
      config: PLAIN,
      acquireTimeoutMs: 300,
      circuitBreaker,
    });
    const started = performance.now();
    const results = await Promise.all([
      p.acquire().catch((e) => e),
      ...Array.from({ length: 20 }, (_, i) => p.request(job(i)).catch((e) => e)),
    ]);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 600, `settled after ${elapsed} ms`);
    for (const error of results) {
      assert.ok(
        error instanceof PoolExhausted || error instanceof CircuitOpen ||
          isProtocolError(error, "ConnectionRefused"),
        String(error),
      );
    }
    assert.ok(p.stats().failedConnects >= 1);
    assert.equal(p.stats().open, 0);
    assert.equal(p.stats().waiting, 0);
  }
});

Deno.test("pool: a connection the server closed while idle is never handed out", async () => {
  const transport = new MemoryTransport();
  const r = recorder();
  await using server = await start(transport, r.dispatcher, "127.0.0.1:0", {
    server: { idleTimeout: 150 },
  });
  await using p = pool(transport, addressOf(server), { idleTimeoutMs: 0 });
  const seen = events(p);
  assert.equal((await p.request(job(1))).type, "custom");
  // The server closes the idle connection (idle timeout); the pool drops it at once.
  await waitFor(() => p.stats().open === 0, 2000, "the closed connection to leave the pool");
  assert.equal((await p.request(job(2))).type, "custom");
  const stats = p.stats();
  assert.equal(stats.created, 2);
  assert.equal(stats.retries, 0);
  // A connection closed by the server between two requests, without waiting for the timer.
  for (const connection of server.connections) await connection.close();
  assert.equal((await p.request(job(3))).type, "custom");
  assert.equal(p.stats().retries, 0);
  assert.equal(p.stats().created, 3);
  await p.close();
  await seen.done;
  assert.equal(seen.list.filter((e) => e.type === "disconnected").length, 3);
});

Deno.test("pool: a connection idle past the threshold is checked with a PING before use, and periodically", async () => {
  const transport = new MemoryTransport();
  const r = recorder();
  await using server = await start(transport, r.dispatcher);
  await using p = pool(transport, addressOf(server), {
    healthCheck: { idleMs: 50, intervalMs: 0, timeoutMs: 500 },
  });
  const seen = events(p);
  await p.request(job(1));
  await p.request(job(2)); // not idle: no check
  await new Promise((resolve) => setTimeout(resolve, 80));
  await p.request(job(3)); // idle 80 ms: checked first
  await p.close();
  await seen.done;
  const checks = seen.list.filter((e) => e.type === "health-check");
  assert.equal(checks.length, 1, JSON.stringify(seen.list));
  assert.equal("error" in checks[0]! ? checks[0].error : undefined, undefined);
  // Periodic checks of idle connections.
  await using q = pool(transport, addressOf(server), {
    minConnections: 1,
    healthCheck: { idleMs: 0, intervalMs: 40, timeoutMs: 500 },
  });
  const periodic = events(q);
  await waitFor(() => periodic.list.filter((e) => e.type === "health-check").length >= 2, 2000);
  await q.close();
  await periodic.done;
});

Deno.test("pool: the breaker opens after the threshold, lets exactly the configured probes through, and closes on success", async () => {
  const memory = new MemoryTransport();
  const transport = new CountingTransport(memory);
  // Reserve an address, then stop listening there.
  const r = recorder();
  const first = await start(memory, r.dispatcher);
  const address = addressOf(first);
  await first.shutdown();
  await using p = pool(transport, address, {
    maxConnections: 10,
    acquireTimeoutMs: 2000,
    circuitBreaker: { failureThreshold: 2, cooldownMs: 150, maxCooldownMs: 1000, probes: 2 },
  });
  const seen = events(p);
  // Closed: each attempt fails and counts.
  while (p.stats().addresses[address]!.breaker === "closed") {
    const error = await p.request(job(0)).catch((e) => e);
    assert.ok(
      isProtocolError(error, "ConnectionRefused") || error instanceof CircuitOpen,
      String(error),
    );
  }
  const attempts = transport.attempts;
  assert.equal(attempts, 2);
  // Open: callers fail at once, and nothing is dialled.
  const started = performance.now();
  const open = await p.acquire().catch((e) => e);
  assert.ok(open instanceof CircuitOpen, String(open));
  assert.equal(open.address, address);
  assert.ok(open.retryAfterMs > 0 && open.retryAfterMs <= 150);
  assert.ok(performance.now() - started < 50);
  assert.equal(transport.attempts, attempts);
  // Half-open: ten callers at once, exactly two probes; they fail, so it opens again.
  await new Promise((resolve) => setTimeout(resolve, 170));
  const herd = await Promise.all(
    Array.from({ length: 10 }, () => p.acquire().catch((e) => e)),
  );
  assert.equal(transport.attempts, attempts + 2);
  assert.ok(herd.every((e) => e instanceof CircuitOpen || isProtocolError(e, "ConnectionRefused")));
  assert.equal(p.stats().addresses[address]!.breaker, "open");
  // The server is back; after the (doubled) cool-down, probes succeed and the breaker closes.
  await using _server = await start(memory, r.dispatcher, address);
  await new Promise((resolve) => setTimeout(resolve, 400));
  const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => p.request(job(i))));
  assert.equal(replies.length, 10);
  assert.equal(p.stats().addresses[address]!.breaker, "closed");
  await p.close();
  await seen.done;
  const transitions = seen.list.flatMap((e) => e.type === "breaker" ? [`${e.from}>${e.to}`] : []);
  assert.deepEqual(transitions, [
    "closed>open",
    "open>half-open",
    "half-open>open",
    "open>half-open",
    "half-open>closed",
  ]);
  assert.equal(seen.list.filter((e) => e.type === "connecting" && e.probe).length, 3);
});

Deno.test("pool: max lifetime recycles connections without failing requests in flight", async () => {
  const transport = new MemoryTransport();
  const r = recorder(30);
  await using server = await start(transport, r.dispatcher);
  await using p = pool(transport, addressOf(server), {
    maxConnections: 2,
    maxRequestsPerConnection: 5,
    maxLifetimeMs: 150,
  });
  const seen = events(p);
  const until = performance.now() + 700;
  let id = 0;
  const workers = Array.from({ length: 8 }, async () => {
    while (performance.now() < until) await p.request(job(id++), { timeoutMs: 5000 });
  });
  await Promise.all(workers);
  const stats = p.stats();
  assert.ok(stats.created >= 4, `created ${stats.created}`);
  assert.ok(stats.open + stats.opening <= 2);
  assert.ok([...r.executed.values()].every((n) => n === 1));
  assert.equal(r.executed.size, id);
  await p.close();
  await seen.done;
  assert.ok(seen.list.some((e) => e.type === "retiring" && e.reason === "lifetime"));
});

Deno.test("pool: failover to a second address when the first drains or dies, nothing executed twice", async (t) => {
  const transport = new MemoryTransport();
  const a = recorder(20);
  const b = recorder(20);
  const serverA = await start(transport, a.dispatcher);
  await using serverB = await start(transport, b.dispatcher);
  const addressA = addressOf(serverA);
  const addressB = addressOf(serverB);
  try {
    await t.step("a graceful shutdown (GOAWAY): requests it did not process go to B", async () => {
      await using p = pool(transport, [addressA, addressB], {
        maxConnections: 2,
        maxRequestsPerConnection: 20,
      });
      // Both connections open, then a burst within their capacity in the same turn as the
      // shutdown: the GOAWAY overtakes what A has not read yet, which A never runs.
      await Promise.all(Array.from({ length: 40 }, (_, i) => p.request(job(10_000 + i))));
      assert.equal(p.stats().open, 2);
      const all: Promise<Message>[] = [];
      for (let i = 0; i < 30; i++) all.push(p.request(job(i), { timeoutMs: 5000 }));
      void serverA.shutdown(2000);
      // And more than the capacity, queued behind it.
      for (let i = 30; i < 200; i++) all.push(p.request(job(i), { timeoutMs: 5000 }));
      const replies = await Promise.all(all);
      assert.equal(replies.length, 200);
      for (let i = 0; i < 200; i++) {
        const times = (a.executed.get(String(i)) ?? 0) + (b.executed.get(String(i)) ?? 0);
        assert.equal(times, 1, `request ${i} ran ${times} times`);
      }
      assert.ok(a.executed.size > 0 && b.executed.size > 0);
      // Some were sent again: never written, or not processed (GOAWAY), and only those.
      assert.ok(p.stats().retries > 0, JSON.stringify(p.stats()));
      await serverA.closed();
      // Afterwards everything goes to B.
      await Promise.all(Array.from({ length: 20 }, (_, i) => p.request(job(1000 + i))));
      assert.equal(b.executed.get("1019"), 1);
      assert.equal(p.stats().addresses[addressB]!.breaker, "closed");
    });
    await t.step(
      "an abrupt death: in-flight requests fail typed and are never resent",
      async () => {
        const c = recorder(50);
        await using serverC = await start(transport, c.dispatcher);
        const addressC = addressOf(serverC);
        b.executed.clear();
        await using p = pool(transport, [addressC, addressB], {
          maxConnections: 2,
          maxRequestsPerConnection: 10,
          minConnections: 2,
        });
        await waitFor(() => p.stats().open === 2);
        const all = Array.from({ length: 20 }, (_, i) => p.request(job(i)).catch((e) => e));
        await waitFor(() => c.running > 0);
        // C dies: its connections are dropped without a goodbye.
        for (const connection of serverC.connections) connection.abort();
        await serverC.shutdown(100);
        const results = await Promise.all(all);
        for (const result of results) {
          assert.ok(
            !(result instanceof Error) || isProtocolError(result, "ConnectionClosed"),
            String(result),
          );
        }
        for (let i = 0; i < 20; i++) {
          const times = (c.executed.get(String(i)) ?? 0) + (b.executed.get(String(i)) ?? 0);
          assert.ok(times <= 1, `request ${i} ran ${times} times`);
          if (!(results[i] instanceof Error)) assert.equal(times, 1);
        }
        // New requests go to B.
        const after = await Promise.all(
          Array.from({ length: 10 }, (_, i) => p.request(job(100 + i))),
        );
        assert.equal(after.length, 10);
        assert.equal(b.executed.get("109"), 1);
      },
    );
  } finally {
    await serverA.shutdown(100);
  }
});

Deno.test("pool: leases are exclusive, released by release() or await using, destroyed on demand", async () => {
  const transport = new MemoryTransport();
  const r = recorder();
  await using server = await start(transport, r.dispatcher);
  await using p = pool(transport, addressOf(server), { maxConnections: 2 });
  const lease = await p.acquire();
  assert.equal(p.stats().leased, 1);
  // Pool requests do not use the leased connection.
  await p.request(job(1));
  assert.equal(p.stats().open, 2);
  {
    await using second = await p.acquire();
    assert.notEqual(second.connection, lease.connection);
    assert.equal(p.stats().leased, 2);
    // Both connections are leased: a request waits, and fails at its deadline.
    const waiting = await p.request(job(2), { timeoutMs: 50 }).catch((e) => e);
    assert.ok(waiting instanceof PoolExhausted, String(waiting));
  }
  assert.equal(p.stats().leased, 1);
  lease.release();
  lease.release();
  assert.equal(p.stats().leased, 0);
  const third = await p.acquire();
  third.destroy();
  await waitFor(() => p.stats().open === 1);
  assert.equal((await p.request(job(3))).type, "custom");
});

Deno.test("pool: drain finishes requests in flight, close fails waiters, events and bad arguments", async () => {
  const transport = new MemoryTransport();
  const r = recorder();
  await using server = await start(transport, r.dispatcher);
  const p = pool(transport, addressOf(server), { maxConnections: 1, maxRequestsPerConnection: 1 });
  const seen = events(p);
  const held = p.request(job(1, "HOLD"));
  await waitFor(() => r.running === 1);
  const waiter = p.request(job(2)).catch((e) => e);
  const draining = p.drain(5000);
  assert.ok(isProtocolError(await waiter, "ConnectionClosed"));
  await assert.rejects(p.request(job(3)), (e) => isProtocolError(e, "ConnectionClosed"));
  assert.equal(p.isClosed, true);
  r.release();
  assert.equal((await held).type, "custom");
  await draining;
  await p.closed();
  await seen.done;
  assert.deepEqual(
    seen.list.map((e) => e.type).filter((t) => t !== "connecting"),
    ["connected", "draining", "disconnected", "closed"],
  );
  await assert.rejects(p.acquire(), (e) => isProtocolError(e, "ConnectionClosed"));

  // Bad arguments are built-in errors, before anything is dialled.
  const address = addressOf(server);
  assert.throws(
    () => pool(transport, address, { minConnections: 3, maxConnections: 2 }),
    RangeError,
  );
  assert.throws(() => pool(transport, address, { maxConnections: 0 }), RangeError);
  assert.throws(() => pool(transport, address, { acquireTimeoutMs: 0 }), RangeError);
  assert.throws(() => pool(transport, [], {}), TypeError);
  assert.throws(() => pool(transport, [address, address], {}), TypeError);
  assert.throws(
    () => createPool({ address, transport, config: { ...PLAIN, server: { idleTimeout: 10_000 } } }),
    /idleTimeoutMs "30000": it must be below server.idle_timeout "10000"/,
  );
  // An aborted signal closes the pool.
  const controller = new AbortController();
  const q = pool(transport, address, { signal: controller.signal });
  controller.abort();
  await q.closed();
  assert.equal(q.isClosed, true);
});

Deno.test("pool: the breaker and the backoff on their own", () => {
  const breaker = new CircuitBreaker({
    failureThreshold: 3,
    cooldownMs: 100,
    maxCooldownMs: 250,
    probes: 2,
  });
  for (let i = 0; i < 2; i++) {
    assert.ok(breaker.tryAcquire(0));
    breaker.failure(0);
  }
  assert.equal(breaker.state(0), "closed");
  breaker.failure(0);
  assert.equal(breaker.state(0), "open");
  assert.equal(breaker.retryInMs(40), 60);
  assert.ok(!breaker.tryAcquire(99));
  assert.ok(breaker.tryAcquire(100));
  assert.ok(breaker.tryAcquire(100));
  assert.ok(!breaker.tryAcquire(100), "a third probe");
  breaker.failure(110);
  assert.equal(breaker.state(110), "open");
  assert.equal(breaker.retryInMs(110), 200);
  breaker.failure(120); // the second probe: already open, no change
  assert.equal(breaker.retryInMs(120), 190);
  assert.ok(breaker.tryAcquire(310));
  breaker.failure(310);
  assert.equal(breaker.retryInMs(310), 250, "the cool-down is capped");
  assert.ok(breaker.tryAcquire(560));
  breaker.success();
  assert.equal(breaker.state(560), "closed");
  assert.equal(breaker.failures, 0);
  // The client's backoff rule, shared by the pool.
  assert.equal(backoffCeiling(1, 1000, 30_000), 1000);
  assert.equal(backoffCeiling(4, 1000, 30_000), 8000);
  assert.equal(backoffCeiling(50, 1000, 30_000), 30_000);
  assert.equal(backoffCeiling(5000, 1000, 30_000), 30_000);
});

Deno.test("pool: a connection that stops answering PINGs fails its check and is never used", async () => {
  const transport = new MemoryTransport();
  const r = recorder(0, false);
  let silent = false;
  r.dispatcher.register(
    "PING",
    (_message, ctx) =>
      silent
        ? new Promise<Message>((_, reject) =>
          ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true })
        )
        : { type: "pong" },
  );
  await using server = await start(transport, r.dispatcher);
  await using p = pool(transport, addressOf(server), {
    healthCheck: { idleMs: 50, intervalMs: 0, timeoutMs: 100 },
  });
  const seen = events(p);
  await p.request(job(1));
  silent = true;
  await new Promise((resolve) => setTimeout(resolve, 80));
  // The check before use times out: that connection is closed, the request goes to a new one.
  assert.equal((await p.request(job(2), { timeoutMs: 2000 })).type, "custom");
  assert.equal(p.stats().created, 2);
  assert.equal(p.stats().retries, 0);
  assert.equal(r.executed.get("2"), 1);
  await p.close();
  await seen.done;
  const failed = seen.list.filter((e) => e.type === "health-check" && e.error !== undefined);
  assert.equal(failed.length, 1);
  assert.ok(seen.list.some((e) => e.type === "retiring" && e.reason === "health-check"));
});

Deno.test("pool: the [pool] section and its environment variables configure createPool; documented defaults hold", async () => {
  const { defaultConfig, parseConfig, ConfigError } = await import("../src/config/mod.ts");
  const defaults = defaultConfig().pool;
  assert.deepEqual(defaults, {
    addresses: [],
    minConnections: 0,
    maxConnections: 4,
    maxRequestsPerConnection: 100,
    idleTimeout: 30_000,
    maxLifetime: 1_800_000,
    acquireTimeout: 5000,
    maxWaiters: 1000,
    healthCheckIdle: 5000,
    healthCheckInterval: 30_000,
    healthCheckTimeout: 2000,
    breakerThreshold: 5,
    breakerCooldown: 10_000,
    breakerMaxCooldown: 60_000,
    breakerProbes: 1,
    retryAttempts: 3,
  });
  const transport = new MemoryTransport();
  const r = recorder(5);
  await using server = await start(transport, r.dispatcher);
  const config = parseConfig("[transport]\nencryption_enabled = false\n[pool]\nmax_waiters = 1\n", {
    env: {
      NETWORK_PROTOCOL_POOL_ADDRESSES: addressOf(server),
      NETWORK_PROTOCOL_POOL_MAX_CONNECTIONS: "1",
      NETWORK_PROTOCOL_POOL_MAX_REQUESTS_PER_CONNECTION: "2",
    },
  });
  assert.deepEqual(config.pool.addresses, [addressOf(server)]);
  await using p = createPool({ config, transport });
  await p.request(job(100));
  const results = await Promise.all(
    Array.from({ length: 4 }, (_, i) => p.request(job(i)).catch((e) => e)),
  );
  // Two in flight on the one connection, one waiter, and the fourth refused at once.
  assert.equal(results.filter((x) => x instanceof PoolExhausted).length, 1);
  assert.equal(p.stats().created, 1);
  // The rules between keys.
  assert.throws(
    () => parseConfig("[pool]\nmin_connections = 5\nmax_connections = 2\n"),
    (e) => e instanceof ConfigError && /pool\.min_connections "5" must not exceed/.test(e.message),
  );
  assert.throws(
    () => parseConfig('[pool]\naddresses = ["nohost"]\n'),
    (e) => e instanceof ConfigError && /pool\.addresses: must be host:port/.test(e.message),
  );
  assert.throws(
    () => parseConfig("[pool]\nbreaker_cooldown = 5000\nbreaker_max_cooldown = 1000\n"),
    (e) => e instanceof ConfigError && /pool\.breaker_max_cooldown "1000"/.test(e.message),
  );
});

Deno.test("pool: minConnections are opened at once and replaced when the server closes them", async () => {
  const transport = new MemoryTransport();
  const r = recorder();
  await using server = await start(transport, r.dispatcher);
  await using p = pool(transport, addressOf(server), { minConnections: 2, maxConnections: 3 });
  await waitFor(() => p.stats().open === 2, 2000, "two connections");
  for (const connection of server.connections) await connection.close();
  await waitFor(() => p.stats().created === 4 && p.stats().open === 2, 2000, "two new ones");
  assert.equal((await p.request(job(1))).type, "custom");
  assert.equal(p.stats().open, 2);
});

Deno.test("pool: with session resumption, a replaced connection resumes (one ticket store for the pool)", async () => {
  const transport = new MemoryTransport();
  const config: NetworkConfigInput = { security: { resumption: true } };
  await using server = await serve(
    { address: "127.0.0.1:0", transport, config },
    registerStandardHandlers(new Dispatcher()),
  );
  await using p = createPool({
    address: addressOf(server),
    transport,
    config,
    security: { serverKeys: [server.publicKey!] },
    maxConnections: 1,
  });
  const first = await p.acquire();
  assert.notEqual(first.connection.session.resumed, true);
  await first.connection.request({ type: "ping" });
  first.destroy();
  await waitFor(() => p.stats().open === 0, 2000, "the first connection to close");
  await using second = await p.acquire();
  assert.equal(second.connection.session.resumed, true);
  assert.equal(p.stats().created, 2);
});
