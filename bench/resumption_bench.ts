/**
 * Session resumption (issue 12, item 5): a full Noise XX handshake against a resumed one
 * (NNpsk0 keyed by a session ticket: 1 keygen + 1 DH per side instead of 1 + 3), both sides in
 * memory with the sans-I/O drivers, no sockets. Each iteration runs the client and the server.
 *
 * ```sh
 * deno bench -A bench/resumption_bench.ts
 * ```
 *
 * @module
 */

import { generateKeyPair } from "../src/secure/keys.ts";
import { ClientHandshake, type HandshakeResult, ServerHandshake } from "../src/secure/handshake.ts";
import { initCrypto } from "../src/secure/default_provider.ts";
import { defaultProvider } from "../src/secure/default_provider.ts";
import type { ClientSecurityOptions, ServerSecurityOptions } from "../src/secure/policy.ts";
import {
  resumptionContext,
  SessionTicketIssuer,
  SessionTicketStore,
} from "../src/secure/session_ticket.ts";

await initCrypto();

const serverKey = generateKeyPair();
const clientKey = generateKeyPair();
const pins = [serverKey.publicKey, generateKeyPair().publicKey];
const issuer = new SessionTicketIssuer({ lifetimeMs: 3_600_000 });
const store = new SessionTicketStore();
const provider = defaultProvider();

async function handshake(
  client: ClientSecurityOptions,
  server: ServerSecurityOptions,
): Promise<[HandshakeResult, HandshakeResult]> {
  const c = new ClientHandshake(client);
  const s = new ServerHandshake(server);
  let toServer = c.start();
  while (!c.isComplete || !s.isComplete) {
    const toClient: Uint8Array[] = [];
    for (const payload of toServer) toClient.push(...await s.receive(payload));
    toServer = [];
    for (const payload of toClient) toServer.push(...await c.receive(payload));
  }
  const results: [HandshakeResult, HandshakeResult] = [c.result(), s.result()];
  const ticket = results[1].ticket;
  if (ticket !== undefined) results[0].ticketReceiver?.accept(ticket);
  return results;
}

const plainClient: ClientSecurityOptions = { staticKey: clientKey, serverKeys: pins };
const plainServer: ServerSecurityOptions = { staticKey: serverKey };
const resumingClient: ClientSecurityOptions = {
  ...plainClient,
  resumption: { store, name: "bench" },
};
const resumingServer: ServerSecurityOptions = { ...plainServer, resumption: issuer };
const context = resumptionContext(provider, {
  pattern: "XX",
  pins,
  staticKey: clientKey.publicKey,
});

/** Puts a fresh ticket in the store, as a finished full XX handshake would. */
function plantTicket(): void {
  const psk = crypto.getRandomValues(new Uint8Array(32));
  const issued = issuer.issue({
    psk: psk.slice(),
    pattern: "XX",
    serverKey: serverKey.publicKey,
    clientKey: clientKey.publicKey,
  })!;
  store.set("bench", {
    ticket: issued.ticket,
    psk,
    context,
    pattern: "XX",
    pinned: true,
    serverKey: serverKey.publicKey,
    expiresAt: Date.now() + issued.lifetimeMs,
  });
}

Deno.bench({
  name: "full XX handshake, both sides (resumption off)",
  group: "resumption",
  baseline: true,
  async fn() {
    await handshake(plainClient, plainServer);
  },
});

Deno.bench({
  name: "full XX handshake, both sides, ticket issued and stored",
  group: "resumption",
  async fn() {
    await handshake(resumingClient, resumingServer);
    store.clear();
  },
});

Deno.bench({
  name: "resumed handshake (NNpsk0 + ticket), both sides, new ticket issued and stored",
  group: "resumption",
  async fn(b) {
    plantTicket();
    b.start();
    const [client] = await handshake(resumingClient, resumingServer);
    b.end();
    if (!client.resumed) throw new Error("the handshake did not resume");
  },
});
