import assert from "node:assert/strict";
import fc from "fast-check";
import { ProtocolError } from "../src/errors.ts";
import { SecureChannel } from "../src/secure/channel.ts";
import { CipherState } from "../src/secure/noise/cipher_state.ts";
import { ClientHandshake, ServerHandshake } from "../src/secure/handshake.ts";
import type { PatternName } from "../src/secure/hello.ts";
import { generateKeyPair } from "../src/secure/keys.ts";
import type { ClientSecurityOptions, ServerSecurityOptions } from "../src/secure/policy.ts";
import {
  channelPair,
  connect,
  flipBit,
  handshake,
  randomBytes,
  runDrivers,
} from "./_secure_helpers.ts";

const serverKey = generateKeyPair();
const clientKey = generateKeyPair();
const mitmKey = generateKeyPair();
const psk = randomBytes(32);

function code(error: unknown): string | undefined {
  return error instanceof ProtocolError ? error.code : undefined;
}

/**
 * Feeds records to `channel` in order and returns the DATA bodies released before the first
 * error, the error, and whether every call after it threw too.
 */
function feed(channel: SecureChannel, records: Uint8Array[]): {
  bodies: Uint8Array[];
  error: unknown;
  failedAt: number;
  releasedAfterError: number;
} {
  const bodies: Uint8Array[] = [];
  let error: unknown;
  let failedAt = -1;
  let releasedAfterError = 0;
  for (let i = 0; i < records.length; i++) {
    try {
      const opened = channel.open(records[i]!);
      if (error !== undefined) releasedAfterError++;
      else if (opened.type === "data") bodies.push(opened.body);
    } catch (caught) {
      if (error === undefined) {
        error = caught;
        failedAt = i;
      }
    }
  }
  return { bodies, error, failedAt, releasedAfterError };
}

/** Seals `count` DATA records (bodies [i]) from a to b, with an optional rekey threshold. */
function stream(count: number, rekeyAfterRecords?: number) {
  const options = rekeyAfterRecords === undefined ? undefined : { rekeyAfterRecords };
  const pair = channelPair(options, options);
  const records: Uint8Array[] = [];
  const kinds: (number | "ku")[] = [];
  for (let i = 0; i < count; i++) {
    const out = pair.a.sealData(new Uint8Array([i]));
    if (out.length === 2) kinds.push("ku");
    kinds.push(i);
    records.push(...out);
  }
  return { ...pair, records, kinds };
}

Deno.test("attack: a replayed record fails and nothing after it is delivered", () => {
  for (const gap of [0, 5]) {
    const { b, records } = stream(12);
    // Record 3 is delivered, then replayed right after (gap 0) or after record 3 + gap.
    const attacked = [...records.slice(0, 4 + gap), records[3]!, ...records.slice(4 + gap)];
    const result = feed(b, attacked);
    assert.equal(code(result.error), "AuthenticationFailed");
    assert.equal(result.failedAt, 4 + gap);
    assert.deepEqual(result.bodies.map((x) => x[0]), [...Array(4 + gap).keys()]);
    assert.equal(result.releasedAfterError, 0);
  }
});

Deno.test("attack: reordered records fail", () => {
  const { b, records } = stream(10);
  const attacked = [...records];
  [attacked[4], attacked[5]] = [attacked[5]!, attacked[4]!];
  const result = feed(b, attacked);
  assert.equal(code(result.error), "AuthenticationFailed");
  assert.equal(result.failedAt, 4);
  assert.deepEqual(result.bodies.map((x) => x[0]), [0, 1, 2, 3]);
  assert.equal(result.releasedAfterError, 0);
});

Deno.test("attack: a dropped record makes the next one fail", () => {
  const { b, records } = stream(10);
  const attacked = records.filter((_, i) => i !== 6);
  const result = feed(b, attacked);
  assert.equal(code(result.error), "AuthenticationFailed");
  assert.equal(result.failedAt, 6);
  assert.equal(result.bodies.length, 6);
  assert.equal(result.releasedAfterError, 0);
});

