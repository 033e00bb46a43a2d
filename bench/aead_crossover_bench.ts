/**
 * Where libsodium's WebAssembly ChaCha20-Poly1305 stops beating `node:crypto`: seal and open of
 * the same bytes by both engines at sizes from 64 B to 4 KiB. The hybrid provider's limits
 * (`SODIUM_SEAL_MAX` and `SODIUM_OPEN_MAX` in src/secure/default_provider.ts) come from this.
 * Run with `deno bench -A bench/aead_crossover_bench.ts`.
 *
 * @module
 */

import { nativeProvider } from "../src/secure/crypto.ts";
import { loadSodiumAead } from "../src/secure/sodium_aead.ts";

const sodium = await loadSodiumAead();
const key = new Uint8Array(32).fill(0x42);
const nonce = new Uint8Array(12).fill(7);
const EMPTY = new Uint8Array(0);

for (const size of [64, 512, 1024, 2048, 3072, 4096]) {
  const plaintext = new Uint8Array(size).fill(0xab);
  const sealed = nativeProvider.encrypt(key, nonce, EMPTY, plaintext);
  Deno.bench({
    name: `seal ${size} B (node:crypto)`,
    group: `seal ${size} B`,
    baseline: true,
    fn: () => void nativeProvider.encrypt(key, nonce, EMPTY, plaintext),
  });
  Deno.bench({
    name: `seal ${size} B (libsodium)`,
    group: `seal ${size} B`,
    fn: () => void sodium.seal(key, nonce, EMPTY, plaintext),
  });
  Deno.bench({
    name: `open ${size} B (node:crypto)`,
    group: `open ${size} B`,
    baseline: true,
    fn: () => void nativeProvider.decrypt(key, nonce, EMPTY, sealed),
  });
  Deno.bench({
    name: `open ${size} B (libsodium)`,
    group: `open ${size} B`,
    fn: () => void sodium.open(key, nonce, EMPTY, sealed),
  });
}
