import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type BodyCompressor,
  type BodyDecompressor,
  decodeBatch,
  encodeBatch,
} from "../src/core/batch.ts";
import { compressionFeatureBit } from "../src/core/compression_ids.ts";
import {
  decodeMessage,
  encodedMessageSize,
  encodeMessage,
  type Message,
  opcodeOf,
} from "../src/core/message.ts";
import { MAX_PAYLOAD_SIZE } from "../src/core/packet.ts";
import { ProtocolError } from "../src/errors.ts";

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ProtocolError, `expected ProtocolError, got ${error}`);
    return error.code;
  }
  assert.fail("expected a throw");
}

const command = fc.string({ minLength: 1, maxLength: 20 }).filter((s) =>
  !["PING", "PONG", "ECHO", "DISCONNECT", "UNKNOWN", "RESPONSE", "ERROR", "CANCEL"].includes(s)
);
const id = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const plain: fc.Arbitrary<Message> = fc.oneof(
  fc.constant<Message>({ type: "ping" }),
  fc.constant<Message>({ type: "pong" }),
  fc.constant<Message>({ type: "disconnect" }),
  fc.string({ unit: "grapheme", maxLength: 50 }).map((text): Message => ({ type: "echo", text })),
  fc.record({ command, payload: fc.uint8Array({ maxLength: 100 }) }).map((r): Message => ({
    type: "custom",
    ...r,
  })),
  fc.integer({ min: 0x20, max: 0xff }).map((tag): Message => ({ type: "unknown", tag })),
);
const anyMessage: fc.Arbitrary<Message> = fc.oneof(
  plain,
  fc.record({ id, message: plain, deadline: fc.option(fc.nat(), { nil: undefined }) }).map(
    ({ id, message, deadline }): Message =>
      deadline === undefined
        ? { type: "request", id, message }
        : { type: "request", id, deadline, message },
  ),
  fc.record({ id, message: plain }).map((r): Message => ({ type: "response", ...r })),
  fc.record({ id, code: fc.integer({ min: 0, max: 0xffff_ffff }), text: fc.string() }).map(
    (r): Message => ({ type: "error", ...r }),
  ),
  id.map((id): Message => ({ type: "cancel", id })),
);

Deno.test("messages have the documented bytes", () => {
  assert.equal(hex(encodeMessage({ type: "ping" })), "01");
  assert.equal(hex(encodeMessage({ type: "pong" })), "02");
  assert.equal(hex(encodeMessage({ type: "echo", text: "hi" })), "03 02 68 69");
  assert.equal(hex(encodeMessage({ type: "disconnect" })), "04");
  assert.equal(
    hex(encodeMessage({ type: "custom", command: "GET", payload: new Uint8Array([9]) })),
    "05 03 47 45 54 01 09",
  );
  assert.equal(
    hex(encodeMessage({ type: "request", id: 300, message: { type: "ping" } })),
    "10 ac 02 00 01",
  );
  assert.equal(
    hex(encodeMessage({ type: "request", id: 1, deadline: 5000, message: { type: "ping" } })),
    "10 01 89 27 01",
  );
  assert.equal(
    hex(encodeMessage({ type: "response", id: 1, message: { type: "pong" } })),
    "11 01 02",
  );
  assert.equal(hex(encodeMessage({ type: "error", id: 2, code: 1, text: "x" })), "12 02 01 01 78");
  assert.equal(hex(encodeMessage({ type: "cancel", id: 2 })), "13 02");
  assert.equal(
    hex(encodeBatch([{ type: "ping" }, { type: "echo", text: "a" }])),
    "00 01 01 00 03 03 01 61",
  );
});

Deno.test("encodedMessageSize agrees with encodeMessage, including multi-byte UTF-8", () => {
  for (const text of ["", "a", "é", "€", "😀", "a\u{1F600}b", "\ud800", "x\udc00y"]) {
    const message: Message = { type: "echo", text };
    assert.equal(encodedMessageSize(message), encodeMessage(message).length, text);
  }
});

