/**
 * The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the header an L4 load
 * balancer writes at the start of a connection to tell the server who the client really is.
 * {@linkcode ProxyHeaderDecoder} parses it incrementally from the first bytes of a connection and
 * refuses anything malformed or truncated; {@linkcode TrustedProxies} says which peers may send
 * one (anyone else could claim any address).
 *
 * ```text
 * v1: "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF   (at most 107 bytes)
 *     "PROXY" SP "UNKNOWN" [anything] CRLF
 * v2: 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A   signature (12 bytes)
 *     ver_cmd:u8   0x20 LOCAL, 0x21 PROXY
 *     fam:u8       0x00 UNSPEC, 0x11 TCP4, 0x12 UDP4, 0x21 TCP6, 0x22 UDP6, 0x31/0x32 UNIX
 *     len:u16be    then `len` bytes: addresses (12, 36 or 216 bytes), then TLVs (skipped)
 * ```
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

/** The 12 bytes that open a version 2 header. */
export const PROXY_V2_SIGNATURE: Uint8Array = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);

/** The longest version 1 header, CRLF included (the specification's limit). */
export const PROXY_V1_MAX_LENGTH = 107;

/** The default limit of a version 2 header, its 16 fixed bytes included (addresses and TLVs). */
export const DEFAULT_PROXY_MAX_HEADER_BYTES = 1024;

const V1_PREFIX = new TextEncoder().encode("PROXY ");
const V2_FIXED = 16;
const ADDRESS_LENGTHS: Readonly<Record<number, number>> = { 1: 12, 2: 36, 3: 216 };

/** A PROXY protocol version this library reads. */
export type ProxyVersion = "v1" | "v2";

/** What a PROXY header says. */
export interface ProxyHeader {
  /** The header's version. */
  version: 1 | 2;
  /**
   * `"proxy"`: the connection is relayed for the client in {@linkcode ProxyHeader.source};
   * `"local"`: the proxy's own connection (a health check, a v2 LOCAL or a v1 `UNKNOWN`), so the
   * socket's own addresses apply.
   */
  command: "proxy" | "local";
  /** The client's address (with `"proxy"` and a known address family). */
  source?: Deno.NetAddr | Deno.UnixAddr;
  /** The address the client connected to, on the proxy. */
  destination?: Deno.NetAddr | Deno.UnixAddr;
  /** The header's length in bytes. */
  length: number;
}

/** Options of a {@linkcode ProxyHeaderDecoder}. */
export interface ProxyHeaderDecoderOptions {
  /** The versions accepted (default both). */
  versions?: readonly ProxyVersion[];
  /**
   * The longest version 2 header accepted, its 16 fixed bytes included (default 1,024: the
   * addresses and up to about 1 KiB of TLVs). Version 1 headers are at most 107 bytes.
   */
  maxHeaderBytes?: number;
}

/** The decoded header and the connection's bytes that followed it in the same chunks. */
export interface ProxyHeaderResult {
  /** The header. */
  header: ProxyHeader;
  /** The bytes after the header: the start of the connection's own stream. */
  rest: Uint8Array;
}

function invalid(message: string): ProtocolError {
  return new ProtocolError("InvalidHeader", message);
}

/**
 * Parses a PROXY header from the first bytes of a connection, chunk by chunk: it keeps at most
 * the header's bytes, returns `undefined` until the header is complete, and throws
 * `ProtocolError("InvalidHeader")` as soon as the bytes cannot start a valid header (a
 * connection without a header, a wrong signature, a bad address, a header over the limit). A
 * version 2 header is accepted only once all of its `len` bytes arrived.
 *
 * @example Parse a version 1 header followed by data
 * ```ts
 * import { ProxyHeaderDecoder } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const decoder = new ProxyHeaderDecoder();
 * const bytes = new TextEncoder().encode("PROXY TCP4 192.0.2.1 198.51.100.2 51000 9000\r\nhi");
 * assert.equal(decoder.push(bytes.subarray(0, 10)), undefined);
 * const result = decoder.push(bytes.subarray(10))!;
 * assert.deepEqual(result.header.source, { transport: "tcp", hostname: "192.0.2.1", port: 51000 });
 * assert.equal(new TextDecoder().decode(result.rest), "hi");
 * ```
 */
export class ProxyHeaderDecoder {
  readonly #v1: boolean;
  readonly #v2: boolean;
  readonly #maxV2: number;
  #buffer: Uint8Array = new Uint8Array(0);
  #done = false;

