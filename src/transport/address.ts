/**
 * Addresses as text: parsing `host:port` (IPv6 in brackets) and formatting a host and port or a
 * `Deno.Addr` back, for every transport, the daemon's logs, the CLI and error messages.
 *
 * @module
 */

/** A host and a port, as parsed by {@linkcode parseHostPort}. */
export interface HostPort {
  /** A host name or an IP address literal, IPv6 without brackets. */
  hostname: string;
  /** The port, 0 to 65535. */
  port: number;
}

/**
 * Parses `"host:port"`, `"127.0.0.1:9000"` or `"[::1]:9000"`.
 *
 * @example Parse IPv4 and IPv6 addresses
 * ```ts
 * import { parseHostPort } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseHostPort("127.0.0.1:9000"), { hostname: "127.0.0.1", port: 9000 });
 * assert.deepEqual(parseHostPort("[::1]:0"), { hostname: "::1", port: 0 });
 * ```
 *
 * @param address The address to parse.
 * @returns The host name (IPv6 literals without brackets) and the port.
 * @throws {TypeError} When the address is not a string of that form.
 * @throws {RangeError} When the port is above 65535.
 */
export function parseHostPort(address: string): HostPort {
  if (typeof address !== "string") {
    throw new TypeError(`Address must be a string, got "${typeof address}"`);
  }
  let hostname: string;
  let portText: string;
  if (address.startsWith("[")) {
    const end = address.indexOf("]");
    if (end < 0 || address[end + 1] !== ":") {
      throw new TypeError(`Address "${address}" is not of the form "[ipv6]:port"`);
    }
    hostname = address.slice(1, end);
    portText = address.slice(end + 2);
  } else {
    const colon = address.lastIndexOf(":");
    if (colon < 0) throw new TypeError(`Address "${address}" has no port`);
    hostname = address.slice(0, colon);
    portText = address.slice(colon + 1);
    if (hostname.includes(":")) {
      throw new TypeError(`IPv6 address "${address}" must be written as "[host]:port"`);
    }
  }
  if (hostname.length === 0 || /[\s/\[\]]/.test(hostname)) {
    throw new TypeError(`Address "${address}" has no valid host`);
  }
  if (!/^\d{1,5}$/.test(portText)) {
    throw new TypeError(`Address "${address}" has no valid port`);
  }
  const port = Number(portText);
  if (port > 65535) {
    throw new RangeError(`Port "${port}" of address "${address}" exceeds "65535"`);
  }
  return { hostname, port };
}

/** Parses a connect address: like {@linkcode parseHostPort}, but port 0 is refused. */
export function parseConnectAddress(address: string): HostPort {
  const parsed = parseHostPort(address);
  if (parsed.port === 0) throw new RangeError(`Cannot connect to port "0" of "${address}"`);
  return parsed;
}

/**
 * Formats a host and port back into an address, the inverse of {@linkcode parseHostPort}: IPv6
 * literals go in brackets.
 *
 * @example Format IPv4 and IPv6 addresses
 * ```ts
 * import { formatHostPort } from "./address.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatHostPort("127.0.0.1", 9000), "127.0.0.1:9000");
 * assert.equal(formatHostPort("::1", 9000), "[::1]:9000");
 * ```
 *
 * @param hostname A host name or an IP address literal (IPv6 without brackets).
 * @param port The port.
 * @returns `host:port`, or `[host]:port` for IPv6.
 */
export function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/**
 * Formats any `Deno.Addr` for logs, the CLI and error messages: `host:port` (IPv6 in brackets),
 * a Unix socket's path, or `vsock:cid:port`.
 *
 * @example Format a listener's address
 * ```ts
 * import { formatAddr } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatAddr({ transport: "tcp", hostname: "::1", port: 9000 }), "[::1]:9000");
 * assert.equal(formatAddr({ transport: "unix", path: "/run/npro.sock" }), "/run/npro.sock");
 * ```
 *
 * @param addr The address.
 * @returns The address as text.
 */
export function formatAddr(addr: Deno.Addr): string {
  if ("path" in addr) return addr.path ?? "(unnamed socket)";
  if (!("hostname" in addr)) return `vsock:${addr.cid}:${addr.port}`;
  return formatHostPort(addr.hostname, addr.port);
}
