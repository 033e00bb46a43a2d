/**
 * The cluster's settings: the options of `createCluster` over the `[cluster]` section of the
 * configuration, checked.
 *
 * @module
 */

import type { NetworkConfig } from "../../config/mod.ts";
import { splitPeerEntry } from "../../config/address.ts";
import { parseHostPort } from "../../transport/address.ts";
import { dnsResolver, type ResolveDns } from "./resolver.ts";
import type { DetectorSettings } from "./detector.ts";
import type { PeerResolver, PeerSpec } from "./types.ts";

/** What `createCluster` may override of the `[cluster]` section. */
export interface ClusterSettingsInput {
  /** Static peers. */
  peers?: readonly PeerSpec[];
  /** A resolver of peers. */
  resolve?: PeerResolver;
  /** How often the resolver runs, ms. */
  resolveIntervalMs?: number;
  /** Time between probe rounds, ms. */
  probeIntervalMs?: number;
  /** A direct probe fails after this long, ms. */
  probeTimeoutMs?: number;
  /** Peers asked to probe a peer that did not answer. */
  indirectProbes?: number;
  /** The suspicion multiplier. */
  suspicionMultiplier?: number;
  /** The largest multiplier of timeouts while unhealthy. */
  maxLocalHealth?: number;
  /** `leave()`'s time limit, ms. */
  leaveTimeoutMs?: number;
}

/** The settings in force. */
export interface ClusterSettings extends DetectorSettings {
  /** This node's id, from the configuration (empty: not set). */
  nodeId: string;
  /** Static peers. */
  peers: readonly PeerSpec[];
  /** The resolver, if any. */
  resolve: PeerResolver | undefined;
  /** How often it runs, ms. */
  resolveIntervalMs: number;
  /** `leave()`'s time limit, ms. */
  leaveTimeoutMs: number;
}

function integer(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot use ${name} "${value}": it must be an integer from ${min} to ${max}`,
    );
  }
  return value;
}

/**
 * The settings: each option, else its key in `config.cluster`.
 *
 * @example Options win over the configuration
 * ```ts
 * import { clusterSettings } from "./options.ts";
 * import { defaultConfig } from "../../config/mod.ts";
 * import assert from "node:assert/strict";
 *
 * const settings = clusterSettings(defaultConfig(), { probeIntervalMs: 200, probeTimeoutMs: 100 });
 * assert.equal(settings.probeIntervalMs, 200);
 * assert.equal(settings.indirectProbes, 3);
 * ```
 *
 * @param config The configuration.
 * @param input The options of `createCluster`.
 * @param resolveDns The DNS lookup for `cluster.dns_name` (default `Deno.resolveDns`).
 * @returns The settings.
 * @throws {RangeError} For a value out of range, or a probe timeout not below the interval.
 */
export function clusterSettings(
  config: NetworkConfig,
  input: ClusterSettingsInput,
  resolveDns?: ResolveDns,
): ClusterSettings {
  const c = config.cluster;
  const probeIntervalMs = integer(
    "probeIntervalMs",
    input.probeIntervalMs ?? c.probeInterval,
    10,
    600_000,
  );
  const probeTimeoutMs = integer(
    "probeTimeoutMs",
    input.probeTimeoutMs ?? c.probeTimeout,
    5,
    600_000,
  );
  if (probeTimeoutMs >= probeIntervalMs) {
    throw new RangeError(
      `Cannot use probeTimeoutMs "${probeTimeoutMs}": it must be less than probeIntervalMs "${probeIntervalMs}"`,
    );
  }
  const peers = input.peers ?? c.peers.map((entry): PeerSpec => splitPeerEntry(entry));
  let resolve = input.resolve;
  if (resolve === undefined && c.dnsName !== "") {
    const port = c.dnsPort !== 0 ? c.dnsPort : portOf(config.server.address);
    resolve = dnsResolver({
      name: c.dnsName,
      recordType: c.dnsRecordType,
      ...(c.dnsRecordType === "SRV" ? {} : { port }),
      ...(resolveDns === undefined ? {} : { resolveDns }),
    });
  }
  return {
    nodeId: c.nodeId,
    peers,
    resolve,
    resolveIntervalMs: integer(
      "resolveIntervalMs",
      input.resolveIntervalMs ?? c.resolveInterval,
      10,
      86_400_000,
    ),
    probeIntervalMs,
    probeTimeoutMs,
    indirectProbes: integer("indirectProbes", input.indirectProbes ?? c.indirectProbes, 0, 16),
    suspicionMultiplier: integer(
      "suspicionMultiplier",
      input.suspicionMultiplier ?? c.suspicionMultiplier,
      1,
      100,
    ),
    maxLocalHealth: integer("maxLocalHealth", input.maxLocalHealth ?? c.maxLocalHealth, 1, 64),
    leaveTimeoutMs: integer("leaveTimeoutMs", input.leaveTimeoutMs ?? c.leaveTimeout, 1, 300_000),
  };
}

function portOf(address: string): number {
  try {
    return parseHostPort(address).port;
  } catch {
    throw new RangeError(
      `Cannot resolve cluster peers by DNS: cluster.dns_port is 0 and server.address "${address}" has no port`,
    );
  }
}
