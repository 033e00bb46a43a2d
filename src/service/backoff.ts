/**
 * Exponential backoff with full jitter, the one rule that the reconnecting client and the
 * connection pool share: attempt _n_ waits a random time in
 * `[0, min(capMs, baseMs * 2^(n-1)))`.
 *
 * @module
 */

/**
 * The upper bound of the wait before attempt `attempt` (1 for the first):
 * `min(capMs, baseMs * 2^(attempt-1))`.
 *
 * @example The bound doubles up to the cap
 * ```ts
 * import { backoffCeiling } from "./backoff.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(backoffCeiling(1, 100, 1000), 100);
 * assert.equal(backoffCeiling(3, 100, 1000), 400);
 * assert.equal(backoffCeiling(10, 100, 1000), 1000);
 * ```
 *
 * @param attempt The attempt, from 1.
 * @param baseMs The first step in milliseconds.
 * @param capMs The largest step in milliseconds.
 * @returns The bound in milliseconds.
 */
export function backoffCeiling(attempt: number, baseMs: number, capMs: number): number {
  // 2 ** 1024 is Infinity, which Math.min turns into the cap.
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

/**
 * The wait before attempt `attempt` with full jitter: a random whole number of milliseconds in
 * `[0, backoffCeiling(attempt, baseMs, capMs))`.
 *
 * @example Every wait stays under the bound
 * ```ts
 * import { backoffDelay } from "./backoff.ts";
 * import assert from "node:assert/strict";
 *
 * const delay = backoffDelay(2, 100, 1000);
 * assert.ok(delay >= 0 && delay < 200);
 * assert.equal(backoffDelay(2, 100, 1000, () => 0.5), 100);
 * ```
 *
 * @param attempt The attempt, from 1.
 * @param baseMs The first step in milliseconds.
 * @param capMs The largest step in milliseconds.
 * @param random A source of numbers in `[0, 1)` (default `Math.random`).
 * @returns The wait in milliseconds.
 */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  capMs: number,
  random: () => number = Math.random,
): number {
  return Math.floor(random() * backoffCeiling(attempt, baseMs, capMs));
}
