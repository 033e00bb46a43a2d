/**
 * A custom handler doing async work (a simulated lookup) that honours cancellation, served and
 * called in one script.
 *
 * Run: deno run --allow-net=127.0.0.1 examples/custom_handler.ts
 */
import { connect, Dispatcher, type Message, serve } from "@npro/network-protocol";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const inventory = new Map([["apple", 3], ["pear", 0]]);

const dispatcher = new Dispatcher();
dispatcher.register("STOCK", async (message, { signal }): Promise<Message> => {
  if (message.type !== "custom") throw new TypeError("STOCK expects a custom message");
  const item = decoder.decode(message.payload);
  // Simulated I/O that stops when the client cancels or the deadline passes.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, 5);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
  const count = inventory.get(item);
  if (count === undefined) throw new RangeError(`Unknown item "${item}"`);
  return { type: "custom", command: "STOCK_LEVEL", payload: encoder.encode(String(count)) };
});

await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
const { port } = server.addr as Deno.NetAddr;
await using client = await connect({
  address: `127.0.0.1:${port}`,
  security: { serverKeys: [server.publicKey!] },
});

for (const item of ["apple", "pear", "kiwi"]) {
  try {
    const reply = await client.request({
      type: "custom",
      command: "STOCK",
      payload: encoder.encode(item),
    });
    if (reply.type === "custom") console.log(`${item}: ${decoder.decode(reply.payload)}`);
  } catch (error) {
    console.log(`${item}: failed (${(error as Error).message})`);
  }
}
