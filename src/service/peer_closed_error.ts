/**
 * CLOSE codes as the connection uses them: the error a peer's failure CLOSE becomes, and the
 * code that tells a peer why this side ends the session (docs/PROTOCOL.md, "CLOSE").
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { CloseCode, MAX_CLOSE_REASON_BYTES } from "../secure/channel.ts";

/**
 * The peer ended the session with a CLOSE record whose code reports a failure, 2 and up
 * (docs/PROTOCOL.md, "CLOSE"; 0 and 1 are clean ends): `Connection.closed()` resolves
 * with it, and requests still in flight fail
 * with `ConnectionClosed` caused by it.
 *
 * @example Read why the peer closed
 * ```ts
 * import { PeerClosedError } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const error = new PeerClosedError(4, "idle timeout");
 * assert.equal(error.code, "Timeout");
 * assert.equal(error.closeCode, 4);
 * assert.equal(error.reason, "idle timeout");
 * ```
 */
export class PeerClosedError extends ProtocolError {
  /** The u16 CLOSE code the peer sent (see `CloseCode`). */
  readonly closeCode: number;
  /** The reason text the peer sent. */
  readonly reason: string;

  /**
   * Creates the error.
   *
   * @param closeCode The code of the peer's CLOSE.
   * @param reason The reason text of the peer's CLOSE.
   */
  constructor(closeCode: number, reason: string) {
    super(
      closeCodeToLocal(closeCode),
      `Peer closed the session with code ${closeCode} (${closeCodeName(closeCode)}): "${reason}"`,
    );
    this.name = "PeerClosedError";
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

function closeCodeName(code: number): string {
  switch (code) {
    case CloseCode.Normal:
      return "normal";
    case CloseCode.GoingAway:
      return "going away";
    case CloseCode.ProtocolError:
      return "protocol error";
    case CloseCode.LimitExceeded:
      return "limit exceeded";
    case CloseCode.IdleTimeout:
      return "idle timeout";
    case CloseCode.KeyExhausted:
      return "key exhausted";
    default:
      return code >= 0x1000 ? "application" : "unknown";
  }
}

function closeCodeToLocal(code: number): ProtocolError["code"] {
  switch (code) {
    case CloseCode.ProtocolError:
      return "PolicyViolation";
    case CloseCode.LimitExceeded:
    case CloseCode.KeyExhausted:
      return "LimitExceeded";
    case CloseCode.IdleTimeout:
      return "Timeout";
    default:
      return "ConnectionClosed";
  }
}

/**
 * The CLOSE code that tells the peer why this side ends the session after `error`, or
 * `undefined` when no CLOSE can or should be sent (the channel failed, the socket is gone, or
 * the failure is this side's own).
 */
export function closeCodeFor(error: ProtocolError): number | undefined {
  switch (error.code) {
    case "InvalidHeader":
    case "UnsupportedVersion":
    case "InvalidMessage":
    case "UnexpectedMessage":
    case "PolicyViolation":
    case "DecompressionFailure":
      return CloseCode.ProtocolError;
    case "OversizedPacket":
    case "LimitExceeded":
      return CloseCode.LimitExceeded;
    case "Timeout":
      return CloseCode.IdleTimeout;
    default:
      return undefined;
  }
}

/** The CLOSE reason for `text`: cut to the 123 UTF-8 bytes a CLOSE record can carry. */
export function closeReason(text: string): string {
  let reason = text;
  while (new TextEncoder().encode(reason).length > MAX_CLOSE_REASON_BYTES) {
    reason = reason.slice(0, -1);
  }
  return reason;
}