Deno.test("attack: a dropped KEY_UPDATE makes the next record fail", () => {
  const { b, records, kinds } = stream(10, 3);
  const ku = kinds.indexOf("ku");
  assert.ok(ku > 0);
  const result = feed(b, records.filter((_, i) => i !== ku));
  assert.equal(code(result.error), "AuthenticationFailed");
  assert.equal(result.failedAt, ku);
  assert.equal(result.releasedAfterError, 0);
});

Deno.test("attack: a reflected record fails (keys differ per direction)", () => {
  const { a, b } = channelPair();
  const mine = a.sealData(new Uint8Array([1, 2, 3]));
  // The attacker sends a's own record back to a.
  assert.throws(() => a.open(mine[0]!), { code: "AuthenticationFailed" });
  assert.throws(() => a.open(b.sealData(new Uint8Array([4]))[0]!), {
    code: "AuthenticationFailed",
  });
  // Same at the start of a real session.
  return connect({ serverKeys: [serverKey.publicKey] }, { staticKey: serverKey }).then(
    ({ client }) => {
      const record = client.channel!.sealData(new Uint8Array([9]))[0]!;
      assert.throws(() => client.channel!.open(record), { code: "AuthenticationFailed" });
    },
  );
});

Deno.test("attack: flipping any bit of a record fails authentication", () => {
  const pair = channelPair();
  const sealed = [
    ...pair.a.sealData(new Uint8Array([1, 2, 3, 4])),
    ...pair.a.sealData(new Uint8Array([5, 6, 7, 8])),
    ...pair.a.sealClose(0, "end"),
  ];
  for (let index = 0; index < sealed.length; index++) {
    for (let bit = 0; bit < sealed[index]!.length * 8; bit++) {
      // A fresh receiver that follows a's send key from nonce 0.
      const receiver = new SecureChannel({
        send: new CipherState(randomBytes(32)),
        receive: new CipherState(pair.k1),
      });
      const attacked = [...sealed];
      attacked[index] = flipBit(sealed[index]!, bit);
      const result = feed(receiver, attacked);
      assert.equal(code(result.error), "AuthenticationFailed", `record ${index} bit ${bit}`);
      assert.equal(result.failedAt, index);
      assert.equal(result.bodies.length, Math.min(index, 2));
      assert.equal(result.releasedAfterError, 0);
    }
  }
});

Deno.test("attack: a stream cut before CLOSE is reported as Truncated", () => {
  const { a, b, records } = stream(5);
  const close = a.sealClose(0);
  const result = feed(b, records); // the attacker drops the CLOSE and ends the stream
  assert.equal(result.error, undefined);
  assert.throws(() => b.finish(), { code: "Truncated" });
  void close;
});

Deno.test("attack: a record from one connection fails in another", async () => {
  const options: [ClientSecurityOptions, ServerSecurityOptions] = [
    { serverKeys: [serverKey.publicKey] },
    { staticKey: serverKey },
  ];
  const one = await connect(...options);
  const two = await connect(...options);
  const record = one.client.channel!.sealData(new Uint8Array([1]))[0]!;
  two.client.channel!.sealData(new Uint8Array([2])); // same nonce position in both sessions
  assert.throws(() => two.server.channel!.open(record), { code: "AuthenticationFailed" });
  // Same keys, same pattern, same server: still independent (fresh ephemerals).
  assert.notDeepEqual(one.client.handshakeHash, two.client.handshakeHash);
});

Deno.test("attack: a replayed first message to a fresh server yields no usable session", async () => {
  const original = await handshake({ serverKeys: [serverKey.publicKey] }, { staticKey: serverKey });
  const msg1 = original.transcript[0]!.payload;
  const records = original.client!.channel!.sealData(new Uint8Array([1, 2, 3]));
  const replayServer = new ServerHandshake({ staticKey: serverKey });
  // NK: the server answers a replayed msg1 (it carries no data), but the session keys depend on
  // its fresh ephemeral key: the recorded client records do not open.
  await replayServer.receive(msg1);
  const channel = replayServer.result().channel!;
  assert.throws(() => channel.open(records[0]!), { code: "AuthenticationFailed" });
});

