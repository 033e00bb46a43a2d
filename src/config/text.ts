/**
 * Wording shared by the configuration's messages: how a found value is described, how values
 * are quoted, and the "did you mean" hint for unknown names.
 *
 * @module
 */

/**
 * Describes a value found where another type was expected: `an integer (5)`, `a string ("x")`.
 *
 * @param value Any value.
 * @returns Its description.
 */
export function describe(value: unknown): string {
  if (typeof value === "bigint") return `an integer (${value})`;
  if (typeof value === "number") {
    return Number.isInteger(value) ? `an integer (${value})` : `a float (${value})`;
  }
  if (typeof value === "string") return `a string (${quote(value)})`;
  if (typeof value === "boolean") return `a boolean (${value})`;
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date-time";
  if (value === null) return "null";
  if (typeof value === "object") return "a table";
  return typeof value;
}

/**
 * Quotes a value for a message, shortened to 60 characters.
 *
 * @param value Any value.
 * @returns The quoted text.
 */
export function quote(value: unknown): string {
  const text = typeof value === "string" ? value : String(value);
  const shown = text.length > 60 ? `${text.slice(0, 57)}...` : text;
  return JSON.stringify(shown);
}

/**
 * Lists quoted values: `"a", "b", "c"`.
 *
 * @param values The values.
 * @returns The list.
 */
export function quotedList(values: readonly string[]): string {
  return values.map((v) => `"${v}"`).join(", ");
}

/**
 * Lists quoted values as alternatives: `"a" or "b"`, `"a", "b" or "c"`.
 *
 * @param values The values.
 * @returns The list.
 */
export function alternatives(values: readonly string[]): string {
  const quoted = values.map((v) => `"${v}"`);
  return quoted.length <= 1
    ? quoted.join("")
    : `${quoted.slice(0, -1).join(", ")} or ${quoted[quoted.length - 1]}`;
}

/**
 * The " (did you mean ...?)" hint for an unknown name: the closest candidate, if it is close.
 *
 * @param name The unknown name.
 * @param candidates The known names.
 * @returns The hint, or `""`.
 */
export function suggest(name: string, candidates: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(name.length / 3))
    ? ` (did you mean ${quote(best)}?)`
    : "";
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 8) return Infinity;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        prev[j]! + 1,
        row[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length]!;
}
