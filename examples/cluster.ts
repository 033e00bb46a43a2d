/**
 * The original crate's `Cluster::new(peers)`, `start_heartbeat(interval)` and `get_peers()` on
 * this library: three members in one process, each with its own server and Noise key, probing
 * each other (SWIM with indirect probes and Lifeguard's local health). The example shows the
 * peers' table (state, round trip, last seen, incarnation), a request to the nearest peer, a
 * member that dies (seen as suspect, then dead) and one that leaves gracefully (seen as left).
 * docs/CLUSTER.md.
 *
 * Run: deno run --allow-net=127.0.0.1 examples/cluster.ts
 */
import {
  type Cluster,
  createCluster,
  Dispatcher,
  generateKeyPair,
  type KeyPair,
} from "@npro/network-protocol";

// Short intervals so that the example runs in seconds (the defaults are 1000 and 500 ms).
const settings = { probeIntervalMs: 100, probeTimeoutMs: 50, suspicionMultiplier: 5 };

// Ports picked by the OS: listen on port 0, remember the port, close.
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
const names = ["a", "b", "c"] as const;
const nodes = names.map((id) => ({ id, port: freePort(), key: generateKeyPair() }));

async function start(id: string, key: KeyPair, port: number): Promise<Cluster> {
  const dispatcher = new Dispatcher().register("WHO", () => ({ type: "echo", text: id }));
  return await createCluster({
    ...settings,
    self: { id, address: `127.0.0.1:${port}`, staticKey: key },
    // Each member knows the others by id, address and pinned key (the original's (id, addr)).
    peers: nodes.filter((n) => n.id !== id).map((n) => ({
      id: n.id,
      address: `127.0.0.1:${n.port}`,
      publicKey: n.key.publicKey,
    })),
    dispatcher,
  });
}

const [a, b, c] = await Promise.all(nodes.map((n) => start(n.id, n.key, n.port)));
try {
  // a's view of the cluster, as events: one per change, never one per probe.
  const seen = (async () => {
    for await (const event of a!.events()) {
      if (event.type === "suspect" || event.type === "dead" || event.type === "left") {
        console.log(`a sees ${event.peer.id}: ${event.type}`);
      }
    }
  })();
  while (a!.peers().some((p) => p.rttMs === undefined)) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  for (const peer of a!.peers()) {
    console.log(
      `peer ${peer.id}: ${peer.state}, rtt ${
        peer.rttMs?.toFixed(2)
      } ms, incarnation ${peer.incarnation}`,
    );
  }
  const reply = await a!.request({ type: "custom", command: "WHO", payload: new Uint8Array() });
  console.log(`the nearest peer answered: ${reply.type === "echo" ? reply.text : reply.type}`);

  // c stops without a word (as a crash would look): suspect, then dead after the suspicion timeout.
  await c!.close();
  while (a!.get("c")?.state !== "dead") await new Promise((resolve) => setTimeout(resolve, 20));
  // b leaves gracefully: left, never dead.
  await b!.leave();
  while (a!.get("b")?.state !== "left") await new Promise((resolve) => setTimeout(resolve, 20));
  console.log(`alive peers of a: ${a!.peers({ state: "alive" }).length}`);
  await a!.close();
  await seen;
} finally {
  await Promise.all([a!.close(), b!.close(), c!.close()]);
}
