/**
 * {@linkcode defaultConfig}: the defaults of the schema table.
 *
 * @module
 */

import { KEYS } from "./schema.ts";
import type { NetworkConfig } from "./types.ts";

const DEFAULTS: NetworkConfig = (() => {
  const sections: Record<string, Record<string, unknown>> = {};
  for (const key of KEYS) (sections[key.section] ??= {})[key.property] = key.default;
  return structuredClone(sections) as unknown as NetworkConfig;
})();

/**
 * Returns the default configuration, a fresh deep copy on each call.
 *
 * @example Defaults
 * ```ts
 * import { defaultConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = defaultConfig();
 * assert.equal(config.server.address, "127.0.0.1:9000");
 * assert.equal(config.security.pattern, "XX");
 * config.server.maxConnections = 5; // a copy: the next call is unaffected
 * assert.equal(defaultConfig().server.maxConnections, 1000);
 * ```
 *
 * @returns A new default configuration.
 */
export function defaultConfig(): NetworkConfig {
  return structuredClone(DEFAULTS);
}
