/**
 * The async iterator of a listener: accepted connections until the listener is closed.
 *
 * @module
 */

/**
 * Yields what `accept` resolves with, until it fails after the listener was closed (the end of
 * the iteration); any other failure is thrown to the iterating code.
 *
 * @example Iterate over two accepted values, then stop at close
 * ```ts
 * import { acceptUntilClosed } from "./accept_loop.ts";
 * import assert from "node:assert/strict";
 *
 * let closed = false;
 * let n = 0;
 * const accept = () => n < 2 ? Promise.resolve(++n) : ((closed = true), Promise.reject(new Error("closed")));
 * assert.deepEqual(await Array.fromAsync(acceptUntilClosed(accept, () => closed)), [1, 2]);
 * ```
 *
 * @param accept Accepts the next connection.
 * @param isClosed Whether the listener has been closed.
 * @returns The iterator.
 */
export async function* acceptUntilClosed<T>(
  accept: () => Promise<T>,
  isClosed: () => boolean,
): AsyncGenerator<T, void, undefined> {
  for (;;) {
    try {
      yield await accept();
    } catch (error) {
      if (isClosed()) return;
      throw error;
    }
  }
}
