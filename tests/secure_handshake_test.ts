import assert from "node:assert/strict";
import { ProtocolError } from "../src/errors.ts";
import { ClientHandshake, ServerHandshake } from "../src/secure/handshake.ts";
import {
  clientHandshake,
  performHandshake,
  serverHandshake,
} from "../src/secure/handshake_runner.ts";
import {
  decodeHello,
  decodeParams,
  encodeHello,
  encodeParams,
  helloPrologue,
  PATTERN_IDS,
  type PatternName,
} from "../src/secure/hello.ts";
import { generateKeyPair } from "../src/secure/keys.ts";
import { KnownServersFile, MemoryKnownServers } from "../src/secure/known_servers.ts";
import { HandshakeState } from "../src/secure/noise/handshake_state.ts";
import type { ClientSecurityOptions, ServerSecurityOptions } from "../src/secure/policy.ts";
import { connect, handshake, pipe, runDrivers } from "./_secure_helpers.ts";

const serverKey = generateKeyPair();
const clientKey = generateKeyPair();
const otherKey = generateKeyPair();
const psk = crypto.getRandomValues(new Uint8Array(32));

function code(error: unknown): string | undefined {
  return error instanceof ProtocolError ? error.code : undefined;
}

async function assertTraffic(
  client: { channel: import("../src/secure/channel.ts").SecureChannel | null },
  server: { channel: import("../src/secure/channel.ts").SecureChannel | null },
): Promise<void> {
  const c = client.channel!;
  const s = server.channel!;
  for (let i = 0; i < 3; i++) {
    const up = s.open(c.sealData(new Uint8Array([i, 1]))[0]!);
    assert.deepEqual(up.type === "data" ? [...up.body] : up, [i, 1]);
    const down = c.open(s.sealData(new Uint8Array([i, 2]))[0]!);
    assert.deepEqual(down.type === "data" ? [...down.body] : down, [i, 2]);
  }
  await Promise.resolve();
}

const cases: {
  pattern: PatternName;
  client: ClientSecurityOptions;
  server: ServerSecurityOptions;
  clientPinned: boolean;
  serverPinned: boolean;
  clientStatic: boolean;
}[] = [
  {
    pattern: "NN",
    client: { pattern: "NN" },
    server: { accept: ["NN"] },
    clientPinned: false,
    serverPinned: false,
    clientStatic: false,
  },
  {
    pattern: "NK",
    client: { serverKeys: [serverKey.publicKey] },
    server: { staticKey: serverKey },
    clientPinned: true,
    serverPinned: false,
    clientStatic: false,
  },
  {
    pattern: "XX",
    client: { serverKeys: [otherKey.publicKey, serverKey.publicKey], staticKey: clientKey },
    server: { staticKey: serverKey, clientKeys: [clientKey.publicKey] },
    clientPinned: true,
    serverPinned: true,
    clientStatic: true,
  },
  {
    pattern: "IK",
    client: { pattern: "IK", serverKeys: [serverKey.publicKey], staticKey: clientKey },
    server: { staticKey: serverKey, authorize: () => true },
    clientPinned: true,
    serverPinned: true,
    clientStatic: true,
  },
  {
    pattern: "KK",
    client: { pattern: "KK", serverKeys: [serverKey.publicKey], staticKey: clientKey },
    server: { staticKey: serverKey, clientKeys: [clientKey.publicKey], accept: ["KK"] },
    clientPinned: true,
    serverPinned: true,
    clientStatic: true,
  },
  {
    pattern: "NNpsk0",
    client: { psk },
    server: { psk },
    clientPinned: false,
    serverPinned: false,
    clientStatic: false,
  },
  {
    pattern: "XXpsk3",
    client: { psk, serverKeys: [serverKey.publicKey, otherKey.publicKey] },
    server: { psk, staticKey: serverKey },
    clientPinned: true,
    serverPinned: false,
    clientStatic: true,
  },
  {
    pattern: "IKpsk2",
    client: { pattern: "IKpsk2", psk, serverKeys: [serverKey.publicKey], staticKey: clientKey },
    server: { psk, staticKey: serverKey, clientKeys: [clientKey.publicKey] },
    clientPinned: true,
    serverPinned: true,
    clientStatic: true,
  },
];

