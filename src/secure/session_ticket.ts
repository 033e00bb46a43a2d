/**
 * Session resumption (docs/SECURITY.md, "Session resumption"; bytes in docs/PROTOCOL.md): the
 * server's {@linkcode SessionTicketIssuer} seals a session's resumption secret and the
 * identities it authenticated into a ticket under a rotating key only the server holds; the
 * client's {@linkcode SessionTicketStore} keeps each ticket, with the secret, for one use. A
 * resumed handshake is Noise NNpsk0 with that secret as the psk: it still runs an ephemeral DH
 * on both sides (forward secrecy), and carries no application data before it completes.
 *
 * ```text
 * ticket = format:u8 (0x01) || key_id:8 || seal(ticket_key, state, ad = format || key_id)
 * seal   = nonce:24 || XChaCha20-Poly1305 ciphertext || tag:16
 * state  = psk:32 || auth_time:u64be || expires_at:u64be || pattern:u8 || flags:u8
 *          [ || server_static:32 ] [ || client_static:32 ]    (present when flags 0x1, 0x2)
 * ```
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { constantTimeEqual } from "../util/bytes.ts";
import { positiveIntegerOption } from "../util/options.ts";
import type { CryptoProvider } from "./crypto.ts";
import { defaultProvider } from "./default_provider.ts";
import { MAX_TICKET_SIZE, PATTERN_IDS, PATTERN_NAMES, type PatternName } from "./hello.ts";
import { open, seal } from "./seal.ts";

/** The longest a ticket may live, from the full handshake it resumes: 7 days, as in TLS 1.3. */
export const MAX_TICKET_LIFETIME_MS = 7 * 24 * 3600 * 1000;
/** The default ticket lifetime: 1 hour. */
export const DEFAULT_TICKET_LIFETIME_MS = 3600 * 1000;
/** The shortest ticket lifetime and key rotation period accepted: 1 second. */
export const MIN_TICKET_PERIOD_MS = 1000;

/** The label of the resumption secret: `HKDF(ck, "npro/2 resumption", 2)[0]`. */
export const RESUMPTION_LABEL: Uint8Array = new TextEncoder().encode("npro/2 resumption");

const FORMAT = 0x01;
const KEY_ID_SIZE = 8;
const PSK_SIZE = 32;
const FLAG_SERVER_KEY = 0x1;
const FLAG_CLIENT_KEY = 0x2;
const STATE_FIXED = PSK_SIZE + 8 + 8 + 1 + 1;
const PATTERNS_BY_ID = new Map<number, PatternName>(
  PATTERN_NAMES.map((name) => [PATTERN_IDS[name], name]),
);

/** What a ticket carries: the resumption secret and what the full handshake established. */
export interface TicketState {
  /** The resumption secret: the psk of the resumed handshake (32 bytes). */
  psk: Uint8Array;
  /** When the full handshake that authenticated the peers finished (ms since the epoch). */
  authTime: number;
  /** When the ticket stops being accepted (ms since the epoch, the server's clock). */
  expiresAt: number;
  /** The pattern of that full handshake. */
  pattern: PatternName;
  /** The server's static public key, when that pattern had one. */
  serverKey?: Uint8Array;
  /** The client's static public key, when that pattern had one. */
  clientKey?: Uint8Array;
}

/** Options of {@linkcode SessionTicketIssuer}. */
export interface SessionTicketIssuerOptions {
  /**
   * How long a session may be resumed after the full handshake that authenticated it, in
   * milliseconds (default 3600000, 1 hour; at most 7 days). Resuming does not extend it: a
   * ticket issued on a resumed session expires when the first one would have.
   */
  lifetimeMs?: number;
  /**
   * How often the ticket key is replaced, in milliseconds (default: the lifetime; at most the
   * lifetime). The previous key still opens tickets until two periods after it was made; a
   * ticket never outlives its key.
   */
  keyRotationMs?: number;
  /** The clock, in milliseconds since the epoch (default `Date.now`; tests inject one). */
  now?: () => number;
  /** The crypto provider of the ticket AEAD (default: the default provider). */
  provider?: CryptoProvider;
}

