/**
 * The patterns a server accepts by default (docs/PROTOCOL.md, "Patterns a server accepts by
 * default") are written once, in `defaultAcceptedPatterns`: the handshake policy, the session
 * set-up from a configuration (`allow_unauthenticated` adds NN to them) and the daemon (which
 * merges the caller's options into the configuration's) must all agree with the documented table.
 */
import assert from "node:assert/strict";
import { createConfig } from "../src/config/mod.ts";
import { ClientHandshake, ServerHandshake } from "../src/secure/handshake.ts";
import { encodeKey, generateKeyPair } from "../src/secure/keys.ts";
import {
  type ClientSecurityOptions,
  defaultAcceptedPatterns,
  PATTERN_INFO,
  type ServerSecurityOptions,
} from "../src/secure/policy.ts";
import { PATTERN_NAMES, type PatternName } from "../src/secure/hello.ts";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { serverSecurityFromConfig } from "../src/service/session.ts";
import { portOf, testDispatcher } from "./_service_helpers.ts";

const staticKey = generateKeyPair();
const clientKey = generateKeyPair();
const psk = crypto.getRandomValues(new Uint8Array(32));

/** The table of docs/PROTOCOL.md; `[]` where no pattern can run (construction throws). */
const DOCUMENTED: {
  name: string;
  options: ServerSecurityOptions;
  accept: string[];
}[] = [
  { name: "static key alone", options: { staticKey }, accept: ["NK", "XX", "IK"] },
  {
    name: "static key and allow-list",
    options: { staticKey, clientKeys: [clientKey.publicKey] },
    accept: ["XX", "IK"],
  },
  {
    name: "static key and authorize",
    options: { staticKey, authorize: () => true },
    accept: ["XX", "IK"],
  },
  { name: "psk and static key", options: { staticKey, psk }, accept: ["XXpsk3", "IKpsk2"] },
  {
    name: "psk, static key and allow-list",
    options: { staticKey, psk, clientKeys: [clientKey.publicKey] },
    accept: ["XXpsk3", "IKpsk2"],
  },
  { name: "psk alone", options: { psk }, accept: ["NNpsk0"] },
  {
    name: "psk and authorize without a static key",
    options: { psk, authorize: () => true },
    accept: [],
  },
  { name: "nothing", options: {}, accept: [] },
  {
    name: "allow-list without a static key",
    options: { clientKeys: [clientKey.publicKey] },
    accept: [],
  },
];

for (const { name, options, accept } of DOCUMENTED) {
  Deno.test(`default accept: ${name} -> ${accept.join(", ") || "refused"}`, async () => {
    assert.deepEqual(defaultAcceptedPatterns(options), accept);
    if (accept.length === 0) {
      assert.throws(() => new ServerHandshake(options), TypeError);
      return;
    }
    // The handshake policy uses the same list.
    assert.deepEqual(new ServerHandshake(options).accepted, accept);
    // allow_unauthenticated adds NN to the same defaults, computed with the caller's options.
    const config = createConfig({ security: { allowUnauthenticated: true } });
    const security = await serverSecurityFromConfig(config, options);
    assert.deepEqual(security.accept, [...accept, "NN"]);
    // Without it, the configuration leaves the list to the policy.
    const plain = await serverSecurityFromConfig(createConfig({}), options);
    assert.equal(plain.accept, undefined);
  });
}

Deno.test("default accept: a configured pattern other than XX restricts the server to it", async () => {
  const config = createConfig({ security: { pattern: "IK" } });
  const security = await serverSecurityFromConfig(config, {
    staticKey,
    clientKeys: [clientKey.publicKey],
  });
  assert.deepEqual(security.accept, ["IK"]);
  assert.deepEqual(new ServerHandshake(security).accepted, ["IK"]);
  // An accept list given by the caller wins over the configuration.
  const explicit = await serverSecurityFromConfig(config, {
    staticKey,
    accept: ["XX"],
  });
  assert.deepEqual(explicit.accept, ["XX"]);
});

Deno.test("default accept: the daemon computes the list once, with the caller's keys", async () => {
  // The configuration allows NN; the caller adds an allow-list, which makes NN impossible: the
  // daemon refuses to start instead of accepting a pattern that cannot check the client.
  await assert.rejects(
    serve({
      address: "127.0.0.1:0",
      config: { security: { allowUnauthenticated: true } },
      security: { staticKey, clientKeys: [clientKey.publicKey] },
    }, testDispatcher()),
    TypeError,
  );
  // With the caller's static key only, the daemon accepts the defaults plus NN.
  await using server = await serve({
    address: "127.0.0.1:0",
    config: { security: { allowUnauthenticated: true } },
    security: { staticKey },
  }, testDispatcher());
  const address = `127.0.0.1:${portOf(server.addr)}`;
  for (const pattern of ["NN", "NK", "XX", "IK"] as const) {
    const security: ClientSecurityOptions = pattern === "NK"
      ? { serverKeys: [staticKey.publicKey] }
      : pattern === "IK"
      ? { pattern, serverKeys: [staticKey.publicKey], staticKey: clientKey }
      : { pattern };
    await using client = await connect({ address, security, autoReconnect: false });
    assert.equal(client.connection?.session.pattern, pattern);
  }
});

