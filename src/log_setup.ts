/**
 * Logging set-up for applications and the CLI: LogTape configured from the `[logging]` section
 * of the configuration (console text or JSON Lines, a file sink), checked with the
 * configuration's own validation.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import {
  configure,
  getJsonLinesFormatter,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  reset,
  type Sink,
} from "@logtape/logtape";
import { ProtocolError } from "./errors.ts";
import { LOG_CATEGORY } from "./log.ts";
import type { LoggingConfig, LogLevelName } from "./config/mod.ts";
import { ConfigError, problemSummary } from "./config/error.ts";
import { listedValues, LOG_LEVEL_NAMES, SCHEMA } from "./config/schema.ts";
import { quotedList } from "./config/text.ts";
import { validateSection } from "./config/validate.ts";
import { errorMessage } from "./util/error_message.ts";

/** LogTape's level names (the same union as LogTape's `LogLevel`). */
export type LogTapeLevel = "trace" | "debug" | "info" | "warning" | "error" | "fatal";

/**
 * Maps a configuration log level name (`"warn"`, `"warning"`, any case) to LogTape's.
 *
 * @example Map names
 * ```ts
 * import { toLogLevel } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.equal(toLogLevel("warn"), "warning");
 * assert.equal(toLogLevel("TRACE"), "trace");
 * ```
 *
 * @param name The level name.
 * @returns The LogTape level.
 * @throws {RangeError} For an unknown name.
 */
export function toLogLevel(name: string): LogTapeLevel {
  const level = name.toLowerCase() as LogLevelName;
  if (!LOG_LEVEL_NAMES.includes(level)) {
    throw new RangeError(
      `Log level ${JSON.stringify(name)} is not one of ${
        quotedList(listedValues(SCHEMA.logging.logLevel))
      }`,
    );
  }
  return level === "warn" ? "warning" : level;
}

/** Options of {@linkcode setupLogging}. */
export interface SetupLoggingOptions {
  /**
   * Destination of console output. Default: synchronous writes to standard error (standard
   * error is never closed, unlike LogTape's stream sink).
   */
  write?: (text: string) => void;
  /**
   * Further categories to route to the same outputs (an application's own loggers). The
   * library's `["npro"]` and `[logging.appName]` are always routed.
   */
  categories?: readonly (string | readonly string[])[];
  /** Mode of a newly created log file. Default `0o640`. */
  fileMode?: number;
}

const encoder = new TextEncoder();

function writeAllSync(writer: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += writer.writeSync(bytes.subarray(offset));
}

function stderrWrite(text: string): void {
  try {
    writeAllSync(Deno.stderr, encoder.encode(text));
  } catch {
    // Standard error is gone (closed pipe): there is nowhere left to report it.
  }
}

type FileSink = Sink & Disposable;

function openFileSink(path: string, format: (record: LogRecord) => string, mode: number): FileSink {
  let file: Deno.FsFile | undefined;
  try {
    file = Deno.openSync(path, { write: true, append: true, create: true, mode });
  } catch (error) {
    throw new ProtocolError(
      "ConfigError",
      `Cannot open log file ${JSON.stringify(path)}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
  const sink = (record: LogRecord): void => {
    if (file === undefined) return;
    writeAllSync(file, encoder.encode(format(record)));
  };
  return Object.assign(sink, {
    [Symbol.dispose](): void {
      const open = file;
      file = undefined;
      open?.close();
    },
  });
}

let generation = 0;
let queue: Promise<unknown> = Promise.resolve();

/**
 * Configures LogTape for an application (the `npro` CLI) from a `[logging]` section: text or
 * JSON Lines to standard error and/or appended to a file, at the configured level, for the
 * library's `["npro"]` category, the `[appName]` category and any extra categories. LogTape's
 * own meta logger goes to the same outputs at `warning`.
 *
 * It may be called again (the new configuration replaces the old one and releases its file).
 * Disposing the returned handle resets LogTape and closes the file, unless a later call has
 * already replaced this configuration.
 *
 * @example JSON Lines to a buffer
 * ```ts
 * import { defaultConfig, setupLogging } from "@npro/network-protocol";
 * import { getLogger } from "@logtape/logtape";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * const logging = { ...defaultConfig().logging, jsonFormat: true };
 * {
 *   await using _ = await setupLogging(logging, { write: (line) => lines.push(line) });
 *   getLogger(["npro", "daemon"]).info("listening on {address}", { address: "127.0.0.1:9000" });
 * }
 * const record = JSON.parse(lines[0]!);
 * assert.equal(record.message, 'listening on "127.0.0.1:9000"');
 * assert.equal(record.logger, "npro.daemon");
 * ```
 *
 * @param config The `logging` section of a configuration.
 * @param options Console destination, extra categories and file mode.
 * @returns A handle whose disposal resets logging and closes the log file.
 * @throws {ConfigError} When the section is invalid: every problem, with the messages of
 * `validateConfig`.
 * @throws {ProtocolError} `ConfigError` when the log file cannot be opened.
 */
export function setupLogging(
  config: LoggingConfig,
  options: SetupLoggingOptions = {},
): Promise<AsyncDisposable> {
  const run = queue.then(() => configureLogging(config, options));
  queue = run.catch(() => {});
  return run;
}

async function configureLogging(
  config: LoggingConfig,
  options: SetupLoggingOptions,
): Promise<AsyncDisposable> {
  // The same checks and messages as validateConfig, for a section that did not come through it.
  const problems = validateSection("logging", config);
  if (problems.length > 0) {
    throw new ConfigError(
      problemSummary("Logging configuration is invalid", problems.length),
      problems,
    );
  }
  const level: LogLevel = toLogLevel(config.logLevel);
  const app = JSON.stringify(config.appName);
  const json = getJsonLinesFormatter({ categorySeparator: ".", message: "rendered" });
  const format: (record: LogRecord) => string = config.jsonFormat
    ? (record) => `{"app":${app},${json(record).slice(1)}`
    : getTextFormatter({ timestamp: "date-time-timezone", category: "." });

  const sinks: Record<string, Sink> = {};
  if (config.logToConsole) {
    const write = options.write ?? stderrWrite;
    sinks.console = (record) => write(format(record));
  }
  if (config.logToFile) {
    sinks.file = openFileSink(config.logFilePath, format, options.fileMode ?? 0o640);
  }
  const sinkIds = Object.keys(sinks);
  const categories = new Map<string, string[]>();
  for (const category of [LOG_CATEGORY, config.appName, ...(options.categories ?? [])]) {
    const path = typeof category === "string" ? [category] : [...category];
    if (path.length === 0 || path[0] === "logtape") continue;
    categories.set(JSON.stringify(path), path);
  }
  try {
    await configure({
      reset: true,
      contextLocalStorage: new AsyncLocalStorage<Record<string, unknown>>(),
      sinks,
      loggers: [
        ...[...categories.values()].map((category) => ({
          category,
          lowestLevel: level,
          sinks: sinkIds,
        })),
        { category: ["logtape", "meta"], lowestLevel: "warning" as const, sinks: sinkIds },
      ],
    });
  } catch (error) {
    (sinks.file as FileSink | undefined)?.[Symbol.dispose]();
    throw error;
  }
  const mine = ++generation;
  return {
    async [Symbol.asyncDispose](): Promise<void> {
      const run = queue.then(async () => {
        if (generation !== mine) return; // replaced by a later setupLogging: leave it alone
        generation++;
        await reset();
      });
      queue = run.catch(() => {});
      await run;
    },
  };
}
