/**
 * A bound on the log lines that peers can cause. Events a peer controls (an unknown opcode, a
 * refused connection, a failed handshake, a failing handler) are logged at most a few times per
 * interval and kind; the rest are counted and reported in one summary line, so that the bytes of
 * log a peer can cause per byte it sends stay small and the daemon never spends its time
 * writing logs for an attacker.
 *
 * @module
 */

import { logger } from "./log.ts";

const log = logger("limits");

/** Options of {@linkcode LogBudget}. */
export interface LogBudgetOptions {
  /** Lines logged per kind and interval before the rest are only counted (default 5). */
  linesPerInterval?: number;
  /** The interval in milliseconds (default 10000). */
  intervalMs?: number;
  /** Where summary lines go (default: the `["npro", "limits"]` logger at warning level). */
  report?: (kind: string, suppressed: number, intervalMs: number) => void;
}

interface KindState {
  lines: number;
  suppressed: number;
}

/**
 * Counts peer-caused log events per kind and interval. A caller asks {@linkcode LogBudget.allow}
 * before it logs; once a kind has used its lines in the current interval, later events of that
 * kind are counted, and the count is reported in one line when the next interval begins (at the
 * first event after it, or on {@linkcode LogBudget.flush}). No timer runs.
 *
 * @example Keep a flood to a few lines
 * ```ts
 * import { LogBudget } from "./log_budget.ts";
 * import assert from "node:assert/strict";
 *
 * const reports: string[] = [];
 * const budget = new LogBudget({
 *   linesPerInterval: 2,
 *   report: (kind, n) => reports.push(`${n} more ${kind}`),
 * });
 * let logged = 0;
 * for (let i = 0; i < 1000; i++) if (budget.allow("unknown opcode", 0)) logged++;
 * assert.equal(logged, 2);
 * budget.flush();
 * assert.deepEqual(reports, ["998 more unknown opcode"]);
 * ```
 */
export class LogBudget {
  readonly #lines: number;
  readonly #intervalMs: number;
  readonly #report: (kind: string, suppressed: number, intervalMs: number) => void;
  #kinds = new Map<string, KindState>();
  #intervalStart = -Infinity;

  /**
   * Creates a budget.
   *
   * @param options Lines per interval, the interval, and where summaries go.
   * @throws {RangeError} For a negative line count or a non-positive interval.
   */
  constructor(options: LogBudgetOptions = {}) {
    this.#lines = options.linesPerInterval ?? 5;
    this.#intervalMs = options.intervalMs ?? 10_000;
    if (!Number.isSafeInteger(this.#lines) || this.#lines < 0) {
      throw new RangeError(
        `Cannot use linesPerInterval "${this.#lines}": it must be a non-negative integer`,
      );
    }
    if (!(this.#intervalMs > 0) || !Number.isFinite(this.#intervalMs)) {
      throw new RangeError(`Cannot use intervalMs "${this.#intervalMs}": it must be positive`);
    }
    this.#report = options.report ?? defaultReport;
  }

  /**
   * Whether an event of `kind` may be logged now; if not, it is counted for the summary.
   *
   * @param kind A short, bounded name of the event (never a peer-chosen string).
   * @param now The current time in milliseconds (default `performance.now()`).
   * @returns `true` when the caller should log the event.
   */
  allow(kind: string, now: number = performance.now()): boolean {
    if (now - this.#intervalStart >= this.#intervalMs) {
      this.flush();
      this.#intervalStart = now;
    }
    let state = this.#kinds.get(kind);
    if (state === undefined) {
      state = { lines: 0, suppressed: 0 };
      this.#kinds.set(kind, state);
    }
    if (state.lines < this.#lines) {
      state.lines++;
      return true;
    }
    state.suppressed++;
    return false;
  }

  /** Reports the counts of the current interval and starts counting afresh. */
  flush(): void {
    for (const [kind, state] of this.#kinds) {
      if (state.suppressed > 0) this.#report(kind, state.suppressed, this.#intervalMs);
    }
    this.#kinds.clear();
  }
}

function defaultReport(kind: string, suppressed: number, intervalMs: number): void {
  log.warn("{count} more {kind} events were not logged (at most a few per {seconds} s)", {
    count: suppressed,
    kind,
    seconds: intervalMs / 1000,
  });
}

/** The budget shared by the daemons and connections of this process. */
export const peerEvents: LogBudget = new LogBudget();
