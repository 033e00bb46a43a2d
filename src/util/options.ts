/**
 * Checks of numeric options, with the library's error messages (`RangeError`, sentence case,
 * quoted values), and of timer delays.
 *
 * @module
 */

/**
 * An option that must be a positive finite number, or its default when not given.
 *
 * @example Check a limit
 * ```ts
 * import { positiveOption } from "./options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(positiveOption("backpressureLimit", undefined, 32), 32);
 * assert.throws(() => positiveOption("backpressureLimit", 0, 32), RangeError);
 * ```
 *
 * @param name The option's name, for the message.
 * @param value The value given, if any.
 * @param fallback The default.
 * @returns The value or the default.
 * @throws {RangeError} For zero, a negative number, NaN or infinity.
 */
export function positiveOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`Cannot use ${name} "${value}": it must be a positive number`);
  }
  return value;
}

/**
 * An option that must be zero (often: disabled) or a positive finite number, or its default.
 *
 * @example Check a timeout that 0 disables
 * ```ts
 * import { nonNegativeOption } from "./options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(nonNegativeOption("idleTimeoutMs", 0, 60_000), 0);
 * assert.throws(() => nonNegativeOption("idleTimeoutMs", -1, 60_000), RangeError);
 * ```
 *
 * @param name The option's name, for the message.
 * @param value The value given, if any.
 * @param fallback The default.
 * @returns The value or the default.
 * @throws {RangeError} For a negative number, NaN or infinity.
 */
export function nonNegativeOption(
  name: string,
  value: number | undefined,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (!(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(`Cannot use ${name} "${value}": it must be zero or a positive number`);
  }
  return value;
}

/** Options of {@linkcode positiveIntegerOption}. */
export interface PositiveIntegerOptions {
  /** Accept `Infinity` too (for a threshold that `Infinity` switches off). */
  orInfinity?: boolean;
}

/**
 * An option that must be a positive safe integer (or `Infinity`, when allowed), or its default
 * when not given.
 *
 * @example Check a count that Infinity switches off
 * ```ts
 * import { positiveIntegerOption } from "./options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(positiveIntegerOption("rekeyAfterRecords", undefined, 1024), 1024);
 * assert.equal(
 *   positiveIntegerOption("rekeyAfterRecords", Infinity, 1024, { orInfinity: true }),
 *   Infinity,
 * );
 * assert.throws(() => positiveIntegerOption("maxAddresses", 1.5, 64), RangeError);
 * ```
 *
 * @param name The option's name, for the message.
 * @param value The value given, if any.
 * @param fallback The default.
 * @param options Whether `Infinity` is allowed.
 * @returns The value or the default.
 * @throws {RangeError} For zero, a negative number, a fraction, NaN, an unsafe integer or
 * (unless allowed) infinity.
 */
export function positiveIntegerOption(
  name: string,
  value: number | undefined,
  fallback: number,
  options: PositiveIntegerOptions = {},
): number {
  if (value === undefined) return fallback;
  const infinite = options.orInfinity === true && value === Infinity;
  if (!infinite && (!Number.isSafeInteger(value) || value <= 0)) {
    throw new RangeError(`Cannot use ${name} "${value}": it must be a positive integer`);
  }
  return value;
}

/** The longest delay `setTimeout` honours: 2^31 - 1 ms (about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Validates a time limit in milliseconds for a timer: a finite number from 1 to
 * {@linkcode MAX_TIMER_MS} (a longer delay would make `setTimeout` fire at once).
 *
 * @example Check a connect timeout
 * ```ts
 * import { checkTimeout } from "./options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(checkTimeout("timeoutMs", 5000), 5000);
 * assert.throws(() => checkTimeout("timeoutMs", 0), RangeError);
 * assert.throws(() => checkTimeout("timeoutMs", Infinity), TypeError);
 * ```
 *
 * @param name The option's name, for the message.
 * @param value The value.
 * @returns The value.
 * @throws {TypeError} For a value that is not a finite number.
 * @throws {RangeError} For a value outside 1 to {@linkcode MAX_TIMER_MS}.
 */
export function checkTimeout(name: string, value: number): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TypeError(`${name} must be a finite number, got "${value}"`);
  }
  if (value <= 0 || value > MAX_TIMER_MS) {
    throw new RangeError(`${name} "${value}" is outside the range 1 to ${MAX_TIMER_MS}`);
  }
  return value;
}
