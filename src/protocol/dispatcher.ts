/**
 * The dispatcher: routes each incoming message to the handler registered for its opcode.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { ErrorCodes, type Message, opcodeOf } from "../core/message.ts";
import { logger } from "../log.ts";
import { peerEvents } from "../log_budget.ts";
import { ApplicationError } from "./application_error.ts";
import { type JsonHandler, jsonHandler, type RegisterJsonOptions } from "./json.ts";
import type { StreamHandler } from "./stream.ts";

const log = logger("dispatcher");

/** What a handler knows about the message it handles. */
export interface HandlerContext {
  /**
   * Aborted when the answer is no longer wanted: the peer cancelled the request, its deadline
   * passed, or the connection closed. Long handlers should pass it on to what they await.
   */
  signal: AbortSignal;
  /** The id of the numbered request being handled, if it is one. */
  requestId?: number;
  /** The peer's deadline for a numbered request, in milliseconds from when it sent it. */
  deadline?: number;
  /** The peer's authenticated static public key, when the session has one. */
  remoteStaticKey?: Uint8Array;
  /** The peer's transport address, when known. */
  remoteAddr?: Deno.Addr;
}

/** Options for a single dispatch. Every field is optional. */
export type DispatchContext = Partial<HandlerContext>;

/**
 * A message handler: returns the reply (synchronously or as a promise). A handler that throws
 * or rejects fails only its own message.
 */
export type Handler = (message: Message, context: HandlerContext) => Message | Promise<Message>;

const NEVER_ABORTED: AbortSignal = new AbortController().signal;

/**
 * A property key that marks a complete {@linkcode HandlerContext} built for a single message
 * (by a connection): the dispatcher hands such a context to the handler as is, instead of
 * copying it, and may set its `requestId` and `deadline`. Not part of the public API.
 */
export const OWNED_CONTEXT: unique symbol = Symbol("npro.ownedContext");

/**
 * Routes messages to handlers by opcode (see `opcodeOf`). Numbered requests are routed by the
 * opcode of the message they carry and answered with a numbered response or error.
 *
 * @example Register handlers and dispatch
 * ```ts
 * import { Dispatcher, registerStandardHandlers } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dispatcher = new Dispatcher();
 * registerStandardHandlers(dispatcher);
 * dispatcher.register("ADD", (message) => {
 *   if (message.type !== "custom") throw new TypeError("expected a custom message");
 *   const [a = 0, b = 0] = message.payload;
 *   return { type: "custom", command: "SUM", payload: new Uint8Array([a + b]) };
 * });
 *
 * assert.deepEqual(await dispatcher.dispatch({ type: "ping" }), { type: "pong" });
 * const reply = await dispatcher.dispatch({
 *   type: "custom",
 *   command: "ADD",
 *   payload: new Uint8Array([2, 3]),
 * });
 * assert.deepEqual(reply, { type: "custom", command: "SUM", payload: new Uint8Array([5]) });
 * ```
 */
export class Dispatcher {
  #handlers = new Map<string, Handler>();
  #streamHandlers: Map<string, StreamHandler> | undefined;

  /**
   * Registers the handler of the streams opened with `command` (docs/SERVICE.md, "Streams").
   * Stream commands are their own namespace: `"UPLOAD"` may name a stream handler and a message
   * handler at once.
   *
   * @example Echo every stream back
   * ```ts
   * import { Dispatcher } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * const dispatcher = new Dispatcher().registerStream("ECHO_STREAM", async (stream) => {
   *   await stream.readable.pipeTo(stream.writable);
   * });
   * assert.ok(dispatcher.hasStream("ECHO_STREAM"));
   * ```
   *
   * @param command The command the opener names.
   * @param handler Serves each stream.
   * @returns This dispatcher, for chaining.
   * @throws {TypeError} If the command is empty or already has a stream handler.
   */
  registerStream(command: string, handler: StreamHandler): this {
    if (typeof command !== "string" || command.length === 0) {
      throw new TypeError(
        "Cannot register a stream handler: the command must be a non-empty string",
      );
    }
    if (typeof handler !== "function") {
      throw new TypeError(
        `Cannot register a stream handler for "${command}": it is not a function`,
      );
    }
    this.#streamHandlers ??= new Map();
    if (this.#streamHandlers.has(command)) {
      throw new TypeError(
        `Cannot register a stream handler for "${command}": one is already registered`,
      );
    }
    this.#streamHandlers.set(command, handler);
    return this;
  }

  /**
   * Returns whether a stream command has a handler.
   *
   * @param command The command.
   * @returns Whether a stream handler is registered.
   */
  hasStream(command: string): boolean {
    return this.#streamHandlers?.has(command) ?? false;
  }

  /**
   * The stream handler of a command, if any (used by the connection).
   *
   * @param command The command.
   * @returns The handler, or `undefined`.
   */
  streamHandler(command: string): StreamHandler | undefined {
    return this.#streamHandlers?.get(command);
  }