Deno.test("attack: a man in the middle with its own keys fails against a pinned NK client", async () => {
  const client = new ClientHandshake({ serverKeys: [serverKey.publicKey] });
  const mitm = new ServerHandshake({ staticKey: mitmKey });
  const outcome = await runDrivers(client, mitm);
  // The attacker cannot even read the first message (es uses the real server's key).
  assert.equal(code(outcome.serverError), "HandshakeFailed");
  assert.equal(outcome.client, undefined);
  // Answering with a valid second message from its own NK session does not help either.
  const own = await handshake({ serverKeys: [mitmKey.publicKey] }, { staticKey: mitmKey });
  const victim = new ClientHandshake({ serverKeys: [serverKey.publicKey] });
  victim.start();
  await assert.rejects(victim.receive(own.transcript[1]!.payload), { code: "HandshakeFailed" });
  assert.ok(!victim.isComplete);
});

Deno.test("attack: a man in the middle with its own keys fails against a pinned XX client", async () => {
  for (const pins of [[serverKey.publicKey], [serverKey.publicKey, generateKeyPair().publicKey]]) {
    const client = new ClientHandshake({ pattern: "XX", serverKeys: pins, staticKey: clientKey });
    const mitm = new ServerHandshake({ staticKey: mitmKey });
    const outcome = await runDrivers(client, mitm);
    assert.equal(code(outcome.clientError), "HandshakeFailed");
    assert.equal(outcome.client, undefined);
    // The client never sent its third message (its static key stays hidden from the attacker).
    assert.equal(outcome.transcript.filter((m) => m.from === "client").length, 1);
  }
  // Trust on first use detects the swap once a key is known.
  const { MemoryKnownServers } = await import("../src/secure/known_servers.ts");
  const store = new MemoryKnownServers();
  store.set("srv", serverKey.publicKey);
  const tofu = await runDrivers(
    new ClientHandshake({ knownServers: { store, name: "srv" } }),
    new ServerHandshake({ staticKey: mitmKey }),
  );
  assert.equal(code(tofu.clientError), "HandshakeFailed");
});

Deno.test("attack: an NN pair under a man in the middle ends with different handshake hashes", async () => {
  // The attacker runs one NN handshake with the client and another with the server.
  const toClient = await connect({ pattern: "NN" }, { accept: ["NN"] });
  const toServer = await connect({ pattern: "NN" }, { accept: ["NN"] });
  const clientSide = toClient.client; // the victim client
  const serverSide = toServer.server; // the victim server
  // Both victims "succeed"...
  assert.ok(clientSide.channel && serverSide.channel);
  // ...and the attacker reads everything (this is why NN needs an explicit opt-in)...
  const secret = clientSide.channel.sealData(new TextEncoder().encode("password"))[0]!;
  const read = toClient.server.channel!.open(secret);
  assert.equal(read.type === "data" ? new TextDecoder().decode(read.body) : "", "password");
  // ...but comparing handshakeHash out of band exposes it.
  assert.notDeepEqual(clientSide.handshakeHash, serverSide.handshakeHash);
  // A direct NN handshake has equal hashes on both ends.
  const direct = await connect({ pattern: "NN" }, { accept: ["NN"] });
  assert.deepEqual(direct.client.handshakeHash, direct.server.handshakeHash);
});

const flipCases: {
  pattern: PatternName;
  client: ClientSecurityOptions;
  server: ServerSecurityOptions;
}[] = [
  { pattern: "NN", client: { pattern: "NN" }, server: { accept: ["NN"] } },
  {
    pattern: "NK",
    client: { serverKeys: [serverKey.publicKey] },
    server: { staticKey: serverKey },
  },
  {
    pattern: "XX",
    client: { staticKey: clientKey, features: 1 },
    server: { staticKey: serverKey, features: 3, maxMessageSize: 1 << 20 },
  },
  {
    pattern: "IK",
    client: { pattern: "IK", serverKeys: [serverKey.publicKey], staticKey: clientKey },
    server: { staticKey: serverKey },
  },
  {
    pattern: "KK",
    client: { pattern: "KK", serverKeys: [serverKey.publicKey], staticKey: clientKey },
    server: { staticKey: serverKey, clientKeys: [clientKey.publicKey], accept: ["KK"] },
  },
  { pattern: "NNpsk0", client: { psk }, server: { psk } },
  {
    pattern: "XXpsk3",
    client: { psk, staticKey: clientKey },
    server: { psk, staticKey: serverKey },
  },
  {
    pattern: "IKpsk2",
    client: { pattern: "IKpsk2", psk, serverKeys: [serverKey.publicKey], staticKey: clientKey },
    server: { psk, staticKey: serverKey },
  },
];

