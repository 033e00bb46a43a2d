/**
 * Shared pieces of the hostile-peer benchmark (`bench/hostile/`): argument parsing, the line
 * protocol between the orchestrator and its child processes, and small statistics.
 *
 * Every child process prints JSON lines on stdout and obeys lines on stdin; each one exits when
 * its stdin closes (the orchestrator is gone) or after `--max-seconds`, so that no process of
 * the benchmark outlives it.
 *
 * @module
 */

import { lines } from "../net/common.ts";

export { lines, parseArgs } from "../net/common.ts";

/**
 * Reads stdin lines in the background: `next()` waits for the next one. When stdin closes
 * (the orchestrator died or closed it) the process exits with `code`.
 */
export class StdinLines {
  readonly #queue: string[] = [];
  #waiter: ((line: string) => void) | undefined;

  constructor(onClose: () => void) {
    void (async () => {
      try {
        for await (const line of lines(Deno.stdin.readable)) {
          const waiter = this.#waiter;
          this.#waiter = undefined;
          if (waiter !== undefined) waiter(line);
          else this.#queue.push(line);
        }
      } catch {
        // Stdin broke: same as closed.
      }
      onClose();
    })();
  }

  /** The next line. */
  next(): Promise<string> {
    const line = this.#queue.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve) => (this.#waiter = resolve));
  }
}

/** Exits the process after `seconds` whatever it is doing (a safety net). */
export function exitAfter(seconds: number, what: string): void {
  const timer = setTimeout(() => {
    console.error(`${what}: ran for ${seconds} s, exiting`);
    Deno.exit(3);
  }, seconds * 1000);
  Deno.unrefTimer(timer);
}

/** Prints one JSON line on stdout. */
export function report(value: unknown): void {
  console.log(JSON.stringify(value));
}

/** The ready line of the server process. */
export interface ServerReady {
  /** Its port on 127.0.0.1. */
  port: number;
  /** Its static public key, hex. */
  publicKey: string;
  /** Its process id. */
  pid: number;
}

/** What the server process answers to `stats`. */
export interface ServerStats {
  /** Resident set size in bytes (after a garbage collection when `--expose-gc` is on). */
  rss: number;
  /** V8 heap used, bytes. */
  heapUsed: number;
  /** Memory outside the V8 heap (array buffers), bytes. */
  external: number;
  /** User + system CPU time of all its threads so far, milliseconds (before the collections). */
  cpuMs: number;
  /** The same after the collections. */
  cpuAfterGcMs: number;
  /** Open connections (handshake finished). */
  connections: number;
  /** Connections still in their handshake. */
  handshaking: number;
}

/** Latency figures of the honest clients in one phase. */
export interface PhaseStats {
  /** Requests answered. */
  count: number;
  /** Requests that failed or timed out. */
  failed: number;
  /** The phase's duration, seconds. */
  seconds: number;
  /** Answered requests per second (all clients). */
  perSecond: number;
  /** Latency percentiles and maximum, milliseconds (of requests started in the phase). */
  p50: number;
  p99: number;
  max: number;
  /** The longest time within the phase in which no client got an answer, milliseconds. */
  longestGap: number;
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The value at quantile `q` of sorted samples. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

/** The median of numbers (not modified). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
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
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
