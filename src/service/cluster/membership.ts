/**
 * The membership table's record of one peer, and its public snapshot.
 *
 * @module
 */

import type { PeerInfo, PeerSpec, PeerState } from "./types.ts";

/** What this node knows about one peer (mutable; {@linkcode snapshot} makes a `PeerInfo`). */
export interface Member {
  /** Its key: the configured id, else the address. */
  readonly key: string;
  /** How it was configured or resolved. */
  spec: PeerSpec;
  /** Its state. */
  state: PeerState;
  /** When the state changed (wall time). */
  since: number;
  /** The id it reports. */
  nodeId: string | undefined;
  /** Its boot id as hex. */
  bootId: string | undefined;
  /** Its incarnation. */
  incarnation: number;
  /** When it last answered (wall time). */
  lastSeen: number | undefined;
  /** Smoothed round trip of direct probes, ms. */
  rttMs: number | undefined;
  /** Its key's fingerprint, once known. */
  fingerprint: string | undefined;
  /** A probe of it is running. */
  probing: boolean;
  /** When it became suspect (clock time). */
  suspectAt: number;
  /** Its suspicion timeout, ms (fixed when it became suspect). */
  suspicionMs: number;
  /** Stall time added to its suspicion deadline. */
  credit: number;
  /** It turned out to be this node (found by DNS): never probed again. */
  self: boolean;
  /** The last identity refusal reported (one event per change, not one per probe). */
  refused: string | undefined;
}

/**
 * The key of a peer in the membership.
 *
 * @param spec The peer.
 * @returns Its id, else its address.
 */
export function memberKey(spec: PeerSpec): string {
  return spec.id ?? spec.address;
}

/**
 * A new member, `alive` until its probes say otherwise (SWIM starts members alive).
 *
 * @param spec The peer.
 * @param wallNow The wall time.
 * @param fingerprint The fingerprint of a pinned key.
 * @returns The record.
 */
export function newMember(spec: PeerSpec, wallNow: number, fingerprint?: string): Member {
  return {
    key: memberKey(spec),
    spec,
    state: "alive",
    since: wallNow,
    nodeId: undefined,
    bootId: undefined,
    incarnation: 0,
    lastSeen: undefined,
    rttMs: undefined,
    fingerprint,
    probing: false,
    suspectAt: 0,
    suspicionMs: 0,
    credit: 0,
    self: false,
    refused: undefined,
  };
}

/**
 * The public snapshot of a member.
 *
 * @param member The record.
 * @returns A frozen `PeerInfo`.
 */
export function snapshot(member: Member): PeerInfo {
  return Object.freeze({
    id: member.key,
    nodeId: member.nodeId,
    address: member.spec.address,
    state: member.state,
    since: member.since,
    lastSeen: member.lastSeen,
    rttMs: member.rttMs,
    incarnation: member.incarnation,
    bootId: member.bootId,
    fingerprint: member.fingerprint,
  });
}

/**
 * The suspicion timeout: `multiplier × max(1, log10(n)) × probeInterval` (memberlist's rule),
 * where `n` counts this node and its peers.
 *
 * @param multiplier The suspicion multiplier.
 * @param n The cluster size.
 * @param probeIntervalMs The probe interval.
 * @returns The timeout in ms.
 */
export function suspicionTimeout(multiplier: number, n: number, probeIntervalMs: number): number {
  return multiplier * Math.max(1, Math.log10(Math.max(1, n))) * probeIntervalMs;
}
