/**
 * A discrete-event simulation of a cluster of failure detectors: a virtual clock (ten simulated
 * minutes run in seconds), a simulated network with delay, jitter, load spikes and loss, and
 * nodes that crash, restart, stop and stall. Used by bench/cluster_sim.ts and the detector's
 * tests. Messages go straight to the peer's `Detector.handle` (no bytes, no Noise): what is
 * measured is the algorithm and its parameters, not the transport.
 *
 * @module
 */

import type { Clock } from "../../src/service/cluster/clock.ts";
import {
  Detector,
  type DetectorSettings,
  type ProbeReply,
  type ProbeTransport,
} from "../../src/service/cluster/detector.ts";
import type { ClusterEvent, PeerSpec } from "../../src/service/cluster/types.ts";
import type { ClusterMessage } from "../../src/service/cluster/wire.ts";

/** A seeded pseudo-random generator (mulberry32). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Event {
  at: number;
  seq: number;
  run: () => void;
}

/** A virtual clock: a heap of timers run in time order. */
export class VirtualTime {
  now = 0;
  #seq = 0;
  #heap: Event[] = [];
  #cancelled = new Set<number>();

  /** Schedules `run` at `at`; returns a handle. */
  at(at: number, run: () => void): number {
    const event = { at: Math.max(at, this.now), seq: ++this.#seq, run };
    const heap = this.#heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (less(heap[parent]!, event)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = event;
    return event.seq;
  }

  /** Cancels a handle. */
  cancel(handle: number): void {
    this.#cancelled.add(handle);
  }

  #pop(): Event | undefined {
    const heap = this.#heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        const cur = m === i ? last : heap[m]!;
        let best = cur;
        if (l < heap.length && less(heap[l]!, best)) {
          m = l;
          best = heap[l]!;
        }
        if (r < heap.length && less(heap[r]!, best)) {
          m = r;
          best = heap[r]!;
        }
        if (m === i) break;
        heap[i] = heap[m]!;
        i = m;
      }
      heap[i] = last;
    }
    return top;
  }

  /**
   * Runs every event up to `until`, letting promise continuations run after each one.
   *
   * @param until The virtual time to stop at.
   */
  async run(until: number): Promise<void> {
    for (;;) {
      const top = this.#heap[0];
      if (top === undefined || top.at > until) break;
      this.#pop();
      if (this.#cancelled.delete(top.seq)) continue;
      this.now = top.at;
      top.run();
      await drain();
    }
    this.now = until;
  }
}

