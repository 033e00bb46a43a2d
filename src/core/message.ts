/**
 * Messages: the application-level units carried inside packets (plaintext mode) or inside
 * encrypted DATA records (secure mode), several to a batch (`batch.ts`).
 *
 * A message is a one-byte tag followed by its fields. Integers are unsigned LEB128 (at most
 * 2^53 - 1, minimal encoding); strings are UTF-8 and byte strings are raw, both prefixed by their
 * LEB128 length. See docs/PROTOCOL.md for the exact bytes.
 *
 * Everything that knows the fields of a message type is in this file. Adding a type touches: its
 * interface and its place in {@linkcode Message}; its tag in {@linkcode MessageTag}; its opcode in
 * {@linkcode opcodeOf} (and in {@linkcode RESERVED_OPCODES} when it is a fixed name); and its case
 * in `messageSize`, `writeMessage` and `readMessage`. The compiler flags a type missing from
 * `opcodeOf`, `messageSize` or `writeMessage`. (One table of codecs per type, called through
 * `CODECS[message.type]`, measured 20 to 50 % slower on the encoding path and 3 times slower in
 * `opcodeOf`, so the switches stay.)
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { Slab } from "./slab.ts";
import { MAX_WIRE_INTEGER, Reader } from "./reader.ts";

/** A message carrying no fields: a liveness probe. Answered by {@linkcode PongMessage}. */
export interface PingMessage {
  /** Discriminant. */
  type: "ping";
}
/** The answer to a {@linkcode PingMessage}. */
export interface PongMessage {
  /** Discriminant. */
  type: "pong";
}
/** A text the server echoes back. */
export interface EchoMessage {
  /** Discriminant. */
  type: "echo";
  /** The text. */
  text: string;
}
/** A request to end the session politely. */
export interface DisconnectMessage {
  /** Discriminant. */
  type: "disconnect";
}
/**
 * An application message: a command name (its opcode for the dispatcher) and opaque bytes.
 * The names of the built-in opcodes are reserved and cannot be used as commands.
 */
export interface CustomMessage {
  /** Discriminant. */
  type: "custom";
  /** The command, used as the opcode by the dispatcher. */
  command: string;
  /** The payload. */
  payload: Uint8Array;
}
/** A message whose tag this version does not know (sent by a newer peer). */
export interface UnknownMessage {
  /** Discriminant. */
  type: "unknown";
  /** The unknown tag byte. */
  tag: number;
}
/**
 * A numbered request: the peer answers with a {@linkcode ResponseMessage} or an
 * {@linkcode ErrorMessage} carrying the same id, in any order relative to other numbered requests.
 */
export interface RequestMessage {
  /** Discriminant. */
  type: "request";
  /** The request id, unique among the sender's requests in flight (1 to 2^53 - 1). */
  id: number;
  /**
   * How long the sender will wait for the answer, in milliseconds from when it sent the
   * request; absent when it has no deadline. A relative time needs no synchronized clocks.
   */
  deadline?: number;
  /** The request itself (not a numbered message). */
  message: Message;
}
/** The successful answer to the {@linkcode RequestMessage} with the same id. */
export interface ResponseMessage {
  /** Discriminant. */
  type: "response";
  /** The id of the request answered. */
  id: number;
  /** The answer (not a numbered message). */
  message: Message;
}
/** The failed answer to the {@linkcode RequestMessage} with the same id. */
export interface ErrorMessage {
  /** Discriminant. */
  type: "error";
  /** The id of the request answered. */
  id: number;
  /** An application-defined or {@linkcode ErrorCodes} code (u32). */
  code: number;
  /** A human-readable description. */
  text: string;
}
/** Asks the peer to abandon the numbered request with this id. */
export interface CancelMessage {
  /** Discriminant. */
  type: "cancel";
  /** The id of the request to cancel. */
  id: number;
}

/**
 * A session ticket from the server (docs/PROTOCOL.md, "Session resumption"): an opaque blob
 * the client presents in a later hello to resume the session with one ephemeral DH per side
 * instead of a full handshake. Sent only by a server that issues tickets, only to a client that
 * asked for them in its hello, at most once per session; the connection handles it, it never
 * reaches a dispatcher or `receive()`.
 */
