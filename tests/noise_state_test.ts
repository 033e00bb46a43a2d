// Noise state machines: terminal errors, nonce limit, rekey, wrong turn, bit flips.
import assert from "node:assert/strict";
import fc from "fast-check";
import { ProtocolError } from "../src/errors.ts";
import { type CryptoProvider, nativeProvider, portableProvider } from "../src/secure/crypto.ts";
import { hybridProvider, initCrypto } from "../src/secure/default_provider.ts";

await initCrypto();
import {
  CipherState,
  getPattern,
  HandshakeState,
  type HandshakeStateOptions,
  MAX_NONCE,
  parseProtocolName,
  PATTERN_NAMES,
  SymmetricState,
} from "../src/secure/noise/mod.ts";

const EMPTY = new Uint8Array(0);
const isCode = (code: string) => (error: unknown): boolean =>
  error instanceof ProtocolError && error.code === code;

interface Pair {
  init: HandshakeState;
  resp: HandshakeState;
}

function keys(provider: CryptoProvider) {
  return { i: provider.generateKeyPair(), r: provider.generateKeyPair() };
}

/** Builds an initiator/responder pair for any pattern with fresh keys. */
function makePair(pattern: string, provider: CryptoProvider = nativeProvider): Pair {
  const protocolName = `Noise_${pattern}_25519_ChaChaPoly_SHA256`;
  const p = getPattern(pattern);
  const k = keys(provider);
  const psks = Array.from({ length: p.pskCount }, (_, i) => new Uint8Array(32).fill(i + 1));
  const base = { protocolName, provider, prologue: new Uint8Array([1, 2]), psks };
  const init: HandshakeStateOptions = { ...base, initiator: true, s: k.i.privateKey };
  const resp: HandshakeStateOptions = { ...base, initiator: false, s: k.r.privateKey };
  if (p.responderPreMessage.includes("s")) init.rs = k.r.publicKey;
  if (p.initiatorPreMessage.includes("s")) resp.rs = k.i.publicKey;
  return { init: new HandshakeState(init), resp: new HandshakeState(resp) };
}

/** Runs the handshake, returning the messages. */
function run(pair: Pair, payload = EMPTY): Uint8Array[] {
  const messages: Uint8Array[] = [];
  while (!pair.init.isComplete) {
    const [w, r] = pair.init.isMyTurn ? [pair.init, pair.resp] : [pair.resp, pair.init];
    const message = w.writeMessage(payload);
    messages.push(message);
    assert.deepEqual(r.readMessage(message), payload);
  }
  assert.ok(pair.resp.isComplete);
  return messages;
}

Deno.test("noise: every known pattern and psk placement completes with both providers", () => {
  for (const provider of [nativeProvider, portableProvider, hybridProvider]) {
    for (const name of PATTERN_NAMES) {
      for (const suffix of ["", "psk0", "psk1"]) {
        const pair = makePair(name + suffix, provider);
        run(pair, new Uint8Array([9, 9]));
        assert.deepEqual(pair.init.handshakeHash, pair.resp.handshakeHash, name + suffix);
        const [i1, i2] = pair.init.split();
        const [r1, r2] = pair.resp.split();
        assert.deepEqual(
          r1.decryptWithAd(EMPTY, i1.encryptWithAd(EMPTY, Uint8Array.of(1))),
          Uint8Array.of(1),
        );
        assert.deepEqual(
          i2.decryptWithAd(EMPTY, r2.encryptWithAd(EMPTY, Uint8Array.of(2))),
          Uint8Array.of(2),
        );
      }
    }
  }
});