  /**
   * Creates a decoder.
   *
   * @param options The versions accepted and the version 2 limit.
   * @throws {RangeError} For no version, an unknown one, or a limit outside 16..65,551.
   */
  constructor(options: ProxyHeaderDecoderOptions = {}) {
    const versions = options.versions ?? ["v1", "v2"];
    if (versions.length === 0 || versions.some((v) => v !== "v1" && v !== "v2")) {
      throw new RangeError(
        `Cannot accept PROXY versions "${versions.join(", ")}": give "v1", "v2" or both`,
      );
    }
    this.#v1 = versions.includes("v1");
    this.#v2 = versions.includes("v2");
    const max = options.maxHeaderBytes ?? DEFAULT_PROXY_MAX_HEADER_BYTES;
    if (!Number.isInteger(max) || max < V2_FIXED + 12 || max > V2_FIXED + 0xffff) {
      throw new RangeError(
        `Cannot use PROXY header limit "${max}": it must be an integer from ${V2_FIXED + 12} to ${
          V2_FIXED + 0xffff
        }`,
      );
    }
    this.#maxV2 = max;
  }

  /** The bytes held for a header that is not complete yet. */
  get bufferedBytes(): number {
    return this.#buffer.length;
  }

  /**
   * Feeds the next bytes of the connection.
   *
   * @param chunk The bytes.
   * @returns The header and the bytes after it once complete, `undefined` before.
   * @throws {ProtocolError} `InvalidHeader` for bytes that cannot be (or start) an accepted
   * header; `UnexpectedMessage` after the header was returned.
   */
  push(chunk: Uint8Array): ProxyHeaderResult | undefined {
    if (this.#done) {
      throw new ProtocolError("UnexpectedMessage", "The PROXY header was already decoded");
    }
    const held = this.#buffer;
    let bytes: Uint8Array;
    if (held.length === 0) {
      bytes = chunk;
    } else {
      bytes = new Uint8Array(held.length + chunk.length);
      bytes.set(held);
      bytes.set(chunk, held.length);
    }
    const result = this.#parse(bytes);
    if (result === undefined) {
      // Keep a copy: the caller may reuse its read buffer. Never more than one header.
      this.#buffer = bytes === chunk ? chunk.slice() : bytes;
      return undefined;
    }
    this.#buffer = new Uint8Array(0);
    this.#done = true;
    return result;
  }

  /**
   * Declares the end of the connection's stream.
   *
   * @throws {ProtocolError} `Truncated` when the stream ended before a complete header.
   */
  finish(): void {
    if (!this.#done) {
      throw new ProtocolError(
        "Truncated",
        `Connection ended inside its PROXY header after "${this.#buffer.length}" bytes`,
      );
    }
  }

  #parse(bytes: Uint8Array): ProxyHeaderResult | undefined {
    const first = bytes[0];
    if (first === undefined) return undefined;
    if (first === V1_PREFIX[0] && this.#v1) return this.#parseV1(bytes);
    if (first === PROXY_V2_SIGNATURE[0] && this.#v2) return this.#parseV2(bytes);
    throw invalid(
      `Connection does not start with a PROXY ${
        this.#v1 && this.#v2 ? "v1 or v2" : this.#v1 ? "v1" : "v2"
      } header: got "${hex(bytes.subarray(0, 8))}"`,
    );
  }

  #parseV1(bytes: Uint8Array): ProxyHeaderResult | undefined {
    const prefix = Math.min(bytes.length, V1_PREFIX.length);
    for (let i = 0; i < prefix; i++) {
      if (bytes[i] !== V1_PREFIX[i]) {
        throw invalid(
          `PROXY v1 header does not start with "PROXY ": got "${hex(bytes.subarray(0, 8))}"`,
        );
      }
    }
    let end = -1;
    const limit = Math.min(bytes.length, PROXY_V1_MAX_LENGTH);
    for (let i = V1_PREFIX.length; i < limit; i++) {
      const byte = bytes[i]!;
      if (byte === 0x0d) {
        if (i + 1 === bytes.length) return undefined; // The LF is still to come.
        if (bytes[i + 1] !== 0x0a) throw invalid("PROXY v1 header has a CR not followed by LF");
        end = i + 2;
        break;
      }
      if (byte < 0x20 || byte > 0x7e) {
        throw invalid(`PROXY v1 header has a byte "${byte}" that is not printable ASCII`);
      }
    }
    if (end < 0 ? bytes.length >= PROXY_V1_MAX_LENGTH : end > PROXY_V1_MAX_LENGTH) {
      throw invalid(`PROXY v1 header is longer than "${PROXY_V1_MAX_LENGTH}" bytes`);
    }
    if (end < 0) return undefined;
    const line = new TextDecoder().decode(bytes.subarray(V1_PREFIX.length, end - 2));
    const header = parseV1Line(line, end);
    return { header, rest: bytes.subarray(end) };
  }

