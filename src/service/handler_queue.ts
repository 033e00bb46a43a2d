/**
 * The inbound work of a connection: messages handed to the dispatcher, numbered requests in
 * flight (with their cancel and deadline), and replies to un-numbered messages kept in arrival
 * order, including the replies held behind a slower one, which count against the connection's
 * limits.
 *
 * @module
 */

import { encodedMessageSize, ErrorCodes, type Message, opcodeOf } from "../core/message.ts";
import { ProtocolError } from "../errors.ts";
import { type Dispatcher, type HandlerContext, OWNED_CONTEXT } from "../protocol/dispatcher.ts";
import {
  type ConnectionObserver,
  type RequestOutcome,
  requestOutcome,
} from "./connection_stats.ts";

/** What a held reply counts against the outbound bound beyond its encoding (as in the outbox). */
const HELD_OVERHEAD = 8;

// Set by HandlerContextImpl's static block: they reach its private state without exposing it
// to handlers.
let abortContext: (ctx: HandlerContextImpl, reason: unknown) => void;
let abortReason: (ctx: HandlerContextImpl) => { reason: unknown } | undefined;

const NEVER_ABORTED: AbortSignal = new AbortController().signal;

/**
 * The context of one message handled for the peer. The dispatcher uses it as is (no copy). For
 * a numbered request its `signal` is created only when the handler reads it: most handlers
 * never do, and an `AbortController` per request is one of the larger per-message costs.
 */
class HandlerContextImpl implements HandlerContext {
  declare requestId?: number;
  declare deadline?: number;
  declare remoteStaticKey?: Uint8Array;
  declare remoteAddr?: Deno.Addr;
  #controller: AbortController | undefined = undefined;
  #reason: unknown = undefined;
  #aborted = false;
  #cancellable: boolean;
  /** When the handler's answer is no longer wanted (performance.now() time; async handlers). */
  expiresAt = Infinity;

  constructor(
    remoteAddr: Deno.Addr | undefined,
    remoteStaticKey: Uint8Array | undefined,
    cancellable: boolean,
  ) {
    if (remoteAddr !== undefined) this.remoteAddr = remoteAddr;
    if (remoteStaticKey !== undefined) this.remoteStaticKey = remoteStaticKey;
    this.#cancellable = cancellable;
  }

  get [OWNED_CONTEXT](): true {
    return true;
  }

