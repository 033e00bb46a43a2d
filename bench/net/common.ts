/**
 * Shared pieces of the network benchmark (`bench/net/`): the subjects, the raw framing of the
 * baselines, and the line protocol between the orchestrator and its child processes.
 *
 * Raw framing: a 4-byte big-endian length, then the payload. The top bit of the length marks an
 * "ack only" frame, which the raw server answers with an empty frame instead of a copy (used for
 * the one-way bulk test, where the library server answers each message with a tiny ack too).
 *
 * @module
 */

/** How a server process is built. */
export type ServerKind =
  | "raw-tcp"
  | "raw-unix"
  | "raw-tls"
  | "raw-node-tls"
  | "lib-plain-tcp"
  | "lib-noise-tcp"
  | "lib-noise-unix"
  | "lib-tls"
  | "lib-node-tls"
  | "lib-node-mtls"
  | "peer-libp2p-noise";

/** The version of `@chainsafe/libp2p-noise` that deno.json maps (the report names it). */
export const LIBP2P_NOISE_VERSION = "17.0.0";

/** What a client process measures. */
export type Measure =
  | "rtt"
  | "stream64"
  | "stream1k"
  | "request64"
  | "bulk64k"
  | "bulk1m"
  | "stream64k"
  | "hol"
  | "pool64"
  | "pool64x1"
  | "handshakes"
  | "handshakes-resumed"
  | "idle";

/** One figure a client process reports. */
export interface Figure {
  /** The measure. */
  measure: Measure;
  /** The main value. */
  value: number;
  /** Its unit. */
  unit: string;
  /** A second value (the p99 of a latency). */
  p99?: number;
  /** `hol`: the idle PING round trip (median and p99, µs) measured before the load. */
  idle?: number;
  /** `hol`: the idle p99. */
  idleP99?: number;
  /** `hol`: MiB/s of the 8 MiB replies completed during the loaded PINGs. */
  replies?: number;
  /** How many operations the value is based on. */
  count: number;
  /** Operations over the whole run, warm-up included (handshakes). */
  total?: number;
  /** Operations per second of the server process's CPU time (handshakes). */
  perCpuSecond?: number;
}

/** The ready line a server prints on stdout. */
export interface ReadyLine {
  /** The address clients connect to (`host:port` or a socket path). */
  address: string;
  /**
   * The server's static public key, hex (Noise servers); for the js-libp2p-noise peer, its
   * identity key (libp2p protobuf encoding), which the client pins.
   */
  publicKey?: string;
  /** The process id. */
  pid: number;
}

/** Whether a server kind is the js-libp2p-noise peer (`libp2p_peer.ts`). */
export function isPeer(kind: ServerKind): boolean {
  return kind.startsWith("peer-");
}

/** Whether a server kind is one of the raw baselines. */
export function isRaw(kind: ServerKind): boolean {
  return kind.startsWith("raw-");
}

/** The transport of a server kind. */
export function transportOf(kind: ServerKind): "tcp" | "unix" | "tls" {
  if (kind.endsWith("unix")) return "unix";
  if (kind.endsWith("tls")) return "tls";
  return "tcp";
}

/** The top bit of a raw frame's length: answer with an empty frame. */
export const ACK_ONLY = 0x80000000;

/** The largest raw frame (bulk messages are 1 MiB). */
export const MAX_RAW_FRAME = 16 * 1024 * 1024;

/** Parses `--name value` and `--flag` arguments. */
export function parseArgs(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("--")) throw new TypeError(`Cannot parse argument "${arg}"`);
    const next = args[i + 1];
    if (next !== undefined && !next.startsWith("--")) {
      out.set(arg.slice(2), next);
      i++;
    } else {
      out.set(arg.slice(2), "true");
    }
  }
  return out;
}

/** Reads lines from a byte stream. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true });
    let index: number;
    while ((index = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, index);
      rest = rest.slice(index + 1);
    }
  }
  if (rest.length > 0) yield rest;
}

/** Writes all of `data` (a `conn.write` may write part of it). */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    offset += await conn.write(offset === 0 ? data : data.subarray(offset));
  }
}

/** Median and 99th percentile of samples (sorted in place). */
export function percentiles(samples: number[]): { median: number; p99: number } {
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(samples.length * q))]!;
  return { median: at(0.5), p99: at(0.99) };
}

/** The median of numbers (not modified). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bytes of hex. */
export function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}
