/**
 * The field encodings that messages and batches are made of: unsigned LEB128 integers (at most
 * 2^53 - 1, minimal encoding), UTF-8 strings prefixed by their LEB128 length, and a
 * {@linkcode Reader} that decodes them with bounds checks. Internal to the core: the public
 * codecs are in `message.ts` and `batch.ts`.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/** The largest integer a field may hold: 2^53 - 1, the largest safe integer. */
export const MAX_WIRE_INTEGER = Number.MAX_SAFE_INTEGER;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Returns the LEB128 size of a non-negative safe integer.
 *
 * @example Sizes
 * ```ts
 * import { varintSize } from "./wire.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(varintSize(127), 1);
 * assert.equal(varintSize(128), 2);
 * ```
 *
 * @param value The integer.
 * @returns Its encoded size in bytes.
 */
export function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/**
 * Writes a non-negative safe integer as LEB128.
 *
 * @example Write 300
 * ```ts
 * import { writeVarint } from "./wire.ts";
 * import assert from "node:assert/strict";
 *
 * const out = new Uint8Array(2);
 * assert.equal(writeVarint(out, 0, 300), 2);
 * assert.deepEqual(out, new Uint8Array([0xac, 0x02]));
 * ```
 *
 * @param out The buffer; it must have room.
 * @param offset Where to write.
 * @param value The integer.
 * @returns The offset just past it.
 */
export function writeVarint(out: Uint8Array, offset: number, value: number): number {
  while (value >= 0x80) {
    out[offset++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[offset++] = value;
  return offset;
}

/**
 * Returns the UTF-8 length of `text` (lone surrogates count as U+FFFD, as `TextEncoder` does).
 *
 * @example Lengths
 * ```ts
 * import { utf8Length } from "./wire.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(utf8Length("a€"), 4);
 * ```
 *
 * @param text The text.
 * @returns Its UTF-8 length in bytes.
 */
export function utf8Length(text: string): number {
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

/**
 * Returns the encoded size of a string field (its LEB128 length and its UTF-8 bytes), and
 * checks that it is a string.
 *
 * @example Size of a string field
 * ```ts
 * import { stringSize } from "./wire.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(stringSize("hi"), 3);
 * ```
 *
 * @param text The text.
 * @returns Its encoded size in bytes.
 * @throws {TypeError} When `text` is not a string.
 */
export function stringSize(text: string): number {
  if (typeof text !== "string") throw new TypeError("Cannot encode a string field: not a string");
  const length = utf8Length(text);
  return varintSize(length) + length;
}

/**
 * Writes a string field: its LEB128 length and its UTF-8 bytes.
 *
 * @example Write "hi"
 * ```ts
 * import { writeString } from "./wire.ts";
 * import assert from "node:assert/strict";
 *
 * const out = new Uint8Array(3);
 * assert.equal(writeString(out, 0, "hi"), 3);
 * assert.deepEqual(out, new Uint8Array([2, 0x68, 0x69]));
 * ```
 *
 * @param out The buffer; it must have room (see {@linkcode stringSize}).
 * @param offset Where to write.
 * @param text The text.
 * @returns The offset just past it.
 */
export function writeString(out: Uint8Array, offset: number, text: string): number {
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

/**
 * Reads fields from `bytes[offset, end)`. Every read past `end` and every malformed field
 * throws {@linkcode ProtocolError} with code `InvalidMessage`.
 *
 * @example Read an integer and a string
 * ```ts
 * import { Reader } from "./wire.ts";
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