Deno.test("unknown tags decode to unknown; malformed bodies are InvalidMessage", () => {
  assert.deepEqual(decodeMessage(new Uint8Array([0x7f, 1, 2, 3])), { type: "unknown", tag: 0x7f });
  assert.deepEqual(decodeMessage(new Uint8Array([0x00])), { type: "unknown", tag: 0 });
  assert.equal(errorCode(() => decodeMessage(new Uint8Array())), "InvalidMessage");
  assert.equal(errorCode(() => decodeMessage(new Uint8Array([0x03, 5, 0x61]))), "InvalidMessage");
  assert.equal(errorCode(() => decodeMessage(new Uint8Array([0x01, 0]))), "InvalidMessage");
  // Invalid UTF-8.
  assert.equal(errorCode(() => decodeMessage(new Uint8Array([0x03, 1, 0xff]))), "InvalidMessage");
  // Non-minimal LEB128.
  assert.equal(
    errorCode(() => decodeMessage(new Uint8Array([0x13, 0x81, 0x00]))),
    "InvalidMessage",
  );
  // Id 0 and ids beyond 2^53 - 1.
  assert.equal(errorCode(() => decodeMessage(new Uint8Array([0x13, 0x00]))), "InvalidMessage");
  assert.equal(
    errorCode(() =>
      decodeMessage(new Uint8Array([0x13, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))
    ),
    "InvalidMessage",
  );
  // Nested numbered messages.
  assert.equal(
    errorCode(() => decodeMessage(new Uint8Array([0x10, 1, 0, 0x13, 1]))),
    "InvalidMessage",
  );
  // Reserved custom command.
  assert.equal(
    errorCode(() => decodeMessage(new Uint8Array([0x05, 4, 0x50, 0x49, 0x4e, 0x47, 0]))),
    "InvalidMessage",
  );
});

Deno.test("invalid messages are refused at encoding with built-in errors", () => {
  assert.throws(
    () => encodeMessage({ type: "custom", command: "PING", payload: new Uint8Array() }),
    TypeError,
  );
  assert.throws(() => encodeMessage({ type: "cancel", id: 0 }), RangeError);
  assert.throws(() => encodeMessage({ type: "cancel", id: 2 ** 53 }), RangeError);
  assert.throws(() => encodeMessage({ type: "error", id: 1, code: -1, text: "" }), RangeError);
  assert.throws(
    () => encodeMessage({ type: "request", id: 1, message: { type: "cancel", id: 1 } }),
    TypeError,
  );
  assert.throws(() => encodeMessage({ type: "unknown", tag: 0x01 }), TypeError);
});

Deno.test("opcodeOf names built-ins, custom commands and requests by their content", () => {
  assert.equal(opcodeOf({ type: "ping" }), "PING");
  assert.equal(opcodeOf({ type: "pong" }), "PONG");
  assert.equal(opcodeOf({ type: "echo", text: "" }), "ECHO");
  assert.equal(opcodeOf({ type: "disconnect" }), "DISCONNECT");
  assert.equal(opcodeOf({ type: "unknown", tag: 99 }), "UNKNOWN");
  assert.equal(opcodeOf({ type: "custom", command: "X", payload: new Uint8Array() }), "X");
  assert.equal(opcodeOf({ type: "request", id: 1, message: { type: "ping" } }), "PING");
  assert.equal(opcodeOf({ type: "response", id: 1, message: { type: "pong" } }), "RESPONSE");
  assert.equal(opcodeOf({ type: "error", id: 1, code: 1, text: "" }), "ERROR");
  assert.equal(opcodeOf({ type: "cancel", id: 1 }), "CANCEL");
});

Deno.test("batches use the compressor and decompressor, and refuse unnegotiated compression", () => {
  const compressor: BodyCompressor = {
    compress: (body) => body.length > 3 ? { id: 1, body: body.slice().reverse() } : { id: 0, body },
  };
  const decompressor: BodyDecompressor = {
    decompress: (id, body) => {
      if (id !== 1) throw new ProtocolError("PolicyViolation", "not negotiated");
      return body.slice().reverse();
    },
  };
  const messages: Message[] = [{ type: "ping" }, { type: "echo", text: "hello world" }];
  const bytes = encodeBatch(messages, { compressor });
  assert.equal(bytes[0], 0);
  assert.equal(bytes[3], 1);
  assert.deepEqual(decodeBatch(bytes, { decompressor }), messages);
  assert.equal(errorCode(() => decodeBatch(bytes)), "PolicyViolation");
  const zstd = bytes.slice();
  zstd[3] = 2;
  assert.equal(errorCode(() => decodeBatch(zstd, { decompressor })), "PolicyViolation");
  const reserved = bytes.slice();
  reserved[0] = 0x80;
  assert.equal(errorCode(() => decodeBatch(reserved)), "InvalidMessage");
  assert.equal(compressionFeatureBit("lz4"), 1);
  assert.equal(compressionFeatureBit("zstd"), 2);
});

Deno.test("batches are bounded in message count", () => {
  const bytes = encodeBatch(Array.from({ length: 11 }, (): Message => ({ type: "ping" })));
  assert.equal(decodeBatch(bytes, { maxMessages: 11 }).length, 11);
  assert.equal(errorCode(() => decodeBatch(bytes, { maxMessages: 10 })), "LimitExceeded");
});

Deno.test("decoded byte fields do not alias the input", () => {
  const bytes = encodeMessage({ type: "custom", command: "C", payload: new Uint8Array([1, 2]) });
  const message = decodeMessage(bytes);
  bytes.fill(0);
  assert.deepEqual(message, { type: "custom", command: "C", payload: new Uint8Array([1, 2]) });
});

Deno.test("property: messages round-trip", () => {
  fc.assert(
    fc.property(anyMessage, (message) => {
      const bytes = encodeMessage(message);
      assert.equal(bytes.length, encodedMessageSize(message));
      const decoded = decodeMessage(bytes);
      if (message.type === "echo") {
        // Lone surrogates are replaced by U+FFFD, as TextEncoder does.
        assert.equal(decoded.type, "echo");
        assert.equal(
          (decoded as { text: string }).text,
          new TextDecoder().decode(new TextEncoder().encode(message.text)),
        );
      } else {
        assert.deepEqual(decoded, message);
      }
    }),
    { numRuns: 1000 },
  );
});

Deno.test("property: batches round-trip", () => {
  fc.assert(
    fc.property(fc.array(anyMessage.filter((m) => m.type !== "echo"), { maxLength: 20 }), (ms) => {
      assert.deepEqual(decodeBatch(encodeBatch(ms)), ms);
    }),
    { numRuns: 500 },
  );
});

Deno.test("property: random bytes decode to messages or a ProtocolError, nothing else", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 128 }), (bytes) => {
      for (const decode of [decodeMessage, (b: Uint8Array) => decodeBatch(b)]) {
        try {
          decode(bytes);
        } catch (error) {
          assert.ok(error instanceof ProtocolError, String(error));
        }
      }
    }),
    { numRuns: 3000 },
  );
});

