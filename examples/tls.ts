/**
 * TLS with a freshly generated self-signed certificate that the client pins through `caCerts`,
 * with the Noise layer inside for key pinning (the recommended composition).
 *
 * Run: deno run --allow-net=127.0.0.1,localhost examples/tls.ts
 */
import { connect, Dispatcher, registerStandardHandlers, serve } from "@npro/network-protocol";
import { generateSelfSignedCert } from "@npro/network-protocol/transport";

const cert = await generateSelfSignedCert({
  commonName: "localhost",
  altNames: ["localhost", "127.0.0.1"],
  days: 1,
});
const config = { transport: { kind: "tls" as const } };
await using server = await serve(
  { address: "127.0.0.1:0", config, tls: { cert: cert.certPem, key: cert.keyPem } },
  registerStandardHandlers(new Dispatcher()),
);
const { port } = server.addr as Deno.NetAddr;
await using client = await connect({
  address: `localhost:${port}`,
  config,
  tls: { caCerts: [cert.certPem] },
  security: { serverKeys: [server.publicKey!] },
});
const reply = await client.request({ type: "echo", text: "over TLS + Noise" });
console.log(`echo: ${reply.type === "echo" ? reply.text : "?"}`);
console.log(`certificate fingerprint: ${cert.fingerprint}`);
