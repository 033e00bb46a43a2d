/**
 * {@linkcode saveConfig}: validates a configuration and writes it as annotated TOML, atomically.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { ConfigError, problemSummary } from "./error.ts";
import { stringifyConfig } from "./example.ts";
import { quote } from "./text.ts";
import type { NetworkConfig, SaveConfigOptions } from "./types.ts";
import { validateConfig } from "./validate.ts";
import { errorMessage } from "../util/error_message.ts";

/**
 * Validates a configuration and writes it as annotated TOML (see {@linkcode stringifyConfig}).
 * The file is written to a temporary name next to `path` and renamed over it, so readers never
 * see a partial file.
 *
 * @example Save and load
 * ```ts
 * import { defaultConfig, loadConfig, saveConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * try {
 *   const config = defaultConfig();
 *   config.server.maxConnections = 50;
 *   await saveConfig(`${dir}/config.toml`, config);
 *   assert.deepEqual(await loadConfig({ path: `${dir}/config.toml` }), config);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 *
 * @param path The file to write.
 * @param config The configuration.
 * @param options An abort signal.
 * @returns A promise that resolves once the file is in place.
 * @throws {ConfigError} When the configuration is invalid or the file cannot be written.
 */
export async function saveConfig(
  path: string | URL,
  config: NetworkConfig,
  options: SaveConfigOptions = {},
): Promise<void> {
  const issues = validateConfig(config);
  if (issues.length > 0) {
    throw new ConfigError(
      problemSummary("Refusing to save an invalid configuration", issues.length),
      issues,
    );
  }
  const text = stringifyConfig(config);
  const target = path instanceof URL ? path : String(path);
  const name = target instanceof URL ? target.href : target;
  const temporary = target instanceof URL
    ? new URL(`${target.href}.${crypto.randomUUID()}.tmp`)
    : `${target}.${crypto.randomUUID()}.tmp`;
  try {
    const writeOptions: Deno.WriteFileOptions = { createNew: true };
    if (options.signal !== undefined) writeOptions.signal = options.signal;
    await Deno.writeTextFile(temporary, text, writeOptions);
    await Deno.rename(temporary, target);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    if (options.signal?.aborted) {
      throw new ProtocolError("Cancelled", `Saving ${quote(name)} was aborted`, {
        cause: options.signal.reason,
      });
    }
    throw new ConfigError(
      `Cannot write configuration file ${quote(name)}: ${errorMessage(error)}`,
      [],
      {
        cause: error,
      },
    );
  }
}