Deno.test("decodeBatch copies byte fields unless the input is handed over", () => {
  const bytes = encodeBatch([{ type: "custom", command: "X", payload: new Uint8Array([1, 2, 3]) }]);
  const [copied] = decodeBatch(bytes);
  const [viewed] = decodeBatch(bytes, { ownedInput: true });
  if (copied?.type !== "custom" || viewed?.type !== "custom") throw new Error("not custom");
  assert.deepEqual([...copied.payload], [1, 2, 3]);
  assert.deepEqual([...viewed.payload], [1, 2, 3]);
  assert.ok(copied.payload.buffer !== bytes.buffer, "a reused input must not be aliased");
  assert.ok(viewed.payload.buffer === bytes.buffer, "an owned input is not copied");
  bytes[bytes.length - 1] = 9;
  assert.deepEqual([...copied.payload], [1, 2, 3]);
  assert.deepEqual([...viewed.payload], [1, 2, 9]);
});

// ---------------------------------------------------------------------------------------------
// The decoded-size budget of a batch (DecodeBatchOptions.maxDecodedBytes)

/** Algorithm 1 of these tests: the body reversed. Bodies of more than 3 bytes are compressed. */
const reverser: BodyCompressor = {
  compress: (body) => body.length > 3 ? { id: 1, body: body.slice().reverse() } : { id: 0, body },
};

