/**
 * The SWIM failure detector with Lifeguard's local health (docs/CLUSTER.md, "Algorithm"):
 * direct probes on a schedule, indirect probes through k other peers, suspicion with
 * refutation by incarnation, and no verdict while this node's own event loop is unhealthy. It
 * is sans-I/O: a {@linkcode ProbeTransport} carries the messages and a {@linkcode Clock} gives
 * the time, so the same code runs over Noise connections and in the virtual-time simulation.
 *
 * @module
 */

import { PeerIdentityError } from "./errors.ts";
import type { Clock } from "./clock.ts";
import { LocalHealth } from "./local_health.ts";
import { type Member, memberKey, newMember, snapshot, suspicionTimeout } from "./membership.ts";
import type { ClusterEvent, PeerInfo, PeerSpec, PeerState } from "./types.ts";
import { type AckMessage, bootIdHex, type ClusterMessage, type ProbeMessage } from "./wire.ts";

/** What a transport returns for a message sent to a peer. */
export interface ProbeReply {
  /** The peer's answer. */
  reply: ClusterMessage;
  /** The fingerprint of the peer's Noise static key, when the transport knows it. */
  fingerprint?: string;
}

/** Carries cluster messages to peers (Noise connections, or a simulated network). */
export interface ProbeTransport {
  /**
   * Sends a message to a peer and returns its answer.
   *
   * @param key The peer's membership key.
   * @param spec Its address and pinned key.
   * @param message The message.
   * @param options The time limit and a signal.
   * @returns The answer.
   * @throws {PeerIdentityError} The node at the address is someone else.
   */
  send(
    key: string,
    spec: PeerSpec,
    message: ClusterMessage,
    options: { timeoutMs: number; signal: AbortSignal },
  ): Promise<ProbeReply>;
  /**
   * Releases what the transport holds for a peer.
   *
   * @param key The peer's membership key.
   * @param removed It left the membership (else it moved to another address, or is this node).
   */
  forget(key: string, removed: boolean): void;
}

/** Settings of the detector (docs/CLUSTER.md, "Parameters"). */
export interface DetectorSettings {
  /** Time between probe rounds, ms (memberlist LAN: 1000). */
  probeIntervalMs: number;
  /** A direct probe fails after this long, ms (memberlist LAN: 500). */
  probeTimeoutMs: number;
  /** Peers asked to probe a peer that did not answer (memberlist: 3). */
  indirectProbes: number;
  /** The suspicion timeout is this × max(1, log10 n) × the probe interval (memberlist: 4). */
  suspicionMultiplier: number;
  /** The largest multiplier of probe intervals and timeouts while this node is unhealthy (8). */
  maxLocalHealth: number;
}

/** Options of {@linkcode Detector}. */
export interface DetectorOptions extends DetectorSettings {
  /** This node's id. */
  id: string;
  /** This node's boot id (8 random bytes). */
  bootId: Uint8Array;
  /** The clock. */
  clock: Clock;
  /** The messages' carrier. */
  transport: ProbeTransport;
  /** Random numbers in [0, 1) (seeded in the simulation). */
  random?: () => number;
  /**
   * Called with every event.
   *
   * @param event The event.
   */
  onEvent: (event: ClusterEvent) => void;
  /**
   * Called after each probe (for metrics).
   *
   * @param kind Direct or indirect.
   * @param outcome What came of it.
   */
  onProbe?: (kind: "direct" | "indirect", outcome: ProbeOutcome, rttMs?: number) => void;
  /**
   * Called at every identity refusal (the `refused` event comes once per change).
   *
   * @param reason Which check failed.
   */
  onRefusal?: (reason: "key-mismatch" | "wrong-id") => void;
  /**
   * Lifeguard's local health (default `true`): `false` turns it off, for the simulation's
   * comparison only (stalls then count against peers).
   */
  lifeguard?: boolean;
}

/** What came of a probe. */
export type ProbeOutcome = "ack" | "failed" | "inconclusive";

const RTT_WEIGHT = 0.25;

/** The most peers a node monitors: each probes all of them every round. */
export const MAX_PEERS = 1024;

