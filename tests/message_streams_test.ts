/**
 * The stages of a session (packets, records, messages) as the runtime uses them and as Web
 * Streams, and a connection's messages as a readable/writable pair.
 */

import assert from "node:assert/strict";
import type { BodyCompressor } from "../src/core/batch.ts";
import { PacketDecoder, PacketDecoderStream } from "../src/core/codec.ts";
import type { Message } from "../src/core/message.ts";
import { encodePacket } from "../src/core/packet.ts";
import { ProtocolError } from "../src/errors.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { CloseCode } from "../src/secure/channel.ts";
import { MessageDecoderStream } from "../src/secure/message_decoder_stream.ts";
import { MessageEncoderStream } from "../src/secure/message_encoder_stream.ts";
import { RecordDecoder } from "../src/secure/record_decoder.ts";
import { RECORD_TARGET, RecordEncoder } from "../src/secure/record_encoder.ts";
import { Connection } from "../src/service/connection.ts";
import { serve } from "../src/service/daemon.ts";
import { FrameReader } from "../src/service/frame_reader.ts";
import { memoryConnPair } from "../src/transport/memory_conn.ts";
import { channelPair } from "./_secure_helpers.ts";
import { rawSecurePeer } from "./_hostile_peer.ts";
import { plaintextPair, portOf, waitFor } from "./_service_helpers.ts";

function custom(i: number, size: number): Message {
  const payload = new Uint8Array(size).fill(i & 0xff);
  new DataView(payload.buffer).setUint32(0, i);
  return { type: "custom", command: "DATA", payload };
}

function indexOf(message: Message): number {
  assert.equal(message.type, "custom");
  const { payload } = message as Extract<Message, { type: "custom" }>;
  return new DataView(payload.buffer, payload.byteOffset).getUint32(0);
}

/** Decodes every message in `bytes` with the runtime's stages. */
function decodeAll(bytes: Uint8Array, decoder: RecordDecoder): { packets: number; out: Message[] } {
  const packets = new PacketDecoder().push(bytes);
  const out: Message[] = [];
  for (let next = 0; next < packets.length;) {
    next = decoder.decode(packets, next);
    while (decoder.pending) out.push(decoder.take());
  }
  return { packets: packets.length, out };
}

async function collect(stream: ReadableStream<Message[]>): Promise<Message[]> {
  return (await Array.fromAsync(stream)).flat();
}

Deno.test("record stages: a turn larger than one record is grouped into records of at most 256 KiB, plaintext and secure", () => {
  const messages = Array.from({ length: 700 }, (_, i) => custom(i, 1024));
  for (const secure of [false, true]) {
    const { a, b } = channelPair();
    const encoder = new RecordEncoder({ channel: secure ? a : null });
    const bytes = encoder.encode(messages);
    const { packets, out } = decodeAll(bytes, new RecordDecoder({ channel: secure ? b : null }));
    // 700 entries of ~1 KiB: at least ceil(700 KiB / 256 KiB) = 3 records, in one buffer.
    assert.ok(packets >= 3, `${packets} packets`);
    assert.ok(bytes.length / packets <= RECORD_TARGET + 64);
    assert.deepEqual(out.map(indexOf), messages.map(indexOf));
  }
});

Deno.test("record stages: the compressor path and a small send limit keep order and the limit", () => {
  const calls: number[] = [];
  const compressor: BodyCompressor = {
    compress(body) {
      calls.push(body.length);
      return { id: 0, body };
    },
  };
  const { a, b } = channelPair();
  const encoder = new RecordEncoder({ channel: a, maxPayloadSize: 4096, compressor });
  const messages = Array.from({ length: 20 }, (_, i) => custom(i, 1000));
  const bytes = encoder.encode(messages);
  const packets = new PacketDecoder({ maxPayloadSize: 4096 }).push(bytes);
  assert.ok(packets.length >= 5, "at most 4 entries of 1 KiB per 4 KiB record");
  assert.equal(calls.length, 20, "every body went through the compressor");
  const { out } = decodeAll(bytes, new RecordDecoder({ channel: b }));
  assert.deepEqual(out.map(indexOf), messages.map(indexOf));
  assert.throws(
    () => encoder.encode([custom(0, 5000)]),
    (e: unknown) => e instanceof ProtocolError && e.code === "OversizedPacket",
  );
  assert.ok(encoder.fits(encoder.maxMessageSize));
  assert.ok(!encoder.fits(encoder.maxMessageSize + 1));
});

Deno.test("record stages: without a host the decoder refuses an empty record and a version-1 packet", () => {
  const decoder = new RecordDecoder({ channel: null });
  assert.throws(
    () => decoder.decode([{ version: 2, payload: new Uint8Array(0) }], 0),
    (e: unknown) => e instanceof ProtocolError && e.code === "PolicyViolation",
  );
  assert.throws(
    () => decoder.decode([{ version: 1, payload: new Uint8Array([0, 1, 0]) }], 0),
    (e: unknown) => e instanceof ProtocolError && e.code === "UnsupportedVersion",
  );
});

