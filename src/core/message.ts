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

/**
 * One piece of a message larger than the frame size (docs/PROTOCOL.md, "Fragments"): the
 * receiver appends the chunks of one `id` in order until `total` bytes have arrived, then decodes
 * them as one message. Handled by the connection; never seen by a dispatcher or `receive()`.
 */
export interface FragmentMessage {
  /** Discriminant. */
  type: "fragment";
  /** The fragmented message's number among the sender's messages in progress (1 and up). */
  id: number;
  /** The encoded size of the whole message, the same in every fragment. */
  total: number;
  /** The next bytes of the encoded message (at least one). */
  chunk: Uint8Array;
}

/** Opens a stream (docs/PROTOCOL.md, "Streams"): odd ids from the client, even from the server. */
export interface StreamOpenMessage {
  /** Discriminant. */
  type: "stream_open";
  /** The new stream's id (1 and up). */
  id: number;
  /** The opener's receive window: how many data bytes the acceptor may send before a grant. */
  window: number;
  /** The command: which stream handler the acceptor runs. */
  command: string;
  /** Opaque bytes for the handler (at most 16 KiB). */
  metadata: Uint8Array;
}

/** Accepts a stream; the opener may send data from now on. */
export interface StreamAcceptMessage {
  /** Discriminant. */
  type: "stream_accept";
  /** The stream's id. */
  id: number;
  /** The acceptor's receive window. */
  window: number;
}

/** Bytes of a stream, within the window the receiver granted. */
export interface StreamDataMessage {
  /** Discriminant. */
  type: "stream_data";
  /** The stream's id. */
  id: number;
  /** The bytes (at least one). */
  data: Uint8Array;
}

/** The sender's half of a stream is finished (half-close): no data follows from it. */
export interface StreamEndMessage {
  /** Discriminant. */
  type: "stream_end";
  /** The stream's id. */
  id: number;
}

/** Grants more window: the sender of this message has room for `delta` more data bytes. */
export interface StreamWindowMessage {
  /** Discriminant. */
  type: "stream_window";
  /** The stream's id. */
  id: number;
  /** How many bytes more (1 and up). */
  delta: number;
}

/** Ends a stream at once, in both directions, with a code (also how an open is refused). */
export interface StreamResetMessage {
  /** Discriminant. */
  type: "stream_reset";
  /** The stream's id. */
  id: number;
  /** Why (`StreamResetCode`, or 1000 and up for applications; u32). */
  code: number;
}

/**
 * The sender is draining: it will process numbered requests up to `lastRequest` and streams
 * the peer opened up to `lastStream`, and none after them (docs/PROTOCOL.md, "GOAWAY").
 */
export interface GoAwayMessage {
  /** Discriminant. */
  type: "goaway";
  /** The highest request id of the peer that will be processed (0: none). */
  lastRequest: number;
  /** The highest stream id opened by the peer that was accepted (0: none). */
  lastStream: number;
  /** A CLOSE code: why (1 going away for a shutdown). */
  code: number;
  /** A short reason, at most 123 UTF-8 bytes. */
  reason: string;
}

/**
 * Grants the peer `delta` more bytes of bulk on the connection: the chunks of `fragment`
 * messages and the data of `stream_data` messages (docs/PROTOCOL.md, "Bulk window"). It bounds
 * what is in flight between the two applications, so that a small message sent now does not
 * wait behind megabytes queued in socket buffers.
 */
