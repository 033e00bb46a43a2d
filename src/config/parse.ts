/**
 * Building a configuration from sources: the defaults, then the layers (a TOML document and the
 * environment, or a `createConfig` object), then validation. Every problem is reported at once,
 * each with where it came from.
 *
 * @module
 */

import { shareUnixAddress } from "./address.ts";
import { layerFromEnv, resolveEnv } from "./env.ts";
import { ConfigError, problemSummary } from "./error.ts";
import { applyLayers, type Layer, type Setting } from "./layers.ts";
import { layerFromObject } from "./options.ts";
import { KEYS } from "./schema.ts";
import { describe, quote } from "./text.ts";
import { layerFromToml, parseTomlDocument } from "./toml.ts";
import type { NetworkConfig, NetworkConfigInput, ParseConfigOptions } from "./types.ts";
import { collectIssues } from "./validate.ts";

const KEYS_BY_PATH = new Map(KEYS.map((key) => [key.path, key]));

/**
 * Applies layers over the defaults and validates the result. A validation problem names the
 * origin of the value it is about (`line 3:`, a variable, `options:`), and the alias it was set
 * under.
 *
 * @param layers The layers, lowest precedence first.
 * @param problems The problems the sources found.
 * @param summary The subject of the error's summary (`Configuration is invalid`).
 * @returns The valid configuration.
 * @throws {ConfigError} When there is any problem.
 */
export function buildConfig(
  layers: readonly Layer[],
  problems: string[],
  summary: string,
): NetworkConfig {
  const config = applyLayers(layers, KEYS_BY_PATH);
  shareUnixAddress(config, {
    server: layers.some((l) => l.has("server.address")),
    client: layers.some((l) => l.has("client.address")),
  });
  for (const issue of collectIssues(config)) {
    let setting: Setting | undefined;
    for (const layer of layers) setting = layer.get(issue.path) ?? setting;
    if (setting === undefined) {
      problems.push(issue.message);
    } else {
      const alias = setting.via !== issue.path && setting.via !== setting.origin
        ? ` (set as ${setting.via})`
        : "";
      problems.push(`${setting.origin}: ${issue.message}${alias}`);
    }
  }
  if (problems.length > 0) {
    throw new ConfigError(problemSummary(summary, problems.length), problems);
  }
  return config;
}

/**
 * Parses a TOML configuration, layers environment overrides over it, and validates the result.
 * Missing keys take their defaults. Unknown keys, wrong types and invalid values are all
 * reported at once, each with its line (or environment variable).
 *
 * @example Parse with environment overrides
 * ```ts
 * import { parseConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = parseConfig("[server]\nbackpressure_limit = 64\n", {
 *   env: { NETWORK_PROTOCOL_LOGGING_LOG_LEVEL: "debug" },
 * });
 * assert.equal(config.server.backpressureLimit, 64);
 * assert.equal(config.logging.logLevel, "debug");
 * ```
 *
 * @param tomlText The TOML document.
 * @param options Environment overrides and the document's name for messages.
 * @returns The validated configuration.
 * @throws {ConfigError} On a syntax error, unknown keys, wrong types or invalid values.
 */
export function parseConfig(tomlText: string, options: ParseConfigOptions = {}): NetworkConfig {
  if (typeof tomlText !== "string") {
    throw new TypeError(`The TOML text must be a string, found ${describe(tomlText)}`);
  }
  const label = options.source === undefined
    ? "Configuration"
    : `Configuration ${quote(options.source)}`;
  const doc = parseTomlDocument(tomlText, label);
  const problems: string[] = [];
  const tomlLayer = layerFromToml(doc, tomlText, problems);
  const envLayer = layerFromEnv(resolveEnv(options.env), problems);
  return buildConfig([tomlLayer, envLayer], problems, `${label} is invalid`);
}

/**
 * Builds a configuration from defaults and a partial object (camelCase keys), and validates it.
 *
 * @example Override a few keys
 * ```ts
 * import { createConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = createConfig({ server: { address: "[::1]:0" }, compression: { enabled: true } });
 * assert.equal(config.server.address, "[::1]:0");
 * assert.equal(config.compression.enabled, true);
 * assert.equal(config.client.responseTimeout, 30000);
 * ```
 *
 * @param input The keys to change; the rest take their defaults.
 * @returns The validated configuration (a new object; `input` is not kept).
 * @throws {ConfigError} On unknown keys, wrong types or invalid values.
 */
export function createConfig(input: NetworkConfigInput = {}): NetworkConfig {
  const problems: string[] = [];
  const layer = layerFromObject(input, problems);
  return buildConfig([layer], problems, "Configuration is invalid");
}
