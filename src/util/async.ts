/**
 * Small async helpers shared by the layers: waiting with an `AbortSignal`, sleeping, and
 * yielding a turn of the event loop.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/**
 * Waits for `promise`, or rejects with `Cancelled` (caused by the signal's reason) as soon as
 * `signal` aborts. The promise itself is not cancelled: only the wait.
 *
 * @example Stop waiting for something that never comes
 * ```ts
 * import { abortable } from "./async.ts";
 * import assert from "node:assert/strict";
 *
 * const controller = new AbortController();
 * const waiting = abortable(new Promise(() => {}), controller.signal, "Flush");
 * controller.abort();
 * await assert.rejects(waiting, { code: "Cancelled", message: "Flush was cancelled" });
 * ```
 *
 * @param promise What to wait for.
 * @param signal Stops the wait; none waits for as long as the promise takes.
 * @param what What is waited for, for the error message (sentence case).
 * @returns The promise's value.
 */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  what: string,
): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    return Promise.reject(
      new ProtocolError("Cancelled", `${what} was cancelled`, { cause: signal.reason }),
    );
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(new ProtocolError("Cancelled", `${what} was cancelled`, { cause: signal.reason }));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Sleeps for `ms` milliseconds, or less if `signal` aborts first.
 *
 * @example Sleep unless aborted
 * ```ts
 * import { sleep } from "./async.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await sleep(1, new AbortController().signal), true);
 * assert.equal(await sleep(10_000, AbortSignal.abort()), false);
 * ```
 *
 * @param ms How long.
 * @param signal Ends the sleep early.
 * @returns `true` when the time passed, `false` when the signal aborted it.
 */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Lets the other tasks of the event loop run: resolves on a macrotask turn (a timer), not a
 * microtask, so pending I/O of other connections is served first.
 *
 * @example Yield between slices of work
 * ```ts
 * import { yieldTurn } from "./async.ts";
 *
 * for (let slice = 0; slice < 3; slice++) await yieldTurn();
 * ```
 *
 * @returns A promise resolved on the next turn.
 */
export function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
