/**
 * The options of a {@linkcode SecureChannel}: rekey thresholds, the KEY_UPDATE rate limits, the
 * clock and the record size limit, with their defaults and the check that turns them into the
 * settings a channel runs with.
 *
 * @module
 */

import { MAX_PAYLOAD_SIZE } from "../core/packet.ts";
import { nonNegativeOption, positiveIntegerOption } from "../util/options.ts";
import { RECORD_TAG_SIZE } from "./record_format.ts";

/** Default number of DATA records a key seals before the next DATA is preceded by a KEY_UPDATE. */
export const DEFAULT_REKEY_AFTER_RECORDS: number = 2 ** 20;
/** Default number of inner bytes a key seals before a KEY_UPDATE: 1 GiB. */
export const DEFAULT_REKEY_AFTER_BYTES: number = 2 ** 30;
/** Default key lifetime before a KEY_UPDATE: 10 minutes. */
export const DEFAULT_REKEY_AFTER_MS: number = 10 * 60 * 1000;

/**
 * The shortest time between two KEY_UPDATEs that a sender's thresholds trigger, by default: a
 * due rekey waits until this long after the previous one (10 ms), so a sender never sends
 * more than {@linkcode DEFAULT_MAX_KEY_UPDATES_PER_SECOND}.
 */
export const DEFAULT_MIN_KEY_UPDATE_INTERVAL_MS = 10;
/**
 * The most KEY_UPDATE records a receiver accepts per second by default (a bucket holding one
 * second's worth); more is a `PolicyViolation`. Each costs a key derivation (about 10 µs), so a
 * peer cannot turn rekeying into a CPU flood.
 */
export const DEFAULT_MAX_KEY_UPDATES_PER_SECOND = 100;

/** Options of a {@linkcode SecureChannel}. */
export interface SecureChannelOptions {
  /**
   * After this many DATA records under one send key, the next DATA record is preceded by a
   * KEY_UPDATE (default 2^20).
   */
  rekeyAfterRecords?: number;
  /** After this many inner bytes under one send key, rekey (default 1 GiB). */
  rekeyAfterBytes?: number;
  /** After a send key is this many milliseconds old, rekey before the next DATA (default 10 min). */
  rekeyAfterMs?: number;
  /** The clock used for the time threshold, in milliseconds (default `performance.now`). */
  now?: () => number;
  /**
   * A rekey that a threshold makes due waits until this many milliseconds after the previous
   * KEY_UPDATE (default 10; 0 rekeys as soon as a threshold is reached). An explicit
   * {@linkcode SecureChannel.sealKeyUpdate} is not delayed.
   */
  minKeyUpdateIntervalMs?: number;
  /**
   * The most KEY_UPDATE records accepted per second from the peer, in a bucket holding one
   * second's worth (default 100; `Infinity` accepts any rate). Beyond it, and for a KEY_UPDATE
   * that follows another one with no DATA record between them, {@linkcode SecureChannel.open}
   * throws `PolicyViolation`.
   */
  maxKeyUpdatesPerSecond?: number;
  /**
   * The largest record (packet payload) this channel seals: the packet limit (default 16 MiB).
   * A DATA body may be at most `maxRecordSize - 17` bytes.
   */
  maxRecordSize?: number;
}

/** The checked settings of a channel: every option given or defaulted. */
export interface ChannelSettings {
  /** DATA records under one send key before a rekey (`Infinity`: never). */
  readonly rekeyAfterRecords: number;
  /** Inner bytes under one send key before a rekey (`Infinity`: never). */
  readonly rekeyAfterBytes: number;
  /** Age of a send key in milliseconds before a rekey (`Infinity`: never). */
  readonly rekeyAfterMs: number;
  /** The largest DATA body, in bytes: the record size limit less the tag and the type byte. */
  readonly maxBody: number;
  /** The clock, in milliseconds. */
  readonly now: () => number;
  /** The shortest time between two threshold-triggered KEY_UPDATEs, in milliseconds. */
  readonly minKeyUpdateIntervalMs: number;
  /** The most KEY_UPDATE records accepted from the peer per second (may be `Infinity`). */
  readonly maxKeyUpdatesPerSecond: number;
}

/**
 * Checks the options of a channel and fills in the defaults.
 *
 * @example Defaults and a bad threshold
 * ```ts
 * import { DEFAULT_REKEY_AFTER_RECORDS, resolveChannelOptions } from "./channel_options.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(resolveChannelOptions(undefined).rekeyAfterRecords, DEFAULT_REKEY_AFTER_RECORDS);
 * assert.equal(resolveChannelOptions({ maxRecordSize: 1017 }).maxBody, 1000);
 * assert.throws(() => resolveChannelOptions({ rekeyAfterRecords: 0 }), RangeError);
 * ```
 *
 * @param options The options given, if any.
 * @returns The settings.
 * @throws {RangeError} For a threshold that is not a positive integer (or `Infinity`), a record
 * size limit below 17, a negative interval or a rate that is not positive.
 */
export function resolveChannelOptions(options: SecureChannelOptions | undefined): ChannelSettings {
  const rekeyAfterRecords = positiveIntegerOption(
    "rekeyAfterRecords",
    options?.rekeyAfterRecords,
    DEFAULT_REKEY_AFTER_RECORDS,
    { orInfinity: true },
  );
  const rekeyAfterBytes = positiveIntegerOption(
    "rekeyAfterBytes",
    options?.rekeyAfterBytes,
    DEFAULT_REKEY_AFTER_BYTES,
    { orInfinity: true },
  );
  const rekeyAfterMs = positiveIntegerOption(
    "rekeyAfterMs",
    options?.rekeyAfterMs,
    DEFAULT_REKEY_AFTER_MS,
    { orInfinity: true },
  );
  const maxRecord = options?.maxRecordSize ?? MAX_PAYLOAD_SIZE;
  if (!Number.isSafeInteger(maxRecord) || maxRecord < RECORD_TAG_SIZE + 1) {
    throw new RangeError(
      `Cannot use max record size "${maxRecord}": it must be an integer of at least ${
        RECORD_TAG_SIZE + 1
      }`,
    );
  }
  const minKeyUpdateIntervalMs = nonNegativeOption(
    "minKeyUpdateIntervalMs",
    options?.minKeyUpdateIntervalMs,
    DEFAULT_MIN_KEY_UPDATE_INTERVAL_MS,
  );
  const maxKeyUpdatesPerSecond = options?.maxKeyUpdatesPerSecond ??
    DEFAULT_MAX_KEY_UPDATES_PER_SECOND;
  if (!(maxKeyUpdatesPerSecond > 0)) {
    throw new RangeError(
      `Cannot use maxKeyUpdatesPerSecond "${maxKeyUpdatesPerSecond}": it must be a positive number`,
    );
  }
  return {
    rekeyAfterRecords,
    rekeyAfterBytes,
    rekeyAfterMs,
    maxBody: maxRecord - RECORD_TAG_SIZE - 1,
    now: options?.now ?? (() => performance.now()),
    minKeyUpdateIntervalMs,
    maxKeyUpdatesPerSecond,
  };
}
