import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type BodyCompressor,
  type BodyDecompressor,
  compressionFeatureBit,
  decodeBatch,
  decodeMessage,
  encodeBatch,
  encodedMessageSize,
  encodeMessage,
  type Message,
  opcodeOf,
} from "../src/core/message.ts";
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