  /**
   * Registers the handler of an opcode.
   *
   * @param opcode The opcode: `"PING"`, `"ECHO"`, ... or a custom command.
   * @param handler The handler.
   * @returns This dispatcher, for chaining.
   * @throws {TypeError} If the opcode is empty or already has a handler.
   */
  register(opcode: string, handler: Handler): this {
    if (typeof opcode !== "string" || opcode.length === 0) {
      throw new TypeError("Cannot register a handler: the opcode must be a non-empty string");
    }
    if (typeof handler !== "function") {
      throw new TypeError(`Cannot register a handler for "${opcode}": it is not a function`);
    }
    if (this.#handlers.has(opcode)) {
      throw new TypeError(`Cannot register a handler for "${opcode}": one is already registered`);
    }
    this.#handlers.set(opcode, handler);
    return this;
  }

  /**
   * Registers a typed handler of JSON requests: the request's payload is parsed (and checked by
   * `validate`), the handler's return value is sent back as JSON in a `custom` message with the
   * same command (or `replyCommand`). A request that is not JSON or fails validation is
   * answered with the application error `INVALID_JSON_REQUEST` (1000), whose text names the
   * command and the reason; the client's `request` rejects with a `RemoteError` carrying it.
   *
   * @example A typed handler with validation
   * ```ts
   * import {
   *   connect,
   *   decodeJson,
   *   Dispatcher,
   *   encodeJson,
   *   RemoteError,
   *   serve,
   * } from "@npro/network-protocol";
   * import assert from "node:assert/strict";
   *
   * interface Add {
   *   a: number;
   *   b: number;
   * }
   * const validate = (value: unknown): Add => {
   *   const { a, b } = (value ?? {}) as Partial<Add>;
   *   if (typeof a !== "number" || typeof b !== "number") throw new TypeError("a and b must be numbers");
   *   return { a, b };
   * };
   * const dispatcher = new Dispatcher().registerJson<Add, { sum: number }>(
   *   "ADD",
   *   ({ a, b }) => ({ sum: a + b }),
   *   { validate },
   * );
   * await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
   * const { port } = server.addr as Deno.NetAddr;
   * await using client = await connect({
   *   address: `127.0.0.1:${port}`,
   *   security: { serverKeys: [server.publicKey!] },
   * });
   * const reply = await client.request(encodeJson("ADD", { a: 2, b: 3 }));
   * assert.deepEqual(decodeJson(reply, { command: "ADD" }), { sum: 5 });
   * await assert.rejects(client.request(encodeJson("ADD", { a: "2" })), (error) => {
   *   assert.ok(error instanceof RemoteError);
   *   assert.match(error.message, /"ADD" failed validation: a and b must be numbers/);
   *   return true;
   * });
   * ```
   *
   * @typeParam Req The request's type.
   * @typeParam Res The reply's type.
   * @param command The request's command.
   * @param handler Gets the request, returns the reply's value.
   * @param options A validator, the reply's command, the error code of invalid requests.
   * @returns This dispatcher, for chaining.
   * @throws {TypeError} If the command is empty or already has a handler.
   */
  registerJson<Req = unknown, Res = unknown>(
    command: string,
    handler: JsonHandler<Req, Res>,
    options: RegisterJsonOptions<Req> = {},
  ): this {
    if (typeof handler !== "function") {
      throw new TypeError(`Cannot register a handler for "${command}": it is not a function`);
    }
    return this.register(command, jsonHandler(command, handler, options));
  }

  /**
   * Removes the handler of an opcode.
   *
   * @param opcode The opcode.
   * @returns Whether a handler was removed.
   */
  unregister(opcode: string): boolean {
    return this.#handlers.delete(opcode);
  }

  /**
   * Returns whether an opcode has a handler.
   *
   * @param opcode The opcode.
   * @returns Whether a handler is registered.
   */
  has(opcode: string): boolean {
    return this.#handlers.has(opcode);
  }

