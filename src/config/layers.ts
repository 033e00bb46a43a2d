/**
 * Layers: the values one source (the TOML file, the environment, a `createConfig` object) sets,
 * keyed by key path (`server.address`), each with where it came from. The defaults, then each
 * layer in turn, make the configuration.
 *
 * @module
 */

import { defaultConfig } from "./defaults.ts";
import type { KeyInfo, ValueKind } from "./spec.ts";
import type { NetworkConfig } from "./types.ts";
import { quote } from "./text.ts";

/** A value set by one source. */
export interface Setting {
  /** The value, converted to the key's kind. */
  readonly value: string | number | boolean | string[];
  /** Where the value came from: `line 3`, an environment variable name, or `options`. */
  readonly origin: string;
  /** The name it was set under (an alias, or the key itself). */
  readonly via: string;
}

/** The settings of one source, by key path. */
export type Layer = Map<string, Setting>;

/** How each kind is named in messages. */
export const KIND_WORDS: Readonly<Record<ValueKind, string>> = {
  string: "a string",
  integer: "an integer",
  boolean: "a boolean",
  strings: "an array of strings",
};

/**
 * Tells whether a value is a table (a plain object, not an array or a date).
 *
 * @param value Any value.
 * @returns Whether it is a table.
 */
export function isPlainTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date);
}

/**
 * Converts a raw value (TOML, with integers as bigint, or a JS object) to the key's kind.
 *
 * @param key The key.
 * @param raw The raw value.
 * @param integersAsNumbers Whether JS numbers count as integers (objects) or not (TOML floats).
 * @returns The value, or `undefined` when its type is wrong.
 */
export function coerce(
  key: KeyInfo,
  raw: unknown,
  integersAsNumbers: boolean,
): Setting["value"] | undefined {
  switch (key.kind) {
    case "string":
      return typeof raw === "string" ? raw : undefined;
    case "boolean":
      return typeof raw === "boolean" ? raw : undefined;
    case "integer":
      if (typeof raw === "bigint") {
        return raw >= BigInt(Number.MIN_SAFE_INTEGER) && raw <= BigInt(Number.MAX_SAFE_INTEGER)
          ? Number(raw)
          : undefined;
      }
      if (integersAsNumbers && typeof raw === "number" && Number.isSafeInteger(raw)) return raw;
      return undefined;
    case "strings":
      return Array.isArray(raw) && raw.every((v) => typeof v === "string")
        ? [...raw as string[]]
        : undefined;
  }
}

/**
 * Adds a setting to a layer. Setting one key twice (an alias and its target) is fine with the
 * same value, and a problem with different values.
 *
 * @param layer The layer.
 * @param target The key path.
 * @param setting The setting.
 * @param problems Where a conflict is reported.
 */
export function setInLayer(
  layer: Layer,
  target: string,
  setting: Setting,
  problems: string[],
): void {
  const previous = layer.get(target);
  if (previous !== undefined && !sameValue(previous.value, setting.value)) {
    problems.push(
      `${setting.origin}: ${setting.via} (${
        quote(setting.value)
      }) conflicts with ${previous.via} ` +
        `(${quote(previous.value)}, ${previous.origin}); they set the same option, keep one`,
    );
    return;
  }
  if (previous === undefined) layer.set(target, setting);
}

function sameValue(a: Setting["value"], b: Setting["value"]): boolean {
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => v === b[i]);
  }
  return a === b;
}

/**
 * Applies layers over the defaults, later layers winning.
 *
 * @param layers The layers, lowest precedence first.
 * @param keys The keys, to map each path to its property.
 * @returns A new configuration (not validated).
 */
export function applyLayers(
  layers: readonly Layer[],
  keys: ReadonlyMap<string, KeyInfo>,
): NetworkConfig {
  const config = defaultConfig();
  const sections = config as unknown as Record<string, Record<string, unknown>>;
  for (const layer of layers) {
    for (const [path, setting] of layer) {
      const key = keys.get(path)!;
      const value = setting.value;
      sections[key.section]![key.property] = Array.isArray(value) ? [...value] : value;
    }
  }
  return config;
}
