/**
 * A daemon process of the deployment tests: `serve()` with the configuration file it is given
 * (examples/deploy/config.toml), its ports and key path replaced through the environment
 * overrides (`NETWORK_PROTOCOL_*`), and two commands:
 *
 * - `WORK <id>`: records that it ran request `<id>`, waits 20 ms (so that requests are in flight
 *   when a drain starts), answers `<name> <id>`;
 * - `WHO`: answers with the client address the daemon sees (from the PROXY header).
 *
 * It prints `{"ready": true, "pid": n}` once it listens, drains on SIGTERM as `npro serve`
 * does, and prints `{"executed": [...ids]}` when it has stopped. Started by tests/deploy_test.ts.
 *
 * Usage: `_deploy_backend.ts <name> <config.toml>`
 */

import { loadConfig } from "../src/config/load.ts";
import { Dispatcher } from "../src/protocol/dispatcher.ts";
import { serve } from "../src/service/daemon.ts";

const [name = "backend", path = ""] = Deno.args;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const config = await loadConfig({ path, env: true });
const executed: string[] = [];
const dispatcher = new Dispatcher()
  .register("WORK", async (message) => {
    const id = decoder.decode((message as { payload: Uint8Array }).payload);
    executed.push(id);
    await new Promise((resolve) => setTimeout(resolve, 20));
    return { type: "custom", command: "WORK", payload: encoder.encode(`${name} ${id}`) };
  })
  .register("WHO", (_message, ctx) => {
    const addr = ctx.remoteAddr as Deno.NetAddr | undefined;
    return {
      type: "custom",
      command: "WHO",
      payload: encoder.encode(addr === undefined ? "?" : `${addr.hostname}:${addr.port}`),
    };
  });
const server = await serve({ config }, dispatcher);
const drain = () => void server.drain();
Deno.addSignalListener("SIGTERM", drain);
console.log(JSON.stringify({ ready: true, pid: Deno.pid }));
await server.closed();
Deno.removeSignalListener("SIGTERM", drain);
console.log(JSON.stringify({ executed }));