for (const c of cases) {
  Deno.test(`handshake: ${c.pattern} completes with matching hashes and working records`, async () => {
    assert.equal(new ClientHandshake(c.client).pattern, c.pattern);
    const { client, server } = await connect(c.client, c.server);
    assert.equal(client.pattern, c.pattern);
    assert.equal(server.pattern, c.pattern);
    assert.equal(client.handshakeHash?.length, 32);
    assert.deepEqual(client.handshakeHash, server.handshakeHash);
    assert.equal(client.pinned, c.clientPinned);
    assert.equal(server.pinned, c.serverPinned);
    if (c.pattern.startsWith("NN")) assert.equal(client.remoteStaticKey, undefined);
    else assert.deepEqual(client.remoteStaticKey, serverKey.publicKey);
    if (c.clientStatic) {
      assert.equal(server.remoteStaticKey?.length, 32);
      if (c.client.staticKey) assert.deepEqual(server.remoteStaticKey, clientKey.publicKey);
    } else {
      assert.equal(server.remoteStaticKey, undefined);
    }
    await assertTraffic(client, server);
  });
}

Deno.test("handshake: message sizes and the hello bytes are as documented", async () => {
  const outcome = await handshake(
    { staticKey: clientKey, features: 0x3, maxMessageSize: 65536 },
    { staticKey: serverKey, features: 0x1 },
  );
  const sizes = outcome.transcript.map((m) => `${m.from}:${m.payload.length}`);
  // hello 6 + params 14, then XX: msg1 32, msg2 32+48+(7+16), msg3 48+16.
  assert.deepEqual(sizes, ["client:52", "server:103", "client:64"]);
  const first = outcome.transcript[0]!.payload;
  assert.deepEqual(
    [...first.subarray(0, 20)],
    [1, 1, 3, 1, 0, 14, 1, 0, 4, 0, 0, 0, 3, 2, 0, 4, 0, 1, 0, 0],
  );
  const hello = decodeHello(first);
  assert.equal(hello.pattern, "XX");
  assert.deepEqual(hello.params, { features: 3, maxMessageSize: 65536 });
  assert.equal(hello.rest.length, 32);
});

Deno.test("handshake: features are negotiated as the intersection", async () => {
  const pairs: [number, number, number][] = [
    [0, 3, 0],
    [1, 3, 1],
    [3, 2, 2],
    [3, 3, 3],
    [1, 2, 0],
    // 0x4, multiplexing, like the compression bits.
    [7, 4, 4],
    [3, 7, 3],
  ];
  for (const [cf, sf, expected] of pairs) {
    const { client, server } = await connect(
      { serverKeys: [serverKey.publicKey], features: cf },
      { staticKey: serverKey, features: sf },
    );
    assert.equal(client.features, expected);
    assert.equal(server.features, expected);
  }
  // Bits this version does not know are refused before anything is sent.
  assert.throws(() => new ClientHandshake({ features: 0x8 }), RangeError);
});

Deno.test("handshake: max message sizes are announced to the peer", async () => {
  const { client, server } = await connect(
    { serverKeys: [serverKey.publicKey], maxMessageSize: 1000 },
    { staticKey: serverKey, maxMessageSize: 2000 },
  );
  assert.equal(client.remoteMaxMessageSize, 2000);
  assert.equal(server.remoteMaxMessageSize, 1000);
  const other = await connect({ serverKeys: [serverKey.publicKey] }, { staticKey: serverKey });
  assert.equal(other.client.remoteMaxMessageSize, undefined);
});

Deno.test("handshake: plaintext mode needs both sides to disable encryption", async () => {
  const { client, server } = await connect(
    { encryption: false, features: 3 },
    { encryption: false, features: 2 },
  );
  assert.equal(client.channel, null);
  assert.equal(server.channel, null);
  assert.equal(client.pattern, "plaintext");
  assert.equal(client.features, 2);
  assert.equal(server.features, 2);
  assert.equal(client.handshakeHash, undefined);
  // A plaintext client against a Noise server, and the reverse: refused, no fallback.
  const a = await handshake({ encryption: false }, { staticKey: serverKey });
  assert.equal(code(a.serverError), "PolicyViolation");
  assert.equal(a.client, undefined);
  const b = await handshake({ serverKeys: [serverKey.publicKey] }, { encryption: false });
  assert.equal(code(b.serverError), "PolicyViolation");
  assert.equal(b.client, undefined);
  // Security options with encryption disabled are refused, never ignored.
  assert.throws(
    () => new ClientHandshake({ encryption: false, serverKeys: [serverKey.publicKey] }),
    TypeError,
  );
  assert.throws(() => new ServerHandshake({ encryption: false, staticKey: serverKey }), TypeError);
});

