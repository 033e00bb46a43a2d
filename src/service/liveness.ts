/**
 * The liveness of a connection: heartbeats (a Ping after an interval without input, dead after
 * three), the idle timeout (no message other than heartbeats in either direction), and write
 * stalls. One interval timer per tick length drives every connection that uses it. Subscribers
 * hear about round trips, idleness and failures: the connection acts on them, and future
 * features (cluster probes, metrics) can listen too.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";

const log = logger("connection");

/** What liveness reports. */
export type LivenessEvent =
  /** A Pong answered our heartbeat: the round-trip time in milliseconds. */
  | { type: "rtt"; ms: number }
  /** Nothing but heartbeats moved for the idle timeout. */
  | { type: "idle" }
  /** The peer missed its heartbeats, or a write made no progress: the connection is dead. */
  | { type: "dead"; error: ProtocolError };

/** What liveness needs to know about its connection and asks it to do. */
export interface LivenessHost {
  /** When the current write last made progress (performance.now()), or 0 when none runs. */
  readonly writeStartedAt: number;
  /** Whether work is pending (handlers, requests): a busy connection is not idle. */
  readonly busy: boolean;
  /** Whether the connection is closing (no new heartbeat is sent then). */
  readonly closing: boolean;
  /** Sends a heartbeat Ping. */
  sendPing(): void;
  /**
   * Called on every tick that found the connection alive, to expire what has a deadline.
   *
   * @param now The current time (performance.now()).
   */
  expire(now: number): void;
  /** Nothing but heartbeats moved for the idle timeout. */
  onIdle(): void;
  /**
   * The peer missed its heartbeats, or a write made no progress.
   *
   * @param error Which, as a `Timeout` error.
   */
  onDead(error: ProtocolError): void;
}

/** Options of {@linkcode Liveness}. */
export interface LivenessOptions {
  /** Send a Ping after this long without input; 3 missed means dead (0 disables). */
  heartbeatMs: number;
  /** Idle after this long without messages other than heartbeats (0 disables). */
  idleMs: number;
  /** Dead when a write makes no progress for this long (0 disables). */
  writeTimeoutMs: number;
}

/**
 * Watches one connection. Inputs are cheap flags and fields set on the hot path
 * ({@linkcode Liveness.received}, {@linkcode Liveness.markActive}); the clock is read once per
 * tick.
 *
 * @example Declare a silent peer dead
 * ```ts
 * import { Liveness, type LivenessEvent } from "./liveness.ts";
 * import assert from "node:assert/strict";
 *
 * const events: LivenessEvent["type"][] = [];
 * const host = {
 *   writeStartedAt: 0,
 *   busy: false,
 *   closing: false,
 *   sendPing() {},
 *   expire() {},
 *   onIdle() {},
 *   onDead() {},
 * };
 * const liveness = new Liveness(host, { heartbeatMs: 20, idleMs: 0, writeTimeoutMs: 0 });
 * liveness.subscribe((event) => events.push(event.type));
 * await new Promise((resolve) => setTimeout(resolve, 200));
 * liveness.stop();
 * assert.ok(events.includes("dead"));
 * ```
 */
export class Liveness {
  readonly #host: LivenessHost;
  readonly #heartbeatMs: number;
  readonly #idleMs: number;
  readonly #writeTimeoutMs: number;
  readonly #tickMs: number;
  /** Other subscribers than the host (made with the first). */
  #listeners: ((event: LivenessEvent) => void)[] | undefined;
  #lastReceived = performance.now();
  #lastActivity = performance.now();
  #lastTick = performance.now();
  /** An application message came or went since the last tick (cheaper than a clock read). */
  #active = false;
  #pingSentAt = 0;
  #missedPings = 0;
  #rtt: number | undefined;
  #stopped = false;
  /** The write whose progress is watched, and the blocked-loop time not held against it. */
  #watchedWrite = 0;
  #writeCredit = 0;