Deno.test("noise: flipping any bit of any handshake message fails the handshake", () => {
  for (const pattern of ["NN", "NK", "XX", "IK", "KK", "NNpsk0", "XXpsk3", "IKpsk2", "N", "X1X1"]) {
    const reference = run(makePair(pattern));
    for (let m = 0; m < reference.length; m++) {
      for (let byte = 0; byte < reference[m]!.length; byte++) {
        for (let bit = 0; bit < 8; bit++) {
          const pair = makePair(pattern);
          // Replay the honest transcript up to message m, then deliver a flipped copy of m.
          let failed = false;
          try {
            for (let j = 0; !pair.init.isComplete; j++) {
              const [w, r] = pair.init.isMyTurn ? [pair.init, pair.resp] : [pair.resp, pair.init];
              const message = w.writeMessage();
              if (j === m) message[byte]! ^= 1 << bit;
              r.readMessage(message);
            }
            // A flip in a cleartext e (NN msg 1, or the last message of a pattern) may only
            // show at the first transport record.
            const [i1, i2] = pair.init.split();
            const [r1, r2] = pair.resp.split();
            r1.decryptWithAd(EMPTY, i1.encryptWithAd(EMPTY, EMPTY));
            if (!pair.init.pattern.oneWay) i2.decryptWithAd(EMPTY, r2.encryptWithAd(EMPTY, EMPTY));
          } catch (error) {
            assert.ok(
              error instanceof ProtocolError &&
                (error.code === "HandshakeFailed" || error.code === "AuthenticationFailed"),
              `${pattern} message ${m} byte ${byte} bit ${bit}: ${error}`,
            );
            failed = true;
          }
          assert.ok(failed, `${pattern} message ${m} byte ${byte} bit ${bit} was not detected`);
        }
      }
    }
  }
});

Deno.test("noise: errors are terminal for the handshake state", () => {
  const pair = makePair("XX");
  const m1 = pair.init.writeMessage();
  pair.resp.readMessage(m1);
  const m2 = pair.resp.writeMessage();
  m2[40]! ^= 1;
  assert.throws(() => pair.init.readMessage(m2), isCode("HandshakeFailed"));
  assert.ok(pair.init.isFailed);
  assert.equal(pair.init.isMyTurn, false);
  assert.equal(pair.init.isComplete, false);
  m2[40]! ^= 1;
  // Even the genuine message is refused now.
  assert.throws(() => pair.init.readMessage(m2), isCode("HandshakeFailed"));
  assert.throws(() => pair.init.writeMessage(), isCode("HandshakeFailed"));
  assert.throws(() => pair.init.split(), isCode("HandshakeFailed"));
  assert.throws(() => pair.init.handshakeHash, isCode("HandshakeFailed"));
});

Deno.test("noise: wrong turn, truncated messages, early split and double split", () => {
  let pair = makePair("XX");
  assert.ok(pair.init.isMyTurn);
  assert.ok(!pair.resp.isMyTurn);
  assert.throws(() => pair.resp.writeMessage(), isCode("HandshakeFailed"));
  assert.ok(pair.resp.isFailed);

  pair = makePair("XX");
  assert.throws(() => pair.init.readMessage(new Uint8Array(32)), isCode("HandshakeFailed"));
  assert.throws(() => pair.init.writeMessage(), isCode("HandshakeFailed"));

  pair = makePair("XX");
  assert.throws(() => pair.resp.readMessage(new Uint8Array(31)), isCode("HandshakeFailed"));
  pair = makePair("XX");
  pair.resp.readMessage(pair.init.writeMessage());
  const m2 = pair.resp.writeMessage();
  assert.throws(
    () => pair.init.readMessage(m2.subarray(0, 32 + 48 + 15)),
    isCode("HandshakeFailed"),
  );
  pair = makePair("XX");
  assert.throws(() => pair.init.readMessage(new Uint8Array(65536)), isCode("HandshakeFailed"));

  pair = makePair("NN");
  assert.throws(() => pair.init.split(), isCode("HandshakeFailed"));
  pair = makePair("NN");
  run(pair);
  pair.init.split();
  assert.throws(() => pair.init.split(), isCode("HandshakeFailed"));
  // Writing after completion is a wrong turn too.
  assert.throws(() => pair.resp.writeMessage(), isCode("HandshakeFailed"));
});

Deno.test("noise: an oversized payload is a RangeError and the state stays usable", () => {
  const pair = makePair("NN");
  assert.throws(() => pair.init.writeMessage(new Uint8Array(65535)), RangeError);
  assert.ok(!pair.init.isFailed);
  run(pair);
});