export interface TicketMessage {
  /** Discriminant. */
  type: "ticket";
  /** How long the client may keep the ticket, in milliseconds from its arrival. */
  lifetime: number;
  /** The ticket: opaque to the client (encrypted under a key only the server holds). */
  ticket: Uint8Array;
}

/** Every message of the protocol, discriminated by `type`. */
export type Message =
  | PingMessage
  | PongMessage
  | EchoMessage
  | DisconnectMessage
  | CustomMessage
  | UnknownMessage
  | RequestMessage
  | ResponseMessage
  | ErrorMessage
  | CancelMessage
  | TicketMessage;

/** The wire tags of the built-in messages. */
export const MessageTag: {
  readonly Ping: 0x01;
  readonly Pong: 0x02;
  readonly Echo: 0x03;
  readonly Disconnect: 0x04;
  readonly Custom: 0x05;
  readonly Request: 0x10;
  readonly Response: 0x11;
  readonly Error: 0x12;
  readonly Cancel: 0x13;
  readonly Ticket: 0x14;
} = {
  Ping: 0x01,
  Pong: 0x02,
  Echo: 0x03,
  Disconnect: 0x04,
  Custom: 0x05,
  Request: 0x10,
  Response: 0x11,
  Error: 0x12,
  Cancel: 0x13,
  Ticket: 0x14,
} as const;

/** Codes of {@linkcode ErrorMessage}s produced by the library itself (applications use 1000+). */
export const ErrorCodes: {
  /** No handler is registered for the request's opcode. */
  readonly UnknownOpcode: 1;
  /** The handler threw. */
  readonly HandlerFailed: 2;
  /** The request was cancelled. */
  readonly Cancelled: 3;
  /** The request's deadline passed. */
  readonly DeadlineExceeded: 4;
  /** The server is shutting down. */
  readonly ShuttingDown: 5;
  /** The reply is larger than the largest message a packet can carry. */
  readonly TooLarge: 6;
} = {
  UnknownOpcode: 1,
  HandlerFailed: 2,
  Cancelled: 3,
  DeadlineExceeded: 4,
  ShuttingDown: 5,
  TooLarge: 6,
} as const;

/** The opcodes of the built-in messages; no custom command may use one of these names. */
export const RESERVED_OPCODES: ReadonlySet<string> = new Set([
  "PING",
  "PONG",
  "ECHO",
  "DISCONNECT",
  "UNKNOWN",
  "RESPONSE",
  "ERROR",
  "CANCEL",
  "SESSION_TICKET",
]);

const MAX_ID = MAX_WIRE_INTEGER;
const MAX_U32 = 0xffff_ffff;
const encoder = new TextEncoder();
/** Byte fields are copied into shared slabs: one allocation per slab, not per message. */
const slab = new Slab();
/** The tags of the built-in messages: an {@linkcode UnknownMessage} may not use one. */
const KNOWN_TAGS: ReadonlySet<number> = new Set(Object.values(MessageTag));

/**
 * Returns the dispatcher opcode of a message: `"PING"`, `"PONG"`, `"ECHO"`, `"DISCONNECT"`,
 * `"UNKNOWN"`, a custom message's command, the opcode of the message a request carries,
 * `"RESPONSE"`, `"ERROR"`, `"CANCEL"` or `"SESSION_TICKET"`.
 *
 * @example Opcodes
 * ```ts
 * import { opcodeOf } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(opcodeOf({ type: "ping" }), "PING");
 * assert.equal(opcodeOf({ type: "custom", command: "GET", payload: new Uint8Array() }), "GET");
 * assert.equal(opcodeOf({ type: "request", id: 1, message: { type: "echo", text: "x" } }), "ECHO");
 * ```
 *
 * @param message The message.
 * @returns Its opcode.
 */
export function opcodeOf(message: Message): string {
  switch (message.type) {
    case "ping":
      return "PING";
    case "pong":
      return "PONG";
    case "echo":
      return "ECHO";
    case "disconnect":
      return "DISCONNECT";
    case "custom":
      return message.command;
    case "unknown":
      return "UNKNOWN";
    case "request":
      return opcodeOf(message.message);
    case "response":
      return "RESPONSE";
    case "error":
      return "ERROR";
    case "cancel":
      return "CANCEL";
    case "ticket":
      return "SESSION_TICKET";
  }
}

