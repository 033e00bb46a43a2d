/**
 * `npro cluster status`: joins the cluster of the configuration's `[cluster]` section as an
 * observer for a few probe rounds, then prints a table of the peers (docs/CLI.md).
 *
 * @module
 */

import type { Command } from "commander";
import type { NetworkConfig } from "../config/mod.ts";
import { createCluster } from "../service/cluster/cluster.ts";
import type { PeerInfo } from "../service/cluster/types.ts";

/** Options of `npro cluster status`. */
export interface ClusterStatusArgs {
  /** The configuration file. */
  config?: string;
  /** The observer's listen address (default 127.0.0.1:0). */
  address?: string;
  /** Probe rounds to wait before printing. */
  rounds: number;
  /** Print JSON lines instead of a table. */
  json?: boolean;
}

/**
 * The peers as a table: one line per peer, columns aligned.
 *
 * @example Two peers
 * ```ts
 * import { formatPeerTable } from "./cluster.ts";
 * import assert from "node:assert/strict";
 *
 * const table = formatPeerTable([{
 *   id: "b",
 *   nodeId: "b",
 *   address: "10.0.0.2:9000",
 *   state: "alive",
 *   since: 0,
 *   lastSeen: 900,
 *   rttMs: 0.42,
 *   incarnation: 0,
 *   bootId: "8f1e5a3309c27d44",
 *   fingerprint: "GElEZiFR4XMj32tz8HVDzkmkR338-eD42lyemtM9Xco",
 * }], 1000);
 * assert.match(table, /^ID +NODE +ADDRESS +STATE +RTT +LAST SEEN +INC +BOOT +KEY$/m);
 * assert.match(table, /^b +b +10\.0\.0\.2:9000 +alive +0\.42 ms +0\.1 s ago +0 +8f1e5a3309c27d44 +GElEZiFR4XMj$/m);
 * ```
 *
 * @param peers The peers.
 * @param now The wall time (epoch ms) the ages are counted from.
 * @returns The table, without a final newline.
 */
export function formatPeerTable(peers: readonly PeerInfo[], now: number): string {
  const rows = [["ID", "NODE", "ADDRESS", "STATE", "RTT", "LAST SEEN", "INC", "BOOT", "KEY"]];
  for (const p of peers) {
    rows.push([
      p.id,
      p.nodeId ?? "-",
      p.address,
      p.state,
      p.rttMs === undefined ? "-" : `${p.rttMs < 10 ? p.rttMs.toFixed(2) : Math.round(p.rttMs)} ms`,
      p.lastSeen === undefined ? "never" : `${((now - p.lastSeen) / 1000).toFixed(1)} s ago`,
      String(p.incarnation),
      p.bootId ?? "-",
      p.fingerprint === undefined ? "-" : p.fingerprint.slice(0, 12),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd())
    .join("\n");
}

/**
 * Runs `npro cluster status`.
 *
 * @param args The options.
 * @param config The configuration.
 * @param out Writes a line to standard output.
 * @returns The exit code: 0 when every peer is alive, 1 otherwise (or when there is none).
 */
export async function clusterStatus(
  args: ClusterStatusArgs,
  config: NetworkConfig,
  out: (line: string) => void,
): Promise<number> {
  const id = `npro-status-${crypto.randomUUID().slice(0, 8)}`;
  await using cluster = await createCluster({
    config,
    self: { id, address: args.address ?? "127.0.0.1:0" },
  });
  const interval = config.cluster.probeInterval;
  // The rounds, and one probe timeout and the indirect probes' for the last answers.
  await new Promise((resolve) =>
    setTimeout(resolve, args.rounds * interval + 3 * config.cluster.probeTimeout)
  );
  const peers = cluster.peers();
  if (args.json === true) {
    for (const peer of peers) out(JSON.stringify(peer));
  } else {
    out(formatPeerTable(peers, Date.now()));
  }
  return peers.length > 0 && peers.every((p) => p.state === "alive") ? 0 : 1;
}

/**
 * Registers `npro cluster status` on the command tree.
 *
 * @param add Adds a sub-command with its help hint (main.ts's helper).
 * @param run Wraps an action so that its exit code is recorded (main.ts's helper).
 * @param load Loads the configuration (file and environment).
 * @param out Writes a line to standard output.
 * @param integer A parser of integers in a range.
 */
export function addClusterCommands(
  add: (name: string, description: string, parent?: Command) => Command,
  run: (name: string, fn: (args: ClusterStatusArgs) => Promise<number>) => (
    args: ClusterStatusArgs,
  ) => Promise<void>,
  load: (args: { config?: string | undefined }) => Promise<NetworkConfig>,
  out: (line: string) => void,
  integer: (min: number, max: number) => (value: string) => number,
): void {
  const cluster = add("cluster", "Cluster peer monitoring ([cluster] section)");
  add(
    "status",
    "Probe the peers of [cluster] (peers, dns_name) for a few rounds and print a table",
    cluster,
  )
    .option("--config <path>", "TOML configuration (also NETWORK_PROTOCOL_CLUSTER_<KEY>)")
    .option("--address <addr>", "where this observer listens (default 127.0.0.1:0)")
    .option("--rounds <n>", "probe rounds to wait before printing", integer(1, 100), 3)
    .option("--json", "print one JSON object per peer instead of the table")
    .action(
      run("cluster status", async (args) => await clusterStatus(args, await load(args), out)),
    );
}