export interface WindowMessage {
  /** Discriminant. */
  type: "window";
  /** How many bytes more (1 and up). */
  delta: number;
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
  | TicketMessage
  | FragmentMessage
  | StreamOpenMessage
  | StreamAcceptMessage
  | StreamDataMessage
  | StreamEndMessage
  | StreamWindowMessage
  | StreamResetMessage
  | GoAwayMessage
  | WindowMessage;

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
  readonly Fragment: 0x15;
  readonly StreamOpen: 0x16;
  readonly StreamAccept: 0x17;
  readonly StreamData: 0x18;
  readonly StreamEnd: 0x19;
  readonly StreamWindow: 0x1a;
  readonly StreamReset: 0x1b;
  readonly GoAway: 0x1c;
  readonly Window: 0x1d;
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
  Fragment: 0x15,
  StreamOpen: 0x16,
  StreamAccept: 0x17,
  StreamData: 0x18,
  StreamEnd: 0x19,
  StreamWindow: 0x1a,
  StreamReset: 0x1b,
  GoAway: 0x1c,
  Window: 0x1d,
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

/**
 * Codes of `stream_reset` messages produced by the library itself (applications use 1000+).
 * Each becomes a `StreamError` whose `code` says what to do (docs/PROTOCOL.md, "Streams").
 *
 * @example Tell a refused stream apart
 * ```ts
 * import { StreamError, StreamResetCode } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const error = new StreamError(StreamResetCode.Refused, true, "Peer refused stream 1");
 * assert.equal(error.resetCode, 1);
 * assert.equal(error.code, "LimitExceeded"); // retry later
 * ```
 */
export const StreamResetCode: {
  /** Abandoned: `reset()` without a code, a cancelled open, an abandoned scope. */
  readonly Cancel: 0;
  /** The acceptor's limit of concurrent streams is reached (retry later). */
  readonly Refused: 1;
  /** No stream handler is registered for the command. */
  readonly UnknownCommand: 2;
  /** The stream handler threw. */
  readonly HandlerFailed: 3;
  /** The open was not accepted within its time limit. */
  readonly Timeout: 4;
  /** The acceptor is draining (GOAWAY) and will not process it (retry elsewhere). */
  readonly NotProcessed: 5;
  /** The connection is closing. */
  readonly Closing: 6;
} = {
  Cancel: 0,
  Refused: 1,
  UnknownCommand: 2,
  HandlerFailed: 3,
  Timeout: 4,
  NotProcessed: 5,
  Closing: 6,
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
  "FRAGMENT",
  "STREAM_OPEN",
  "STREAM_ACCEPT",
  "STREAM_DATA",
  "STREAM_END",
  "STREAM_WINDOW",
  "STREAM_RESET",
  "GOAWAY",
  "WINDOW",
]);

/**
 * The bulk window each side starts with (docs/PROTOCOL.md, "Bulk window"): the bytes of
 * fragment chunks and stream data a side may send before the peer's first `window` grant.
 */
export const INITIAL_BULK_WINDOW = 128 * 1024;