/**
 * Returns the number of bytes {@linkcode encodeMessage} produces for `message`, and validates it.
 *
 * @example Size of a message
 * ```ts
 * import { encodedMessageSize } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(encodedMessageSize({ type: "ping" }), 1);
 * assert.equal(encodedMessageSize({ type: "echo", text: "hi" }), 4);
 * ```
 *
 * @param message The message.
 * @returns Its encoded size in bytes.
 * @throws {TypeError} For an invalid message (a reserved command, nested numbered messages).
 * @throws {RangeError} For an id or code out of range.
 */
export function encodedMessageSize(message: Message): number {
  return messageSize(message, false);
}

/**
 * Encodes one message: its tag and fields.
 *
 * @example Encode and decode
 * ```ts
 * import { decodeMessage, encodeMessage } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeMessage({ type: "echo", text: "hello" });
 * assert.deepEqual(decodeMessage(bytes), { type: "echo", text: "hello" });
 * ```
 *
 * @param message The message.
 * @returns The encoded bytes.
 * @throws {TypeError} For an invalid message (a reserved command, nested numbered messages).
 * @throws {RangeError} For an id or code out of range.
 */
export function encodeMessage(message: Message): Uint8Array {
  const out = new Uint8Array(messageSize(message, false));
  writeMessage(out, 0, message);
  return out;
}

/**
 * Decodes one message from exactly `bytes`. An unknown tag decodes to `{ type: "unknown", tag }`
 * (whatever follows the tag is ignored); a malformed body throws.
 *
 * @example Decode a ping
 * ```ts
 * import { decodeMessage } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(decodeMessage(new Uint8Array([0x01])), { type: "ping" });
 * assert.deepEqual(decodeMessage(new Uint8Array([0x7f, 9])), { type: "unknown", tag: 0x7f });
 * ```
 *
 * @param bytes The encoded message.
 * @returns The message. Byte fields are copies, independent of `bytes` (small ones are views
 * of a shared 64 KiB slab).
 * @throws {ProtocolError} `InvalidMessage` for a malformed body.
 */
export function decodeMessage(bytes: Uint8Array): Message {
  const reader = new Reader(bytes, 0, bytes.length);
  const message = readMessage(reader, false);
  reader.expectEnd();
  return message;
}

// ---------------------------------------------------------------------------------------------
// The codec of each message type: sizes, writers, readers

/**
 * Validates `message` and returns its encoded size. Internal to the core: the public form is
 * {@linkcode encodedMessageSize}.
 *
 * @param message The message.
 * @param nested Whether a request or response carries it, where numbered messages are refused.
 * @returns Its encoded size in bytes.
 * @throws {TypeError} For an invalid message (a reserved command, nested numbered messages).
 * @throws {RangeError} For an id or code out of range.
 */
export function messageSize(message: Message, nested: boolean): number {
  switch (message.type) {
    case "ping":
    case "pong":
    case "disconnect":
      return 1;
    case "echo":
      return 1 + stringSize(message.text);
    case "custom": {
      if (RESERVED_OPCODES.has(message.command)) {
        throw new TypeError(
          `Cannot use custom command "${message.command}": it is the opcode of a built-in message`,
        );
      }
      if (!(message.payload instanceof Uint8Array)) {
        throw new TypeError("Cannot encode custom message: its payload is not a Uint8Array");
      }
      const p = message.payload.length;
      return 1 + stringSize(message.command) + varintSize(p) + p;
    }
    case "unknown":
      if (!Number.isInteger(message.tag) || message.tag < 0 || message.tag > 255) {
        throw new RangeError(`Cannot encode unknown message tag "${message.tag}": expected 0..255`);
      }
      if (KNOWN_TAGS.has(message.tag)) {
        throw new TypeError(
          `Cannot encode an unknown message with tag "${message.tag}": it is a known tag`,
        );
      }
      return 1;
    case "request": {
      if (nested) throw nestedError("request");
      checkId(message.id);
      let size = 1 + varintSize(message.id);
      const deadline = message.deadline;
      if (deadline !== undefined) {
        if (!Number.isSafeInteger(deadline) || deadline < 0 || deadline >= MAX_ID) {
          throw new RangeError(
            `Cannot encode request deadline "${deadline}": expected an integer of milliseconds`,
          );
        }
        size += varintSize(deadline + 1);
      } else {
        size += 1;
      }
      return size + messageSize(message.message, true);
    }
    case "response":
      if (nested) throw nestedError("response");
      checkId(message.id);
      return 1 + varintSize(message.id) + messageSize(message.message, true);
    case "error":
      if (nested) throw nestedError("error");
      checkId(message.id);
      if (!Number.isInteger(message.code) || message.code < 0 || message.code > MAX_U32) {
        throw new RangeError(`Cannot encode error code "${message.code}": expected 0..${MAX_U32}`);
      }
      return 1 + varintSize(message.id) + varintSize(message.code) + stringSize(message.text);
    case "cancel":
      if (nested) throw nestedError("cancel");
      checkId(message.id);
      return 1 + varintSize(message.id);
    case "ticket": {
      if (nested) throw nestedError("ticket");
      const lifetime = message.lifetime;
      if (!Number.isSafeInteger(lifetime) || lifetime < 0) {
        throw new RangeError(
          `Cannot encode ticket lifetime "${lifetime}": expected an integer of milliseconds`,
        );
      }
      if (!(message.ticket instanceof Uint8Array)) {
        throw new TypeError("Cannot encode ticket message: its ticket is not a Uint8Array");
      }
      const t = message.ticket.length;
      return 1 + varintSize(lifetime) + varintSize(t) + t;
    }
    default: {
      // A type without a case here does not compile.
      const invalid: never = message;
      throw new TypeError(`Cannot encode message of type "${(invalid as { type: unknown }).type}"`);
    }
  }
}

