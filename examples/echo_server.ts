/**
 * An echo server: PING and ECHO over TCP with the default Noise XX handshake.
 *
 * Run: deno run --allow-net=127.0.0.1 examples/echo_server.ts [127.0.0.1:9000]
 * It prints the address and the server key that clients pin; Ctrl-C stops it gracefully.
 */
import { Dispatcher, encodeKey, registerStandardHandlers, serve } from "@npro/network-protocol";

const address = Deno.args[0] ?? "127.0.0.1:9000";
const controller = new AbortController();
Deno.addSignalListener("SIGINT", () => controller.abort());

const server = await serve(
  { address, signal: controller.signal },
  registerStandardHandlers(new Dispatcher()),
);
const { hostname, port } = server.addr as Deno.NetAddr;
console.log(`listening ${hostname}:${port} key ${encodeKey(server.publicKey!)}`);
await server.closed();
console.log("stopped");
