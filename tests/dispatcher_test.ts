import assert from "node:assert/strict";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { ErrorCodes, type Message } from "../src/core/message.ts";
import { ProtocolError } from "../src/errors.ts";

const custom = (command: string, bytes: number[] = []): Message => ({
  type: "custom",
  command,
  payload: new Uint8Array(bytes),
});

Deno.test("standard handlers answer PING and ECHO", async () => {
  const d = registerStandardHandlers(new Dispatcher());
  assert.deepEqual(await d.dispatch({ type: "ping" }), { type: "pong" });
  assert.deepEqual(await d.dispatch({ type: "echo", text: "héllo" }), {
    type: "echo",
    text: "héllo",
  });
  assert.deepEqual(d.opcodes.sort(), ["ECHO", "PING"]);
});

Deno.test("sync and async handlers both work; handle() stays synchronous for sync ones", async () => {
  const d = new Dispatcher()
    .register("SYNC", () => custom("A"))
    .register("ASYNC", async () => {
      await new Promise((r) => setTimeout(r, 1));
      return custom("B");
    });
  const sync = d.handle(custom("SYNC"));
  assert.ok(!(sync instanceof Promise));
  assert.deepEqual(sync, custom("A"));
  assert.deepEqual(await d.dispatch(custom("ASYNC")), custom("B"));
});

Deno.test("duplicate registration is a TypeError; unknown opcode is UnexpectedMessage", async () => {
  const d = new Dispatcher().register("X", () => custom("Y"));
  assert.throws(() => d.register("X", () => custom("Z")), TypeError);
  assert.throws(() => d.register("", () => custom("Z")), TypeError);
  await assert.rejects(
    d.dispatch(custom("NOPE")),
    (e) => e instanceof ProtocolError && e.code === "UnexpectedMessage",
  );
  assert.ok(d.unregister("X"));
  assert.ok(!d.has("X"));
  d.register("X", () => custom("Z"));
});

Deno.test("a throwing handler fails only its own message", async () => {
  let calls = 0;
  const d = new Dispatcher()
    .register("BAD", () => {
      throw new Error("boom");
    })
    .register("BAD_ASYNC", () => Promise.reject(new Error("async boom")))
    .register("GOOD", () => {
      calls++;
      return custom("OK");
    });
  const results = await Promise.allSettled([
    d.dispatch(custom("GOOD")),
    d.dispatch(custom("BAD")),
    d.dispatch(custom("BAD_ASYNC")),
    d.dispatch(custom("GOOD")),
  ]);
  assert.deepEqual(results.map((r) => r.status), [
    "fulfilled",
    "rejected",
    "rejected",
    "fulfilled",
  ]);
  assert.equal(calls, 2);
});

Deno.test("numbered requests get numbered responses and errors, never rejections", async () => {
  const d = registerStandardHandlers(new Dispatcher())
    .register("BAD", () => {
      throw new Error("secret detail");
    })
    .register("SLOW", async (_m, ctx) => {
      assert.equal(ctx.requestId, 9);
      assert.equal(ctx.deadline, 100);
      await new Promise((r) => setTimeout(r, 1));
      return custom("DONE");
    })
    .register("WRONG", () => ({ type: "cancel", id: 1 }));
  assert.deepEqual(await d.dispatch({ type: "request", id: 7, message: { type: "ping" } }), {
    type: "response",
    id: 7,
    message: { type: "pong" },
  });
  assert.deepEqual(
    await d.dispatch({ type: "request", id: 9, deadline: 100, message: custom("SLOW") }),
    { type: "response", id: 9, message: custom("DONE") },
  );
  const bad = await d.dispatch({ type: "request", id: 8, message: custom("BAD") });
  assert.equal(bad.type, "error");
  assert.equal((bad as { code: number }).code, ErrorCodes.HandlerFailed);
  assert.ok(!(bad as { text: string }).text.includes("secret"));
  const unknown = await d.dispatch({ type: "request", id: 10, message: custom("NOPE") });
  assert.deepEqual(unknown, {
    type: "error",
    id: 10,
    code: ErrorCodes.UnknownOpcode,
    text: 'No handler is registered for opcode "NOPE"',
  });
  const wrong = await d.dispatch({ type: "request", id: 11, message: custom("WRONG") });
  assert.equal((wrong as { code: number }).code, ErrorCodes.HandlerFailed);
});

Deno.test("handlers see the context signal", async () => {
  const controller = new AbortController();
  const d = new Dispatcher().register(
    "WAIT",
    (_m, ctx) =>
      new Promise<Message>((_resolve, reject) => {
        ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
      }),
  );
  const pending = d.dispatch(custom("WAIT"), { signal: controller.signal });
  controller.abort(new Error("cancelled"));
  await assert.rejects(pending, /cancelled/);
});
