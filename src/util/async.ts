/**
 * Small async helpers shared by the layers: waiting with an `AbortSignal`, within a time limit
 * or at most for a while, sleeping, and yielding a turn of the event loop.
 *
 * @module
 */

import { setImmediate } from "node:timers";
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
  if (signal.aborted) return Promise.reject(cancelled(what, signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled(what, signal));
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

function cancelled(what: string, signal: AbortSignal): ProtocolError {
  return new ProtocolError("Cancelled", `${what} was cancelled`, { cause: signal.reason });
}

/** Options of {@linkcode deadline}. */
export interface DeadlineOptions {
  /** Stops the wait: it rejects with `Cancelled`, caused by the signal's reason. */
  signal?: AbortSignal | undefined;
  /** The error after the time limit (default: `Timeout`, "<what> timed out after <ms> ms"). */
  timeoutError?: () => Error;
}

/**
 * Starts `start()` and waits for its promise within `timeoutMs`, and until `options.signal`
 * aborts. Nothing is started when the signal is already aborted. The timer and the abort listener
 * are removed as soon as the wait ends; the promise itself is not cancelled, only the wait.
 *
 * @example Give up on something slow
 * ```ts
 * import { deadline } from "./async.ts";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(deadline("Loading", 10, () => new Promise(() => {})), {
 *   code: "Timeout",
 *   message: "Loading timed out after 10 ms",
 * });
 * assert.equal(await deadline("Loading", 1000, () => Promise.resolve(42)), 42);
 * ```
 *
 * @param what What is waited for, for the error messages (sentence case).
 * @param timeoutMs The time limit in milliseconds.
 * @param start Starts what is waited for.
 * @param options A signal, and the error to reject with after the time limit.
 * @returns The promise's value.
 * @throws {ProtocolError} `Timeout` (or `options.timeoutError()`) after the time limit,
 * `Cancelled` when the signal aborts; or what `start` throws or its promise rejects with.
 */
export function deadline<T>(
  what: string,
  timeoutMs: number,
  start: () => Promise<T>,
  options: DeadlineOptions = {},
): Promise<T> {
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(cancelled(what, signal));
  let promise: Promise<T>;
  try {
    promise = start();
  } catch (error) {
    return Promise.reject(error);
  }
  return new Promise<T>((resolve, reject) => {
    const end = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = (): void => {
      end();
      reject(cancelled(what, signal!));
    };
    const timer = setTimeout(() => {
      end();
      reject(
        options.timeoutError?.() ??
          new ProtocolError("Timeout", `${what} timed out after ${timeoutMs} ms`),
      );
    }, timeoutMs);
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        end();
        resolve(value);
      },
      (error) => {
        end();
        reject(error);
      },
    );
  });
}

/**
 * Waits for `promise`, but at most `ms` milliseconds: resolves with its value, or with
 * `undefined` when the time is up first. A rejection before then passes through. The timer is
 * removed as soon as the wait ends.
 *
 * @example Wait a little for a slow close
 * ```ts
 * import { waitAtMost } from "./async.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await waitAtMost(new Promise(() => {}), 10), undefined);
 * assert.equal(await waitAtMost(Promise.resolve("closed"), 1000), "closed");
 * ```
 *
 * @param promise What to wait for.
 * @param ms The most time to wait.
 * @returns The promise's value, or `undefined` after `ms`.
 */
export async function waitAtMost<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
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
 * @param signal Ends the sleep early (none: the whole time).
 * @returns `true` when the time passed, `false` when the signal aborted it.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
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

/**
 * Lets what the microtasks queued run to its next wait, and the event loop poll its I/O, with
 * no timer: resolves in the event loop's check phase (`setImmediate`, a few µs; a timer of 0 ms
 * nested in timers waits a few ms). For a reader that handed a reply to the application and
 * has more to open: the application's continuation (and the request it writes next) runs first.
 *
 * @example Let a resolved reply's continuation run
 * ```ts
 * import { yieldImmediate } from "./async.ts";
 * import assert from "node:assert/strict";
 *
 * let ran = false;
 * void Promise.resolve().then(() => Promise.resolve()).then(() => ran = true);
 * await yieldImmediate();
 * assert.ok(ran);
 * ```
 *
 * @returns A promise resolved once the microtasks queued so far (and those they queue) ran.
 */
export function yieldImmediate(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
