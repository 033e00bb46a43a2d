// Wycheproof known-answer tests for each crypto provider: ChaCha20-Poly1305, X25519 (low-order
// points rejected), HKDF-SHA-256 and HMAC-SHA-256.
import assert from "node:assert/strict";
import { type CryptoProvider, nativeProvider, portableProvider } from "../src/secure/crypto.ts";
import { defaultProvider, hybridProvider, initCrypto } from "../src/secure/default_provider.ts";
import { ProtocolError } from "../src/errors.ts";
import { hex, readVectors, toHex } from "./_vectors.ts";

interface Group<T> {
  tests: T[];
  [key: string]: unknown;
}
interface WycheproofFile<T> {
  algorithm: string;
  numberOfTests: number;
  testGroups: Group<T>[];
}
interface Case {
  tcId: number;
  comment: string;
  flags: string[];
  result: "valid" | "acceptable" | "invalid";
}
interface AeadCase extends Case {
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
}
interface XdhCase extends Case {
  public: string;
  private: string;
  shared: string;
}
interface HkdfCase extends Case {
  ikm: string;
  salt: string;
  info: string;
  size: number;
  okm: string;
}
interface MacCase extends Case {
  key: string;
  msg: string;
  tag: string;
}

function cases<T>(name: string): T[] {
  const file = readVectors<WycheproofFile<T>>(name);
  const all = file.testGroups.flatMap((group) => group.tests);
  assert.equal(all.length, file.numberOfTests, `${name}: test count`);
  return all;
}

await initCrypto();
const providers: CryptoProvider[] = [nativeProvider, portableProvider, hybridProvider];

function isCode(code: string): (error: unknown) => boolean {
  return (error) => error instanceof ProtocolError && error.code === code;
}

Deno.test("wycheproof: ChaCha20-Poly1305", async (t) => {
  const all = cases<AeadCase>("wycheproof_chacha20_poly1305_test.json");
  for (const provider of providers) {
    await t.step(provider.name, () => {
      let checked = 0;
      for (const c of all) {
        const id = `tcId ${c.tcId} (${c.comment})`;
        const key = hex(c.key), iv = hex(c.iv), aad = hex(c.aad), msg = hex(c.msg);
        const sealed = hex(c.ct + c.tag);
        if (c.result === "valid") {
          assert.equal(toHex(provider.encrypt(key, iv, aad, msg)), c.ct + c.tag, id);
          assert.equal(toHex(provider.decrypt(key, iv, aad, sealed)), c.msg, id);
        } else if (iv.length !== 12) {
          // Our API takes only 12-byte nonces: a wrong size is a bad argument.
          assert.throws(() => provider.encrypt(key, iv, aad, msg), RangeError, id);
          assert.throws(() => provider.decrypt(key, iv, aad, sealed), RangeError, id);
        } else {
          assert.throws(
            () => provider.decrypt(key, iv, aad, sealed),
            isCode("AuthenticationFailed"),
            id,
          );
        }
        checked++;
      }
      assert.equal(checked, 325);
    });
  }
});

function allZero(bytes: Uint8Array): boolean {
  return bytes.every((byte) => byte === 0);
}

// Decision for "acceptable" X25519 cases (twist points, non-canonical encodings, small or
// low-order public keys): X25519 as RFC 7748 defines it is accepted, so the shared secret must
// equal Wycheproof's; the one exception is an all-zero shared secret (every low-order point),
// which is refused with HandshakeFailed (Noise rev 34 section 12.1 allows this; noble and
// OpenSSL both refuse it).
Deno.test("wycheproof: X25519, low-order points rejected", async (t) => {
  const all = cases<XdhCase>("wycheproof_x25519_test.json");
  for (const provider of providers) {
    await t.step(provider.name, () => {
      let rejected = 0, accepted = 0;
      for (const c of all) {
        const id = `tcId ${c.tcId} (${c.comment}; ${c.result}; ${c.flags.join(",")})`;
        const priv = hex(c.private), pub = hex(c.public);
        assert.notEqual(c.result, "invalid", id);
        if (allZero(hex(c.shared))) {
          assert.throws(() => provider.dh(priv, pub), isCode("HandshakeFailed"), id);
          rejected++;
        } else {
          assert.equal(toHex(provider.dh(priv, pub)), c.shared, id);
          accepted++;
        }
      }
      // Every ZeroSharedSecret case, and only those, is rejected.
      const zeroFlagged = all.filter((c) => c.flags.includes("ZeroSharedSecret")).length;
      assert.equal(rejected, zeroFlagged);
      assert.equal(rejected + accepted, 518);
    });
  }
});

