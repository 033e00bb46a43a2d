/**
 * A bump allocator for small byte copies. In Deno every new `ArrayBuffer` costs a few hundred
 * nanoseconds (measured in docs/PERFORMANCE.md), while a view costs tens: copying many small
 * payloads into one shared slab and handing out views is several times faster than one
 * allocation per copy. A retained view keeps at most one slab alive.
 *
 * @module
 */

/** Copies small byte ranges into shared slabs and returns views of the copies. */
export class Slab {
  readonly #size: number;
  readonly #maxCopy: number;
  #buffer: Uint8Array;
  #offset = 0;

  /**
   * Creates a slab allocator.
   *
   * @param size The size of each slab in bytes (default 64 KiB).
   */
  constructor(size = 64 * 1024) {
    this.#size = size;
    this.#maxCopy = size >>> 3;
    this.#buffer = new Uint8Array(0);
  }

  /**
   * Returns `length` fresh bytes (zeros) that nothing else uses: a view into a slab for small
   * lengths, a new buffer for large ones. Slab bytes are never handed out twice.
   *
   * @param length The number of bytes.
   * @returns The bytes.
   */
  alloc(length: number): Uint8Array {
    if (length > this.#maxCopy) return new Uint8Array(length);
    let offset = this.#offset;
    if (offset + length > this.#buffer.length) {
      this.#buffer = new Uint8Array(this.#size);
      offset = 0;
    }
    this.#offset = offset + length;
    return this.#buffer.subarray(offset, offset + length);
  }

  /**
   * Returns a copy of `source[start, end)` that does not alias `source`.
   *
   * @param source The bytes to copy from.
   * @param start The first byte.
   * @param end One past the last byte.
   * @returns The copy: a view into a slab for small ranges, a new buffer for large ones.
   */
  copy(source: Uint8Array, start: number, end: number): Uint8Array {
    const length = end - start;
    if (length > this.#maxCopy) return source.slice(start, end);
    let offset = this.#offset;
    if (offset + length > this.#buffer.length) {
      this.#buffer = new Uint8Array(this.#size);
      offset = 0;
    }
    const buffer = this.#buffer;
    if (length <= 32) {
      for (let i = 0; i < length; i++) buffer[offset + i] = source[start + i]!;
    } else {
      buffer.set(source.subarray(start, end), offset);
    }
    this.#offset = offset + length;
    return buffer.subarray(offset, offset + length);
  }
}
