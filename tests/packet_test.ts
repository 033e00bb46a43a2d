import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodePacket,
  encodePacket,
  encodePackets,
  HEADER_SIZE,
  MAGIC_BYTES,
  MAX_PAYLOAD_SIZE,
  PROTOCOL_VERSION,
  readPacketHeader,
} from "../src/core/packet.ts";
import { ProtocolError } from "../src/errors.ts";

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ProtocolError, `expected ProtocolError, got ${error}`);
    return error.code;
  }
  assert.fail("expected a throw");
}

Deno.test("packet constants match the protocol", () => {
  assert.deepEqual([...MAGIC_BYTES], [0x4e, 0x50, 0x52, 0x4f]);
  assert.equal(PROTOCOL_VERSION, 2);
  assert.equal(HEADER_SIZE, 9);
  assert.equal(MAX_PAYLOAD_SIZE, 16 * 1024 * 1024);
});

Deno.test("decodePacket parses the original's documented version 1 example", () => {
  const bytes = new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 0x01, 0, 0, 0, 5, 1, 2, 3, 4, 5]);
  const packet = decodePacket(bytes);
  assert.equal(packet.version, 1);
  assert.deepEqual([...packet.payload], [1, 2, 3, 4, 5]);
});

Deno.test("encodePacket writes magic, version, big-endian length and payload", () => {
  const bytes = encodePacket({ version: 2, payload: new Uint8Array(0x0102) });
  assert.deepEqual([...bytes.subarray(0, 9)], [0x4e, 0x50, 0x52, 0x4f, 2, 0, 0, 1, 2]);
  assert.equal(bytes.length, 9 + 0x0102);
  const v1 = encodePacket({ version: 1, payload: new Uint8Array([7]) });
  assert.equal(v1[4], 1);
});

Deno.test("decodePacket returns a zero-copy view of the payload", () => {
  const bytes = encodePacket({ version: 2, payload: new Uint8Array(1024 * 1024).fill(7) });
  const packet = decodePacket(bytes);
  assert.equal(packet.payload.buffer, bytes.buffer);
  assert.equal(packet.payload.byteOffset, HEADER_SIZE);
});

Deno.test("decodePacket rejects bad input with typed errors", () => {
  assert.equal(code(() => decodePacket(new Uint8Array(3))), "Truncated");
  const good = encodePacket({ version: 2, payload: new Uint8Array([1, 2, 3]) });
  assert.equal(code(() => decodePacket(good.subarray(0, good.length - 1))), "Truncated");
  const trailing = new Uint8Array(good.length + 1);
  trailing.set(good);
  assert.equal(code(() => decodePacket(trailing)), "InvalidHeader");
  const badMagic = good.slice();
  badMagic[0] = 0x47;
  assert.equal(code(() => decodePacket(badMagic)), "InvalidHeader");
  for (const version of [0, 3, 255]) {
    const badVersion = good.slice();
    badVersion[4] = version;
    assert.equal(code(() => decodePacket(badVersion)), "UnsupportedVersion");
  }
  const huge = new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 2, 0xff, 0xff, 0xff, 0xff]);
  assert.equal(code(() => decodePacket(huge)), "OversizedPacket");
  assert.equal(code(() => readPacketHeader(huge, 0, MAX_PAYLOAD_SIZE)), "OversizedPacket");
});

Deno.test("the payload limit is configurable on both sides", () => {
  const bytes = encodePacket({ version: 2, payload: new Uint8Array(100) });
  assert.equal(code(() => decodePacket(bytes, { maxPayloadSize: 99 })), "OversizedPacket");
  assert.equal(decodePacket(bytes, { maxPayloadSize: 100 }).payload.length, 100);
  assert.equal(
    code(() => encodePacket({ version: 2, payload: new Uint8Array(100) }, { maxPayloadSize: 10 })),
    "OversizedPacket",
  );
  assert.throws(() => decodePacket(bytes, { maxPayloadSize: -1 }), RangeError);
  assert.throws(() => encodePacket({ version: 3, payload: new Uint8Array() }), RangeError);
});

Deno.test("encodePackets concatenates a batch into one buffer", () => {
  const packets = [1, 2, 3].map((n) => ({ version: 2, payload: new Uint8Array(n).fill(n) }));
  const bytes = encodePackets(packets);
  let offset = 0;
  for (const packet of packets) {
    const size = HEADER_SIZE + packet.payload.length;
    assert.deepEqual(decodePacket(bytes.subarray(offset, offset + size)), packet);
    offset += size;
  }
  assert.equal(offset, bytes.length);
});

Deno.test("property: packets round-trip through encode and decode", () => {
  fc.assert(
    fc.property(fc.constantFrom(1, 2), fc.uint8Array({ maxLength: 2048 }), (version, payload) => {
      const decoded = decodePacket(encodePacket({ version, payload }));
      assert.equal(decoded.version, version);
      assert.deepEqual(decoded.payload, payload);
    }),
    { numRuns: 500 },
  );
});

Deno.test("property: random bytes decode to a packet or a ProtocolError, nothing else", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (bytes, withMagic) => {
      if (withMagic && bytes.length >= 4) bytes.set(MAGIC_BYTES);
      try {
        decodePacket(bytes);
      } catch (error) {
        assert.ok(error instanceof ProtocolError);
      }
    }),
    { numRuns: 2000 },
  );
});
