/**
 * Cluster peer monitoring (docs/CLUSTER.md): which peers of a service are alive, suspect or
 * dead, how far away they are, and when that changes, over the library's own Noise
 * connections. {@linkcode createCluster} serves the probe command on its own server, probes
 * its peers through one small pool each, and reports changes as events, metrics and logs.
 *
 * @module
 */

import { createConfig, type NetworkConfig, type NetworkConfigInput } from "../../config/mod.ts";
import type { Message } from "../../core/message.ts";
import { ProtocolError } from "../../errors.ts";
import { logger } from "../../log.ts";
import { Dispatcher } from "../../protocol/dispatcher.ts";
import { generateKeyPair, type KeyPair } from "../../secure/keys.ts";
import type { ServerSecurityOptions } from "../../secure/policy.ts";
import type { TlsClientOptions, TlsServerOptions } from "../../transport/tls.ts";
import type { Transport } from "../../transport/types.ts";
import { EventStream } from "../../util/event_stream.ts";
import { abortable } from "../../util/async.ts";
import { constantTimeEqual } from "../../util/bytes.ts";
import type { RequestOptions } from "../connection_options.ts";
import { serve, type Server } from "../daemon.ts";
import { serverSecurityFromConfig } from "../session.ts";
import { type Clock, systemClock } from "./clock.ts";
import { Detector } from "./detector.ts";
import { NoPeerAvailable } from "./errors.ts";
import { type ClusterMetrics, clusterMetrics } from "./metrics.ts";
import { NoiseProbeTransport, PeerKeys } from "./noise_transport.ts";
import { type ClusterSettings, clusterSettings, type ClusterSettingsInput } from "./options.ts";
import type { ClusterEvent, PeerInfo, PeerResolver, PeerSpec, PeerState } from "./types.ts";
import { bootIdHex, CLUSTER_COMMAND, decodeClusterMessage, encodeClusterMessage } from "./wire.ts";

const log = logger("cluster");

/**
 * Options of {@linkcode createCluster}. Every setting has a key in the `[cluster]` section of
 * the configuration; an option given here wins.
 *
 * @example Three nodes from a static list
 * ```ts
 * import type { ClusterOptions } from "@npro/network-protocol";
 *
 * const options: ClusterOptions = {
 *   self: { id: "a", address: "10.0.0.1:9000" },
 *   peers: [{ id: "b", address: "10.0.0.2:9000" }, { id: "c", address: "10.0.0.3:9000" }],
 *   probeIntervalMs: 1000,
 *   probeTimeoutMs: 500,
 * };
 * console.log(options.peers?.length);
 * ```
 */
export interface ClusterOptions extends ClusterSettingsInput {
  /**
   * This node: its id (default `cluster.node_id`, else the host name, which needs
   * `--allow-sys=hostname`), the address its server
   * listens on (default `server.address`; port 0 picks one) and its Noise static key (default
   * `security.static_key_path`, else one generated for this run: peers that pin keys need a
   * stable one).
   */
  self?: { id?: string; address?: string; staticKey?: KeyPair };
  /** The configuration; its `cluster`, `server`, `client`, `transport`, `security` sections apply. */
  config?: NetworkConfig | NetworkConfigInput;
  /** The application's handlers, served beside the cluster's probe command. */
  dispatcher?: Dispatcher;
  /** The server's other security options (`clientKeys` or `authorize` to admit only peers). */
  security?: Omit<ServerSecurityOptions, "staticKey">;
  /** A transport instead of the configuration's (server and peers' connections). */
  transport?: Transport;
  /** TLS options for `transport.kind = "tls"`. */
  tls?: { server?: TlsServerOptions; client?: TlsClientOptions };
  /** Events kept per subscriber that does not keep up (default 512, as Serf's event buffer). */
  eventBuffer?: number;
  /** Aborting it closes the cluster (without a leave). */
  signal?: AbortSignal;
  /** The clock (tests). */
  clock?: Clock;
}

