/**
 * An echo client that pins the server's key (Noise NK: the server is authenticated).
 *
 * Run: deno run --allow-net=127.0.0.1 examples/echo_client.ts 127.0.0.1:9000 <server key> [text]
 */
import { connect, decodeKey } from "@npro/network-protocol";

const [address = "127.0.0.1:9000", key, text = "hello"] = Deno.args;
if (key === undefined) throw new TypeError("Usage: echo_client.ts <address> <server key> [text]");

await using client = await connect({ address, security: { serverKeys: [decodeKey(key)] } });
const reply = await client.request({ type: "echo", text });
console.log(`echo: ${reply.type === "echo" ? reply.text : JSON.stringify(reply)}`);
const rtt = await client.connection!.ping();
console.log(`ping: ${rtt.toFixed(3)} ms`);
