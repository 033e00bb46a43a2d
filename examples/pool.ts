/**
 * The original crate's `ConnectionPool::new(factory, PoolConfig { min_size, max_size, .. })` and
 * `pool.acquire()` on this library: `createPool` over two servers (encrypted, keys pinned), many
 * requests spread over a few shared multiplexed connections, an exclusive lease, a server that
 * shuts down (its GOAWAY: the requests it did not process go to the other server, none runs
 * twice), and a server that refuses every connection (the breaker opens, callers fail at once).
 * docs/SERVICE.md, "Connection pool".
 *
 * Run: deno run --allow-net=127.0.0.1 examples/pool.ts
 */
import {
  CircuitOpen,
  createPool,
  Dispatcher,
  generateKeyPair,
  isProtocolError,
  type Message,
  registerStandardHandlers,
  serve,
} from "@npro/network-protocol";

// Two servers with the same static key (a service behind two addresses); each counts what it ran.
const key = generateKeyPair();
const ran = new Map<string, number>();
function dispatcher(name: string): Dispatcher {
  return registerStandardHandlers(new Dispatcher()).register("WORK", async (message: Message) => {
    const id = message.type === "custom" ? new TextDecoder().decode(message.payload) : "?";
    ran.set(id, (ran.get(id) ?? 0) + 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    return { type: "echo", text: name };
  });
}
const a = await serve({ address: "127.0.0.1:0", security: { staticKey: key } }, dispatcher("a"));
await using b = await serve(
  { address: "127.0.0.1:0", security: { staticKey: key } },
  dispatcher("b"),
);
const addressOf = (server: typeof a) => `127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
const work = (id: number): Message => ({
  type: "custom",
  command: "WORK",
  payload: new TextEncoder().encode(String(id)),
});

{
  await using pool = createPool({
    address: [addressOf(a), addressOf(b)],
    security: { serverKeys: [key.publicKey] },
    minConnections: 2,
    maxConnections: 4,
    maxRequestsPerConnection: 50,
    acquireTimeoutMs: 2000,
  });

  // 1,000 requests at once: never more than 4 connections, spread over both servers.
  const replies = await Promise.all(Array.from({ length: 1000 }, (_, i) => pool.request(work(i))));
  const served = new Set(replies.map((r) => (r.type === "echo" ? r.text : "?")));
  const stats = pool.stats();
  console.log(
    `1000 requests: ${replies.length} answered by ${[...served].sort().join(" and ")}, ` +
      `${stats.created} connections opened (max 4)`,
  );

  // An exclusive lease: no pool request uses this connection until the scope ends.
  {
    await using lease = await pool.acquire();
    const rtt = await lease.connection.ping();
    console.log(`lease on ${lease.address === addressOf(a) ? "a" : "b"}: ping ${rtt >= 0}`);
  }

  // Server a shuts down while requests run: it sends GOAWAY, finishes what it received, and
  // the requests it did not process are sent again to b. Nothing runs twice.
  const during = Array.from({ length: 200 }, (_, i) => pool.request(work(1000 + i)));
  await a.shutdown(2000);
  await Promise.all(during);
  const twice = [...ran.values()].filter((n) => n > 1).length;
  console.log(
    `shutdown of a: 200 answered, ${pool.stats().retries} sent again, ${twice} ran twice`,
  );
}

// A server that refuses every connection: the breaker opens after 2 failures and callers fail
// at once with CircuitOpen instead of waiting out their time limit.
{
  await using pool = createPool({
    address: addressOf(a), // a is gone
    security: { serverKeys: [key.publicKey] },
    circuitBreaker: { failureThreshold: 2, cooldownMs: 5000 },
    config: { client: { reconnectDelay: 10, maxReconnectDelay: 20 } },
  });
  for (let i = 0; i < 3; i++) {
    const error = await pool.request(work(0)).catch((e) => e);
    if (error instanceof CircuitOpen) {
      console.log(`refused: circuit open, retry after ${Math.round(error.retryAfterMs / 1000)} s`);
      break;
    }
    console.log(`refused: ${isProtocolError(error) ? error.code : error}`);
  }
}