/**
 * Options of {@linkcode Cluster.request}.
 *
 * @example Ask the nearest peer, within 2 s
 * ```ts
 * import type { ClusterRequestOptions } from "@npro/network-protocol";
 *
 * const options: ClusterRequestOptions = { strategy: "latency", timeoutMs: 2000 };
 * console.log(options.strategy);
 * ```
 */
export interface ClusterRequestOptions extends RequestOptions {
  /** The peer (its id); default: {@linkcode Cluster.pick} with `strategy`. */
  peer?: string;
  /** How to pick a peer when none is named (default `"latency"`). */
  strategy?: PickStrategy;
}

/** How {@linkcode Cluster.pick} chooses among alive peers. */
export type PickStrategy = "latency" | "round-robin";

/** This node's own health (Lifeguard), from {@linkcode Cluster.localHealth}. */
export interface LocalHealthInfo {
  /** The multiplier of probe intervals and timeouts, minus 1 (0 when healthy). */
  score: number;
  /** Stalls of the event loop found since the start. */
  stalls: number;
  /** Verdicts are held back after a recent stall. */
  quiet: boolean;
}

/**
 * A running cluster member, from {@linkcode createCluster}.
 *
 * @example Watch the peers
 * ```ts
 * import type { Cluster } from "@npro/network-protocol";
 *
 * async function watch(cluster: Cluster): Promise<void> {
 *   for await (const event of cluster.events()) {
 *     if (event.type === "dead") console.log(`${event.peer.id} is dead`);
 *   }
 * }
 * console.log(typeof watch);
 * ```
 */