/**
 * The failure detector of one node: its membership table, its probe schedule and its verdicts.
 *
 * @example Two detectors over a direct in-memory transport
 * ```ts
 * import { Detector, type ProbeTransport } from "./detector.ts";
 * import { systemClock } from "./clock.ts";
 * import assert from "node:assert/strict";
 *
 * const nodes = new Map<string, Detector>();
 * const transport: ProbeTransport = {
 *   send: async (key, _spec, message, { signal }) => ({
 *     reply: await nodes.get(key)!.handle(message, signal),
 *   }),
 *   forget() {},
 * };
 * const settings = {
 *   probeIntervalMs: 20,
 *   probeTimeoutMs: 10,
 *   indirectProbes: 1,
 *   suspicionMultiplier: 2,
 *   maxLocalHealth: 8,
 * };
 * for (const id of ["a", "b"]) {
 *   nodes.set(id, new Detector({
 *     ...settings,
 *     id,
 *     bootId: crypto.getRandomValues(new Uint8Array(8)),
 *     clock: systemClock,
 *     transport,
 *     onEvent() {},
 *   }));
 * }
 * nodes.get("a")!.setPeers([{ id: "b", address: "b" }]);
 * nodes.get("a")!.start();
 * await new Promise((resolve) => setTimeout(resolve, 100));
 * assert.notEqual(nodes.get("a")!.peers()[0]!.lastSeen, undefined);
 * nodes.get("a")!.stop();
 * ```
 */
export class Detector {
  readonly #id: string;
  readonly #bootId: Uint8Array;
  readonly #bootHex: string;
  readonly #clock: Clock;
  readonly #transport: ProbeTransport;
  readonly #settings: DetectorSettings;
  readonly #random: () => number;
  readonly #onEvent: (event: ClusterEvent) => void;
  readonly #onProbe: DetectorOptions["onProbe"];
  readonly #onRefusal: DetectorOptions["onRefusal"];
  readonly #members = new Map<string, Member>();
  readonly #health: LocalHealth;
  readonly #abort = new AbortController();
  #incarnation = 0;
  #leaving = false;
  #running = false;
  #timer: number | undefined;
  #expected = 0;
  #sweepTimer: number | undefined;
  #sweepAt = Infinity;
  readonly #tasks = new Set<Promise<void>>();