  #parseV2(bytes: Uint8Array): ProxyHeaderResult | undefined {
    const prefix = Math.min(bytes.length, PROXY_V2_SIGNATURE.length);
    for (let i = 0; i < prefix; i++) {
      if (bytes[i] !== PROXY_V2_SIGNATURE[i]) {
        throw invalid(`PROXY v2 signature is wrong: got "${hex(bytes.subarray(0, 12))}"`);
      }
    }
    if (bytes.length < V2_FIXED) return undefined;
    const verCmd = bytes[12]!;
    if (verCmd >> 4 !== 2) throw invalid(`PROXY v2 header has version "${verCmd >> 4}", not "2"`);
    const command = verCmd & 0x0f;
    if (command > 1) throw invalid(`PROXY v2 header has an unknown command "${command}"`);
    const family = bytes[13]! >> 4;
    const protocol = bytes[13]! & 0x0f;
    if (family > 3 || protocol > 2) {
      throw invalid(
        `PROXY v2 header has an unknown address family "0x${hex(bytes.subarray(13, 14))}"`,
      );
    }
    const length = (bytes[14]! << 8) | bytes[15]!;
    const total = V2_FIXED + length;
    if (total > this.#maxV2) {
      throw invalid(`PROXY v2 header of "${total}" bytes exceeds the limit "${this.#maxV2}"`);
    }
    const needed = ADDRESS_LENGTHS[family] ?? 0;
    if (command === 1 && length < needed) {
      throw invalid(
        `PROXY v2 header holds "${length}" bytes, fewer than the "${needed}" of its addresses`,
      );
    }
    if (bytes.length < total) return undefined;
    const header: ProxyHeader = { version: 2, command: "local", length: total };
    // LOCAL is the proxy's own connection (a health check), and UNSPEC an unknown client: the
    // socket's own addresses apply to both. A relayed datagram flow cannot arrive on a stream.
    if (command === 1 && family !== 0) {
      if (protocol !== 1) {
        throw invalid(`PROXY v2 header relays protocol "${protocol}", not a stream (1)`);
      }
      header.command = "proxy";
      const body = bytes.subarray(V2_FIXED, total);
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
      if (family === 1) {
        header.source = tcp(ipv4(body.subarray(0, 4)), view.getUint16(8));
        header.destination = tcp(ipv4(body.subarray(4, 8)), view.getUint16(10));
      } else if (family === 2) {
        header.source = tcp(ipv6(body.subarray(0, 16)), view.getUint16(32));
        header.destination = tcp(ipv6(body.subarray(16, 32)), view.getUint16(34));
      } else {
        header.source = unix(body.subarray(0, 108));
        header.destination = unix(body.subarray(108, 216));
      }
    }
    return { header, rest: bytes.subarray(total) };
  }
}

function tcp(hostname: string, port: number): Deno.NetAddr {
  return { transport: "tcp", hostname, port };
}

function unix(bytes: Uint8Array): Deno.UnixAddr {
  const end = bytes.indexOf(0);
  return {
    transport: "unix",
    path: new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end)),
  };
}