export interface Cluster extends AsyncDisposable {
  /** This node's id. */
  readonly id: string;
  /** This process start's boot id (16 hex digits). */
  readonly bootId: string;
  /** This node's incarnation (raised when it refutes a suspicion). */
  readonly incarnation: number;
  /** The server's address (with the real port when port 0 was asked for). */
  readonly addr: Deno.Addr;
  /** This node's Noise static public key. */
  readonly publicKey: Uint8Array;
  /** The server (its connections, its own metrics). */
  readonly server: Server;
  /** Whether the cluster is closed or closing. */
  readonly isClosed: boolean;
  /**
   * The peers.
   *
   * @param filter Only peers in these states.
   * @returns Snapshots: state, round trip, last seen, incarnation, boot id, key fingerprint.
   */
  peers(filter?: { state?: PeerState | readonly PeerState[] }): PeerInfo[];
  /**
   * One peer.
   *
   * @param id Its id (or its address, for a peer found by DNS).
   */
  get(id: string): PeerInfo | undefined;
  /** The events from now on (one per change), until the cluster closes. */
  events(): AsyncIterableIterator<ClusterEvent>;
  /**
   * An alive peer that has answered: the nearest (`"latency"`, default) or the next in turn
   * (`"round-robin"`).
   *
   * @param strategy How to choose.
   * @returns The peer, or `undefined` when none is alive.
   */
  pick(strategy?: PickStrategy): PeerInfo | undefined;
  /**
   * Sends a request to a peer (named, or picked) over its pool.
   *
   * @param message The request.
   * @param options The peer or the strategy, a signal and a time limit.
   * @returns The answer.
   * @throws {NoPeerAvailable} The peer is unknown or not alive, or no peer is alive.
   * @throws {PeerIdentityError} The peer's address presented another key.
   */
  request(message: Message, options?: ClusterRequestOptions): Promise<Message>;
  /** This node's own health. */
  localHealth(): LocalHealthInfo;
  /**
   * The member's metrics, Prometheus text format 0.0.4: its server's (`server.metrics()`, what its
   * admin endpoint's `/metrics` serves), which include the cluster's series.
   */
  metrics(): string;
  /**
   * Runs the resolver now (it also runs every `resolveIntervalMs`), within
   * `min(resolveIntervalMs, 10 s)`; a failed lookup keeps the last list.
   *
   * @param options A signal that stops waiting (the lookup itself still ends within its limit).
   */
  resolveNow(options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Leaves gracefully: tells the peers (they see `left`, not `dead`), then closes. Closes even when
   * the announcements fail, time out or are aborted.
   *
   * @param options The time limit of the announcements (default `cluster.leave_timeout`) and a
   * signal that cuts them short.
   */
  leave(options?: ClusterLeaveOptions): Promise<void>;
  /** Stops probing and closes the server and the connections (peers will see it die). */
  close(): Promise<void>;
  /** Resolves once closed. */
  closed(): Promise<void>;
}

/**
 * Options of {@linkcode Cluster.leave}.
 *
 * @example Leave within a second, or at once on shutdown
 * ```ts
 * import type { ClusterLeaveOptions } from "@npro/network-protocol";
 *
 * const shutdown = new AbortController();
 * const options: ClusterLeaveOptions = { timeoutMs: 1000, signal: shutdown.signal };
 * ```
 */
export interface ClusterLeaveOptions {
  /** The time limit of the announcements to the peers, in ms (default `cluster.leave_timeout`). */
  timeoutMs?: number;
  /** Cuts the announcements short (the member still closes). */
  signal?: AbortSignal;
}

/**
 * Starts a cluster member: serves the probe command (and `dispatcher`'s handlers) on
 * `self.address`, and monitors the peers of a static list and/or a resolver.
 *
 * @example Two members on loopback
 * ```ts
 * import { createCluster } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * await using a = await createCluster({
 *   self: { id: "a", address: "127.0.0.1:0" },
 *   probeIntervalMs: 50,
 *   probeTimeoutMs: 25,
 * });
 * const { port } = a.addr as Deno.NetAddr;
 * await using b = await createCluster({
 *   self: { id: "b", address: "127.0.0.1:0" },
 *   peers: [{ id: "a", address: `127.0.0.1:${port}`, publicKey: a.publicKey }],
 *   probeIntervalMs: 50,
 *   probeTimeoutMs: 25,
 * });
 * while (b.get("a")?.lastSeen === undefined) {
 *   await new Promise((resolve) => setTimeout(resolve, 10));
 * }
 * assert.equal(b.get("a")?.state, "alive");
 * assert.equal(b.get("a")?.nodeId, "a");
 * ```
 *
 * @param options This node, its peers, the probe settings, the configuration.
 * @returns The running member.
 * @throws {RangeError} For a setting out of range.
 * @throws {TypeError} For a missing or invalid node id.
 * @throws {ProtocolError} When the server cannot listen.
 */
export async function createCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const config = createConfig({
    ...(options.config ?? {}),
    ...(options.self?.address === undefined ? {} : {
      server: { ...(options.config?.server ?? {}), address: options.self.address },
    }),
  });
  const settings = clusterSettings(config, options);
  const id = options.self?.id ?? (settings.nodeId !== "" ? settings.nodeId : Deno.hostname());
  const idBytes = new TextEncoder().encode(id);
  if (idBytes.length < 1 || idBytes.length > 255) {
    throw new TypeError(`Cannot use node id "${id}": it must be 1 to 255 UTF-8 bytes`);
  }
  const eventBuffer = options.eventBuffer ?? 512;
  if (!Number.isInteger(eventBuffer) || eventBuffer < 1) {
    throw new RangeError(`Cannot use eventBuffer "${eventBuffer}": it must be a positive integer`);
  }
  let staticKey = options.self?.staticKey;
  if (staticKey === undefined) {
    const security = await serverSecurityFromConfig(config, undefined, () => generateKeyPair());
    staticKey = security.staticKey ?? generateKeyPair();
  }
  const cluster = new ClusterImpl(id, config, settings, staticKey, options, eventBuffer);
  try {
    await cluster.start(options);
  } catch (error) {
    // Nothing started is left behind: the server, the pools, the timers.
    await cluster.close();
    throw error;
  }
  return cluster;
}