  /**
   * A detector (idle until {@linkcode Detector.start}).
   *
   * @param options Identity, settings, clock, transport and listeners.
   */
  constructor(options: DetectorOptions) {
    this.#id = options.id;
    this.#bootId = options.bootId;
    this.#bootHex = bootIdHex(options.bootId);
    this.#clock = options.clock;
    this.#transport = options.transport;
    this.#settings = {
      probeIntervalMs: options.probeIntervalMs,
      probeTimeoutMs: options.probeTimeoutMs,
      indirectProbes: options.indirectProbes,
      suspicionMultiplier: options.suspicionMultiplier,
      maxLocalHealth: options.maxLocalHealth,
    };
    this.#random = options.random ?? Math.random;
    this.#onEvent = options.onEvent;
    this.#onProbe = options.onProbe;
    this.#onRefusal = options.onRefusal;
    const tickMs = Math.max(10, Math.min(options.probeIntervalMs / 4, 250));
    this.#health = new LocalHealth({
      clock: this.#clock,
      tickMs,
      // A timer later than the probe timeout: a probe could have timed out for our own sake.
      stallMs: options.lifeguard === false ? Infinity : options.probeTimeoutMs,
      quietMs: options.probeIntervalMs + options.probeTimeoutMs,
      maxMultiplier: options.lifeguard === false ? 1 : options.maxLocalHealth,
      onChange: (score, stalledMs) => this.#onEvent({ type: "local-health", score, stalledMs }),
    });
    this.#health.onStall((ms) => {
      // The time lost says nothing about the suspects: their deadlines move by it.
      for (const member of this.#members.values()) {
        if (member.state === "suspect") member.credit += ms;
      }
    });
  }

  /** This node's incarnation. */
  get incarnation(): number {
    return this.#incarnation;
  }

  /** This node's local health. */
  get health(): LocalHealth {
    return this.#health;
  }

  /** This node is leaving: its answers say so. */
  get leaving(): boolean {
    return this.#leaving;
  }

  /**
   * Replaces the membership with `specs`: new peers join, missing ones leave (`"removed"`), a
   * known peer at a new address is `updated`.
   *
   * @param specs The peers (this node's own entry, if any, is skipped).
   */
  setPeers(specs: readonly PeerSpec[]): void {
    if (specs.length > MAX_PEERS) {
      throw new RangeError(
        `Cannot monitor "${specs.length}" peers: at most ${MAX_PEERS} (every node probes every peer)`,
      );
    }
    const seen = new Set<string>();
    for (const spec of specs) {
      const key = memberKey(spec);
      if (key === this.#id || seen.has(key)) continue;
      seen.add(key);
      const member = this.#members.get(key);
      if (member === undefined) {
        const created = newMember(spec, this.#clock.wallNow());
        this.#members.set(key, created);
        this.#onEvent({ type: "join", peer: snapshot(created) });
      } else if (member.spec.address !== spec.address) {
        member.spec = spec;
        this.#transport.forget(key, false);
        if (!member.self) {
          this.#onEvent({ type: "updated", peer: snapshot(member), reason: "address" });
        }
      } else {
        member.spec = spec;
      }
    }
    for (const [key, member] of this.#members) {
      if (seen.has(key)) continue;
      this.#members.delete(key);
      this.#transport.forget(key, true);
      if (member.self) continue;
      member.state = "left";
      member.since = this.#clock.wallNow();
      this.#onEvent({ type: "left", peer: snapshot(member), reason: "removed" });
    }
  }

  /**
   * The peers, as snapshots.
   *
   * @returns One `PeerInfo` per peer, in membership order.
   */
  peers(): PeerInfo[] {
    const out: PeerInfo[] = [];
    for (const member of this.#members.values()) if (!member.self) out.push(snapshot(member));
    return out;
  }

  /**
   * One peer's snapshot.
   *
   * @param key Its membership key.
   */
  get(key: string): PeerInfo | undefined {
    const member = this.#members.get(key);
    return member === undefined || member.self ? undefined : snapshot(member);
  }

  /** Starts probing (a round now, then one per probe interval). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#health.start();
    this.#schedule(0);
  }

  /** Stops probing and aborts the probes in flight; waits for them to settle. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#sweepTimer !== undefined) this.#clock.clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    this.#health.stop();
    this.#abort.abort(new DOMException("The cluster is closing", "AbortError"));
    await Promise.allSettled([...this.#tasks]);
  }

  /**
   * Announces a graceful leave to every peer that is not dead or left, within `timeoutMs`; from
   * now on this node's answers say it is leaving.
   *
   * @param timeoutMs The time limit of the announcements.
   * @param abort Cuts the announcements short.
   */
  async leave(timeoutMs: number, abort?: AbortSignal): Promise<void> {
    this.#leaving = true;
    const notice: ClusterMessage = {
      kind: "leave",
      from: this.#id,
      bootId: this.#bootId,
      incarnation: this.#incarnation,
    };
    const signal = abort === undefined ? this.#abort.signal : AbortSignal.any([
      this.#abort.signal,
      abort,
    ]);
    await Promise.allSettled(
      [...this.#members.values()]
        .filter((m) => !m.self && (m.state === "alive" || m.state === "suspect"))
        .map((m) => this.#transport.send(m.key, m.spec, notice, { timeoutMs, signal })),
    );
  }

  /**
   * Answers a cluster message from a peer.
   *
   * @param message The message.
   * @param signal Aborted when the answer is no longer wanted.
   * @param sender Tells whether the sender is the member with a given key (by the Noise static
   * key it authenticated with); without it, every sender is trusted (the simulation). A `leave`
   * counts only from the member itself, a `ping-req` only from a member.
   * @returns The answer.
   */
  async handle(
    message: ClusterMessage,
    signal: AbortSignal,
    sender?: (key: string) => boolean,
  ): Promise<ClusterMessage> {
    switch (message.kind) {
      case "ping":
        if (message.suspect && message.targetIncarnation >= this.#incarnation) {
          // Refute: a higher incarnation than the one suspected.
          this.#incarnation = Math.min(message.targetIncarnation + 1, 0xffff_ffff);
        }
        return this.#ack();
      case "ping-req": {
        const member = this.#members.get(message.target);
        if (
          member === undefined || member.self || !this.#running ||
          (sender !== undefined && !this.#fromMember(sender))
        ) {
          return { kind: "nack", target: message.target };
        }
        const ping: ProbeMessage = { ...message, kind: "ping" };
        const result = await this.#direct(member, ping, signal, false);
        if (result.kind === "ack") return result.reply;
        return { kind: "nack", target: message.target };
      }
      case "leave": {
        for (const member of this.#members.values()) {
          if (
            (member.nodeId ?? member.key) === message.from &&
            member.bootId === bootIdHex(message.bootId) && member.state !== "left" &&
            (sender === undefined || sender(member.key))
          ) {
            this.#transition(member, "left", { reason: "leave" });
          }
        }
        return this.#ack();
      }
      default:
        throw new TypeError(`Cannot answer a cluster "${message.kind}": it is an answer`);
    }
  }

  /** Whether the sender is one of the members (by the key it authenticated with). */
  #fromMember(sender: (key: string) => boolean): boolean {
    for (const member of this.#members.values()) if (sender(member.key)) return true;
    return false;
  }

  #ack(): AckMessage {
    return {
      kind: "ack",
      from: this.#id,
      bootId: this.#bootId,
      incarnation: this.#incarnation,
      leaving: this.#leaving,
    };
  }

  #schedule(ms: number): void {
    if (!this.#running) return;
    this.#expected = this.#clock.now() + ms;
    this.#timer = this.#clock.setTimeout(this.#round, ms);
  }

  readonly #round = (): void => {
    this.#timer = undefined;
    if (!this.#running) return;
    this.#health.check(this.#expected);
    this.#sweep();
    for (const member of this.#members.values()) {
      if (member.probing || member.self) continue;
      this.#track(this.#probe(member));
    }
    this.#schedule(this.#settings.probeIntervalMs * this.#health.multiplier);
  };

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    void task.finally(() => this.#tasks.delete(task));
  }

  /**
   * Suspects whose suspicion timeout passed become dead, unless this node is unhealthy; a timer
   * is armed for the next deadline (or the end of the quiet time).
   */
  #sweep(): void {
    const now = this.#clock.now();
    let next = Infinity;
    const quiet = this.#health.quiet();
    for (const member of this.#members.values()) {
      if (member.state !== "suspect" || member.self) continue;
      const due = member.suspectAt + member.credit + member.suspicionMs;
      if (now >= due && !quiet) this.#transition(member, "dead");
      else next = Math.min(next, Math.max(due, now + this.#settings.probeTimeoutMs));
    }
    this.#armSweep(next);
  }

  #armSweep(at: number): void {
    if (
      !this.#running || at === Infinity || (this.#sweepTimer !== undefined && at >= this.#sweepAt)
    ) {
      return;
    }
    if (this.#sweepTimer !== undefined) this.#clock.clearTimeout(this.#sweepTimer);
    this.#sweepAt = at;
    this.#sweepTimer = this.#clock.setTimeout(() => {
      this.#sweepTimer = undefined;
      this.#sweepAt = Infinity;
      this.#health.check(at);
      this.#sweep();
    }, Math.max(0, at - this.#clock.now()));
  }

  #pingFor(member: Member): ProbeMessage {
    return {
      kind: "ping",
      from: this.#id,
      bootId: this.#bootId,
      incarnation: this.#incarnation,
      target: member.key,
      targetIncarnation: member.incarnation,
      suspect: member.state !== "alive",
    };
  }

  async #probe(member: Member): Promise<void> {
    member.probing = true;
    try {
      const started = this.#clock.now();
      const ping = this.#pingFor(member);
      const direct = await this.#direct(member, ping, this.#abort.signal, true);
      if (!this.#running) return;
      if (direct.kind === "ack") {
        this.#health.probeSucceeded();
        this.#onProbe?.("direct", "ack", direct.rttMs);
        this.#acked(member, direct.reply, direct.rttMs, direct.fingerprint);
        return;
      }
      if (direct.kind === "identity") {
        if (member.self) return;
        this.#onProbe?.("direct", "failed");
        this.#failed(member, started);
        return;
      }
      if (direct.kind === "stalled") {
        this.#onProbe?.("direct", "inconclusive");
        return;
      }
      this.#onProbe?.("direct", "failed");
      // A dead or left peer is probed for its return only: no verdict hangs on it.
      if (member.state === "dead" || member.state === "left") return;
      const indirect = await this.#indirect(member, { ...ping, kind: "ping-req" });
      if (!this.#running) return;
      if (indirect !== undefined) {
        this.#onProbe?.("indirect", "ack");
        this.#acked(member, indirect, undefined, undefined);
        return;
      }
      this.#failed(member, started);
    } finally {
      member.probing = false;
    }
  }

  #failed(member: Member, started: number): void {
    if (this.#health.stalledSince(started) || this.#health.quiet()) {
      this.#onProbe?.("indirect", "inconclusive");
      return;
    }
    if (this.#members.get(member.key) !== member) return;
    if (member.state === "alive") this.#transition(member, "suspect");
  }

  /** One direct message with this node's own timer (its lateness is a stall, not a failure). */
  async #direct(
    member: Member,
    ping: ProbeMessage,
    signal: AbortSignal,
    own: boolean,
  ): Promise<
    | { kind: "ack"; reply: AckMessage; rttMs: number; fingerprint: string | undefined }
    | { kind: "failed" | "stalled" | "identity" }
  > {
    const timeoutMs = this.#settings.probeTimeoutMs * this.#health.multiplier;
    const started = this.#clock.now();
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    let timer: number | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = this.#clock.setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      const sent = this.#transport.send(member.key, member.spec, ping, {
        timeoutMs: timeoutMs * 2,
        signal: controller.signal,
      });
      const result = await Promise.race([sent, timedOut]);
      if (result === "timeout") {
        sent.catch(() => {});
        this.#health.check(started + timeoutMs);
        return { kind: this.#health.stalledSince(started) ? "stalled" : "failed" };
      }
      const reply = result.reply;
      if (reply.kind !== "ack") return { kind: "failed" };
      if (own && !this.#identityOk(member, reply)) return { kind: "identity" };
      if (result.fingerprint !== undefined) member.fingerprint = result.fingerprint;
      return {
        kind: "ack",
        reply,
        rttMs: this.#clock.now() - started,
        fingerprint: result.fingerprint,
      };
    } catch (error) {
      if (error instanceof PeerIdentityError) {
        this.#refused(member, error.reason, error.message);
        return { kind: "identity" };
      }
      this.#health.check(started + timeoutMs);
      return { kind: this.#health.stalledSince(started) ? "stalled" : "failed" };
    } finally {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      controller.abort();
    }
  }

  #identityOk(member: Member, ack: AckMessage): boolean {
    if (bootIdHex(ack.bootId) === this.#bootHex) {
      // Our own address came back from the resolver: never probe ourselves again. Its join was
      // announced; a left (removed) keeps the subscribers' views right.
      member.self = true;
      this.#transport.forget(member.key, false);
      member.state = "left";
      member.since = this.#clock.wallNow();
      this.#onEvent({ type: "left", peer: snapshot(member), reason: "removed" });
      return false;
    }
    if (member.spec.id !== undefined && ack.from !== member.spec.id) {
      this.#refused(
        member,
        "wrong-id",
        `Node at "${member.spec.address}" says it is "${ack.from}", not "${member.spec.id}"`,
      );
      return false;
    }
    return true;
  }

  #refused(member: Member, reason: "key-mismatch" | "wrong-id", detail: string): void {
    this.#onRefusal?.(reason);
    // One event (and log line) per change; the metric counts every refusal.
    if (member.refused === detail) return;
    member.refused = detail;
    this.#onEvent({ type: "refused", peer: snapshot(member), reason, detail });
  }

  /** Indirect probes through k alive peers: the first ack wins. */
  async #indirect(member: Member, request: ProbeMessage): Promise<AckMessage | undefined> {
    const candidates = [...this.#members.values()].filter((m) =>
      m !== member && !m.self && m.state === "alive" && m.lastSeen !== undefined
    );
    const k = Math.min(this.#settings.indirectProbes, candidates.length);
    if (k === 0) return undefined;
    // A partial Fisher-Yates shuffle picks k of them.
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(this.#random() * (candidates.length - i));
      [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!];
    }
    const timeoutMs = 2 * this.#settings.probeTimeoutMs * this.#health.multiplier;
    const started = this.#clock.now();
    const controller = new AbortController();
    const signal = this.#abort.signal;
    const onAbort = (): void => controller.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    let timer: number | undefined;
    let missed = 0;
    try {
      return await new Promise<AckMessage | undefined>((resolve) => {
        let pending = k;
        const done = (): void => {
          if (--pending === 0) resolve(undefined);
        };
        timer = this.#clock.setTimeout(() => {
          this.#health.check(started + timeoutMs);
          missed = pending;
          resolve(undefined);
        }, timeoutMs);
        for (let i = 0; i < k; i++) {
          const via = candidates[i]!;
          this.#transport.send(via.key, via.spec, request, {
            timeoutMs,
            signal: controller.signal,
          }).then(({ reply }) => {
            if (
              reply.kind === "ack" && bootIdHex(reply.bootId) !== this.#bootHex &&
              (member.spec.id === undefined || reply.from === member.spec.id)
            ) {
              resolve(reply);
            }
            done();
          }, () => {
            missed++;
            done();
          });
        }
      });
    } finally {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      controller.abort();
      // Lifeguard: an intermediary that did not even answer (no nack) hints at our own health.
      if (missed > 0 && !this.#health.stalledSince(started)) this.#health.missedNack();
    }
  }

  #acked(
    member: Member,
    ack: AckMessage,
    rttMs: number | undefined,
    fingerprint: string | undefined,
  ): void {
    if (this.#members.get(member.key) !== member || member.self) return;
    const boot = bootIdHex(ack.bootId);
    // The first answer after a silence came over a new connection: its time includes the
    // connection's set-up (TCP and the Noise handshake), so it is not a round-trip sample.
    const warm = member.lastSeen !== undefined && member.state === "alive";
    member.lastSeen = this.#clock.wallNow();
    if (rttMs !== undefined && warm) {
      member.rttMs = member.rttMs === undefined
        ? rttMs
        : member.rttMs + RTT_WEIGHT * (rttMs - member.rttMs);
    }
    if (fingerprint !== undefined) member.fingerprint = fingerprint;
    member.nodeId = ack.from;
    member.refused = undefined;
    if (member.bootId !== undefined && member.bootId !== boot) {
      // A new process at this identity: a new incarnation, whatever its number.
      member.bootId = boot;
      member.incarnation = ack.incarnation;
      this.#onEvent({ type: "updated", peer: snapshot(member), reason: "restarted" });
      if (ack.leaving) {
        if (member.state !== "left") this.#transition(member, "left", { reason: "leave" });
      } else if (member.state !== "alive") this.#transition(member, "alive");
      return;
    }
    const first = member.bootId === undefined;
    member.bootId = boot;
    if (ack.leaving) {
      member.incarnation = Math.max(member.incarnation, ack.incarnation);
      if (member.state !== "left") this.#transition(member, "left", { reason: "leave" });
      return;
    }
    if (member.state === "alive" || first) {
      member.incarnation = Math.max(member.incarnation, ack.incarnation);
      if (member.state !== "alive") this.#transition(member, "alive");
      return;
    }
    if (member.state === "left" || ack.incarnation > member.incarnation) {
      // It refuted the suspicion (or came back after a leave) with a higher incarnation.
      member.incarnation = ack.incarnation;
      this.#transition(member, "alive");
    }
  }

  #transition(
    member: Member,
    to: PeerState,
    extra: { reason?: "leave" | "removed" } = {},
  ): void {
    const from = member.state;
    if (from === to) return;
    member.state = to;
    member.since = this.#clock.wallNow();
    if (to === "suspect") {
      member.suspectAt = this.#clock.now();
      member.credit = 0;
      member.suspicionMs = suspicionTimeout(
        this.#settings.suspicionMultiplier,
        this.#members.size + 1,
        this.#settings.probeIntervalMs,
      );
      this.#armSweep(member.suspectAt + member.suspicionMs);
    }
    const peer = snapshot(member);
    switch (to) {
      case "alive":
        this.#onEvent({ type: "alive", peer, from });
        break;
      case "suspect":
        this.#onEvent({ type: "suspect", peer });
        break;
      case "dead":
        this.#onEvent({ type: "dead", peer });
        break;
      case "left":
        this.#onEvent({ type: "left", peer, reason: extra.reason ?? "leave" });
        break;
    }
  }
}
