/**
 * The checks of the peer's static key against configured trust, for the session drivers of
 * `handshake.ts`: the client's pinned server keys and its known-servers store (trust on first
 * use), and the server's allowed client keys and `authorize` callback. Each check throws a
 * `HandshakeFailed` error that says which key failed and why.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { constantTimeEqual } from "../util/bytes.ts";
import { errorMessage } from "../util/error_message.ts";
import { fingerprint } from "./keys.ts";
import type { KnownServers } from "./known_servers.ts";
import type { ServerPolicy, TrustOnFirstUse } from "./policy.ts";

/**
 * Whether `key` is one of `set`, comparing every candidate in constant time.
 *
 * @param set The allowed keys.
 * @param key The key to look for.
 * @returns `true` when `key` is in `set`.
 */
function isMember(set: readonly Uint8Array[], key: Uint8Array): boolean {
  let found = false;
  for (const candidate of set) {
    const equal = constantTimeEqual(candidate, key);
    found = found || equal;
  }
  return found;
}

/**
 * Checks the server's static key against the client's pinned keys.
 *
 * @param pins The pinned server keys (at least one).
 * @param key The key the server presented.
 * @throws {ProtocolError} `HandshakeFailed` when the key matches none of them.
 */
export function checkPinnedServerKey(pins: readonly Uint8Array[], key: Uint8Array): void {
  if (!isMember(pins, key)) {
    throw new ProtocolError(
      "HandshakeFailed",
      `Server key "${fingerprint(key)}" matches none of the "${pins.length}" pinned keys`,
    );
  }
}

/**
 * Looks the server's static key up in the known-servers store.
 *
 * @param tofu The store and the name the server is known by.
 * @param key The key the server presented.
 * @returns `true` when the store holds this key for the name; `false` when it holds none (record
 * the key with {@linkcode recordServerKey} before the handshake's last message).
 * @throws {ProtocolError} `HandshakeFailed` when the store holds another key for the name, or
 * cannot be read.
 */
export async function checkKnownServerKey(
  tofu: TrustOnFirstUse,
  key: Uint8Array,
): Promise<boolean> {
  const { store, name } = tofu;
  let known: Uint8Array | undefined;
  try {
    known = await store.get(name);
  } catch (cause) {
    throw new ProtocolError(
      "HandshakeFailed",
      `Cannot read the known server keys in ${storeName(store)}: ${errorMessage(cause)}`,
      { cause },
    );
  }
  if (known === undefined) return false;
  if (!constantTimeEqual(known, key)) throw keyChanged(name, store, known, key);
  return true;
}

/**
 * Records the key of a server seen for the first time in the known-servers store.
 *
 * @param tofu The store and the name the server is known by.
 * @param key The key to record (it is kept; pass a copy).
 * @throws {ProtocolError} `HandshakeFailed` when the store cannot record it.
 */
export async function recordServerKey(tofu: TrustOnFirstUse, key: Uint8Array): Promise<void> {
  const { store, name } = tofu;
  try {
    await store.set(name, key);
  } catch (cause) {
    throw new ProtocolError(
      "HandshakeFailed",
      `Cannot record the key of server "${name}" in ${storeName(store)}: ${errorMessage(cause)}`,
      { cause },
    );
  }
}

/**
 * Checks the client's static key against the server's `clientKeys` and `authorize`, when the
 * server authenticates clients.
 *
 * @param policy The server's policy.
 * @param key The key the client presented, if any.
 * @returns `true` when the key was checked and passed; `false` when the server does not
 * authenticate clients.
 * @throws {ProtocolError} `HandshakeFailed` when the client sent no key, or its key is not allowed,
 * not authorized, or `authorize` failed.
 */
export async function authorizeClientKey(
  policy: ServerPolicy,
  key: Uint8Array | undefined,
): Promise<boolean> {
  if (!policy.mutual) return false;
  if (key === undefined) {
    throw new ProtocolError("HandshakeFailed", "The client sent no static key");
  }
  if (policy.clientKeys !== undefined && !isMember(policy.clientKeys, key)) {
    throw new ProtocolError("HandshakeFailed", `Client key "${fingerprint(key)}" is not allowed`);
  }
  if (policy.authorize !== undefined) {
    let allowed: boolean;
    try {
      allowed = await policy.authorize(key.slice());
    } catch (cause) {
      throw new ProtocolError(
        "HandshakeFailed",
        `Authorizing client key "${fingerprint(key)}" failed`,
        {
          cause,
        },
      );
    }
    if (allowed !== true) {
      throw new ProtocolError(
        "HandshakeFailed",
        `Client key "${fingerprint(key)}" was not authorized`,
      );
    }
  }
  return true;
}

function storeName(store: KnownServers): string {
  return store.location === undefined ? "the known-servers store" : `"${store.location}"`;
}

/**
 * The `HandshakeFailed` error of a server whose key differs from the one recorded for its name
 * in a known-servers store (trust on first use): it carries both keys, for callers that report
 * the change (the cluster's identity check does).
 *
 * @example Tell a changed server key from other handshake failures
 * ```ts
 * import { ServerKeyChangedError } from "@npro/network-protocol";
 *
 * function describe(error: unknown): string {
 *   return error instanceof ServerKeyChangedError
 *     ? `the key of ${error.serverName} changed`
 *     : "another failure";
 * }
 * console.log(describe(new Error("x")));
 * ```
 */
export class ServerKeyChangedError extends ProtocolError {
  /** The name the server is known by. */
  readonly serverName: string;
  /** The key recorded for it. */
  readonly knownKey: Uint8Array;
  /** The key it presented. */
  readonly presentedKey: Uint8Array;

  /**
   * The error.
   *
   * @param serverName The name the server is known by.
   * @param knownKey The key recorded for it.
   * @param presentedKey The key it presented.
   * @param message What happened.
   */
  constructor(serverName: string, knownKey: Uint8Array, presentedKey: Uint8Array, message: string) {
    super("HandshakeFailed", message);
    this.name = "ServerKeyChangedError";
    this.serverName = serverName;
    this.knownKey = knownKey.slice();
    this.presentedKey = presentedKey.slice();
  }
}

/** The error for a server whose key differs from the one recorded for its name. */
function keyChanged(
  name: string,
  store: KnownServers,
  known: Uint8Array,
  presented: Uint8Array,
): ProtocolError {
  const where = storeName(store);
  return new ServerKeyChangedError(
    name,
    known,
    presented,
    `The key of server "${name}" CHANGED: it presented the key with fingerprint "${
      fingerprint(presented)
    }", but the key with fingerprint "${
      fingerprint(known)
    }" is known for it in ${where}. Someone may be intercepting the connection; if the server's ` +
      `key was replaced on purpose, remove the line of "${name}" from ${where} and connect again`,
  );
}