Deno.test("handshake: no fallback: a server that accepts only XX refuses NN, NK and plaintext", async () => {
  const server: ServerSecurityOptions = { staticKey: serverKey, accept: ["XX"] };
  for (const client of [{ pattern: "NN" as const }, { serverKeys: [serverKey.publicKey] }]) {
    const outcome = await handshake(client, server);
    assert.equal(code(outcome.serverError), "PolicyViolation");
    assert.equal(outcome.transcript.filter((m) => m.from === "server").length, 0);
  }
  // A plaintext hello forged by an attacker in front of an XX server.
  const forged = encodeHello("plaintext", undefined, { features: 0 });
  await assert.rejects(new ServerHandshake(server).receive(forged), { code: "PolicyViolation" });
});

Deno.test("handshake: no fallback: a client expecting NK refuses anything else", async () => {
  // A plaintext server hello.
  const client = new ClientHandshake({ serverKeys: [serverKey.publicKey] });
  client.start();
  await assert.rejects(
    client.receive(encodeHello("plaintext", undefined, { features: 0 })),
    { code: "HandshakeFailed" },
  );
  // An XX server's second message (from a handshake with another client).
  const xx = await handshake({ staticKey: clientKey }, { staticKey: serverKey, accept: ["XX"] });
  const nk = new ClientHandshake({ serverKeys: [serverKey.publicKey] });
  nk.start();
  await assert.rejects(nk.receive(xx.transcript[1]!.payload), { code: "HandshakeFailed" });
  // An NN server's reply.
  const nn = await handshake({ pattern: "NN" }, { accept: ["NN"] });
  const nk2 = new ClientHandshake({ serverKeys: [serverKey.publicKey] });
  nk2.start();
  await assert.rejects(nk2.receive(nn.transcript[1]!.payload), { code: "HandshakeFailed" });
});

Deno.test("handshake: NN is used only when named explicitly on both sides", async () => {
  assert.equal(new ClientHandshake({}).pattern, "XX");
  assert.throws(() => new ServerHandshake({}), TypeError);
  assert.ok(!new ServerHandshake({ staticKey: serverKey }).accepted.includes("NN"));
  const outcome = await handshake({ pattern: "NN" }, { staticKey: serverKey });
  assert.equal(code(outcome.serverError), "PolicyViolation");
});

Deno.test("handshake: server allow-list accepts listed keys and rejects others", async () => {
  const server: ServerSecurityOptions = {
    staticKey: serverKey,
    clientKeys: [otherKey.publicKey, clientKey.publicKey],
  };
  const ok = await connect({ staticKey: clientKey }, server);
  assert.ok(ok.server.pinned);
  const stranger = await handshake({ staticKey: generateKeyPair() }, server);
  assert.equal(code(stranger.serverError), "HandshakeFailed");
  assert.equal(stranger.server, undefined);
  // A client without a static key gets a random one: also rejected.
  const anonymous = await handshake({}, server);
  assert.equal(code(anonymous.serverError), "HandshakeFailed");
  // NK cannot authenticate a client: a mutual-auth server refuses it.
  const nk = await handshake({ serverKeys: [serverKey.publicKey] }, server);
  assert.equal(code(nk.serverError), "PolicyViolation");
  // IK with an unlisted key is rejected before the server answers.
  const ik = await handshake(
    { pattern: "IK", serverKeys: [serverKey.publicKey], staticKey: generateKeyPair() },
    server,
  );
  assert.equal(code(ik.serverError), "HandshakeFailed");
  assert.equal(ik.transcript.filter((m) => m.from === "server").length, 0);
});