  /** The registered opcodes. */
  get opcodes(): string[] {
    return [...this.#handlers.keys()];
  }

  /**
   * Handles one message and resolves to the reply.
   *
   * For an un-numbered message, it rejects with `ProtocolError` code `UnexpectedMessage` when
   * no handler is registered, and with the handler's own error when the handler fails.
   *
   * For a numbered `request`, it never rejects: it resolves to a `response` with the same id,
   * or to an `error` with code `ErrorCodes.UnknownOpcode` or `ErrorCodes.HandlerFailed` (the
   * handler's error text is not sent to the peer).
   *
   * @param message The incoming message.
   * @param context What the handler may know about the message.
   * @returns The reply.
   */
  dispatch(message: Message, context?: DispatchContext): Promise<Message> {
    try {
      return Promise.resolve(this.handle(message, context));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The synchronous-when-possible form of {@linkcode Dispatcher.dispatch} for the connection hot
   * path: a synchronous handler's reply is returned directly, without a promise; an un-numbered
   * message's failure is thrown synchronously or rejected.
   *
   * @param message The incoming message.
   * @param context What the handler may know about the message.
   * @returns The reply, or a promise of it.
   */
  handle(message: Message, context?: DispatchContext): Message | Promise<Message> {
    if (message.type === "request") return this.#handleRequest(message.id, message, context);
    const opcode = opcodeOf(message);
    const handler = this.#handlers.get(opcode);
    if (handler === undefined) {
      throw new ProtocolError(
        "UnexpectedMessage",
        `No handler is registered for opcode "${opcode}"`,
      );
    }
    const reply = handler(message, toHandlerContext(context));
    return reply instanceof Promise ? reply.then(checkReply) : checkReply(reply);
  }

  #handleRequest(
    id: number,
    request: Extract<Message, { type: "request" }>,
    context?: DispatchContext,
  ): Message | Promise<Message> {
    const opcode = opcodeOf(request.message);
    const handler = this.#handlers.get(opcode);
    if (handler === undefined) {
      return {
        type: "error",
        id,
        code: ErrorCodes.UnknownOpcode,
        text: `No handler is registered for opcode "${opcode}"`,
      };
    }
    const ctx = toHandlerContext(context);
    ctx.requestId = id;
    if (request.deadline !== undefined) ctx.deadline = request.deadline;
    let reply: Message | Promise<Message>;
    try {
      reply = handler(request.message, ctx);
    } catch (error) {
      return handlerFailed(id, opcode, error, ctx.signal);
    }
    if (reply instanceof Promise) {
      return reply.then(
        (value) => wrapResponse(id, value, opcode),
        (error) => handlerFailed(id, opcode, error, ctx.signal),
      );
    }
    return wrapResponse(id, reply, opcode);
  }
}

/**
 * The `error` reply to a numbered request whose handler threw: an {@linkcode ApplicationError}'s
 * own code and text, or the generic `HandlerFailed` (code 2) for anything else, whose text stays
 * here, in the log (within the shared log budget: a peer that makes a handler fail on purpose
 * cannot flood the log).
 */
function handlerFailed(
  id: number,
  opcode: string,
  error?: unknown,
  signal?: AbortSignal,
): Message {
  if (error instanceof ApplicationError) {
    return { type: "error", id, code: error.code, text: error.message };
  }
  // A handler that stops because its request was cancelled has not failed.
  if (error !== undefined && signal?.aborted !== true) logHandlerFailure(opcode, error);
  return {
    type: "error",
    id,
    code: ErrorCodes.HandlerFailed,
    text: `Handler for opcode "${opcode}" failed`,
  };
}

/**
 * Logs that the handler of `opcode` failed, once per failure within the shared log budget
 * (a few lines per interval, then a summary).
 *
 * @param opcode The opcode of the message.
 * @param error What the handler threw.
 * @param connectionId The connection, when known.
 */
export function logHandlerFailure(opcode: string, error: unknown, connectionId?: number): void {
  if (!peerEvents.allow("handler failure")) return;
  log.warn("Handler for opcode {opcode} failed{where}: {error}", {
    opcode,
    where: connectionId === undefined ? "" : ` on connection ${connectionId}`,
    error,
  });
}

function toHandlerContext(context?: DispatchContext): HandlerContext {
  if (context !== undefined && (context as { [OWNED_CONTEXT]?: true })[OWNED_CONTEXT] === true) {
    return context as HandlerContext;
  }
  const ctx: HandlerContext = { signal: context?.signal ?? NEVER_ABORTED };
  if (context?.remoteStaticKey !== undefined) ctx.remoteStaticKey = context.remoteStaticKey;
  if (context?.remoteAddr !== undefined) ctx.remoteAddr = context.remoteAddr;
  if (context?.requestId !== undefined) ctx.requestId = context.requestId;
  if (context?.deadline !== undefined) ctx.deadline = context.deadline;
  return ctx;
}

function isNumbered(message: Message): boolean {
  const t = message.type;
  return t === "request" || t === "response" || t === "error" || t === "cancel";
}

function checkReply(reply: Message): Message {
  if (reply === null || typeof reply !== "object" || typeof reply.type !== "string") {
    throw new TypeError("Handler returned something that is not a message");
  }
  return reply;
}

function wrapResponse(id: number, reply: Message, opcode: string): Message {
  if (reply === null || typeof reply !== "object" || isNumbered(reply)) {
    return handlerFailed(
      id,
      opcode,
      new TypeError("Handler returned something that is not an un-numbered message"),
    );
  }
  return { type: "response", id, message: reply };
}

/**
 * Registers the standard handlers: `PING` answers `pong`, `ECHO` answers an `echo` with the same
 * text.
 *
 * @example Standard handlers
 * ```ts
 * import { Dispatcher, registerStandardHandlers } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dispatcher = registerStandardHandlers(new Dispatcher());
 * assert.deepEqual(
 *   await dispatcher.dispatch({ type: "echo", text: "hi" }),
 *   { type: "echo", text: "hi" },
 * );
 * ```
 *
 * @param dispatcher The dispatcher to register into.
 * @returns The same dispatcher.
 */
export function registerStandardHandlers(dispatcher: Dispatcher): Dispatcher {
  dispatcher.register("PING", () => PONG);
  dispatcher.register("ECHO", (message) => message);
  return dispatcher;
}

const PONG: Message = Object.freeze({ type: "pong" }) as Message;
