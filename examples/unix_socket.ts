/**
 * A server and a client over a Unix socket (file mode 0600). Linux and macOS only.
 *
 * Run (Unix sockets need read, write and net permission for their path):
 *   deno run --allow-read=/tmp/npro-example.sock --allow-write=/tmp/npro-example.sock \
 *     --allow-net=unix:/tmp/npro-example.sock examples/unix_socket.ts [/tmp/npro-example.sock]
 */
import { connect, Dispatcher, registerStandardHandlers, serve } from "@npro/network-protocol";

const path = Deno.args[0] ?? "/tmp/npro-example.sock";
const config = { transport: { kind: "unix" as const } };
await using server = await serve(
  { address: path, config },
  registerStandardHandlers(new Dispatcher()),
);
await using client = await connect({
  address: path,
  config,
  security: { serverKeys: [server.publicKey!] },
});
const reply = await client.request({ type: "echo", text: "over a unix socket" });
console.log(`echo: ${reply.type === "echo" ? reply.text : "?"}`);
console.log(`socket mode: ${((await Deno.stat(path)).mode! & 0o777).toString(8)}`);
