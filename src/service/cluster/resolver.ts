/**
 * Membership from an existing discovery system: DNS A, AAAA or SRV records, as a Kubernetes
 * headless Service or Consul serves them (docs/CLUSTER.md, "Membership").
 *
 * @module
 */

import type { PeerResolver, PeerSpec } from "./types.ts";

/** The DNS lookup function (`Deno.resolveDns`'s shape, for the record types used here). */
export type ResolveDns = (
  query: string,
  recordType: "A" | "AAAA" | "SRV",
  options?: Deno.ResolveDnsOptions,
) => Promise<string[] | Deno.SrvRecord[]>;

/**
 * Options of {@linkcode dnsResolver}.
 *
 * @example A Kubernetes headless Service
 * ```ts
 * import type { DnsResolverOptions } from "@npro/network-protocol";
 *
 * const options: DnsResolverOptions = { name: "npro.default.svc.cluster.local", port: 9000 };
 * console.log(options.name);
 * ```
 */
export interface DnsResolverOptions {
  /** The name to look up (`npro.default.svc.cluster.local`, `_npro._tcp.npro.service.consul`). */
  name: string;
  /** `A` (default), `AAAA`, or `SRV` (each record gives its own port). */
  recordType?: "A" | "AAAA" | "SRV";
  /** The port of every peer, for A and AAAA records. */
  port?: number;
  /** A name server instead of the system's (Consul's DNS interface: `127.0.0.1:8600`). */
  nameServer?: { ipAddr: string; port?: number };
  /** The lookup (default `Deno.resolveDns`; needs `--allow-net` for the name server). */
  resolveDns?: ResolveDns;
}

/**
 * A resolver that looks a DNS name up at each call: one peer per record, known by its address
 * (peers found this way have no configured id; their answers give it).
 *
 * @example Peers from a record set
 * ```ts
 * import { dnsResolver } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const resolve = dnsResolver({
 *   name: "npro.test",
 *   port: 9000,
 *   resolveDns: () => Promise.resolve(["10.0.0.2", "10.0.0.1"]),
 * });
 * const peers = await resolve(AbortSignal.timeout(1000));
 * assert.deepEqual(peers, [{ address: "10.0.0.1:9000" }, { address: "10.0.0.2:9000" }]);
 * ```
 *
 * @param options The name, the record type, the port, the name server.
 * @returns The resolver.
 * @throws {TypeError} For an empty name, or a port missing for A or AAAA records.
 * @throws {RangeError} For a port outside 1..65535.
 */
export function dnsResolver(options: DnsResolverOptions): PeerResolver {
  const recordType = options.recordType ?? "A";
  if (typeof options.name !== "string" || options.name.length === 0) {
    throw new TypeError("Cannot resolve peers: the DNS name must be a non-empty string");
  }
  if (recordType !== "SRV") {
    if (options.port === undefined) {
      throw new TypeError(`Cannot resolve peers from ${recordType} records without a port`);
    }
    checkPort(options.port);
  }
  const lookup: ResolveDns = options.resolveDns ??
    ((query, type, opts) => Deno.resolveDns(query, type as "A", opts));
  return async (signal) => {
    const records = await lookup(options.name, recordType, {
      signal,
      ...(options.nameServer === undefined ? {} : { nameServer: options.nameServer }),
    });
    const addresses = new Set<string>();
    for (const record of records) {
      if (typeof record === "string") {
        const host = record.includes(":") ? `[${record}]` : record;
        addresses.add(`${host}:${options.port}`);
      } else {
        checkPort(record.port);
        const target = record.target.endsWith(".") ? record.target.slice(0, -1) : record.target;
        addresses.add(`${target}:${record.port}`);
      }
    }
    return [...addresses].sort().map((address): PeerSpec => ({ address }));
  };
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new RangeError(`Cannot use port "${port}": it must be an integer from 1 to 65535`);
  }
}