Deno.test("noise: low-order ephemeral key from the peer fails the handshake", () => {
  const pair = makePair("NN");
  pair.resp.readMessage(pair.init.writeMessage());
  const m2 = pair.resp.writeMessage();
  m2.fill(0, 0, 32);
  assert.throws(() => pair.init.readMessage(m2), isCode("HandshakeFailed"));
  const pair2 = makePair("XX");
  // XX message 1 carries only e (no DH yet); the responder's ee DH then refuses it.
  pair2.resp.readMessage(new Uint8Array(32));
  assert.throws(() => pair2.resp.writeMessage(), isCode("HandshakeFailed"));
  assert.ok(pair2.resp.isFailed);
});

Deno.test("noise: constructor validates options", () => {
  const name = "Noise_XX_25519_ChaChaPoly_SHA256";
  assert.throws(() => new HandshakeState({ protocolName: name, initiator: true }), TypeError);
  assert.throws(
    () => new HandshakeState({ protocolName: "Noise_XX_448_AESGCM_BLAKE2b", initiator: true }),
    TypeError,
  );
  assert.throws(() => parseProtocolName("Noise_ZZ_25519_ChaChaPoly_SHA256"), TypeError);
  assert.throws(() => getPattern("XXpsk4"), TypeError);
  assert.throws(() => getPattern("XXpsk1+psk1"), TypeError);
  assert.deepEqual(getPattern("NNpsk0+psk2").messages, [["psk", "e"], ["e", "ee", "psk"]]);
  assert.throws(
    () =>
      new HandshakeState({
        protocolName: "Noise_NK_25519_ChaChaPoly_SHA256",
        initiator: true,
      }),
    TypeError,
    "NK initiator needs rs",
  );
  assert.throws(
    () =>
      new HandshakeState({
        protocolName: "Noise_NNpsk0_25519_ChaChaPoly_SHA256",
        initiator: true,
      }),
    TypeError,
    "psk needed",
  );
  assert.throws(
    () =>
      new HandshakeState({
        protocolName: "Noise_NN_25519_ChaChaPoly_SHA256",
        initiator: true,
        e: new Uint8Array(31),
      }),
    TypeError,
  );
  // NN needs no keys at all.
  new HandshakeState({ protocolName: "Noise_NN_25519_ChaChaPoly_SHA256", initiator: false });
});

Deno.test("noise: psk mismatch and prologue mismatch fail", () => {
  const name = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
  const init = new HandshakeState({
    protocolName: name,
    initiator: true,
    psks: [new Uint8Array(32).fill(1)],
  });
  const resp = new HandshakeState({
    protocolName: name,
    initiator: false,
    psks: [new Uint8Array(32).fill(2)],
  });
  assert.throws(() => resp.readMessage(init.writeMessage()), isCode("HandshakeFailed"));

  const xx = "Noise_XX_25519_ChaChaPoly_SHA256";
  const a = new HandshakeState({
    protocolName: xx,
    initiator: true,
    s: nativeProvider.generateKeyPair().privateKey,
    prologue: Uint8Array.of(1),
  });
  const b = new HandshakeState({
    protocolName: xx,
    initiator: false,
    s: nativeProvider.generateKeyPair().privateKey,
    prologue: Uint8Array.of(2),
  });
  b.readMessage(a.writeMessage());
  assert.throws(() => a.readMessage(b.writeMessage()), isCode("HandshakeFailed"));
});

Deno.test("noise: remote static key and handshake hash", () => {
  const pair = makePair("XX");
  assert.equal(pair.init.remoteStaticKey, undefined);
  run(pair);
  assert.deepEqual(pair.init.remoteStaticKey, pair.resp.localStaticKey);
  assert.deepEqual(pair.resp.remoteStaticKey, pair.init.localStaticKey);
  assert.equal(pair.init.handshakeHash.length, 32);
});