function ipv4(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

function ipv6(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return compressIpv6(groups);
}

/** RFC 5952 text of eight hexadecimal groups: the longest run of two or more zeros becomes "::". */
function compressIpv6(groups: string[]): string {
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLength).join(":")}`;
}

const V1_PORT = /^(0|[1-9][0-9]{0,4})$/;

function parseV1Line(line: string, length: number): ProxyHeader {
  const parts = line.split(" ");
  const family = parts[0];
  if (family === "UNKNOWN") return { version: 1, command: "local", length };
  if ((family !== "TCP4" && family !== "TCP6") || parts.length !== 5) {
    throw invalid(`PROXY v1 header "${line}" is not "TCP4|TCP6 src dst sport dport"`);
  }
  const [, src, dst, sport, dport] = parts as [string, string, string, string, string];
  const parse = family === "TCP4" ? parseIpv4 : parseIpv6;
  const source = parse(src);
  const destination = parse(dst);
  if (source === undefined || destination === undefined) {
    throw invalid(
      `PROXY v1 header "${line}" has an address that is not ${family === "TCP4" ? "IPv4" : "IPv6"}`,
    );
  }
  const ports = [sport, dport].map((p) => (V1_PORT.test(p) ? Number(p) : NaN));
  if (ports.some((p) => !(p >= 0 && p <= 65535))) {
    throw invalid(`PROXY v1 header "${line}" has a port that is not 0 to 65535`);
  }
  return {
    version: 1,
    command: "proxy",
    source: tcp(source, ports[0]!),
    destination: tcp(destination, ports[1]!),
    length,
  };
}

/** The canonical text of a dotted-quad IPv4 address, or `undefined`. */
function parseIpv4(text: string): string | undefined {
  const bytes = ipv4Bytes(text);
  return bytes === undefined ? undefined : ipv4(bytes);
}

function ipv4Bytes(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return undefined;
    out[i] = Number(part);
  }
  return out;
}

/** The canonical (RFC 5952) text of an IPv6 address, or `undefined`. */
function parseIpv6(text: string): string | undefined {
  const bytes = ipv6Bytes(text);
  return bytes === undefined ? undefined : ipv6(bytes);
}

function ipv6Bytes(text: string): Uint8Array | undefined {
  if (text.length === 0 || text.length > 45) return undefined;
  let head = text;
  let tail = "";
  const gap = text.indexOf("::");
  if (gap >= 0) {
    if (text.indexOf("::", gap + 1) >= 0) return undefined;
    head = text.slice(0, gap);
    tail = text.slice(gap + 2);
  }
  const words = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const groups = part.split(":");
    for (let i = 0; i < groups.length; i++) {
      const group = groups[i]!;
      if (i === groups.length - 1 && group.includes(".")) {
        const v4 = ipv4Bytes(group);
        if (v4 === undefined) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
        out.push(parseInt(group, 16));
      }
    }
    return out;
  };
  const first = words(head);
  const last = words(tail);
  if (first === undefined || last === undefined) return undefined;
  const missing = 8 - first.length - last.length;
  if (gap >= 0 ? missing < 1 : missing !== 0) return undefined;
  const all = [...first, ...new Array<number>(gap >= 0 ? missing : 0).fill(0), ...last];
  const out = new Uint8Array(16);
  all.forEach((word, i) => {
    out[2 * i] = word >> 8;
    out[2 * i + 1] = word & 0xff;
  });
  return out;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** One trusted range: the address bytes and the prefix length. */
interface Range {
  bytes: Uint8Array;
  bits: number;
}

/**
 * The peers allowed to send a PROXY header: a list of addresses and CIDR ranges (IPv4 and IPv6;
 * an IPv4-mapped IPv6 peer address such as `::ffff:10.0.0.1` matches the IPv4 ranges). Any other
 * peer could claim any client address, so its header must be refused.
 *
 * @example Trust a load balancer's subnet
 * ```ts
 * import { TrustedProxies } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const trusted = new TrustedProxies(["10.0.0.0/8", "::1"]);
 * assert.ok(trusted.has("10.1.2.3"));
 * assert.ok(trusted.has("::ffff:10.1.2.3"));
 * assert.ok(trusted.has("::1"));
 * assert.ok(!trusted.has("192.0.2.1"));
 * ```
 */
export class TrustedProxies {
  readonly #v4: Range[] = [];
  readonly #v6: Range[] = [];

  /**
   * Creates the list.
   *
   * @param ranges Addresses (`"10.0.0.1"`, `"::1"`) and CIDR ranges (`"10.0.0.0/8"`, `"fd00::/8"`).
   * @throws {TypeError} For an entry that is not an address or a range.
   */
  constructor(ranges: readonly string[]) {
    for (const entry of ranges) {
      const slash = entry.indexOf("/");
      const address = slash < 0 ? entry : entry.slice(0, slash);
      const v4 = ipv4Bytes(address);
      const bytes = v4 ?? ipv6Bytes(address);
      const width = v4 !== undefined ? 32 : 128;
      const bits = slash < 0 ? width : Number(entry.slice(slash + 1));
      if (
        bytes === undefined || !/^\d{1,3}$/.test(slash < 0 ? "0" : entry.slice(slash + 1)) ||
        !(bits >= 0 && bits <= width)
      ) {
        throw new TypeError(
          `Cannot trust PROXY source "${entry}": it is not an address or a CIDR range`,
        );
      }
      (v4 !== undefined ? this.#v4 : this.#v6).push({ bytes, bits });
    }
  }

  /** How many ranges the list holds. */
  get size(): number {
    return this.#v4.length + this.#v6.length;
  }

  /**
   * Whether a peer address is in the list.
   *
   * @param hostname The peer's IP address, as a socket reports it.
   * @returns `true` when a range contains it.
   */
  has(hostname: string): boolean {
    const v4 = ipv4Bytes(hostname);
    if (v4 !== undefined) return this.#v4.some((range) => contains(range, v4));
    const v6 = ipv6Bytes(hostname.startsWith("[") ? hostname.slice(1, -1) : hostname);
    if (v6 === undefined) return false;
    if (this.#v6.some((range) => contains(range, v6))) return true;
    // IPv4-mapped (::ffff:a.b.c.d): a dual-stack listener reports IPv4 peers this way.
    const mapped = v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
    return mapped && this.#v4.some((range) => contains(range, v6.subarray(12)));
  }
}

function contains(range: Range, address: Uint8Array): boolean {
  let bits = range.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((range.bytes[i]! & mask) !== (address[i]! & mask)) return false;
  }
  return true;
}

/** Options of {@linkcode readProxyHeader}. */
export interface ReadProxyHeaderOptions extends ProxyHeaderDecoderOptions {
  /** How long the peer has to send the whole header (default 3,000 ms). */
  timeoutMs?: number;
  /** Cancels the read (the connection is left open: close it). */
  signal?: AbortSignal;
}

/** The default time a peer has to send its PROXY header. */
export const DEFAULT_PROXY_HEADER_TIMEOUT_MS = 3000;

/**
 * Reads a PROXY header from the start of a connection, within a deadline. Reads at most the
 * header's bytes plus what the same reads brought after it (returned in `rest`, to be parsed as
 * the connection's own stream).
 *
 * @example Read the header a proxy sent
 * ```ts
 * import { readProxyHeader } from "@npro/network-protocol/transport";
 * import { memoryConnPair } from "@npro/network-protocol/testing";
 * import assert from "node:assert/strict";
 *
 * const [proxy, server] = memoryConnPair();
 * await proxy.write(new TextEncoder().encode("PROXY TCP6 2001:db8::1 2001:db8::2 4000 9000\r\n"));
 * const { header } = await readProxyHeader(server, { timeoutMs: 1000 });
 * assert.equal((header.source as Deno.NetAddr).hostname, "2001:db8::1");
 * proxy.close();
 * server.close();
 * ```
 *
 * @param conn The connection, before any other read.
 * @param options Versions, limit, deadline and signal.
 * @returns The header and the bytes that followed it.
 * @throws {ProtocolError} `InvalidHeader` for a malformed or missing header, `Truncated` when the
 * connection ends first, `Timeout` past the deadline, `Cancelled` when `signal` aborts,
 * `ConnectionClosed` when reading fails.
 */
export async function readProxyHeader(
  conn: Deno.Conn,
  options: ReadProxyHeaderOptions = {},
): Promise<ProxyHeaderResult> {
  const decoder = new ProxyHeaderDecoder(options);
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROXY_HEADER_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(`Cannot use PROXY header timeout "${timeoutMs}": it must be above 0`);
  }
  const buffer = new Uint8Array(512);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ProtocolError("Timeout", `No complete PROXY header within "${timeoutMs}" ms`),
        ),
      timeoutMs,
    );
    const signal = options.signal;
    if (signal !== undefined) {
      onAbort = () =>
        reject(
          new ProtocolError("Cancelled", "Reading the PROXY header was cancelled", {
            cause: signal.reason,
          }),
        );
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  try {
    for (;;) {
      let n: number | null;
      try {
        n = await Promise.race([conn.read(buffer), stop]);
      } catch (error) {
        if (error instanceof ProtocolError) throw error;
        throw new ProtocolError(
          "ConnectionClosed",
          "Connection failed while reading its PROXY header",
          {
            cause: error,
          },
        );
      }
      if (n === null) {
        decoder.finish();
        throw new ProtocolError("Truncated", "Connection ended before its PROXY header");
      }
      const result = decoder.push(buffer.subarray(0, n));
      if (result !== undefined) {
        // `rest` may be a view of the reused read buffer: hand out a copy.
        return { header: result.header, rest: result.rest.slice() };
      }
    }
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) options.signal?.removeEventListener("abort", onAbort);
    stop.catch(() => {});
  }
}
