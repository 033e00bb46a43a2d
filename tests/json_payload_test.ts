/**
 * JSON and text payloads (`encodeJson`, `decodeJson`, `encodeText`, `decodeText`) and
 * `Dispatcher.registerJson`: values round-trip, bad input is a typed error that names the
 * command, and a refused request reaches the client as a `RemoteError` that says why.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  connect,
  decodeJson,
  decodeText,
  Dispatcher,
  encodeJson,
  encodeText,
  INVALID_JSON_REQUEST,
  JsonPayloadError,
  type Message,
  ProtocolError,
  RemoteError,
  serve,
} from "../mod.ts";

Deno.test("encodeJson and decodeJson round-trip any JSON value; text round-trips", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.string({ minLength: 1 }), (value, command) => {
      const message = encodeJson(command, value);
      assert.equal(message.type, "custom");
      assert.equal(message.command, command);
      // JSON has no -0: compare with what JSON itself gives back.
      assert.deepEqual(decodeJson(message, { command }), JSON.parse(JSON.stringify(value)));
    }),
  );
  fc.assert(
    fc.property(fc.string({ unit: "grapheme" }), (text) => {
      assert.equal(decodeText(encodeText("T", text), { command: "T" }), text);
    }),
  );
  assert.deepEqual(decodeJson(encodeJson("U", undefined)), null);
});

Deno.test("decodeJson and decodeText reject bad input with a JsonPayloadError naming the command", () => {
  const custom = (payload: Uint8Array): Message => ({ type: "custom", command: "ORDER", payload });
  const cases: [() => unknown, string | undefined, RegExp][] = [
    [() => decodeJson({ type: "ping" }), undefined, /Expected a "custom" message, got "ping"/],
    [
      () => decodeJson(encodeJson("OTHER", 1), { command: "ORDER" }),
      "OTHER",
      /Expected command "ORDER", got "OTHER"/,
    ],
    [() => decodeJson(custom(new Uint8Array([0xff]))), "ORDER", /"ORDER" is not valid UTF-8/],
    [() => decodeText(custom(new Uint8Array([0xc3]))), "ORDER", /not valid UTF-8/],
    [() => decodeJson(custom(new TextEncoder().encode("{"))), "ORDER", /"ORDER" is not valid JSON/],
    [
      () =>
        decodeJson(encodeJson("ORDER", { count: "3" }), {
          validate: (v) => {
            if (typeof (v as { count?: unknown }).count !== "number") {
              throw new TypeError("count must be a number");
            }
            return v;
          },
        }),
      "ORDER",
      /"ORDER" failed validation: count must be a number/,
    ],
  ];
  for (const [run, command, message] of cases) {
    assert.throws(run, (error) => {
      assert.ok(error instanceof JsonPayloadError, String(error));
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.code, "InvalidMessage");
      assert.equal(error.command, command);
      assert.match(error.message, message);
      return true;
    });
  }
  // Bad arguments on this side are built-in errors.
  assert.throws(() => encodeJson("", 1), TypeError);
  assert.throws(() => encodeJson("BIG", 1n), /Cannot encode the payload of "BIG" as JSON/);
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  assert.throws(() => encodeJson("CYCLE", cycle), TypeError);
  assert.throws(() => encodeText("T", 1 as unknown as string), TypeError);
});

Deno.test("registerJson: typed requests and replies over a connection; invalid requests name the command", async () => {
  interface Add {
    a: number;
    b: number;
  }
  const validate = (value: unknown): Add => {
    const { a, b } = (value ?? {}) as Partial<Add>;
    if (typeof a !== "number" || typeof b !== "number") {
      throw new TypeError("a and b must be numbers");
    }
    return { a, b };
  };
  const dispatcher = new Dispatcher()
    .registerJson<Add, { sum: number }>("ADD", ({ a, b }) => ({ sum: a + b }), { validate })
    .registerJson<string, string>("UPPER", async (text) => {
      await Promise.resolve();
      return String(text).toUpperCase();
    }, { replyCommand: "UPPERED", invalidRequestCode: 4000 });
  assert.throws(() => dispatcher.registerJson("ADD", () => 1), /already registered/);
  assert.throws(
    () => new Dispatcher().registerJson("X", () => 1, { invalidRequestCode: 7 }),
    RangeError,
  );
  await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
  const { port } = server.addr as Deno.NetAddr;
  await using client = await connect({
    address: `127.0.0.1:${port}`,
    security: { serverKeys: [server.publicKey!] },
  });
  const sum = await client.request(encodeJson("ADD", { a: 2, b: 40 }));
  assert.deepEqual(decodeJson(sum, { command: "ADD" }), { sum: 42 });
  const upper = await client.request(encodeJson("UPPER", "ada"));
  assert.equal(decodeJson(upper, { command: "UPPERED" }), "ADA");

  await assert.rejects(client.request(encodeJson("ADD", { a: 1 })), (error) => {
    assert.ok(error instanceof RemoteError, String(error));
    assert.equal(error.remoteCode, INVALID_JSON_REQUEST);
    assert.match(error.message, /"ADD" failed validation: a and b must be numbers/);
    return true;
  });
  await assert.rejects(client.request(encodeText("UPPER", "not json")), (error) => {
    assert.ok(error instanceof RemoteError, String(error));
    assert.equal(error.remoteCode, 4000);
    assert.match(error.message, /"UPPER" is not valid JSON/);
    return true;
  });
  // The connection is still usable after refused requests.
  assert.deepEqual(decodeJson(await client.request(encodeJson("ADD", { a: 1, b: 1 }))), { sum: 2 });
});
