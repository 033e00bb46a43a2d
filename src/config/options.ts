/**
 * The options source: the partial object of {@linkcode createConfig}, with camelCase keys,
 * mapped to key paths through the schema table.
 *
 * @module
 */

import { coerce, isPlainTable, KIND_WORDS, type Layer } from "./layers.ts";
import { sectionKeys, SECTIONS } from "./schema.ts";
import type { SectionName } from "./spec.ts";
import { describe, quote, suggest } from "./text.ts";

/**
 * The layer of a partial configuration object. Unknown sections and keys (with a "did you
 * mean" hint) and wrong types are reported as `options: ...`; `undefined` values are skipped.
 *
 * @param input The object.
 * @param problems Where problems are reported.
 * @returns The layer.
 */
export function layerFromObject(input: unknown, problems: string[]): Layer {
  const layer: Layer = new Map();
  if (input === undefined) return layer;
  if (!isPlainTable(input)) {
    problems.push(`options: the configuration must be an object, found ${describe(input)}`);
    return layer;
  }
  for (const [section, table] of Object.entries(input)) {
    if (!(SECTIONS as readonly string[]).includes(section)) {
      problems.push(`options: unknown section ${quote(section)}${suggest(section, SECTIONS)}`);
      continue;
    }
    if (table === undefined) continue;
    if (!isPlainTable(table)) {
      problems.push(`options: ${section} must be an object, found ${describe(table)}`);
      continue;
    }
    const keys = sectionKeys(section as SectionName);
    for (const [property, raw] of Object.entries(table)) {
      const key = keys.find((k) => k.property === property);
      if (key === undefined) {
        const known = keys.map((k) => k.property);
        problems.push(
          `options: unknown key ${quote(`${section}.${property}`)}${suggest(property, known)}`,
        );
        continue;
      }
      if (raw === undefined) continue;
      const value = coerce(key, raw, true);
      if (value === undefined) {
        problems.push(
          `options: ${key.path} must be ${KIND_WORDS[key.kind]}, found ${describe(raw)}`,
        );
        continue;
      }
      layer.set(key.path, { value, origin: "options", via: `${section}.${property}` });
    }
  }
  return layer;
}
