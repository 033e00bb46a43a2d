/**
 * The public types of cluster peer monitoring: peers, their states and the events of their
 * changes (docs/CLUSTER.md).
 *
 * @module
 */

/**
 * The state of a peer as this node sees it.
 *
 * - `alive`: it answered its last probe (directly or through another peer), or was just added;
 * - `suspect`: a probe and the indirect probes through other peers failed; it is still probed and
 *   becomes `alive` again when it answers with a higher incarnation (it refutes);
 * - `dead`: it stayed suspect for the suspicion timeout;
 * - `left`: it said it was leaving (a graceful `leave()`), or the resolver dropped it.
 */
export type PeerState = "alive" | "suspect" | "dead" | "left";

/**
 * A peer to monitor: the original's `(id, address)` pair, with an optional pinned key.
 *
 * @example A peer with a pinned key
 * ```ts
 * import type { PeerSpec } from "@npro/network-protocol";
 *
 * const peer: PeerSpec = { id: "node-b", address: "10.0.0.2:9000" };
 * console.log(peer.id);
 * ```
 */
export interface PeerSpec {
  /**
   * The node id the peer reports in its answers; a peer reporting another id is refused. Without
   * it (peers found by DNS), the peer is known by its address and any id is accepted.
   */
  id?: string;
  /** Where it listens (`host:port`, `[ipv6]:port` or a socket path). */
  address: string;
  /**
   * Its Noise static public key (32 bytes). Without it, the first key seen is recorded and
   * every later connection must present the same one.
   */
  publicKey?: Uint8Array;
}

/**
 * A snapshot of one peer, from `Cluster.peers()`.
 *
 * @example Alive peers, nearest first
 * ```ts
 * import type { PeerInfo } from "@npro/network-protocol";
 *
 * function nearest(peers: PeerInfo[]): PeerInfo[] {
 *   return peers.filter((p) => p.state === "alive")
 *     .sort((a, b) => (a.rttMs ?? Infinity) - (b.rttMs ?? Infinity));
 * }
 * console.log(nearest([]));
 * ```
 */
export interface PeerInfo {
  /** The peer's key in the membership: its configured id, else its address. */
  readonly id: string;
  /** The id the peer reports about itself (after its first answer). */
  readonly nodeId: string | undefined;
  /** Its address. */
  readonly address: string;
  /** Its state. */
  readonly state: PeerState;
  /** When the state last changed (epoch ms). */
  readonly since: number;
  /** When it last answered a probe (epoch ms). */
  readonly lastSeen: number | undefined;
  /** The smoothed round-trip time of its direct probes, in ms. */
  readonly rttMs: number | undefined;
  /** Its incarnation number in its current boot (raised to refute a suspicion). */
  readonly incarnation: number;
  /** The random id of its current process start, 16 hex digits. */
  readonly bootId: string | undefined;
  /** The fingerprint of its Noise static key, once seen or when pinned. */
  readonly fingerprint: string | undefined;
}

/**
 * An event of `Cluster.events()`: one per change, never one per probe.
 *
 * @example Log deaths
 * ```ts
 * import type { ClusterEvent } from "@npro/network-protocol";
 *
 * function describe(event: ClusterEvent): string {
 *   return event.type === "dead" ? `${event.peer.id} is dead` : event.type;
 * }
 * console.log(describe({ type: "closed" }));
 * ```
 */
export type ClusterEvent =
  /** A peer was added (configuration or resolver). */
  | { readonly type: "join"; readonly peer: PeerInfo }
  /** A probe and the indirect probes failed. */
  | { readonly type: "suspect"; readonly peer: PeerInfo }
  /** A suspect, dead or left peer answered (it refuted, or restarted). */
  | { readonly type: "alive"; readonly peer: PeerInfo; readonly from: PeerState }
  /** A suspect peer did not refute within the suspicion timeout. */
  | { readonly type: "dead"; readonly peer: PeerInfo }
  /** The peer left gracefully (`"leave"`), or the resolver dropped it (`"removed"`). */
  | { readonly type: "left"; readonly peer: PeerInfo; readonly reason: "leave" | "removed" }
  /** The peer restarted (a new boot id: a new incarnation) or moved to another address. */
  | { readonly type: "updated"; readonly peer: PeerInfo; readonly reason: "restarted" | "address" }
  /**
   * A node at a peer's address proved to be someone else (another Noise static key, or another
   * node id): nothing was sent to it, and the peer is treated as unreachable.
   */
  | {
    readonly type: "refused";
    readonly peer: PeerInfo;
    readonly reason: "key-mismatch" | "wrong-id";
    readonly detail: string;
  }
  /**
   * This node's own health changed: its event loop stalled (no verdicts until
   * `quietUntil`), or its health score (the multiplier of its timeouts, minus 1) changed.
   */
  | {
    readonly type: "local-health";
    readonly score: number;
    readonly stalledMs: number;
  }
  /** The cluster closed; the last event. */
  | { readonly type: "closed" };

/**
 * Finds the peers: called at start and every `resolveIntervalMs`. A failure keeps the last
 * list.
 */
export type PeerResolver = (signal: AbortSignal) => Promise<readonly PeerSpec[]>;
