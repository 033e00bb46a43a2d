/**
 * The pool's own cost in one process: one client, a pool of 1 connection and a pool of 4 on
 * one server, alternating, five runs each of 150,000 pipelined 64 B numbered requests (2,048 to
 * 4,096 pending, as bench:net's `request64`), medians and ratios to the client.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 bench/pool_inprocess.ts          # plaintext
 * deno run --allow-net=127.0.0.1 bench/pool_inprocess.ts noise    # Noise NK
 * ```
 *
 * @module
 */
import {
  connect,
  createPool,
  Dispatcher,
  type Message,
  registerStandardHandlers,
  serve,
} from "../mod.ts";

const noise = Deno.args[0] === "noise";
const config = { transport: { encryptionEnabled: noise } };
await using server = await serve(
  { address: "127.0.0.1:0", config },
  registerStandardHandlers(new Dispatcher()).register("E", (m) => m),
);
const address = `127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
const security = noise ? { serverKeys: [server.publicKey!] } : {};
const message: Message = { type: "custom", command: "E", payload: new Uint8Array(64) };

async function run(target: { request(m: Message): Promise<Message> }): Promise<number> {
  const total = 150_000;
  const window = 4096;
  let issued = 0;
  let done = 0;
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const issue = () => {
      while (issued < total && issued - done < window) {
        issued++;
        target.request(message).then(() => {
          done++;
          if (done === total) resolve();
          else if (issued - done <= window / 2) issue();
        }, reject);
      }
    };
    issue();
  });
  return Math.round(total / ((performance.now() - started) / 1000));
}

await using client = await connect({ address, config, security });
const pool = (n: number) =>
  createPool({
    address,
    config,
    security,
    minConnections: n,
    maxConnections: n,
    maxRequestsPerConnection: 4096 / n,
    maxWaiters: 4096,
    healthCheck: { idleMs: 0, intervalMs: 0 },
  });
await using one = pool(1);
await using four = pool(4);
while (one.stats().open < 1 || four.stats().open < 4) {
  await new Promise((resolve) => setTimeout(resolve, 5));
}
const subjects = { client, "pool, 1 connection": one, "pool, 4 connections": four };
for (const target of Object.values(subjects)) await run(target); // warm-up
const rates = new Map<string, number[]>(Object.keys(subjects).map((name) => [name, []]));
for (let i = 0; i < 5; i++) {
  for (const [name, target] of Object.entries(subjects)) rates.get(name)!.push(await run(target));
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1]!;
const base = median(rates.get("client")!);
for (const [name, values] of rates) {
  console.log(
    `${noise ? "Noise NK" : "plaintext"}, ${name}: median ${median(values)} msg/s ` +
      `(${(median(values) / base).toFixed(2)}x), runs ${values.join(" ")}`,
  );
}