  /**
   * Starts watching (when any of the three times is set).
   *
   * @param host The connection.
   * @param options The heartbeat interval, the idle timeout and the write timeout.
   */
  constructor(host: LivenessHost, options: LivenessOptions) {
    this.#host = host;
    this.#heartbeatMs = options.heartbeatMs;
    this.#idleMs = options.idleMs;
    this.#writeTimeoutMs = options.writeTimeoutMs;
    const shortest = minPositive(this.#heartbeatMs, this.#idleMs, this.#writeTimeoutMs);
    // A quarter of the shortest time: a timeout fires at most a quarter late; at least 10 ms
    // and at most 1 s between ticks.
    this.#tickMs = shortest > 0 ? Math.max(10, Math.min(shortest / 4, 1000)) : 0;
    if (this.#tickMs > 0) Liveness.#join(this.#tickMs, this);
  }

  /** The last heartbeat round-trip time in milliseconds. */
  get rtt(): number | undefined {
    return this.#rtt;
  }

  /**
   * Listens to what liveness reports.
   *
   * @param listener Called with each event.
   */
  subscribe(listener: (event: LivenessEvent) => void): void {
    (this.#listeners ??= []).push(listener);
  }

  /** Something arrived from the peer: it is alive. */
  received(): void {
    this.#lastReceived = performance.now();
    this.#missedPings = 0;
  }

  /** An application message came or went (not a heartbeat). */
  markActive(): void {
    this.#active = true;
  }

  /** A Pong arrived: measures the round trip of our heartbeat, if one is out. */
  pong(): void {
    if (this.#pingSentAt === 0) return;
    const ms = performance.now() - this.#pingSentAt;
    this.#pingSentAt = 0;
    this.#rtt = ms;
    this.#emit({ type: "rtt", ms });
  }

  /** Stops the timer; no event follows. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#tickMs > 0) Liveness.#leave(this.#tickMs, this);
  }

  /**
   * One interval per tick length drives the watchdogs of every connection that uses it: a timer
   * per connection costs about 1.5 KiB each (measured with 10,000 idle connections), and a
   * daemon's connections share their settings, so they share one timer. The interval is cleared
   * when its last connection leaves. Members are the Liveness objects themselves (no closure
   * per connection).
   */
  static readonly #tickers = new Map<
    number,
    { timer: ReturnType<typeof setInterval>; members: Set<Liveness> }
  >();

  static #join(ms: number, member: Liveness): void {
    let ticker = Liveness.#tickers.get(ms);
    if (ticker === undefined) {
      const members = new Set<Liveness>();
      const timer = setInterval(() => {
        for (const member of members) {
          try {
            member.#onTick();
          } catch (error) {
            log.error("Connection watchdog failed: {error}", { error });
          }
        }
      }, ms);
      ticker = { timer, members };
      Liveness.#tickers.set(ms, ticker);
    }
    ticker.members.add(member);
  }

  static #leave(ms: number, member: Liveness): void {
    const ticker = Liveness.#tickers.get(ms);
    if (ticker === undefined) return;
    ticker.members.delete(member);
    if (ticker.members.size === 0) {
      clearInterval(ticker.timer);
      Liveness.#tickers.delete(ms);
    }
  }

  #emit(event: LivenessEvent): void {
    if (event.type === "idle") this.#host.onIdle();
    else if (event.type === "dead") this.#host.onDead(event.error);
    if (this.#listeners !== undefined) { for (const listener of this.#listeners) listener(event); }
  }

  #onTick(): void {
    if (this.#stopped) return;
    const now = performance.now();
    const late = now - this.#lastTick - this.#tickMs;
    this.#lastTick = now;
    const host = this.#host;
    const writeStartedAt = host.writeStartedAt;
    if (writeStartedAt !== this.#watchedWrite) {
      this.#watchedWrite = writeStartedAt;
      this.#writeCredit = 0;
    }
    if (late > this.#tickMs) {
      // The event loop was blocked (a CPU-bound burst): that time says nothing about the peer,
      // so it does not count towards any timeout.
      this.#lastReceived += late;
      this.#lastActivity += late;
      if (writeStartedAt > 0) this.#writeCredit += late;
      return;
    }
    if (this.#active) {
      // Messages mark activity with a flag; the clock is read here, once per tick. An idle
      // close therefore comes at most one tick (a quarter of the idle timeout) late.
      this.#active = false;
      this.#lastActivity = now;
    }
    if (
      this.#writeTimeoutMs > 0 && writeStartedAt > 0 &&
      now - writeStartedAt - this.#writeCredit > this.#writeTimeoutMs
    ) {
      this.#emit({
        type: "dead",
        error: new ProtocolError(
          "Timeout",
          `Write made no progress for ${this.#writeTimeoutMs} ms`,
        ),
      });
      return;
    }
    if (this.#idleMs > 0 && now - this.#lastActivity > this.#idleMs && !host.busy) {
      log.debug("Connection idle for {ms} ms: closing", { ms: this.#idleMs });
      this.#emit({ type: "idle" });
      return;
    }
    if (this.#heartbeatMs > 0 && now - this.#lastReceived >= this.#heartbeatMs) {
      const missed = Math.floor((now - this.#lastReceived) / this.#heartbeatMs);
      if (missed > 3) {
        this.#emit({
          type: "dead",
          error: new ProtocolError("Timeout", `Peer missed ${missed - 1} heartbeats`),
        });
        return;
      }
      if (missed > this.#missedPings && !host.closing) {
        this.#missedPings = missed;
        this.#pingSentAt = now;
        host.sendPing();
      }
    }
    host.expire(now);
  }
}

function minPositive(...values: number[]): number {
  let min = 0;
  for (const v of values) if (v > 0 && (min === 0 || v < min)) min = v;
  return min;
}
