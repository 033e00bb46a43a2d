/**
 * The error type every layer of the library throws for protocol, security, limit and I/O
 * failures that a caller is expected to catch. Bad arguments (a negative timeout, a key of the
 * wrong length) are reported with the built-in `TypeError` and `RangeError` instead.
 *
 * @module
 */

/**
 * Machine-readable reason of a {@linkcode ProtocolError}.
 *
 * - `InvalidHeader`: a packet does not start with the magic bytes or its header is malformed.
 * - `UnsupportedVersion`: a packet's version byte is not one this library parses.
 * - `OversizedPacket`: a packet announces a payload larger than the configured limit.
 * - `Truncated`: input or a stream ended in the middle of a unit (a packet, a message, a record),
 *   or an encrypted stream ended without an authenticated CLOSE.
 * - `InvalidMessage`: a message or batch body is malformed.
 * - `UnexpectedMessage`: a well-formed message arrived where it is not allowed, or no handler
 *   is registered for its opcode.
 * - `HandshakeFailed`: a secure handshake did not complete (bad message, wrong pattern, pin
 *   mismatch, rejected by policy).
 * - `AuthenticationFailed`: an encrypted record failed authentication (tampered, replayed,
 *   reordered, dropped or reflected). The channel is dead afterwards.
 * - `DecompressionFailure`: a compressed body is corrupt.
 * - `LimitExceeded`: a size, count or rate limit was reached (for example a decompression bomb).
 * - `Timeout`: an operation did not finish within its time limit.
 * - `ConnectionClosed`: the connection is closed, or closed while the operation was pending.
 * - `ConnectionRefused`: nothing accepts connections at the address (the operating system
 *   refused the connection: no listener on that port or Unix socket). Retrying later may help.
 * - `AddressInUse`: the address to listen on is already taken (another listener on that port or
 *   a live Unix socket at that path).
 * - `PermissionDenied`: the operating system or the Deno runtime denied access (a privileged
 *   port, an unwritable directory, a socket file without write permission, or a missing
 *   `--allow-net`, `--allow-read` or `--allow-write` permission). Retrying cannot help.
 * - `ConfigError`: configuration could not be parsed or is invalid.
 * - `TlsError`: TLS set-up or a TLS handshake failed, or a TLS option cannot be enforced.
 * - `PolicyViolation`: the peer did something the negotiated policy forbids (for example a
 *   compression algorithm that was not negotiated, or a security mode the server does not allow).
 * - `Cancelled`: the operation was aborted through its `AbortSignal`.
 * - `NotProcessed`: the peer is draining (it sent GOAWAY) and did not process this request or
 *   stream, and never will: retrying it, on another connection, is safe.
 * - `Internal`: an invariant of the library itself was broken (a bug: please report it).
 */
export type ProtocolErrorCode =
  | "InvalidHeader"
  | "UnsupportedVersion"
  | "OversizedPacket"
  | "Truncated"
  | "InvalidMessage"
  | "UnexpectedMessage"
  | "HandshakeFailed"
  | "AuthenticationFailed"
  | "DecompressionFailure"
  | "LimitExceeded"
  | "Timeout"
  | "ConnectionClosed"
  | "ConnectionRefused"
  | "AddressInUse"
  | "PermissionDenied"
  | "ConfigError"
  | "TlsError"
  | "PolicyViolation"
  | "Cancelled"
  | "NotProcessed"
  | "Internal";

/** Options for {@linkcode ProtocolError}. */
export interface ProtocolErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * An error raised by the protocol: malformed input, a failed handshake or authentication, a
 * limit, a timeout or a closed connection. Inspect {@linkcode ProtocolError.code} to react to a
 * specific failure.
 *
 * @example Catch a specific failure
 * ```ts
 * import { ProtocolError } from "@npro/network-protocol";
 * import { decodePacket } from "@npro/network-protocol/core";
 * import assert from "node:assert/strict";
 *
 * try {
 *   decodePacket(new Uint8Array([1, 2, 3]));
 * } catch (error) {
 *   assert.ok(error instanceof ProtocolError);
 *   assert.equal(error.code, "Truncated");
 * }
 * ```
 */