/** The largest `metadata` of a `stream_open` message. */
export const MAX_STREAM_METADATA = 16 * 1024;
/** The largest window or window grant: u32. */
export const MAX_WINDOW = 0xffff_ffff;
/** The largest `reason` of a `goaway` message, in UTF-8 bytes (as a CLOSE reason). */
export const MAX_GOAWAY_REASON = 123;

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
 * `"RESPONSE"`, `"ERROR"`, `"CANCEL"`, `"SESSION_TICKET"`, or the name of a multiplexing
 * message (`"FRAGMENT"`, `"STREAM_OPEN"`, `"STREAM_ACCEPT"`, `"STREAM_DATA"`, `"STREAM_END"`,
 * `"STREAM_WINDOW"`, `"STREAM_RESET"`, `"GOAWAY"`, `"WINDOW"`).
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
    case "fragment":
      return "FRAGMENT";
    case "stream_open":
      return "STREAM_OPEN";
    case "stream_accept":
      return "STREAM_ACCEPT";
    case "stream_data":
      return "STREAM_DATA";
    case "stream_end":
      return "STREAM_END";
    case "stream_window":
      return "STREAM_WINDOW";
    case "stream_reset":
      return "STREAM_RESET";
    case "goaway":
      return "GOAWAY";
    case "window":
      return "WINDOW";
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
    case "fragment": {
      if (nested) throw nestedError("fragment");
      checkId(message.id);
      const chunk = bytesField("fragment chunk", message.chunk, 1);
      if (!Number.isSafeInteger(message.total) || message.total < chunk) {
        throw new RangeError(
          `Cannot encode fragment total "${message.total}": expected at least the chunk length`,
        );
      }
      return 1 + varintSize(message.id) + varintSize(message.total) + varintSize(chunk) + chunk;
    }
    case "stream_open": {
      if (nested) throw nestedError("stream_open");
      checkId(message.id);
      checkWindow("stream window", message.window, 0);
      const m = bytesField("stream metadata", message.metadata, 0);
      if (m > MAX_STREAM_METADATA) {
        throw new RangeError(
          `Cannot encode stream metadata of "${m}" bytes: the limit is "${MAX_STREAM_METADATA}"`,
        );
      }
      return 1 + varintSize(message.id) + varintSize(message.window) +
        stringSize(message.command) + varintSize(m) + m;
    }
    case "stream_accept":
      if (nested) throw nestedError("stream_accept");
      checkId(message.id);
      checkWindow("stream window", message.window, 0);
      return 1 + varintSize(message.id) + varintSize(message.window);
    case "stream_data": {
      if (nested) throw nestedError("stream_data");
      checkId(message.id);
      const d = bytesField("stream data", message.data, 1);
      return 1 + varintSize(message.id) + varintSize(d) + d;
    }
    case "stream_end":
      if (nested) throw nestedError("stream_end");
      checkId(message.id);
      return 1 + varintSize(message.id);
    case "stream_window":
      if (nested) throw nestedError("stream_window");
      checkId(message.id);
      checkWindow("window grant", message.delta, 1);
      return 1 + varintSize(message.id) + varintSize(message.delta);
    case "stream_reset":
      if (nested) throw nestedError("stream_reset");
      checkId(message.id);
      checkWindow("stream reset code", message.code, 0);
      return 1 + varintSize(message.id) + varintSize(message.code);
    case "goaway": {
      if (nested) throw nestedError("goaway");
      for (
        const [name, value] of [["last request", message.lastRequest], [
          "last stream",
          message.lastStream,
        ]] as const
      ) {
        if (!Number.isSafeInteger(value) || value < 0) {
          throw new RangeError(`Cannot encode goaway ${name} "${value}": expected 0..${MAX_ID}`);
        }
      }
      checkWindow("goaway code", message.code, 0);
      const reason = stringSize(message.reason);
      if (utf8Length(message.reason) > MAX_GOAWAY_REASON) {
        throw new RangeError(
          `Cannot encode goaway reason "${message.reason}": longer than ${MAX_GOAWAY_REASON} bytes`,
        );
      }
      return 1 + varintSize(message.lastRequest) + varintSize(message.lastStream) +
        varintSize(message.code) + reason;
    }
    case "window":
      if (nested) throw nestedError("window");
      checkWindow("window grant", message.delta, 1);
      return 1 + varintSize(message.delta);
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
    case "fragment":
      out[offset] = MessageTag.Fragment;
      offset = writeVarint(out, offset + 1, message.id);
      offset = writeVarint(out, offset, message.total);
      return writeBytes(out, offset, message.chunk);
    case "stream_open":
      out[offset] = MessageTag.StreamOpen;
      offset = writeVarint(out, offset + 1, message.id);
      offset = writeVarint(out, offset, message.window);
      offset = writeString(out, offset, message.command);
      return writeBytes(out, offset, message.metadata);
    case "stream_accept":
      out[offset] = MessageTag.StreamAccept;
      offset = writeVarint(out, offset + 1, message.id);
      return writeVarint(out, offset, message.window);
    case "stream_data":
      out[offset] = MessageTag.StreamData;
      offset = writeVarint(out, offset + 1, message.id);
      return writeBytes(out, offset, message.data);
    case "stream_end":
      out[offset] = MessageTag.StreamEnd;
      return writeVarint(out, offset + 1, message.id);
    case "stream_window":
      out[offset] = MessageTag.StreamWindow;
      offset = writeVarint(out, offset + 1, message.id);
      return writeVarint(out, offset, message.delta);
    case "stream_reset":
      out[offset] = MessageTag.StreamReset;
      offset = writeVarint(out, offset + 1, message.id);
      return writeVarint(out, offset, message.code);
    case "goaway":
      out[offset] = MessageTag.GoAway;
      offset = writeVarint(out, offset + 1, message.lastRequest);
      offset = writeVarint(out, offset, message.lastStream);
      offset = writeVarint(out, offset, message.code);
      return writeString(out, offset, message.reason);
    case "window":
      out[offset] = MessageTag.Window;
      return writeVarint(out, offset + 1, message.delta);
  }
}

/**
 * The encoding of a message split in two for fragmentation: `head` (everything before the
 * payload of a custom message, possibly inside a request or response) and `body` (that payload,
 * not copied), or the whole encoding as `head` and an empty `body` for other messages. Internal
 * to the library (the outbox fragments messages without copying their payload).
 *
 * @param message A message that {@linkcode messageSize} validated.
 * @param size Its encoded size.
 * @returns The two parts; `head.length + body.length === size`.
 */
export function splitEncoding(
  message: Message,
  size: number,
): { head: Uint8Array; body: Uint8Array } {
  const inner = message.type === "request" || message.type === "response"
    ? message.message
    : message;
  if (inner.type !== "custom" || inner.payload.length < 1024) {
    const head = new Uint8Array(size);
    writeMessage(head, 0, message);
    return { head, body: EMPTY_BYTES };
  }
  const body = inner.payload;
  const head = new Uint8Array(size - body.length);
  let offset = 0;
  if (message.type === "request") {
    head[0] = MessageTag.Request;
    offset = writeVarint(head, 1, message.id);
    offset = writeVarint(head, offset, message.deadline === undefined ? 0 : message.deadline + 1);
  } else if (message.type === "response") {
    head[0] = MessageTag.Response;
    offset = writeVarint(head, 1, message.id);
  }
  head[offset] = MessageTag.Custom;
  offset = writeString(head, offset + 1, inner.command);
  writeVarint(head, offset, body.length);
  return { head, body };
}

