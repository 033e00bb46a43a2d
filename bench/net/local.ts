/**
 * The figures of the network benchmark that involve no network, measured in the orchestrator's
 * process: P1 (packet codec), P7 (compression against the `lz4` and `zstd` command-line tools on
 * the same files), the AEAD ceiling of the bulk path, and the X25519 cost of one XX server
 * handshake (P5).
 *
 * @module
 */

import { decodePacket, encodePacket } from "../../src/core/mod.ts";
import process from "node:process";
import { nativeProvider } from "../../src/secure/crypto.ts";
import { defaultProvider, initCrypto } from "../../src/secure/default_provider.ts";
import { compress, decompress } from "../../src/compression/compress.ts";
import { cliBench, speed, textLike } from "../compression_cli.ts";

/** A target as the report shows it. */
export interface TargetFigure {
  /** `"P1"` ... `"P7"`. */
  id: string;
  /** The headline value (see `goal`). */
  value: number | null;
  /** What the target asks. */
  goal: string;
  /** Whether it is met; `null` when it could not be measured. */
  met: boolean | null;
  /** The figures behind the value. */
  note?: string;
}

/** P1: a 1 MiB packet decodes without copying; `encodePacket` runs at >= 2 GiB/s. */
export function measureCodec(quick: boolean): TargetFigure {
  const payload = new Uint8Array(1 << 20).fill(9);
  const encoded = encodePacket({ version: 2, payload });
  const decoded = decodePacket(encoded);
  const zeroCopy = decoded.payload.buffer === encoded.buffer &&
    decoded.payload.byteOffset === encoded.byteOffset + (encoded.length - payload.length);
  // Warm up first: the first ~100 ms of fresh 1 MiB buffers run at a fifth of the steady speed
  // (page faults until the allocator keeps the freed pages).
  const warmUntil = performance.now() + 300;
  while (performance.now() < warmUntil) encodePacket({ version: 2, payload });
  const sampleMs = quick ? 150 : 400;
  const encodeMBs = speed(() => encodePacket({ version: 2, payload }), payload.length, sampleMs);
  const gib = (encodeMBs * 1e6) / 2 ** 30;
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    id: "P1",
    value: round(gib),
    goal: "decoding a 1 MiB packet is zero-copy; encodePacket(1 MiB) >= 2 GiB/s",
    met: zeroCopy && gib >= 2,
    note: `encode ${round(gib)} GiB/s, decode ${zeroCopy ? "zero-copy" : "copies"}`,
  };
}

/**
 * P7: LZ4 >= 0.4x and Zstd >= 0.5x the command-line tools' speed (`-b1`), compression and
 * decompression, on text of 64 KiB and 1 MiB (1 MiB only in the quick run). The value is the
 * lowest ratio of LZ4.
 */
export async function measureCompression(quick: boolean, dir: string): Promise<TargetFigure> {
  // Without initCompression(), Zstd runs on node:zlib: what the library uses from 64 KiB up.
  const sampleMs = quick ? 100 : 300;
  const ratios: string[] = [];
  let met = true;
  let lowestLz4 = Infinity;
  // The quick run measures 1 MiB only: each command-line benchmark takes about two seconds.
  for (const size of quick ? [1024 * 1024] : [64 * 1024, 1024 * 1024]) {
    const data = textLike(size);
    const file = `${dir}/text_${size}.bin`;
    await Deno.writeFile(file, data);
    for (const [algorithm, goal] of [["lz4", 0.4], ["zstd", 0.5]] as const) {
      const cli = await cliBench(algorithm, file);
      if (cli === undefined) {
        return {
          id: "P7",
          value: null,
          goal: "LZ4 >= 0.4x, Zstd >= 0.5x the lz4/zstd command line (-b1) on the same text",
          met: null,
          note: `"${algorithm}" command not found or unusable: install lz4 and zstd`,
        };
      }
      const packed = compress(data, { algorithm });
      const c = speed(() => compress(data, { algorithm }), size, sampleMs) / cli.compress;
      const d = speed(() => decompress(packed, { algorithm, maxSize: size }), size, sampleMs) /
        cli.decompress;
      if (c < goal || d < goal) met = false;
      if (algorithm === "lz4") lowestLz4 = Math.min(lowestLz4, c, d);
      ratios.push(
        `${algorithm} ${size >= 1 << 20 ? "1 MiB" : "64 KiB"}: compress ${c.toFixed(2)}x, ` +
          `decompress ${d.toFixed(2)}x`,
      );
    }
  }
  return {
    id: "P7",
    value: Math.round(lowestLz4 * 100) / 100,
    goal: "LZ4 >= 0.4x, Zstd >= 0.5x the lz4/zstd command line (-b1) on the same text; " +
      "value: the lowest LZ4 ratio",
    met,
    note: ratios.join("; "),
  };
}

