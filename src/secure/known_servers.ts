/**
 * Known server keys for trust on first use (TOFU): the first static key a server presents under
 * a name is remembered; later connections require the same key.
 *
 * File format (plain text, one entry per line, `#` starts a comment):
 *
 * ```text
 * # name            base64url X25519 public key
 * db.internal:9000  3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
 * ```
 *
 * @module
 */

import { decodeKey, encodeKey } from "./keys.ts";

/** Where known server keys are kept. */
export interface KnownServers {
  /**
   * Where the keys are kept, for error messages (a file path), when the store has such a place.
   * A changed server key is reported with it, so that the user knows which entry to remove.
   */
  readonly location?: string;
  /**
   * Returns the key remembered for `name`, if any.
   *
   * @param name The server's name.
   */
  get(name: string): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /**
   * Remembers `publicKey` for `name`.
   *
   * @param name The server's name.
   * @param publicKey The server's static public key.
   */
  set(name: string, publicKey: Uint8Array): void | Promise<void>;
}

function checkName(name: string): void {
  if (name.length === 0 || /[\s#]/.test(name)) {
    throw new TypeError(
      `Cannot use server name "${name}": it must be non-empty, without spaces or "#"`,
    );
  }
}

/**
 * Known server keys held in memory.
 *
 * @example Remember a key
 * ```ts
 * import { MemoryKnownServers } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const known = new MemoryKnownServers();
 * known.set("example:9000", new Uint8Array(32).fill(1));
 * assert.equal(known.get("example:9000")?.length, 32);
 * assert.equal(known.get("other:9000"), undefined);
 * ```
 */
export class MemoryKnownServers implements KnownServers {
  #keys = new Map<string, Uint8Array>();

  /**
   * Returns the key remembered for `name`.
   *
   * @param name The server's name.
   * @returns A copy of the key, or `undefined`.
   */
  get(name: string): Uint8Array | undefined {
    return this.#keys.get(name)?.slice();
  }

  /**
   * Remembers `publicKey` for `name`.
   *
   * @param name The server's name.
   * @param publicKey The 32-byte public key (copied).
   */
  set(name: string, publicKey: Uint8Array): void {
    checkName(name);
    if (publicKey.length !== 32) {
      throw new TypeError(`Server key must be 32 bytes, got "${publicKey.length}"`);
    }
    this.#keys.set(name, publicKey.slice());
  }
}

/**
 * Known server keys in a text file (`name key` per line), re-read on every lookup and written
 * with mode 0600 through a temporary file in the same directory and a rename. The file is
 * created by the first {@linkcode KnownServersFile.set}; its directory must already exist (it is
 * never created, so that a mistyped path fails instead of scattering key files).
 *
 * @example Use a known-servers file
 * ```ts
 * import { KnownServersFile } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const known = new KnownServersFile(`${dir}/known_servers`);
 * assert.equal(await known.get("example:9000"), undefined);
 * await known.set("example:9000", new Uint8Array(32).fill(7));
 * assert.deepEqual(await known.get("example:9000"), new Uint8Array(32).fill(7));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class KnownServersFile implements KnownServers {
  readonly #path: string;

  /**
   * Uses the file at `path` (created on the first {@linkcode KnownServersFile.set}).
   *
   * @param path The file path.
   */
  constructor(path: string) {
    if (typeof path !== "string" || path === "") {
      throw new TypeError(`Known-servers file path must be a non-empty string, got "${path}"`);
    }
    this.#path = path;
  }

  /** The file path, as given to the constructor. */
  get location(): string {
    return this.#path;
  }

  /**
   * Returns the key remembered for `name`.
   *
   * @param name The server's name.
   * @returns The key, or `undefined` when the file or the entry does not exist.
   * @throws {TypeError} When the file has a malformed line.
   */
  async get(name: string): Promise<Uint8Array | undefined> {
    return (await this.#read()).get(name);
  }

  /**
   * Remembers `publicKey` for `name`, replacing an earlier entry.
   *
   * @param name The server's name.
   * @param publicKey The 32-byte public key.
   */
  async set(name: string, publicKey: Uint8Array): Promise<void> {
    checkName(name);
    if (publicKey.length !== 32) {
      throw new TypeError(`Server key must be 32 bytes, got "${publicKey.length}"`);
    }
    const entries = await this.#read();
    entries.set(name, publicKey);
    let text = "# npro known servers: name, then base64url X25519 public key\n";
    for (const [entry, key] of entries) text += `${entry} ${encodeKey(key)}\n`;
    const temp = `${this.#path}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.writeTextFile(temp, text, { mode: 0o600 });
      await Deno.rename(temp, this.#path);
    } catch (error) {
      await Deno.remove(temp).catch(() => {});
      if (error instanceof Deno.errors.NotFound) {
        throw new Deno.errors.NotFound(
          `Cannot write the known-servers file "${this.#path}": its directory does not exist`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  async #read(): Promise<Map<string, Uint8Array>> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.#path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return new Map();
      throw error;
    }
    const entries = new Map<string, Uint8Array>();
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.replace(/#.*/, "").trim();
      if (line === "") continue;
      const parts = line.split(/\s+/);
      if (parts.length !== 2) {
        throw new TypeError(`Line ${i + 1} of "${this.#path}" must be "name key", got "${line}"`);
      }
      entries.set(parts[0]!, decodeKey(parts[1]!));
    }
    return entries;
  }
}