const EMPTY_BYTES = new Uint8Array(0);

function writeBytes(out: Uint8Array, offset: number, bytes: Uint8Array): number {
  offset = writeVarint(out, offset, bytes.length);
  out.set(bytes, offset);
  return offset + bytes.length;
}

function bytesField(name: string, bytes: Uint8Array, min: number): number {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`Cannot encode ${name}: not a Uint8Array`);
  }
  if (bytes.length < min) throw new RangeError(`Cannot encode ${name}: it is empty`);
  return bytes.length;
}

function checkWindow(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min || value > MAX_WINDOW) {
    throw new RangeError(`Cannot encode ${name} "${value}": expected ${min}..${MAX_WINDOW}`);
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
    case MessageTag.Fragment: {
      if (nested) throw nestedDecodeError("fragment");
      const id = readId(reader);
      const total = reader.varint();
      const chunk = readBytes(reader, 1, "Fragment");
      if (chunk.length > total) {
        throw new ProtocolError(
          "InvalidMessage",
          `Fragment chunk of "${chunk.length}" bytes exceeds its total "${total}"`,
        );
      }
      return { type: "fragment", id, total, chunk };
    }
    case MessageTag.StreamOpen: {
      if (nested) throw nestedDecodeError("stream_open");
      const id = readId(reader);
      const window = readU32(reader, "Stream window");
      const command = reader.string();
      const length = reader.varint();
      if (length > MAX_STREAM_METADATA) {
        throw new ProtocolError(
          "InvalidMessage",
          `Stream metadata of "${length}" bytes exceeds "${MAX_STREAM_METADATA}"`,
        );
      }
      const start = reader.take(length);
      return {
        type: "stream_open",
        id,
        window,
        command,
        metadata: reader.bytes.slice(start, start + length),
      };
    }
    case MessageTag.StreamAccept: {
      if (nested) throw nestedDecodeError("stream_accept");
      const id = readId(reader);
      return { type: "stream_accept", id, window: readU32(reader, "Stream window") };
    }
    case MessageTag.StreamData: {
      if (nested) throw nestedDecodeError("stream_data");
      const id = readId(reader);
      return { type: "stream_data", id, data: readBytes(reader, 1, "Stream data") };
    }
    case MessageTag.StreamEnd:
      if (nested) throw nestedDecodeError("stream_end");
      return { type: "stream_end", id: readId(reader) };
    case MessageTag.StreamWindow: {
      if (nested) throw nestedDecodeError("stream_window");
      const id = readId(reader);
      const delta = readU32(reader, "Window grant");
      if (delta === 0) throw new ProtocolError("InvalidMessage", `Window grant is "0"`);
      return { type: "stream_window", id, delta };
    }
    case MessageTag.StreamReset: {
      if (nested) throw nestedDecodeError("stream_reset");
      const id = readId(reader);
      return { type: "stream_reset", id, code: readU32(reader, "Stream reset code") };
    }
    case MessageTag.GoAway: {
      if (nested) throw nestedDecodeError("goaway");
      const lastRequest = reader.varint();
      const lastStream = reader.varint();
      const code = readU32(reader, "Goaway code");
      const reason = reader.string();
      if (utf8Length(reason) > MAX_GOAWAY_REASON) {
        throw new ProtocolError(
          "InvalidMessage",
          `Goaway reason is longer than ${MAX_GOAWAY_REASON} bytes`,
        );
      }
      return { type: "goaway", lastRequest, lastStream, code, reason };
    }
    case MessageTag.Window: {
      if (nested) throw nestedDecodeError("window");
      const delta = readU32(reader, "Window grant");
      if (delta === 0) throw new ProtocolError("InvalidMessage", `Window grant is "0"`);
      return { type: "window", delta };
    }
    default:
      // Unknown tags: the rest of the entry belongs to a message this version does not know.
      reader.offset = reader.end;
      return { type: "unknown", tag };
  }
}

/** A byte field of at least `min` bytes: a view of an owned input, else a slab copy. */
function readBytes(reader: Reader, min: number, name: string): Uint8Array {
  const length = reader.varint();
  if (length < min) throw new ProtocolError("InvalidMessage", `${name} is empty`);
  const start = reader.take(length);
  return reader.owned
    ? reader.bytes.subarray(start, start + length)
    : slab.copy(reader.bytes, start, start + length);
}

function readU32(reader: Reader, name: string): number {
  const value = reader.varint();
  if (value > MAX_U32) {
    throw new ProtocolError("InvalidMessage", `${name} "${value}" exceeds u32`);
  }
  return value;
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
