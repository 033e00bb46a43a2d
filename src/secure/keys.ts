/**
 * Static X25519 keys: generation, base64url text form, SHA-256 fingerprints, constant-time
 * comparison and key files.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { constantTimeEqual, toBase64Url } from "../util/bytes.ts";
import { type CryptoProvider, KEY_LENGTH } from "./crypto.ts";
import { defaultProvider } from "./default_provider.ts";

/**
 * An X25519 key pair with 32-byte raw keys.
 *
 * @example Generate one
 * ```ts
 * import { generateKeyPair, type KeyPair } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const pair: KeyPair = generateKeyPair();
 * assert.equal(pair.publicKey.length, 32);
 * ```
 */
export interface KeyPair {
  /** The public key: share it, pin it. */
  publicKey: Uint8Array;
  /** The private key: keep it secret. */
  privateKey: Uint8Array;
}

/**
 * Generates an X25519 key pair for use as a Noise static key.
 *
 * @example Generate a server key
 * ```ts
 * import { encodeKey, generateKeyPair } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const { publicKey } = generateKeyPair();
 * assert.equal(encodeKey(publicKey).length, 43);
 * ```
 *
 * @param provider The crypto provider; the default one when omitted.
 * @returns A fresh key pair (arrays owned by the caller).
 */
export function generateKeyPair(provider?: CryptoProvider): KeyPair {
  const pair = (provider ?? defaultProvider()).generateKeyPair();
  // The provider returns fresh arrays; the private one is kept as is so the native provider's
  // key cache recognises it.
  return { publicKey: pair.publicKey, privateKey: pair.privateKey };
}

/**
 * Derives the public key of a private key.
 *
 * @example Recover a public key
 * ```ts
 * import { generateKeyPair, publicKeyOf } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const pair = generateKeyPair();
 * assert.deepEqual(publicKeyOf(pair.privateKey), pair.publicKey);
 * ```
 *
 * @param privateKey The 32-byte private key.
 * @param provider The crypto provider; the default one when omitted.
 * @returns The 32-byte public key.
 */
export function publicKeyOf(privateKey: Uint8Array, provider?: CryptoProvider): Uint8Array {
  checkKey(privateKey);
  return (provider ?? defaultProvider()).publicKeyOf(privateKey).slice();
}

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
    throw new TypeError(
      `Key must be a Uint8Array of ${KEY_LENGTH} bytes, got "${
        key instanceof Uint8Array ? key.length : typeof key
      }"`,
    );
  }
}

/**
 * The SHA-256 fingerprint of a public key, base64url without padding (43 characters). Show it to
 * people who compare keys; pin the key itself or its fingerprint.
 *
 * @example Fingerprint a key
 * ```ts
 * import { fingerprint, generateKeyPair } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const { publicKey } = generateKeyPair();
 * assert.match(fingerprint(publicKey), /^[A-Za-z0-9_-]{43}$/);
 * ```
 *
 * @param publicKey The 32-byte public key.
 * @returns The fingerprint.
 * @throws {TypeError} When the key is not 32 bytes.
 */
export function fingerprint(publicKey: Uint8Array): string {
  checkKey(publicKey);
  return toBase64Url(defaultProvider().sha256(publicKey));
}

/**
 * Encodes a 32-byte key as base64url without padding (43 characters).
 *
 * @example Encode and decode
 * ```ts
 * import { decodeKey, encodeKey } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const key = new Uint8Array(32).fill(255);
 * assert.equal(encodeKey(key), "_".repeat(42) + "8");
 * assert.deepEqual(decodeKey(encodeKey(key)), key);
 * ```
 *
 * @param key The 32-byte key.
 * @returns The text form.
 * @throws {TypeError} When the key is not 32 bytes.
 */
export function encodeKey(key: Uint8Array): string {
  checkKey(key);
  return toBase64Url(key);
}

/** Canonical unpadded base64url of 32 bytes (the last character carries 2 bits + 4 zero bits). */
const KEY_TEXT = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/**
 * Tells whether `text` is a key as {@linkcode encodeKey} writes it: exactly 43 base64url
 * characters that encode 32 bytes canonically (what {@linkcode decodeKey} accepts).
 *
 * @example Check key text
 * ```ts
 * import { isKeyText } from "./keys.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(isKeyText("_".repeat(42) + "8"));
 * assert.ok(!isKeyText("_".repeat(42) + "9")); // non-canonical last character
 * assert.ok(!isKeyText("too-short"));
 * ```
 *
 * @param text The text to check.
 * @returns Whether it is a canonical base64url 32-byte key.
 */
export function isKeyText(text: string): boolean {
  return KEY_TEXT.test(text);
}