Deno.test("handshake: authorize() accepts or rejects, sync or async", async () => {
  const seen: Uint8Array[] = [];
  const allow = (key: Uint8Array): boolean => {
    seen.push(key);
    return key[0] === clientKey.publicKey[0];
  };
  const ok = await connect({ staticKey: clientKey }, { staticKey: serverKey, authorize: allow });
  assert.ok(ok.server.pinned);
  assert.deepEqual(seen[0], clientKey.publicKey);
  const deny = await handshake(
    { staticKey: clientKey },
    { staticKey: serverKey, authorize: () => Promise.resolve(false) },
  );
  assert.equal(code(deny.serverError), "HandshakeFailed");
  const later = await connect(
    { staticKey: clientKey },
    {
      staticKey: serverKey,
      authorize: async () => {
        await new Promise((r) => setTimeout(r, 5));
        return true;
      },
    },
  );
  assert.ok(later.server.pinned);
  const throws = await handshake(
    { staticKey: clientKey },
    {
      staticKey: serverKey,
      authorize: () => {
        throw new Error("database down");
      },
    },
  );
  assert.equal(code(throws.serverError), "HandshakeFailed");
  assert.equal((throws.serverError as Error).cause instanceof Error, true);
  // Truthy values other than true do not admit.
  const truthy = await handshake(
    { staticKey: clientKey },
    { staticKey: serverKey, authorize: (() => 1) as unknown as () => boolean },
  );
  assert.equal(code(truthy.serverError), "HandshakeFailed");
  // Both set: the key must be listed AND authorized.
  const both = await handshake(
    { staticKey: clientKey },
    { staticKey: serverKey, clientKeys: [clientKey.publicKey], authorize: () => false },
  );
  assert.equal(code(both.serverError), "HandshakeFailed");
});

Deno.test("handshake: client pins: a server key outside the pin set fails", async () => {
  const impostor = generateKeyPair();
  const xx = await handshake(
    { serverKeys: [serverKey.publicKey, otherKey.publicKey], staticKey: clientKey },
    { staticKey: impostor },
  );
  assert.equal(code(xx.clientError), "HandshakeFailed");
  assert.match((xx.clientError as Error).message, /matches none of the "2" pinned keys/);
  // No third message was sent: the client stops before revealing its static key.
  assert.equal(xx.transcript.filter((m) => m.from === "client").length, 1);
  const nk = await handshake({ serverKeys: [serverKey.publicKey] }, { staticKey: impostor });
  assert.equal(code(nk.serverError), "HandshakeFailed");
});

Deno.test("handshake: an unpinned XX client connects but reports pinned: false", async () => {
  const { client, server } = await connect({}, { staticKey: serverKey });
  assert.equal(client.pattern, "XX");
  assert.equal(client.pinned, false);
  assert.deepEqual(client.remoteStaticKey, serverKey.publicKey);
  assert.deepEqual(client.handshakeHash, server.handshakeHash);
});

Deno.test("handshake: trust on first use remembers the key and then requires it", async () => {
  const store = new MemoryKnownServers();
  const tofu = { knownServers: { store, name: "db:9000" } };
  const first = await connect(tofu, { staticKey: serverKey });
  assert.equal(first.client.pinned, false);
  assert.deepEqual(store.get("db:9000"), serverKey.publicKey);
  const second = await connect(tofu, { staticKey: serverKey });
  assert.equal(second.client.pinned, true);
  const changed = await handshake(tofu, { staticKey: otherKey });
  assert.equal(code(changed.clientError), "HandshakeFailed");
  assert.match((changed.clientError as Error).message, /is known for it/);
  assert.throws(
    () => new ClientHandshake({ ...tofu, serverKeys: [serverKey.publicKey] }),
    TypeError,
  );
});

Deno.test("handshake: trust on first use with a known-servers file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/known_servers`;
    const tofu = { knownServers: { store: new KnownServersFile(path), name: "db:9000" } };
    assert.equal((await connect(tofu, { staticKey: serverKey })).client.pinned, false);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.match(await Deno.readTextFile(path), /^db:9000 [A-Za-z0-9_-]{43}$/m);
    assert.equal((await connect(tofu, { staticKey: serverKey })).client.pinned, true);
    const changed = await handshake(tofu, { staticKey: otherKey });
    assert.equal(code(changed.clientError), "HandshakeFailed");
    await Deno.writeTextFile(path, "broken line with three\n");
    const broken = await handshake(tofu, { staticKey: serverKey });
    assert.equal(code(broken.clientError), "HandshakeFailed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("handshake: a psk mismatch fails", async () => {
  const wrong = crypto.getRandomValues(new Uint8Array(32));
  const runs: [ClientSecurityOptions, ServerSecurityOptions][] = [
    [{ psk: wrong }, { psk }],
    [{ psk: wrong, staticKey: clientKey }, { psk, staticKey: serverKey }],
    [
      { pattern: "IKpsk2", psk: wrong, serverKeys: [serverKey.publicKey], staticKey: clientKey },
      { psk, staticKey: serverKey },
    ],
  ];
  for (const [clientOptions, serverOptions] of runs) {
    const outcome = await handshake(clientOptions, serverOptions);
    const failed = code(outcome.clientError) ?? code(outcome.serverError);
    assert.equal(failed, "HandshakeFailed");
    assert.ok(outcome.client === undefined || outcome.server === undefined);
  }
  // A psk server refuses non-psk patterns; a psk is never silently ignored.
  const nopsk = await handshake({ serverKeys: [serverKey.publicKey] }, {
    psk,
    staticKey: serverKey,
  });
  assert.equal(code(nopsk.serverError), "PolicyViolation");
  assert.throws(() => new ClientHandshake({ pattern: "XX", psk }), TypeError);
  assert.throws(
    () => new ServerHandshake({ psk, staticKey: serverKey, accept: ["XX"] }),
    TypeError,
  );
  assert.throws(() => new ClientHandshake({ psk: new Uint8Array(16) }), TypeError);
});

