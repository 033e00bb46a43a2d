/**
 * The table of numbered requests this side sent and still waits for: ids, time limits, cancel
 * through an `AbortSignal`, and the answers that settle them. Sans-I/O: it sends through a
 * callback (a `request` or a `cancel` message), as yamux's streams send through `sendFrame`.
 *
 * @module
 */

import type { Message } from "../core/message.ts";
import { ProtocolError } from "../errors.ts";
import { RemoteError } from "./remote_error.ts";

/** Sends a message to the peer (it may throw, for example for a message over the size limit). */
export type SendMessage = (message: Message) => void;

interface Outstanding {
  resolve(message: Message): void;
  reject(error: unknown): void;
  deadline: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** Past this many settled ids at the head of the deadline queue, it is compacted. */
const COMPACT_AFTER = 4096;
/** How many clock reads a turn may share (see RequestTable.#coarseNow). */
const CLOCK_SHARES = 256;

/**
 * Outbound numbered requests. Requests with the default time limit share ONE timer: their
 * deadlines come in the order they were sent, so a queue in deadline order and a timer for its
 * head serve them all (a timer per request was one of the larger per-request costs). Requests
 * with another time limit get their own timer.
 *
 * @example Send a request and settle it with the answer
 * ```ts
 * import { RequestTable } from "./request_table.ts";
 * import type { Message } from "../core/message.ts";
 * import { ProtocolError } from "../errors.ts";
 * import assert from "node:assert/strict";
 *
 * const sent: Message[] = [];
 * const table = new RequestTable((message) => sent.push(message), 1000);
 * const reply = table.request({ type: "ping" }, 1000, undefined);
 * assert.equal(sent[0]!.type, "request");
 * table.answer({ type: "response", id: 1, message: { type: "pong" } });
 * assert.deepEqual(await reply, { type: "pong" });
 * table.close(new ProtocolError("ConnectionClosed", "done")); // stops the shared timer
 * ```
 */
export class RequestTable {
  readonly #send: SendMessage;
  readonly #defaultTimeoutMs: number;
  readonly #requests = new Map<number, Outstanding>();
  #nextId = 1;
  /** Ids of requests with the default time limit, in deadline order, from `#head` on. */
  #byDeadline: number[] = [];
  #head = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** The peer's GOAWAY, once received. */
  #goAway: { lastRequest: number; reason: string } | undefined;
  /** performance.now() cached for the rest of the current turn (see #coarseNow). */
  #turnNow = -1;
  #turnUses = 0;

  /**
   * Creates an empty table.
   *
   * @param send Sends `request` and `cancel` messages to the peer.
   * @param defaultTimeoutMs The time limit of requests that do not set one.
   */
  constructor(send: SendMessage, defaultTimeoutMs: number) {
    this.#send = send;
    this.#defaultTimeoutMs = defaultTimeoutMs;
  }

  /** The number of requests waiting for an answer. */
  get size(): number {
    return this.#requests.size;
  }