function less(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** Lets every pending promise continuation run (a macrotask hop drains the microtask queue). */
function drain(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      channel.port2.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

/** After a stall, I/O is handled this long after the timers that came due. */
const IO_AFTER_TIMERS_MS = 0.01;

/** The network's behaviour. */
export interface NetworkModel {
  /** One-way delay: a base in ms. */
  baseMs: number;
  /** Plus an exponential jitter of this mean, ms. */
  jitterMs: number;
  /** The probability that a message is delayed by a load spike. */
  spikeProbability: number;
  /** A spike adds uniformly 0 to this many ms. */
  spikeMs: number;
  /** The probability that a message is lost. */
  loss: number;
}

/** One simulated node. */
export interface SimNode {
  readonly id: string;
  detector: Detector;
  /** Crashed: drops everything, runs nothing. */
  down: boolean;
  /** Its event loop is blocked until this time. */
  stalledUntil: number;
  /** Incremented at each restart: timers of an older life are dropped. */
  life: number;
}

/** A transition seen by one observer. */
export interface Observation {
  at: number;
  observer: string;
  event: ClusterEvent;
}

/** A simulated cluster. */
export class SimCluster {
  readonly time = new VirtualTime();
  readonly nodes = new Map<string, SimNode>();
  readonly observations: Observation[] = [];
  readonly #random: () => number;
  readonly #network: NetworkModel;
  readonly #settings: DetectorSettings & { lifeguard?: boolean };
  /** Drops messages from one node to another (a one-way blackhole). */
  readonly blackholes = new Set<string>();

  /**
   * A cluster of `n` nodes named `n0`..`n{n-1}`.
   *
   * @param n The size.
   * @param settings The detectors' settings.
   * @param network The network model.
   * @param seed The random seed.
   */
  constructor(
    n: number,
    settings: DetectorSettings & { lifeguard?: boolean },
    network: NetworkModel,
    seed: number,
  ) {
    this.#random = seeded(seed);
    this.#network = network;
    this.#settings = settings;
    const specs: PeerSpec[] = [];
    for (let i = 0; i < n; i++) specs.push({ id: `n${i}`, address: `n${i}` });
    for (const spec of specs) {
      const node: SimNode = {
        id: spec.id!,
        detector: undefined as unknown as Detector,
        down: false,
        stalledUntil: 0,
        life: 0,
      };
      this.nodes.set(node.id, node);
      node.detector = this.#detector(node);
      node.detector.setPeers(specs);
    }
  }

  #detector(node: SimNode): Detector {
    const bootId = new Uint8Array(8);
    for (let i = 0; i < 8; i++) bootId[i] = Math.floor(this.#random() * 256);
    return new Detector({
      ...this.#settings,
      id: node.id,
      bootId,
      clock: this.#clock(node),
      transport: this.#transport(node),
      random: this.#random,
      onEvent: (event) => {
        if (event.type !== "local-health") {
          this.observations.push({ at: this.time.now, observer: node.id, event });
        }
      },
    });
  }

  /** The clock of one node: its timers run late while it stalls, never while it is down. */
  #clock(node: SimNode): Clock {
    const time = this.time;
    const life = node.life;
    const handles = new Map<number, number>();
    let next = 0;
    const arm = (id: number, at: number, callback: () => void): void => {
      handles.set(
        id,
        time.at(at, () => {
          if (node.down || node.life !== life) return;
          if (node.stalledUntil > time.now) {
            arm(id, node.stalledUntil, callback);
            return;
          }
          handles.delete(id);
          callback();
        }),
      );
    };
    return {
      now: () => time.now,
      wallNow: () => time.now,
      setTimeout: (callback, ms) => {
        const id = ++next;
        arm(id, time.now + ms, callback);
        return id;
      },
      clearTimeout: (id) => {
        const handle = handles.get(id);
        if (handle !== undefined) time.cancel(handle);
        handles.delete(id);
      },
    };
  }

  #delay(): number | undefined {
    const m = this.#network;
    if (this.#random() < m.loss) return undefined;
    let ms = m.baseMs - m.jitterMs * Math.log(1 - this.#random());
    if (this.#random() < m.spikeProbability) ms += this.#random() * m.spikeMs;
    return ms;
  }

  /** Runs `fn` on `node` after a network delay, when its loop is free (drops if down). */
  #deliver(to: SimNode, life: number, fn: () => void): boolean {
    const delay = this.#delay();
    if (delay === undefined) return false;
    const run = (): void => {
      if (to.down || to.life !== life) return;
      if (to.stalledUntil > this.time.now) {
        // As in an event loop after a block: the timers that came due run first, then the I/O
        // that arrived meanwhile (so probe timeouts fire before the replies are read).
        this.time.at(to.stalledUntil + IO_AFTER_TIMERS_MS, run);
        return;
      }
      fn();
    };
    this.time.at(this.time.now + delay, run);
    return true;
  }

  #transport(node: SimNode): ProbeTransport {
    return {
      send: (key, _spec, message, { signal }) =>
        new Promise<ProbeReply>((resolve, reject) => {
          const target = this.nodes.get(key);
          const onAbort = (): void => reject(signal.reason);
          if (signal.aborted) return onAbort();
          signal.addEventListener("abort", onAbort, { once: true });
          if (target === undefined || this.blackholes.has(`${node.id}>${key}`)) return;
          const targetLife = target.life;
          const myLife = node.life;
          this.#deliver(target, targetLife, () => {
            const reply = target.detector.handle(message, signal);
            reply.then((answer: ClusterMessage) => {
              if (this.blackholes.has(`${key}>${node.id}`)) return;
              this.#deliver(node, myLife, () => {
                signal.removeEventListener("abort", onAbort);
                resolve({ reply: answer });
              });
            }, () => {});
          });
        }),
      forget() {},
    };
  }

  /** Starts every node. */
  start(): void {
    for (const node of this.nodes.values()) node.detector.start();
  }

  /** Crashes a node (SIGKILL). */
  crash(id: string): void {
    const node = this.nodes.get(id)!;
    node.down = true;
    void node.detector.stop();
  }

  /** Restarts a crashed node: a new process with a new boot id. */
  restart(id: string): void {
    const node = this.nodes.get(id)!;
    node.down = false;
    node.life++;
    node.stalledUntil = 0;
    node.detector = this.#detector(node);
    node.detector.setPeers([...this.nodes.keys()].map((k) => ({ id: k, address: k })));
    node.detector.start();
  }

  /** Blocks a node's event loop for `ms` from now. */
  stall(id: string, ms: number): void {
    const node = this.nodes.get(id)!;
    node.stalledUntil = Math.max(node.stalledUntil, this.time.now + ms);
  }

  /** Stops every detector. */
  async stop(): Promise<void> {
    for (const node of this.nodes.values()) {
      node.down = true;
      await node.detector.stop();
    }
  }
}
