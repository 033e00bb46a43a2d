/**
 * Releasing resources on every path.
 *
 * @module
 */

/**
 * Closes a connection or listener, ignoring "already closed" (`Deno.errors.BadResource`) and
 * anything else `close()` throws: for cleanup paths, where the resource must end up closed and
 * the first failure is what gets reported.
 *
 * @example Close twice without an error
 * ```ts
 * import { closeQuietly } from "./resource.ts";
 *
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * closeQuietly(listener);
 * closeQuietly(listener);
 * ```
 *
 * @param resource What to close.
 */
export function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}