  get signal(): AbortSignal {
    if (!this.#cancellable) return NEVER_ABORTED;
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  static {
    abortReason = (ctx: HandlerContextImpl): { reason: unknown } | undefined =>
      ctx.#aborted ? { reason: ctx.#reason } : undefined;
    abortContext = (ctx: HandlerContextImpl, reason: unknown): void => {
      if (ctx.#aborted) return;
      ctx.#aborted = true;
      ctx.#reason = reason;
      ctx.#controller?.abort(reason);
    };
  }
}

/** The reply to one un-numbered message, in arrival order. */
interface ReplySlot {
  done: boolean;
  reply: Message | null;
  /** What the held reply counts against the outbound bound. */
  bytes: number;
}

/** No reply slots: shared, never written to (`#pushSlot` replaces it), so idle queues hold no array. */
const NO_SLOTS: ReplySlot[] = [];

/** Options of a {@linkcode HandlerQueue}. */
export interface HandlerQueueOptions {
  /** The handlers. */
  dispatcher: Dispatcher;
  /** The peer's address, for handler contexts. */
  remoteAddr: Deno.Addr | undefined;
  /** The peer's static key, for handler contexts. */
  remoteStaticKey: Uint8Array | undefined;
  /** Sends the replies and hears about failures. */
  host: HandlerQueueHost;
  /** Told of each handled message: its opcode, outcome and duration (optional). */
  observer?: ConnectionObserver | undefined;
}

/** What a {@linkcode HandlerQueue} asks of its connection. */
export interface HandlerQueueHost {
  /**
   * Sends a reply (the connection checks its size).
   *
   * @param message The reply.
   */
  reply(message: Message): void;
  /** A handler finished or a held reply went out: capacity was freed. */
  onSettled(): void;
  /**
   * A handler of an un-numbered message failed (or nobody handles it).
   *
   * @param message The message.
   * @param error What the handler threw.
   */
  onUnorderedFailure(message: Message, error: unknown): void;
}

/**
 * Runs the handlers of one connection's inbound messages.
 *
 * @example Handle a numbered request and an un-numbered message
 * ```ts
 * import { HandlerQueue } from "./handler_queue.ts";
 * import { Dispatcher, registerStandardHandlers } from "../protocol/dispatcher.ts";
 * import type { Message } from "../core/message.ts";
 * import assert from "node:assert/strict";
 *
 * const replies: Message[] = [];
 * const queue = new HandlerQueue({
 *   dispatcher: registerStandardHandlers(new Dispatcher()),
 *   remoteAddr: undefined,
 *   remoteStaticKey: undefined,
 *   host: {
 *     reply: (message) => replies.push(message),
 *     onSettled: () => {},
 *     onUnorderedFailure: () => {},
 *   },
 * });
 * queue.handleRequest({ type: "request", id: 7, message: { type: "echo", text: "a" } });
 * queue.handleOrdered({ type: "ping" });
 * assert.deepEqual(replies, [
 *   { type: "response", id: 7, message: { type: "echo", text: "a" } },
 *   { type: "pong" },
 * ]);
 * ```
 */
export class HandlerQueue {
  readonly #dispatcher: Dispatcher;
  readonly #remoteAddr: Deno.Addr | undefined;
  readonly #remoteStaticKey: Uint8Array | undefined;
  readonly #host: HandlerQueueHost;
  readonly #observer: ConnectionObserver | undefined;
  /** Numbered requests whose async handler runs, by id. */
  /** Made with the first async numbered handler: most connections of a server never need it. */
  #numbered: Map<number, HandlerContextImpl> | undefined;
  /** Async handlers running: numbered and un-numbered. */
  #running = 0;
  #slots: ReplySlot[] = NO_SLOTS;
  #slotHead = 0;
  /** Replies done but held behind an earlier pending one, and their bytes. */
  #heldCount = 0;
  #heldBytes = 0;
  #closed = false;

  /**
   * Creates the queue.
   *
   * @param options The dispatcher, the peer's identity and the callbacks.
   */
  constructor(options: HandlerQueueOptions) {
    this.#dispatcher = options.dispatcher;
    this.#remoteAddr = options.remoteAddr;
    this.#remoteStaticKey = options.remoteStaticKey;
    this.#host = options.host;
    this.#observer = options.observer;
  }

  /** Async handlers running now (numbered and un-numbered). */
  get running(): number {
    return this.#running;
  }

  /** Work that counts against the backpressure limit: running handlers and held replies. */
  get load(): number {
    return this.#running + this.#heldCount;
  }

  /** The bytes of replies held to keep their order. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Whether a handler runs or a reply is held. */
  get busy(): boolean {
    return this.#running > 0 || this.#heldCount > 0;
  }

  /**
   * Handles a numbered request: its reply (a `response` or an `error`) goes out as soon as it
   * is ready, in any order.
   *
   * @param message The request.
   */
  handleRequest(message: Extract<Message, { type: "request" }>): void {
    const ctx = new HandlerContextImpl(this.#remoteAddr, this.#remoteStaticKey, true);
    const observer = this.#observer;
    const started = observer === undefined ? 0 : performance.now();
    const reply = this.#dispatcher.handle(message, ctx);
    if (!(reply instanceof Promise)) {
      if (observer !== undefined) {
        observer.request(opcodeOf(message.message), requestOutcome(reply), elapsed(started));
      }
      this.#host.reply(reply);
      return;
    }
    if (message.deadline !== undefined) ctx.expiresAt = performance.now() + message.deadline;
    (this.#numbered ??= new Map()).set(message.id, ctx);
    this.#running++;
    reply.then((answer) => {
      this.#numbered!.delete(message.id);
      this.#running--;
      if (this.#closed) return;
      const aborted = abortReason(ctx);
      if (aborted !== undefined && answer.type === "error") {
        const reason = aborted.reason;
        answer = {
          type: "error",
          id: message.id,
          code: reason instanceof ProtocolError && reason.code === "Timeout"
            ? ErrorCodes.DeadlineExceeded
            : ErrorCodes.Cancelled,
          text: reason instanceof Error ? reason.message : "Request was cancelled",
        };
      }
      if (observer !== undefined) {
        observer.request(opcodeOf(message.message), requestOutcome(answer), elapsed(started));
      }
      this.#host.reply(answer);
      this.#host.onSettled();
    });
  }

  /**
   * Handles an un-numbered message: its reply keeps the order of the messages, even when an
   * earlier handler is async and slower.
   *
   * @param message The message.
   */
  handleOrdered(message: Message): void {
    let reply: Message | Promise<Message>;
    const ctx = new HandlerContextImpl(this.#remoteAddr, this.#remoteStaticKey, false);
    const observer = this.#observer;
    const started = observer === undefined ? 0 : performance.now();
    try {
      reply = this.#dispatcher.handle(message, ctx);
    } catch (error) {
      observer?.request(opcodeOf(message), unorderedFailure(error), elapsed(started));
      this.#host.onUnorderedFailure(message, error);
      if (this.#slots.length > this.#slotHead) this.#pushSlot(true, null);
      return;
    }
    if (!(reply instanceof Promise)) {
      observer?.request(opcodeOf(message), "ok", elapsed(started));
      if (this.#slots.length === this.#slotHead) this.#host.reply(reply);
      else this.#pushSlot(true, reply);
      return;
    }
    const slot = this.#pushSlot(false, null);
    this.#running++;
    reply.then(
      (answer) => {
        observer?.request(opcodeOf(message), "ok", elapsed(started));
        slot.reply = answer;
      },
      (error) => {
        observer?.request(opcodeOf(message), unorderedFailure(error), elapsed(started));
        this.#host.onUnorderedFailure(message, error);
      },
    ).finally(() => {
      this.#running--;
      this.#settle(slot);
      this.#release();
      this.#host.onSettled();
    });
  }

  /**
   * Aborts the handler of a numbered request the peer cancelled.
   *
   * @param id The request id.
   */
  cancel(id: number): void {
    const ctx = this.#numbered?.get(id);
    if (ctx !== undefined) {
      abortContext(ctx, new ProtocolError("Cancelled", `Peer cancelled request ${id}`));
    }
  }

  /**
   * Aborts the handlers whose request deadline passed.
   *
   * @param now The current time (performance.now()).
   */
  expire(now: number): void {
    if (this.#numbered === undefined) return;
    for (const [id, ctx] of this.#numbered) {
      if (ctx.expiresAt < now) {
        abortContext(ctx, new ProtocolError("Timeout", `Request ${id} passed its deadline`));
      }
    }
  }

  /** Aborts every running handler and drops what is held: the connection closed. */
  close(): void {
    this.#closed = true;
    for (const ctx of this.#numbered?.values() ?? []) {
      abortContext(ctx, new ProtocolError("ConnectionClosed", "Connection closed"));
    }
  }

  /**
   * Queues a slot for the reply to an un-numbered message, in arrival order. A reply that is
   * done but waits behind an earlier pending one is held: it counts against the backpressure
   * limit and the outbound byte bound, so a slow handler cannot make replies pile up unbounded.
   */
  #pushSlot(done: boolean, reply: Message | null): ReplySlot {
    const slot: ReplySlot = { done: false, reply, bytes: 0 };
    if (this.#slots === NO_SLOTS) this.#slots = [slot];
    else this.#slots.push(slot);
    if (done) this.#settle(slot);
    return slot;
  }

  #settle(slot: ReplySlot): void {
    slot.done = true;
    this.#heldCount++;
    if (slot.reply !== null) {
      slot.bytes = encodedMessageSize(slot.reply) + HELD_OVERHEAD;
      this.#heldBytes += slot.bytes;
    }
  }

  #release(): void {
    const slots = this.#slots;
    while (this.#slotHead < slots.length && slots[this.#slotHead]!.done) {
      const slot = slots[this.#slotHead]!;
      this.#slotHead++;
      this.#heldCount--;
      this.#heldBytes -= slot.bytes;
      if (slot.reply !== null && !this.#closed) this.#host.reply(slot.reply);
    }
    if (this.#slotHead === slots.length) {
      this.#slots = NO_SLOTS;
      this.#slotHead = 0;
    }
  }
}

/** Seconds since `started` (performance.now()). */
function elapsed(started: number): number {
  return (performance.now() - started) / 1000;
}

/** The outcome of an un-numbered message whose handler failed (or that nobody handles). */
function unorderedFailure(error: unknown): RequestOutcome {
  return error instanceof ProtocolError && error.code === "UnexpectedMessage"
    ? "unknown_opcode"
    : "handler_failed";
}
