/**
 * What a connection counts while it runs: bytes and encrypted records each way, key updates,
 * compression, backpressure pauses and streams (`Connection.stats()`), and the observer the daemon
 * gives its connections for what is counted per event: requests by opcode and outcome with their
 * duration, and protocol violations by kind (docs/DEPLOYMENT.md, "Metrics").
 *
 * The counters are plain numbers the connection adds to once per read, write or batch; the
 * observer is called once per request. Nothing here allocates on the hot path.
 *
 * @module
 */

import { ErrorCodes, type Message } from "../core/message.ts";

/**
 * A snapshot of what one connection moved and did (see `Connection.stats()`).
 *
 * @example The compression saving of a connection
 * ```ts
 * import type { ConnectionStats } from "@npro/network-protocol";
 *
 * function saved(stats: ConnectionStats): number {
 *   return stats.compressedBytesIn - stats.compressedBytesOut;
 * }
 * ```
 */
export interface ConnectionStats {
  /** Bytes read from the socket (after the handshake, framing included). */
  bytesReceived: number;
  /** Bytes written to the socket (after the handshake, framing included). */
  bytesSent: number;
  /** Encrypted records opened (secure mode; 0 in plaintext). */
  recordsReceived: number;
  /** Encrypted records sealed (secure mode; 0 in plaintext), KEY_UPDATE and CLOSE included. */
  recordsSent: number;
  /** KEY_UPDATE records this side sealed (its own rekeys). */
  keyUpdatesSent: number;
  /** KEY_UPDATE records this side opened (the peer's rekeys). */
  keyUpdatesReceived: number;
  /** Message bodies sent compressed. */
  compressedBodies: number;
  /** Bytes of the compressed bodies before compression. */
  compressedBytesIn: number;
  /** Bytes of the compressed bodies after compression. */
  compressedBytesOut: number;
  /** Times reading paused because a bound was reached (backpressure). */
  readPauses: number;
  /** Streams opened, by either side. */
  streamsOpened: number;
  /** Streams open now. */
  streamsOpen: number;
}

/** How a request ended, the `outcome` label of `npro_requests_total`. */
export type RequestOutcome =
  | "ok"
  | "application_error"
  | "handler_failed"
  | "unknown_opcode"
  | "cancelled"
  | "deadline_exceeded"
  | "shutting_down"
  | "too_large";

/** Every {@linkcode RequestOutcome}, in a fixed order. */
export const REQUEST_OUTCOMES: readonly RequestOutcome[] = [
  "ok",
  "application_error",
  "handler_failed",
  "unknown_opcode",
  "cancelled",
  "deadline_exceeded",
  "shutting_down",
  "too_large",
];

const OUTCOME_OF_CODE: Readonly<Record<number, RequestOutcome>> = {
  [ErrorCodes.UnknownOpcode]: "unknown_opcode",
  [ErrorCodes.HandlerFailed]: "handler_failed",
  [ErrorCodes.Cancelled]: "cancelled",
  [ErrorCodes.DeadlineExceeded]: "deadline_exceeded",
  [ErrorCodes.ShuttingDown]: "shutting_down",
  [ErrorCodes.TooLarge]: "too_large",
};

/**
 * The outcome of a numbered request from its reply: `ok` for a `response`, the library's code
 * for an `error` with one, `application_error` for an application's own code.
 *
 * @example Name the outcome of two replies
 * ```ts
 * import { requestOutcome } from "./connection_stats.ts";
 * import { ErrorCodes } from "../core/message.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(requestOutcome({ type: "response", id: 1, message: { type: "pong" } }), "ok");
 * assert.equal(
 *   requestOutcome({ type: "error", id: 1, code: ErrorCodes.Cancelled, text: "" }),
 *   "cancelled",
 * );
 * assert.equal(requestOutcome({ type: "error", id: 1, code: 4001, text: "" }), "application_error");
 * ```
 *
 * @param reply The reply.
 * @returns The outcome.
 */
export function requestOutcome(reply: Message): RequestOutcome {
  if (reply.type !== "error") return "ok";
  return OUTCOME_OF_CODE[reply.code] ?? "application_error";
}

/** What a connection reports per event to whoever counts (the daemon's metrics). */
export interface ConnectionObserver {
  /**
   * A request or un-numbered message was handled.
   *
   * @param opcode The opcode of the message (the observer bounds the set of values).
   * @param outcome How it ended; un-numbered messages are `ok` or `handler_failed`.
   * @param seconds From the start of its handler to its reply.
   */
  request(opcode: string, outcome: RequestOutcome, seconds: number): void;
  /**
   * The peer committed a protocol violation.
   *
   * @param kind What it did (a fixed set of short phrases chosen by the library).
   */
  violation(kind: string): void;
}

/**
 * Adds `stats` into `total` field by field (`streamsOpen` included: a sum of snapshots of open
 * connections is what is open now).
 *
 * @example Sum two snapshots
 * ```ts
 * import { addStats, emptyStats } from "./connection_stats.ts";
 * import assert from "node:assert/strict";
 *
 * const total = emptyStats();
 * addStats(total, { ...emptyStats(), bytesSent: 10 });
 * addStats(total, { ...emptyStats(), bytesSent: 5 });
 * assert.equal(total.bytesSent, 15);
 * ```
 *
 * @param total What is added to.
 * @param stats What is added.
 */
export function addStats(total: ConnectionStats, stats: ConnectionStats): void {
  for (const key of STAT_KEYS) total[key] += stats[key];
}

/**
 * A snapshot with every count at 0.
 *
 * @example Start a total
 * ```ts
 * import { emptyStats } from "./connection_stats.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(emptyStats().bytesReceived, 0);
 * ```
 *
 * @returns The snapshot.
 */
export function emptyStats(): ConnectionStats {
  return Object.fromEntries(STAT_KEYS.map((key) => [key, 0])) as Record<
    keyof ConnectionStats,
    number
  >;
}

// Keyed by the interface, so the compiler keeps the list complete.
const STAT_FIELDS: Record<keyof ConnectionStats, true> = {
  bytesReceived: true,
  bytesSent: true,
  recordsReceived: true,
  recordsSent: true,
  keyUpdatesSent: true,
  keyUpdatesReceived: true,
  compressedBodies: true,
  compressedBytesIn: true,
  compressedBytesOut: true,
  readPauses: true,
  streamsOpened: true,
  streamsOpen: true,
};
const STAT_KEYS = Object.keys(STAT_FIELDS) as (keyof ConnectionStats)[];
