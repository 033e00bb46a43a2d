/**
 * The zero-copy paths (issue 12, item 2): records sealed in place in the outgoing packet,
 * KEY_UPDATE records put in front of the record they precede, large packets read straight into
 * a buffer of their final size, and the slab that small packets are built in.
 */

import assert from "node:assert/strict";
import { encodePacket, encodePackets, PacketDecoder } from "../src/core/mod.ts";
import type { Message } from "../src/core/message.ts";
import { Slab } from "../src/core/slab.ts";
import { nativeProvider, portableProvider } from "../src/secure/crypto.ts";
import { hybridProvider, initCrypto, SODIUM_SEAL_MAX } from "../src/secure/default_provider.ts";
import { CipherState } from "../src/secure/noise/mod.ts";
import { SecureChannel } from "../src/secure/channel.ts";
import { RecordDecoder } from "../src/secure/record_decoder.ts";
import { RecordEncoder } from "../src/secure/record_encoder.ts";
import { FrameReader, PREALLOCATE_LIMIT } from "../src/service/frame_reader.ts";
import { memoryConnPair } from "../src/transport/memory_conn.ts";

await initCrypto();

/** Bytes that differ from one position to the next (getRandomValues stops at 64 KiB). */
function pattern(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 131 + (i >>> 8)) & 0xff;
  return out;
}

const key = crypto.getRandomValues(new Uint8Array(32));
const nonce = crypto.getRandomValues(new Uint8Array(12));

Deno.test("zero copy: encryptInPlace gives the bytes of encrypt for the native and hybrid providers, around the libsodium crossover", () => {
  for (const provider of [nativeProvider, hybridProvider]) {
    for (const size of [0, 1, 63, SODIUM_SEAL_MAX, SODIUM_SEAL_MAX + 1, 70_000]) {
      for (const ad of [new Uint8Array(0), new Uint8Array([1, 2, 3])]) {
        const plaintext = pattern(size);
        const buffer = new Uint8Array(size + 16 + 5).fill(0xee);
        buffer.set(plaintext);
        provider.encryptInPlace!(key, nonce, ad, buffer, size);
        assert.deepEqual(
          buffer.subarray(0, size + 16),
          provider.encrypt(key, nonce, ad, plaintext),
          `${provider.name} ${size}`,
        );
        // Nothing past the tag is touched.
        assert.deepEqual([...buffer.subarray(size + 16)], [0xee, 0xee, 0xee, 0xee, 0xee]);
      }
    }
  }
});

Deno.test("zero copy: encryptInPlace refuses a buffer with no room for the tag", () => {
  for (const provider of [nativeProvider, hybridProvider]) {
    assert.throws(
      () => provider.encryptInPlace!(key, nonce, new Uint8Array(0), new Uint8Array(20), 5),
      RangeError,
    );
  }
  assert.throws(
    () =>
      new CipherState(key, portableProvider).encryptInPlace(
        new Uint8Array(0),
        new Uint8Array(20),
        5,
      ),
    RangeError,
  );
});

Deno.test("zero copy: a cipher state seals in place with or without a provider method, and the peer opens it", () => {
  for (const provider of [nativeProvider, hybridProvider, portableProvider]) {
    const sender = new CipherState(key, provider);
    const receiver = new CipherState(key, provider);
    for (const size of [0, 100, 5000]) {
      const plaintext = crypto.getRandomValues(new Uint8Array(size));
      const buffer = new Uint8Array(size + 16);
      buffer.set(plaintext);
      assert.equal(sender.encryptInPlace(new Uint8Array(0), buffer, size), size + 16);
      assert.deepEqual(receiver.decryptWithAd(new Uint8Array(0), buffer), plaintext);
    }
    assert.equal(sender.nonce, 3);
  }
  // Without a key the plaintext stays as it is (Noise's first handshake messages).
  const empty = new CipherState();
  const buffer = Uint8Array.of(1, 2, 3);
  assert.equal(empty.encryptInPlace(new Uint8Array(0), buffer, 3), 3);
  assert.deepEqual([...buffer], [1, 2, 3]);
});

