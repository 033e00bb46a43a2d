/**
 * The pool's typed errors: {@linkcode PoolExhausted} (no capacity within the wait, or the wait
 * queue is full) and {@linkcode CircuitOpen} (every address's circuit breaker is open). Both are
 * {@linkcode ProtocolError}s, so `isProtocolError(error, code)` keeps working on them.
 *
 * @module
 */

import { ProtocolError, type ProtocolErrorOptions } from "../errors.ts";

/**
 * Why a pool had no connection to give: `"timeout"` (the caller waited past its acquire time
 * limit) or `"queue-full"` (`maxWaiters` callers were already waiting, so it failed at once).
 *
 * @example Back off only when the queue was full
 * ```ts
 * import { PoolExhausted, type PoolExhaustedReason } from "@npro/network-protocol";
 *
 * const reason: PoolExhaustedReason = new PoolExhausted("timeout", "No pooled connection was free").reason;
 * console.log(reason === "queue-full" ? "shed load" : "try again");
 * ```
 */
export type PoolExhaustedReason = "timeout" | "queue-full";

/**
 * A pool had no capacity for a request or a lease: every connection was at
 * `maxRequestsPerConnection` (or leased) and `maxConnections` were open or opening, and the
 * caller waited past `acquireTimeoutMs` (`reason` `"timeout"`, code `Timeout`), or
 * `maxWaiters` callers were already waiting (`reason` `"queue-full"`, code `LimitExceeded`,
 * failed at once). The request was never sent, so it is safe to retry later. `cause` holds the
 * last failure to connect, when there was one.
 *
 * @example Tell a full queue from a timeout
 * ```ts
 * import { isProtocolError, PoolExhausted } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const error = new PoolExhausted("queue-full", 'Pool has "1000" callers waiting already');
 * assert.ok(error instanceof PoolExhausted);
 * assert.ok(isProtocolError(error, "LimitExceeded"));
 * assert.equal(error.reason, "queue-full");
 * ```
 */
export class PoolExhausted extends ProtocolError {
  /** Why: the caller's wait ran out, or the wait queue was full. */
  readonly reason: PoolExhaustedReason;

  /**
   * Creates the error.
   *
   * @param reason `"timeout"` (code `Timeout`) or `"queue-full"` (code `LimitExceeded`).
   * @param message A sentence that explains it, with values quoted.
   * @param options The underlying cause (the last connection failure), if any.
   */
  constructor(reason: PoolExhaustedReason, message: string, options?: ProtocolErrorOptions) {
    super(reason === "timeout" ? "Timeout" : "LimitExceeded", message, options);
    this.name = "PoolExhausted";
    this.reason = reason;
  }
}

/**
 * Every address of a pool has its circuit breaker open (it failed to connect
 * `failureThreshold` times in a row and is cooling down), so the pool fails at once instead of
 * waiting out the caller's time limit. `address` is the address that opens again soonest and
 * `retryAfterMs` when; `cause` is that address's last failure. Its code is
 * `ConnectionRefused`: nothing was sent, and retrying after `retryAfterMs` may help.
 *
 * @example Wait as long as the breaker says
 * ```ts
 * import { CircuitOpen, isProtocolError } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const error = new CircuitOpen("10.0.0.1:9000", 2500);
 * assert.ok(isProtocolError(error, "ConnectionRefused"));
 * assert.equal(error.retryAfterMs, 2500);
 * assert.match(error.message, /"10\.0\.0\.1:9000"/);
 * ```
 */
export class CircuitOpen extends ProtocolError {
  /** The address whose breaker lets a probe through soonest. */
  readonly address: string;
  /** Milliseconds until that breaker lets a probe through (0 when a probe is running). */
  readonly retryAfterMs: number;

  /**
   * Creates the error.
   *
   * @param address The address that opens again soonest.
   * @param retryAfterMs Milliseconds until it does.
   * @param options The last failure to connect to it, if any.
   */
  constructor(address: string, retryAfterMs: number, options?: ProtocolErrorOptions) {
    super(
      "ConnectionRefused",
      `Circuit breaker of "${address}" is open: no connection is tried for ${
        Math.ceil(retryAfterMs)
      } ms`,
      options,
    );
    this.name = "CircuitOpen";
    this.address = address;
    this.retryAfterMs = retryAfterMs;
  }
}
