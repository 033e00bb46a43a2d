/**
 * The receiving side of fragmentation (docs/PROTOCOL.md, "Fragments"): the chunks of each
 * fragmented message are appended to one buffer of the announced size, within the largest
 * message this side accepts and a bound on all messages in progress; the whole message is then
 * decoded as if it had arrived in one entry.
 *
 * @module
 */

import { type FragmentMessage, type Message, readMessage } from "../core/message.ts";
import { Reader } from "../core/reader.ts";
import { ProtocolError } from "../errors.ts";

interface Partial {
  buffer: Uint8Array;
  filled: number;
}

/**
 * Reassembles fragmented messages.
 *
 * @example Two fragments make one message
 * ```ts
 * import { Reassembler } from "./reassembly.ts";
 * import { encodeMessage } from "../core/message.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeMessage({ type: "echo", text: "hello" });
 * const reassembler = new Reassembler(1024);
 * const total = bytes.length;
 * assert.equal(
 *   reassembler.push({ type: "fragment", id: 1, total, chunk: bytes.subarray(0, 3) }),
 *   undefined,
 * );
 * assert.deepEqual(
 *   reassembler.push({ type: "fragment", id: 1, total, chunk: bytes.subarray(3) }),
 *   { type: "echo", text: "hello" },
 * );
 * assert.equal(reassembler.bytes, 0);
 * ```
 */
export class Reassembler {
  readonly #maxMessage: number;
  readonly #maxBytes: number;
  readonly #partial = new Map<number, Partial>();
  #bytes = 0;

  /**
   * Creates a reassembler.
   *
   * @param maxMessage The largest message accepted (this side's `max_message`); the messages
   * in progress may add up to twice as much.
   */
  constructor(maxMessage: number) {
    this.#maxMessage = maxMessage;
    this.#maxBytes = 2 * maxMessage;
  }

  /** The bytes held for messages in progress (their announced totals). */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Takes one fragment.
   *
   * @param fragment The fragment.
   * @returns The whole message once its last chunk arrived, else `undefined`.
   * @throws {ProtocolError} `LimitExceeded` for a message larger than the limit or beyond the
   * bound of messages in progress; `InvalidMessage` for a total that changes, chunks beyond the
   * total, or a whole message that is malformed or itself a fragment.
   */
  push(fragment: FragmentMessage): Message | undefined {
    const { id, total, chunk } = fragment;
    let partial = this.#partial.get(id);
    if (partial === undefined) {
      if (total > this.#maxMessage) {
        throw new ProtocolError(
          "LimitExceeded",
          `Fragmented message of "${total}" bytes exceeds the largest message "${this.#maxMessage}"`,
        );
      }
      if (this.#bytes + total > this.#maxBytes) {
        throw new ProtocolError(
          "LimitExceeded",
          `Fragmented messages in progress exceed "${this.#maxBytes}" bytes`,
        );
      }
      if (chunk.length === total) return this.#decode(chunk.slice());
      partial = { buffer: new Uint8Array(total), filled: 0 };
      this.#partial.set(id, partial);
      this.#bytes += total;
    } else if (partial.buffer.length !== total) {
      throw new ProtocolError(
        "InvalidMessage",
        `Fragment ${id} announces "${total}" bytes, its first fragment "${partial.buffer.length}"`,
      );
    }
    if (partial.filled + chunk.length > total) {
      throw new ProtocolError("InvalidMessage", `Fragments of message ${id} exceed its total`);
    }
    partial.buffer.set(chunk, partial.filled);
    partial.filled += chunk.length;
    if (partial.filled < total) return undefined;
    this.#partial.delete(id);
    this.#bytes -= total;
    return this.#decode(partial.buffer);
  }

  #decode(buffer: Uint8Array): Message {
    const reader = new Reader(buffer, 0, buffer.length, true);
    const message = readMessage(reader, false);
    reader.expectEnd();
    if (message.type === "fragment") {
      throw new ProtocolError("InvalidMessage", "A fragmented message is itself a fragment");
    }
    return message;
  }

  /** Drops every message in progress (the connection closed). */
  clear(): void {
    this.#partial.clear();
    this.#bytes = 0;
  }
}
