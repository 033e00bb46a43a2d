/**
 * Shared helper for tests that read the public test vectors in `../shared/vectors/` (outside the
 * repository). A fresh clone has no such folder: the tests are then ignored with a note, except
 * under `CI=true`, where a missing folder makes them fail.
 *
 * @module
 */

/** The vectors folder: `<repo>/../shared/vectors/`. */
export const vectorsDir: URL = new URL("../../shared/vectors/", import.meta.url);

let available: boolean | undefined;
let noted = false;

/** Whether the vectors folder exists. */
export function vectorsAvailable(): boolean {
  if (available === undefined) {
    try {
      available = Deno.statSync(vectorsDir).isDirectory;
    } catch {
      available = false;
    }
  }
  return available;
}

/** Whether the tests run in CI (`CI=true`), where missing vectors are an error. */
export function inCi(): boolean {
  try {
    return Deno.env.get("CI") === "true";
  } catch {
    return false;
  }
}

/** Reads and parses a JSON vectors file by name, e.g. `wycheproof_x25519_test.json`. */
export function readVectors<T = unknown>(name: string): T {
  return JSON.parse(Deno.readTextFileSync(new URL(name, vectorsDir))) as T;
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

/**
 * Registers a test that needs the vectors folder. Without the folder it is ignored with a console
 * note, or fails when `CI=true`.
 */
export function vectorTest(
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  const present = vectorsAvailable();
  if (!present && !inCi() && !noted) {
    noted = true;
    console.warn(
      `Test vectors not found at ${vectorsDir.pathname}: vector tests are ignored (they fail when CI=true).`,
    );
  }
  Deno.test({
    name,
    ignore: !present && !inCi(),
    fn: present ? fn : () => {
      throw new Error(`Test vectors are missing at ${vectorsDir.pathname} and CI=true`);
    },
  });
}
