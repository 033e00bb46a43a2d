/**
 * `deno task config:docs`: regenerates what the configuration schema (src/config/schema.ts)
 * generates outside the code: the key tables of docs/CONFIGURATION.md (between
 * `<!-- keys:<section> -->` and `<!-- /keys -->`; the prose around them is left alone) and
 * examples/config.toml (`exampleConfig()`). tests/config_schema_test.ts fails when either differs
 * from what this script writes.
 *
 * @module
 */

import { allowedText, exampleConfig, tomlValue } from "../src/config/example.ts";
import { sectionKeys, SECTIONS } from "../src/config/schema.ts";
import type { KeyInfo, SectionName } from "../src/config/spec.ts";

const KIND_NAMES: Readonly<Record<KeyInfo["kind"], string>> = {
  string: "string",
  integer: "integer",
  boolean: "boolean",
  strings: "string[]",
};

const HEADER = [
  "key (TypeScript)",
  "type",
  "default",
  "allowed",
  "unit",
  "environment variable",
  "meaning",
];

function cell(text: string): string {
  return text.replaceAll("|", "\\|");
}

/**
 * The Markdown table of one section's keys, aligned as `deno fmt` aligns it.
 *
 * @param section The section.
 * @returns The table, without a final newline.
 */
export function renderKeyTable(section: SectionName): string {
  const rows = sectionKeys(section).map((key) =>
    [
      `\`${key.name}\` (\`${key.property}\`)`,
      KIND_NAMES[key.kind],
      `\`${tomlValue(key, key.default)}\``,
      allowedText(key, false),
      key.kind === "integer" ? key.unit ?? "" : "",
      `\`${key.env}\``,
      key.description,
    ].map(cell)
  );
  const widths = HEADER.map((title, i) =>
    Math.max(3, title.length, ...rows.map((row) => row[i]!.length))
  );
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(HEADER), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/**
 * Replaces every key table of docs/CONFIGURATION.md with the generated one.
 *
 * @param doc The document.
 * @returns The document with current tables.
 * @throws {Error} When a section's markers are missing or unclosed.
 */
export function updateConfigDoc(doc: string): string {
  let out = doc;
  for (const section of SECTIONS) {
    const open = `<!-- keys:${section} -->`;
    const start = out.indexOf(open);
    const end = start < 0 ? -1 : out.indexOf("<!-- /keys -->", start);
    if (start < 0 || end < 0) {
      throw new Error(`docs/CONFIGURATION.md has no "${open}" ... "<!-- /keys -->" block`);
    }
    out = `${out.slice(0, start + open.length)}\n\n${renderKeyTable(section)}\n\n${out.slice(end)}`;
  }
  return out;
}

if (import.meta.main) {
  const docUrl = new URL("../docs/CONFIGURATION.md", import.meta.url);
  const exampleUrl = new URL("../examples/config.toml", import.meta.url);
  const doc = await Deno.readTextFile(docUrl);
  const updated = updateConfigDoc(doc);
  const example = exampleConfig();
  const oldExample = await Deno.readTextFile(exampleUrl).catch(() => "");
  if (updated !== doc) await Deno.writeTextFile(docUrl, updated);
  if (example !== oldExample) await Deno.writeTextFile(exampleUrl, example);
  console.log(
    `docs/CONFIGURATION.md ${updated === doc ? "was current" : "updated"}; ` +
      `examples/config.toml ${example === oldExample ? "was current" : "updated"}`,
  );
}
