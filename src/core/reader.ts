/**
 * The {@linkcode Reader}: bounds-checked decoding of the fields that messages and batches are
 * made of, unsigned LEB128 integers (at most 2^53 - 1, minimal encoding) and UTF-8 strings
 * prefixed by their LEB128 length. Internal to the core: the public codecs are in `message.ts`
 * and `batch.ts`, and the field encoders are in `message.ts` (see there why).
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/** The largest integer a field may hold: 2^53 - 1, the largest safe integer. */
export const MAX_WIRE_INTEGER = Number.MAX_SAFE_INTEGER;

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Reads fields from `bytes[offset, end)`. Every read past `end` and every malformed field
 * throws {@linkcode ProtocolError} with code `InvalidMessage`.
 *
 * @example Read an integer and a string
 * ```ts
 * import { Reader } from "./reader.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = new Uint8Array([0xac, 0x02, 2, 0x68, 0x69]);
 * const reader = new Reader(bytes, 0, bytes.length);
 * assert.equal(reader.varint(), 300);
 * assert.equal(reader.string(), "hi");
 * reader.expectEnd();
 * ```
 */
export class Reader {
  /**
   * Creates a reader.
   *
   * @param bytes The bytes.
   * @param offset Where reading starts; moves as fields are read.
   * @param end Where reading stops.
   * @param owned Whether the caller handed `bytes` over, so that byte fields may be views of it.
   */
  constructor(
    readonly bytes: Uint8Array,
    public offset: number,
    public end: number,
    readonly owned = false,
  ) {}

  /**
   * Reads one byte.
   *
   * @returns The byte.
   */
  byte(): number {
    if (this.offset >= this.end) throw truncated();
    return this.bytes[this.offset++]!;
  }

  /**
   * Reads a minimal LEB128 integer of at most 2^53 - 1.
   *
   * @returns The integer.
   */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) {
          throw new ProtocolError("InvalidMessage", "Message has a non-minimal LEB128 integer");
        }
        if (value > MAX_WIRE_INTEGER) break;
        return value;
      }
      scale *= 128;
    }
    throw new ProtocolError(
      "InvalidMessage",
      `Message has an integer larger than "${MAX_WIRE_INTEGER}"`,
    );
  }

  /**
   * Skips `length` bytes.
   *
   * @param length How many bytes.
   * @returns Where they start.
   */
  take(length: number): number {
    if (length > this.end - this.offset) throw truncated();
    const start = this.offset;
    this.offset += length;
    return start;
  }

  /**
   * Reads a string field: a LEB128 length and that many bytes of valid UTF-8.
   *
   * @returns The string.
   */
  string(): string {
    const length = this.varint();
    const start = this.take(length);
    if (length <= 32) {
      // Short ASCII strings (opcodes, commands) without a view or a decoder call.
      let text = "";
      let i = start;
      for (; i < start + length; i++) {
        const b = this.bytes[i]!;
        if (b >= 0x80) break;
        text += String.fromCharCode(b);
      }
      if (i === start + length) return text;
    }
    try {
      return decoder.decode(this.bytes.subarray(start, start + length));
    } catch (cause) {
      throw new ProtocolError("InvalidMessage", "Message has a string that is not valid UTF-8", {
        cause,
      });
    }
  }

  /** Throws when bytes are left before `end`. */
  expectEnd(): void {
    if (this.offset !== this.end) {
      throw new ProtocolError(
        "InvalidMessage",
        `Message has ${this.end - this.offset} unexpected bytes after its last field`,
      );
    }
  }
}

function truncated(): ProtocolError {
  return new ProtocolError("InvalidMessage", "Message is truncated");
}
