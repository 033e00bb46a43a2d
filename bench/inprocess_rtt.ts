/**
 * Round-trip latency of one 64-byte request at a time, client and daemon in ONE process (so both
 * share one event loop), against a raw TCP echo measured in the same run. A preliminary probe:
 * the separate-process network benchmark of issue 6 is the reference.
 *
 * Run: deno run --allow-net=127.0.0.1 bench/inprocess_rtt.ts [rounds]
 *
 * @module
 */

import { connect, Dispatcher, type Message, registerStandardHandlers, serve } from "../mod.ts";

const ROUNDS = Number(Deno.args[0] ?? 3000);

function summary(times: number[]): { median: number; p99: number } {
  times.sort((a, b) => a - b);
  return {
    median: times[Math.floor(times.length / 2)]! * 1000,
    p99: times[Math.floor(times.length * 0.99)]! * 1000,
  };
}

async function library(encryption: boolean): Promise<{ median: number; p99: number }> {
  const dispatcher = registerStandardHandlers(new Dispatcher()).register("X", (m) => m);
  const config = { transport: { encryptionEnabled: encryption } };
  await using server = await serve({ address: "127.0.0.1:0", config }, dispatcher);
  const { port } = server.addr as Deno.NetAddr;
  await using client = await connect({
    address: `127.0.0.1:${port}`,
    config,
    ...(encryption ? { security: { serverKeys: [server.publicKey!] } } : {}),
  });
  const message: Message = { type: "custom", command: "X", payload: new Uint8Array(64) };
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const started = performance.now();
    await client.request(message);
    times.push(performance.now() - started);
  }
  return summary(times);
}

async function rawEcho(): Promise<{ median: number; p99: number }> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const echo = (async () => {
    const conn = await listener.accept();
    conn.setNoDelay(true);
    const buffer = new Uint8Array(65536);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      await conn.write(buffer.subarray(0, n));
    }
    conn.close();
  })();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  conn.setNoDelay(true);
  const frame = new Uint8Array(4 + 64);
  const reply = new Uint8Array(65536);
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const started = performance.now();
    await conn.write(frame);
    let got = 0;
    while (got < frame.length) got += (await conn.read(reply)) ?? frame.length;
    times.push(performance.now() - started);
  }
  conn.close();
  await echo;
  return summary(times);
}

const raw = await rawEcho();
const plain = await library(false);
const noise = await library(true);
const row = (name: string, r: { median: number; p99: number }) =>
  `| ${name} | ${r.median.toFixed(1)} | ${r.p99.toFixed(1)} | ${
    (r.median / raw.median).toFixed(2)
  }x |`;
console.log("| in one process, 64 B request | median µs | p99 µs | median / raw |");
console.log("|---|---:|---:|---:|");
console.log(row("raw TCP echo (4-byte length framing)", raw));
console.log(row("library, plaintext", plain));
console.log(row("library, Noise NK", noise));
