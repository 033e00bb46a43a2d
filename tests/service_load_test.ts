import assert from "node:assert/strict";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { generateKeyPair } from "../src/secure/keys.ts";
import { add, portOf, sumOf, testDispatcher } from "./_service_helpers.ts";

Deno.test("1,000 concurrent clients x 1,000 requests: nothing lost or duplicated", async () => {
  const CLIENTS = Number(Deno.env.get("NPRO_LOAD_CLIENTS") ?? 1000);
  const REQUESTS = 1000;
  const key = generateKeyPair();
  await using server = await serve({
    address: "127.0.0.1:0",
    security: { staticKey: key },
    config: { server: { maxConnections: 2000, maxHandshakes: 2000 } },
  }, testDispatcher());
  const address = `127.0.0.1:${portOf(server.addr)}`;
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, () =>
      connect({
        address,
        security: { serverKeys: [key.publicKey] },
        autoReconnect: false,
      })),
  );
  try {
    assert.equal(server.connections.size, CLIENTS);
    let answered = 0;
    await Promise.all(clients.map(async (client, c) => {
      // Each client keeps 100 requests in flight; each answer must be its own sum.
      for (let start = 0; start < REQUESTS; start += 100) {
        const answers = await Promise.all(
          Array.from({ length: 100 }, (_, i) => client.request(add(c, start + i))),
        );
        answers.forEach((answer, i) => assert.equal(sumOf(answer), c + start + i));
        answered += answers.length;
      }
    }));
    assert.equal(answered, CLIENTS * REQUESTS);
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
});
