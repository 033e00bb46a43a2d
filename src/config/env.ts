/**
 * The environment source: `NETWORK_PROTOCOL_<SECTION>_<KEY>` for every key of the schema, the
 * aliases' names, and the original crate's four names. Only these names are read, one
 * `Deno.env.get` each, so `--allow-env=NETWORK_PROTOCOL_*` is enough.
 *
 * @module
 */

import { ConfigError } from "./error.ts";
import { type Layer, setInLayer, type Setting } from "./layers.ts";
import { ALIASES, ENV_PREFIX, envName, findKey, KEYS, LEGACY_ENV } from "./schema.ts";
import type { KeyInfo } from "./spec.ts";
import { quote } from "./text.ts";
import type { ConfigEnv } from "./types.ts";

/**
 * Lists every environment variable name the configuration reads: one
 * `NETWORK_PROTOCOL_<SECTION>_<KEY>` per key, the aliases, and the original's names.
 *
 * @example Names
 * ```ts
 * import { configEnvNames } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const names = configEnvNames();
 * assert.ok(names.includes("NETWORK_PROTOCOL_SERVER_BACKPRESSURE_LIMIT"));
 * assert.ok(names.includes("NETWORK_PROTOCOL_CONNECTION_TIMEOUT_MS"));
 * ```
 *
 * @returns The names, in the order they are applied.
 */
export function configEnvNames(): string[] {
  return [
    ...LEGACY_ENV.map((legacy) => legacy.name),
    ...Object.keys(ALIASES).map(aliasEnvName),
    ...KEYS.map((key) => key.env),
  ];
}

function aliasEnvName(alias: string): string {
  const [section, name] = alias.split(".") as [string, string];
  return envName(section, name);
}

/**
 * Turns the `env` option into a getter.
 *
 * @param env A record, a getter, `true` for `Deno.env.get`, or nothing.
 * @returns The getter.
 */
export function resolveEnv(
  env: ConfigEnv | boolean | undefined,
): (name: string) => string | undefined {
  if (env === undefined || env === false) return () => undefined;
  if (env === true) {
    return (name) => {
      try {
        return Deno.env.get(name);
      } catch (error) {
        throw new ConfigError(
          `Cannot read the environment variable ${quote(name)}; ` +
            `run with --allow-env=${ENV_PREFIX}* or do not ask for environment overrides`,
          [],
          { cause: error },
        );
      }
    };
  }
  if (typeof env === "function") return env;
  return (name) => Object.hasOwn(env, name) ? env[name] : undefined;
}

/**
 * Parses an environment value strictly, by the key's kind.
 *
 * @param key The key.
 * @param text The variable's value.
 * @returns The value, or the problem (to follow the key's name).
 */
export function parseEnvValue(key: KeyInfo, text: string): Setting["value"] | { error: string } {
  switch (key.kind) {
    case "string":
      return text;
    case "boolean": {
      const t = text.trim().toLowerCase();
      if (t === "true" || t === "1") return true;
      if (t === "false" || t === "0") return false;
      return { error: `must be true, false, 1 or 0, found ${quote(text)}` };
    }
    case "integer": {
      const t = text.trim();
      if (key.octal) {
        const m = /^(?:0o)?([0-7]{1,4})$/i.exec(t);
        if (!m) {
          return { error: `must be an octal mode such as 600 or 0o600, found ${quote(text)}` };
        }
        return Number.parseInt(m[1]!, 8);
      }
      if (!/^[+-]?\d+$/.test(t)) return { error: `must be an integer, found ${quote(text)}` };
      const n = Number(t);
      if (!Number.isSafeInteger(n)) return { error: `is out of range, found ${quote(text)}` };
      return n;
    }
    case "strings": {
      if (text.trim() === "") return [];
      const items = text.split(",").map((s) => s.trim());
      if (items.some((s) => s === "")) {
        return {
          error: `must be a comma-separated list without empty items, found ${quote(text)}`,
        };
      }
      return items;
    }
  }
}

/**
 * The layer of the environment. The original's names are applied first, so the specific
 * `NETWORK_PROTOCOL_<SECTION>_<KEY>` names win over them; an alias and its target set to
 * different values are a problem.
 *
 * @param get The getter of {@linkcode resolveEnv}.
 * @param problems Where bad values are reported, each naming its variable.
 * @returns The layer.
 */
export function layerFromEnv(get: (name: string) => string | undefined, problems: string[]): Layer {
  const read = (name: string, via: string, key: KeyInfo): Setting | undefined => {
    const text = get(name);
    if (text === undefined) return undefined;
    const value = parseEnvValue(key, text);
    if (typeof value === "object" && !Array.isArray(value)) {
      problems.push(`${name}: ${via} ${value.error}`);
      return undefined;
    }
    return { value, origin: name, via: name };
  };
  const layer: Layer = new Map();
  for (const legacy of LEGACY_ENV) {
    const first = legacy.targets[0]!;
    const setting = read(legacy.name, first, findKey(first)!);
    if (setting !== undefined) { for (const target of legacy.targets) layer.set(target, setting); }
  }
  const specific: Layer = new Map();
  for (const [alias, target] of Object.entries(ALIASES)) {
    const setting = read(aliasEnvName(alias), alias, findKey(target)!);
    if (setting !== undefined) setInLayer(specific, target, setting, problems);
  }
  for (const key of KEYS) {
    const setting = read(key.env, key.path, key);
    if (setting !== undefined) setInLayer(specific, key.path, setting, problems);
  }
  for (const [target, setting] of specific) layer.set(target, setting);
  return layer;
}