/** The reverse of {@linkcode reverser}, which records the limit of every call. */
function unreverser(
  options: { maxSize?: number; honoursLimit: boolean },
): { decompressor: BodyDecompressor; limits: (number | undefined)[] } {
  const limits: (number | undefined)[] = [];
  const decompressor: BodyDecompressor = {
    decompress(id, body, maxSize) {
      limits.push(maxSize);
      if (id !== 1) throw new ProtocolError("PolicyViolation", "not negotiated");
      const cap = Math.min(
        options.honoursLimit ? maxSize ?? Infinity : Infinity,
        options.maxSize ?? Infinity,
      );
      if (body.length > cap) {
        throw new ProtocolError("LimitExceeded", `Body of "${body.length}" bytes is over "${cap}"`);
      }
      return body.slice().reverse();
    },
  };
  if (options.maxSize !== undefined) Object.assign(decompressor, { maxSize: options.maxSize });
  return { decompressor, limits };
}

/** Three echo messages of 102 bytes: 312 bytes as a batch, compressed or not. */
const hundreds: Message[] = ["a", "b", "c"].map((c): Message => ({
  type: "echo",
  text: c.repeat(100),
}));

function thrown(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ProtocolError, `expected ProtocolError, got ${error}`);
    return error;
  }
  assert.fail("expected a throw");
}

Deno.test("maxDecodedBytes: each compressed entry gets what is left of the budget", () => {
  const bytes = encodeBatch(hundreds, { compressor: reverser });
  assert.equal(bytes.length, 312);
  const { decompressor, limits } = unreverser({ honoursLimit: true });
  assert.deepEqual(decodeBatch(bytes, { decompressor, maxDecodedBytes: 400 }), hundreds);
  // 400 minus the 210 bytes of the other two entries and the headers.
  assert.deepEqual(limits, [190, 190, 190]);
  assert.deepEqual(decodeBatch(bytes, { decompressor, maxDecodedBytes: 312 }), hundreds);
  const error = thrown(() => decodeBatch(bytes, { decompressor, maxDecodedBytes: 311 }));
  assert.equal(error.code, "LimitExceeded");
  assert.equal(
    error.message,
    `Batch decodes to more than the limit "311" bytes: compressed entry "0" does not fit in the "101" bytes left`,
  );
  assert.ok(error.cause instanceof ProtocolError, "the decompressor's refusal is the cause");
});

Deno.test("maxDecodedBytes: a decompressor that ignores its limit is stopped one body late", () => {
  const bytes = encodeBatch(hundreds, { compressor: reverser });
  const { decompressor, limits } = unreverser({ honoursLimit: false });
  const error = thrown(() => decodeBatch(bytes, { decompressor, maxDecodedBytes: 250 }));
  assert.equal(error.code, "LimitExceeded");
  assert.match(error.message, /compressed entry "0" does not fit in the "40" bytes left/);
  assert.deepEqual(limits, [40]);
});

Deno.test("maxDecodedBytes: uncompressed entries count at their size, and alone are not checked", () => {
  const plainBatch = encodeBatch(hundreds);
  assert.deepEqual(decodeBatch(plainBatch, { maxDecodedBytes: 0 }), hundreds);
  const { decompressor } = unreverser({ honoursLimit: true });
  assert.deepEqual(decodeBatch(plainBatch, { decompressor, maxDecodedBytes: 0 }), hundreds);
  // One compressed entry between two plain ones: the budget covers the whole batch.
  const mixed = new Uint8Array(312);
  mixed.set(plainBatch.subarray(0, 104));
  mixed.set(encodeBatch([hundreds[1]!], { compressor: reverser }), 104);
  mixed.set(plainBatch.subarray(208), 208);
  assert.deepEqual(decodeBatch(mixed, { decompressor, maxDecodedBytes: 312 }), hundreds);
  assert.equal(
    errorCode(() => decodeBatch(mixed, { decompressor, maxDecodedBytes: 311 })),
    "LimitExceeded",
  );
});