/**
 * Writes a message that {@linkcode messageSize} validated. Internal to the core.
 *
 * @param out The buffer; it must have room for the message.
 * @param offset Where the message starts.
 * @param message The message.
 * @returns The offset just past it.
 */
export function writeMessage(out: Uint8Array, offset: number, message: Message): number {
  switch (message.type) {
    case "ping":
      out[offset] = MessageTag.Ping;
      return offset + 1;
    case "pong":
      out[offset] = MessageTag.Pong;
      return offset + 1;
    case "disconnect":
      out[offset] = MessageTag.Disconnect;
      return offset + 1;
    case "echo":
      out[offset] = MessageTag.Echo;
      return writeString(out, offset + 1, message.text);
    case "custom":
      out[offset] = MessageTag.Custom;
      offset = writeString(out, offset + 1, message.command);
      offset = writeVarint(out, offset, message.payload.length);
      out.set(message.payload, offset);
      return offset + message.payload.length;
    case "unknown":
      out[offset] = message.tag;
      return offset + 1;
    case "request":
      out[offset] = MessageTag.Request;
      offset = writeVarint(out, offset + 1, message.id);
      offset = writeVarint(out, offset, message.deadline === undefined ? 0 : message.deadline + 1);
      return writeMessage(out, offset, message.message);
    case "response":
      out[offset] = MessageTag.Response;
      offset = writeVarint(out, offset + 1, message.id);
      return writeMessage(out, offset, message.message);
    case "error":
      out[offset] = MessageTag.Error;
      offset = writeVarint(out, offset + 1, message.id);
      offset = writeVarint(out, offset, message.code);
      return writeString(out, offset, message.text);
    case "cancel":
      out[offset] = MessageTag.Cancel;
      return writeVarint(out, offset + 1, message.id);
    case "ticket":
      out[offset] = MessageTag.Ticket;
      offset = writeVarint(out, offset + 1, message.lifetime);
      offset = writeVarint(out, offset, message.ticket.length);
      out.set(message.ticket, offset);
      return offset + message.ticket.length;
  }
}

function nestedError(type: string): TypeError {
  return new TypeError(`Cannot nest a "${type}" message inside a request or response`);
}

function checkId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 1) {
    throw new RangeError(`Cannot encode request id "${id}": expected 1..${MAX_ID}`);
  }
}

/**
 * Reads one message; the caller checks that nothing follows it. Internal to the core.
 *
 * @param reader The reader, at the message's tag.
 * @param nested Whether a request or response carries it, where numbered messages are refused.
 * @returns The message.
 * @throws {ProtocolError} `InvalidMessage` for a malformed message.
 */
