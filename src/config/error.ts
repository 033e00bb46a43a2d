/**
 * {@linkcode ConfigError}: every problem of a configuration, reported at once.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/**
 * A {@linkcode ProtocolError} with code `"ConfigError"` that lists every problem found. Its
 * message has one problem per line; {@linkcode ConfigError.problems} has them as an array.
 *
 * @example Inspect the problems
 * ```ts
 * import { ConfigError, parseConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * try {
 *   parseConfig("[server]\nadress = 1\nbackpressure_limit = 0\n");
 *   assert.fail("expected a ConfigError");
 * } catch (error) {
 *   assert.ok(error instanceof ConfigError);
 *   assert.equal(error.code, "ConfigError");
 *   assert.equal(error.problems.length, 2);
 *   assert.match(error.problems[0]!, /^line 2: unknown key "server.adress"/);
 * }
 * ```
 */
export class ConfigError extends ProtocolError {
  /** Every problem, one sentence each, prefixed with its origin (`line 3: ...`). */
  readonly problems: readonly string[];
  /** Line of a TOML syntax error (1-based), if that is the failure. */
  readonly line: number | undefined;
  /** Column of a TOML syntax error (1-based), if that is the failure. */
  readonly column: number | undefined;

  /**
   * Creates a configuration error.
   *
   * @param summary The first line of the message.
   * @param problems The problems, listed one per line after the summary.
   * @param options The cause and, for syntax errors, the position.
   */
  constructor(
    summary: string,
    problems: readonly string[],
    options?: { cause?: unknown; line?: number; column?: number },
  ) {
    super(
      "ConfigError",
      problems.length === 0 ? summary : `${summary}\n${problems.map((p) => `  - ${p}`).join("\n")}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "ConfigError";
    this.problems = Object.freeze([...problems]);
    this.line = options?.line;
    this.column = options?.column;
  }
}

/**
 * The summary line of a {@linkcode ConfigError}: `"<what> (3 problems):"`.
 *
 * @param what The subject and verb (`Configuration "x.toml" is invalid`).
 * @param count How many problems follow.
 * @returns The summary.
 */
export function problemSummary(what: string, count: number): string {
  return `${what} (${count} problem${count === 1 ? "" : "s"}):`;
}