interface TicketKey {
  id: Uint8Array;
  key: Uint8Array;
  createdAt: number;
}

/**
 * The server's ticket keys: seals session tickets under a random key made in this process,
 * replaced every `keyRotationMs`, and opens the tickets of the current and the previous key.
 * A server that restarts, or another process behind the same address, has other keys: its
 * clients' tickets are refused and they run a full handshake. One issuer serves every handshake
 * of a server (`serve()` makes one when `security.resumption` is true).
 *
 * @example Issue a ticket and open it
 * ```ts
 * import { SessionTicketIssuer } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const issuer = new SessionTicketIssuer({ lifetimeMs: 60_000 });
 * const psk = crypto.getRandomValues(new Uint8Array(32));
 * const issued = issuer.issue({
 *   psk,
 *   authTime: Date.now(),
 *   pattern: "XX",
 * });
 * assert.ok(issued !== undefined && issued.lifetimeMs <= 60_000);
 * const state = issuer.open(issued.ticket, undefined);
 * assert.deepEqual(state.psk, psk);
 * issuer.destroy();
 * ```
 */
export class SessionTicketIssuer {
  /** How long a session may be resumed after its full handshake, in milliseconds. */
  readonly lifetimeMs: number;
  /** How often the ticket key is replaced, in milliseconds. */
  readonly keyRotationMs: number;
  readonly #now: () => number;
  readonly #provider: CryptoProvider;
  #current: TicketKey;
  #previous: TicketKey | undefined;
  #destroyed = false;

  /**
   * Makes the first ticket key.
   *
   * @param options Lifetime, rotation period, clock and provider.
   * @throws {RangeError} For a lifetime or rotation period out of range.
   */
  constructor(options: SessionTicketIssuerOptions = {}) {
    const lifetime = positiveIntegerOption(
      "ticket lifetime",
      options.lifetimeMs,
      DEFAULT_TICKET_LIFETIME_MS,
    );
    if (lifetime < MIN_TICKET_PERIOD_MS || lifetime > MAX_TICKET_LIFETIME_MS) {
      throw new RangeError(
        `Cannot use ticket lifetime "${lifetime}" ms: expected ${MIN_TICKET_PERIOD_MS} to ${MAX_TICKET_LIFETIME_MS}`,
      );
    }
    const rotation = positiveIntegerOption("ticket key rotation", options.keyRotationMs, lifetime);
    if (rotation < MIN_TICKET_PERIOD_MS || rotation > lifetime) {
      throw new RangeError(
        `Cannot use ticket key rotation "${rotation}" ms: expected ${MIN_TICKET_PERIOD_MS} to the lifetime "${lifetime}"`,
      );
    }
    if (options.now !== undefined && typeof options.now !== "function") {
      throw new TypeError("The now option must be a function");
    }
    this.lifetimeMs = lifetime;
    this.keyRotationMs = rotation;
    this.#now = options.now ?? Date.now;
    this.#provider = options.provider ?? defaultProvider();
    this.#current = newKey(this.#now());
  }

  /**
   * Replaces the ticket key now: the current key becomes the previous one (its tickets are
   * still accepted), the previous one is erased (its tickets are refused). Keys also rotate by
   * themselves every `keyRotationMs`.
   */
  rotate(): void {
    this.#check();
    this.#retire(this.#now());
  }

