/**
 * {@linkcode configWarnings}: settings that are allowed but weaken security or look like a
 * mistake.
 *
 * @module
 */

import type { NetworkConfig } from "./types.ts";

/**
 * Returns things that are allowed but weaken security or are probably a mistake (plaintext,
 * unpinned servers, compression before encryption, an idle timeout shorter than the heartbeat).
 * The CLI logs them at startup.
 *
 * @example Plaintext is a warning, not an error
 * ```ts
 * import { configWarnings, createConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = createConfig({ transport: { encryptionEnabled: false } });
 * assert.ok(configWarnings(config).some((w) => w.includes("encryption_enabled")));
 * ```
 *
 * @param config A configuration (valid or not).
 * @returns The warnings, one sentence each.
 */
export function configWarnings(config: NetworkConfig): string[] {
  const warnings: string[] = [];
  const { server: s, transport: t, security: sec, compression: z } = config;
  if (t.encryptionEnabled === false && t.kind !== "tls") {
    warnings.push(
      `transport.encryption_enabled is false: traffic over ${t.kind} is neither encrypted nor authenticated`,
    );
  }
  if (t.encryptionEnabled !== false || t.kind === "tls") {
    if (sec.pattern === "NN") {
      warnings.push(
        `security.pattern "NN" authenticates neither side: anyone on the path can impersonate the peer`,
      );
    } else if (
      (sec.pattern === "XX" || sec.pattern === "XXpsk3") && sec.serverKeys.length === 0 &&
      sec.knownServersPath === ""
    ) {
      warnings.push(
        "security.server_keys is empty and security.known_servers_path is not set: " +
          "a client with this configuration does not authenticate the server",
      );
    }
    if (sec.allowUnauthenticated === true && sec.pattern !== "NN") {
      warnings.push(
        'security.allow_unauthenticated is true: a server with this configuration accepts clients that use the unauthenticated "NN" pattern',
      );
    }
  }
  if (z.enabled === true) {
    warnings.push(
      "compression.enabled is true: compressing secrets together with attacker-controlled data " +
        "can leak them through message sizes (CRIME); enable it only for payloads where that is safe",
    );
  }
  if (s.idleTimeout !== 0 && s.idleTimeout <= s.heartbeatInterval) {
    warnings.push(
      `server.idle_timeout "${s.idleTimeout}" is not greater than server.heartbeat_interval ` +
        `"${s.heartbeatInterval}": idle connections close before the first heartbeat`,
    );
  }
  return warnings;
}