Deno.test("handshake: tampering with the mode, pattern or parameters of the hello fails", async () => {
  // The server accepts both patterns; an attacker rewrites the client's choice or features.
  const server: ServerSecurityOptions = { staticKey: serverKey, accept: ["NK", "XX", "IK"] };
  const rewrites: [string, ClientSecurityOptions, (hello: Uint8Array) => void][] = [
    ["XX -> NK", { staticKey: clientKey }, (h) => (h[2] = PATTERN_IDS.NK)],
    ["NK -> XX", { serverKeys: [serverKey.publicKey] }, (h) => (h[2] = PATTERN_IDS.XX)],
    ["features", { serverKeys: [serverKey.publicKey], features: 3 }, (h) => (h[12] = 1)],
    ["features XX", { staticKey: clientKey, features: 0 }, (h) => (h[12] = 3)],
  ];
  for (const [name, client, rewrite] of rewrites) {
    const outcome = await handshake(client, server, (from, index, payload) => {
      if (from !== "client" || index !== 0) return payload;
      const copy = payload.slice();
      rewrite(copy);
      return copy;
    });
    const failed = code(outcome.clientError) ?? code(outcome.serverError);
    assert.equal(failed, "HandshakeFailed", name);
    assert.equal(outcome.client, undefined, name);
  }
  // The prologue is the label and the hello up to its parameters.
  const header = encodeHello("noise", "XX", { features: 1 });
  const prologue = helloPrologue(header);
  assert.deepEqual([...prologue.subarray(0, 7)], [0x6e, 0x70, 0x72, 0x6f, 0x2f, 0x32, 0]);
  assert.deepEqual(prologue.subarray(7), header);
});

Deno.test("handshake: a first message with a payload is refused (no data in msg1)", async () => {
  const header = encodeHello("noise", "NK", { features: 0 });
  const hs = new HandshakeState({
    protocolName: "Noise_NK_25519_ChaChaPoly_SHA256",
    initiator: true,
    prologue: helloPrologue(header),
    rs: serverKey.publicKey,
  });
  const message = hs.writeMessage(new TextEncoder().encode("GET /secret"));
  const payload = new Uint8Array([...header, ...message]);
  await assert.rejects(new ServerHandshake({ staticKey: serverKey }).receive(payload), {
    code: "HandshakeFailed",
  });
});

