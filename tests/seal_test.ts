// seal/open and XChaCha20-Poly1305 against Wycheproof, for both paths.
import assert from "node:assert/strict";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import fc from "fast-check";
import { ProtocolError } from "../src/errors.ts";
import { nativeProvider, portableProvider } from "../src/secure/crypto.ts";
import { hybridProvider, initCrypto } from "../src/secure/default_provider.ts";
import { open, seal, SEAL_OVERHEAD, xchachaDecrypt, xchachaEncrypt } from "../src/secure/seal.ts";
import { hex, readVectors, toHex } from "./_vectors.ts";

interface AeadCase {
  tcId: number;
  comment: string;
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
  result: string;
}

await initCrypto();
const paths = [nativeProvider, portableProvider, hybridProvider];
const isAuth = (error: unknown): boolean =>
  error instanceof ProtocolError && error.code === "AuthenticationFailed";

Deno.test("seal: Wycheproof XChaCha20-Poly1305 for the native and portable paths", async (t) => {
  const file = readVectors<{ numberOfTests: number; testGroups: { tests: AeadCase[] }[] }>(
    "wycheproof_xchacha20_poly1305_test.json",
  );
  const all = file.testGroups.flatMap((group) => group.tests);
  assert.equal(all.length, file.numberOfTests);
  for (const provider of paths) {
    await t.step(provider.name, () => {
      for (const c of all) {
        const id = `tcId ${c.tcId} (${c.comment})`;
        const key = hex(c.key), iv = hex(c.iv), aad = hex(c.aad), msg = hex(c.msg);
        const sealed = hex(c.ct + c.tag);
        if (c.result === "valid") {
          assert.equal(
            toHex(xchachaEncrypt(key, iv, msg, { additionalData: aad, provider })),
            c.ct + c.tag,
            id,
          );
          assert.equal(
            toHex(xchachaDecrypt(key, iv, sealed, { additionalData: aad, provider })),
            c.msg,
            id,
          );
          // The same case through open(): nonce || ciphertext || tag.
          const box = new Uint8Array(24 + sealed.length);
          box.set(iv);
          box.set(sealed, 24);
          assert.equal(toHex(open(key, box, { additionalData: aad, provider })), c.msg, id);
        } else if (iv.length !== 24) {
          assert.throws(
            () => xchachaDecrypt(key, iv, sealed, { additionalData: aad, provider }),
            RangeError,
            id,
          );
        } else {
          assert.throws(
            () => xchachaDecrypt(key, iv, sealed, { additionalData: aad, provider }),
            isAuth,
            id,
          );
        }
      }
    });
  }
});

Deno.test("seal: round trip, random nonce, and equality with noble xchacha20poly1305", () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const ad = Uint8Array.of(1, 2, 3);
  for (const provider of paths) {
    for (const size of [0, 1, 100, 5000]) {
      const pt = crypto.getRandomValues(new Uint8Array(size));
      const box = seal(key, pt, { additionalData: ad, provider });
      assert.equal(box.length, size + SEAL_OVERHEAD);
      assert.deepEqual(open(key, box, { additionalData: ad, provider }), pt);
      // Cross-path and against noble's own XChaCha.
      assert.deepEqual(open(key, box, { additionalData: ad }), pt);
      assert.deepEqual(
        xchacha20poly1305(key, box.subarray(0, 24), ad).decrypt(box.subarray(24)),
        pt,
      );
    }
    const a = seal(key, new Uint8Array(8), { provider });
    const b = seal(key, new Uint8Array(8), { provider });
    assert.notDeepEqual(a.subarray(0, 24), b.subarray(0, 24), "nonces are random");
  }
});

Deno.test("seal: tampering, wrong key, wrong ad and short boxes fail with AuthenticationFailed", () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const box = seal(key, new TextEncoder().encode("attack at dawn"), {
    additionalData: Uint8Array.of(9),
  });
  for (const provider of paths) {
    for (let i = 0; i < box.length; i++) {
      const bad = box.slice();
      bad[i]! ^= 0x80;
      assert.throws(
        () => open(key, bad, { additionalData: Uint8Array.of(9), provider }),
        isAuth,
        `byte ${i}`,
      );
    }
    assert.throws(() => open(key, box, { additionalData: Uint8Array.of(8), provider }), isAuth);
    assert.throws(() => open(key, box, { provider }), isAuth);
    assert.throws(
      () => open(new Uint8Array(32), box, { additionalData: Uint8Array.of(9), provider }),
      isAuth,
    );
    assert.throws(
      () => open(key, box.subarray(0, SEAL_OVERHEAD - 1), { provider }),
      isAuth,
    );
  }
  assert.throws(() => seal(new Uint8Array(16), new Uint8Array(1)), TypeError);
  assert.throws(() => open(new Uint8Array(33), box), TypeError);
});

Deno.test("seal: property: open(seal(x)) == x and any bit flip fails", () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 40 }),
      fc.nat(),
      (pt, ad, flip) => {
        const box = seal(key, pt, { additionalData: ad });
        assert.deepEqual(open(key, box, { additionalData: ad, provider: portableProvider }), pt);
        const bit = flip % (box.length * 8);
        box[bit >> 3]! ^= 1 << (bit & 7);
        assert.throws(() => open(key, box, { additionalData: ad }), isAuth);
      },
    ),
    { numRuns: 200 },
  );
});
