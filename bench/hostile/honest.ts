/**
 * The honest clients of the hostile-peer benchmark: `--clients` clients connected to the
 * daemon (pinning its key), each sending one ECHO request at a time, as fast as answers come.
 *
 * It prints `{"ready": true}` once every client is connected, then obeys lines on stdin:
 * `phase <name>` starts a new phase (requests are counted in the phase in which they started),
 * `stop` stops the clients, waits for the requests in flight (at most `--timeout-ms`), prints
 * `{"phases": {name: PhaseStats}}` and exits. It also exits when stdin closes or after
 * `--max-seconds`.
 *
 * Started by `bench/hostile/main.ts`; not meant to be run by hand.
 *
 * @module
 */

import { type Client, connect } from "../../src/service/client.ts";
import {
  exitAfter,
  fromHex,
  parseArgs,
  type PhaseStats,
  quantile,
  report,
  sleep,
  StdinLines,
} from "./common.ts";

const args = parseArgs(Deno.args);
exitAfter(Number(args.get("max-seconds") ?? 120), "honest clients");
const port = Number(args.get("port"));
const serverKey = fromHex(args.get("key")!);
const count = Number(args.get("clients") ?? 5);
const timeoutMs = Number(args.get("timeout-ms") ?? 10_000);

interface Sample {
  phase: number;
  start: number;
  end: number;
  ok: boolean;
}

const stdin = new StdinLines(() => Deno.exit(0));
const clients: Client[] = await Promise.all(
  Array.from({ length: count }, () =>
    connect({
      address: `127.0.0.1:${port}`,
      security: { serverKeys: [serverKey] },
      autoReconnect: false,
    })),
);
const phases: { name: string; start: number; end: number }[] = [];
const samples: Sample[] = [];
let running = false;
let phase = -1;

async function run(client: Client): Promise<void> {
  while (running) {
    const start = performance.now();
    const at = phase;
    let ok = true;
    try {
      await client.request({ type: "echo", text: "hello" }, { timeoutMs });
    } catch {
      ok = false;
    }
    samples.push({ phase: at, start, end: performance.now(), ok });
    if (!ok) await sleep(50); // a closed client must not spin
  }
}

report({ ready: true });
let loops: Promise<void>[] = [];
for (;;) {
  const line = await stdin.next();
  if (line.startsWith("phase ")) {
    const now = performance.now();
    if (phase >= 0) phases[phase]!.end = now;
    phases.push({ name: line.slice(6), start: now, end: Infinity });
    phase = phases.length - 1;
    if (!running) {
      running = true;
      loops = clients.map(run);
    }
  } else if (line === "stop") {
    break;
  }
}
const stopAt = performance.now();
if (phase >= 0) phases[phase]!.end = stopAt;
running = false;
await Promise.all(loops);

const result: Record<string, PhaseStats> = {};
phases.forEach((p, index) => {
  const mine = samples.filter((s) => s.phase === index);
  const ok = mine.filter((s) => s.ok);
  const latencies = mine.map((s) => s.end - s.start).sort((a, b) => a - b);
  // The longest stretch of the phase in which no request was answered.
  const ends = samples.filter((s) => s.ok && s.end >= p.start && s.end <= p.end)
    .map((s) => s.end).sort((a, b) => a - b);
  let gap = 0;
  let last = p.start;
  for (const end of ends) {
    gap = Math.max(gap, end - last);
    last = end;
  }
  gap = Math.max(gap, p.end - last);
  const seconds = (p.end - p.start) / 1000;
  result[p.name] = {
    count: ok.length,
    failed: mine.length - ok.length,
    seconds,
    perSecond: ok.length / seconds,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: latencies.at(-1) ?? NaN,
    longestGap: gap,
  };
});
report({ phases: result });
await Promise.allSettled(clients.map((c) => c.close()));
Deno.exit(0);