for (const c of flipCases) {
  Deno.test(`attack: flipping any bit of any ${c.pattern} handshake message fails the handshake`, async () => {
    const honest = await handshake(c.client, c.server);
    assert.ok(honest.client && honest.server);
    const messages = honest.transcript.map((m) => m.payload.length);
    let runs = 0;
    for (let m = 0; m < messages.length; m++) {
      for (let bit = 0; bit < messages[m]! * 8; bit++) {
        let seen = -1;
        const outcome = await handshake(c.client, c.server, (_from, _index, payload) => {
          seen++;
          return seen === m ? flipBit(payload, bit) : payload;
        });
        runs++;
        const error = outcome.clientError ?? outcome.serverError;
        const where = `message ${m} bit ${bit}`;
        assert.ok(error instanceof ProtocolError, `${where}: ${error}`);
        assert.ok(
          error.code === "HandshakeFailed" || error.code === "PolicyViolation",
          `${where}: ${error.code}`,
        );
        assert.ok(outcome.client === undefined, where);
      }
    }
    assert.equal(runs, messages.reduce((sum, n) => sum + n * 8, 0));
  });
}

Deno.test("attack (property): any single corruption of a record sequence releases nothing after it", () => {
  const corruption = fc.record({
    kind: fc.constantFrom("flip", "drop", "duplicate", "swap", "reflect", "replay"),
    index: fc.nat(),
    bit: fc.nat(),
  });
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 48 }), { minLength: 2, maxLength: 24 }),
      fc.integer({ min: 1, max: 6 }),
      corruption,
      (bodies, rekeyAfterRecords, { kind, index, bit }) => {
        const { a, b } = channelPair({ rekeyAfterRecords }, { rekeyAfterRecords });
        const records: Uint8Array[] = [];
        const content: (Uint8Array | null)[] = [];
        for (const body of bodies) {
          const out = a.sealData(body);
          if (out.length === 2) content.push(null);
          content.push(body);
          records.push(...out);
        }
        records.push(...a.sealClose(0));
        content.push(null);
        const n = records.length;
        const attacked = [...records];
        let at: number; // first position of the corrupted sequence that differs
        switch (kind) {
          case "flip": {
            at = index % n;
            attacked[at] = flipBit(records[at]!, bit % (records[at]!.length * 8));
            break;
          }
          case "drop":
            at = index % n;
            attacked.splice(at, 1);
            break;
          case "duplicate":
            at = (index % n) + 1;
            attacked.splice(at, 0, records[at - 1]!);
            break;
          case "swap":
            at = index % (n - 1);
            [attacked[at], attacked[at + 1]] = [attacked[at + 1]!, attacked[at]!];
            break;
          case "reflect":
            at = index % n;
            attacked.splice(at, 0, b.sealData(new Uint8Array([1]))[0]!);
            break;
          default: {
            at = 1 + (index % (n - 1));
            attacked.splice(at, 0, records[bit % at]!);
          }
        }
        const result = feed(b, attacked);
        const expected = content.slice(0, at).filter((x): x is Uint8Array => x !== null);
        assert.deepEqual(result.bodies, expected);
        assert.equal(result.releasedAfterError, 0);
        if (kind === "drop" && at === n - 1) {
          // Dropping the final CLOSE is a truncation.
          assert.equal(result.error, undefined);
          assert.throws(() => b.finish(), { code: "Truncated" });
        } else if (at === n) {
          // Anything after the CLOSE is refused without being decrypted.
          assert.equal(code(result.error), "UnexpectedMessage");
          assert.equal(result.failedAt, at);
        } else {
          assert.equal(code(result.error), "AuthenticationFailed");
          assert.equal(result.failedAt, at);
          assert.throws(() => b.finish());
        }
      },
    ),
    { numRuns: 300 },
  );
});
