/**
 * Logging through [LogTape](https://logtape.org/). Library code logs under the category
 * `["npro", <layer>]` with {@linkcode logger} and never configures anything, so it stays silent
 * until the application configures LogTape (directly, or with `setupLogging` as the
 * `npro` CLI does).
 *
 * @example Route the library's logs in an application
 * ```ts
 * import { LOG_CATEGORY } from "@npro/network-protocol";
 * import { configure, reset, type LogRecord } from "@logtape/logtape";
 * import assert from "node:assert/strict";
 *
 * const records: LogRecord[] = [];
 * await configure({
 *   sinks: { memory: (record) => records.push(record) },
 *   loggers: [
 *     { category: [LOG_CATEGORY], lowestLevel: "warning", sinks: ["memory"] },
 *     { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["memory"] },
 *   ],
 * });
 * await reset();
 * assert.deepEqual(records, []);
 * ```
 *
 * @module
 */

import { getLogger, type Logger } from "@logtape/logtape";

/** The root LogTape category of every logger in this library. */
export const LOG_CATEGORY = "npro";

/**
 * Returns the LogTape logger of a library layer, category `["npro", layer, ...sub]`. It logs
 * nothing until the application configures LogTape. This is for the library's own modules (it is
 * not part of the public API); applications use LogTape's `getLogger` directly.
 *
 * @example Log from a layer
 * ```ts
 * import { logger } from "./log.ts";
 * import assert from "node:assert/strict";
 *
 * const log = logger("daemon");
 * assert.deepEqual(log.category, ["npro", "daemon"]);
 * log.debug("listening on {address}", { address: "127.0.0.1:9000" }); // silent unless configured
 * ```
 *
 * @param layer The layer (`"core"`, `"secure"`, `"daemon"`, `"client"`...).
 * @param sub Further category levels.
 * @returns The logger.
 */
export function logger(layer: string, ...sub: string[]): Logger {
  return getLogger([LOG_CATEGORY, layer, ...sub]);
}