Deno.test("wycheproof: X25519 public keys from private keys agree across providers", () => {
  const all = cases<XdhCase>("wycheproof_x25519_test.json").slice(0, 40);
  for (const c of all) {
    const priv = hex(c.private);
    assert.deepEqual(nativeProvider.publicKeyOf(priv), portableProvider.publicKeyOf(priv));
  }
});

/** RFC 5869 HKDF-SHA-256 built on the provider's HMAC (any salt, info and length). */
function rfc5869(
  provider: CryptoProvider,
  salt: Uint8Array,
  ikm: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array {
  if (length > 255 * 32) throw new RangeError("HKDF output too long");
  const prk = provider.hmacSha256(salt, ikm);
  const out = new Uint8Array(length);
  let previous: Uint8Array = new Uint8Array(0);
  for (let i = 1, offset = 0; offset < length; i++) {
    previous = provider.hmacSha256(prk, previous, info, Uint8Array.of(i));
    out.set(previous.subarray(0, Math.min(32, length - offset)), offset);
    offset += 32;
  }
  return out;
}

Deno.test("wycheproof: HKDF-SHA-256 (RFC 5869 over the HMAC, and the Noise HKDF)", async (t) => {
  const all = cases<HkdfCase>("wycheproof_hkdf_sha256_test.json");
  for (const provider of providers) {
    await t.step(provider.name, () => {
      let noiseChecked = 0;
      for (const c of all) {
        const id = `tcId ${c.tcId} (${c.comment})`;
        const salt = hex(c.salt), ikm = hex(c.ikm), info = hex(c.info);
        if (c.result === "invalid") {
          assert.ok(c.size > 255 * 32, id);
          assert.throws(() => rfc5869(provider, salt, ikm, info, c.size), RangeError, id);
          continue;
        }
        assert.equal(toHex(rfc5869(provider, salt, ikm, info, c.size)), c.okm, id);
        // The Noise HKDF is RFC 5869 with salt = ck and empty info; its outputs are a prefix of
        // the OKM whatever the requested length.
        if (info.length === 0) {
          const [o1, o2, o3] = provider.hkdf(salt, ikm, 3) as [Uint8Array, Uint8Array, Uint8Array];
          const noise = toHex(o1) + toHex(o2) + toHex(o3);
          const n = Math.min(noise.length, c.okm.length);
          assert.equal(noise.slice(0, n), c.okm.slice(0, n), id);
          const two = provider.hkdf(salt, ikm, 2);
          assert.equal(two.length, 2);
          assert.equal(toHex(two[0]!) + toHex(two[1]!), noise.slice(0, 128), id);
          noiseChecked++;
        }
      }
      assert.ok(noiseChecked >= 10, `Noise HKDF checked on ${noiseChecked} cases`);
    });
  }
});

Deno.test("wycheproof: HMAC-SHA-256", async (t) => {
  const all = cases<MacCase>("wycheproof_hmac_sha256_test.json");
  for (const provider of providers) {
    await t.step(provider.name, () => {
      for (const c of all) {
        const id = `tcId ${c.tcId} (${c.comment})`;
        const key = hex(c.key), msg = hex(c.msg);
        const tag = provider.hmacSha256(key, msg);
        // Wycheproof's truncated tags: compare the prefix of the full tag.
        const expected = c.tag;
        const full = toHex(tag);
        if (c.result === "valid") {
          assert.equal(full.slice(0, expected.length), expected, id);
          // Split input gives the same tag.
          const half = msg.length >> 1;
          assert.equal(
            toHex(provider.hmacSha256(key, msg.subarray(0, half), msg.subarray(half))),
            full,
          );
        } else {
          assert.notEqual(full.slice(0, expected.length), expected, id);
        }
      }
    });
  }
});

Deno.test("crypto: the default provider is the hybrid (node:crypto and libsodium) on this runtime", () => {
  assert.equal(defaultProvider().name, "hybrid");
});

Deno.test("crypto: providers agree on SHA-256 of split input", () => {
  const data = crypto.getRandomValues(new Uint8Array(1000));
  const whole = toHex(nativeProvider.sha256(data));
  assert.equal(toHex(portableProvider.sha256(data)), whole);
  assert.equal(toHex(nativeProvider.sha256(data.subarray(0, 3), data.subarray(3))), whole);
  assert.equal(toHex(portableProvider.sha256(data.subarray(0, 3), data.subarray(3))), whole);
  assert.equal(
    toHex(nativeProvider.sha256(new TextEncoder().encode("abc"))),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("crypto: bad AEAD arguments are TypeError/RangeError, short ciphertext fails auth", () => {
  for (const provider of providers) {
    const key = new Uint8Array(32), nonce = new Uint8Array(12), ad = new Uint8Array();
    assert.throws(() => provider.encrypt(new Uint8Array(31), nonce, ad, ad), RangeError);
    assert.throws(() => provider.encrypt(key, new Uint8Array(24), ad, ad), RangeError);
    assert.throws(
      () => provider.decrypt(key, nonce, ad, new Uint8Array(15)),
      isCode("AuthenticationFailed"),
    );
    assert.throws(() => provider.dh(new Uint8Array(32), new Uint8Array(31)), RangeError);
    // Empty plaintext round-trips.
    const sealed = provider.encrypt(key, nonce, ad, new Uint8Array());
    assert.equal(sealed.length, 16);
    assert.deepEqual(provider.decrypt(key, nonce, ad, sealed), new Uint8Array());
    // All-zero public key (low order).
    assert.throws(() => provider.dh(key.fill(1), new Uint8Array(32)), isCode("HandshakeFailed"));
  }
});

Deno.test("crypto: providers interoperate on X25519 and AEAD", () => {
  const a = nativeProvider.generateKeyPair();
  const b = portableProvider.generateKeyPair();
  assert.deepEqual(
    nativeProvider.dh(a.privateKey, b.publicKey),
    portableProvider.dh(b.privateKey, a.publicKey),
  );
  assert.deepEqual(nativeProvider.publicKeyOf(a.privateKey), a.publicKey);
  assert.deepEqual(portableProvider.publicKeyOf(b.privateKey), b.publicKey);
  // The key cache never serves a stale key after the caller mutates its array in place.
  const priv = a.privateKey;
  const first = nativeProvider.dh(priv, b.publicKey);
  priv[0]! ^= 0x40;
  const second = nativeProvider.dh(priv, b.publicKey);
  assert.notDeepEqual(first, second);
  assert.deepEqual(second, portableProvider.dh(priv, b.publicKey));
  // Nor a stale peer key: the same array, changed in place, is imported again.
  const peer = nativeProvider.generateKeyPair();
  const other = nativeProvider.generateKeyPair();
  const remote = peer.publicKey.slice();
  assert.deepEqual(nativeProvider.dh(priv, remote), portableProvider.dh(priv, peer.publicKey));
  remote.set(other.publicKey);
  assert.deepEqual(nativeProvider.dh(priv, remote), portableProvider.dh(priv, other.publicKey));
  const key = crypto.getRandomValues(new Uint8Array(32)),
    nonce = crypto.getRandomValues(new Uint8Array(12));
  const ad = crypto.getRandomValues(new Uint8Array(13));
  for (const size of [0, 1, 63, 64, 65, 1000, 70000]) {
    const pt = new Uint8Array(size).map((_, i) => (i * 31 + size) & 0xff);
    const ct = nativeProvider.encrypt(key, nonce, ad, pt);
    assert.deepEqual(portableProvider.encrypt(key, nonce, ad, pt), ct);
    assert.deepEqual(portableProvider.decrypt(key, nonce, ad, ct), pt);
    assert.deepEqual(nativeProvider.decrypt(key, nonce, ad, ct), pt);
  }
});