  /**
   * Seals a ticket for a session that just completed its handshake.
   *
   * @param state What the ticket carries; `authTime` defaults to now (a full handshake), and
   * `expiresAt` is computed here: the earliest of `authTime + lifetimeMs` and the moment the
   * current key is erased.
   * @returns The ticket and how long it lives from now, or `undefined` when it would live less
   * than a second (a chain of resumptions at the end of its lifetime: the next handshake is a
   * full one).
   */
  issue(
    state: Omit<TicketState, "expiresAt" | "authTime"> & { authTime?: number },
  ): { ticket: Uint8Array; lifetimeMs: number } | undefined {
    this.#check();
    const now = this.#now();
    this.#refresh(now);
    const key = this.#current;
    const authTime = state.authTime ?? now;
    const expiresAt = Math.min(authTime + this.lifetimeMs, key.createdAt + 2 * this.keyRotationMs);
    if (expiresAt - now < MIN_TICKET_PERIOD_MS) return undefined;
    const plain = encodeState({ ...state, authTime, expiresAt });
    const ad = header(key.id);
    try {
      const sealed = seal(key.key, plain, { additionalData: ad, provider: this.#provider });
      const ticket = new Uint8Array(ad.length + sealed.length);
      ticket.set(ad);
      ticket.set(sealed, ad.length);
      return { ticket, lifetimeMs: expiresAt - now };
    } finally {
      plain.fill(0);
    }
  }

  /**
   * Whether a ticket issued now for a session authenticated at `authTime` would live at least a
   * second (see {@linkcode SessionTicketIssuer.issue}).
   *
   * @param authTime When the full handshake finished (ms since the epoch; default now).
   * @returns Whether {@linkcode SessionTicketIssuer.issue} would return a ticket.
   */
  canIssue(authTime?: number): boolean {
    if (this.#destroyed) return false;
    const now = this.#now();
    authTime ??= now;
    this.#refresh(now);
    const expiresAt = Math.min(
      authTime + this.lifetimeMs,
      this.#current.createdAt + 2 * this.keyRotationMs,
    );
    return expiresAt - now >= MIN_TICKET_PERIOD_MS;
  }

  /**
   * Opens a ticket this server issued and checks it is still valid.
   *
   * @param ticket The ticket from the client's hello.
   * @param serverKey This server's static public key, if it has one: a ticket issued for
   * another key is refused.
   * @returns The ticket's state (the caller erases `psk` after use).
   * @throws {ProtocolError} `HandshakeFailed` that says why the ticket is refused: malformed,
   * sealed under a key this server does not have (rotated out, another process, a restart),
   * tampered with, expired, or issued for another server key.
   */
  open(ticket: Uint8Array, serverKey: Uint8Array | undefined): TicketState {
    this.#check();
    const now = this.#now();
    this.#refresh(now);
    if (ticket.length < 1 + KEY_ID_SIZE || ticket[0] !== FORMAT) {
      throw refused(`it is malformed ("${ticket.length}" bytes, format "${ticket[0]}")`);
    }
    const id = ticket.subarray(1, 1 + KEY_ID_SIZE);
    const key = [this.#current, this.#previous].find((k) =>
      k !== undefined && constantTimeEqual(k.id, id)
    );
    if (key === undefined) {
      throw refused(
        "it was sealed under a key this server does not have (rotated out, another process, or a restart)",
      );
    }
    let plain: Uint8Array;
    try {
      plain = open(key.key, ticket.subarray(1 + KEY_ID_SIZE), {
        additionalData: ticket.subarray(0, 1 + KEY_ID_SIZE),
        provider: this.#provider,
      });
    } catch (cause) {
      throw refused("it failed authentication (altered or forged)", cause);
    }
    try {
      const state = decodeState(plain);
      if (now >= state.expiresAt) {
        state.psk.fill(0);
        throw refused(`it expired "${now - state.expiresAt}" ms ago`);
      }
      if (
        state.serverKey !== undefined &&
        (serverKey === undefined || !constantTimeEqual(state.serverKey, serverKey))
      ) {
        state.psk.fill(0);
        throw refused("it was issued for another server key");
      }
      return state;
    } finally {
      plain.fill(0);
    }
  }

  /** Erases the ticket keys: no ticket is issued or opened afterwards. */
  destroy(): void {
    this.#destroyed = true;
    this.#current.key.fill(0);
    this.#previous?.key.fill(0);
    this.#previous = undefined;
  }

  #check(): void {
    if (this.#destroyed) {
      throw new ProtocolError("HandshakeFailed", "The session ticket keys were destroyed");
    }
  }

  /** Rotates when the current key is one period old, and erases a key two periods old. */
  #refresh(now: number): void {
    if (this.#previous !== undefined && now >= this.#previous.createdAt + 2 * this.keyRotationMs) {
      this.#previous.key.fill(0);
      this.#previous = undefined;
    }
    if (now >= this.#current.createdAt + this.keyRotationMs) this.#retire(now);
  }

  #retire(now: number): void {
    this.#previous?.key.fill(0);
    const old = this.#current;
    // A key two periods old opens no ticket that has not expired: drop it at once.
    this.#previous = now < old.createdAt + 2 * this.keyRotationMs ? old : undefined;
    if (this.#previous === undefined) old.key.fill(0);
    this.#current = newKey(now);
  }
}

function newKey(now: number): TicketKey {
  return {
    id: crypto.getRandomValues(new Uint8Array(KEY_ID_SIZE)),
    key: crypto.getRandomValues(new Uint8Array(32)),
    createdAt: now,
  };
}

function header(id: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + KEY_ID_SIZE);
  out[0] = FORMAT;
  out.set(id, 1);
  return out;
}

function refused(reason: string, cause?: unknown): ProtocolError {
  return new ProtocolError(
    "HandshakeFailed",
    `Session ticket refused: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

function encodeState(state: TicketState): Uint8Array {
  const out = new Uint8Array(
    STATE_FIXED + (state.serverKey === undefined ? 0 : 32) +
      (state.clientKey === undefined ? 0 : 32),
  );
  const view = new DataView(out.buffer);
  out.set(state.psk);
  view.setBigUint64(PSK_SIZE, BigInt(state.authTime));
  view.setBigUint64(PSK_SIZE + 8, BigInt(state.expiresAt));
  out[PSK_SIZE + 16] = PATTERN_IDS[state.pattern];
  out[PSK_SIZE + 17] = (state.serverKey === undefined ? 0 : FLAG_SERVER_KEY) |
    (state.clientKey === undefined ? 0 : FLAG_CLIENT_KEY);
  let offset = STATE_FIXED;
  if (state.serverKey !== undefined) {
    out.set(state.serverKey, offset);
    offset += 32;
  }
  if (state.clientKey !== undefined) out.set(state.clientKey, offset);
  return out;
}

function decodeState(plain: Uint8Array): TicketState {
  const bad = (): ProtocolError => refused("its contents are malformed");
  if (plain.length < STATE_FIXED) throw bad();
  const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  const pattern = PATTERNS_BY_ID.get(plain[PSK_SIZE + 16]!);
  const flags = plain[PSK_SIZE + 17]!;
  const keys = ((flags & FLAG_SERVER_KEY) !== 0 ? 1 : 0) +
    ((flags & FLAG_CLIENT_KEY) !== 0 ? 1 : 0);
  if (pattern === undefined || (flags & ~0x3) !== 0 || plain.length !== STATE_FIXED + 32 * keys) {
    throw bad();
  }
  const state: TicketState = {
    psk: plain.slice(0, PSK_SIZE),
    authTime: Number(view.getBigUint64(PSK_SIZE)),
    expiresAt: Number(view.getBigUint64(PSK_SIZE + 8)),
    pattern,
  };
  let offset = STATE_FIXED;
  if ((flags & FLAG_SERVER_KEY) !== 0) {
    state.serverKey = plain.slice(offset, offset + 32);
    offset += 32;
  }
  if ((flags & FLAG_CLIENT_KEY) !== 0) state.clientKey = plain.slice(offset, offset + 32);
  return state;
}

// ---------------------------------------------------------------------------------------------
// The client's side

/** A ticket the client keeps, with the secret and the facts of the session it resumes. */
export interface StoredTicket {
  /** The ticket, as the server sent it. */
  ticket: Uint8Array;
  /** The resumption secret (the psk of the resumed handshake). */
  psk: Uint8Array;
  /** The digest of the client's trust settings when it got the ticket. */
  context: Uint8Array;
  /** The pattern of the full handshake. */
  pattern: PatternName;
  /** Whether the client had checked the server's key (pins, known servers). */
  pinned: boolean;
  /** The server's static public key, when that pattern had one. */
  serverKey?: Uint8Array;
  /** When the client stops offering the ticket (ms since the epoch, the client's clock). */
  expiresAt: number;
}

/** Options of {@linkcode SessionTicketStore}. */
export interface SessionTicketStoreOptions {
  /** The most servers (names) with a ticket; the oldest is dropped beyond it (default 256). */
  maxEntries?: number;
  /** The clock, in milliseconds since the epoch (default `Date.now`). */
  now?: () => number;
}

/**
 * The client's session tickets, in memory: at most one per server name (the newest), at most
 * `maxEntries` names, each ticket offered once and dropped whether or not the server accepts it.
 * A ticket is offered only by a client whose trust settings (pattern, pinned keys, static key,
 * psk, known-servers name) are those it had when it got the ticket. Dropped tickets have their
 * secret erased. `connect()` makes one per client when `security.resumption` is true; share one
 * between `connect()` calls to resume across clients.
 *
 * @example A store shared by the connections of an application
 * ```ts
 * import { SessionTicketStore } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const tickets = new SessionTicketStore({ maxEntries: 16 });
 * assert.equal(tickets.size, 0);
 * // connect({ address, security: { resumption: { store: tickets, name: address } } })
 * tickets.clear();
 * ```
 */
export class SessionTicketStore {
  readonly #entries = new Map<string, StoredTicket>();
  readonly #max: number;
  readonly #now: () => number;

  /**
   * Creates an empty store.
   *
   * @param options The bound and the clock.
   * @throws {RangeError} For a bound that is not a positive integer.
   */
  constructor(options: SessionTicketStoreOptions = {}) {
    this.#max = positiveIntegerOption("ticket store size", options.maxEntries, 256);
    this.#now = options.now ?? Date.now;
  }

  /** How many servers have a ticket. */
  get size(): number {
    return this.#entries.size;
  }

  /** The clock of this store (ms since the epoch). */
  now(): number {
    return this.#now();
  }

  /**
   * Keeps a ticket for `name`, replacing (and erasing) the one it had.
   *
   * @param name The server's name (its address).
   * @param entry The ticket; the store owns it from now on.
   */
  set(name: string, entry: StoredTicket): void {
    this.delete(name);
    while (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value as string;
      this.delete(oldest);
    }
    this.#entries.set(name, entry);
  }

  /**
   * Removes the ticket of `name` and returns it when it is still valid and was obtained with the
   * same trust settings (`context`, compared in constant time); otherwise erases it.
   *
   * @param name The server's name.
   * @param context The digest of the client's current trust settings.
   * @returns The ticket to offer (the caller erases its `psk`), or `undefined`.
   */
  take(name: string, context: Uint8Array): StoredTicket | undefined {
    const entry = this.#entries.get(name);
    if (entry === undefined) return undefined;
    this.#entries.delete(name);
    if (this.#now() < entry.expiresAt && constantTimeEqual(entry.context, context)) return entry;
    entry.psk.fill(0);
    return undefined;
  }

  /**
   * Whether `name` has a ticket that has not expired.
   *
   * @param name The server's name.
   * @returns Whether a ticket would be offered (when the trust settings also match).
   */
  has(name: string): boolean {
    const entry = this.#entries.get(name);
    return entry !== undefined && this.#now() < entry.expiresAt;
  }

  /**
   * Drops the ticket of `name`, erasing its secret.
   *
   * @param name The server's name.
   */
  delete(name: string): void {
    const entry = this.#entries.get(name);
    if (entry === undefined) return;
    entry.psk.fill(0);
    this.#entries.delete(name);
  }

  /** Drops every ticket, erasing their secrets. */
  clear(): void {
    for (const name of [...this.#entries.keys()]) this.delete(name);
  }
}

/**
 * Receives the session ticket the server sends after a handshake in which it announced one (the
 * client side of a {@linkcode HandshakeResult}). The connection passes the `ticket` message to
 * {@linkcode TicketReceiver.accept}; the receiver keeps the resumption secret until then, and
 * erases it once the ticket is stored or the connection closes.
 *
 * @example A receiver takes one ticket
 * ```ts
 * import { SessionTicketStore } from "@npro/network-protocol";
 * import { TicketReceiver } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const store = new SessionTicketStore();
 * const receiver = new TicketReceiver(store, "db:9000", {
 *   psk: new Uint8Array(32).fill(1),
 *   context: new Uint8Array(32),
 *   pattern: "NK",
 *   pinned: true,
 * });
 * assert.ok(receiver.accept({ lifetime: 60_000, ticket: new Uint8Array(100) }));
 * assert.ok(!receiver.accept({ lifetime: 60_000, ticket: new Uint8Array(100) }));
 * assert.equal(store.size, 1);
 * ```
 */
export class TicketReceiver {
  readonly #store: SessionTicketStore;
  readonly #name: string;
  #pending: Omit<StoredTicket, "ticket" | "expiresAt"> | undefined;

  /**
   * Holds the secret of a finished handshake until its ticket arrives.
   *
   * @param store Where the ticket goes.
   * @param name The server's name in the store.
   * @param pending The secret and the session's facts (the receiver owns `psk`).
   */
  constructor(
    store: SessionTicketStore,
    name: string,
    pending: Omit<StoredTicket, "ticket" | "expiresAt">,
  ) {
    this.#store = store;
    this.#name = name;
    this.#pending = pending;
  }

  /** Whether a ticket can still be accepted. */
  get waiting(): boolean {
    return this.#pending !== undefined;
  }

  /**
   * Stores the server's ticket (once).
   *
   * @param message The `ticket` message's fields.
   * @returns `false` when a ticket was already taken, the receiver was discarded, or the ticket
   * is malformed (empty, longer than 512 bytes, or a lifetime below 1 ms): the peer broke the
   * protocol.
   */
  accept(message: { lifetime: number; ticket: Uint8Array }): boolean {
    const pending = this.#pending;
    if (pending === undefined) return false;
    const { lifetime, ticket } = message;
    if (
      ticket.length < 1 || ticket.length > MAX_TICKET_SIZE || !Number.isSafeInteger(lifetime) ||
      lifetime < 1
    ) {
      this.discard();
      return false;
    }
    this.#pending = undefined;
    const expiresAt = this.#store.now() + Math.min(lifetime, MAX_TICKET_LIFETIME_MS);
    this.#store.set(this.#name, { ...pending, ticket: ticket.slice(), expiresAt });
    return true;
  }

  /** Erases the secret: no ticket is accepted afterwards. */
  discard(): void {
    this.#pending?.psk.fill(0);
    this.#pending = undefined;
  }
}

/** Where a client keeps its tickets, and the name of the server it connects to. */
export interface ClientResumption {
  /** The store. */
  store: SessionTicketStore;
  /** The server's name in the store (`connect()` uses `client.address` as written). */
  name: string;
}

/**
 * The digest of a client's trust settings: a ticket obtained with one set of settings is never
 * offered with another (other pins, another static key or psk, another known-servers name), so a
 * resumed session never claims an identity the current settings would not have accepted.
 *
 * @param provider The crypto provider (SHA-256).
 * @param settings The pattern, pins, static public key, psk and known-servers name.
 * @returns 32 bytes.
 */
export function resumptionContext(
  provider: CryptoProvider,
  settings: {
    pattern: PatternName;
    pins: readonly Uint8Array[];
    staticKey?: Uint8Array | undefined;
    psk?: Uint8Array | undefined;
    knownServers?: string | undefined;
  },
): Uint8Array {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [
    encoder.encode("npro/2 resumption context\0"),
    Uint8Array.of(
      PATTERN_IDS[settings.pattern],
      settings.pins.length >>> 8,
      settings.pins.length & 0xff,
    ),
    ...settings.pins,
    Uint8Array.of(settings.staticKey === undefined ? 0 : 1),
    settings.staticKey ?? new Uint8Array(0),
    Uint8Array.of(settings.psk === undefined ? 0 : 1),
    settings.psk === undefined ? new Uint8Array(0) : provider.sha256(settings.psk),
    encoder.encode(settings.knownServers ?? ""),
  ];
  return provider.sha256(...parts);
}