Deno.test("cipher state: nonce layout, limit, setNonce and failures leave the nonce unchanged", () => {
  const key = new Uint8Array(32).fill(3);
  const a = new CipherState(key, nativeProvider);
  const b = new CipherState(key, portableProvider);
  // Nonce 2^40 + 5: bytes 4..12 hold it little-endian.
  const n = 2 ** 40 + 5;
  a.setNonce(n);
  const ct = a.encryptWithAd(EMPTY, Uint8Array.of(7));
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(n), true);
  assert.deepEqual(ct, portableProvider.encrypt(key, nonce, EMPTY, Uint8Array.of(7)));
  assert.equal(a.nonce, n + 1);

  b.setNonce(n);
  const bad = ct.slice();
  bad[0]! ^= 1;
  assert.throws(() => b.decryptWithAd(EMPTY, bad), isCode("AuthenticationFailed"));
  assert.equal(b.nonce, n);
  assert.deepEqual(b.decryptWithAd(EMPTY, ct), Uint8Array.of(7));

  a.setNonce(MAX_NONCE);
  const last = a.encryptWithAd(EMPTY, EMPTY);
  assert.equal(last.length, 16);
  assert.equal(a.nonce, MAX_NONCE + 1);
  assert.throws(() => a.encryptWithAd(EMPTY, EMPTY), isCode("LimitExceeded"));
  assert.throws(() => a.decryptWithAd(EMPTY, last), isCode("LimitExceeded"));
  assert.equal(MAX_NONCE, 2 ** 53 - 2);

  assert.throws(() => a.setNonce(-1), RangeError);
  assert.throws(() => a.setNonce(2 ** 53), RangeError);
  assert.throws(() => a.setNonce(1.5), RangeError);
  assert.throws(() => new CipherState(new Uint8Array(16)), TypeError);

  const empty = new CipherState();
  assert.ok(!empty.hasKey());
  assert.deepEqual(empty.encryptWithAd(EMPTY, Uint8Array.of(1)), Uint8Array.of(1));
});

Deno.test("cipher state: rekey matches REKEY(k) = ENCRYPT(k, 2^64-1, empty, zeros)[0..32]", () => {
  for (const provider of [nativeProvider, portableProvider, hybridProvider]) {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const a = new CipherState(key, provider);
    const b = new CipherState(key, provider);
    a.encryptWithAd(EMPTY, EMPTY);
    a.rekey();
    assert.equal(a.nonce, 1, "rekey keeps the nonce");
    const expectedKey = portableProvider
      .encrypt(
        key,
        Uint8Array.of(0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255),
        EMPTY,
        new Uint8Array(32),
      )
      .subarray(0, 32);
    const fresh = new CipherState(expectedKey, provider);
    fresh.setNonce(1);
    const record = a.encryptWithAd(EMPTY, Uint8Array.of(5));
    assert.deepEqual(record, fresh.encryptWithAd(EMPTY, Uint8Array.of(5)));
    // The peer without the rekey fails; after it, both stay in step.
    b.setNonce(1);
    assert.throws(() => b.decryptWithAd(EMPTY, record), isCode("AuthenticationFailed"));
    b.rekey();
    assert.deepEqual(b.decryptWithAd(EMPTY, record), Uint8Array.of(5));
    // The caller's key array is never modified.
    assert.notDeepEqual(key, expectedKey);
  }
});

Deno.test("symmetric state: long protocol names are hashed", () => {
  const name = "Noise_XXpsk0+psk1+psk2+psk3_25519_ChaChaPoly_SHA256";
  const s = new SymmetricState(name, nativeProvider);
  assert.deepEqual(s.handshakeHash, nativeProvider.sha256(new TextEncoder().encode(name)));
  const short = new SymmetricState("Noise_NN_25519_ChaChaPoly_SHA256", nativeProvider);
  const expected = new Uint8Array(32);
  expected.set(new TextEncoder().encode("Noise_NN_25519_ChaChaPoly_SHA256"));
  assert.deepEqual(short.handshakeHash, expected);
});

Deno.test("noise: arbitrary bytes as a first message only ever throw ProtocolError", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 200 }),
      fc.constantFrom("NN", "XX", "NK", "IK", "KK"),
      (bytes, pattern) => {
        const pair = makePair(pattern);
        try {
          pair.resp.readMessage(bytes);
        } catch (error) {
          assert.ok(error instanceof ProtocolError, String(error));
        }
      },
    ),
    { numRuns: 300 },
  );
});