export class ProtocolError extends Error {
  /** The machine-readable reason of the failure. */
  readonly code: ProtocolErrorCode;

  /**
   * Creates a protocol error.
   *
   * @param code The machine-readable reason.
   * @param message A sentence that explains the failure, with offending values quoted.
   * @param options The underlying cause, if any.
   */
  constructor(code: ProtocolErrorCode, message: string, options?: ProtocolErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ProtocolError";
    this.code = code;
  }
}

/**
 * A stream ended by a reset (`stream_reset`, docs/PROTOCOL.md, "Streams"): from the peer, or
 * from this side (`stream.reset(code)`, a refused or timed-out open). Its `code` says what
 * callers may do: `LimitExceeded` for an open refused at the peer's stream limit (retry later),
 * `UnexpectedMessage` for a command the peer does not handle, `NotProcessed` for an open the
 * peer will not process because it is draining (retry elsewhere), `Timeout` for an open not
 * accepted in time, `Cancelled` for a reset without another reason.
 *
 * @example Tell a refused stream from a failed one
 * ```ts
 * import { StreamError } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const error = new StreamError(1, true, 'Peer refused stream 3 "UPLOAD": its stream limit is reached');
 * assert.equal(error.code, "LimitExceeded");
 * assert.equal(error.resetCode, 1);
 * assert.equal(error.remote, true);
 * ```
 */
export class StreamError extends ProtocolError {
  /** The reset code (`StreamResetCode`, or 1000 and up from an application). */
  readonly resetCode: number;
  /** Whether the peer reset the stream (otherwise this side did). */
  readonly remote: boolean;

  /**
   * Creates the error.
   *
   * @param resetCode The reset code.
   * @param remote Whether the peer sent the reset.
   * @param message A sentence that explains it.
   * @param options The underlying cause, if any.
   */
  constructor(resetCode: number, remote: boolean, message: string, options?: ProtocolErrorOptions) {
    super(streamErrorCode(resetCode), message, options);
    this.name = "StreamError";
    this.resetCode = resetCode;
    this.remote = remote;
  }
}

/** The {@linkcode ProtocolErrorCode} of a reset code (the codes of `StreamResetCode`). */
function streamErrorCode(resetCode: number): ProtocolErrorCode {
  switch (resetCode) {
    case 1:
      return "LimitExceeded";
    case 2:
      return "UnexpectedMessage";
    case 4:
      return "Timeout";
    case 5:
      return "NotProcessed";
    case 6:
      return "ConnectionClosed";
    default:
      return "Cancelled";
  }
}

/**
 * Returns `true` when `error` is a {@linkcode ProtocolError}, optionally with the given code.
 *
 * @example Narrow an unknown error
 * ```ts
 * import { isProtocolError, ProtocolError } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const error: unknown = new ProtocolError("Timeout", "Request timed out after 5000 ms");
 * assert.ok(isProtocolError(error, "Timeout"));
 * assert.ok(!isProtocolError(error, "ConnectionClosed"));
 * ```
 *
 * @param error The value to test.
 * @param code When given, the code the error must have.
 * @returns Whether `error` is a matching protocol error.
 */
export function isProtocolError(error: unknown, code?: ProtocolErrorCode): error is ProtocolError {
  return error instanceof ProtocolError && (code === undefined || error.code === code);
}

/**
 * Wraps anything thrown into a {@linkcode ProtocolError}: a `ProtocolError` is returned as it
 * is, anything else becomes an `Internal` error caused by it.
 *
 * @example Wrap an unexpected failure
 * ```ts
 * import { ProtocolError, toProtocolError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const error = toProtocolError(new TypeError("boom"));
 * assert.ok(error instanceof ProtocolError);
 * assert.equal(error.code, "Internal");
 * ```
 *
 * @param error What was thrown.
 * @returns It, or an `Internal` error caused by it.
 */
export function toProtocolError(error: unknown): ProtocolError {
  if (error instanceof ProtocolError) return error;
  return new ProtocolError("Internal", `Unexpected failure: ${String(error)}`, { cause: error });
}
