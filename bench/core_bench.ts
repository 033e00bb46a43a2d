/**
 * Core codec benchmarks: packet encode/decode by size, the stream decoder, message and batch
 * encode/decode, and dispatch. Run with `deno bench -A bench/core_bench.ts`.
 *
 * Sizes are reported per iteration; throughput in GiB/s is `size / time` (docs/PERFORMANCE.md
 * has the table and the command).
 *
 * @module
 */

import { PacketDecoder } from "../src/core/codec.ts";
import { Slab } from "../src/core/slab.ts";
import { decodeBatch, encodeBatch } from "../src/core/batch.ts";
import { decodeMessage, encodeMessage, type Message } from "../src/core/message.ts";
import { decodePacket, encodePacket, writePacket } from "../src/core/packet.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";

const SIZES: [string, number][] = [
  ["64 B", 64],
  ["512 B", 512],
  ["4 KiB", 4096],
  ["64 KiB", 65536],
  ["1 MiB", 1 << 20],
];

for (const [label, size] of SIZES) {
  const payload = new Uint8Array(size).fill(0xab);
  const packet = { version: 2, payload };
  const encoded = encodePacket(packet);
  Deno.bench({
    name: `encodePacket ${label}`,
    group: `packet ${label}`,
    baseline: true,
    fn() {
      encodePacket(packet);
    },
  });
  Deno.bench({
    name: `decodePacket ${label}`,
    group: `packet ${label}`,
    fn() {
      decodePacket(encoded);
    },
  });
  const decoder = new PacketDecoder();
  Deno.bench({
    name: `PacketDecoder.push ${label} (whole packet per chunk)`,
    group: `packet ${label}`,
    fn() {
      decoder.push(encoded);
    },
  });
  const target = new Uint8Array(encoded.length);
  Deno.bench({
    name: `writePacket ${label} into a reused buffer`,
    group: `packet ${label}`,
    fn() {
      writePacket(target, 0, packet);
    },
  });
  // A baseline everything is compared with: copying the payload once.
  Deno.bench({
    name: `Uint8Array.slice ${label} (one copy)`,
    group: `packet ${label}`,
    fn() {
      payload.slice();
    },
  });
}

// A stream of 64-byte packets cut into 64 KiB reads, as the connection sees them.
{
  const one = encodePacket({ version: 2, payload: new Uint8Array(64) });
  const count = Math.floor(65536 / one.length);
  const stream = new Uint8Array(one.length * count);
  for (let i = 0; i < count; i++) stream.set(one, i * one.length);
  const decoder = new PacketDecoder({ reusesInput: true });
  Deno.bench({
    name: `PacketDecoder ${count} x 64 B packets per 64 KiB chunk`,
    group: "stream",
    fn() {
      decoder.push(stream);
    },
  });
}

const messages: Record<string, Message> = {
  ping: { type: "ping" },
  "echo 64 B": { type: "echo", text: "x".repeat(64) },
  "custom 1 KiB": { type: "custom", command: "PUT", payload: new Uint8Array(1024) },
  "request(custom 64 B)": {
    type: "request",
    id: 123456,
    deadline: 30000,
    message: { type: "custom", command: "GET", payload: new Uint8Array(64) },
  },
};
for (const [label, message] of Object.entries(messages)) {
  const bytes = encodeMessage(message);
  Deno.bench({
    name: `encodeMessage ${label}`,
    group: "message",
    fn: () => void encodeMessage(message),
  });
  Deno.bench({
    name: `decodeMessage ${label}`,
    group: "message",
    fn: () => void decodeMessage(bytes),
  });
}

const batch: Message[] = Array.from({ length: 256 }, (_, i) => ({
  type: "request",
  id: i + 1,
  message: { type: "custom", command: "GET", payload: new Uint8Array(64) },
}));
const batchBytes = encodeBatch(batch);
Deno.bench({
  name: "encodeBatch 256 x request(64 B)",
  group: "batch",
  fn: () => void encodeBatch(batch),
});
Deno.bench({
  name: "decodeBatch 256 x request(64 B)",
  group: "batch",
  fn: () => void decodeBatch(batchBytes),
});

const dispatcher = registerStandardHandlers(new Dispatcher());
dispatcher.register("GET", (m) => m);
dispatcher.register("ASYNC", (m) => Promise.resolve(m));
const get: Message = { type: "custom", command: "GET", payload: new Uint8Array(64) };
const asyncGet: Message = { type: "custom", command: "ASYNC", payload: new Uint8Array(64) };
const request: Message = { type: "request", id: 1, message: get };
Deno.bench({
  name: "Dispatcher.handle sync handler",
  group: "dispatch",
  baseline: true,
  fn: () => void dispatcher.handle(get),
});
Deno.bench({
  name: "Dispatcher.handle numbered request",
  group: "dispatch",
  fn: () => void dispatcher.handle(request),
});
Deno.bench({
  name: "Dispatcher.dispatch async handler (awaited)",
  group: "dispatch",
  async fn() {
    await dispatcher.dispatch(asyncGet);
  },
});

// Why small copies go through a slab: the cost of one new ArrayBuffer in Deno.
{
  const big = new Uint8Array(65536);
  const slab = new Slab();
  Deno.bench({
    name: "alloc new Uint8Array(64)",
    group: "allocation",
    baseline: true,
    fn: () => void new Uint8Array(64),
  });
  Deno.bench({
    name: "alloc slice 64 B of 64 KiB",
    group: "allocation",
    fn: () => void big.slice(100, 164),
  });
  Deno.bench({
    name: "alloc subarray 64 B of 64 KiB (view)",
    group: "allocation",
    fn: () => void big.subarray(100, 164),
  });
  Deno.bench({
    name: "alloc Slab.copy 64 B",
    group: "allocation",
    fn: () => void slab.copy(big, 100, 164),
  });
}