Deno.test("handshake: malformed hellos and parameters are refused", async () => {
  const server = (): ServerHandshake => new ServerHandshake({ staticKey: serverKey });
  const bad: [string, Uint8Array, string][] = [
    ["empty", new Uint8Array(0), "HandshakeFailed"],
    ["short", new Uint8Array([1, 1, 3]), "HandshakeFailed"],
    ["version", new Uint8Array([2, 1, 3, 1, 0, 0]), "PolicyViolation"],
    ["mode", new Uint8Array([1, 7, 3, 1, 0, 0]), "PolicyViolation"],
    ["pattern", new Uint8Array([1, 1, 0x99, 1, 0, 0]), "PolicyViolation"],
    ["suite", new Uint8Array([1, 1, 3, 2, 0, 0]), "PolicyViolation"],
    ["plaintext with pattern", new Uint8Array([1, 0, 3, 0, 0, 0]), "PolicyViolation"],
    ["params overrun", new Uint8Array([1, 1, 3, 1, 0, 9, 1, 0, 4]), "HandshakeFailed"],
  ];
  for (const [name, payload, expected] of bad) {
    await assert.rejects(server().receive(payload), { code: expected }, name);
  }
  assert.throws(() => decodeParams(new Uint8Array([0x81, 0, 0])), { code: "HandshakeFailed" });
  assert.throws(() => decodeParams(new Uint8Array([1, 0, 3, 0, 0, 0])), {
    code: "HandshakeFailed",
  });
  assert.throws(
    () => decodeParams(new Uint8Array([1, 0, 4, 0, 0, 0, 1, 1, 0, 4, 0, 0, 0, 1])),
    { code: "HandshakeFailed" },
  );
  assert.throws(() => decodeParams(new Uint8Array([1, 0])), { code: "HandshakeFailed" });
  // Unknown non-critical parameters are skipped.
  assert.deepEqual(decodeParams(new Uint8Array([0x33, 0, 2, 9, 9, 1, 0, 4, 0, 0, 0, 2])), {
    features: 2,
  });
  assert.deepEqual(decodeParams(encodeParams({ features: 1, maxMessageSize: 7 })), {
    features: 1,
    maxMessageSize: 7,
  });
  // An oversized handshake packet is refused before it is parsed.
  await assert.rejects(server().receive(new Uint8Array(70_000)), { code: "HandshakeFailed" });
});

Deno.test("handshake: drivers are single-use state machines", async () => {
  const client = new ClientHandshake({ serverKeys: [serverKey.publicKey] });
  await assert.rejects(client.receive(new Uint8Array(48)), { code: "HandshakeFailed" });
  assert.throws(() => client.start(), { code: "HandshakeFailed" });
  const fresh = new ClientHandshake({ serverKeys: [serverKey.publicKey] });
  fresh.start();
  assert.throws(() => fresh.start(), { code: "HandshakeFailed" });
  assert.throws(() => fresh.result(), { code: "HandshakeFailed" });
  const server = new ServerHandshake({ staticKey: serverKey });
  await assert.rejects(server.receive(new Uint8Array(3)), { code: "HandshakeFailed" });
  await assert.rejects(server.receive(new Uint8Array(3)), { code: "HandshakeFailed" });
  // A completed driver refuses more input.
  const a = new ClientHandshake({ serverKeys: [serverKey.publicKey] });
  const b = new ServerHandshake({ staticKey: serverKey });
  const outcome = await runDrivers(a, b);
  assert.ok(outcome.client && outcome.server);
  await assert.rejects(b.receive(outcome.transcript[0]!.payload), { code: "HandshakeFailed" });
});

Deno.test("handshake: options that cannot be enforced are refused", () => {
  const pub = serverKey.publicKey;
  const invalid: (() => unknown)[] = [
    () => new ClientHandshake({ pattern: "NK" }),
    () => new ClientHandshake({ pattern: "NK", serverKeys: [pub, pub] }),
    () => new ClientHandshake({ pattern: "NK", serverKeys: [pub], staticKey: clientKey }),
    () => new ClientHandshake({ pattern: "NN", serverKeys: [pub] }),
    () => new ClientHandshake({ pattern: "IK", serverKeys: [pub] }),
    () => new ClientHandshake({ pattern: "KK", serverKeys: [pub] }),
    () => new ClientHandshake({ pattern: "NNpsk0" }),
    () => new ClientHandshake({ serverKeys: [new Uint8Array(31)] }),
    () => new ClientHandshake({ pattern: "XY" as PatternName }),
    () => new ClientHandshake({ handshakeTimeoutMs: 0 }),
    () => new ServerHandshake({ accept: ["NK"] }),
    () => new ServerHandshake({ accept: [] }),
    () => new ServerHandshake({ staticKey: serverKey, accept: ["NN"], clientKeys: [pub] }),
    () => new ServerHandshake({ staticKey: serverKey, accept: ["NK"], authorize: () => true }),
    () => new ServerHandshake({ staticKey: serverKey, accept: ["KK"] }),
    () => new ServerHandshake({ staticKey: serverKey, accept: ["NNpsk0"] }),
    () => new ServerHandshake({ staticKey: { publicKey: pub, privateKey: new Uint8Array(1) } }),
    () => new ServerHandshake({ psk, clientKeys: [pub] }),
  ];
  for (const [i, make] of invalid.entries()) {
    assert.throws(
      make,
      (error: unknown) => error instanceof TypeError || error instanceof RangeError,
      `case ${i}`,
    );
  }
  // Defaults: NK and XX and IK with a key; XX and IK with mutual auth; psk patterns with a psk.
  assert.deepEqual(new ServerHandshake({ staticKey: serverKey }).accepted, ["NK", "XX", "IK"]);
  assert.deepEqual(
    new ServerHandshake({ staticKey: serverKey, authorize: () => true }).accepted,
    ["XX", "IK"],
  );
  assert.deepEqual(new ServerHandshake({ staticKey: serverKey, psk }).accepted, [
    "XXpsk3",
    "IKpsk2",
  ]);
  assert.deepEqual(new ServerHandshake({ psk }).accepted, ["NNpsk0"]);
  // Pattern choice on the client.
  assert.equal(new ClientHandshake({ serverKeys: [pub] }).pattern, "NK");
  assert.equal(new ClientHandshake({ serverKeys: [pub, pub] }).pattern, "XX");
  assert.equal(new ClientHandshake({ serverKeys: [pub], staticKey: clientKey }).pattern, "XX");
  assert.equal(new ClientHandshake({ psk }).pattern, "NNpsk0");
  assert.equal(new ClientHandshake({ psk, serverKeys: [pub] }).pattern, "XXpsk3");
  assert.equal(new ClientHandshake({ encryption: false }).pattern, "plaintext");
});