Deno.test("message streams: secure round trip through the stages, the CLOSE ends the readable side", async () => {
  const { a, b } = channelPair();
  const batches = [[{ type: "ping" }], Array.from({ length: 300 }, (_, i) => custom(i, 1024))];
  const decoder = new MessageDecoderStream({ channel: b });
  const received = await collect(
    ReadableStream.from(batches as Message[][])
      .pipeThrough(new MessageEncoderStream({ channel: a, close: { code: 1, reason: "bye" } }))
      .pipeThrough(new PacketDecoderStream())
      .pipeThrough(decoder),
  );
  assert.deepEqual(received[0], { type: "ping" });
  assert.deepEqual(received.slice(1).map(indexOf), [...Array(300).keys()]);
  assert.deepEqual(decoder.remoteClose, { code: 1, reason: "bye" });
  assert.equal(a.closeSent, true);
});

Deno.test("message streams: a secure stream that ends without CLOSE errors with Truncated", async () => {
  const { a, b } = channelPair();
  const stream = ReadableStream.from([[{ type: "ping" }] as Message[]])
    .pipeThrough(new MessageEncoderStream({ channel: a, close: false }))
    .pipeThrough(new PacketDecoderStream())
    .pipeThrough(new MessageDecoderStream({ channel: b }));
  await assert.rejects(
    collect(stream),
    (e: unknown) => e instanceof ProtocolError && e.code === "Truncated",
  );
});

Deno.test("message streams: a record sealed with another key errors the stream with AuthenticationFailed", async () => {
  const one = channelPair();
  const other = channelPair();
  const stream = ReadableStream.from([[{ type: "ping" }] as Message[]])
    .pipeThrough(new MessageEncoderStream({ channel: other.a }))
    .pipeThrough(new PacketDecoderStream())
    .pipeThrough(new MessageDecoderStream({ channel: one.b }));
  await assert.rejects(
    collect(stream),
    (e: unknown) => e instanceof ProtocolError && e.code === "AuthenticationFailed",
  );
});

Deno.test("message streams: plaintext farewell is a disconnect; close: false appends nothing; bad close arguments throw", async () => {
  const bytes = async (options: ConstructorParameters<typeof MessageEncoderStream>[0]) =>
    await Array.fromAsync(
      ReadableStream.from([{ type: "ping" } as Message]).pipeThrough(
        new MessageEncoderStream(options),
      ),
    );
  const plain = await bytes({});
  assert.equal(plain.length, 2);
  const farewell = new PacketDecoder().push(plain[1]!);
  const decoder = new RecordDecoder({ channel: null });
  decoder.decode(farewell, 0);
  assert.deepEqual(decoder.take(), { type: "disconnect" });
  assert.equal((await bytes({ close: false })).length, 1);
  assert.throws(() => new MessageEncoderStream({ close: { code: 70_000 } }), RangeError);
  assert.throws(() => new MessageEncoderStream({ close: { reason: "x".repeat(124) } }), RangeError);
});

Deno.test("message streams: a client made of the stages alone talks to the daemon over TCP (Noise NK)", async () => {
  await using server = await serve(
    { address: "127.0.0.1:0" },
    registerStandardHandlers(new Dispatcher()),
  );
  const peer = await rawSecurePeer(portOf(server.addr), server.publicKey!);
  try {
    const decoder = new MessageDecoderStream({ channel: peer.channel });
    const inbound = peer.conn.readable
      .pipeThrough(new PacketDecoderStream())
      .pipeThrough(decoder);
    const encoder = new MessageEncoderStream({ channel: peer.channel });
    const piping = encoder.readable.pipeTo(peer.conn.writable, { preventClose: true });
    const writer = encoder.writable.getWriter();
    await writer.write([
      { type: "request", id: 7, message: { type: "echo", text: "through streams" } },
      { type: "request", id: 8, message: { type: "ping" } },
    ]);
    const replies: Message[] = [];
    const reader = inbound.getReader();
    while (replies.length < 2) {
      const { value, done } = await reader.read();
      assert.ok(!done, "the server answered before closing");
      replies.push(...value);
    }
    assert.deepEqual(replies, [
      { type: "response", id: 7, message: { type: "echo", text: "through streams" } },
      { type: "response", id: 8, message: { type: "pong" } },
    ]);
    // Closing the writable side sends CLOSE; the server answers with its own and closes.
    await writer.close();
    await piping;
    const { done } = await reader.read();
    assert.ok(done);
    assert.deepEqual(decoder.remoteClose, { code: CloseCode.Normal, reason: "peer closed" });
    await waitFor(() => server.connections.size === 0, 5000, "the server closed its side");
  } finally {
    try {
      peer.conn.close();
    } catch {
      // Closed already by the finished stream.
    }
  }
});

