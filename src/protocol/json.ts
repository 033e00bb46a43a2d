/**
 * JSON and text payloads in `custom` messages: {@linkcode encodeJson} and {@linkcode decodeJson},
 * {@linkcode encodeText} and {@linkcode decodeText}, and the typed handler behind
 * `Dispatcher.registerJson`.
 *
 * @module
 */

import type { CustomMessage, Message } from "../core/message.ts";
import { ProtocolError, type ProtocolErrorOptions } from "../errors.ts";
import { ApplicationError } from "./application_error.ts";
import type { Handler, HandlerContext } from "./dispatcher.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * A payload that is not what its reader expected: not a `custom` message, another command,
 * not UTF-8, not JSON, or JSON that failed validation. Its {@linkcode JsonPayloadError.command}
 * names the command of the message; its `cause` holds the parser's or the validator's error.
 *
 * @example Tell a malformed payload apart
 * ```ts
 * import { decodeJson, JsonPayloadError } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const message = { type: "custom", command: "ORDER", payload: new Uint8Array([123]) } as const;
 * assert.throws(() => decodeJson(message), (error) => {
 *   assert.ok(error instanceof JsonPayloadError);
 *   assert.equal(error.code, "InvalidMessage");
 *   assert.equal(error.command, "ORDER");
 *   return true;
 * });
 * ```
 */
export class JsonPayloadError extends ProtocolError {
  /** The command of the message, or `undefined` when it was not a `custom` message. */
  readonly command: string | undefined;

  /**
   * Creates the error.
   *
   * @param command The command of the message, if it had one.
   * @param message A sentence that explains the failure.
   * @param options The parser's or the validator's error.
   */
  constructor(command: string | undefined, message: string, options?: ProtocolErrorOptions) {
    super("InvalidMessage", message, options);
    this.name = "JsonPayloadError";
    this.command = command;
  }
}

/**
 * Turns what a validator threw or returned into the text of a validation failure.
 */
function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function checkCommand(command: string): void {
  if (typeof command !== "string" || command.length === 0) {
    throw new TypeError(`Command must be a non-empty string, got "${String(command)}"`);
  }
}

/**
 * Makes a `custom` message whose payload is `value` as UTF-8 JSON.
 *
 * @example Send JSON and read the JSON reply
 * ```ts
 * import { decodeJson, encodeJson } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const message = encodeJson("ORDER", { item: "apple", count: 3 });
 * assert.equal(message.command, "ORDER");
 * assert.deepEqual(decodeJson(message), { item: "apple", count: 3 });
 * ```
 *
 * @param command The message's command.
 * @param value Any value `JSON.stringify` accepts (`undefined` is sent as `null`).
 * @returns The message.
 * @throws {TypeError} When the command is empty or the value cannot be serialized (a `BigInt`,
 * a cycle).
 */
export function encodeJson(command: string, value: unknown): CustomMessage {
  checkCommand(command);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new TypeError(`Cannot encode the payload of "${command}" as JSON: ${reasonOf(error)}`, {
      cause: error,
    });
  }
  return { type: "custom", command, payload: encoder.encode(text ?? "null") };
}

/** Options of {@linkcode decodeJson}. */
export interface DecodeJsonOptions<T> {
  /**
   * The command the message must have; another command is a {@linkcode JsonPayloadError}.
   */
  command?: string;
  /**
   * Checks the parsed value and returns it typed; throws (or returns nothing it accepts) to
   * refuse it. A schema library's parse function fits (`schema.parse` of zod, for instance).
   */
  validate?: (value: unknown) => T;
}

/** Returns the payload of a `custom` message, checking its command. */
function customPayload(message: Message, command: string | undefined): CustomMessage {
  if (message === null || typeof message !== "object" || message.type !== "custom") {
    throw new JsonPayloadError(
      undefined,
      `Expected a "custom" message${command === undefined ? "" : ` "${command}"`}, got "${
        (message as { type?: unknown } | null)?.type
      }"`,
    );
  }
  if (command !== undefined && message.command !== command) {
    throw new JsonPayloadError(
      message.command,
      `Expected command "${command}", got "${message.command}"`,
    );
  }
  return message;
}

function payloadText(message: CustomMessage): string {
  try {
    return decoder.decode(message.payload);
  } catch (error) {
    throw new JsonPayloadError(
      message.command,
      `Payload of "${message.command}" is not valid UTF-8`,
      { cause: error },
    );
  }
}

/**
 * Reads the JSON payload of a `custom` message, optionally checking its command and validating
 * the value.
 *
 * @example Validate what a peer sent
 * ```ts
 * import { decodeJson, encodeJson, JsonPayloadError } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * interface Order {
 *   item: string;
 *   count: number;
 * }
 * const validate = (value: unknown): Order => {
 *   const v = value as Partial<Order>;
 *   if (typeof v?.item !== "string" || !Number.isInteger(v.count)) {
 *     throw new TypeError("an order has an item and an integer count");
 *   }
 *   return v as Order;
 * };
 * const order = decodeJson(encodeJson("ORDER", { item: "pear", count: 2 }), { validate });
 * assert.equal(order.count, 2);
 * assert.throws(
 *   () => decodeJson(encodeJson("ORDER", { item: "pear" }), { validate }),
 *   JsonPayloadError,
 * );
 * ```
 *
 * @typeParam T The type of the value (checked only by `validate`).
 * @param message A `custom` message.
 * @param options The expected command and a validator.
 * @returns The value.
 * @throws {JsonPayloadError} When the message is not `custom`, has another command, or its
 * payload is not UTF-8 JSON or fails validation.
 */