Deno.test("handshake runner: both sides over an in-memory pipe", async () => {
  const [a, b] = pipe();
  const [client, server] = await Promise.all([
    clientHandshake(a, { serverKeys: [serverKey.publicKey] }),
    serverHandshake(b, { staticKey: serverKey }),
  ]);
  assert.deepEqual(client.handshakeHash, server.handshakeHash);
  assert.equal(a.written.length, 1);
  assert.equal(b.written.length, 1);
  await assertTraffic(client, server);
  const [c, d] = pipe();
  const xx = await Promise.all([
    performHandshake(c, new ClientHandshake({ staticKey: clientKey })),
    performHandshake(
      d,
      new ServerHandshake({ staticKey: serverKey, clientKeys: [clientKey.publicKey] }),
    ),
  ]);
  assert.equal(c.written.length, 2);
  assert.ok(xx[1].pinned);
});

Deno.test("handshake runner: a silent server times out", async () => {
  const [a] = pipe();
  const started = performance.now();
  await assert.rejects(
    clientHandshake(a, { serverKeys: [serverKey.publicKey], handshakeTimeoutMs: 50 }),
    (error: unknown) => {
      assert.equal(code(error), "Timeout");
      assert.match((error as Error).message, /"50" ms/);
      return true;
    },
  );
  assert.ok(performance.now() - started >= 45);
  // A client that sends nothing: the server times out too.
  const [, b] = pipe();
  await assert.rejects(serverHandshake(b, { staticKey: serverKey, handshakeTimeoutMs: 30 }), {
    code: "Timeout",
  });
  // A slow authorize() counts against the time limit.
  const [c, d] = pipe();
  let release: () => void = () => {};
  const slow = new Promise<boolean>((resolve) => (release = () => resolve(true)));
  const results = await Promise.allSettled([
    clientHandshake(c, { staticKey: clientKey, handshakeTimeoutMs: 200 }),
    serverHandshake(d, { staticKey: serverKey, authorize: () => slow, handshakeTimeoutMs: 40 }),
  ]);
  release();
  assert.equal(results[1].status, "rejected");
  assert.equal(code((results[1] as PromiseRejectedResult).reason), "Timeout");
  assert.equal(results[0].status, "fulfilled"); // XX: the client is done after its third message
});

Deno.test("handshake runner: abort cancels, before or during the handshake", async () => {
  const controller = new AbortController();
  const [a] = pipe();
  const pending = clientHandshake(a, {
    serverKeys: [serverKey.publicKey],
    signal: controller.signal,
  });
  setTimeout(() => controller.abort(new Error("user gave up")), 10);
  await assert.rejects(pending, (error: unknown) => {
    assert.equal(code(error), "Cancelled");
    assert.match(String(((error as Error).cause as Error)?.message), /user gave up/);
    return true;
  });
  const [b] = pipe();
  await assert.rejects(
    serverHandshake(b, { staticKey: serverKey, signal: AbortSignal.abort() }),
    { code: "Cancelled" },
  );
});

