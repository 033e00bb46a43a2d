/**
 * The hybrid provider: libsodium (WebAssembly) for small AEAD inputs, node:crypto for the rest,
 * the same bytes either way, node:crypto until libsodium is loaded.
 */

import assert from "node:assert/strict";
import { ProtocolError } from "../src/errors.ts";
import { type CryptoProvider, nativeProvider } from "../src/secure/crypto.ts";
import {
  defaultProvider,
  hybridProvider,
  initCrypto,
  SODIUM_OPEN_MAX,
  SODIUM_SEAL_MAX,
  sodiumInUse,
} from "../src/secure/default_provider.ts";
import { loadSodiumAead, SODIUM_MAX_AD, SODIUM_MAX_INPUT } from "../src/secure/sodium_aead.ts";

await initCrypto();

const key = crypto.getRandomValues(new Uint8Array(32));
const nonce = crypto.getRandomValues(new Uint8Array(12));

Deno.test("hybrid: libsodium is in use after initCrypto, and the default provider is the hybrid", () => {
  assert.equal(defaultProvider(), hybridProvider);
  assert.equal(sodiumInUse(), true);
});

Deno.test("hybrid: the same bytes as node:crypto at every size around the crossovers, with and without associated data", () => {
  const sizes = [0, 1, 15, 16, 17, 63, 64, 65, 1024, SODIUM_OPEN_MAX - 1, SODIUM_OPEN_MAX];
  sizes.push(SODIUM_OPEN_MAX + 1, SODIUM_SEAL_MAX - 1, SODIUM_SEAL_MAX, SODIUM_SEAL_MAX + 1);
  sizes.push(4096, 4097, 70_000);
  for (const adLength of [0, 32, SODIUM_MAX_AD, SODIUM_MAX_AD + 1]) {
    const ad = crypto.getRandomValues(new Uint8Array(adLength));
    for (const size of sizes) {
      const plaintext = new Uint8Array(size).map((_, i) => (i * 31 + size) & 0xff);
      const expected = nativeProvider.encrypt(key, nonce, ad, plaintext);
      const sealed = hybridProvider.encrypt(key, nonce, ad, plaintext);
      assert.deepEqual(sealed, expected, `seal of ${size} B, ${adLength} B of ad`);
      assert.deepEqual(hybridProvider.decrypt(key, nonce, ad, sealed), plaintext);
      assert.deepEqual(nativeProvider.decrypt(key, nonce, ad, sealed), plaintext);
    }
  }
});

Deno.test("hybrid: a changed byte, a wrong key or wrong associated data fails with AuthenticationFailed on both paths", () => {
  for (const size of [64, SODIUM_OPEN_MAX, 8192]) {
    const sealed = hybridProvider.encrypt(key, nonce, new Uint8Array(0), new Uint8Array(size));
    for (const i of [0, size - 1, size, sealed.length - 1]) {
      const tampered = sealed.slice();
      tampered[i]! ^= 1;
      assert.throws(
        () => hybridProvider.decrypt(key, nonce, new Uint8Array(0), tampered),
        (e: unknown) => e instanceof ProtocolError && e.code === "AuthenticationFailed",
      );
    }
    assert.throws(
      () => hybridProvider.decrypt(new Uint8Array(32), nonce, new Uint8Array(0), sealed),
      (e: unknown) => e instanceof ProtocolError && e.code === "AuthenticationFailed",
    );
    assert.throws(
      () => hybridProvider.decrypt(key, nonce, new Uint8Array([1]), sealed),
      (e: unknown) => e instanceof ProtocolError && e.code === "AuthenticationFailed",
    );
  }
});

