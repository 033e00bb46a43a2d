/**
 * Events fanned out to any number of async-iterator subscribers, each with a bounded queue: the
 * `status()` streams of the client and of the pool.
 *
 * @module
 */

/**
 * Fans events out to subscribers. Each subscriber's queue holds at most `limit` events (the
 * oldest is dropped first); an event of type `"closed"` is the last one: it ends every iterator
 * and later events are ignored.
 *
 * @example Subscribe and receive until closed
 * ```ts
 * import { EventStream } from "./event_stream.ts";
 * import assert from "node:assert/strict";
 *
 * const stream = new EventStream<{ type: string }>(8);
 * const seen = (async () => {
 *   const types: string[] = [];
 *   for await (const event of stream.iterate()) types.push(event.type);
 *   return types;
 * })();
 * await Promise.resolve();
 * stream.emit({ type: "connected" });
 * stream.emit({ type: "closed" });
 * assert.deepEqual(await seen, ["connected", "closed"]);
 * ```
 */
export class EventStream<T extends { readonly type: string }> {
  readonly #limit: number;
  readonly #queues = new Set<{ items: T[]; wake: (() => void) | null }>();
  #done = false;

  /**
   * Creates a stream.
   *
   * @param limit The most events a subscriber that does not keep up holds.
   */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /**
   * Sends an event to every subscriber.
   *
   * @param event The event; `"closed"` ends the stream.
   */
  emit(event: T): void {
    if (this.#done) return;
    for (const queue of this.#queues) {
      queue.items.push(event);
      if (queue.items.length > this.#limit) queue.items.shift();
      queue.wake?.();
      queue.wake = null;
    }
    if (event.type === "closed") this.#done = true;
  }

  /**
   * Subscribes: the events emitted from now on, until `"closed"`.
   *
   * @returns The subscriber's iterator.
   */
  async *iterate(): AsyncIterableIterator<T> {
    if (this.#done) return;
    const queue = { items: [] as T[], wake: null as (() => void) | null };
    this.#queues.add(queue);
    try {
      for (;;) {
        while (queue.items.length > 0) {
          const item = queue.items.shift()!;
          yield item;
          if (item.type === "closed") return;
        }
        if (this.#done) return;
        await new Promise<void>((resolve) => (queue.wake = resolve));
      }
    } finally {
      this.#queues.delete(queue);
    }
  }
}
