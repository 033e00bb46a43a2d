/**
 * The cluster's errors.
 *
 * @module
 */

import { ProtocolError } from "../../errors.ts";

/**
 * The node at a peer's address is not that peer: it presented another Noise static key than
 * the one pinned or first seen for it (`"key-mismatch"`), or reported another node id
 * (`"wrong-id"`). Nothing but the handshake (and, for `"wrong-id"`, one probe) reached it.
 *
 * @example Tell an impostor from an outage
 * ```ts
 * import { PeerIdentityError } from "@npro/network-protocol";
 *
 * function isImpostor(error: unknown): boolean {
 *   return error instanceof PeerIdentityError && error.reason === "key-mismatch";
 * }
 * console.log(isImpostor(new Error("x")));
 * ```
 */
export class PeerIdentityError extends ProtocolError {
  /** Which check failed. */
  readonly reason: "key-mismatch" | "wrong-id";
  /** The peer (its membership key). */
  readonly peer: string;

  /**
   * The error.
   *
   * @param peer The peer's membership key.
   * @param reason Which check failed.
   * @param message What happened.
   * @param options The cause.
   */
  constructor(
    peer: string,
    reason: "key-mismatch" | "wrong-id",
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super("HandshakeFailed", message, options);
    this.name = "PeerIdentityError";
    this.reason = reason;
    this.peer = peer;
  }
}

/**
 * `Cluster.request()` found no peer to send to: the peer named is unknown or not alive, or
 * (without a name) no peer is alive.
 *
 * @example Fall back when no peer is alive
 * ```ts
 * import { NoPeerAvailable } from "@npro/network-protocol";
 *
 * console.log(new NoPeerAvailable("No alive peer").code);
 * ```
 */
export class NoPeerAvailable extends ProtocolError {
  /**
   * The error.
   *
   * @param message What is missing.
   * @param options The cause.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("ConnectionRefused", message, options);
    this.name = "NoPeerAvailable";
  }
}
