/**
 * The TOML source: parses a document with smol-toml and turns it into a layer, each value with
 * the line that set it (found by {@linkcode LineIndex}, since smol-toml reports positions only
 * for syntax errors).
 *
 * @module
 */

import { parse as parseToml, TomlError } from "smol-toml";
import { ConfigError } from "./error.ts";
import { coerce, isPlainTable, KIND_WORDS, type Layer, setInLayer } from "./layers.ts";
import { ALIASES, findKey, sectionKeys, SECTIONS } from "./schema.ts";
import type { SectionName } from "./spec.ts";
import { describe, quote, suggest } from "./text.ts";

/**
 * Parses TOML text into a table, or throws a {@linkcode ConfigError} with the line and column of
 * a syntax error.
 *
 * @param text The TOML document.
 * @param label The subject of the error's summary (`Configuration "x.toml"`).
 * @returns The document.
 * @throws {ConfigError} On a syntax error, including duplicate keys and prototype keys.
 */
export function parseTomlDocument(text: string, label: string): Record<string, unknown> {
  try {
    return parseToml(text, {
      integersAsBigInt: true,
      unsafeKeyBehaviour: "throw",
      maxDepth: 16,
    }) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      const reason = error.message.split("\n")[0]!.replace(/^Invalid TOML document:\s*/, "");
      const problem = `line ${error.line}, column ${error.column}: ${reason}`;
      throw new ConfigError(`${label} is not valid TOML:`, [problem], {
        cause: error,
        line: error.line,
        column: error.column,
      });
    }
    throw error;
  }
}

/**
 * The layer of a parsed TOML document. Unknown sections and keys (with a "did you mean" hint)
 * and wrong types are reported with their lines; aliases set their target keys.
 *
 * @param doc The parsed document.
 * @param text Its text, to find lines.
 * @param problems Where problems are reported.
 * @returns The layer.
 */
export function layerFromToml(
  doc: Record<string, unknown>,
  text: string,
  problems: string[],
): Layer {
  const layer: Layer = new Map();
  const lines = new LineIndex(text);
  for (const [section, table] of Object.entries(doc)) {
    if (!(SECTIONS as readonly string[]).includes(section)) {
      const line = lines.find([section]);
      problems.push(
        `${lineOrigin(line)}: unknown section ${quote(section)}${suggest(section, SECTIONS)}`,
      );
      continue;
    }
    if (!isPlainTable(table)) {
      problems.push(
        `${lineOrigin(lines.find([section]))}: ${section} must be a table, found ${
          describe(table)
        }`,
      );
      continue;
    }
    for (const [name, raw] of Object.entries(table)) {
      const path = `${section}.${name}`;
      const origin = lineOrigin(lines.find([section, name]));
      const target = ALIASES[path] ?? path;
      const key = findKey(target);
      if (key === undefined) {
        const known = sectionKeys(section as SectionName).map((k) => k.name);
        problems.push(`${origin}: unknown key ${quote(path)}${suggest(name, known)}`);
        continue;
      }
      const value = coerce(key, raw, false);
      if (value === undefined) {
        problems.push(`${origin}: ${path} must be ${KIND_WORDS[key.kind]}, found ${describe(raw)}`);
        continue;
      }
      setInLayer(layer, target, { value, origin, via: path }, problems);
    }
  }
  return layer;
}

function lineOrigin(line: number | undefined): string {
  return line === undefined ? "config" : `line ${line}`;
}

/**
 * Finds the line that sets a key path, by scanning table headers and `key =` lines. Best
 * effort: falls back to the nearest parent.
 */
export class LineIndex {
  readonly #entries: { path: string; line: number }[] = [];

  /**
   * Indexes a document.
   *
   * @param text The TOML text.
   */
  constructor(text: string) {
    let table: string[] = [];
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line.startsWith("[")) {
        const match = /^\[\[?([^\]]*)\]\]?/.exec(line);
        if (match) {
          table = splitDotted(match[1]!);
          this.#entries.push({ path: table.join("."), line: i + 1 });
        }
        continue;
      }
      const match =
        /^((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=/
          .exec(line);
      if (match) {
        const keys = splitDotted(match[1]!);
        // Every prefix of a dotted key is also "defined" on this line (`server.address = ...`).
        for (let n = 1; n <= keys.length; n++) {
          this.#entries.push({ path: [...table, ...keys.slice(0, n)].join("."), line: i + 1 });
        }
      }
    }
  }

  /**
   * The line (1-based) that sets `path`, or its nearest parent.
   *
   * @param path The key path, as parts.
   * @returns The line, or `undefined` when not even the section is written out.
   */
  find(path: readonly string[]): number | undefined {
    for (let n = path.length; n > 0; n--) {
      const wanted = path.slice(0, n).join(".");
      const hit = this.#entries.find((e) => e.path === wanted);
      if (hit) return hit.line;
    }
    return undefined;
  }
}

function splitDotted(text: string): string[] {
  const parts: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(?:\.|$)/gy;
  let match: RegExpExecArray | null;
  while (re.lastIndex < text.length && (match = re.exec(text)) !== null) {
    parts.push(match[1] ?? match[2] ?? match[3] ?? "");
    if (match[0].length === 0) break;
  }
  return parts;
}