Deno.test("handshake runner: the peer closing or speaking another version fails", async () => {
  const [a, b] = pipe();
  const pending = clientHandshake(a, { serverKeys: [serverKey.publicKey] });
  b.close();
  await assert.rejects(pending, { code: "HandshakeFailed" });
  const hello = new ClientHandshake({ serverKeys: [serverKey.publicKey] }).start()[0]!;
  const written: Uint8Array[] = [];
  const io = {
    readPacket: () => Promise.resolve({ version: 1, payload: hello }),
    writePackets: (payloads: Uint8Array[]) => {
      written.push(...payloads);
      return Promise.resolve();
    },
  };
  await assert.rejects(serverHandshake(io, { staticKey: serverKey }), (error: unknown) => {
    assert.equal(code(error), "HandshakeFailed");
    assert.match((error as Error).message, /version "1"/);
    return true;
  });
  assert.equal(written.length, 0);
});

Deno.test("handshake runner: invalid options reject before any I/O", async () => {
  const [a] = pipe();
  await assert.rejects(clientHandshake(a, { pattern: "NK" }), TypeError);
  assert.equal(a.written.length, 0);
});

Deno.test("handshake: the worked example of docs/PROTOCOL.md is reproduced byte for byte", async () => {
  const { publicKeyOf } = await import("../src/secure/keys.ts");
  const { SecureChannel } = await import("../src/secure/channel.ts");
  const hex = (b: Uint8Array): string =>
    [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
  const fill = (v: number): Uint8Array => new Uint8Array(32).map((_, i) => (v + i) & 0xff);
  const serverPub = publicKeyOf(fill(0x10));
  const header = encodeHello("noise", "NK", { features: 0x1 });
  assert.equal(hex(header), "01 01 02 01 00 07 01 00 04 00 00 00 01");
  const name = "Noise_NK_25519_ChaChaPoly_SHA256";
  const prologue = helloPrologue(header);
  const c = new HandshakeState({
    protocolName: name,
    initiator: true,
    prologue,
    rs: serverPub,
    e: fill(0x20),
  });
  const s = new HandshakeState({
    protocolName: name,
    initiator: false,
    prologue,
    s: fill(0x10),
    e: fill(0x30),
  });
  const m1 = c.writeMessage();
  assert.equal(
    hex(m1),
    "35 80 72 d6 36 58 80 d1 ae ea 32 9a df 91 21 38 38 51 ed 21 a2 8e 3b 75 e9 65 d0 d2 cd 16 62 54 " +
      "a6 4b 54 9d aa c2 de 4a 9e 08 75 9d 41 45 7e a1",
  );
  s.readMessage(m1);
  const m2 = s.writeMessage(encodeParams({ features: 0x3 }));
  assert.equal(
    hex(m2),
    "34 e4 2d 4a f5 ef 94 a0 7a 3a 84 20 1b 88 9d 4c d1 a7 43 cb 27 b1 1b 6a 10 43 8a 8f eb 8e 58 47 " +
      "b7 9f 3e 8b 97 14 cf 22 2b a3 f7 c1 33 03 9b a0 28 3d 75 f2 df f3 ec",
  );
  assert.deepEqual(decodeParams(c.readMessage(m2)), { features: 3 });
  assert.equal(
    hex(c.handshakeHash),
    "09 6e 4c 2a 0f 4a 57 20 be 09 fe 2a 31 fa 9a 0f a1 4b 51 55 da 29 6e e2 68 e6 7b de 58 d5 0a bc",
  );
  const [c1, c2] = c.split();
  const channel = new SecureChannel({ send: c1, receive: c2 }, {
    rekeyAfterRecords: 1,
    minKeyUpdateIntervalMs: 0,
  });
  const ping = new Uint8Array([0x00, 0x01, 0x01]); // a batch of one Ping
  assert.equal(
    hex(channel.sealData(ping)[0]!),
    "4b 29 24 c3 cf 3c 50 c1 11 72 89 29 ad 9f 8c e5 09 e7 ce be",
  );
  const [ku, data] = channel.sealData(ping);
  assert.equal(hex(ku!), "1a 17 d1 a9 3c be 3d ca ca 18 b6 0f 7d 6d d5 a1 5e");
  assert.equal(hex(data!), "2b 24 63 7b 79 2a e1 85 45 19 47 97 16 ca ac cc 25 48 98 b0");
  assert.equal(
    hex(channel.sealClose(0, "bye")[0]!),
    "da bb b1 df 63 21 b2 53 01 cf 5c 1a 12 ae f5 c8 1c 83 b8 fa dc 03",
  );
});
