/**
 * Routes each inbound message of a connection by its type to the part that handles that family
 * of messages. New families (streams, cluster probes) register their types here instead of
 * editing a `switch` in the connection.
 *
 * @module
 */

import type { Message } from "../core/message.ts";

/** A message's type name (`"ping"`, `"request"`, ...). */
export type MessageType = Message["type"];

/** Handles the messages of one type. */
export type Route<T extends MessageType> = (message: Extract<Message, { type: T }>) => void;

/**
 * A table from message type to handler, with a fallback for types nobody registered.
 *
 * @example Route pings to one handler and everything else to another
 * ```ts
 * import { MessageRouter } from "./message_router.ts";
 * import assert from "node:assert/strict";
 *
 * const seen: string[] = [];
 * const router = new MessageRouter((message) => seen.push(`other ${message.type}`))
 *   .register("ping", () => seen.push("ping"));
 * router.route({ type: "ping" });
 * router.route({ type: "echo", text: "a" });
 * assert.deepEqual(seen, ["ping", "other echo"]);
 * assert.throws(() => router.register("ping", () => {}), TypeError);
 * ```
 */
export class MessageRouter {
  readonly #routes = new Map<MessageType, (message: Message) => void>();
  readonly #fallback: (message: Message) => void;

  /**
   * Creates a router.
   *
   * @param fallback Handles the messages of types that have no route.
   */
  constructor(fallback: (message: Message) => void) {
    this.#fallback = fallback;
  }

  /**
   * Registers the handler of a message type.
   *
   * @param type The type.
   * @param route Its handler.
   * @returns This router, for chaining.
   * @throws {TypeError} When the type already has a handler.
   */
  register<T extends MessageType>(type: T, route: Route<T>): this {
    if (this.#routes.has(type)) {
      throw new TypeError(`Cannot route message type "${type}": it already has a handler`);
    }
    this.#routes.set(type, route as (message: Message) => void);
    return this;
  }

  /**
   * Hands a message to the handler of its type, or to the fallback.
   *
   * @param message The message.
   */
  route(message: Message): void {
    const route = this.#routes.get(message.type);
    if (route !== undefined) route(message);
    else this.#fallback(message);
  }
}
