/**
 * Handshake admission: token buckets that bound how many new handshakes the daemon starts per
 * second, for the whole server and per source address, so that a flood of handshake
 * initiations (replayed first messages included) cannot take the CPU that established sessions
 * need. Past the per-address rate a connection is refused (closed before a single byte of it is
 * read); past the server-wide rate it waits for its turn, within its handshake time limit and
 * the `max_handshakes` bound.
 *
 * @module
 */

import { positiveIntegerOption } from "../util/options.ts";

/** Options of {@linkcode HandshakeAdmission}. */
export interface HandshakeAdmissionOptions {
  /** Handshakes per second for the whole server; a burst of one second's worth. 0 disables. */
  rate: number;
  /**
   * Handshakes per second from one source address (IPv6 addresses grouped by their /64
   * prefix), with bursts of {@linkcode ADDRESS_BURST_SECONDS} seconds' worth (a service that
   * opens its whole pool at start-up). 0 disables. Unix sockets have no address to group by:
   * only the global rate applies to them.
   */
  ratePerAddress: number;
  /**
   * The most source addresses tracked at once (default 65536). When full, addresses whose
   * bucket has refilled are forgotten first, then the oldest.
   */
  maxAddresses?: number;
}

/** A source address may burst this many seconds' worth of its rate. */
export const ADDRESS_BURST_SECONDS = 10;

/**
 * `"ok"`; `"server rate"` when the server-wide bucket is empty (wait: {@linkcode
 * HandshakeAdmission.waitMs} says how long); `"address rate"` when the address's bucket is
 * empty (refuse).
 */
export type AdmissionVerdict = "ok" | "server rate" | "address rate";

interface Bucket {
  tokens: number;
  last: number;
}

/**
 * Decides whether a new connection may start its handshake.
 *
 * @example Admit at most two handshakes per second from one address
 * ```ts
 * import { HandshakeAdmission } from "./admission.ts";
 * import assert from "node:assert/strict";
 *
 * const admission = new HandshakeAdmission({ rate: 0, ratePerAddress: 2 });
 * const peer: Deno.NetAddr = { transport: "tcp", hostname: "192.0.2.7", port: 5000 };
 * for (let i = 0; i < 20; i++) assert.equal(admission.admit(peer, 0), "ok"); // 10 s of burst
 * assert.equal(admission.admit(peer, 0), "address rate");
 * assert.equal(admission.admit(peer, 500), "ok"); // half a second refills one token
 * ```
 */
export class HandshakeAdmission {
  readonly #rate: number;
  readonly #perAddress: number;
  readonly #maxAddresses: number;
  readonly #global: Bucket = { tokens: 0, last: -Infinity };
  readonly #addresses = new Map<string, Bucket>();
  #lastSweep = -Infinity;

  /**
   * Creates the buckets, full.
   *
   * @param options The rates.
   * @throws {RangeError} For a negative or non-finite rate.
   */
  constructor(options: HandshakeAdmissionOptions) {
    this.#rate = rateOf("rate", options.rate);
    this.#perAddress = rateOf("ratePerAddress", options.ratePerAddress);
    this.#maxAddresses = positiveIntegerOption("maxAddresses", options.maxAddresses, 65_536);
  }

  /** The number of source addresses tracked now. */
  get trackedAddresses(): number {
    return this.#addresses.size;
  }

  /**
   * Takes a token for a new handshake from `addr`, when both buckets have one.
   *
   * @param addr The peer's address.
   * @param now The current time in milliseconds (default `performance.now()`).
   * @returns `"ok"`, or which limit refused it.
   */
  admit(addr: Deno.Addr, now: number = performance.now()): AdmissionVerdict {
    const key = this.#perAddress > 0 ? addressKey(addr) : undefined;
    let bucket: Bucket | undefined;
    if (key !== undefined) {
      const burst = this.#perAddress * ADDRESS_BURST_SECONDS;
      bucket = this.#addresses.get(key);
      if (bucket === undefined) {
        bucket = { tokens: burst, last: now };
        this.#remember(key, bucket, now);
      }
      refill(bucket, this.#perAddress, burst, now);
      if (bucket.tokens < 1) return "address rate";
    }
    if (this.#rate > 0) {
      refill(this.#global, this.#rate, this.#rate, now);
      if (this.#global.tokens < 1) return "server rate";
      this.#global.tokens -= 1;
    }
    if (bucket !== undefined) bucket.tokens -= 1;
    return "ok";
  }

  /**
   * Takes a server-wide token for a connection that the address check already admitted (one
   * that waited after `"server rate"`).
   *
   * @param now The current time in milliseconds (default `performance.now()`).
   * @returns Whether a token was taken.
   */
  take(now: number = performance.now()): boolean {
    if (this.#rate === 0) return true;
    refill(this.#global, this.#rate, this.#rate, now);
    if (this.#global.tokens < 1) return false;
    this.#global.tokens -= 1;
    return true;
  }

  /**
   * How long until the server-wide bucket holds a token again.
   *
   * @param now The current time in milliseconds (default `performance.now()`).
   * @returns Milliseconds (0 when a token is there).
   */
  waitMs(now: number = performance.now()): number {
    if (this.#rate === 0) return 0;
    refill(this.#global, this.#rate, this.#rate, now);
    return this.#global.tokens >= 1 ? 0 : ((1 - this.#global.tokens) * 1000) / this.#rate;
  }

  #remember(key: string, bucket: Bucket, now: number): void {
    const addresses = this.#addresses;
    if (addresses.size >= this.#maxAddresses) {
      // A refilled bucket holds nothing worth keeping: forget those first (at most one sweep
      // per second, so a full table costs O(1) per new address in between).
      if (now - this.#lastSweep >= 1000) {
        this.#lastSweep = now;
        const rate = this.#perAddress;
        const burst = rate * ADDRESS_BURST_SECONDS;
        for (const [k, b] of addresses) {
          if (b.tokens + ((now - b.last) * rate) / 1000 >= burst) addresses.delete(k);
        }
      }
      if (addresses.size >= this.#maxAddresses) {
        addresses.delete(addresses.keys().next().value!);
      }
    }
    addresses.set(key, bucket);
  }
}

function refill(bucket: Bucket, rate: number, capacity: number, now: number): void {
  if (bucket.last === -Infinity) {
    bucket.tokens = capacity;
  } else if (now > bucket.last) {
    bucket.tokens = Math.min(capacity, bucket.tokens + ((now - bucket.last) * rate) / 1000);
  }
  bucket.last = now;
}

function rateOf(name: string, value: number): number {
  if (!(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(`Cannot use ${name} "${value}": it must be zero or a positive number`);
  }
  return value;
}

/**
 * The key a source address is counted under: an IPv4 address as is, an IPv6 address by its
 * /64 prefix (one host usually owns a whole /64, so rotating addresses within it gains
 * nothing), IPv4-mapped IPv6 as IPv4. Unix and vsock peers have none.
 *
 * @param addr The peer's address.
 * @returns The key, or `undefined` when the address has no host part.
 */
export function addressKey(addr: Deno.Addr): string | undefined {
  if (addr.transport !== "tcp" && addr.transport !== "udp") return undefined;
  const host = addr.hostname;
  if (!host.includes(":")) return host;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped !== null) return mapped[1]!;
  const [head = "", tail = ""] = host.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = host.includes("::") ? (tail === "" ? [] : tail.split(":")) : [];
  const groups = [
    ...left,
    ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"),
    ...right,
  ];
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, "")).join(":") + "::/64";
}