/**
 * Decodes a key written by {@linkcode encodeKey}: exactly 43 base64url characters that encode 32
 * bytes canonically. Padding, whitespace and the `+/` alphabet are refused.
 *
 * @example Refuse a malformed key
 * ```ts
 * import { decodeKey } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => decodeKey("too-short"), TypeError);
 * ```
 *
 * @param text The text form.
 * @returns The 32-byte key.
 * @throws {TypeError} When the text is not a canonical base64url 32-byte key.
 */
export function decodeKey(text: string): Uint8Array {
  if (typeof text !== "string" || !isKeyText(text)) {
    const shown = typeof text === "string" ? text.slice(0, 60) : typeof text;
    throw new TypeError(`Key "${shown}" is not 43 base64url characters encoding 32 bytes`);
  }
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=");
  const key = new Uint8Array(KEY_LENGTH);
  for (let i = 0; i < KEY_LENGTH; i++) key[i] = binary.charCodeAt(i);
  return key;
}

/** Options for {@linkcode writeKeyFile}. */
export interface WriteKeyFileOptions {
  /** Replace an existing file (atomically, through a temporary file and a rename). */
  overwrite?: boolean;
  /** Aborts the write. */
  signal?: AbortSignal;
}

/** Options for {@linkcode readKeyFile}. */
export interface ReadKeyFileOptions {
  /**
   * Accept a file that group or others can read or write (POSIX). Off by default: such a file is
   * refused, as OpenSSH refuses private keys with loose permissions.
   */
  allowInsecurePermissions?: boolean;
  /** Aborts the read. */
  signal?: AbortSignal;
}

const KEY_FILE_HEADER =
  "# npro static key (X25519). Keep this file secret: it holds a private key.";
const MAX_KEY_FILE_SIZE = 4096;
const isWindows = Deno.build.os === "windows";

/**
 * The text of a key file: a comment, then `private:`, `public:` and `fingerprint:` lines with
 * base64url values. A person can copy the public line into a peer's configuration.
 *
 * @example Format a key file
 * ```ts
 * import { formatKeyFile, generateKeyPair } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * assert.match(formatKeyFile(generateKeyPair()), /^public: [A-Za-z0-9_-]{43}$/m);
 * ```
 *
 * @param keyPair The key pair.
 * @returns The file text.
 */
export function formatKeyFile(keyPair: KeyPair): string {
  checkKey(keyPair.privateKey);
  checkKey(keyPair.publicKey);
  return `${KEY_FILE_HEADER}\nprivate: ${encodeKey(keyPair.privateKey)}\npublic: ${
    encodeKey(keyPair.publicKey)
  }\nfingerprint: ${fingerprint(keyPair.publicKey)}\n`;
}

/**
 * Parses the text of a key file written by {@linkcode formatKeyFile}. Blank lines and lines that
 * start with `#` are ignored. `private:` is required; `public:` and `fingerprint:`, when present,
 * must match the private key.
 *
 * @example Parse a key file
 * ```ts
 * import { formatKeyFile, generateKeyPair, parseKeyFile } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const pair = generateKeyPair();
 * assert.deepEqual(parseKeyFile(formatKeyFile(pair)).publicKey, pair.publicKey);
 * ```
 *
 * @param text The file text.
 * @param source A name for the file in error messages.
 * @returns The key pair.
 * @throws {ProtocolError} `ConfigError` when the text is malformed or inconsistent.
 */
export function parseKeyFile(text: string, source = "key file"): KeyPair {
  const fields = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-z]+):\s*(\S+)$/.exec(line);
    if (match === null) {
      throw new ProtocolError("ConfigError", `Line "${index + 1}" of "${source}" is malformed`);
    }
    const [, name, value] = match as unknown as [string, string, string];
    if (!["private", "public", "fingerprint"].includes(name)) {
      throw new ProtocolError(
        "ConfigError",
        `Line "${index + 1}" of "${source}" has an unknown field "${name}"`,
      );
    }
    if (fields.has(name)) {
      throw new ProtocolError("ConfigError", `Field "${name}" appears twice in "${source}"`);
    }
    fields.set(name, value);
  }
  const privateText = fields.get("private");
  if (privateText === undefined) {
    throw new ProtocolError("ConfigError", `"${source}" has no "private:" line`);
  }
  let privateKey: Uint8Array;
  let publicKey: Uint8Array;
  try {
    privateKey = decodeKey(privateText);
  } catch (cause) {
    throw new ProtocolError("ConfigError", `The private key in "${source}" is malformed`, {
      cause,
    });
  }
  publicKey = publicKeyOf(privateKey);
  const publicText = fields.get("public");
  if (publicText !== undefined) {
    let stated: Uint8Array;
    try {
      stated = decodeKey(publicText);
    } catch (cause) {
      throw new ProtocolError("ConfigError", `The public key in "${source}" is malformed`, {
        cause,
      });
    }
    if (!constantTimeEqual(stated, publicKey)) {
      throw new ProtocolError(
        "ConfigError",
        `The public key in "${source}" does not belong to its private key`,
      );
    }
    publicKey = stated;
  }
  const fingerprintText = fields.get("fingerprint");
  if (fingerprintText !== undefined && fingerprintText !== fingerprint(publicKey)) {
    throw new ProtocolError(
      "ConfigError",
      `The fingerprint in "${source}" does not match its public key`,
    );
  }
  return { publicKey, privateKey };
}

