/**
 * Mutual TLS with a small CA made by `npro cert`: the daemon requires a client certificate
 * signed by the CA (node:tls backend, chosen automatically), the client presents one, and the
 * secure channel runs inside, so the server's `authorize` sees both identities: the client's
 * certificate and its Noise key. A client with a certificate from no known CA is refused.
 *
 * Make the CA and the certificates (no openssl needed):
 *
 * ```sh
 * mkdir -p pki
 * deno task npro cert --ca --name "npro example CA" --cert-out pki/ca.pem --key-out pki/ca.key
 * deno task npro cert --issuer pki/ca.pem --issuer-key pki/ca.key --usage server \
 *   --name localhost --alt localhost --alt 127.0.0.1 --cert-out pki/server.pem --key-out pki/server.key
 * deno task npro cert --issuer pki/ca.pem --issuer-key pki/ca.key --usage client \
 *   --name client-1 --cert-out pki/client.pem --key-out pki/client.key
 * ```
 *
 * Run: deno run --allow-net=127.0.0.1,localhost --allow-read=pki examples/mtls.ts pki
 */
import {
  connect,
  Dispatcher,
  generateKeyPair,
  isProtocolError,
  registerStandardHandlers,
  serve,
} from "@npro/network-protocol";
import { generateSelfSignedCert } from "@npro/network-protocol/transport";

const dir = Deno.args[0] ?? "pki";
const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
const [caPem, serverPem, serverKey, clientPem, clientKey] = await Promise.all(
  ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"].map(read),
);

const config = { transport: { kind: "tls" as const } };
const clientNoiseKey = generateKeyPair();
await using server = await serve({
  address: "127.0.0.1:0",
  config,
  tls: {
    cert: serverPem!,
    key: serverKey!,
    clientAuth: "require",
    clientCaCerts: [caPem!],
    // Runs after the Noise handshake: one policy over both identities.
    authorize: ({ certificate, noiseKey }) =>
      certificate?.subject.CN === "client-1" &&
      noiseKey !== undefined &&
      noiseKey.every((byte, i) => byte === clientNoiseKey.publicKey[i]),
  },
}, registerStandardHandlers(new Dispatcher()));
const { port } = server.addr as Deno.NetAddr;

{
  await using client = await connect({
    address: `localhost:${port}`,
    config,
    tls: { caCerts: [caPem!], cert: clientPem!, key: clientKey! },
    security: { serverKeys: [server.publicKey!], staticKey: clientNoiseKey },
    autoReconnect: false,
  });
  const reply = await client.request({ type: "echo", text: "over mutual TLS + Noise" });
  console.log(`echo: ${reply.type === "echo" ? reply.text : "?"}`);
  const peer = [...server.connections][0]?.peerCertificate;
  console.log(`server sees client certificate CN "${peer?.subject.CN}" (${peer?.fingerprint256})`);
  console.log(
    `client sees server certificate CN "${client.connection?.peerCertificate?.subject.CN}"`,
  );
}

// A certificate that the CA did not sign is refused.
const stranger = await generateSelfSignedCert({ commonName: "client-1", days: 1 });
try {
  await using _refused = await connect({
    address: `localhost:${port}`,
    config,
    tls: { caCerts: [caPem!], cert: stranger.certPem, key: stranger.keyPem },
    security: { serverKeys: [server.publicKey!], staticKey: clientNoiseKey },
    autoReconnect: false,
  });
  console.log("unexpected: a stranger was served");
} catch (error) {
  console.log(`stranger refused: ${isProtocolError(error) ? error.code : String(error)}`);
}
