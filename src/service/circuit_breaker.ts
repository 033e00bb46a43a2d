/**
 * A circuit breaker for one address of a pool: closed (connect freely), open (no attempt until
 * the cool-down ends), half-open (at most `probes` attempts at once; one success closes it, a
 * failure opens it again with a doubled cool-down, up to `maxCooldownMs`). Time is passed in, so
 * the rules are tested without timers.
 *
 * @module
 */

/**
 * The state of a {@linkcode CircuitBreaker}.
 *
 * @example Read it from the pool's figures
 * ```ts
 * import type { BreakerState, Pool } from "@npro/network-protocol";
 *
 * function states(pool: Pool): BreakerState[] {
 *   return Object.values(pool.stats().addresses).map((a) => a.breaker);
 * }
 * console.log(typeof states);
 * ```
 */
export type BreakerState = "closed" | "open" | "half-open";

/**
 * Settings of a {@linkcode CircuitBreaker}.
 *
 * @example The pool's defaults
 * ```ts
 * import type { BreakerSettings } from "./circuit_breaker.ts";
 *
 * const settings: BreakerSettings = { failureThreshold: 5, cooldownMs: 10_000, maxCooldownMs: 60_000, probes: 1 };
 * console.log(settings.probes);
 * ```
 */
export interface BreakerSettings {
  /** Consecutive failures that open the breaker; 0 never opens it. */
  readonly failureThreshold: number;
  /** The first cool-down in milliseconds. */
  readonly cooldownMs: number;
  /** The longest cool-down in milliseconds (it doubles after each failed probe). */
  readonly maxCooldownMs: number;
  /** Attempts allowed at once while half-open. */
  readonly probes: number;
}

/**
 * The breaker of one address. `tryAcquire(now)` asks for one attempt (and counts a probe when
 * half-open); every granted attempt must end with `success()` or `failure(now)`.
 *
 * @example Open after two failures, one probe, close on success
 * ```ts
 * import { CircuitBreaker } from "./circuit_breaker.ts";
 * import assert from "node:assert/strict";
 *
 * const breaker = new CircuitBreaker({ failureThreshold: 2, cooldownMs: 100, maxCooldownMs: 400, probes: 1 });
 * breaker.tryAcquire(0);
 * breaker.failure(0);
 * breaker.tryAcquire(0);
 * breaker.failure(0);
 * assert.equal(breaker.state(0), "open");
 * assert.equal(breaker.tryAcquire(50), false);
 * assert.equal(breaker.tryAcquire(100), true); // the probe
 * assert.equal(breaker.tryAcquire(100), false); // only one
 * breaker.success();
 * assert.equal(breaker.state(100), "closed");
 * ```
 */
export class CircuitBreaker {
  readonly #settings: BreakerSettings;
  #failures = 0;
  #openUntil = 0;
  #open = false;
  #cooldownMs: number;
  #probing = 0;
  /** Called on every change of state. */
  onChange: ((from: BreakerState, to: BreakerState, retryInMs: number) => void) | undefined;

  /**
   * Creates a closed breaker.
   *
   * @param settings Threshold, cool-downs and probes.
   */
  constructor(settings: BreakerSettings) {
    this.#settings = settings;
    this.#cooldownMs = settings.cooldownMs;
  }

  /**
   * The state at `now`: open turns half-open once the cool-down ended.
   *
   * @param now The time, `performance.now()`.
   * @returns The state.
   */
  state(now: number): BreakerState {
    if (!this.#open) return "closed";
    return now >= this.#openUntil ? "half-open" : "open";
  }

  /** Consecutive failures counted. */
  get failures(): number {
    return this.#failures;
  }

  /** Probes running (half-open). */
  get probing(): number {
    return this.#probing;
  }

  /**
   * Milliseconds until an attempt may be made (0 when one may be made now).
   *
   * @param now The time.
   * @returns The wait.
   */
  retryInMs(now: number): number {
    const state = this.state(now);
    if (state === "closed") return 0;
    if (state === "open") return this.#openUntil - now;
    return this.#probing < this.#settings.probes ? 0 : this.#cooldownMs;
  }

  /**
   * Whether an attempt may be made now, without taking it.
   *
   * @param now The time.
   * @returns `true` when `tryAcquire(now)` would grant one.
   */
  allows(now: number): boolean {
    const state = this.state(now);
    return state === "closed" || (state === "half-open" && this.#probing < this.#settings.probes);
  }

  /**
   * Takes one attempt: always when closed, never when open, and one of the `probes` slots when
   * half-open.
   *
   * @param now The time.
   * @returns Whether the attempt may be made.
   */
  tryAcquire(now: number): boolean {
    const state = this.state(now);
    if (state === "closed") return true;
    if (state === "open" || this.#probing >= this.#settings.probes) return false;
    if (this.#probing === 0) this.onChange?.("open", "half-open", 0);
    this.#probing++;
    return true;
  }

  /** An attempt succeeded: the failures are forgotten and the breaker closes. */
  success(): void {
    this.#failures = 0;
    if (this.#open) {
      this.#open = false;
      this.#probing = 0;
      this.#cooldownMs = this.#settings.cooldownMs;
      this.onChange?.("half-open", "closed", 0);
    }
  }

  /**
   * An attempt failed: the threshold opens a closed breaker; a failed probe opens it again with
   * twice the cool-down.
   *
   * @param now The time.
   */
  failure(now: number): void {
    this.#failures++;
    const threshold = this.#settings.failureThreshold;
    if (!this.#open) {
      if (threshold > 0 && this.#failures >= threshold) {
        this.#open = true;
        this.#openUntil = now + this.#cooldownMs;
        this.onChange?.("closed", "open", this.#cooldownMs);
      }
      return;
    }
    if (this.#probing === 0) return; // an attempt granted before the breaker opened
    this.#probing--;
    // The first failed probe of a half-open period opens it again, for twice the cool-down;
    // other probes of the same period that fail later change nothing.
    if (now >= this.#openUntil) {
      this.#cooldownMs = Math.min(this.#settings.maxCooldownMs, this.#cooldownMs * 2);
      this.#openUntil = now + this.#cooldownMs;
      this.onChange?.("half-open", "open", this.#cooldownMs);
    }
  }
}
