/**
 * The daemon process of the hostile-peer benchmark: what `npro serve` runs (the configuration
 * from defaults and `NETWORK_PROTOCOL_*` variables, logging set up from its `[logging]` section,
 * so log lines go to standard error, and a dispatcher with the standard PING and ECHO handlers),
 * on 127.0.0.1 with a port the system picks.
 *
 * Before it reports ready it warms up with 20 connections of 100 requests each (its own
 * client), so that later measurements do not include compiling the common code paths.
 *
 * It prints one JSON {@linkcode ServerReady} line on stdout, then obeys lines on stdin: `stats`
 * prints a {@linkcode ServerStats} line (after three garbage collections when started with
 * `--v8-flags=--expose-gc`), `stop` shuts down (1 s drain) and exits. It also exits when stdin
 * closes or after `--max-seconds` (default 300).
 *
 * Started by `bench/hostile/main.ts`; not meant to be run by hand.
 *
 * @module
 */

import process from "node:process";
import { loadConfig } from "../../src/config/mod.ts";
import { setupLogging } from "../../src/log_setup.ts";
import { Dispatcher, registerStandardHandlers } from "../../src/protocol/dispatcher.ts";
import { serve } from "../../src/service/daemon.ts";
import { connect } from "../../src/service/client.ts";
import {
  exitAfter,
  parseArgs,
  report,
  type ServerReady,
  type ServerStats,
  StdinLines,
  toHex,
} from "./common.ts";

const args = parseArgs(Deno.args);
exitAfter(Number(args.get("max-seconds") ?? 300), "hostile server");

const config = await loadConfig({ env: true });
const logging = await setupLogging(config.logging);
const server = await serve(
  { config, address: "127.0.0.1:0" },
  registerStandardHandlers(new Dispatcher()),
);
const stdin = new StdinLines(() => Deno.exit(0));

function cpuNow(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

// Warm up: a few handshakes and requests, so that measurements do not include compiling the
// code paths every connection takes.
for (let i = 0; i < 20; i++) {
  await using client = await connect({
    address: `127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    security: { serverKeys: [server.publicKey!] },
    autoReconnect: false,
  });
  for (let j = 0; j < 100; j++) await client.request({ type: "echo", text: "warm" });
}
const ready: ServerReady = {
  port: (server.addr as Deno.NetAddr).port,
  publicKey: toHex(server.publicKey!),
  pid: Deno.pid,
};
report(ready);

for (;;) {
  const line = await stdin.next();
  if (line === "stats") {
    // CPU time before and after the collections: a difference between two samples counts
    // neither.
    const cpuMs = cpuNow();
    const gc = (globalThis as { gc?: () => void }).gc;
    for (let i = 0; i < 3; i++) gc?.();
    const memory = Deno.memoryUsage();
    const stats: ServerStats = {
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      external: memory.external,
      cpuMs,
      cpuAfterGcMs: cpuNow(),
      connections: server.connections.size,
      handshaking: server.handshaking,
    };
    report(stats);
  } else if (line === "stop") {
    break;
  }
}
await server.shutdown(1000);
await logging[Symbol.asyncDispose]();
report({ stopped: true });
Deno.exit(0);
