/**
 * Lifeguard's local health, for a single-threaded event loop: a node whose own timers run late
 * (its event loop was blocked, or the process was stopped) cannot tell a slow peer from its own
 * stall, so it widens its timeouts and gives no verdict for a while (docs/CLUSTER.md, "Local
 * health").
 *
 * @module
 */

import type { Clock } from "./clock.ts";

/** Options of {@linkcode LocalHealth}. */
export interface LocalHealthOptions {
  /** The clock. */
  clock: Clock;
  /** How often the watchdog timer runs, in ms. */
  tickMs: number;
  /** A timer later than this (ms) is a stall of the event loop. */
  stallMs: number;
  /** After a stall, no verdict for this long (ms, multiplied by the health multiplier). */
  quietMs: number;
  /** The largest multiplier of timeouts (Lifeguard's awareness maximum, default 8). */
  maxMultiplier: number;
  /**
   * Called when a stall is found, or the score leaves or returns to 0.
   *
   * @param score The score (the multiplier minus 1).
   * @param stalledMs The length of the stall just found, or 0.
   */
  onChange?: (score: number, stalledMs: number) => void;
}

/**
 * Watches the event loop with a timer and keeps Lifeguard's health score: the multiplier of
 * probe intervals and timeouts is `score + 1`, from 1 to `maxMultiplier`. A stall adds 1, an
 * indirect probe that got no answer at all (a missed nack) adds 1, a direct probe answered in
 * time takes 1 away.
 *
 * @example A blocked timer is a stall
 * ```ts
 * import { LocalHealth } from "./local_health.ts";
 * import assert from "node:assert/strict";
 *
 * let now = 0;
 * const timers: (() => void)[] = [];
 * const clock = {
 *   now: () => now,
 *   wallNow: () => now,
 *   setTimeout: (fn: () => void) => timers.push(fn),
 *   clearTimeout: () => {},
 * };
 * const health = new LocalHealth({ clock, tickMs: 10, stallMs: 50, quietMs: 100, maxMultiplier: 8 });
 * health.start();
 * now = 500; // The loop was blocked: the 10 ms timer runs 490 ms late.
 * timers.shift()!();
 * assert.equal(health.multiplier, 2);
 * assert.ok(health.quiet());
 * health.stop();
 * ```
 */
export class LocalHealth {
  readonly #clock: Clock;
  readonly #tickMs: number;
  readonly #stallMs: number;
  readonly #quietMs: number;
  readonly #max: number;
  readonly #onChange: ((score: number, stalledMs: number) => void) | undefined;
  #score = 0;
  #timer: number | undefined;
  #expected = 0;
  /** When the last stall was found (clock time), and its end. */
  #lastStallEnd = -Infinity;
  #quietUntil = -Infinity;
  #stalls = 0;
  #stallListeners: ((ms: number) => void)[] = [];

  /**
   * A watchdog (started by {@linkcode LocalHealth.start}).
   *
   * @param options The clock, the tick, the thresholds and the largest multiplier.
   */
  constructor(options: LocalHealthOptions) {
    this.#clock = options.clock;
    this.#tickMs = options.tickMs;
    this.#stallMs = options.stallMs;
    this.#quietMs = options.quietMs;
    this.#max = options.maxMultiplier;
    this.#onChange = options.onChange;
  }

  /** The multiplier of timeouts and intervals: 1 when healthy, up to `maxMultiplier`. */
  get multiplier(): number {
    return this.#score + 1;
  }

  /** The score (multiplier - 1). */
  get score(): number {
    return this.#score;
  }

  /** Stalls found since the start. */
  get stalls(): number {
    return this.#stalls;
  }

  /** Starts the watchdog timer. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#expected = this.#clock.now() + this.#tickMs;
    this.#timer = this.#clock.setTimeout(this.#tick, this.#tickMs);
  }

  /** Stops it. */
  stop(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Listens to stalls (to move suspicion deadlines by the time lost).
   *
   * @param listener Called with the length of each stall.
   */
  onStall(listener: (ms: number) => void): void {
    this.#stallListeners.push(listener);
  }

  readonly #tick = (): void => {
    this.#timer = undefined;
    this.check(this.#expected);
    this.#expected = this.#clock.now() + this.#tickMs;
    this.#timer = this.#clock.setTimeout(this.#tick, this.#tickMs);
  };

  /**
   * Checks a timer that should have run at `expectedAt`: later than the stall threshold means
   * the event loop stalled. Every timer of the detector calls it first, because after a stall
   * the timers due run in any order, and the watchdog's may come last.
   *
   * @param expectedAt When the timer was due (clock time).
   * @returns Whether it ran late enough to be a stall.
   */
  check(expectedAt: number): boolean {
    const now = this.#clock.now();
    const late = now - expectedAt;
    if (late <= this.#stallMs) return false;
    // One stall seen by several timers is counted once: its end is now.
    if (now - this.#lastStallEnd < this.#stallMs) return true;
    this.#lastStallEnd = now;
    this.#stalls++;
    this.#score = Math.min(this.#score + 1, this.#max - 1);
    this.#quietUntil = now + this.#quietMs * this.multiplier;
    for (const listener of this.#stallListeners) listener(late);
    this.#onChange?.(this.#score, late);
    return true;
  }

  /**
   * Whether a stall ended after `since` (a probe started at `since` says nothing).
   *
   * @param since A clock time.
   */
  stalledSince(since: number): boolean {
    return this.#lastStallEnd >= since;
  }

  /** Whether verdicts are held back (a stall was found recently). */
  quiet(): boolean {
    return this.#clock.now() < this.#quietUntil;
  }

  /** An indirect probe got no answer at all: this node may be the slow one. */
  missedNack(): void {
    this.#set(this.#score + 1);
  }

  /** A direct probe was answered in time. */
  probeSucceeded(): void {
    if (this.#score > 0) this.#set(this.#score - 1);
  }

  #set(score: number): void {
    const next = Math.max(0, Math.min(score, this.#max - 1));
    if (next === this.#score) return;
    const crossed = (next === 0) !== (this.#score === 0);
    this.#score = next;
    // Reported when the node turns unhealthy or healthy again, not at every step between.
    if (crossed) this.#onChange?.(next, 0);
  }
}
