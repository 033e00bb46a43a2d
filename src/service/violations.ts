/**
 * Counting a peer's protocol violations: acts that break no cryptographic rule but cost work for
 * nothing (an empty record, an un-numbered message nobody handles). A few are tolerated; past
 * the limit within a window the connection closes with CLOSE code 2.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import { peerEvents } from "../log_budget.ts";

const log = logger("connection");

/** The window over which protocol violations are counted. */
export const VIOLATION_WINDOW_MS = 60_000;

/**
 * The violations of one connection within the current window. Made at the first violation:
 * honest connections never hold one.
 *
 * @example Tolerate two violations a minute
 * ```ts
 * import { ViolationCounter } from "./violations.ts";
 * import assert from "node:assert/strict";
 *
 * const counter = new ViolationCounter(2);
 * assert.equal(counter.record(1, "empty record", "Received a record with no messages"), undefined);
 * assert.equal(counter.record(1, "empty record", "Received a record with no messages"), undefined);
 * assert.equal(counter.record(1, "empty record", "Received a record with no messages")?.code, "PolicyViolation");
 * ```
 */
export class ViolationCounter {
  readonly #max: number;
  #count = 0;
  #windowStart = 0;

  /**
   * Creates a counter.
   *
   * @param max The violations tolerated within {@linkcode VIOLATION_WINDOW_MS}.
   */
  constructor(max: number) {
    this.#max = max;
  }

  /**
   * Counts one violation and logs it within the shared log budget.
   *
   * @param connectionId The connection's id, for the log line.
   * @param kind A short name of the violation.
   * @param detail What happened.
   * @returns The `PolicyViolation` to close the connection with once the limit is passed,
   * otherwise `undefined`.
   */
  record(connectionId: number, kind: string, detail: string): ProtocolError | undefined {
    const now = performance.now();
    if (now - this.#windowStart > VIOLATION_WINDOW_MS) {
      this.#windowStart = now;
      this.#count = 0;
    }
    this.#count++;
    if (peerEvents.allow("protocol violation")) {
      log.warn("Connection {id}: protocol violation ({kind}): {detail}", {
        id: connectionId,
        kind,
        detail,
      });
    }
    if (this.#count <= this.#max) return undefined;
    return new ProtocolError(
      "PolicyViolation",
      `Peer committed more than "${this.#max}" protocol violations within ${
        VIOLATION_WINDOW_MS / 1000
      } s (last: ${kind})`,
    );
  }
}
