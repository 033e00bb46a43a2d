/**
 * Session resumption (issue 12, item 5): tickets, the resumed NNpsk0 handshake, and each threat
 * of docs/SECURITY.md, "Session resumption": ticket theft, replay, key rotation, binding,
 * expiry, tampering, forward secrecy, and the client's fallback to a full handshake.
 *
 * @module
 */

import assert from "node:assert/strict";
import { decodeMessage, encodeMessage, opcodeOf } from "../src/core/message.ts";
import { generateKeyPair } from "../src/secure/keys.ts";
import type { CryptoProvider } from "../src/secure/crypto.ts";
import { defaultProvider } from "../src/secure/default_provider.ts";
import { ClientHandshake, type HandshakeResult, ServerHandshake } from "../src/secure/handshake.ts";
import { HandshakeState } from "../src/secure/noise/handshake_state.ts";
import { decodeHello, encodeHello, helloPrologue } from "../src/secure/hello.ts";
import type { ClientSecurityOptions, ServerSecurityOptions } from "../src/secure/policy.ts";
import {
  MAX_TICKET_LIFETIME_MS,
  resumptionContext,
  SessionTicketIssuer,
  SessionTicketStore,
} from "../src/secure/session_ticket.ts";
import { ProtocolError } from "../src/errors.ts";
import { MemoryTransport } from "../src/transport/memory_transport.ts";
import { serve } from "../src/service/daemon.ts";
import { connect } from "../src/service/client.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { createConfig, validateConfig } from "../src/config/mod.ts";
import { loadConfig } from "../src/config/load.ts";
import { runDrivers } from "./_secure_helpers.ts";
import { waitFor } from "./_service_helpers.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/** A fake clock, shared by an issuer and a store. */
function clock(start = 1_700_000_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** The default provider with counters of key generations and DHs. */
function countingProvider(): { provider: CryptoProvider; keygens: number; dhs: number } {
  const inner = defaultProvider();
  const counts = { provider: undefined as unknown as CryptoProvider, keygens: 0, dhs: 0 };
  counts.provider = {
    ...inner,
    name: `counting ${inner.name}`,
    encrypt: (...a) => inner.encrypt(...a),
    decrypt: (...a) => inner.decrypt(...a),
    publicKeyOf: (k) => inner.publicKeyOf(k),
    sha256: (...p) => inner.sha256(...p),
    hmacSha256: (k, ...p) => inner.hmacSha256(k, ...p),
    hkdf: (ck, ikm, n) => inner.hkdf(ck, ikm, n),
    generateKeyPair: () => {
      counts.keygens++;
      return inner.generateKeyPair();
    },
    dh: (priv, pub) => {
      counts.dhs++;
      return inner.dh(priv, pub);
    },
  };
  return counts;
}

interface Run {
  client?: HandshakeResult;
  server?: HandshakeResult;
  clientError?: unknown;
  serverError?: unknown;
  transcript: { from: "client" | "server"; payload: Uint8Array }[];
  clientDriver: ClientHandshake;
}

/** Runs one handshake and hands the server's ticket to the client, as a connection does. */
async function run(client: ClientSecurityOptions, server: ServerSecurityOptions): Promise<Run> {
  const clientDriver = new ClientHandshake(client);
  const outcome = await runDrivers(clientDriver, new ServerHandshake(server));
  const ticket = outcome.server?.ticket;
  if (ticket !== undefined) {
    assert.ok(outcome.client?.ticketReceiver, "the server sent a ticket it did not announce");
    assert.ok(outcome.client.ticketReceiver.accept(ticket));
  }
  return { ...outcome, clientDriver };
}

function code(error: unknown): string | undefined {
  return error instanceof ProtocolError ? error.code : undefined;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const serverKey = generateKeyPair();
const clientKey = generateKeyPair();

// ---------------------------------------------------------------------------------------------
// The resumed handshake

Deno.test("resumption: a resumed handshake reports the identities of the full one and resumed: true", async () => {
  const issuer = new SessionTicketIssuer();
  const store = new SessionTicketStore();
  const client: ClientSecurityOptions = {
    pattern: "XX",
    staticKey: clientKey,
    serverKeys: [serverKey.publicKey, generateKeyPair().publicKey],
    resumption: { store, name: "db:9000" },
  };
  const server: ServerSecurityOptions = {
    staticKey: serverKey,
    clientKeys: [clientKey.publicKey],
    resumption: issuer,
  };
  const full = await run(client, server);
  assert.equal(full.client?.resumed, false);
  assert.equal(full.server?.resumed, false);
  assert.equal(store.size, 1);
  assert.equal(decodeHello(full.transcript[0]!.payload).pattern, "XX");

  const resumed = await run(client, server);
  assert.equal(resumed.clientDriver.resuming, true);
  // On the wire: NNpsk0 with the ticket in the hello.
  const hello = decodeHello(resumed.transcript[0]!.payload);
  assert.equal(hello.pattern, "NNpsk0");
  assert.ok(hello.params.ticket !== undefined && hello.params.resumption === true);
  assert.equal(resumed.transcript.length, 2, "a resumed handshake is one round trip");
  const c = resumed.client!;
  const s = resumed.server!;
  assert.equal(c.resumed, true);
  assert.equal(s.resumed, true);
  assert.equal(c.pattern, "XX");
  assert.equal(s.pattern, "XX");
  assert.deepEqual(c.remoteStaticKey, serverKey.publicKey);
  assert.deepEqual(s.remoteStaticKey, clientKey.publicKey);
  assert.equal(c.pinned, true);
  assert.equal(s.pinned, true);
  assert.deepEqual(c.handshakeHash, s.handshakeHash);
  assert.notDeepEqual(c.handshakeHash, full.client!.handshakeHash);
  // The channel works both ways.
  const [up] = c.channel!.sealData(new Uint8Array([1, 2, 3]));
  const opened = s.channel!.open(up!);
  assert.equal(opened.type, "data");
  // A resumed session gets a new ticket; the used one is gone (single use).
  assert.ok(s.ticket !== undefined);
  assert.equal(store.size, 1);
  issuer.destroy();
});

Deno.test("resumption: a resumed handshake costs 1 keygen + 1 DH per side (full XX: 1 + 3)", async () => {
  const issuer = new SessionTicketIssuer();
  const store = new SessionTicketStore();
  const c = countingProvider();
  const s = countingProvider();
  const client: ClientSecurityOptions = {
    staticKey: clientKey,
    serverKeys: [serverKey.publicKey, generateKeyPair().publicKey],
    resumption: { store, name: "x" },
    provider: c.provider,
  };
  const server: ServerSecurityOptions = {
    staticKey: serverKey,
    resumption: issuer,
    provider: s.provider,
  };
  const full = await run(client, server);
  assert.equal(full.client?.pattern, "XX");
  assert.deepEqual([c.keygens, c.dhs, s.keygens, s.dhs], [1, 3, 1, 3]);
  c.keygens =
    c.dhs =
    s.keygens =
    s.dhs =
      0;
  const resumed = await run(client, server);
  assert.equal(resumed.client?.resumed, true);
  assert.deepEqual([c.keygens, c.dhs, s.keygens, s.dhs], [1, 1, 1, 1]);
  issuer.destroy();
});

Deno.test("resumption: every pattern can be resumed, psk patterns included", async () => {
  const psk = crypto.getRandomValues(new Uint8Array(32));
  const cases: [ClientSecurityOptions, ServerSecurityOptions][] = [
    [{ serverKeys: [serverKey.publicKey] }, { staticKey: serverKey }],
    [{ pattern: "IK", staticKey: clientKey, serverKeys: [serverKey.publicKey] }, {
      staticKey: serverKey,
    }],
    [{ pattern: "NN" }, { accept: ["NN"] }],
    [{ psk }, { psk }],
    [{ psk, serverKeys: [serverKey.publicKey] }, { psk, staticKey: serverKey }],
  ];
  for (const [clientOptions, serverOptions] of cases) {
    const issuer = new SessionTicketIssuer();
    const store = new SessionTicketStore();
    const client = { ...clientOptions, resumption: { store, name: "s" } };
    const server = { ...serverOptions, resumption: issuer };
    const full = await run(client, server);
    const resumed = await run(client, server);
    assert.equal(resumed.client?.resumed, true, `pattern ${full.client?.pattern}`);
    assert.equal(resumed.client?.pattern, full.client?.pattern);
    assert.deepEqual(resumed.client?.remoteStaticKey, full.client?.remoteStaticKey);
    issuer.destroy();
  }
});

Deno.test("resumption: a client without resumption asks for no ticket and gets none", async () => {
  const issuer = new SessionTicketIssuer();
  const outcome = await run({ serverKeys: [serverKey.publicKey] }, {
    staticKey: serverKey,
    resumption: issuer,
  });
  assert.equal(decodeHello(outcome.transcript[0]!.payload).params.resumption, undefined);
  assert.equal(outcome.server?.ticket, undefined);
  assert.equal(outcome.client?.ticketReceiver, undefined);
  issuer.destroy();
});

Deno.test("resumption: a server without resumption issues no ticket, and refuses one", async () => {
  const issuer = new SessionTicketIssuer();
  const store = new SessionTicketStore();
  const client = { serverKeys: [serverKey.publicKey], resumption: { store, name: "s" } };
  const off = await run(client, { staticKey: serverKey });
  assert.equal(off.server?.ticket, undefined);
  assert.equal(off.client?.ticketReceiver, undefined, "no ticket was announced");
  assert.equal(store.size, 0);
  await run(client, { staticKey: serverKey, resumption: issuer });
  assert.equal(store.size, 1);
  const refused = await run(client, { staticKey: serverKey });
  assert.equal(code(refused.serverError), "HandshakeFailed");
  assert.match(message(refused.serverError), /does not resume sessions/);
  assert.equal(store.size, 0, "an offered ticket is dropped");
  // The client explains the silent close, and a new handshake with the same options is full.
  const explained = refused.clientDriver.explainReadFailure(undefined);
  assert.match(explained!.message, /did not accept the session ticket/);
  const again = await run(client, { staticKey: serverKey });
  assert.equal(again.client?.resumed, false);
  issuer.destroy();
});

// ---------------------------------------------------------------------------------------------
// Threats

Deno.test("resumption: binding: another server's ticket is refused (other keys, other static key)", async () => {
  const store = new SessionTicketStore();
  const issuerA = new SessionTicketIssuer();
  const issuerB = new SessionTicketIssuer();
  const otherKey = generateKeyPair();
  const client = {
    serverKeys: [serverKey.publicKey, otherKey.publicKey],
    resumption: { store, name: "s" },
  };
  await run(client, { staticKey: serverKey, resumption: issuerA });
  // Server B: its own ticket keys (another process, or a restart).
  const other = await run(client, { staticKey: otherKey, resumption: issuerB });
  assert.equal(code(other.serverError), "HandshakeFailed");
  assert.match(message(other.serverError), /key this server does not have/);
  // Server C shares A's ticket keys but has another static key: the ticket names A's key.
  await run(client, { staticKey: serverKey, resumption: issuerA });
  const shared = await run(client, { staticKey: otherKey, resumption: issuerA });
  assert.match(message(shared.serverError), /issued for another server key/);
  issuerA.destroy();
  issuerB.destroy();
});

Deno.test("resumption: ticket theft: the ticket without the client's psk gives no session, even to claim the client's key", async () => {
  const issuer = new SessionTicketIssuer();
  const store = new SessionTicketStore();
  const server: ServerSecurityOptions = {
    staticKey: serverKey,
    clientKeys: [clientKey.publicKey],
    resumption: issuer,
  };
  const honest = await run({ staticKey: clientKey, resumption: { store, name: "s" } }, server);
  // The attacker has the ticket (seen in a hello, or stolen) but not the secret kept with it.
  const stolen = honest.server!.ticket!.ticket;
  const attackerStore = new SessionTicketStore();
  const context = resumptionContext(defaultProvider(), { pattern: "XX", pins: [] });
  attackerStore.set("s", {
    ticket: stolen,
    psk: crypto.getRandomValues(new Uint8Array(32)),
    context,
    pattern: "XX",
    pinned: false,
    expiresAt: Date.now() + 60_000,
  });
  const outcome = await run({ resumption: { store: attackerStore, name: "s" } }, server);
  assert.equal(code(outcome.serverError), "HandshakeFailed");
  assert.equal(outcome.server, undefined, "the server established nothing");
  // The honest client still resumes with it: the attempt did not consume anything server-side.
  const resumed = await run({ staticKey: clientKey, resumption: { store, name: "s" } }, server);
  assert.equal(resumed.server?.resumed, true);
  assert.deepEqual(resumed.server?.remoteStaticKey, clientKey.publicKey);
  issuer.destroy();
});

Deno.test("resumption: revocation: a client key the server no longer allows cannot resume", async () => {
  const issuer = new SessionTicketIssuer();
  const store = new SessionTicketStore();
  const client = { staticKey: clientKey, resumption: { store, name: "s" } };
  await run(client, {
    staticKey: serverKey,
    clientKeys: [clientKey.publicKey],
    resumption: issuer,
  });
  const revoked = await run(client, {
    staticKey: serverKey,
    authorize: () => false,
    resumption: issuer,
  });
  assert.equal(code(revoked.serverError), "HandshakeFailed");
  assert.match(message(revoked.serverError), /was not authorized/);
  issuer.destroy();
});

Deno.test("resumption: replaying a captured resumption hello gives the attacker no session and no data", async () => {
  const issuer = new SessionTicketIssuer();
  const store = new SessionTicketStore();
  const client = { serverKeys: [serverKey.publicKey], resumption: { store, name: "s" } };
  const server = { staticKey: serverKey, resumption: issuer };
  await run(client, server);
  const original = await run(client, server);
  const hello = original.transcript[0]!.payload;
  const [record] = original.client!.channel!.sealData(new TextEncoder().encode("transfer 100"));
  // The attacker replays the hello to the server: the server answers with a fresh ephemeral key.
  const replayed = new ServerHandshake(server);
  const reply = await replayed.receive(hello);
  assert.notDeepEqual(reply[0], original.transcript[1]!.payload);
  const session = replayed.result();
  assert.notDeepEqual(session.handshakeHash, original.server!.handshakeHash);
  // The attacker cannot make records for that session: the original session's are refused.
  assert.throws(() => session.channel!.open(record!), { code: "AuthenticationFailed" });
  // And message 1 never carries data: a hello whose first message has a payload is refused,
  // even from the holder of the secret.
  await run(client, server);
  const offered = store.take(
    "s",
    resumptionContext(defaultProvider(), { pattern: "NK", pins: [serverKey.publicKey] }),
  )!;
  const header = encodeHello("noise", "NNpsk0", { features: 0, ticket: offered.ticket });
  const hs = new HandshakeState({
    protocolName: "Noise_NNpsk0_25519_ChaChaPoly_SHA256",
    initiator: true,
    prologue: helloPrologue(header),
    psks: [offered.psk],
  });
  const early = hs.writeMessage(new TextEncoder().encode("0-RTT data"));
  const withData = new Uint8Array(header.length + early.length);
  withData.set(header);
  withData.set(early, header.length);
  await assert.rejects(new ServerHandshake(server).receive(withData), /carries a payload/);
  issuer.destroy();
});

Deno.test("resumption: an expired ticket is refused; a chain of resumptions keeps the first expiry", async () => {
  const time = clock();
  const issuer = new SessionTicketIssuer({ lifetimeMs: 60_000, now: time.now });
  const store = new SessionTicketStore({ now: time.now });
  const client = { serverKeys: [serverKey.publicKey], resumption: { store, name: "s" } };
  const server = { staticKey: serverKey, resumption: issuer };
  const full = await run(client, server);
  assert.equal(full.server?.ticket?.lifetime, 60_000);
  time.advance(40_000);
  const resumed = await run(client, server);
  assert.equal(resumed.client?.resumed, true);
  // The new ticket expires when the first one would have: resuming does not extend trust.
  assert.equal(resumed.server?.ticket?.lifetime, 20_000);
  time.advance(20_000);
  // The client's own clock also says it expired: it is not even offered.
  assert.equal(store.has("s"), false);
  const again = await run(client, server);
  assert.equal(again.client?.resumed, false);

  // The server refuses an expired ticket even when the client's clock says otherwise.
  const slowStore = new SessionTicketStore();
  const slow = { serverKeys: [serverKey.publicKey], resumption: { store: slowStore, name: "s" } };
  await run(slow, server);
  time.advance(60_000);
  const late = await run(slow, server);
  assert.match(message(late.serverError), /expired/);
  issuer.destroy();
});

Deno.test("resumption: key rotation: one rotation back is accepted, two are refused", async () => {
  const time = clock();
  const issuer = new SessionTicketIssuer({ lifetimeMs: 600_000, now: time.now });
  const store = new SessionTicketStore({ now: time.now });
  const client = { serverKeys: [serverKey.publicKey], resumption: { store, name: "s" } };
  const server = { staticKey: serverKey, resumption: issuer };
  await run(client, server);
  issuer.rotate();
  const oneBack = await run(client, server);
  assert.equal(oneBack.client?.resumed, true);
  // oneBack's new ticket is under the current key; two rotations retire it.
  issuer.rotate();
  issuer.rotate();
  const twoBack = await run(client, server);
  assert.match(message(twoBack.serverError), /key this server does not have/);

  // Scheduled rotation: a key is replaced after one period and erased after two, and a ticket
  // never outlives its key.
  const scheduled = new SessionTicketIssuer({
    lifetimeMs: 600_000,
    keyRotationMs: 100_000,
    now: time.now,
  });
  const issued = scheduled.issue({ psk: new Uint8Array(32), pattern: "NK" })!;
  assert.equal(issued.lifetimeMs, 200_000, "two rotation periods, less than the lifetime");
  time.advance(150_000);
  assert.equal(scheduled.open(issued.ticket, undefined).pattern, "NK");
  time.advance(49_999);
  assert.equal(scheduled.open(issued.ticket, undefined).pattern, "NK");
  time.advance(1);
  assert.throws(() => scheduled.open(issued.ticket, undefined), /does not have|expired/);
  scheduled.destroy();
  issuer.destroy();
});

Deno.test("resumption: a tampered ticket is refused, in the store or on the wire", async () => {
  const issuer = new SessionTicketIssuer();
  const server = { staticKey: serverKey, resumption: issuer };
  const issued = issuer.issue({ psk: new Uint8Array(32), pattern: "NK" })!;
  for (let i = 0; i < issued.ticket.length; i += 7) {
    const ticket = issued.ticket.slice();
    ticket[i]! ^= 0x01;
    assert.throws(() => issuer.open(ticket, undefined), { code: "HandshakeFailed" }, `byte ${i}`);
  }
  // On the wire: a flipped bit in the hello's ticket fails the handshake.
  const store = new SessionTicketStore();
  const client = { serverKeys: [serverKey.publicKey], resumption: { store, name: "s" } };
  await run(client, server);
  const outcome = await runDrivers(new ClientHandshake(client), new ServerHandshake(server), (
    from,
    index,
    payload,
  ) => {
    if (from !== "client" || index !== 0) return payload;
    const changed = payload.slice();
    changed[40]! ^= 0x80; // inside the ticket
    return changed;
  });
  assert.equal(code(outcome.serverError), "HandshakeFailed");
  issuer.destroy();
});

Deno.test("resumption: forward secrecy: the ticket key and the ticket do not open a recorded resumed session", async () => {
  const issuer = new SessionTicketIssuer();
  const store = new SessionTicketStore();
  const client = { serverKeys: [serverKey.publicKey], resumption: { store, name: "s" } };
  const server = { staticKey: serverKey, resumption: issuer };
  await run(client, server);
  const session = await run(client, server);
  const [record] = session.client!.channel!.sealData(new TextEncoder().encode("secret"));
  const hello = decodeHello(session.transcript[0]!.payload);
  // Later, the attacker gets the server's ticket keys: it opens the recorded ticket (what
  // issuer.open does with them) and has the psk.
  const { psk } = issuer.open(hello.params.ticket!, serverKey.publicKey);
  // The psk is right: the attacker reads the recorded first message with it...
  const responder = new HandshakeState({
    protocolName: "Noise_NNpsk0_25519_ChaChaPoly_SHA256",
    initiator: false,
    prologue: helloPrologue(hello.header),
    psks: [psk],
  });
  assert.deepEqual(responder.readMessage(hello.rest), new Uint8Array(0));
  // ...but the session keys also need the ephemeral DH, whose private keys are gone: the best
  // the attacker can do is its own ephemeral key, which derives other keys.
  responder.writeMessage(new Uint8Array(0));
  const [clientToServer] = responder.split();
  assert.throws(
    () => clientToServer.decryptWithAd(new Uint8Array(0), record!),
    { code: "AuthenticationFailed" },
  );
  // Without the psk it cannot even read the first message.
  const blind = new HandshakeState({
    protocolName: "Noise_NNpsk0_25519_ChaChaPoly_SHA256",
    initiator: false,
    prologue: helloPrologue(hello.header),
    psks: [new Uint8Array(32)],
  });
  assert.throws(() => blind.readMessage(hello.rest), { code: "HandshakeFailed" });
  issuer.destroy();
});

Deno.test("resumption: a ticket is offered only under the trust settings it was obtained with", async () => {
  const issuer = new SessionTicketIssuer();
  const store = new SessionTicketStore();
  const server = { staticKey: serverKey, resumption: issuer };
  await run({ serverKeys: [serverKey.publicKey], resumption: { store, name: "s" } }, server);
  // Another client sharing the store pins other keys: it must not inherit "pinned".
  const other = await run({
    serverKeys: [serverKey.publicKey, generateKeyPair().publicKey],
    resumption: { store, name: "s" },
  }, server);
  assert.equal(other.client?.resumed, false);
  issuer.destroy();
});

// ---------------------------------------------------------------------------------------------
// Pieces

Deno.test("resumption: the ticket message's bytes, and its opcode is reserved", () => {
  const bytes = encodeMessage({ type: "ticket", lifetime: 300, ticket: new Uint8Array([7, 8]) });
  assert.deepEqual([...bytes], [0x14, 0xac, 0x02, 0x02, 7, 8]);
  assert.deepEqual(decodeMessage(bytes), {
    type: "ticket",
    lifetime: 300,
    ticket: new Uint8Array([7, 8]),
  });
  assert.equal(
    opcodeOf({ type: "ticket", lifetime: 1, ticket: new Uint8Array(1) }),
    "SESSION_TICKET",
  );
  assert.throws(
    () => encodeMessage({ type: "custom", command: "SESSION_TICKET", payload: new Uint8Array() }),
    TypeError,
  );
  assert.throws(() =>
    encodeMessage({
      type: "response",
      id: 1,
      message: { type: "ticket", lifetime: 1, ticket: new Uint8Array(1) },
    }), TypeError);
});

Deno.test("resumption: issuer and store options are checked; the store is bounded", () => {
  assert.throws(
    () => new SessionTicketIssuer({ lifetimeMs: MAX_TICKET_LIFETIME_MS + 1 }),
    RangeError,
  );
  assert.throws(() => new SessionTicketIssuer({ lifetimeMs: 999 }), RangeError);
  assert.throws(
    () => new SessionTicketIssuer({ lifetimeMs: 60_000, keyRotationMs: 60_001 }),
    RangeError,
  );
  assert.throws(() => new SessionTicketStore({ maxEntries: 0 }), RangeError);
  assert.throws(
    () =>
      new ClientHandshake({
        encryption: false,
        resumption: { store: new SessionTicketStore(), name: "s" },
      }),
    TypeError,
  );
  const store = new SessionTicketStore({ maxEntries: 2 });
  const psks: Uint8Array[] = [];
  for (const name of ["a", "b", "c"]) {
    const psk = new Uint8Array(32).fill(1);
    psks.push(psk);
    store.set(name, {
      ticket: new Uint8Array(1),
      psk,
      context: new Uint8Array(32),
      pattern: "NK",
      pinned: true,
      expiresAt: Date.now() + 1000,
    });
  }
  assert.equal(store.size, 2);
  assert.equal(store.has("a"), false);
  assert.deepEqual(psks[0], new Uint8Array(32), "the dropped ticket's secret is erased");
  const taken = store.take("b", new Uint8Array(32));
  assert.ok(taken);
  assert.equal(store.take("b", new Uint8Array(32)), undefined, "single use");
  store.clear();
  assert.deepEqual(psks[2], new Uint8Array(32));
});

Deno.test("resumption: configuration keys, their rule and their environment variables", async () => {
  const config = createConfig({});
  assert.equal(config.security.resumption, false);
  assert.equal(config.security.ticketLifetimeMs, 3_600_000);
  config.security.ticketLifetimeMs = 60_000;
  assert.deepEqual(validateConfig(config), [
    'security.ticket_key_rotation_ms "3600000" must not exceed security.ticket_lifetime_ms "60000": a ticket never outlives its key',
  ]);
  config.security.ticketLifetimeMs = 8 * 24 * 3600 * 1000;
  assert.equal(validateConfig(config).length, 1);
  const loaded = await loadConfig({
    env: {
      NETWORK_PROTOCOL_SECURITY_RESUMPTION: "true",
      NETWORK_PROTOCOL_SECURITY_TICKET_LIFETIME_MS: "120000",
      NETWORK_PROTOCOL_SECURITY_TICKET_KEY_ROTATION_MS: "60000",
    },
  });
  assert.equal(loaded.security.resumption, true);
  assert.equal(loaded.security.ticketLifetimeMs, 120_000);
  assert.equal(loaded.security.ticketKeyRotationMs, 60_000);
});

// ---------------------------------------------------------------------------------------------
// Service: serve() and connect() over the in-memory transport

const RESUMING = { security: { resumption: true } } as const;

Deno.test("resumption: a client reconnects with a resumed session; a restarted server makes it fall back once", async () => {
  const transport = new MemoryTransport();
  const dispatcher = registerStandardHandlers(new Dispatcher());
  let server = await serve({
    address: "memory:7101",
    transport,
    config: RESUMING,
    security: { staticKey: serverKey },
  }, dispatcher);
  const client = await connect({
    address: "memory:7101",
    transport,
    config: {
      ...RESUMING,
      client: { reconnectDelay: 10, maxReconnectDelay: 20, maxReconnectAttempts: 20 },
    },
    security: { serverKeys: [serverKey.publicKey] },
  });
  try {
    assert.equal(client.connection?.session.resumed, false);
    assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
    // The server drops the connection: the client reconnects and resumes.
    const first = client.connection!;
    for (const connection of server.connections) connection.abort();
    await waitFor(() => client.connection !== undefined && client.connection !== first);
    const second = client.connection!;
    assert.equal(second.session.resumed, true);
    assert.equal(second.session.pattern, "NK");
    assert.deepEqual(second.remoteStaticKey, serverKey.publicKey);
    assert.deepEqual(await client.request({ type: "echo", text: "x" }), {
      type: "echo",
      text: "x",
    });

    // The server restarts (new ticket keys): the ticket is refused, the client falls back to a
    // full handshake at once (the same reconnection attempt).
    await waitFor(() => [...server.connections].length === 1);
    await server.shutdown(100);
    server = await serve({
      address: "memory:7101",
      transport,
      config: RESUMING,
      security: { staticKey: serverKey },
    }, dispatcher);
    await waitFor(() => client.connection !== undefined && client.connection !== second);
    assert.equal(client.connection!.session.resumed, false);
    assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
  } finally {
    await client.close();
    await server.shutdown(100);
  }
});

Deno.test("resumption: connect() resumes with a shared store; a server with resumption off refuses and the client falls back", async () => {
  const transport = new MemoryTransport();
  const dispatcher = registerStandardHandlers(new Dispatcher());
  const store = new SessionTicketStore();
  const options = {
    address: "memory:7102",
    transport,
    security: {
      serverKeys: [serverKey.publicKey],
      resumption: { store, name: "memory:7102" },
    },
  };
  let server = await serve(
    { address: "memory:7102", transport, config: RESUMING, security: { staticKey: serverKey } },
    dispatcher,
  );
  try {
    {
      await using client = await connect(options);
      assert.equal(client.connection?.session.resumed, false);
      await client.request({ type: "ping" }); // the ticket arrived before the answer
      assert.equal(store.size, 1);
    }
    {
      await using client = await connect(options);
      assert.equal(client.connection?.session.resumed, true);
    }
    await server.shutdown(100);
    server = await serve(
      { address: "memory:7102", transport, security: { staticKey: serverKey } },
      dispatcher,
    );
    assert.equal(store.size, 1);
    {
      await using client = await connect(options);
      assert.equal(client.connection?.session.resumed, false, "fell back to a full handshake");
      assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
      assert.equal(store.size, 0, "the refused ticket is gone, and this server issues none");
    }
  } finally {
    await server.shutdown(100);
  }
});

Deno.test("resumption: a client with resumption off stores nothing; an unannounced ticket is a violation, not a message", async () => {
  const transport = new MemoryTransport();
  await using server = await serve({
    address: "memory:7103",
    transport,
    config: RESUMING,
    security: { staticKey: serverKey },
  }, registerStandardHandlers(new Dispatcher()));
  await using client = await connect({
    address: "memory:7103",
    transport,
    security: { serverKeys: [serverKey.publicKey] },
  });
  assert.equal(client.connection?.session.ticketReceiver, undefined);
  for (const connection of server.connections) {
    connection.send({ type: "ticket", lifetime: 1000, ticket: new Uint8Array(10) });
    connection.send({ type: "echo", text: "after" });
  }
  assert.deepEqual(await client.receive(), { type: "echo", text: "after" });
  assert.equal(client.connection?.isClosed, false);
});

Deno.test("resumption: examples/resumption.ts resumes its second and third connections", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "examples/resumption.ts"],
    cwd: new URL("..", import.meta.url),
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  assert.match(out, /connection 1: pattern NK, resumed false/);
  assert.match(out, /connection 2: pattern NK, resumed true/);
  assert.match(out, /connection 3: pattern NK, resumed true/);
});
