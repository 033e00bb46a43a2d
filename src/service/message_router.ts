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

/** Handles the messages of one type, for the context (the connection) they arrived on. */
export type Route<C, T extends MessageType> = (
  context: C,
  message: Extract<Message, { type: T }>,
) => void;

/**
 * A table from message type to handler, with a fallback for types nobody registered. One router
 * serves every connection (its handlers take the connection as their context), so a connection
 * costs no table of its own.
 *
 * @example Route pings to one handler and everything else to another
 * ```ts
 * import { MessageRouter } from "./message_router.ts";
 * import assert from "node:assert/strict";
 *
 * const router = new MessageRouter<string[]>((seen, message) => seen.push(`other ${message.type}`))
 *   .register("ping", (seen) => seen.push("ping"));
 * const seen: string[] = [];
 * router.route(seen, { type: "ping" });
 * router.route(seen, { type: "echo", text: "a" });
 * assert.deepEqual(seen, ["ping", "other echo"]);
 * assert.throws(() => router.register("ping", () => {}), TypeError);
 * ```
 */
export class MessageRouter<C> {
  readonly #routes = new Map<MessageType, (context: C, message: Message) => void>();
  readonly #fallback: (context: C, message: Message) => void;

  /**
   * Creates a router.
   *
   * @param fallback Handles the messages of types that have no route.
   */
  constructor(fallback: (context: C, message: Message) => void) {
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
  register<T extends MessageType>(type: T, route: Route<C, T>): this {
    if (this.#routes.has(type)) {
      throw new TypeError(`Cannot route message type "${type}": it already has a handler`);
    }
    this.#routes.set(type, route as (context: C, message: Message) => void);
    return this;
  }

  /**
   * Hands a message to the handler of its type, or to the fallback.
   *
   * @param context Where the message arrived.
   * @param message The message.
   */
  route(context: C, message: Message): void {
    const route = this.#routes.get(message.type);
    if (route !== undefined) route(context, message);
    else this.#fallback(context, message);
  }
}
