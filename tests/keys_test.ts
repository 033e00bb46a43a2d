// Static keys: generation, text form, fingerprints, constant-time comparison, key files.
import assert from "node:assert/strict";
import fc from "fast-check";
import { ProtocolError } from "../src/errors.ts";
import { nativeProvider, portableProvider } from "../src/secure/crypto.ts";
import { constantTimeEqual } from "../src/util/bytes.ts";
import {
  decodeKey,
  encodeKey,
  fingerprint,
  formatKeyFile,
  generateKeyPair,
  parseKeyFile,
  publicKeyOf,
  readKeyFile,
  writeKeyFile,
} from "../src/secure/keys.ts";

const isConfig = (error: unknown): boolean =>
  error instanceof ProtocolError && error.code === "ConfigError";
const posix = Deno.build.os !== "windows";

Deno.test("keys: generateKeyPair gives consistent 32-byte keys with both providers", () => {
  for (const provider of [nativeProvider, portableProvider, undefined]) {
    const pair = generateKeyPair(provider);
    assert.equal(pair.publicKey.length, 32);
    assert.equal(pair.privateKey.length, 32);
    assert.deepEqual(publicKeyOf(pair.privateKey, portableProvider), pair.publicKey);
    assert.deepEqual(publicKeyOf(pair.privateKey), pair.publicKey);
    assert.equal(pair.publicKey.buffer.byteLength, 32, "own buffer, not a pool slice");
  }
  assert.notDeepEqual(generateKeyPair().privateKey, generateKeyPair().privateKey);
});

Deno.test("keys: encodeKey/decodeKey are strict and round-trip", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (key) => {
      const text = encodeKey(key);
      assert.match(text, /^[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(decodeKey(text), key);
    }),
  );
  const good = encodeKey(new Uint8Array(32).fill(0xab));
  for (
    const bad of [
      "",
      good.slice(1),
      good + "A",
      good + "=",
      " " + good,
      good.replace(/.$/, "B"), // non-canonical: unused bits set
      good.replace(/^./, "+"),
      good.replace(/^./, "/"),
    ]
  ) {
    assert.throws(() => decodeKey(bad), TypeError, JSON.stringify(bad));
  }
  assert.throws(() => encodeKey(new Uint8Array(31)), TypeError);
  assert.throws(() => decodeKey(42 as unknown as string), TypeError);
});

Deno.test("keys: fingerprint is base64url SHA-256 of the public key", () => {
  const key = new Uint8Array(32);
  // SHA-256 of 32 zero bytes.
  const digest = Uint8Array.from(
    "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925".match(/../g)!.map((h) =>
      parseInt(h, 16)
    ),
  );
  assert.equal(fingerprint(key), encodeKey(digest));
  assert.throws(() => fingerprint(new Uint8Array(33)), TypeError);
});

Deno.test("keys: constantTimeEqual", () => {
  fc.assert(
    fc.property(fc.uint8Array(), fc.uint8Array(), (a, b) => {
      const expected = a.length === b.length && a.every((x, i) => x === b[i]);
      assert.equal(constantTimeEqual(a, b), expected);
      assert.ok(constantTimeEqual(a, a.slice()));
    }),
  );
});

Deno.test("keys: key file text format is human-readable and validated", () => {
  const pair = generateKeyPair();
  const text = formatKeyFile(pair);
  assert.match(text, /^# npro static key/);
  assert.ok(text.includes(`public: ${encodeKey(pair.publicKey)}\n`));
  assert.ok(text.includes(`fingerprint: ${fingerprint(pair.publicKey)}\n`));
  assert.deepEqual(parseKeyFile(text), pair);
  // Only the private line is required.
  assert.deepEqual(parseKeyFile(`private: ${encodeKey(pair.privateKey)}\n`), pair);
  // CRLF and extra comments are fine.
  assert.deepEqual(parseKeyFile("# hi\r\n\r\n" + text.replace(/\n/g, "\r\n")), pair);
  const other = generateKeyPair();
  for (
    const bad of [
      "",
      "public: " + encodeKey(pair.publicKey),
      text.replace(`public: ${encodeKey(pair.publicKey)}`, `public: ${encodeKey(other.publicKey)}`),
      text.replace(/fingerprint: .*/, `fingerprint: ${fingerprint(other.publicKey)}`),
      text + "private: " + encodeKey(pair.privateKey) + "\n",
      text + "color: blue\n",
      text + "garbage\n",
      text.replace(/private: .*/, "private: nope"),
    ]
  ) {
    assert.throws(() => parseKeyFile(bad), isConfig, JSON.stringify(bad));
  }
});

Deno.test("keys: writeKeyFile writes 0600, refuses to overwrite, readKeyFile checks mode", async () => {
  const dir = await Deno.makeTempDir({ prefix: "npro-keys-" });
  try {
    const path = `${dir}/server.key`;
    const pair = generateKeyPair();
    await writeKeyFile(path, pair);
    if (posix) assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.deepEqual(await readKeyFile(path), pair);

    const other = generateKeyPair();
    await assert.rejects(writeKeyFile(path, other), Deno.errors.AlreadyExists);
    assert.deepEqual(await readKeyFile(path), pair, "not overwritten");
    await writeKeyFile(path, other, { overwrite: true });
    assert.deepEqual(await readKeyFile(path), other);
    if (posix) assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["server.key"]);

    if (posix) {
      await Deno.chmod(path, 0o640);
      await assert.rejects(readKeyFile(path), isConfig);
      assert.deepEqual(await readKeyFile(path, { allowInsecurePermissions: true }), other);
      await Deno.chmod(path, 0o600);
    }

    const big = `${dir}/big.key`;
    await Deno.writeTextFile(big, "#".repeat(5000), { mode: 0o600 });
    await assert.rejects(readKeyFile(big), isConfig);
    await Deno.writeFile(`${dir}/bin.key`, Uint8Array.of(0xff, 0xfe), { mode: 0o600 });
    await assert.rejects(readKeyFile(`${dir}/bin.key`), isConfig);
    await assert.rejects(readKeyFile(`${dir}/missing.key`), Deno.errors.NotFound);

    const controller = new AbortController();
    controller.abort();
    await assert.rejects(writeKeyFile(`${dir}/aborted.key`, pair, { signal: controller.signal }));
    await assert.rejects(readKeyFile(path, { signal: controller.signal }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
