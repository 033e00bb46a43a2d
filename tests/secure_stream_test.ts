import assert from "node:assert/strict";
import type { Packet } from "../src/core/packet.ts";
import { ProtocolError } from "../src/errors.ts";
import { SecureStream } from "../src/secure/stream.ts";
import { channelPair, flipBit } from "./_secure_helpers.ts";

function streams(rekeyAfterRecords?: number): { a: SecureStream; b: SecureStream } {
  const options = rekeyAfterRecords === undefined ? undefined : { rekeyAfterRecords };
  const { a, b } = channelPair(options, options);
  return { a: new SecureStream(a), b: new SecureStream(b) };
}

async function collect<T>(readable: ReadableStream<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const chunk of readable) out.push(chunk);
  return out;
}

/** Runs batches through a's outbound and returns the packet batches. */
async function sealBatches(a: SecureStream, batches: Uint8Array[][]): Promise<Packet[][]> {
  return await collect(ReadableStream.from(batches).pipeThrough(a.outbound));
}

Deno.test("stream: batches of bodies travel through outbound and inbound, with rekeys", async () => {
  const { a, b } = streams(4);
  const batches: Uint8Array[][] = [];
  let n = 0;
  for (let i = 0; i < 60; i++) {
    const batch: Uint8Array[] = [];
    for (let j = 0; j < (i % 5) + 1; j++) {
      batch.push(new Uint8Array([n & 0xff, n >> 8, ++n & 0xff]));
    }
    batches.push(batch);
  }
  const packets = await sealBatches(a, batches);
  // One chunk out per chunk in, plus the CLOSE batch at the end; one record per body.
  assert.equal(packets.length, 61);
  const records = packets.flat();
  assert.equal(records.length, n + a.channel.keyUpdatesSent + 1);
  assert.ok(a.channel.keyUpdatesSent > 10);
  assert.ok(records.every((p) => p.version === 2));
  const received = await collect(ReadableStream.from(packets).pipeThrough(b.inbound));
  assert.deepEqual(received.flat(), batches.flat());
  assert.deepEqual(b.remoteClose, { code: 0, reason: "" });
  assert.equal(b.channel.keyUpdatesReceived, a.channel.keyUpdatesSent);
});

Deno.test("stream: a whole read of packets is one inbound chunk", async () => {
  const { a, b } = streams();
  const packets = (await sealBatches(a, [[new Uint8Array([1])], [new Uint8Array([2])]])).flat();
  const received = await collect(ReadableStream.from([packets]).pipeThrough(b.inbound));
  assert.deepEqual(received, [[new Uint8Array([1]), new Uint8Array([2])]]);
});

Deno.test("stream: the CLOSE reason set on the stream reaches the peer", async () => {
  const { a, b } = streams();
  a.setCloseReason(0x1001, "maintenance");
  assert.throws(() => a.setCloseReason(70000), RangeError);
  assert.throws(() => a.setCloseReason(1, "é".repeat(62)), RangeError);
  const packets = await sealBatches(a, [[new Uint8Array([1])]]);
  await collect(ReadableStream.from(packets).pipeThrough(b.inbound));
  assert.deepEqual(b.remoteClose, { code: 0x1001, reason: "maintenance" });
});

Deno.test("stream: an inbound stream that ends without CLOSE errors with Truncated", async () => {
  const { a, b } = streams();
  const packets = await sealBatches(a, [[new Uint8Array([1])], [new Uint8Array([2])]]);
  const cut = packets.slice(0, -1); // the attacker drops the CLOSE batch
  const delivered: Uint8Array[] = [];
  await assert.rejects(
    (async () => {
      for await (const batch of ReadableStream.from(cut).pipeThrough(b.inbound)) {
        delivered.push(...batch);
      }
    })(),
    (error: unknown) => error instanceof ProtocolError && error.code === "Truncated",
  );
  assert.deepEqual(delivered, [new Uint8Array([1]), new Uint8Array([2])]);
});

Deno.test("stream: a tampered record errors the stream and nothing after it is delivered", async () => {
  const { a, b } = streams();
  const packets = await sealBatches(a, [[new Uint8Array([1])], [new Uint8Array([2])], [
    new Uint8Array([3]),
  ]]);
  const attacked = packets.map((batch) => batch.map((p) => ({ ...p })));
  attacked[1]![0]!.payload = flipBit(attacked[1]![0]!.payload, 3);
  const delivered: number[] = [];
  const reader = ReadableStream.from(attacked).pipeThrough(b.inbound).getReader();
  let error: unknown;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const body of value) delivered.push(body[0]!);
    }
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof ProtocolError);
  assert.equal(error.code, "AuthenticationFailed");
  assert.deepEqual(delivered, [1]);
  assert.equal(b.channel.failure?.code, "AuthenticationFailed");
  // The outbound side of the same channel is dead too: it sends no CLOSE it could not justify.
  await assert.rejects(sealBatches(b, [[new Uint8Array([9])]]), { code: "AuthenticationFailed" });
});

Deno.test("stream: a packet of another version in the record stream is refused", async () => {
  const { a, b } = streams();
  const packets = await sealBatches(a, [[new Uint8Array([1])]]);
  const legacy = [[{ version: 1, payload: packets[0]![0]!.payload }]];
  await assert.rejects(collect(ReadableStream.from(legacy).pipeThrough(b.inbound)), {
    code: "UnsupportedVersion",
  });
  assert.equal(b.channel.failure?.code, "UnsupportedVersion");
});

Deno.test("stream: records after CLOSE are not delivered", async () => {
  const { a, b } = streams();
  const first = await sealBatches(a, [[new Uint8Array([1])]]);
  // An attacker appends a (replayed) record after the CLOSE, in the same batch and later.
  const batch = [...first.flat(), first[0]![0]!];
  const received = await collect(ReadableStream.from([batch]).pipeThrough(b.inbound)).catch((e) =>
    e
  );
  assert.ok(received instanceof ProtocolError);
  assert.equal(received.code, "UnexpectedMessage");
  // In a later batch: the readable ends at the CLOSE and the writer sees the stream closed.
  const c = streams();
  const sealed = await sealBatches(c.a, [[new Uint8Array([1])]]);
  const writer = c.b.inbound.writable.getWriter();
  const reading = collect(c.b.inbound.readable);
  await writer.write(sealed[0]!);
  await writer.write(sealed[1]!); // CLOSE: terminates the stream
  await assert.rejects(writer.write([sealed[0]![0]!]));
  assert.deepEqual(await reading, [[new Uint8Array([1])]]);
  assert.deepEqual(c.b.remoteClose, { code: 0, reason: "" });
});

Deno.test("stream: an aborted outbound side sends no CLOSE", async () => {
  const { a } = streams();
  const writer = a.outbound.writable.getWriter();
  const reader = a.outbound.readable.getReader();
  const write = writer.write([new Uint8Array([1])]);
  const first = await reader.read();
  await write;
  assert.equal(first.value?.length, 1);
  await writer.abort(new Error("connection lost"));
  await assert.rejects(reader.read());
  assert.equal(a.channel.closeSent, false);
});

Deno.test("stream: an oversized body errors the outbound stream with LimitExceeded", async () => {
  const { a } = channelPair({ maxRecordSize: 100 });
  const stream = new SecureStream(a);
  await assert.rejects(sealBatches(stream, [[new Uint8Array(200)]]), { code: "LimitExceeded" });
});