Deno.test("default accept: a client's default pattern is one the matching server accepts", () => {
  const cases: { client: ClientSecurityOptions; server: ServerSecurityOptions }[] = [
    { client: { serverKeys: [staticKey.publicKey] }, server: { staticKey } },
    { client: {}, server: { staticKey } },
    { client: { staticKey: clientKey }, server: { staticKey, clientKeys: [clientKey.publicKey] } },
    { client: { psk }, server: { psk } },
    { client: { psk, serverKeys: [staticKey.publicKey] }, server: { psk, staticKey } },
  ];
  for (const { client, server } of cases) {
    const pattern = new ClientHandshake(client).pattern;
    assert.ok(
      new ServerHandshake(server).accepted.includes(pattern),
      `the client picks "${pattern}", which the server (${Object.keys(server)}) refuses`,
    );
  }
});

Deno.test("default accept: allow_unauthenticated with a configured pattern adds NN to that pattern", async () => {
  const config = createConfig({ security: { pattern: "IK", allowUnauthenticated: true } });
  const security = await serverSecurityFromConfig(config, { staticKey });
  assert.deepEqual(security.accept, ["IK", "NN"]);
});

Deno.test("default accept: a daemon generates a static key only when its patterns need one", async () => {
  let generated = 0;
  const generate = () => (generated++, generateKeyPair());
  // A psk alone runs NNpsk0: no server key.
  const pskAlone = await serverSecurityFromConfig(createConfig({}), { psk }, generate);
  assert.equal(pskAlone.staticKey, undefined);
  assert.equal(generated, 0);
  assert.deepEqual(new ServerHandshake(pskAlone).accepted, ["NNpsk0"]);
  // Without a psk, or with a configured pattern that has a server key, one is generated.
  const plain = await serverSecurityFromConfig(createConfig({}), {}, generate);
  assert.notEqual(plain.staticKey, undefined);
  const ik = await serverSecurityFromConfig(
    createConfig({ security: { pattern: "IK" } }),
    {},
    generate,
  );
  assert.notEqual(ik.staticKey, undefined);
  assert.deepEqual(ik.accept, ["IK"]);
  // A caller's accept list decides too: NNpsk0 needs no key, XXpsk3 does.
  await serverSecurityFromConfig(createConfig({}), { psk, accept: ["NNpsk0"] }, generate);
  assert.equal(generated, 2);
  const xxpsk3 = await serverSecurityFromConfig(
    createConfig({}),
    { psk, accept: ["XXpsk3"] },
    generate,
  );
  assert.notEqual(xxpsk3.staticKey, undefined);
  assert.equal(generated, 3);
});

Deno.test("default accept: a client and a daemon with the same psk settings connect", async (t) => {
  const dir = await Deno.makeTempDir();
  const pskPath = `${dir}/psk`;
  await Deno.writeTextFile(pskPath, `${encodeKey(psk)}\n`);
  try {
    await t.step("psk alone, given as options: NNpsk0", async () => {
      await using server = await serve(
        { address: "127.0.0.1:0", security: { psk } },
        testDispatcher(),
      );
      assert.equal(server.publicKey, undefined);
      await using client = await connect({
        address: `127.0.0.1:${portOf(server.addr)}`,
        security: { psk },
        autoReconnect: false,
      });
      assert.equal(client.connection?.session.pattern, "NNpsk0");
    });
    for (const pattern of ["NNpsk0", "XXpsk3"] as const) {
      await t.step(`one configuration with pattern ${pattern} and psk_path`, async () => {
        const config = { security: { pattern, pskPath } };
        await using server = await serve({ address: "127.0.0.1:0", config }, testDispatcher());
        await using client = await connect({
          address: `127.0.0.1:${portOf(server.addr)}`,
          config,
          autoReconnect: false,
        });
        assert.equal(client.connection?.session.pattern, pattern);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pattern facts are derived from the Noise patterns", () => {
  // [messages, serverStatic, serverKnown, clientStatic, clientKnown, psk]
  const expected: Record<PatternName, [number, boolean, boolean, boolean, boolean, boolean]> = {
    NN: [2, false, false, false, false, false],
    NK: [2, true, true, false, false, false],
    XX: [3, true, false, true, false, false],
    IK: [2, true, true, true, false, false],
    KK: [2, true, true, true, true, false],
    NNpsk0: [2, false, false, false, false, true],
    XXpsk3: [3, true, false, true, false, true],
    IKpsk2: [2, true, true, true, false, true],
  };
  for (const name of PATTERN_NAMES) {
    const f = PATTERN_INFO[name];
    assert.deepEqual(
      [f.messages, f.serverStatic, f.serverKnown, f.clientStatic, f.clientKnown, f.psk],
      expected[name],
      name,
    );
  }
});
