/**
 * Cluster members in their own processes (tests/fixtures/cluster_node.ts), and a TCP proxy
 * that forwards one direction and blackholes the other.
 *
 * @module
 */

import { encodeKey, generateKeyPair, type KeyPair } from "../mod.ts";

/** One event line of a node. */
export interface NodeLine {
  t: number;
  type: string;
  peer?: string;
  state?: string;
  incarnation?: number;
  bootId?: string;
  reason?: string;
  from?: string;
  stalledMs?: number;
  peers?: Record<string, { state: string; seen: boolean; incarnation: number; bootId?: string }>;
}

/** The settings shared by the nodes of a test. */
export interface ProbeSettings {
  probeIntervalMs: number;
  probeTimeoutMs: number;
  indirectProbes: number;
  suspicionMultiplier: number;
}

/** A node's identity and address. */
export interface NodeSpec {
  id: string;
  port: number;
  keys: KeyPair;
}

/** Ports the OS had free a moment ago (listeners opened and closed). */
export function freePorts(n: number): number[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

/** Node specs `n0`..`n{count-1}` with fresh keys and free ports. */
export function nodeSpecs(count: number): NodeSpec[] {
  const ports = freePorts(count);
  return ports.map((port, i) => ({ id: `n${i}`, port, keys: generateKeyPair() }));
}

/** A running node process. */
export class NodeProcess {
  readonly spec: NodeSpec;
  readonly lines: NodeLine[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<void>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #exited = false;
  readonly status: Promise<Deno.CommandStatus>;

  /**
   * Starts a node.
   *
   * @param spec Its identity.
   * @param all Every node (its peers are the others).
   * @param settings The probe settings.
   * @param addressOf Where this node reaches a peer (default the peer's port on loopback).
   */
  constructor(
    spec: NodeSpec,
    all: readonly NodeSpec[],
    settings: ProbeSettings,
    addressOf: (peer: NodeSpec) => string = (peer) => `127.0.0.1:${peer.port}`,
  ) {
    this.spec = spec;
    const config = {
      id: spec.id,
      address: `127.0.0.1:${spec.port}`,
      privateKey: encodeKey(spec.keys.privateKey),
      peers: all.filter((p) => p.id !== spec.id).map((p) => ({
        id: p.id,
        address: addressOf(p),
        publicKey: encodeKey(p.keys.publicKey),
      })),
      ...settings,
    };
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-env=CLUSTER_NODE",
        new URL("./fixtures/cluster_node.ts", import.meta.url).pathname,
      ],
      env: { CLUSTER_NODE: JSON.stringify(config), NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.status = this.#child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    const stdout = this.#child.stdout;
    this.#reading = (async () => {
      let buffer = "";
      for await (const chunk of stdout.pipeThrough(new TextDecoderStream())) {
        buffer += chunk;
        let newline: number;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          try {
            this.lines.push(JSON.parse(line) as NodeLine);
          } catch {
            // Not an event line.
          }
        }
      }
    })();
  }

  /** Its process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Sends a command line.
   *
   * @param line The command.
   */
  async command(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(line + "\n"));
  }

  /**
   * Sends a signal (only to this test's own child).
   *
   * @param signal The signal.
   */
  signal(signal: Deno.Signal): void {
    if (!this.#exited) Deno.kill(this.#child.pid, signal);
  }

  /** The last view of the peers. */
  view(): NonNullable<NodeLine["peers"]> {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const line = this.lines[i]!;
      if (line.type === "view" && line.peers !== undefined) return line.peers;
    }
    return {};
  }

  /** Lines of one type about one peer. */
  about(peer: string, type: string): NodeLine[] {
    return this.lines.filter((l) => l.peer === peer && l.type === type);
  }

  /** Kills the process (SIGCONT first, in case it was stopped) and waits for its end. */
  async stop(): Promise<void> {
    try {
      this.signal("SIGCONT");
      this.signal("SIGKILL");
    } catch {
      // Already gone.
    }
    await this.status;
    await this.#stdin.close().catch(() => {});
    await this.#reading.catch(() => {});
  }
}

/** Polls until `condition` holds; throws after `timeoutMs` with `what`. */
export async function until(
  condition: () => boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A TCP proxy on loopback: bytes from the client go to `target`; bytes back from the target
 * are dropped (a one-way blackhole).
 */
export class BlackholeProxy {
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;

  /**
   * Starts it.
   *
   * @param targetPort The port it forwards to.
   */
  constructor(targetPort: number) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.#accepting = (async () => {
      for await (const conn of listener) {
        this.#conns.add(conn);
        const task = this.#pipe(conn, targetPort);
        this.#tasks.add(task);
        void task.finally(() => this.#tasks.delete(task));
      }
    })().catch(() => {});
  }

  /** Its port. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async #pipe(client: Deno.Conn, targetPort: number): Promise<void> {
    let target: Deno.Conn | undefined;
    const copies: Promise<void>[] = [];
    try {
      target = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
      this.#conns.add(target);
      const to = target;
      copies.push((async () => {
        const buf = new Uint8Array(16 * 1024);
        for (;;) {
          const n = await client.read(buf);
          if (n === null) return;
          await to.write(buf.subarray(0, n));
        }
      })());
      copies.push((async () => {
        // Everything the target sends back is read and thrown away.
        const sink = new Uint8Array(16 * 1024);
        while ((await to.read(sink)) !== null) { /* dropped */ }
      })());
      await Promise.race(copies).catch(() => {});
    } catch {
      // The target refused.
    } finally {
      for (const conn of [client, target]) {
        if (conn === undefined) continue;
        this.#conns.delete(conn);
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      await Promise.allSettled(copies);
    }
  }

  /** Closes the listener and every connection, and waits for the copies to end. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    await this.#accepting;
    await Promise.allSettled([...this.#tasks]);
  }
}
