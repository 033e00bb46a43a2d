/**
 * The side-by-side network benchmark. Starts each server in its own process and the load
 * generator in another (the two processes share the machine's cores), on loopback only, bounded
 * in time, and stops every process it started by its PID. Baselines are measured in the same run
 * as the library, and every library figure is printed with its ratio to the matching baseline.
 *
 * ```sh
 * deno task bench:net                 # full: 3 rounds, medians, a few minutes
 * deno task bench:net -- --quick      # 1 round, short measures, under a minute
 * deno task bench:net -- --json out.json
 * ```
 *
 * Options: `--quick`, `--json <path>`, `--rounds <n>`, `--seconds <s>` (per measure),
 * `--connections <n>` (idle test, default 10000), `--only <subject,...>` (a server kind, or
 * `handshakes`, `workers`, `idle`, `local`), `--heap` (the idle test
 * also prints what a connection keeps on the JS heap, by kind of object, from two V8 heap
 * snapshots; use it with `--only idle` and fewer connections, for example `--connections 2000`).
 *
 * The idle test needs about 10,000 file descriptors in the server and in the client process: the
 * script starts both through `sh -c 'ulimit -n <hard limit>; exec ...'`, which raises their soft
 * limit to the hard limit, and lowers the connection count (and says so) when the hard limit is
 * too small.
 *
 * @module
 */

import {
  type Figure,
  isPeer,
  isRaw,
  LIBP2P_NOISE_VERSION,
  lines,
  type Measure,
  median,
  parseArgs,
  type ReadyLine,
  type ServerKind,
  transportOf,
} from "./common.ts";
import { heapBreakdown } from "./heap.ts";
import { generateSelfSignedCert } from "../../src/transport/mod.ts";
import { generateKeyPair, writeKeyFile } from "../../src/secure/keys.ts";
import {
  type AeadCeiling,
  measureAeadCeiling,
  measureCodec,
  measureCompression,
  measureX25519,
  type TargetFigure,
  type X25519Cost,
} from "./local.ts";

const args = parseArgs(Deno.args);
const quick = args.has("quick");
const rounds = Number(args.get("rounds") ?? (quick ? 1 : 3));
const seconds = Number(args.get("seconds") ?? (quick ? 0.25 : 2));
const warm = quick ? 0.15 : 0.5;
const wantedConnections = Number(args.get("connections") ?? 10_000);
const jsonPath = args.get("json");
const only = args.get("only")?.split(",");
/** `--heap`: the idle test also breaks the JS heap of a connection down by kind of object. */
const heap = args.has("heap");

const HERE = new URL(".", import.meta.url);
const SERVER = new URL("server.ts", HERE).pathname;
const CLIENT = new URL("client.ts", HERE).pathname;
const ROOT = new URL("../../", HERE).pathname;

