/**
 * The messages a connection delivers to its application (those no dispatcher or pending
 * request took), and the callers waiting for them.
 *
 * @module
 */

import type { Message } from "../core/message.ts";
import { ProtocolError } from "../errors.ts";

type Waiter = (message: Message | null) => void;

/** The queue with nothing in it: shared, never written to (`#push` replaces it). */
const NO_MESSAGES: Message[] = [];

/**
 * A bounded queue of delivered messages with waiting receivers. The connection stops reading
 * while it holds `limit` messages ({@linkcode ReceiveQueue.full}) and is told through
 * `onTaken` when the application took some.
 *
 * @example Deliver, then receive
 * ```ts
 * import { ReceiveQueue } from "./receive_queue.ts";
 * import assert from "node:assert/strict";
 *
 * const queue = new ReceiveQueue(2, { onTaken: () => {} });
 * const next = queue.receive();
 * queue.deliver({ type: "ping" });
 * assert.deepEqual(await next, { type: "ping" });
 * queue.close();
 * assert.equal(await queue.receive(), null);
 * ```
 */
export class ReceiveQueue {
  readonly #limit: number;
  readonly #host: { onTaken(): void };
  // Idle queues hold no arrays of their own (idle memory, docs/PERFORMANCE.md).
  #queue: Message[] = NO_MESSAGES;
  #waiters: Waiter[] | undefined;
  #closed = false;

  /**
   * Creates an empty queue.
   *
   * @param limit How many messages it holds before {@linkcode ReceiveQueue.full} says so.
   * @param host Told when the application took messages (reading may resume).
   */
  constructor(limit: number, host: { onTaken(): void }) {
    this.#limit = limit;
    this.#host = host;
  }

  /** Whether it holds its limit of messages (the connection pauses reading). */
  get full(): boolean {
    return this.#queue.length >= this.#limit;
  }

  /**
   * Hands a message to the first waiting receiver, or queues it.
   *
   * @param message The message.
   */
  deliver(message: Message): void {
    const waiter = this.#waiters?.shift();
    if (waiter !== undefined) waiter(message);
    else this.#push(message);
  }

  /**
   * Receives the next message.
   *
   * @param signal Stops waiting (rejects with `Cancelled`).
   * @returns The message, or `null` once closed and empty.
   */
  receive(signal?: AbortSignal): Promise<Message | null> {
    if (this.#queue.length > 0) {
      const message = this.#queue.shift()!;
      if (this.#queue.length < this.#limit) this.#host.onTaken();
      return Promise.resolve(message);
    }
    if (this.#closed) return Promise.resolve(null);
    return this.#wait(signal, (message, resolve) => resolve(message));
  }

  /**
   * Receives every queued message at once (one promise per read instead of one per message).
   *
   * @param signal Stops waiting (rejects with `Cancelled`).
   * @returns One or more messages in order, or `null` once closed and empty.
   */
  receiveBatch(signal?: AbortSignal): Promise<Message[] | null> {
    if (this.#queue.length > 0) return Promise.resolve(this.#takeAll());
    if (this.#closed) return Promise.resolve(null);
    return this.#wait<Message[]>(signal, (message, resolve, rewait) => {
      // The first message wakes the waiter; the rest of the same read is handled
      // synchronously before this microtask runs, so the batch holds all of them.
      this.#push(message);
      queueMicrotask(() => {
        if (this.#queue.length > 0) resolve(this.#takeAll());
        else rewait(); // Taken by a concurrent receive() in between: wait again.
      });
    });
  }

  /** Ends the queue: waiting receivers get what is left, then `null`. */
  close(): void {
    this.#closed = true;
    const waiters = this.#waiters;
    this.#waiters = undefined;
    if (waiters !== undefined) { for (const waiter of waiters) waiter(null); }
  }

  #push(message: Message): void {
    if (this.#queue === NO_MESSAGES) this.#queue = [message];
    else this.#queue.push(message);
  }

  #takeAll(): Message[] {
    const batch = this.#queue;
    this.#queue = NO_MESSAGES;
    this.#host.onTaken();
    return batch;
  }

  /**
   * Waits in line for the next delivered message. `onMessage` settles the wait (it may queue
   * the message instead and re-wait); the end of the queue resolves `null`; an abort rejects
   * with `Cancelled` and leaves the line, so no message is delivered to a caller that stopped
   * waiting.
   */
  #wait<T>(
    signal: AbortSignal | undefined,
    onMessage: (
      message: Message,
      resolve: (value: T | null) => void,
      rewait: () => void,
    ) => void,
  ): Promise<T | null> {
    if (signal?.aborted) {
      return Promise.reject(
        new ProtocolError("Cancelled", "Receive was cancelled", { cause: signal.reason }),
      );
    }
    return new Promise<T | null>((resolve, reject) => {
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        const i = this.#waiters?.indexOf(waiter) ?? -1;
        if (i >= 0) this.#waiters!.splice(i, 1);
        reject(new ProtocolError("Cancelled", "Receive was cancelled", { cause: signal?.reason }));
      };
      const finish = (value: T | null) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        resolve(value);
      };
      const rewait = () => {
        if (settled) return;
        if (this.#closed) finish(null);
        else (this.#waiters ??= []).push(waiter);
      };
      const waiter = (message: Message | null) => {
        if (message === null) {
          // Closed: a batch waiter may still have queued messages to hand over.
          if (this.#queue.length > 0) onMessage(this.#queue.shift()!, finish, rewait);
          else finish(null);
          return;
        }
        if (settled) {
          // Aborted after being picked: keep the message for the next caller.
          if (this.#queue === NO_MESSAGES) this.#queue = [message];
          else this.#queue.unshift(message);
          return;
        }
        onMessage(message, finish, rewait);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      (this.#waiters ??= []).push(waiter);
    });
  }
}
