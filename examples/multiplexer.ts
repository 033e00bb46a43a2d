/**
 * The original crate's `Multiplexer` on this library: `Multiplexer::new(reader, writer, config)`
 * and `multiplex.request(payload)` become one client (one multiplexed, encrypted connection) and
 * numbered requests; a large payload travels in fragments beside small ones; data larger than
 * the packet limit goes through a stream; a draining server's GOAWAY fails what it will not
 * process with a retryable `NotProcessed` (docs/SERVICE.md, "The original's Multiplexer").
 *
 * Run: deno run --allow-net=127.0.0.1 examples/multiplexer.ts
 */
import {
  type Client,
  connect,
  Dispatcher,
  isProtocolError,
  type Message,
  serve,
} from "@npro/network-protocol";

/**
 * The original's shape: `request(payload)` resolves with the reply's payload. Ids, the
 * in-flight table, time limits and cancellation are the connection's (RequestTable).
 */
function multiplexer(client: Client, command = "RAW") {
  return {
    async request(payload: Uint8Array, timeoutMs = 30_000): Promise<Uint8Array> {
      const reply = await client.request({ type: "custom", command, payload }, { timeoutMs });
      if (reply.type !== "custom") throw new TypeError(`Unexpected reply "${reply.type}"`);
      return reply.payload;
    },
  };
}

let release!: () => void;
const held = new Promise<void>((resolve) => (release = resolve));
const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

// The server side the original left to the peer: a handler that echoes the payload, one that waits,
// and a stream handler that counts what it receives.
const dispatcher = new Dispatcher()
  .register("RAW", (message: Message) => message)
  .register("HOLD", async (message: Message) => {
    await held;
    return message;
  })
  .registerStream("UPLOAD", async (stream) => {
    let total = 0;
    for await (const chunk of stream.readable) total += chunk.length;
    const writer = stream.writable.getWriter();
    await writer.write(new TextEncoder().encode(String(total)));
    await writer.close();
  });

const server = await serve({ address: "127.0.0.1:0" }, dispatcher);
const { port } = server.addr as Deno.NetAddr;
// `Multiplexer::new(reader, writer, MultiplexConfig::default())`: one connection, Noise NK.
await using client = await connect({
  address: `127.0.0.1:${port}`,
  security: { serverKeys: [server.publicKey!] },
  autoReconnect: false,
});
const multiplex = multiplexer(client);

// `multiplex.request(payload)`, 100 at once on the one connection: answers in any order.
const replies = await Promise.all(
  Array.from({ length: 100 }, (_, i) => multiplex.request(new Uint8Array([i]))),
);
console.log(
  `100 concurrent requests: ${replies.every((r, i) => r[0] === i) ? "all matched" : "mismatch"}`,
);

// A 4 MiB payload travels in 64 KiB fragments: small requests are answered while it flows.
const big = multiplex.request(new Uint8Array(4 << 20));
const small = await multiplex.request(new Uint8Array([42]));
console.log(`small request beside a 4 MiB one: ${small[0]}, large: ${(await big).length} bytes`);

// More than the 16 MiB packet limit: a stream, with flow control.
{
  await using stream = await client.openStream("UPLOAD");
  const writer = stream.writable.getWriter();
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < 20; i++) await writer.write(chunk);
  await writer.close();
  console.log(
    `stream upload: the server counted ${await new Response(stream.readable).text()} bytes`,
  );
}

// The server drains (GOAWAY): a request it already runs is answered, one it did not receive
// before GOAWAY fails with NotProcessed, safe to send again elsewhere (here it is only shown).
const working = client.request({ type: "custom", command: "HOLD", payload: new Uint8Array(1) });
while ([...server.connections][0]?.inflight !== 1) await tick();
const connection = client.connection!;
const shutdown = server.shutdown(2000);
while (!connection.goingAway) await tick();
const late = await client.request({ type: "ping" }).catch((error) => error);
release();
console.log(`a request running at GOAWAY: ${(await working).type}`);
console.log(
  `a request after GOAWAY: ${isProtocolError(late, "NotProcessed") ? "NotProcessed" : late}`,
);
await shutdown;