/** The AEAD ceiling of the bulk path: what the cipher alone does with 64 KiB records. */
export interface AeadCeiling {
  /** Sealing 64 KiB with node:crypto's ChaCha20-Poly1305, MB/s. */
  sealMBs: number;
  /** Opening it, MB/s. */
  openMBs: number;
  /** Sealing then opening the same record in one process, MB/s: the ceiling row. */
  ceilingMBs: number;
}

/**
 * Seals and opens 64 KiB records with the provider the bulk path uses for them (node:crypto:
 * the hybrid provider leaves records above 2 KiB to it), with no library around the cipher.
 *
 * @param quick Shorter samples.
 * @returns The three speeds.
 */
export function measureAeadCeiling(quick: boolean): AeadCeiling {
  const key = new Uint8Array(32).fill(7);
  const nonce = new Uint8Array(12);
  const ad = new Uint8Array(0);
  const record = new Uint8Array(65536).fill(0xab);
  const sealed = nativeProvider.encrypt(key, nonce, ad, record);
  const sampleMs = quick ? 150 : 400;
  const round = (n: number) => Math.round(n);
  return {
    sealMBs: round(speed(() => nativeProvider.encrypt(key, nonce, ad, record), 65536, sampleMs)),
    openMBs: round(speed(() => nativeProvider.decrypt(key, nonce, ad, sealed), 65536, sampleMs)),
    ceilingMBs: round(
      speed(
        () => {
          nativeProvider.decrypt(key, nonce, ad, nativeProvider.encrypt(key, nonce, ad, record));
        },
        65536,
        sampleMs,
      ),
    ),
  };
}

/** What X25519 costs the XX responder, in CPU time of this process (P5). */
export interface X25519Cost {
  /** The provider measured (`defaultProvider().name`). */
  provider: string;
  /** One key generation, µs of CPU. */
  keygenUs: number;
  /** One Diffie-Hellman with a peer public key seen for the first time (imported), µs of CPU. */
  dhUs: number;
  /**
   * The X25519 work of one XX responder, µs of CPU: an ephemeral key generation and three DH
   * (`ee` and `es` with the initiator's new ephemeral key, `se` with its static key), with the
   * responder's static key already loaded and each peer key imported once, as in a handshake.
   */
  xxResponderUs: number;
}

/**
 * Median CPU time (user + system of this process) per call of `fn`, in µs, over 5 samples of
 * about `sampleMs` each.
 */
function cpuMicros(fn: (i: number) => void, sampleMs: number): number {
  let iterations = 1;
  let i = 0;
  for (;;) {
    const start = performance.now();
    for (let n = 0; n < iterations; n++) fn(i++);
    if (performance.now() - start >= sampleMs / 4) break;
    iterations *= 2;
  }
  const samples: number[] = [];
  for (let s = 0; s < 5; s++) {
    const before = process.cpuUsage();
    for (let n = 0; n < iterations; n++) fn(i++);
    const spent = process.cpuUsage(before);
    samples.push((spent.user + spent.system) / iterations);
  }
  return samples.sort((a, b) => a - b)[2]!;
}

/**
 * Measures X25519 through the library's default provider (`defaultProvider()`, after
 * `initCrypto()`): key generation, one DH, and the set one XX server handshake does.
 *
 * @param quick Shorter samples.
 * @returns The costs in µs of CPU.
 */
export async function measureX25519(quick: boolean): Promise<X25519Cost> {
  await initCrypto();
  const provider = defaultProvider();
  const sampleMs = quick ? 150 : 400;
  const serverStatic = provider.generateKeyPair();
  // Peer keys made beforehand; each use takes a fresh copy, so every DH imports its peer key the
  // way a handshake does (the import is cached per array).
  const peers = Array.from({ length: 64 }, () => provider.generateKeyPair().publicKey);
  const peer = (i: number) => peers[i % peers.length]!.slice();
  const round = (n: number) => Math.round(n * 10) / 10;
  const keygenUs = cpuMicros(() => provider.generateKeyPair(), sampleMs);
  const dhUs = cpuMicros((i) => provider.dh(serverStatic.privateKey, peer(i)), sampleMs);
  const xxResponderUs = cpuMicros((i) => {
    const ephemeral = provider.generateKeyPair();
    const remoteEphemeral = peer(i);
    const remoteStatic = peer(i + 1);
    provider.dh(ephemeral.privateKey, remoteEphemeral);
    provider.dh(serverStatic.privateKey, remoteEphemeral);
    provider.dh(ephemeral.privateKey, remoteStatic);
  }, sampleMs);
  return {
    provider: provider.name,
    keygenUs: round(keygenUs),
    dhUs: round(dhUs),
    xxResponderUs: round(xxResponderUs),
  };
}
