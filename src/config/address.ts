/**
 * Address rules: what a listen or connect address, and a TLS server name, may look like, and
 * the rule that a Unix socket path is both ends' address.
 *
 * @module
 */

import type { TransportKind } from "../transport/types.ts";
import { quote } from "./text.ts";
import type { NetworkConfig } from "./types.ts";

const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * Checks a host: an IPv4 address, a bracketed IPv6 address or an RFC 1123 host name.
 *
 * @param host The host.
 * @returns The problem, or `undefined` when it is valid.
 */
export function checkHost(host: string): string | undefined {
  if (host.startsWith("[")) {
    if (!host.endsWith("]")) return "an IPv6 host must be written in brackets, as [::1]:9000";
    const inner = host.slice(1, -1);
    if (!/^[0-9A-Fa-f:.]+$/.test(inner) || !inner.includes(":")) {
      return `${quote(inner)} is not an IPv6 address`;
    }
    try {
      new URL(`http://[${inner}]/`);
    } catch {
      return `${quote(inner)} is not an IPv6 address`;
    }
    return undefined;
  }
  if (host.includes(":")) return "an IPv6 host must be written in brackets, as [::1]:9000";
  if (IPV4.test(host)) return undefined;
  if (host.length === 0) return "the host is empty";
  const labels = host.endsWith(".") ? host.slice(0, -1).split(".") : host.split(".");
  if (host.length > 253 || !labels.every((l) => LABEL.test(l))) {
    return `${quote(host)} is neither an IP address nor a valid host name`;
  }
  if (/^\d+$/.test(labels[labels.length - 1]!)) return `${quote(host)} is not a valid IPv4 address`;
  return undefined;
}

/**
 * Checks an address: `host:port`, or an absolute socket path of at most 107 bytes (the Linux
 * `sun_path` limit) for Unix sockets.
 *
 * @param address The address.
 * @param kind The transport.
 * @param allowPortZero Whether port 0 (pick a free port, for listening) is allowed.
 * @returns The problem, to follow the key's name, or `undefined` when it is valid.
 */
export function checkAddress(
  address: string,
  kind: TransportKind,
  allowPortZero: boolean,
): string | undefined {
  if (address.length === 0) return "must not be empty";
  if (kind === "unix") {
    if (!address.startsWith("/") && !/^[A-Za-z]:[\\/]/.test(address)) {
      return `must be an absolute socket path when transport.kind is "unix", found ${
        quote(address)
      }`;
    }
    if (new TextEncoder().encode(address).length > 107) {
      return `socket path ${quote(address)} is longer than 107 bytes`;
    }
    if (address.includes("\0")) return "must not contain a NUL character";
    return undefined;
  }
  const colon = address.lastIndexOf(":");
  if (colon < 0) return `must be host:port, found ${quote(address)}`;
  const host = address.slice(0, colon);
  const port = address.slice(colon + 1);
  const hostProblem = checkHost(host);
  if (hostProblem !== undefined) return `${hostProblem}, in ${quote(address)}`;
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
    return `port ${quote(port)} must be an integer from ${allowPortZero ? 0 : 1} to 65535`;
  }
  if (!allowPortZero && Number(port) === 0) return `port must be from 1 to 65535, found "0"`;
  return undefined;
}

/**
 * The rule "a Unix socket path is both ends' address": with `transport.kind = "unix"`, the side
 * whose address was not set takes the other side's, so the client connects where the server
 * listens (and `serve`/`connect` given only their own path validate). It changes `config` in
 * place.
 *
 * @param config A configuration whose layers are applied, before validation.
 * @param set Which addresses a source set (the others hold their TCP defaults).
 */
export function shareUnixAddress(
  config: NetworkConfig,
  set: { readonly server: boolean; readonly client: boolean },
): void {
  if (config.transport.kind !== "unix" || set.server === set.client) return;
  if (set.server) config.client.address = config.server.address;
  else config.server.address = config.client.address;
}

/**
 * Splits an entry of `cluster.peers`: `"id@host:port"` gives the id and the address; an entry
 * without an id before an `@` (`"host:port"`, a socket path) is an address alone.
 *
 * @example Both forms
 * ```ts
 * import { splitPeerEntry } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(splitPeerEntry("b@10.0.0.2:9000"), { id: "b", address: "10.0.0.2:9000" });
 * assert.deepEqual(splitPeerEntry("10.0.0.2:9000"), { address: "10.0.0.2:9000" });
 * ```
 *
 * @param entry The entry.
 * @returns The id, if any, and the address.
 */
export function splitPeerEntry(entry: string): { id?: string; address: string } {
  const at = entry.indexOf("@");
  if (at > 0) {
    const id = entry.slice(0, at);
    if (!id.includes("/") && !id.includes(":") && !id.includes("[")) {
      return { id, address: entry.slice(at + 1) };
    }
  }
  return { address: entry };
}
