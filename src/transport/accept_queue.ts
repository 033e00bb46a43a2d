/**
 * The hand-over between a listener's connection events and its `accept()` callers, for the
 * listeners built on `node:net` servers (the `node:tls` backend and the `reusePort` TCP listener):
 * connections that arrived before anyone asked wait in a bounded queue; one caller at a time may
 * wait for the next.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { formatAddr } from "./address.ts";

/**
 * Connections accepted by the kernel and not yet taken by `accept()`.
 *
 * @example Hand a connection to a waiting caller, then close
 * ```ts
 * import { AcceptQueue } from "./accept_queue.ts";
 * import assert from "node:assert/strict";
 *
 * const queue = new AcceptQueue<Deno.Conn>(() => ({ transport: "tcp", hostname: "127.0.0.1", port: 1 }));
 * const next = queue.accept();
 * const conn = { close() {} } as unknown as Deno.Conn;
 * queue.deliver(conn);
 * assert.equal(await next, conn);
 * queue.close();
 * await assert.rejects(queue.accept(), /is closed/);
 * ```
 */
export class AcceptQueue<C extends Deno.Conn> {
  readonly #addr: () => Deno.Addr;
  readonly #queue: C[] = [];
  #waiter: { resolve: (conn: C) => void; reject: (error: Error) => void } | undefined;
  #closed = false;

  /**
   * An empty queue.
   *
   * @param addr The listener's address, for the error of `accept()` after close.
   */
  constructor(addr: () => Deno.Addr) {
    this.#addr = addr;
  }

  /** Whether {@linkcode AcceptQueue.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Whether a caller waits in `accept()`. */
  get waiting(): boolean {
    return this.#waiter !== undefined;
  }

  /** Connections waiting for `accept()`. */
  get length(): number {
    return this.#queue.length;
  }

  /**
   * Hands a connection to the waiting caller, or queues it (the caller bounds the queue).
   *
   * @param conn The connection.
   */
  deliver(conn: C): void {
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      this.#waiter = undefined;
      waiter.resolve(conn);
    } else {
      this.#queue.push(conn);
    }
  }

  /**
   * The next connection.
   *
   * @returns The connection.
   * @throws {ProtocolError} `ConnectionClosed` once closed.
   * @throws {Deno.errors.Busy} When another `accept()` is pending.
   */
  accept(): Promise<C> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const next = this.#queue.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (this.#waiter !== undefined) {
      return Promise.reject(new Deno.errors.Busy("Another accept is pending"));
    }
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /** Closes the queued connections (not handed out yet) and fails the waiting caller. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const conn of this.#queue.splice(0)) conn.close();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(this.#closedError());
  }

  #closedError(): ProtocolError {
    return new ProtocolError(
      "ConnectionClosed",
      `Listener on "${formatAddr(this.#addr())}" is closed`,
    );
  }
}
