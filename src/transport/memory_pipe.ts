/**
 * One direction of a memory connection (`memory_conn.ts`): a bounded queue of the bytes one end
 * wrote and the other has not read, with the reads and writes that wait on it.
 *
 * @module
 */

/** A read waiting for data or EOF. */
export interface PendingRead {
  /** Where the bytes go. */
  buffer: Uint8Array;
  /** Completes the read with a count, or `null` for EOF. */
  resolve(n: number | null): void;
  /** Fails the read. */
  reject(error: Error): void;
}

/** A write waiting for room. */
export interface PendingWrite {
  /** The bytes to write. */
  data: Uint8Array;
  /** Completes the write with the count accepted. */
  resolve(n: number): void;
  /** Fails the write. */
  reject(error: Error): void;
}

/**
 * One direction: the bytes one end wrote and the other has not read, and who waits on them.
 *
 * @example Bytes written are read in order, then EOF
 * ```ts
 * import { Pipe } from "./memory_pipe.ts";
 * import assert from "node:assert/strict";
 *
 * const pipe = new Pipe(4, Infinity);
 * const written = Promise.withResolvers<number>();
 * pipe.writes.push({ data: new Uint8Array([1, 2, 3, 4, 5]), ...written });
 * pipe.ended = true;
 * pipe.pump();
 * assert.equal(await written.promise, 4); // a partial write: 4 bytes fit
 * const read = Promise.withResolvers<number | null>();
 * const buffer = new Uint8Array(8);
 * pipe.reads.push({ buffer, ...read });
 * pipe.pump();
 * assert.equal(await read.promise, 4);
 * ```
 */
export class Pipe {
  readonly highWaterMark: number;
  readonly maxReadSize: number;
  /** Bytes buffered. */
  buffered = 0;
  /** The writing end shut its side: the reader gets EOF after the buffered bytes. */
  ended = false;
  /** The reading end is closed: writes fail. */
  readerGone = false;
  /** Reads wait even when data is there (see `pauseRead`). */
  paused = false;
  /** The reading end's next read fails with this, once (a reset). */
  readError: Error | undefined;
  /** Reads of the reading end, in call order. */
  readonly reads: PendingRead[] = [];
  /** Writes of the writing end waiting for room, in call order. */
  readonly writes: PendingWrite[] = [];
  #chunks: Uint8Array[] = [];
  #first = 0;
  #offset = 0;

  constructor(highWaterMark: number, maxReadSize: number) {
    this.highWaterMark = highWaterMark;
    this.maxReadSize = maxReadSize;
  }

  /** Drops the buffered bytes. */
  discard(): void {
    this.#chunks = [];
    this.#first = 0;
    this.#offset = 0;
    this.buffered = 0;
  }

  /** Rejects and forgets every waiting read. */
  rejectReads(error: () => Error): void {
    for (const read of this.reads.splice(0)) read.reject(error());
  }

  /** Rejects and forgets every waiting write. */
  rejectWrites(error: () => Error): void {
    for (const write of this.writes.splice(0)) write.reject(error());
  }

  /** Completes what can complete: reads while there is data or EOF, writes while there is room. */
  pump(): void {
    for (;;) {
      let progress = false;
      while (!this.paused && this.reads.length > 0) {
        if (this.readError !== undefined) {
          const error = this.readError;
          this.readError = undefined;
          this.reads.shift()!.reject(error);
        } else if (this.buffered > 0) {
          const read = this.reads.shift()!;
          read.resolve(this.#take(read.buffer));
        } else if (this.ended) {
          this.reads.shift()!.resolve(null);
        } else {
          break;
        }
        progress = true;
      }
      while (this.writes.length > 0 && this.buffered < this.highWaterMark) {
        const write = this.writes.shift()!;
        const n = Math.min(write.data.length, this.highWaterMark - this.buffered);
        // A copy: like a socket, the caller may reuse its buffer once the write resolved.
        this.#chunks.push(write.data.slice(0, n));
        this.buffered += n;
        write.resolve(n);
        progress = true;
      }
      if (!progress) return;
    }
  }

  #take(into: Uint8Array): number {
    const want = Math.min(into.length, this.buffered, this.maxReadSize);
    let n = 0;
    while (n < want) {
      const chunk = this.#chunks[this.#first]!;
      const k = Math.min(chunk.length - this.#offset, want - n);
      into.set(chunk.subarray(this.#offset, this.#offset + k), n);
      n += k;
      this.#offset += k;
      if (this.#offset === chunk.length) {
        this.#first++;
        this.#offset = 0;
      }
    }
    if (this.#first === this.#chunks.length) {
      this.#chunks = [];
      this.#first = 0;
    } else if (this.#first >= 1024 && this.#first * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#first);
      this.#first = 0;
    }
    this.buffered -= n;
    return n;
  }
}