function bareConnection(
  conn: Deno.Conn,
  options: { maxOutboundBytes?: number } = {},
): Connection {
  return new Connection(
    conn,
    new FrameReader(conn),
    { channel: null, pattern: "plaintext", features: 0, pinned: false },
    { role: "client", ...options },
  );
}

Deno.test("Connection.writable pauses a producer at half of maxOutboundBytes instead of refusing; close() flushes", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 16 * 1024 });
  const connection = bareConnection(a, { maxOutboundBytes: 64 * 1024 });
  try {
    b.pauseRead();
    const writer = connection.writable.getWriter();
    let written = 0;
    const producing = (async () => {
      for (let i = 0; i < 200; i++) {
        await writer.write(custom(i, 1024));
        written++;
      }
      await writer.close();
    })();
    // The peer reads nothing: the producer stops near the bound, and nothing is refused.
    await waitFor(() => connection.outboundBytes >= 32 * 1024, 5000, "the outbox filled");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(written < 200, `all ${written} writes completed while the peer read nothing`);
    assert.ok(connection.outboundBytes <= 64 * 1024, `${connection.outboundBytes} bytes queued`);
    // The peer reads everything: the producer finishes and every message arrives in order.
    b.resumeRead();
    const decoder = new RecordDecoder({ channel: null });
    const reader = new FrameReader(b);
    const received: number[] = [];
    while (received.length < 200) {
      const packets = await reader.read();
      assert.ok(packets !== null);
      for (let next = 0; next < packets.length;) {
        next = decoder.decode(packets, next);
        while (decoder.pending) received.push(indexOf(decoder.take()));
      }
    }
    await producing;
    assert.deepEqual(received, [...Array(200).keys()]);
    assert.equal(connection.outboundBytes, 0, "closing the writable waited for the write");
    assert.equal(connection.isClosed, false, "the connection stays open");
  } finally {
    connection.abort();
    await connection.closed();
    b.close();
  }
});

Deno.test("Connection.readable: batches of received messages, closes on a clean close", async () => {
  const dispatcher = new Dispatcher().register("ECHO_BYTES", (message) => message);
  await using pair = await plaintextPair(dispatcher);
  const connection = pair.client.connection!;
  const writer = connection.writable.getWriter();
  await writer.write(
    Array.from({ length: 50 }, (_, i): Message => ({
      type: "custom",
      command: "ECHO_BYTES",
      payload: new Uint8Array([i]),
    })),
  );
  writer.releaseLock();
  const reader = connection.readable.getReader();
  const received: number[] = [];
  while (received.length < 50) {
    const { value } = await reader.read();
    for (const m of value!) received.push((m as Extract<Message, { type: "custom" }>).payload[0]!);
  }
  assert.deepEqual(received, [...Array(50).keys()]);
  await connection.close();
  assert.deepEqual(await reader.read(), { done: true, value: undefined });
});

Deno.test("Connection.readable errors with the connection's failure; cancelling it keeps the connection open", async () => {
  await using pair = await plaintextPair(registerStandardHandlers(new Dispatcher()));
  const connection = pair.client.connection!;
  const reader = connection.readable.getReader();
  const pending = reader.read();
  await reader.cancel("not interested");
  assert.deepEqual(await pending, { done: true, value: undefined });
  assert.equal(connection.isClosed, false);
  assert.deepEqual(await connection.request({ type: "echo", text: "still" }), {
    type: "echo",
    text: "still",
  });

  const [a, b] = memoryConnPair();
  const bare = bareConnection(a);
  const failing = bare.readable.getReader().read();
  // A packet whose batch is malformed: the connection fails with the decoder's error.
  await b.write(encodePacket({ version: 2, payload: new Uint8Array([0, 9, 1]) }));
  await assert.rejects(failing, (e: unknown) => e instanceof ProtocolError);
  const error = await bare.closed();
  assert.ok(error instanceof ProtocolError);
  b.close();
});

Deno.test("message streams: one stage implementation, so the stream and the runtime write the same bytes", async () => {
  // A connection in plaintext mode writes exactly what the encoder stream produces for the
  // same turn (same grouping, same headers): both use RecordEncoder.
  const messages = Array.from({ length: 10 }, (_, i) => custom(i, 100));
  const [streamBytes] = await Array.fromAsync(
    ReadableStream.from([messages]).pipeThrough(new MessageEncoderStream({ close: false })),
  );
  const [a, b] = memoryConnPair();
  const connection = bareConnection(a);
  try {
    for (const message of messages) connection.send(message);
    await connection.flush();
    const buffer = new Uint8Array(streamBytes!.length + 1);
    const n = await b.read(buffer);
    assert.deepEqual(buffer.subarray(0, n!), streamBytes);
  } finally {
    connection.abort();
    await connection.closed();
    b.close();
  }
});
