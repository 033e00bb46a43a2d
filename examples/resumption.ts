/**
 * Session resumption: the server gives each client a session ticket; a client that connects
 * again presents it and resumes with one ephemeral DH per side instead of a full handshake,
 * keeping forward secrecy and the identities of the first handshake (docs/SECURITY.md,
 * "Session resumption"). `security.resumption` is off by default: both sides turn it on.
 *
 * Run: deno run --allow-net=127.0.0.1 examples/resumption.ts
 */
import {
  connect,
  Dispatcher,
  generateKeyPair,
  registerStandardHandlers,
  serve,
  SessionTicketStore,
} from "@npro/network-protocol";

const key = generateKeyPair();
const config = { security: { resumption: true } };
await using server = await serve(
  { address: "127.0.0.1:0", config, security: { staticKey: key } },
  registerStandardHandlers(new Dispatcher()),
);
const address = `127.0.0.1:${(server.addr as Deno.NetAddr).port}`;

// One store for every connection of this application (connect() makes one per client when
// security.resumption is true; sharing it resumes across connect() calls too).
const tickets = new SessionTicketStore();
for (const attempt of [1, 2, 3]) {
  await using client = await connect({
    address,
    config,
    security: { serverKeys: [key.publicKey], resumption: { store: tickets, name: address } },
  });
  await client.request({ type: "ping" }); // the ticket arrives as the session's first message
  const { pattern, resumed } = client.connection!.session;
  console.log(`connection ${attempt}: pattern ${pattern}, resumed ${resumed}`);
}