class ClusterImpl implements Cluster {
  readonly id: string;
  readonly bootId: string;
  readonly publicKey: Uint8Array;
  readonly #settings: ClusterSettings;
  readonly #config: NetworkConfig;
  readonly #keys = new PeerKeys();
  readonly #transport: NoiseProbeTransport;
  readonly #detector: Detector;
  readonly #events: EventStream<ClusterEvent>;
  /** Made once the server is up, in its registry. */
  #metrics: ClusterMetrics | undefined;
  readonly #staticKey: KeyPair;
  readonly #abort = new AbortController();
  readonly #closedPromise: Promise<void>;
  #resolveClosed!: () => void;
  #server: Server | undefined;
  #closing: Promise<void> | undefined;
  #resolveTimer: ReturnType<typeof setTimeout> | undefined;
  #resolving: Promise<void> | undefined;
  #resolved: readonly PeerSpec[] = [];
  #roundRobin = 0;
  #onAbort: (() => void) | undefined;
  #signal: AbortSignal | undefined;

  constructor(
    id: string,
    config: NetworkConfig,
    settings: ClusterSettings,
    staticKey: KeyPair,
    options: ClusterOptions,
    eventBuffer: number,
  ) {
    this.id = id;
    this.#config = config;
    this.#settings = settings;
    this.#staticKey = staticKey;
    this.publicKey = staticKey.publicKey;
    const bootId = crypto.getRandomValues(new Uint8Array(8));
    this.bootId = bootIdHex(bootId);
    this.#events = new EventStream(eventBuffer);
    this.#closedPromise = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#transport = new NoiseProbeTransport({
      staticKey,
      config,
      keys: this.#keys,
      probeIntervalMs: settings.probeIntervalMs,
      ...(options.transport === undefined ? {} : { transport: options.transport }),
      ...(options.tls?.client === undefined ? {} : { tls: options.tls.client }),
    });
    this.#detector = new Detector({
      ...settings,
      id,
      bootId,
      clock: options.clock ?? systemClock,
      transport: this.#transport,
      onEvent: (event) => this.#onEvent(event),
      onRefusal: (reason) => this.#metrics?.refusals[reason].inc(),
      onProbe: (kind, outcome, rttMs) => {
        this.#metrics?.probe(kind, outcome);
        if (rttMs !== undefined) this.#metrics?.rtt.observe(rttMs / 1000);
      },
    });
  }

  async start(options: ClusterOptions): Promise<void> {
    const dispatcher = options.dispatcher ?? new Dispatcher();
    dispatcher.register(CLUSTER_COMMAND, async (message, context) => {
      if (message.type !== "custom") throw new TypeError("Cluster messages are custom messages");
      // The sender is the member whose recorded key it authenticated with (Noise static key).
      const presented = context.remoteStaticKey;
      const sender = (key: string): boolean => {
        const known = this.#keys.get(key);
        return known !== undefined && presented !== undefined &&
          constantTimeEqual(known, presented);
      };
      const reply = await this.#detector.handle(
        decodeClusterMessage(message.payload),
        context.signal,
        sender,
      );
      return { type: "custom", command: CLUSTER_COMMAND, payload: encodeClusterMessage(reply) };
    });
    this.#server = await serve({
      config: this.#config,
      ...(options.transport === undefined ? {} : { transport: options.transport }),
      ...(options.tls?.server === undefined ? {} : { tls: options.tls.server }),
      security: { ...(options.security ?? {}), staticKey: this.#staticKey },
    }, dispatcher);
    // The cluster's series go in the server's registry: its metrics() and /metrics show them.
    this.#metrics = clusterMetrics(
      this.#server.metricsRegistry,
      () => this.#detector.peers(),
      () => this.#detector.health.score,
    );
    log.info("Cluster node {id} (boot {bootId}) listening on {address}", {
      id: this.id,
      bootId: this.bootId,
      address: addrText(this.#server.addr),
    });
    this.#detector.setPeers(this.#settings.peers);
    if (this.#settings.resolve !== undefined) {
      await this.#runResolver(this.#settings.resolve);
      this.#scheduleResolve();
    }
    this.#detector.start();
    const signal = options.signal;
    if (signal !== undefined) {
      this.#signal = signal;
      this.#onAbort = () => void this.close();
      if (signal.aborted) await this.close();
      else signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  get incarnation(): number {
    return this.#detector.incarnation;
  }

  get addr(): Deno.Addr {
    return this.server.addr;
  }

  get server(): Server {
    return this.#server!;
  }

  get isClosed(): boolean {
    return this.#closing !== undefined;
  }

  #onEvent(event: ClusterEvent): void {
    switch (event.type) {
      case "join":
      case "alive":
      case "updated":
      case "left":
      case "suspect":
      case "dead":
        this.#metrics?.transitions[event.type].inc();
        break;
      case "local-health":
        if (event.stalledMs > 0) this.#metrics?.stalls.inc();
        break;
    }
    logEvent(event);
    this.#events.emit(event);
  }

  peers(filter: { state?: PeerState | readonly PeerState[] } = {}): PeerInfo[] {
    const all = this.#detector.peers();
    if (filter.state === undefined) return all;
    const states: readonly PeerState[] = typeof filter.state === "string"
      ? [filter.state]
      : filter.state;
    return all.filter((peer) => states.includes(peer.state));
  }

  get(id: string): PeerInfo | undefined {
    return this.#detector.get(id);
  }

  events(): AsyncIterableIterator<ClusterEvent> {
    return this.#events.iterate();
  }

  pick(strategy: PickStrategy = "latency"): PeerInfo | undefined {
    const alive = this.#detector.peers().filter((p) =>
      p.state === "alive" && p.lastSeen !== undefined
    );
    if (alive.length === 0) return undefined;
    if (strategy === "round-robin") {
      alive.sort((a, b) => (a.id < b.id ? -1 : 1));
      return alive[this.#roundRobin++ % alive.length];
    }
    if (strategy !== "latency") {
      throw new TypeError(`Cannot pick a peer by "${strategy}": use "latency" or "round-robin"`);
    }
    let best = alive[0]!;
    for (const peer of alive) {
      if ((peer.rttMs ?? Infinity) < (best.rttMs ?? Infinity)) best = peer;
    }
    return best;
  }

  async request(message: Message, options: ClusterRequestOptions = {}): Promise<Message> {
    if (this.isClosed) throw new ProtocolError("ConnectionClosed", "The cluster is closed");
    const peer = options.peer === undefined
      ? this.pick(options.strategy)
      : this.#detector.get(options.peer);
    if (peer === undefined) {
      throw new NoPeerAvailable(
        options.peer === undefined
          ? "No peer is alive"
          : `Peer "${options.peer}" is not a member of the cluster`,
      );
    }
    if (peer.state !== "alive") {
      throw new NoPeerAvailable(`Peer "${peer.id}" is ${peer.state}`);
    }
    const { peer: _peer, strategy: _strategy, ...requestOptions } = options;
    const spec = this.#specOf(peer);
    return await this.#transport.request(peer.id, spec, message, requestOptions);
  }

  #specOf(peer: PeerInfo): PeerSpec {
    for (const spec of [...this.#settings.peers, ...this.#resolved]) {
      if ((spec.id ?? spec.address) === peer.id) return spec;
    }
    return { address: peer.address };
  }

  localHealth(): LocalHealthInfo {
    const health = this.#detector.health;
    return { score: health.score, stalls: health.stalls, quiet: health.quiet() };
  }

  metrics(): string {
    return this.server.metrics();
  }

  async resolveNow(options: { signal?: AbortSignal } = {}): Promise<void> {
    const resolve = this.#settings.resolve;
    if (resolve === undefined || this.isClosed) return;
    options.signal?.throwIfAborted();
    const running = this.#runResolver(resolve);
    if (options.signal === undefined) return await running;
    await abortable(running, options.signal, "Resolving the cluster's peers");
  }

  #runResolver(resolve: PeerResolver): Promise<void> {
    // One lookup at a time; a caller during a lookup waits for it.
    this.#resolving ??= (async () => {
      const signal = AbortSignal.any([
        this.#abort.signal,
        AbortSignal.timeout(Math.min(this.#settings.resolveIntervalMs, 10_000)),
      ]);
      try {
        const found = await resolve(signal);
        if (this.isClosed) return;
        this.#resolved = found;
        this.#detector.setPeers([...this.#settings.peers, ...found]);
      } catch (error) {
        if (this.isClosed) return;
        log.warn("Resolving the cluster's peers failed (keeping the last list): {error}", {
          error: error instanceof Error ? error.message : String(error),
        });
      } finally {
        this.#resolving = undefined;
      }
    })();
    return this.#resolving;
  }

  #scheduleResolve(): void {
    if (this.isClosed) return;
    this.#resolveTimer = setTimeout(() => {
      this.#resolveTimer = undefined;
      void this.#runResolver(this.#settings.resolve!).finally(() => this.#scheduleResolve());
    }, this.#settings.resolveIntervalMs);
  }

  async leave(options: ClusterLeaveOptions = {}): Promise<void> {
    if (this.isClosed) return await this.closed();
    const timeoutMs = options.timeoutMs ?? this.#settings.leaveTimeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new RangeError(`Cannot leave within "${timeoutMs}" ms: it must be 0 or more`);
    }
    log.info("Cluster node {id} leaving", { id: this.id });
    try {
      await this.#detector.leave(timeoutMs, options.signal);
    } finally {
      await this.close();
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#resolveTimer !== undefined) clearTimeout(this.#resolveTimer);
      this.#abort.abort(new DOMException("The cluster is closing", "AbortError"));
      if (this.#onAbort !== undefined) this.#signal?.removeEventListener("abort", this.#onAbort);
      await this.#detector.stop();
      await this.#resolving?.catch(() => {});
      await this.#transport.close();
      await this.#server?.shutdown(this.#settings.probeTimeoutMs * 2);
      this.#events.emit({ type: "closed" });
      this.#resolveClosed();
    })();
    return this.#closing;
  }

  closed(): Promise<void> {
    return this.#closedPromise;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function addrText(addr: Deno.Addr): string {
  if ("path" in addr) return addr.path;
  return "hostname" in addr ? `${addr.hostname}:${addr.port}` : addr.transport;
}