function channels(rekeyAfterRecords?: number): { a: SecureChannel; b: SecureChannel } {
  const k1 = crypto.getRandomValues(new Uint8Array(32));
  const k2 = crypto.getRandomValues(new Uint8Array(32));
  const options = rekeyAfterRecords === undefined
    ? {}
    : { rekeyAfterRecords, minKeyUpdateIntervalMs: 0 };
  return {
    a: new SecureChannel({ send: new CipherState(k1), receive: new CipherState(k2) }, options),
    b: new SecureChannel({ send: new CipherState(k2), receive: new CipherState(k1) }, options),
  };
}

function custom(i: number, size: number): Message {
  const payload = new Uint8Array(size).fill(i & 0xff);
  return { type: "custom", command: `M${i}`, payload };
}

function decodeAll(bytes: Uint8Array, decoder: RecordDecoder): Message[] {
  const packets = new PacketDecoder().push(bytes);
  const out: Message[] = [];
  for (let next = 0; next < packets.length;) {
    next = decoder.decode(packets, next);
    while (decoder.pending) out.push(decoder.take());
  }
  return out;
}

Deno.test("zero copy: a KEY_UPDATE due in the middle of a multi-record write is put in front of its record, and every message arrives", () => {
  // Two records per write: 300 entries of 1 KiB (256 KiB groups); the key changes every 3 records.
  const { a, b } = channels(3);
  const encoder = new RecordEncoder({ channel: a });
  const decoder = new RecordDecoder({ channel: b });
  const received: string[] = [];
  for (let write = 0; write < 6; write++) {
    const messages = Array.from({ length: 300 }, (_, i) => custom(write * 300 + i, 1024));
    for (const message of decodeAll(encoder.encode(messages), decoder)) {
      assert.equal(message.type, "custom");
      if (message.type === "custom") received.push(message.command);
    }
  }
  assert.equal(received.length, 1800);
  assert.deepEqual(received, Array.from({ length: 1800 }, (_, i) => `M${i}`));
  assert.ok(a.keyUpdatesSent >= 3, `${a.keyUpdatesSent} key updates`);
  assert.equal(b.keyUpdatesReceived, a.keyUpdatesSent);
});

Deno.test("zero copy: small packets come from a shared slab and never overlap", () => {
  const { a, b } = channels();
  const encoder = new RecordEncoder({ channel: a });
  const outputs = Array.from({ length: 50 }, (_, i) => encoder.encode([custom(i, 40)]));
  // Views of one block, side by side, each intact after the others were written.
  assert.ok(outputs.every((bytes) => bytes.buffer === outputs[0]!.buffer));
  for (let i = 1; i < outputs.length; i++) {
    assert.equal(outputs[i]!.byteOffset, outputs[i - 1]!.byteOffset + outputs[i - 1]!.length);
  }
  const decoder = new RecordDecoder({ channel: b });
  outputs.forEach((bytes, i) => {
    const [message] = decodeAll(bytes, decoder);
    assert.equal(message?.type === "custom" && message.command, `M${i}`);
  });
});

Deno.test("zero copy: Slab.alloc hands out fresh zeroed regions, and a new array above an eighth of the block", () => {
  const slab = new Slab(1024);
  const first = slab.alloc(100);
  first.fill(1);
  const second = slab.alloc(100);
  assert.deepEqual([...second], new Array(100).fill(0));
  assert.equal(second.byteOffset, first.byteOffset + 100);
  const large = slab.alloc(129);
  assert.equal(large.byteOffset, 0);
  assert.equal(large.buffer.byteLength, 129);
  // A block that is full is replaced, never reused.
  const views = Array.from({ length: 12 }, () => slab.alloc(100));
  assert.notEqual(views[11]!.buffer, first.buffer);
  assert.deepEqual([...views[11]!], new Array(100).fill(0));
});