/**
 * Writes a key pair to a file readable only by its owner (mode 0600 on POSIX systems), in the
 * format of {@linkcode formatKeyFile}. It refuses to replace an existing file unless
 * `overwrite` is set; a replacement is written to a temporary file first and renamed, so a crash
 * never leaves half a key.
 *
 * @example Write and read a key file
 * ```ts
 * import { generateKeyPair, readKeyFile, writeKeyFile } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const pair = generateKeyPair();
 * await writeKeyFile(`${dir}/server.key`, pair);
 * assert.deepEqual((await readKeyFile(`${dir}/server.key`)).publicKey, pair.publicKey);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @param path Where to write.
 * @param keyPair The key pair.
 * @param options `overwrite` and an abort `signal`.
 * @returns A promise that settles when the file is written.
 * @throws {Deno.errors.AlreadyExists} When the file exists and `overwrite` is not set.
 */
export async function writeKeyFile(
  path: string | URL,
  keyPair: KeyPair,
  options: WriteKeyFileOptions = {},
): Promise<void> {
  const text = formatKeyFile(keyPair);
  const { signal } = options;
  signal?.throwIfAborted();
  if (!options.overwrite) {
    try {
      await Deno.writeTextFile(path, text, {
        createNew: true,
        mode: 0o600,
        ...(signal === undefined ? {} : { signal }),
      });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) {
        throw new Deno.errors.AlreadyExists(
          `Key file "${String(path)}" already exists; pass { overwrite: true } to replace it`,
        );
      }
      throw error;
    }
    return;
  }
  const target = path instanceof URL ? path.pathname : path;
  const temporary = `${target}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(temporary, text, {
      createNew: true,
      mode: 0o600,
      ...(signal === undefined ? {} : { signal }),
    });
    signal?.throwIfAborted();
    await Deno.rename(temporary, target);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/**
 * Reads a key file written by {@linkcode writeKeyFile}. On POSIX systems a file that group or
 * others can access is refused (like OpenSSH does) unless `allowInsecurePermissions` is set.
 *
 * @example Refuse a world-readable key file
 * ```ts
 * import { generateKeyPair, readKeyFile, writeKeyFile } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await writeKeyFile(`${dir}/a.key`, generateKeyPair());
 * if (Deno.build.os !== "windows") {
 *   await Deno.chmod(`${dir}/a.key`, 0o644);
 *   await assert.rejects(readKeyFile(`${dir}/a.key`));
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @param path The file.
 * @param options `allowInsecurePermissions` and an abort `signal`.
 * @returns The key pair.
 * @throws {ProtocolError} `ConfigError` when the file is malformed, inconsistent, too large or
 * too widely readable.
 */
export async function readKeyFile(
  path: string | URL,
  options: ReadKeyFileOptions = {},
): Promise<KeyPair> {
  const { signal } = options;
  signal?.throwIfAborted();
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (!info.isFile) {
      throw new ProtocolError("ConfigError", `Key file "${String(path)}" is not a regular file`);
    }
    if (info.size > MAX_KEY_FILE_SIZE) {
      throw new ProtocolError(
        "ConfigError",
        `Key file "${String(path)}" size "${info.size}" exceeds the limit "${MAX_KEY_FILE_SIZE}"`,
      );
    }
    if (
      !isWindows && info.mode !== null && (info.mode & 0o077) !== 0 &&
      !options.allowInsecurePermissions
    ) {
      throw new ProtocolError(
        "ConfigError",
        `Key file "${String(path)}" has mode "${
          (info.mode & 0o777).toString(8)
        }" and others can access it; run chmod 600 on it`,
      );
    }
    const buffer = new Uint8Array(MAX_KEY_FILE_SIZE + 1);
    let length = 0;
    while (length < buffer.length) {
      signal?.throwIfAborted();
      const read = await file.read(buffer.subarray(length));
      if (read === null) break;
      length += read;
    }
    if (length > MAX_KEY_FILE_SIZE) {
      throw new ProtocolError(
        "ConfigError",
        `Key file "${String(path)}" exceeds the limit "${MAX_KEY_FILE_SIZE}" bytes`,
      );
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(buffer.subarray(0, length));
    } catch (cause) {
      throw new ProtocolError("ConfigError", `Key file "${String(path)}" is not UTF-8 text`, {
        cause,
      });
    } finally {
      buffer.fill(0);
    }
    return parseKeyFile(text, String(path));
  } finally {
    file.close();
  }
}