  /**
   * Sends a numbered request for `message` and resolves with the answer's message.
   *
   * @param message The un-numbered message to send.
   * @param timeoutMs Its time limit (the deadline sent to the peer, rounded up).
   * @param signal Cancels it: the promise rejects with `Cancelled` and the peer gets a `cancel`.
   * @returns The response's message; rejects with `RemoteError`, `Timeout`, `Cancelled`, or
   * what `send` threw.
   */
  request(message: Message, timeoutMs: number, signal: AbortSignal | undefined): Promise<Message> {
    if (this.#closed) {
      return Promise.reject(new ProtocolError("ConnectionClosed", "Connection is closed"));
    }
    if (this.#goAway !== undefined) {
      return Promise.reject(
        notProcessed(this.#nextId, this.#goAway.lastRequest, this.#goAway.reason),
      );
    }
    const id = this.#nextId++;
    return new Promise<Message>((resolve, reject) => {
      const outstanding: Outstanding = {
        resolve,
        reject,
        deadline: this.#coarseNow() + timeoutMs,
        timer: undefined,
        signal,
        onAbort: undefined,
      };
      try {
        this.#send({ type: "request", id, deadline: Math.ceil(timeoutMs), message });
      } catch (error) {
        reject(error);
        return;
      }
      this.#requests.set(id, outstanding);
      if (timeoutMs === this.#defaultTimeoutMs) {
        this.#byDeadline.push(id);
        if (this.#timer === undefined) this.#arm();
      } else {
        outstanding.timer = setTimeout(() => this.#expire(id, timeoutMs), timeoutMs);
      }
      if (signal !== undefined) {
        outstanding.onAbort = () => {
          if (!this.#requests.has(id)) return;
          this.#remove(id);
          reject(
            new ProtocolError("Cancelled", `Request ${id} was cancelled`, { cause: signal.reason }),
          );
          if (!this.#closed) this.#send({ type: "cancel", id });
        };
        signal.addEventListener("abort", outstanding.onAbort, { once: true });
      }
    });
  }

  /**
   * Settles the request that a `response` or `error` message answers. A late answer (to a
   * request that timed out or was cancelled) is ignored.
   *
   * @param message The answer.
   */
  answer(message: Extract<Message, { type: "response" | "error" }>): void {
    const outstanding = this.#requests.get(message.id);
    if (outstanding === undefined) return;
    this.#remove(message.id);
    if (message.type === "response") outstanding.resolve(message.message);
    else outstanding.reject(new RemoteError(message.code, message.text));
  }

  /**
   * The peer sent GOAWAY: fails the waiting requests numbered above `lastRequest` with
   * `NotProcessed` (the peer will never run them: safe to retry elsewhere), and every later one.
   *
   * @param lastRequest The highest request id the peer will process.
   * @param reason The peer's reason.
   */
  goAway(lastRequest: number, reason: string): void {
    this.#goAway = { lastRequest, reason };
    for (const [id, outstanding] of [...this.#requests]) {
      if (id <= lastRequest) continue;
      this.#remove(id);
      outstanding.reject(notProcessed(id, lastRequest, reason));
    }
  }

  /**
   * Fails every waiting request with `ConnectionClosed` caused by `cause`, stops the timers,
   * and refuses new requests.
   *
   * @param cause Why the connection closed.
   */
  close(cause: ProtocolError): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const [id, outstanding] of this.#requests) {
      this.#requests.delete(id);
      release(outstanding);
      outstanding.reject(
        new ProtocolError(
          "ConnectionClosed",
          `Connection closed before request ${id} was answered`,
          { cause },
        ),
      );
    }
    this.#byDeadline = [];
    this.#head = 0;
  }

  /**
   * performance.now(), read at most once per 256 calls and never reused after the current
   * microtask queue drains: stale by at most the time 256 requests take to create. Reading the
   * clock is an op call in Deno, a visible cost per request.
   */
  #coarseNow(): number {
    if (this.#turnNow >= 0 && ++this.#turnUses < CLOCK_SHARES) return this.#turnNow;
    if (this.#turnNow < 0) queueMicrotask(this.#resetTurnNow);
    this.#turnUses = 0;
    this.#turnNow = performance.now();
    return this.#turnNow;
  }

  readonly #resetTurnNow = (): void => {
    this.#turnNow = -1;
  };

  #expire(id: number, timeoutMs: number): void {
    const outstanding = this.#requests.get(id);
    if (outstanding === undefined) return;
    this.#remove(id);
    outstanding.reject(
      new ProtocolError("Timeout", `Request ${id} got no answer within ${timeoutMs} ms`),
    );
    if (!this.#closed) this.#send({ type: "cancel", id });
  }

  #remove(id: number): void {
    const outstanding = this.#requests.get(id)!;
    this.#requests.delete(id);
    release(outstanding);
    // The shared timer stays armed: it fires at most once per time limit and re-arms for the
    // oldest request still waiting, instead of a timer call per request.
    const queue = this.#byDeadline;
    if (queue[this.#head] === id) {
      // Answers mostly come in order: drop settled ids from the head as they go.
      let head = this.#head + 1;
      while (head < queue.length && !this.#requests.has(queue[head]!)) head++;
      this.#head = head;
      if (head === queue.length || head > COMPACT_AFTER) this.#compact();
    } else if (queue.length - this.#head > 2 * this.#requests.size + 1024) {
      this.#compact();
    }
  }

  #arm(): void {
    let head: Outstanding | undefined;
    while (this.#head < this.#byDeadline.length) {
      head = this.#requests.get(this.#byDeadline[this.#head]!);
      if (head !== undefined) break;
      this.#head++;
    }
    if (head === undefined) {
      this.#byDeadline = [];
      this.#head = 0;
      this.#timer = undefined;
      return;
    }
    const wait = Math.max(0, head.deadline - performance.now());
    this.#timer = setTimeout(() => this.#onTimer(), wait + 1);
  }

  #onTimer(): void {
    this.#timer = undefined;
    const now = performance.now();
    let i = this.#head;
    for (; i < this.#byDeadline.length; i++) {
      const id = this.#byDeadline[i]!;
      const outstanding = this.#requests.get(id);
      if (outstanding === undefined) continue;
      if (outstanding.deadline > now) break;
      this.#expire(id, this.#defaultTimeoutMs);
    }
    this.#head = i;
    this.#compact();
    if (this.#byDeadline.length > 0 && !this.#closed) this.#arm();
  }

  /** Keeps the deadline queue bounded by the requests in flight (amortized O(1)). */
  #compact(): void {
    const live = this.#byDeadline.length - this.#head;
    if (live === 0) {
      this.#byDeadline.length = 0;
      this.#head = 0;
    } else if (this.#head > COMPACT_AFTER && this.#head > live) {
      this.#byDeadline = this.#byDeadline.slice(this.#head);
      this.#head = 0;
    }
    if (this.#byDeadline.length - this.#head > 2 * this.#requests.size + 1024) {
      this.#byDeadline = this.#byDeadline.slice(this.#head).filter((id) => this.#requests.has(id));
      this.#head = 0;
    }
  }
}

function notProcessed(id: number, lastRequest: number, reason: string): ProtocolError {
  return new ProtocolError(
    "NotProcessed",
    `Request ${id} was not processed: the peer is draining (GOAWAY "${reason}", last request ${lastRequest}); retrying it elsewhere is safe`,
  );
}

function release(outstanding: Outstanding): void {
  if (outstanding.timer !== undefined) clearTimeout(outstanding.timer);
  if (outstanding.onAbort !== undefined) {
    outstanding.signal?.removeEventListener("abort", outstanding.onAbort);
  }
}