export function readMessage(reader: Reader, nested: boolean): Message {
  const tag = reader.byte();
  switch (tag) {
    case MessageTag.Ping:
      return { type: "ping" };
    case MessageTag.Pong:
      return { type: "pong" };
    case MessageTag.Disconnect:
      return { type: "disconnect" };
    case MessageTag.Echo:
      return { type: "echo", text: reader.string() };
    case MessageTag.Custom: {
      const command = reader.string();
      if (RESERVED_OPCODES.has(command)) {
        throw new ProtocolError(
          "InvalidMessage",
          `Custom message uses the reserved command "${command}"`,
        );
      }
      const length = reader.varint();
      const start = reader.take(length);
      const payload = reader.owned
        ? reader.bytes.subarray(start, start + length)
        : slab.copy(reader.bytes, start, start + length);
      return { type: "custom", command, payload };
    }
    case MessageTag.Request: {
      if (nested) throw nestedDecodeError("request");
      const id = readId(reader);
      const deadline = reader.varint();
      const message = readMessage(reader, true);
      return deadline === 0
        ? { type: "request", id, message }
        : { type: "request", id, deadline: deadline - 1, message };
    }
    case MessageTag.Response: {
      if (nested) throw nestedDecodeError("response");
      const id = readId(reader);
      return { type: "response", id, message: readMessage(reader, true) };
    }
    case MessageTag.Error: {
      if (nested) throw nestedDecodeError("error");
      const id = readId(reader);
      const code = reader.varint();
      if (code > MAX_U32) {
        throw new ProtocolError("InvalidMessage", `Error message code "${code}" exceeds u32`);
      }
      return { type: "error", id, code, text: reader.string() };
    }
    case MessageTag.Cancel:
      if (nested) throw nestedDecodeError("cancel");
      return { type: "cancel", id: readId(reader) };
    case MessageTag.Ticket: {
      if (nested) throw nestedDecodeError("ticket");
      const lifetime = reader.varint();
      const length = reader.varint();
      const start = reader.take(length);
      // Always a copy: the client keeps the ticket beyond the record that carried it.
      return { type: "ticket", lifetime, ticket: reader.bytes.slice(start, start + length) };
    }
    default:
      // Unknown tags: the rest of the entry belongs to a message this version does not know.
      reader.offset = reader.end;
      return { type: "unknown", tag };
  }
}

function readId(reader: Reader): number {
  const id = reader.varint();
  if (id === 0) throw new ProtocolError("InvalidMessage", `Message has request id "0"`);
  return id;
}

function nestedDecodeError(type: string): ProtocolError {
  return new ProtocolError(
    "InvalidMessage",
    `Message nests a "${type}" message inside a request or response`,
  );
}

// ---------------------------------------------------------------------------------------------
// Field encoders: LEB128 integers and UTF-8 strings (`reader.ts` decodes them)
//
// They are declared here and not exported: every call of an imported or exported function goes
// through a module binding, which made encoding 5 to 7 % slower (`encodeBatch` of small requests)
// when they lived in a module of their own. batch.ts uses the LEB128 ones through aliases.

/** Returns the LEB128 size of a non-negative safe integer. */
function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    out[offset++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[offset++] = value;
  return offset;
}

/** Returns the UTF-8 length of `text` (lone surrogates count as U+FFFD, as TextEncoder does). */
function utf8Length(text: string): number {
  let length = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      length += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        length += 2; // 4 bytes for 2 UTF-16 units
        i++;
      } else {
        length += 2;
      }
    } else {
      length += 2;
    }
  }
  return length;
}

function stringSize(text: string): number {
  if (typeof text !== "string") throw new TypeError("Cannot encode a string field: not a string");
  const length = utf8Length(text);
  return varintSize(length) + length;
}

function writeString(out: Uint8Array, offset: number, text: string): number {
  const length = utf8Length(text);
  offset = writeVarint(out, offset, length);
  if (length === text.length) {
    // ASCII fast path.
    for (let i = 0; i < length; i++) out[offset + i] = text.charCodeAt(i);
  } else {
    encoder.encodeInto(text, out.subarray(offset, offset + length));
  }
  return offset + length;
}

/** {@linkcode varintSize} for batch.ts: an alias, so that the calls above stay local. */
export const leb128Size: (value: number) => number = varintSize;
/** {@linkcode writeVarint} for batch.ts: an alias, so that the calls above stay local. */
export const writeLeb128: (out: Uint8Array, offset: number, value: number) => number = writeVarint;
