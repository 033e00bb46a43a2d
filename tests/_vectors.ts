/**
 * Shared helper for tests that read the public test vectors in `tests/vectors/` (kept in the
 * repository, with their provenance and licences in `tests/vectors/README.md`). A missing or
 * unreadable file is a test failure: vector tests are never skipped.
 *
 * @module
 */

/** The vectors folder: `tests/vectors/`, next to this file. */
export const vectorsDir: URL = new URL("./vectors/", import.meta.url);

/**
 * Reads and parses a JSON vectors file by name, e.g. `wycheproof_x25519_test.json`.
 *
 * @throws {Error} When the file is missing or is not JSON, naming the path.
 */
export function readVectors<T = unknown>(name: string): T {
  const url = new URL(name, vectorsDir);
  let text: string;
  try {
    text = Deno.readTextFileSync(url);
  } catch (cause) {
    throw new Error(
      `Cannot read test vectors "${url.pathname}": they belong in tests/vectors/ (see its README.md)`,
      { cause },
    );
  }
  try {
    return JSON.parse(text) as T;
  } catch (cause) {
    throw new Error(`Test vectors "${url.pathname}" are not valid JSON`, { cause });
  }
}

/** Decodes a hex string. */
export function hex(text: string): Uint8Array {
  if (text.length % 2 !== 0) throw new TypeError(`Odd hex length "${text.length}"`);
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) {
    const byte = parseInt(text.slice(i * 2, i * 2 + 2), 16);
    if (Number.isNaN(byte)) throw new TypeError(`Bad hex "${text.slice(i * 2, i * 2 + 2)}"`);
    out[i] = byte;
  }
  return out;
}

/** Encodes bytes as hex. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}