function logEvent(event: ClusterEvent): void {
  switch (event.type) {
    case "join":
      log.info("Peer {peer} joined at {address}", {
        peer: event.peer.id,
        address: event.peer.address,
      });
      break;
    case "alive":
      log.info("Peer {peer} is alive again (was {from}; incarnation {incarnation})", {
        peer: event.peer.id,
        from: event.from,
        incarnation: event.peer.incarnation,
      });
      break;
    case "suspect":
      log.warn("Peer {peer} is suspect: it answered no direct or indirect probe", {
        peer: event.peer.id,
      });
      break;
    case "dead":
      log.warn("Peer {peer} is dead: it did not refute the suspicion in time", {
        peer: event.peer.id,
      });
      break;
    case "left":
      log.info("Peer {peer} left ({reason})", { peer: event.peer.id, reason: event.reason });
      break;
    case "updated":
      log.info("Peer {peer} {what}", {
        peer: event.peer.id,
        what: event.reason === "restarted"
          ? `restarted (boot ${event.peer.bootId})`
          : `moved to ${event.peer.address}`,
      });
      break;
    case "refused":
      log.error("Peer {peer} refused ({reason}): {detail}", {
        peer: event.peer.id,
        reason: event.reason,
        detail: event.detail,
      });
      break;
    case "local-health":
      if (event.stalledMs > 0) {
        log.warn(
          "This node's event loop stalled for {ms} ms: no verdicts for a while (health score {score})",
          { ms: Math.round(event.stalledMs), score: event.score },
        );
      } else {
        log.debug("Local health score {score}", { score: event.score });
      }
      break;
    case "closed":
      break;
  }
}