await Deno.mkdir(`${ROOT}.tmp`, { recursive: true });
const tmp = await Deno.makeTempDir({ dir: `${ROOT}.tmp`, prefix: "bench-net-" });
const started: Deno.ChildProcess[] = [];
const t0 = performance.now();
const log = (text: string) =>
  console.error(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${text}`);

// ---------------------------------------------------------------------------------------------
// Processes

/**
 * Extra permissions of a child process: the js-libp2p-noise peer's processes need `--allow-env`
 * (`@libp2p/logger` lists the environment when it is imported); no other process gets it.
 */
function peerFlags(kind: ServerKind): string[] {
  return isPeer(kind) ? ["--allow-env"] : [];
}

function denoArgs(script: string, extra: string[], flags: string[]): string[] {
  return [
    "run",
    "--no-prompt",
    `--allow-net=127.0.0.1,unix:${tmp}/raw-unix.sock,unix:${tmp}/lib-noise-unix.sock`,
    `--allow-read=${tmp}`,
    `--allow-write=${tmp}`,
    ...flags,
    script,
    ...extra,
  ];
}

/** A child process with line-wise stdout and a writer to its stdin. */
class Child {
  readonly process: Deno.ChildProcess;
  readonly #lines: AsyncGenerator<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;

  constructor(args: string[], fdLimit: boolean) {
    const command = fdLimit
      ? new Deno.Command("sh", {
        args: ["-c", 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', "deno", ...args],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      })
      : new Deno.Command("deno", {
        args,
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      });
    this.process = command.spawn();
    started.push(this.process);
    this.#lines = lines(this.process.stdout);
    this.#stdin = this.process.stdin.getWriter();
  }

  /** The next JSON line of stdout (non-JSON lines are skipped), within `timeoutMs`. */
  async next<T>(timeoutMs: number, what: string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`No ${what} from process ${this.process.pid} in ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      for (;;) {
        const next = await Promise.race([this.#lines.next(), timeout]);
        if (next.done) throw new Error(`Process ${this.process.pid} ended before its ${what}`);
        if (next.value.startsWith("{")) return JSON.parse(next.value) as T;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async send(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(line + "\n"));
  }

  /** Asks politely (stdin), then kills by PID after `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    try {
      await this.send("stop");
      await this.#stdin.close();
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => kill(this.process), graceMs);
    await this.process.status;
    clearTimeout(timer);
    await this.#lines.return(undefined);
  }
}

function kill(child: Deno.ChildProcess): void {
  try {
    Deno.kill(child.pid, "SIGKILL");
  } catch {
    // Already exited.
  }
}

async function startServer(
  kind: ServerKind,
  fdLimit = false,
  flags: string[] = [],
): Promise<[Child, ReadyLine]> {
  const extra = ["--kind", kind, "--cert", `${tmp}/cert.pem`, "--key", `${tmp}/key.pem`, ...flags];
  extra.push("--address", transportOf(kind) === "unix" ? `${tmp}/${kind}.sock` : "127.0.0.1:0");
  const server = new Child(
    denoArgs(SERVER, extra, ["--v8-flags=--expose-gc", ...peerFlags(kind)]),
    fdLimit,
  );
  const ready = await server.next<ReadyLine>(30_000, "ready line");
  return [server, ready];
}

function clientArgs(kind: ServerKind, ready: ReadyLine, extra: string[]): string[] {
  return denoArgs(CLIENT, [
    "--kind",
    kind,
    "--address",
    ready.address,
    "--cert",
    `${tmp}/cert.pem`,
    "--key",
    `${tmp}/key.pem`,
    ...(ready.publicKey === undefined ? [] : ["--public-key", ready.publicKey]),
    ...extra,
  ], peerFlags(kind));
}

async function runClient(kind: ServerKind, ready: ReadyLine, measures: Measure[]) {
  const client = new Child(
    clientArgs(kind, ready, [
      "--measures",
      measures.join(","),
      "--seconds",
      String(seconds),
      "--warm",
      String(warm),
    ]),
    false,
  );
  const limit = (measures.length * (seconds + warm) + 30) * 1000;
  try {
    const { figures } = await client.next<{ figures: Figure[] }>(limit, "figures");
    return figures;
  } finally {
    await client.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// The plan

interface Subject {
  kind: ServerKind;
  label: string;
  baseline?: ServerKind;
  /** The measures it runs, when not all of them. */
  measures?: Measure[];
}

/** The js-libp2p-noise peer's label. */
const PEER_LABEL = `js-libp2p-noise ${LIBP2P_NOISE_VERSION}, XX over TCP (peer)`;

const SUBJECTS: Subject[] = [
  { kind: "raw-tcp", label: "raw TCP echo (baseline)" },
  { kind: "lib-plain-tcp", label: "library, plaintext over TCP", baseline: "raw-tcp" },
  { kind: "lib-noise-tcp", label: "library, Noise NK over TCP", baseline: "raw-tcp" },
  { kind: "raw-unix", label: "raw Unix echo (baseline)" },
  { kind: "lib-noise-unix", label: "library, Noise NK over Unix", baseline: "raw-unix" },
  { kind: "raw-tls", label: "raw native TLS echo (baseline)" },
  {
    kind: "raw-node-tls",
    label: "raw TLS echo, node:tls server with TCP_NODELAY (baseline)",
  },
  { kind: "lib-tls", label: "library over native TLS", baseline: "raw-tls" },
  // The node:tls backend (mutual TLS, pins), against the library over native TLS.
  {
    kind: "lib-node-tls",
    label: "library over node:tls (backend node), ratio to native TLS",
    baseline: "lib-tls",
    measures: ["rtt", "bulk64k"],
  },
  {
    kind: "lib-node-mtls",
    label: "library over node:tls, mutual TLS (pinned client certificate), ratio to native TLS",
    baseline: "lib-tls",
    measures: ["rtt", "bulk64k"],
  },
  // The peer runs the measure of P4 (its handshakes run with the others, below).
  { kind: "peer-libp2p-noise", label: PEER_LABEL, baseline: "raw-tcp", measures: ["bulk64k"] },
].filter((s) => only === undefined || only.includes(s.kind)) as Subject[];

const MEASURES: {
  measure: Measure;
  label: string;
  libraryOnly?: boolean;
  /** The subjects that run it, when not all of them. */
  kinds?: ServerKind[];
}[] = [
  { measure: "rtt", label: "64 B round trip, median (p99)" },
  { measure: "stream64", label: "pipelined 64 B request/reply" },
  // A raw echo has no numbered requests: the library's are compared with the raw pipelined echo.
  { measure: "request64", label: "pipelined 64 B numbered requests", libraryOnly: true },
  { measure: "stream1k", label: "pipelined 1 KiB request/reply" },
  { measure: "bulk64k", label: "one-way bulk, 64 KiB messages" },
  { measure: "bulk1m", label: "one-way bulk, 1 MiB messages" },
  // Multiplexing (issue 13), Noise over TCP: a stream against the bulk message path, and PING
  // latency while 8 MiB replies flow against idle PING.
  {
    measure: "stream64k",
    label: "one stream, 64 KiB writes (ratio: to 64 KiB bulk messages)",
    libraryOnly: true,
    kinds: ["lib-noise-tcp"],
  },
  {
    measure: "hol",
    label: "PING round trip while 8 MiB replies flow (ratio: to idle PING)",
    libraryOnly: true,
    kinds: ["lib-noise-tcp"],
  },
  // The pool (issue 14): the request64 load spread over a pool of 4 connections, against one
  // client (bench/net/client.ts, pooledRequests).
  {
    measure: "pool64",
    label: "pooled 64 B numbered requests, 4 connections (ratio: to one client)",
    libraryOnly: true,
    kinds: ["lib-plain-tcp", "lib-noise-tcp"],
  },
  {
    measure: "pool64x1",
    label: "pooled 64 B numbered requests, 1 connection (ratio: to one client)",
    libraryOnly: true,
    kinds: ["lib-plain-tcp", "lib-noise-tcp"],
  },
];

type Samples = Map<string, Figure[]>; // key: `${kind}/${measure}` (or `workers/${n}`)

/** The worker counts of the SO_REUSEPORT run, and its client processes (each a pool64 load). */
const WORKER_COUNTS = [1, 2] as const;
const WORKER_CLIENTS = 4;
/** Time for the client processes to start and open their pools before they load together. */
const WORKER_CLIENT_START_MS = 10_000;

/**
 * Many processes on one port (issue 16): `WORKER_COUNTS` server processes of the Noise NK TCP
 * kind with `reusePort` on one fixed port and one shared key, loaded by `WORKER_CLIENTS` client
 * processes at once, each running `pool64` (4 connections, 4096 pending requests): the sum of
 * their request rates, under `workers/${n}`. The one-worker run uses the same `node:net`
 * listener, so the ratio is the gain of the second process alone.
 */
async function workersRun(samples: Samples, round: number): Promise<void> {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const keyFile = `${tmp}/workers-key.json`;
  await writeKeyFile(keyFile, generateKeyPair(), { overwrite: true });
  for (const n of WORKER_COUNTS) {
    log(`round ${round}: ${n} worker(s) on one port, ${WORKER_CLIENTS} client processes`);
    const servers: Child[] = [];
    try {
      let ready: ReadyLine | undefined;
      for (let i = 0; i < n; i++) {
        const extra = ["--kind", "lib-noise-tcp", "--address", `127.0.0.1:${port}`];
        const server = new Child(
          denoArgs(SERVER, [...extra, "--reuse-port", "--static-key", keyFile], []),
          false,
        );
        servers.push(server);
        ready = await server.next<ReadyLine>(30_000, "ready line");
      }
      // The clients start together: each opens its pool, then waits for the same instant.
      const startAt = Date.now() + WORKER_CLIENT_START_MS;
      const clients = Array.from(
        { length: WORKER_CLIENTS },
        () =>
          new Child(
            clientArgs("lib-noise-tcp", ready!, [
              "--measures",
              "pool64",
              "--seconds",
              String(seconds),
              "--warm",
              String(warm),
              "--start-at",
              String(startAt),
            ]),
            false,
          ),
      );
      try {
        const reports = await Promise.all(
          clients.map((c) =>
            c.next<{ figures: Figure[] }>((seconds + warm + 30) * 1000, "figures")
          ),
        );
        const figures = reports.flatMap((r) => r.figures);
        log(`${n} worker(s): ${figures.map((f) => Math.round(f.value)).join(" + ")} msg/s`);
        add(samples, `workers/${n}`, {
          measure: "pool64",
          value: figures.reduce((sum, f) => sum + f.value, 0),
          unit: figures[0]!.unit,
          count: figures.reduce((sum, f) => sum + f.count, 0),
        });
      } finally {
        await Promise.all(clients.map((c) => c.stop()));
      }
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  }
}

/**
 * The handshake runs: a server of `kind` and a client running `measure` with 16 handshakes at a
 * time, the server's CPU time read before and after (samples under `${kind}/${measure}`). The
 * resumed run's server issues session tickets (`--resumption`); the full runs' servers do not.
 */
const HANDSHAKE_RUNS: { kind: ServerKind; measure: "handshakes" | "handshakes-resumed" }[] = [
  { kind: "raw-tls", measure: "handshakes" },
  { kind: "lib-noise-tcp", measure: "handshakes" },
  { kind: "lib-noise-tcp", measure: "handshakes-resumed" },
  { kind: "peer-libp2p-noise", measure: "handshakes" },
];

async function runRound(samples: Samples, round: number): Promise<void> {
  for (const subject of SUBJECTS) {
    log(`round ${round}: ${subject.kind}`);
    const [server, ready] = await startServer(subject.kind);
    try {
      const measures = MEASURES.filter((m) =>
        !(m.libraryOnly && isRaw(subject.kind)) &&
        (m.kinds === undefined || m.kinds.includes(subject.kind)) &&
        (subject.measures === undefined || subject.measures.includes(m.measure))
      );
      const figures = await runClient(subject.kind, ready, measures.map((m) => m.measure));
      for (const figure of figures) add(samples, `${subject.kind}/${figure.measure}`, figure);
    } finally {
      await server.stop();
    }
  }
  for (const { kind, measure } of HANDSHAKE_RUNS) {
    if (only !== undefined && !only.includes("handshakes")) continue;
    log(`round ${round}: ${measure} ${kind}`);
    const [server, ready] = await startServer(
      kind,
      false,
      measure === "handshakes-resumed" ? ["--resumption"] : [],
    );
    try {
      const cpu = async () => {
        await server.send("cpu");
        return (await server.next<{ cpuMs: number }>(10_000, "CPU time")).cpuMs;
      };
      const before = await cpu();
      const figures = await runClient(kind, ready, [measure]);
      const spent = (await cpu()) - before;
      for (const figure of figures) {
        figure.perCpuSecond = figure.total! / (spent / 1000);
        add(samples, `${kind}/${measure}`, figure);
      }
    } finally {
      await server.stop();
    }
  }
  if (only === undefined || only.includes("workers")) await workersRun(samples, round);
  if (only === undefined || only.includes("idle")) {
    for (const kind of ["raw-tcp", "lib-noise-tcp"] as const) {
      log(`round ${round}: ${connectionCount} idle connections to ${kind}`);
      add(samples, `${kind}/idle`, await idleMemory(kind));
    }
  }
}

function add(samples: Samples, key: string, figure: Figure): void {
  const list = samples.get(key) ?? [];
  list.push(figure);
  samples.set(key, list);
}

// ---------------------------------------------------------------------------------------------
// Idle connections: resident memory of the server process before and after.

async function hardFdLimit(): Promise<number> {
  const output = await new Deno.Command("sh", { args: ["-c", "ulimit -Hn"], stdout: "piped" })
    .output();
  const text = new TextDecoder().decode(output.stdout).trim();
  return text === "unlimited" ? Infinity : Number(text);
}

const fdLimit = await hardFdLimit();
const connectionCount = Math.min(wantedConnections, Math.max(100, fdLimit - 200));

async function idleMemory(kind: ServerKind): Promise<Figure> {
  const [server, ready] = await startServer(kind, true);
  let client: Child | undefined;
  try {
    await new Promise((resolve) => setTimeout(resolve, 500));
    await server.send("rss");
    const before = await server.next<Deno.MemoryUsage>(10_000, "memory usage");
    if (heap) {
      await server.send(`heap ${tmp}/${kind}-before.heapsnapshot`);
      await server.next(60_000, "heap snapshot");
    }
    client = new Child(
      clientArgs(kind, ready, [
        "--measures",
        "idle",
        "--connections",
        String(connectionCount),
        "--concurrency",
        "64",
      ]),
      true,
    );
    const { opened } = await client.next<{ opened: number }>(180_000, "opened count");
    await new Promise((resolve) => setTimeout(resolve, quick ? 1000 : 3000));
    await server.send("rss");
    const after = await server.next<Deno.MemoryUsage & { connections: number }>(
      10_000,
      "memory usage",
    );
    if (heap) {
      await server.send(`heap ${tmp}/${kind}-after.heapsnapshot`);
      await server.next(120_000, "heap snapshot");
      const { total, rows } = await heapBreakdown(
        `${tmp}/${kind}-before.heapsnapshot`,
        `${tmp}/${kind}-after.heapsnapshot`,
        opened,
      );
      log(`${kind}: JS heap per connection by kind of object (${total.toFixed(0)} B in all):`);
      log(`${kind}: (taking snapshots inflates the resident figures of this run)`);
      for (const row of rows.slice(0, 25)) {
        log(
          `  ${row.bytes.toFixed(1).padStart(7)} B ${
            row.count.toFixed(2).padStart(6)
          } objects  ${row.kind}`,
        );
      }
    }
    const per = (key: keyof Deno.MemoryUsage) =>
      ((after[key] - before[key]) / opened / 1024).toFixed(2);
    log(
      `${kind}: per connection ${per("rss")} KiB resident, ${per("heapUsed")} KiB JS heap used ` +
        `(${per("heapTotal")} KiB reserved), ${per("external")} KiB external`,
    );
    if (after.connections < opened) {
      throw new Error(`Server holds ${after.connections} connections, expected ${opened}`);
    }
    return {
      measure: "idle",
      value: (after.rss - before.rss) / opened / 1024,
      unit: "KiB/conn",
      count: opened,
    };
  } finally {
    if (client !== undefined) {
      await client.send("close").catch(() => {});
      await client.stop(10_000);
    }
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

interface Result {
  name: string;
  value: number;
  unit: string;
  baseline: number | null;
  ratio: number | null;
}

interface Target {
  id: string;
  value: number | null;
  goal: string;
  met: boolean | null;
  /** The figures behind the verdict (JSON report). */
  measured?: Record<string, number | null>;
  note?: string;
}

function medianOf(samples: Samples, kind: ServerKind, measure: Measure): Figure | undefined {
  const list = samples.get(`${kind}/${measure}`);
  if (list === undefined || list.length === 0) return undefined;
  const value = median(list.map((f) => f.value));
  const p99s = list.map((f) => f.p99).filter((v): v is number => v !== undefined);
  const perCpu = list.map((f) => f.perCpuSecond).filter((v): v is number => v !== undefined);
  const idle = list.map((f) => f.idle).filter((v): v is number => v !== undefined);
  const idleP99 = list.map((f) => f.idleP99).filter((v): v is number => v !== undefined);
  const replies = list.map((f) => f.replies).filter((v): v is number => v !== undefined);
  return {
    measure,
    value,
    unit: list[0]!.unit,
    count: list.reduce((n, f) => n + f.count, 0),
    ...(p99s.length > 0 ? { p99: median(p99s) } : {}),
    ...(perCpu.length > 0 ? { perCpuSecond: median(perCpu) } : {}),
    ...(idle.length > 0 ? { idle: median(idle) } : {}),
    ...(idleP99.length > 0 ? { idleP99: median(idleP99) } : {}),
    ...(replies.length > 0 ? { replies: median(replies) } : {}),
  };
}

function collect(samples: Samples): Result[] {
  const results: Result[] = [];
  for (const { measure, label } of MEASURES) {
    for (const subject of SUBJECTS) {
      const figure = medianOf(samples, subject.kind, measure);
      if (figure === undefined) continue;
      // Numbered requests are compared with the raw pipelined echo.
      const base = subject.baseline === undefined
        ? undefined
        : medianOf(samples, subject.baseline, measure === "request64" ? "stream64" : measure);
      const push = (name: string, value: number, baseValue: number | undefined, unit: string) =>
        results.push({
          name,
          value: round(value),
          unit,
          baseline: baseValue === undefined ? null : round(baseValue),
          ratio: baseValue === undefined ? null : round(value / baseValue, 3),
        });
      if (measure === "stream64k") {
        const bulk = medianOf(samples, subject.kind, "bulk64k");
        push(`${label}: ${subject.label}`, figure.value, bulk?.value, figure.unit);
      } else if (measure === "pool64" || measure === "pool64x1") {
        const one = medianOf(samples, subject.kind, "request64");
        push(`${label}: ${subject.label}`, figure.value, one?.value, figure.unit);
      } else if (measure === "hol") {
        push(`${label}, p50: ${subject.label}`, figure.value, figure.idle, "µs");
        push(`${label}, p99: ${subject.label}`, figure.p99!, figure.idleP99, "µs");
      } else if (measure === "rtt") {
        push(`${label.replace(" (p99)", "")}: ${subject.label}`, figure.value, base?.value, "µs");
        push(
          `64 B round trip, p99: ${subject.label}`,
          figure.p99!,
          base?.p99,
          "µs",
        );
      } else {
        push(`${label}: ${subject.label}`, figure.value, base?.value, figure.unit);
      }
    }
  }
  const workers = WORKER_COUNTS.map((n) => {
    const list = samples.get(`workers/${n}`) ?? [];
    return list.length === 0 ? undefined : median(list.map((f) => f.value));
  });
  for (const [i, n] of WORKER_COUNTS.entries()) {
    const value = workers[i];
    if (value === undefined) continue;
    const one = workers[0];
    results.push({
      name: `pooled 64 B numbered requests, Noise NK over TCP, ${WORKER_CLIENTS} client ` +
        `processes x 4 connections, ${n} server process(es) on one port with SO_REUSEPORT ` +
        `(ratio: to 1 process)`,
      value: round(value),
      unit: "msg/s",
      baseline: one === undefined || n === 1 ? null : round(one),
      ratio: one === undefined || n === 1 ? null : round(value / one, 3),
    });
  }
  const tls = medianOf(samples, "raw-tls", "handshakes");
  const rows: [string, Figure | undefined][] = [
    ["library, Noise XX over TCP", medianOf(samples, "lib-noise-tcp", "handshakes")],
    ["library, Noise resumed over TCP", medianOf(samples, "lib-noise-tcp", "handshakes-resumed")],
    [PEER_LABEL, medianOf(samples, "peer-libp2p-noise", "handshakes")],
  ];
  const pair = (name: string, unit: string, pick: (f: Figure) => number) => {
    if (tls !== undefined) {
      results.push({
        name: `${name}: native TLS (baseline)`,
        value: round(pick(tls)),
        unit,
        baseline: null,
        ratio: null,
      });
    }
    for (const [label, figure] of rows) {
      if (figure === undefined) continue;
      results.push({
        name: `${name}: ${label}`,
        value: round(pick(figure)),
        unit,
        baseline: tls === undefined ? null : round(pick(tls)),
        ratio: tls === undefined ? null : round(pick(figure) / pick(tls), 3),
      });
    }
  };
  pair("handshakes per second (wall clock)", "handshakes/s", (f) => f.value);
  pair(
    "handshakes per second of server CPU time",
    "handshakes/CPU-s",
    (f) => f.perCpuSecond ?? NaN,
  );
  const rawIdle = medianOf(samples, "raw-tcp", "idle");
  const libIdle = medianOf(samples, "lib-noise-tcp", "idle");
  if (rawIdle !== undefined) {
    results.push({
      name: `resident memory per idle connection (${connectionCount}): raw TCP (baseline)`,
      value: round(rawIdle.value),
      unit: "KiB",
      baseline: null,
      ratio: null,
    });
  }
  if (libIdle !== undefined) {
    results.push({
      name: `resident memory per idle connection (${connectionCount}): library, Noise NK over TCP`,
      value: round(libIdle.value),
      unit: "KiB",
      baseline: rawIdle === undefined ? null : round(rawIdle.value),
      ratio: rawIdle === undefined ? null : round(libIdle.value / rawIdle.value, 3),
    });
  }
  return results;
}

/** A ratio for a note: `1.23x`, or `n/a` when a side was not measured. */
function times(value: number | null): string {
  return value === null ? "n/a" : `${value}x`;
}

/** A figure for a note, rounded, or `n/a`. */
function shown(value: number | undefined): string {
  return String(fixed(value) ?? "n/a");
}

/** A figure rounded for the report, or `null` when it was not measured. */
function fixed(value: number | undefined): number | null {
  return value === undefined || !Number.isFinite(value) ? null : round(value);
}

function round(value: number, digits = 2): number {
  if (Math.abs(value) >= 100) return Math.round(value);
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function targets(
  samples: Samples,
  local: TargetFigure[],
  ceiling?: AeadCeiling,
  x25519?: X25519Cost,
): Target[] {
  const out: Target[] = [];
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? null : round(a / b, 3);
  const both = (...checks: (boolean | null)[]) =>
    checks.includes(null) ? null : checks.every((c) => c === true);
  const p1 = local.find((t) => t.id === "P1");
  if (p1 !== undefined) out.push(p1);

  // P2: the round trip, median and p99 against raw TCP in the same run.
  const rawRtt = medianOf(samples, "raw-tcp", "rtt");
  const noiseRtt = medianOf(samples, "lib-noise-tcp", "rtt");
  const rttMedian = ratio(noiseRtt?.value, rawRtt?.value);
  const rttP99 = ratio(noiseRtt?.p99, rawRtt?.p99);
  out.push({
    id: "P2",
    value: rttMedian,
    goal: "Noise NK over TCP, 64 B round trip: median <= 1.3x raw TCP echo, p99 <= 2x",
    met: both(rttMedian === null ? null : rttMedian <= 1.3, rttP99 === null ? null : rttP99 <= 2),
    measured: {
      noiseMedianUs: fixed(noiseRtt?.value),
      rawMedianUs: fixed(rawRtt?.value),
      medianRatio: rttMedian,
      noiseP99Us: fixed(noiseRtt?.p99),
      rawP99Us: fixed(rawRtt?.p99),
      p99Ratio: rttP99,
    },
    note: `median ${times(rttMedian)} (${shown(noiseRtt?.value)} vs ${shown(rawRtt?.value)} µs), ` +
      `p99 ${times(rttP99)} (${shown(noiseRtt?.p99)} vs ${shown(rawRtt?.p99)} µs)`,
  });

  const rawStream = medianOf(samples, "raw-tcp", "stream64")?.value;
  const plain = ratio(medianOf(samples, "lib-plain-tcp", "stream64")?.value, rawStream);
  const noise = ratio(medianOf(samples, "lib-noise-tcp", "stream64")?.value, rawStream);
  out.push({
    id: "P3",
    value: plain,
    goal:
      "pipelined 64 B: plaintext >= 0.5x raw TCP echo with a per-message handler, Noise >= 0.3x",
    met: plain === null || noise === null ? null : plain >= 0.5 && noise >= 0.3,
    note: `plaintext ${times(plain)}, Noise ${times(noise)}`,
  });

  // P4: 64 KiB bulk against the AEAD ceiling and the TLS baseline with TCP_NODELAY.
  const noiseBulk = medianOf(samples, "lib-noise-tcp", "bulk64k")?.value;
  const nodelayTls = medianOf(samples, "raw-node-tls", "bulk64k")?.value;
  const nativeTls = medianOf(samples, "raw-tls", "bulk64k")?.value;
  const peerBulk = medianOf(samples, "peer-libp2p-noise", "bulk64k")?.value;
  const toCeiling = ratio(noiseBulk, ceiling?.ceilingMBs);
  const toNodelay = ratio(noiseBulk, nodelayTls);
  const toNative = ratio(noiseBulk, nativeTls);
  out.push({
    id: "P4",
    value: toCeiling,
    goal: "one-way 64 KiB messages, Noise NK over TCP >= 0.9x the AEAD-ceiling row and >= 0.8x " +
      "the TLS baseline with TCP_NODELAY (node:tls server)",
    met: both(
      toCeiling === null ? null : toCeiling >= 0.9,
      toNodelay === null ? null : toNodelay >= 0.8,
    ),
    measured: {
      noiseMBs: fixed(noiseBulk),
      aeadCeilingMBs: ceiling?.ceilingMBs ?? null,
      toAeadCeiling: toCeiling,
      nodelayTlsMBs: fixed(nodelayTls),
      toNodelayTls: toNodelay,
      nativeTlsMBs: fixed(nativeTls),
      toNativeTls: toNative,
      libp2pNoiseMBs: fixed(peerBulk),
      toLibp2pNoise: ratio(noiseBulk, peerBulk),
    },
    note: `${times(toCeiling)} the AEAD ceiling (${ceiling?.ceilingMBs ?? "n/a"} MB/s; seal ` +
      `alone ${ceiling?.sealMBs ?? "-"}, open alone ${ceiling?.openMBs ?? "-"}), ${
        times(toNodelay)
      } ` +
      `the node:tls baseline with TCP_NODELAY (${shown(nodelayTls)} MB/s); for reference ` +
      `${times(toNative)} Deno's native TLS (${shown(nativeTls)} MB/s, Nagle on its server) and ` +
      `${times(ratio(noiseBulk, peerBulk))} js-libp2p-noise (${shown(peerBulk)} MB/s)`,
  });

  // P5: handshakes, per second of the server process's CPU time.
  const xx = medianOf(samples, "lib-noise-tcp", "handshakes")?.perCpuSecond;
  const tls = medianOf(samples, "raw-tls", "handshakes")?.perCpuSecond;
  const peer = medianOf(samples, "peer-libp2p-noise", "handshakes")?.perCpuSecond;
  const resumed = medianOf(samples, "lib-noise-tcp", "handshakes-resumed")?.perCpuSecond;
  const xxUs = xx === undefined ? undefined : 1e6 / xx;
  const toX25519 = ratio(xxUs, x25519?.xxResponderUs);
  out.push({
    id: "P5a",
    value: toX25519,
    goal: "full XX handshake: server CPU per handshake <= 1.3x the X25519 cost of one XX " +
      "responder measured in the same run (1 key generation + 3 DH, default provider)",
    met: toX25519 === null ? null : toX25519 <= 1.3,
    measured: {
      serverCpuUsPerHandshake: fixed(xxUs),
      x25519UsPerHandshake: x25519?.xxResponderUs ?? null,
      keygenUs: x25519?.keygenUs ?? null,
      dhUs: x25519?.dhUs ?? null,
      ratio: toX25519,
    },
    note: x25519 === undefined
      ? "X25519 not measured (run the local measures)"
      : `${shown(xxUs)} µs of server CPU per handshake vs ${x25519.xxResponderUs} µs of X25519 ` +
        `(${x25519.provider} provider: key generation ${x25519.keygenUs} µs, DH ${x25519.dhUs} µs)`,
  });
  const toPeer = ratio(xx, peer);
  out.push({
    id: "P5b",
    value: toPeer,
    goal: `XX handshakes per server CPU-second >= 2x js-libp2p-noise ${LIBP2P_NOISE_VERSION}'s`,
    met: toPeer === null ? null : toPeer >= 2,
    measured: {
      libraryPerCpuSecond: fixed(xx),
      libp2pNoisePerCpuSecond: fixed(peer),
      ratio: toPeer,
    },
    note: `${shown(xx)} vs ${shown(peer)} handshakes per server CPU-second`,
  });
  const toTls = ratio(resumed, tls);
  out.push({
    id: "P5c",
    value: toTls,
    goal: "resumed handshakes per server CPU-second >= 1.2x native TLS full handshakes",
    met: toTls === null ? null : toTls >= 1.2,
    measured: {
      resumedPerCpuSecond: fixed(resumed),
      nativeTlsPerCpuSecond: fixed(tls),
      ratio: toTls,
    },
    note: resumed === undefined
      ? "not measured: the library has no session resumption yet (no lib-noise-tcp/" +
        `handshakes-resumed measure); native TLS full handshakes: ${shown(tls)} per server ` +
        "CPU-second"
      : `${shown(resumed)} resumed vs ${shown(tls)} native TLS full handshakes per server ` +
        "CPU-second",
  });

  // P6: memory per idle encrypted connection, the raw socket's beside it.
  const idle = medianOf(samples, "lib-noise-tcp", "idle");
  const rawIdle = medianOf(samples, "raw-tcp", "idle");
  out.push({
    id: "P6",
    value: idle === undefined ? null : round(idle.value),
    goal: `<= 12 KiB resident memory per idle encrypted connection (${connectionCount} open)`,
    met: idle === undefined ? null : idle.value <= 12,
    measured: { noiseKiB: fixed(idle?.value), rawTcpKiB: fixed(rawIdle?.value) },
    note: `raw TCP socket ${shown(rawIdle?.value)} KiB` +
      (connectionCount < 10_000
        ? `; only ${connectionCount} connections: the file-descriptor hard limit is ${fdLimit}`
        : ""),
  });
  const p7 = local.find((t) => t.id === "P7");
  if (p7 !== undefined) out.push(p7);

  // M1 (issue 13): head-of-line latency, PING while 8 MiB replies flow against idle PING.
  const hol = medianOf(samples, "lib-noise-tcp", "hol");
  const holRatio = ratio(hol?.value, hol?.idle);
  const holP99 = ratio(hol?.p99, hol?.idleP99);
  out.push({
    id: "M1",
    value: holRatio,
    goal: "PING p50 while 8 MiB replies flow within 3x of idle PING (Noise NK over TCP)",
    met: holRatio === null ? null : holRatio <= 3,
    measured: {
      loadedP50Us: fixed(hol?.value),
      loadedP99Us: fixed(hol?.p99),
      idleP50Us: fixed(hol?.idle),
      idleP99Us: fixed(hol?.idleP99),
      p50Ratio: holRatio,
      p99Ratio: holP99,
      replyMiBps: fixed(hol?.replies),
    },
    note: `p50 ${times(holRatio)} (${shown(hol?.value)} vs ${shown(hol?.idle)} µs), p99 ${
      times(holP99)
    } (${shown(hol?.p99)} vs ${shown(hol?.idleP99)} µs), 8 MiB replies ${
      shown(hol?.replies)
    } MiB/s`,
  });
  // M2 (issue 13): one stream with 64 KiB writes against 64 KiB bulk messages.
  const stream = medianOf(samples, "lib-noise-tcp", "stream64k")?.value;
  const bulk = medianOf(samples, "lib-noise-tcp", "bulk64k")?.value;
  const streamRatio = ratio(stream, bulk);
  out.push({
    id: "M2",
    value: streamRatio,
    goal: "one stream with 64 KiB writes, as a ratio to 64 KiB bulk messages (reported, no goal)",
    met: null,
    measured: { streamMBs: fixed(stream), bulkMBs: fixed(bulk), ratio: streamRatio },
    note: `${shown(stream)} MB/s against ${shown(bulk)} MB/s`,
  });
  // PL1 (issue 14): pooled requests over 4 connections against one client, Noise over TCP.
  const pooled = medianOf(samples, "lib-noise-tcp", "pool64")?.value;
  const single = medianOf(samples, "lib-noise-tcp", "request64")?.value;
  const poolRatio = ratio(pooled, single);
  const pooledOne = medianOf(samples, "lib-noise-tcp", "pool64x1")?.value;
  out.push({
    id: "PL1",
    value: poolRatio,
    goal: "pooled 64 B requests over 4 connections, as a ratio to one client (reported, no goal)",
    met: null,
    measured: {
      pooledPerS: fixed(pooled),
      pooledOneConnectionPerS: fixed(pooledOne),
      oneClientPerS: fixed(single),
      ratio: poolRatio,
    },
    note: `${shown(pooled)} msg/s against ${shown(single)} msg/s; a pool of 1 connection ${
      shown(pooledOne)
    } msg/s (the pool's own cost)`,
  });
  return out;
}

async function machine(): Promise<Record<string, unknown>> {
  let cpu = "unknown";
  try {
    // Reading /proc directly needs --allow-all in Deno; a shell can.
    const { stdout } = await new Deno.Command("sh", {
      args: ["-c", "grep -m1 'model name' /proc/cpuinfo"],
      stdout: "piped",
      stderr: "null",
    }).output();
    cpu = /model name\s*:\s*(.*)/.exec(new TextDecoder().decode(stdout))?.[1] ?? cpu;
  } catch {
    // No shell or no /proc.
  }
  return {
    os: `${Deno.build.os} ${Deno.build.arch}`,
    cpu,
    cores: navigator.hardwareConcurrency,
    fdHardLimit: fdLimit,
  };
}

function table(results: Result[], found: Target[]): string {
  const out: string[] = [];
  out.push("| figure | value | unit | baseline | ratio |");
  out.push("|---|---:|---|---:|---:|");
  for (const r of results) {
    out.push(
      `| ${r.name} | ${r.value} | ${r.unit} | ${r.baseline ?? ""} | ${
        r.ratio === null ? "" : `${r.ratio}x`
      } |`,
    );
  }
  out.push("");
  out.push("| target | value | goal | met |");
  out.push("|---|---:|---|---|");
  for (const t of found) {
    const met = t.met === null ? "not measured" : t.met ? "yes" : "**no**";
    out.push(`| ${t.id} | ${t.value ?? ""} | ${t.goal}${t.note ? ` (${t.note})` : ""} | ${met} |`);
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------

const bail = () => {
  for (const child of started) kill(child);
  Deno.exit(130);
};
Deno.addSignalListener("SIGINT", bail);
Deno.addSignalListener("SIGTERM", bail);

try {
  const cert = await generateSelfSignedCert({ commonName: "127.0.0.1", altNames: ["127.0.0.1"] });
  await Deno.writeTextFile(`${tmp}/cert.pem`, cert.certPem);
  await Deno.writeTextFile(`${tmp}/key.pem`, cert.keyPem, { mode: 0o600 });
  const began = performance.now();
  const samples: Samples = new Map();
  for (let r = 1; r <= rounds; r++) await runRound(samples, r);
  const local: TargetFigure[] = [];
  let ceiling: AeadCeiling | undefined;
  if (only === undefined || only.includes("local")) {
    log("codec (P1), compression (P7) and the AEAD ceiling, in this process");
    local.push(measureCodec(quick), await measureCompression(quick, tmp));
    ceiling = measureAeadCeiling(quick);
  }
  let x25519: X25519Cost | undefined;
  if (only === undefined || only.includes("local") || only.includes("handshakes")) {
    log("X25519 through the default provider (P5), in this process");
    x25519 = await measureX25519(quick);
  }
  const results = collect(samples);
  if (ceiling !== undefined) {
    results.push({
      name: "AEAD ceiling: seal then open 64 KiB records with node:crypto, one process",
      value: ceiling.ceilingMBs,
      unit: "MB/s",
      baseline: null,
      ratio: null,
    });
  }
  if (x25519 !== undefined) {
    for (
      const [name, value] of [
        ["key generation", x25519.keygenUs],
        ["one DH, peer key imported", x25519.dhUs],
        ["one XX responder: 1 key generation + 3 DH", x25519.xxResponderUs],
      ] as const
    ) {
      results.push({
        name: `X25519 with the ${x25519.provider} provider, CPU time, one process: ${name}`,
        value,
        unit: "µs",
        baseline: null,
        ratio: null,
      });
    }
  }
  const found = targets(samples, local, ceiling, x25519);
  console.log(table(results, found));
  const elapsed = (performance.now() - began) / 1000;
  console.log(
    `\n${rounds} round(s), ${seconds} s per measure, ${elapsed.toFixed(0)} s in all; ` +
      `medians over rounds.`,
  );
  if (jsonPath !== undefined) {
    const report = {
      machine: await machine(),
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      libp2pNoise: LIBP2P_NOISE_VERSION,
      rounds,
      secondsPerMeasure: seconds,
      results,
      targets: found,
    };
    await Deno.writeTextFile(jsonPath, JSON.stringify(report, null, 2) + "\n");
    console.log(`wrote ${jsonPath}`);
  }
} finally {
  for (const child of started) kill(child);
  await Deno.remove(tmp, { recursive: true });
}
