/**
 * Annotated TOML: {@linkcode stringifyConfig} writes every key with its description, its
 * allowed values and its environment variable, all taken from the schema table;
 * {@linkcode exampleConfig} is that text for the defaults (examples/config.toml).
 *
 * @module
 */

import { stringify as stringifyToml } from "smol-toml";
import { defaultConfig } from "./defaults.ts";
import { listedValues, SECTION_DOCS, sectionKeys, SECTIONS } from "./schema.ts";
import type { KeyInfo } from "./spec.ts";
import { quotedList } from "./text.ts";
import type { NetworkConfig } from "./types.ts";
import { octal } from "./validate.ts";

/**
 * Writes a value as the right-hand side of a TOML line (file modes in octal).
 *
 * @param key The key.
 * @param value The value.
 * @returns The TOML text.
 */
export function tomlValue(key: KeyInfo, value: unknown): string {
  if (
    key.kind === "integer" && key.octal && typeof value === "number" &&
    Number.isSafeInteger(value) && value >= 0
  ) {
    return octal(value);
  }
  // smol-toml writes strings and arrays with correct escaping; take the right-hand side.
  const line = stringifyToml({ v: value }).trimEnd();
  return line.slice(line.indexOf("=") + 1).trim();
}

function bound(n: number): string {
  // The rekey limits end near 2^53; the exact digits would hide that.
  const below = 2 ** 53 - n;
  return below >= 1 && below <= 16 ? `2^53-${below}` : String(n);
}

/**
 * The values a key allows, in words: `100..300000 ms`, `"tcp", "unix", "tls"`,
 * `1..64 characters`, or `""` when any value of its kind is fine.
 *
 * @param key The key.
 * @param withUnit Whether to name the unit of an integer key (a table may have its own column).
 * @returns The text.
 */
export function allowedText(key: KeyInfo, withUnit = true): string {
  const unit = key.kind === "integer" && key.unit !== undefined && withUnit ? ` ${key.unit}` : "";
  switch (key.kind) {
    case "boolean":
      return "";
    case "integer": {
      if (key.octal) return `${octal(key.min)}..${octal(key.max)}`;
      const range = `${bound(key.min)}..${bound(key.max)}${unit}`;
      return key.zeroDisables ? `0 (off) or ${range}` : range;
    }
    case "string": {
      if (key.values !== undefined) {
        return quotedList(listedValues(key)) + (key.caseInsensitive ? " (any case)" : "");
      }
      if (key.length !== undefined) return `${key.length.min}..${key.length.max} characters`;
      if (key.format === "listen-address") return "host:port (port 0..65535) or a socket path";
      if (key.format === "connect-address") return "host:port (port 1..65535) or a socket path";
      if (key.format === "host-name") return '"" or a host name or IP address';
      return "";
    }
    case "strings": {
      const once = key.unique ? ", each once" : "";
      if (key.values !== undefined) return quotedList(listedValues(key)) + once;
      if (key.keys) return `base64url X25519 public keys${once}`;
      if (key.itemBytes !== undefined) {
        return `${key.itemBytes.min}..${key.itemBytes.max} bytes each${once}`;
      }
      return "";
    }
  }
}

/**
 * Writes a configuration as annotated TOML: every key, with a comment and its environment
 * variable. {@linkcode parseConfig} reads it back to an equal configuration.
 *
 * @example Round trip
 * ```ts
 * import { createConfig, parseConfig, stringifyConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = createConfig({ client: { autoReconnect: false } });
 * assert.deepEqual(parseConfig(stringifyConfig(config)), config);
 * ```
 *
 * @param config The configuration to write.
 * @returns The TOML text.
 */
export function stringifyConfig(config: NetworkConfig): string {
  const out: string[] = [
    "# @npro/network-protocol configuration.",
    "#",
    "# Every key is optional: a missing key takes its default. Durations are integer",
    "# milliseconds and sizes are bytes. Each key can be overridden by the environment",
    "# variable named next to it; environment values win over this file.",
    "# See docs/CONFIGURATION.md for the details.",
  ];
  const sections = config as unknown as Record<string, Record<string, unknown>>;
  for (const section of SECTIONS) {
    out.push("", `# ${SECTION_DOCS[section]}`, `[${section}]`);
    for (const key of sectionKeys(section)) {
      out.push(`# ${key.description}`);
      const allowed = allowedText(key);
      if (allowed !== "") out.push(`# allowed: ${allowed}`);
      out.push(`# env: ${key.env}`);
      out.push(`${key.name} = ${tomlValue(key, sections[section]?.[key.property])}`);
    }
  }
  return out.join("\n") + "\n";
}

/**
 * Returns the annotated example configuration: every key with a comment, set to its default.
 * Parsing it gives exactly {@linkcode defaultConfig}.
 *
 * @example The example parses to the defaults
 * ```ts
 * import { defaultConfig, exampleConfig, parseConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseConfig(exampleConfig()), defaultConfig());
 * ```
 *
 * @returns The TOML text.
 */
export function exampleConfig(): string {
  return stringifyConfig(defaultConfig());
}