export function decodeJson<T = unknown>(message: Message, options: DecodeJsonOptions<T> = {}): T {
  const custom = customPayload(message, options.command);
  let value: unknown;
  try {
    value = JSON.parse(payloadText(custom));
  } catch (error) {
    if (error instanceof JsonPayloadError) throw error;
    throw new JsonPayloadError(
      custom.command,
      `Payload of "${custom.command}" is not valid JSON: ${reasonOf(error)}`,
      { cause: error },
    );
  }
  if (options.validate === undefined) return value as T;
  try {
    return options.validate(value);
  } catch (error) {
    throw new JsonPayloadError(
      custom.command,
      `Payload of "${custom.command}" failed validation: ${reasonOf(error)}`,
      { cause: error },
    );
  }
}

/**
 * Makes a `custom` message whose payload is `text` as UTF-8.
 *
 * @example Send text
 * ```ts
 * import { decodeText, encodeText } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.equal(decodeText(encodeText("GREET", "ada")), "ada");
 * ```
 *
 * @param command The message's command.
 * @param text The text.
 * @returns The message.
 * @throws {TypeError} When the command is empty or `text` is not a string.
 */
export function encodeText(command: string, text: string): CustomMessage {
  checkCommand(command);
  if (typeof text !== "string") {
    throw new TypeError(`Text of "${command}" must be a string, got "${typeof text}"`);
  }
  return { type: "custom", command, payload: encoder.encode(text) };
}

/**
 * Reads the UTF-8 text payload of a `custom` message.
 *
 * @example Read a text reply
 * ```ts
 * import { decodeText } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const reply = { type: "custom", command: "GREETING", payload: new TextEncoder().encode("hi") } as const;
 * assert.equal(decodeText(reply, { command: "GREETING" }), "hi");
 * ```
 *
 * @param message A `custom` message.
 * @param options The command the message must have.
 * @returns The text.
 * @throws {JsonPayloadError} When the message is not `custom`, has another command, or is not
 * UTF-8.
 */
export function decodeText(message: Message, options: { command?: string } = {}): string {
  return payloadText(customPayload(message, options.command));
}

/**
 * A handler of JSON requests: gets the parsed (and validated) request, returns the reply value.
 *
 * @example A typed handler
 * ```ts
 * import type { JsonHandler } from "@npro/network-protocol";
 *
 * const add: JsonHandler<{ a: number; b: number }, { sum: number }> = ({ a, b }) => ({
 *   sum: a + b,
 * });
 * ```
 *
 * @typeParam Req The request's type.
 * @typeParam Res The reply's type.
 */
export type JsonHandler<Req, Res> = (
  request: Req,
  context: HandlerContext,
) => Res | Promise<Res>;

/** Options of `Dispatcher.registerJson`. */
export interface RegisterJsonOptions<Req> {
  /** Checks the request and returns it typed; throws to refuse it (see {@linkcode DecodeJsonOptions.validate}). */
  validate?: (value: unknown) => Req;
  /**
   * The command of the reply.
   *
   * @default {the request's command}
   */
  replyCommand?: string;
  /**
   * The application error code the peer gets when the request is not JSON or fails validation
   * (its text names the command and the reason).
   *
   * @default {INVALID_JSON_REQUEST}
   */
  invalidRequestCode?: number;
}

/**
 * The application error code `Dispatcher.registerJson` answers a request with when it is not
 * JSON or fails validation (override it with `invalidRequestCode`).
 *
 * @example Recognize a refused request on the client
 * ```ts
 * import { INVALID_JSON_REQUEST } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.equal(INVALID_JSON_REQUEST, 1000);
 * ```
 */
export const INVALID_JSON_REQUEST = 1000;

/**
 * Builds the handler `Dispatcher.registerJson` registers.
 *
 * @param command The request's command.
 * @param handler The JSON handler.
 * @param options Validation and the reply's command.
 * @returns A message handler.
 */
export function jsonHandler<Req, Res>(
  command: string,
  handler: JsonHandler<Req, Res>,
  options: RegisterJsonOptions<Req>,
): Handler {
  const replyCommand = options.replyCommand ?? command;
  checkCommand(replyCommand);
  const code = options.invalidRequestCode ?? INVALID_JSON_REQUEST;
  // Checked now, not at the first bad request.
  new ApplicationError(code, "check");
  return async (message, context) => {
    let request: Req;
    try {
      request = decodeJson<Req>(
        message,
        options.validate === undefined ? {} : { validate: options.validate },
      );
    } catch (error) {
      if (!(error instanceof JsonPayloadError)) throw error;
      // The text names the command: 'Payload of "ADD" failed validation: ...'.
      throw new ApplicationError(code, error.message, { cause: error });
    }
    return encodeJson(replyCommand, await handler(request, context));
  };
}
