/**
 * Why a client's handshake stopped at the server's first reply: the server closed the connection
 * (it refused the hello, or was at a limit) or answered with bytes that are not a packet of this
 * protocol (it speaks TLS or another protocol). The explanation names the likely causes for the
 * client's mode and pattern, so that a misconfiguration is found without the server's logs (the
 * server never tells the client why it refused).
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { fingerprint } from "./keys.ts";
import { type ClientPolicy, PATTERN_INFO } from "./policy.ts";

/** Read errors that mean the bytes received are not packets of this protocol. */
const FRAMING_CODES: ReadonlySet<string> = new Set([
  "InvalidHeader",
  "UnsupportedVersion",
  "OversizedPacket",
  "Truncated",
]);

/** Said of every server that closed after the first message: it may just be at a limit. */
const AT_LIMIT =
  "; or it is at a limit (connections, handshakes, or the handshake rate of this address) " +
  "and refused the connection before reading it: then retrying later helps";

/**
 * Explains a failure to read the server's reply to the client's first handshake message.
 *
 * @example The server closed the connection after a plaintext hello
 * ```ts
 * import { explainFirstReplyFailure } from "./handshake_explain.ts";
 * import { resolveClientPolicy } from "./policy.ts";
 * import assert from "node:assert/strict";
 *
 * const policy = resolveClientPolicy({ encryption: false });
 * const error = explainFirstReplyFailure(policy, undefined);
 * assert.match(error!.message, /probably requires encryption/);
 * ```
 *
 * @param policy The client's policy.
 * @param cause The read error, or `undefined` at a clean end of stream.
 * @returns The explanation (code `HandshakeFailed`), or `undefined` for a read error that is
 * neither a closed connection nor bytes that are not a packet.
 */
export function explainFirstReplyFailure(
  policy: ClientPolicy,
  cause: ProtocolError | undefined,
): ProtocolError | undefined {
  const options = cause === undefined ? {} : { cause };
  if (cause !== undefined && FRAMING_CODES.has(cause.code)) {
    return new ProtocolError(
      "HandshakeFailed",
      `The server's reply is not a handshake packet of this protocol: it probably speaks TLS ` +
        `(set transport.kind = "tls" on the client) or another protocol (${cause.message})`,
      options,
    );
  }
  if (cause !== undefined && cause.code !== "ConnectionClosed") return undefined;
  const closed = "The server closed the connection after our first handshake message";
  if (policy.mode === "plaintext") {
    return new ProtocolError(
      "HandshakeFailed",
      `${closed}: it probably requires encryption (this client has encryption disabled), ` +
        `or it speaks TLS (set transport.kind = "tls")${AT_LIMIT}`,
      options,
    );
  }
  const pattern = policy.pattern!;
  const facts = PATTERN_INFO[pattern];
  if (facts.serverKnown) {
    return new ProtocolError(
      "HandshakeFailed",
      `${closed}: its key is probably not the pinned one (fingerprint "${
        fingerprint(policy.pins[0]!)
      }"); it may also refuse pattern "${pattern}"${
        facts.clientStatic ? " or this client's key" : ""
      }${facts.psk ? " or the pre-shared key" : ""}${AT_LIMIT}`,
      options,
    );
  }
  return new ProtocolError(
    "HandshakeFailed",
    `${closed}: it probably does not accept pattern "${pattern}"${
      facts.psk
        ? " or the pre-shared key differs"
        : " (it may require another pattern, a pre-shared key or plaintext)"
    }, or it speaks TLS (set transport.kind = "tls")${AT_LIMIT}`,
    options,
  );
}