Deno.test("zero copy: the decoder preallocates a packet's final size only after a sixteenth of it arrived, and only below the limit", () => {
  const payload = pattern(200_000);
  const bytes = encodePacket({ version: 2, payload });
  // Below a sixteenth: grows with what arrived.
  const slow = new PacketDecoder();
  slow.preallocateLimit = PREALLOCATE_LIMIT;
  slow.push(bytes.subarray(0, 1000));
  assert.ok(slow.directBuffer(1)!.length < 10_000);
  // Above a sixteenth: the final size at once.
  const fast = new PacketDecoder();
  fast.preallocateLimit = PREALLOCATE_LIMIT;
  fast.push(bytes.subarray(0, 20_009));
  const target = fast.directBuffer(1)!;
  assert.equal(target.length, 200_000 - 20_000);
  target.set(bytes.subarray(20_009));
  const [packet] = fast.commitDirect(target.length);
  assert.deepEqual(packet!.payload, payload);
  // Above the limit: growth with what arrived, whatever the share.
  const capped = new PacketDecoder();
  capped.preallocateLimit = 100_000;
  capped.push(bytes.subarray(0, 20_009));
  // 20,000 bytes arrived: the buffer doubles to 40,000 instead of taking the final 200,000.
  assert.equal(capped.directBuffer(1)!.length, 20_000);
  assert.throws(() => (fast.preallocateLimit = -1), RangeError);
});

Deno.test("zero copy: commitDirect refuses more bytes than the direct buffer held, and directBuffer needs a packet in progress", () => {
  const decoder = new PacketDecoder();
  assert.equal(decoder.directBuffer(1), undefined);
  assert.throws(() => decoder.commitDirect(1), RangeError);
  decoder.push(encodePacket({ version: 2, payload: new Uint8Array(50_000) }).subarray(0, 100));
  assert.equal(decoder.directBuffer(60_000), undefined, "fewer bytes missing than the minimum");
  const target = decoder.directBuffer(1)!;
  assert.throws(() => decoder.commitDirect(target.length + 1), RangeError);
});

Deno.test("zero copy: the frame reader reads large packets in pieces straight into their buffers, with small packets around them", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 8 * 1024 });
  const reader = new FrameReader(b);
  reader.startSession(16 * 1024 * 1024);
  const sizes = [10, 300_000, 5, 70_000, 2_000_000, 1];
  const payloads = sizes.map((size, i) => new Uint8Array(size).fill(i + 1));
  const bytes = encodePackets(payloads.map((payload) => ({ version: 2, payload })));
  const writing = (async () => {
    // Uneven pieces, so that headers and payloads straddle reads.
    for (let offset = 0; offset < bytes.length;) {
      const end = Math.min(bytes.length, offset + 7_777);
      offset += await a.write(bytes.subarray(offset, end));
    }
    a.close();
  })();
  const received: Uint8Array[] = [];
  for (let batch = await reader.read(); batch !== null; batch = await reader.read()) {
    for (const packet of batch) received.push(packet.payload.slice());
  }
  await writing;
  b.close();
  assert.deepEqual(received.map((p) => p.length), sizes);
  received.forEach((payload, i) =>
    assert.ok(payload.every((byte) => byte === i + 1), `packet ${i}`)
  );
});

Deno.test("zero copy: a stream that ends inside a directly read packet is truncated", async () => {
  const [a, b] = memoryConnPair();
  const reader = new FrameReader(b);
  reader.startSession(16 * 1024 * 1024);
  const bytes = encodePacket({ version: 2, payload: new Uint8Array(200_000) });
  const writing = (async () => {
    for (let offset = 0; offset < 150_000;) {
      offset += await a.write(bytes.subarray(offset, 150_000));
    }
    a.close();
  })();
  await assert.rejects(
    async () => {
      while ((await reader.read()) !== null) { /* keep reading */ }
    },
    (error: Error) =>
      error.name === "ProtocolError" && /Truncated|ended inside/.test(error.message),
  );
  await writing;
  b.close();
});
