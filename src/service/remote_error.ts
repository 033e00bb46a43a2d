/**
 * The error of a numbered request that the peer answered with an `error` message.
 *
 * @module
 */

import { ErrorCodes } from "../core/message.ts";
import { ProtocolError } from "../errors.ts";

/**
 * The peer answered a numbered request with an `error` message.
 *
 * @example Inspect a remote error
 * ```ts
 * import { RemoteError } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const error = new RemoteError(1, 'No handler is registered for opcode "X"');
 * assert.equal(error.remoteCode, 1);
 * assert.equal(error.code, "UnexpectedMessage");
 * ```
 */
export class RemoteError extends ProtocolError {
  /** The error code the peer sent (see `ErrorCodes`). */
  readonly remoteCode: number;

  /**
   * Creates the error.
   *
   * @param remoteCode The code the peer sent.
   * @param text The text the peer sent.
   */
  constructor(remoteCode: number, text: string) {
    super(remoteCodeToLocal(remoteCode), `Peer answered with error ${remoteCode}: ${text}`);
    this.name = "RemoteError";
    this.remoteCode = remoteCode;
  }
}

function remoteCodeToLocal(code: number): ProtocolError["code"] {
  switch (code) {
    case ErrorCodes.Cancelled:
      return "Cancelled";
    case ErrorCodes.DeadlineExceeded:
      return "Timeout";
    case ErrorCodes.ShuttingDown:
      return "ConnectionClosed";
    case ErrorCodes.TooLarge:
      return "LimitExceeded";
    default:
      return "UnexpectedMessage";
  }
}
