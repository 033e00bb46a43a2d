import assert from "node:assert/strict";
import fc from "fast-check";
import { PacketDecoder, PacketDecoderStream, PacketEncoderStream } from "../src/core/codec.ts";
import { encodePacket, encodePackets, HEADER_SIZE, type Packet } from "../src/core/packet.ts";
import { ProtocolError } from "../src/errors.ts";

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Cuts `bytes` at the given (sorted, deduplicated) positions. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let last = 0;
  for (const p of points) {
    out.push(bytes.slice(last, p));
    last = p;
  }
  out.push(bytes.slice(last));
  return out;
}

Deno.test("PacketDecoder decodes several packets from one chunk", () => {
  const packets = [0, 1, 5000, 3].map((n) => ({ version: 2, payload: new Uint8Array(n).fill(9) }));
  const decoded = new PacketDecoder().push(encodePackets(packets));
  assert.deepEqual(decoded, packets);
});

Deno.test("PacketDecoder accepts a byte-at-a-time stream (slowloris segmentation)", () => {
  const bytes = encodePacket({ version: 2, payload: new Uint8Array([1, 2, 3, 4]) });
  const decoder = new PacketDecoder();
  const out: Packet[] = [];
  for (const b of bytes) out.push(...decoder.push(new Uint8Array([b])));
  assert.equal(out.length, 1);
  assert.deepEqual([...out[0]!.payload], [1, 2, 3, 4]);
  decoder.finish();
});

Deno.test("PacketDecoder rejects an oversized header before buffering any payload", () => {
  const decoder = new PacketDecoder();
  const header = new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 2, 0xff, 0xff, 0xff, 0xff]);
  assert.deepEqual(decoder.push(header.subarray(0, 8)), []);
  assert.throws(
    () => decoder.push(header.subarray(8)),
    (e) => e instanceof ProtocolError && e.code === "OversizedPacket",
  );
  // Dead after an error.
  assert.throws(() => decoder.push(new Uint8Array(1)), ProtocolError);
});

Deno.test("PacketDecoder rejects garbage such as an HTTP request at once", () => {
  const decoder = new PacketDecoder();
  const http = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.throws(
    () => decoder.push(http),
    (e) => e instanceof ProtocolError && e.code === "InvalidHeader",
  );
});

Deno.test("PacketDecoder memory grows with received bytes, not with the claimed length", () => {
  const decoder = new PacketDecoder();
  const header = new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 2, 0x01, 0x00, 0x00, 0x00]); // 16 MiB
  decoder.push(header);
  decoder.push(new Uint8Array(10));
  assert.equal(decoder.bufferedBytes, HEADER_SIZE + 10);
  assert.throws(
    () => decoder.finish(),
    (e) => e instanceof ProtocolError && e.code === "Truncated",
  );
});

Deno.test("PacketDecoder copies small payloads and returns large ones as views", () => {
  const small = encodePacket({ version: 2, payload: new Uint8Array(100) });
  const large = encodePacket({ version: 2, payload: new Uint8Array(100_000) });
  const chunk = concat([small, large]);
  const [a, b] = new PacketDecoder().push(chunk);
  assert.notEqual(a!.payload.buffer, chunk.buffer);
  assert.equal(b!.payload.buffer, chunk.buffer);
  const [c, d] = new PacketDecoder({ reusesInput: true }).push(chunk);
  assert.notEqual(c!.payload.buffer, chunk.buffer);
  assert.notEqual(d!.payload.buffer, chunk.buffer);
});

Deno.test("PacketDecoder with reusesInput is safe when the caller overwrites its buffer", () => {
  const bytes = encodePackets([
    { version: 2, payload: new Uint8Array(10_000).fill(1) },
    { version: 2, payload: new Uint8Array(10).fill(2) },
  ]);
  const decoder = new PacketDecoder({ reusesInput: true });
  const buffer = new Uint8Array(4096);
  const out: Packet[] = [];
  for (let offset = 0; offset < bytes.length; offset += buffer.length) {
    const n = Math.min(buffer.length, bytes.length - offset);
    buffer.set(bytes.subarray(offset, offset + n));
    out.push(...decoder.push(buffer.subarray(0, n)));
    buffer.fill(0xee);
  }
  assert.equal(out.length, 2);
  assert.ok(out[0]!.payload.every((b) => b === 1));
  assert.ok(out[1]!.payload.every((b) => b === 2));
});

Deno.test("property: any segmentation of a stream yields the same packets", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({ version: fc.constantFrom(1, 2), payload: fc.uint8Array({ maxLength: 300 }) }),
        { maxLength: 8 },
      ),
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.boolean(),
      fc.nat({ max: 400 }),
      (packets, cuts, reusesInput, copyThreshold) => {
        const bytes = encodePackets(packets);
        const decoder = new PacketDecoder({ reusesInput, copyThreshold });
        const out: Packet[] = [];
        for (const chunk of split(bytes, cuts)) out.push(...decoder.push(chunk));
        decoder.finish();
        assert.deepEqual(
          out.map((p) => ({ version: p.version, payload: p.payload.slice() })),
          packets.map((p) => ({ version: p.version, payload: p.payload })),
        );
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("property: random bytes in random chunks give packets or a ProtocolError only", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 512 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      fc.boolean(),
      (bytes, cuts, magic) => {
        if (magic && bytes.length >= 5) {
          bytes.set([0x4e, 0x50, 0x52, 0x4f, 2]);
        }
        const decoder = new PacketDecoder({ maxPayloadSize: 1024 });
        try {
          for (const chunk of split(bytes, cuts)) decoder.push(chunk);
          decoder.finish();
        } catch (error) {
          assert.ok(error instanceof ProtocolError, String(error));
        }
        assert.ok(decoder.bufferedBytes <= HEADER_SIZE + 1024);
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("PacketDecoderStream emits one batch per chunk and flags truncation", async () => {
  const bytes = encodePackets([
    { version: 2, payload: new Uint8Array([1]) },
    { version: 2, payload: new Uint8Array([2]) },
    { version: 2, payload: new Uint8Array([3]) },
  ]);
  const batches = await Array.fromAsync(
    ReadableStream.from([bytes.subarray(0, 20), bytes.subarray(20)]).pipeThrough(
      new PacketDecoderStream(),
    ),
  );
  assert.deepEqual(batches.map((b) => b.length), [2, 1]);
  await assert.rejects(
    Array.fromAsync(
      ReadableStream.from([bytes.subarray(0, 15)]).pipeThrough(new PacketDecoderStream()),
    ),
    (e) => e instanceof ProtocolError && e.code === "Truncated",
  );
});

Deno.test("PacketEncoderStream writes one chunk per batch", async () => {
  const chunks = await Array.fromAsync(
    ReadableStream.from<Packet | Packet[]>([
      { version: 2, payload: new Uint8Array([1]) },
      [{ version: 2, payload: new Uint8Array([2]) }, { version: 2, payload: new Uint8Array([3]) }],
    ]).pipeThrough(new PacketEncoderStream()),
  );
  assert.equal(chunks.length, 2);
  assert.equal(chunks[1]!.length, 2 * (HEADER_SIZE + 1));
  const decoded = await Array.fromAsync(
    ReadableStream.from(chunks).pipeThrough(new PacketDecoderStream()),
  );
  assert.deepEqual(decoded.flat().map((p) => p.payload[0]), [1, 2, 3]);
});
