/**
 * A client that survives a server restart: it reports the request that was in flight when the
 * connection dropped (never resending it) and reconnects with backoff and jitter.
 *
 * Run: deno run --allow-net=127.0.0.1 examples/reconnecting_client.ts
 */
import {
  connect,
  Dispatcher,
  generateKeyPair,
  registerStandardHandlers,
  serve,
} from "@npro/network-protocol";

const key = generateKeyPair();
const handlers = () => {
  const d = registerStandardHandlers(new Dispatcher());
  d.register("WAIT", async (m) => {
    await new Promise((r) => setTimeout(r, 200));
    return m;
  });
  return d;
};
let server = await serve({ address: "127.0.0.1:0", security: { staticKey: key } }, handlers());
const { port } = server.addr as Deno.NetAddr;

const client = await connect({
  address: `127.0.0.1:${port}`,
  security: { serverKeys: [key.publicKey] },
  config: { client: { reconnectDelay: 50, maxReconnectAttempts: 10 } },
});
const log = (async () => {
  for await (const status of client.status()) console.log(`status: ${status.type}`);
})();

const pending = client.request({ type: "custom", command: "WAIT", payload: new Uint8Array() });
await new Promise((r) => setTimeout(r, 20));
await server.shutdown(0); // The server goes away with a request in flight...
try {
  await pending;
} catch (error) {
  console.log(`in flight: ${(error as Error).message}`);
}
server = await serve({ address: `127.0.0.1:${port}`, security: { staticKey: key } }, handlers());
const reply = await client.request({ type: "echo", text: "back again" }, { timeoutMs: 5000 });
console.log(`echo: ${reply.type === "echo" ? reply.text : "?"}`);
await client.close();
await log;
await server.shutdown();
