/**
 * Crypto benchmarks: ChaCha20-Poly1305 through a Noise `CipherState` at 64 B, 1 KiB, 64 KiB and
 * 1 MiB per provider (and sealed in place, as records are); X25519; the Noise HKDF; full XX
 * handshakes per provider; seal/open (XChaCha20-Poly1305).
 * Run with `deno bench -A bench/crypto_bench.ts`.
 *
 * Throughput in MB/s is `size / time` (docs/PERFORMANCE.md has the table and the command).
 *
 * @module
 */

import { type CryptoProvider, nativeProvider, portableProvider } from "../src/secure/crypto.ts";
import { hybridProvider, initCrypto } from "../src/secure/default_provider.ts";
import { CipherState } from "../src/secure/noise/cipher_state.ts";
import { HandshakeState } from "../src/secure/noise/handshake_state.ts";
import { open, seal } from "../src/secure/seal.ts";

await initCrypto();

const PROVIDERS: CryptoProvider[] = [nativeProvider, hybridProvider, portableProvider];
const SIZES: [string, number][] = [
  ["64 B", 64],
  ["1 KiB", 1024],
  ["64 KiB", 65536],
  ["1 MiB", 1 << 20],
];
const EMPTY = new Uint8Array(0);
const key = new Uint8Array(32).fill(0x42);

for (const [label, size] of SIZES) {
  const plaintext = new Uint8Array(size).fill(0xab);
  for (const provider of PROVIDERS) {
    const sender = new CipherState(key, provider);
    Deno.bench({
      name: `encrypt ${label} (${provider.name})`,
      group: `aead encrypt ${label}`,
      baseline: provider === nativeProvider,
      fn() {
        sender.encryptWithAd(EMPTY, plaintext);
      },
    });
    // Decrypt a fixed record: the receiver's nonce is reset before each call.
    const record = new CipherState(key, provider).encryptWithAd(EMPTY, plaintext);
    const receiver = new CipherState(key, provider);
    Deno.bench({
      name: `decrypt ${label} (${provider.name})`,
      group: `aead decrypt ${label}`,
      baseline: provider === nativeProvider,
      fn() {
        receiver.setNonce(0);
        receiver.decryptWithAd(EMPTY, record);
      },
    });
  }
}

for (const [label, size] of SIZES) {
  const buffer = new Uint8Array(size + 16).fill(0xab);
  for (const provider of [nativeProvider, hybridProvider]) {
    const sender = new CipherState(key, provider);
    Deno.bench({
      name: `encrypt in place ${label} (${provider.name})`,
      group: `aead encrypt in place ${label}`,
      baseline: provider === nativeProvider,
      fn() {
        sender.encryptInPlace(EMPTY, buffer, size);
      },
    });
  }
}

for (const outputs of [2, 3] as const) {
  const chainingKey = new Uint8Array(32).fill(7);
  const ikm = new Uint8Array(32).fill(9);
  for (const provider of PROVIDERS) {
    Deno.bench({
      name: `hkdf, ${outputs} outputs (${provider.name})`,
      group: `hkdf ${outputs}`,
      baseline: provider === nativeProvider,
      fn() {
        provider.hkdf(chainingKey, ikm, outputs);
      },
    });
  }
}

for (const provider of PROVIDERS) {
  const a = provider.generateKeyPair();
  const b = provider.generateKeyPair();
  Deno.bench({
    name: `x25519 dh (${provider.name})`,
    group: "x25519 dh",
    baseline: provider === nativeProvider,
    fn() {
      provider.dh(a.privateKey, b.publicKey);
    },
  });
  Deno.bench({
    name: `x25519 keygen (${provider.name})`,
    group: "x25519 keygen",
    baseline: provider === nativeProvider,
    fn() {
      provider.generateKeyPair();
    },
  });
}

const XX = "Noise_XX_25519_ChaChaPoly_SHA256";
for (const provider of PROVIDERS) {
  const client = provider.generateKeyPair().privateKey;
  const server = provider.generateKeyPair().privateKey;
  Deno.bench({
    name: `XX handshake, both sides (${provider.name})`,
    group: "XX handshake",
    baseline: provider === nativeProvider,
    fn() {
      const i = new HandshakeState({ protocolName: XX, initiator: true, s: client, provider });
      const r = new HandshakeState({ protocolName: XX, initiator: false, s: server, provider });
      r.readMessage(i.writeMessage());
      i.readMessage(r.writeMessage());
      r.readMessage(i.writeMessage());
      i.split();
      r.split();
    },
  });
}

for (const [label, size] of SIZES) {
  const plaintext = new Uint8Array(size).fill(0xcd);
  for (const provider of PROVIDERS) {
    const box = seal(key, plaintext, { provider });
    Deno.bench({
      name: `seal ${label} (${provider.name})`,
      group: `seal ${label}`,
      baseline: provider === nativeProvider,
      fn() {
        seal(key, plaintext, { provider });
      },
    });
    Deno.bench({
      name: `open ${label} (${provider.name})`,
      group: `open ${label}`,
      baseline: provider === nativeProvider,
      fn() {
        open(key, box, { provider });
      },
    });
  }
}
