/**
 * The error a handler throws to answer a numbered request with its own error code and text.
 *
 * @module
 */

/** The smallest error code an application may use; 1 to 999 are the library's (ErrorCodes). */
export const MIN_APPLICATION_ERROR_CODE = 1000;

/**
 * Thrown by a handler to answer a numbered request with an `error` message carrying `code`
 * (1000 and up) and `message` as its text; the caller's `request()` then rejects with a
 * `RemoteError` whose `remoteCode` is `code`. Anything else a handler throws is answered with
 * the generic code 2 (`HandlerFailed`) and its text stays on the server, in its log.
 *
 * @example Refuse a request with an application code
 * ```ts
 * import {
 *   ApplicationError,
 *   connect,
 *   Dispatcher,
 *   RemoteError,
 *   serve,
 * } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dispatcher = new Dispatcher().register("WITHDRAW", () => {
 *   throw new ApplicationError(1402, "Insufficient funds");
 * });
 * await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
 * const { port } = server.addr as Deno.NetAddr;
 * await using client = await connect({
 *   address: `127.0.0.1:${port}`,
 *   security: { serverKeys: [server.publicKey!] },
 * });
 * const error = await client
 *   .request({ type: "custom", command: "WITHDRAW", payload: new Uint8Array() })
 *   .catch((e) => e);
 * assert.ok(error instanceof RemoteError);
 * assert.equal(error.remoteCode, 1402);
 * assert.match(error.message, /Insufficient funds/);
 * ```
 */
export class ApplicationError extends Error {
  /** The error code sent to the peer (1000 to 4294967295). */
  readonly code: number;

  /**
   * Creates the error.
   *
   * @param code The code sent to the peer (an integer from 1000 to 4294967295).
   * @param message The text sent to the peer.
   * @param options The cause, kept on this side only.
   * @throws {RangeError} For a code outside 1000..4294967295.
   */
  constructor(code: number, message: string, options?: ErrorOptions) {
    super(message, options);
    if (!Number.isInteger(code) || code < MIN_APPLICATION_ERROR_CODE || code > 0xffff_ffff) {
      throw new RangeError(
        `Cannot use application error code "${code}": it must be an integer from 1000 to 4294967295`,
      );
    }
    this.name = "ApplicationError";
    this.code = code;
  }
}