Deno.test("maxDecodedBytes defaults to the decompressor's maxSize, else the packet limit", () => {
  const bytes = encodeBatch(hundreds, { compressor: reverser });
  const capped = unreverser({ maxSize: 1000, honoursLimit: true });
  decodeBatch(bytes, { decompressor: capped.decompressor });
  assert.deepEqual(capped.limits, [790, 790, 790]);
  const uncapped = unreverser({ honoursLimit: true });
  decodeBatch(bytes, { decompressor: uncapped.decompressor });
  const left = MAX_PAYLOAD_SIZE - 210;
  assert.deepEqual(uncapped.limits, [left, left, left]);
  // With the default budget, a decompressor capped at 50 bytes refuses the batch up front.
  const small = unreverser({ maxSize: 50, honoursLimit: true });
  const early = thrown(() => decodeBatch(bytes, { decompressor: small.decompressor }));
  assert.match(early.message, /limit "50" bytes: compressed entry "0" does not fit in the "0"/);
  assert.deepEqual(small.limits, []);
  // With a larger budget, the decompressor's own cap refuses, and its error is passed through.
  const own = thrown(() =>
    decodeBatch(bytes, { decompressor: small.decompressor, maxDecodedBytes: 1000 })
  );
  assert.equal(own.code, "LimitExceeded");
  assert.equal(own.message, `Body of "102" bytes is over "50"`);
});

Deno.test("maxDecodedBytes must be a non-negative integer (checked at the first compressed entry)", () => {
  const bytes = encodeBatch(hundreds, { compressor: reverser });
  const { decompressor } = unreverser({ honoursLimit: true });
  for (const maxDecodedBytes of [-1, 1.5, Number.NaN, Infinity]) {
    assert.throws(() => decodeBatch(bytes, { decompressor, maxDecodedBytes }), RangeError);
    assert.equal(decodeBatch(encodeBatch(hundreds), { maxDecodedBytes }).length, 3);
  }
});

Deno.test("maxCompressedEntries bounds the compressed entries of a batch, on both sides", () => {
  const pings = Array.from({ length: 5000 }, (): Message => ({ type: "echo", text: "0123" }));
  const { decompressor, limits } = unreverser({ honoursLimit: true });
  // The encoder compresses the first 4,096 and sends the rest as they are.
  const bytes = encodeBatch(pings, { compressor: reverser });
  let compressed = 0;
  for (let offset = 0; offset < bytes.length; offset += 2 + bytes[offset + 1]!) {
    if (bytes[offset] === 1) compressed++;
  }
  assert.equal(compressed, 4096);
  assert.equal(decodeBatch(bytes, { decompressor }).length, 5000);
  assert.equal(limits.length, 4096);
  // A batch with one compressed entry more is refused before its decompressor call.
  const all = encodeBatch(pings, { compressor: reverser, maxCompressedEntries: 5000 });
  limits.length = 0;
  const error = thrown(() => decodeBatch(all, { decompressor }));
  assert.equal(error.code, "LimitExceeded");
  assert.equal(error.message, `Batch holds more than the limit of "4096" compressed entries`);
  assert.equal(limits.length, 4096);
  assert.equal(decodeBatch(all, { decompressor, maxCompressedEntries: 5000 }).length, 5000);
  assert.equal(
    errorCode(() => decodeBatch(all, { decompressor, maxCompressedEntries: 0 })),
    "LimitExceeded",
  );
  assert.equal(decodeBatch(encodeBatch(pings), { maxCompressedEntries: 0 }).length, 5000);
  assert.throws(
    () => encodeBatch(pings, { compressor: reverser, maxCompressedEntries: -1 }),
    RangeError,
  );
  assert.throws(() => decodeBatch(all, { decompressor, maxCompressedEntries: 0.5 }), RangeError);
});
