/**
 * The clock of the cluster: a monotonic time, the wall time and timers, injectable so that a
 * simulation runs ten virtual minutes in seconds (bench/cluster_sim.ts).
 *
 * @module
 */

/** Time and timers, as the cluster's failure detector uses them. */
export interface Clock {
  /** A monotonic time in milliseconds (`performance.now()` for the system clock). */
  now(): number;
  /** The wall time in milliseconds since the epoch (`Date.now()`). */
  wallNow(): number;
  /**
   * Calls `callback` once after `ms` milliseconds.
   *
   * @param callback What to call.
   * @param ms The delay.
   * @returns A handle for {@linkcode Clock.clearTimeout}.
   */
  setTimeout(callback: () => void, ms: number): number;
  /**
   * Cancels a timer (an unknown or fired handle is ignored).
   *
   * @param handle What {@linkcode Clock.setTimeout} returned.
   */
  clearTimeout(handle: number): void;
}

/** The system clock: `performance.now()`, `Date.now()` and the runtime's timers. */
export const systemClock: Clock = Object.freeze({
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (callback: () => void, ms: number): number =>
    setTimeout(callback, ms) as unknown as number,
  clearTimeout: (handle: number): void => clearTimeout(handle),
});