Deno.test("hybrid: bad arguments are refused as node:crypto refuses them", () => {
  const none = new Uint8Array(0);
  const cases: [string, (provider: CryptoProvider) => unknown][] = [
    ["short key", (p) => p.encrypt(new Uint8Array(31), nonce, none, new Uint8Array(8))],
    ["short nonce", (p) => p.encrypt(key, new Uint8Array(11), none, new Uint8Array(8))],
    ["short ciphertext", (p) => p.decrypt(key, nonce, none, new Uint8Array(15))],
  ];
  for (const [what, call] of cases) {
    let native: Error | undefined;
    try {
      call(nativeProvider);
    } catch (error) {
      native = error as Error;
    }
    assert.ok(native !== undefined, `node:crypto accepted a ${what}`);
    assert.throws(
      () => call(hybridProvider),
      (e: unknown) =>
        e instanceof Error && e.constructor === native.constructor && e.message === native.message,
      what,
    );
  }
});

Deno.test("hybrid: before libsodium is loaded the default provider seals with node:crypto, at once", async () => {
  // A fresh process: its first default-provider call happens before libsodium can be ready.
  const cryptoUrl = new URL("../src/secure/crypto.ts", import.meta.url);
  const selection = new URL("../src/secure/default_provider.ts", import.meta.url);
  const code = `
    import { nativeProvider } from "${cryptoUrl}";
    import { defaultProvider, sodiumInUse } from "${selection}";
    const key = new Uint8Array(32).fill(1), nonce = new Uint8Array(12), ad = new Uint8Array(0);
    const provider = defaultProvider();
    const before = sodiumInUse();
    const sealed = provider.encrypt(key, nonce, ad, new Uint8Array([1, 2, 3]));
    const same = nativeProvider.encrypt(key, nonce, ad, new Uint8Array([1, 2, 3]));
    await new Promise((resolve) => setTimeout(resolve, 500));
    console.log(JSON.stringify({ name: provider.name, before, after: sodiumInUse(), equal: sealed.join() === same.join() }));
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  assert.deepEqual(JSON.parse(text), { name: "hybrid", before: false, after: true, equal: true });
});

Deno.test("sodium engine: inputs larger than its region are refused, never written past it", async () => {
  const engine = await loadSodiumAead();
  const none = new Uint8Array(0);
  assert.throws(
    () => engine.seal(key, nonce, none, new Uint8Array(SODIUM_MAX_INPUT + 1)),
    RangeError,
  );
  assert.throws(
    () => engine.seal(key, nonce, new Uint8Array(SODIUM_MAX_AD + 1), new Uint8Array(1)),
    RangeError,
  );
  assert.throws(
    () => engine.open(key, nonce, none, new Uint8Array(SODIUM_MAX_INPUT + 17)),
    RangeError,
  );
  // At the limit it still works, and agrees with node:crypto.
  const full = new Uint8Array(SODIUM_MAX_INPUT).fill(5);
  const sealed = engine.seal(key, nonce, none, full);
  assert.deepEqual(sealed, nativeProvider.encrypt(key, nonce, none, full));
  assert.deepEqual(engine.open(key, nonce, none, sealed), full);
});

Deno.test("hybrid: the Noise HKDF through libsodium gives node:crypto's bytes for every input length Noise uses, and longer inputs fall back", () => {
  for (const ikmLength of [0, 1, 32, 64, 65, 200]) {
    for (const outputs of [2, 3] as const) {
      const chainingKey = crypto.getRandomValues(new Uint8Array(32));
      const ikm = crypto.getRandomValues(new Uint8Array(ikmLength));
      assert.deepEqual(
        hybridProvider.hkdf(chainingKey, ikm, outputs),
        nativeProvider.hkdf(chainingKey, ikm, outputs),
        `${ikmLength} bytes, ${outputs} outputs`,
      );
    }
  }
});

Deno.test("hybrid: libsodium's HKDF refuses inputs and outputs beyond its region", async () => {
  const engine = await loadSodiumAead();
  const salt = new Uint8Array(32).fill(1);
  assert.equal(engine.hkdf(salt, new Uint8Array(64), 96).length, 96);
  assert.throws(() => engine.hkdf(new Uint8Array(65), new Uint8Array(0), 32), RangeError);
  assert.throws(() => engine.hkdf(salt, new Uint8Array(65), 32), RangeError);
  assert.throws(() => engine.hkdf(salt, new Uint8Array(0), 97), RangeError);
  assert.throws(() => engine.hkdf(salt, new Uint8Array(0), 0), RangeError);
});
