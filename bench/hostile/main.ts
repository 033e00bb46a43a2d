/**
 * The hostile-peer benchmark (issue 10): the figures the hardening promised, each measured
 * against a real daemon in its own process, with attackers and honest clients in other
 * processes, on 127.0.0.1 only, bounded in time, and every process stopped by its PID at the
 * end (also on errors and on Ctrl-C).
 *
 * ```sh
 * deno task bench:hostile
 * deno task bench:hostile -- --json out.json
 * deno task bench:hostile -- --only memory,keyupdate
 * ```
 *
 * Scenarios (`--only` takes their names, comma-separated):
 *
 * - `memory`: server RSS (after garbage collections; median of 3 samples) before and while 200
 *   sockets each hold an unfinished handshake packet: a header only (the control), a header
 *   announcing `MAX_HANDSHAKE_PAYLOAD` and all but its last byte, and a header announcing
 *   16 MiB followed by up to 1 MiB (refused at the header: the sockets are closed). Handshake
 *   admission is disabled for it (`NETWORK_PROTOCOL_SERVER_HANDSHAKE_RATE=0`,
 *   `..._RATE_PER_ADDRESS=0`) so that all 200 are let in.
 * - `log`: the server at log level info, its standard error captured; 5 authenticated raw peers
 *   each send 5 records of 65,000 one-byte messages of an unknown type (the study's D2 flood),
 *   then 4 peers reconnect and do it again for 5 s; log bytes (up to the server's exit, whose
 *   shutdown writes the log budget's summary lines) per byte sent, server CPU, and the latency
 *   of 5 honest clients meanwhile.
 * - `keyupdate`: the cost of opening one KEY_UPDATE record (`SecureChannel.open`, in this
 *   process), then peers that send (KEY_UPDATE, DATA(ping)) pairs or consecutive KEY_UPDATEs:
 *   records the server opened before it closed the session, its CPU, honest latency.
 * - `flood`: a control (two processes that only take CPU), then two attacker processes doing
 *   complete NK handshakes (or replaying a recorded first message) as fast as they can for
 *   5 s, with handshake admission at its defaults and disabled; handshakes per second, server
 *   CPU, and honest throughput relative to a baseline measured just before on the same server.
 *
 * Each attack runs twice, each time against a fresh daemon: a quiet pass without honest clients
 * (its server CPU time and log bytes are the attack's alone) and a loud pass with 5 honest
 * clients (a baseline phase, then the attack). The attackers share the machine's cores with the
 * daemon and the honest clients, which the flood control shows.
 *
 * The daemon reads `NETWORK_PROTOCOL_*` variables as `npro serve` does: besides those the
 * script sets (the log level, and the admission rates where a scenario says so), any such
 * variable in the environment applies to it.
 *
 * Options: `--json <path>`, `--only <scenario,...>`, `--sockets <n>` (memory, default 200),
 * `--attack-seconds <s>` (default 5).
 *
 * @module
 */

import { CipherState } from "../../src/secure/noise/cipher_state.ts";
import { encodeBatch } from "../../src/core/batch.ts";
import { SecureChannel } from "../../src/secure/channel.ts";
import { MAX_HANDSHAKE_PAYLOAD } from "../../src/secure/handshake.ts";
import {
  lines,
  median,
  parseArgs,
  type PhaseStats,
  type ServerReady,
  type ServerStats,
  sleep,
} from "./common.ts";

const args = parseArgs(Deno.args);
const jsonPath = args.get("json");
const only = args.get("only")?.split(",");
const sockets = Number(args.get("sockets") ?? 200);
const attackSeconds = Number(args.get("attack-seconds") ?? 5);
const HERE = new URL(".", import.meta.url);
const script = (name: string) => new URL(name, HERE).pathname;
const t0 = performance.now();
const note = (text: string) =>
  console.error(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${text}`);
const wanted = (name: string) => only === undefined || only.includes(name);

// ---------------------------------------------------------------------------------------------
// Child processes

const children = new Set<Child>();

/** A child process: JSON lines on stdout, lines to stdin, standard error counted. */
class Child {
  readonly name: string;
  readonly process: Deno.ChildProcess;
  readonly status: Promise<Deno.CommandStatus>;
  /** Bytes and lines written to standard error (the daemon's log). */
  stderrBytes = 0;
  stderrLines = 0;
  /** The first 200 lines of standard error, and the last 20. */
  readonly firstLines: string[] = [];
  readonly lastLines: string[] = [];
  readonly #stdout: AsyncGenerator<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderrDone: Promise<void>;

  constructor(name: string, file: string, argv: string[], flags: string[], env = {}) {
    this.name = name;
    this.process = new Deno.Command("deno", {
      args: ["run", "--no-prompt", ...flags, script(file), ...argv],
      env: { NO_COLOR: "1", RUST_BACKTRACE: "0", ...env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    children.add(this);
    this.status = this.process.status.finally(() => children.delete(this));
    this.#stdout = lines(this.process.stdout);
    this.#stdin = this.process.stdin.getWriter();
    this.#stderrDone = this.#pumpStderr();
  }

  async #pumpStderr(): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    try {
      for await (const chunk of this.process.stderr) {
        this.stderrBytes += chunk.length;
        rest += decoder.decode(chunk, { stream: true });
        let index: number;
        while ((index = rest.indexOf("\n")) >= 0) {
          const line = rest.slice(0, index);
          rest = rest.slice(index + 1);
          this.stderrLines++;
          if (this.firstLines.length < 200) this.firstLines.push(line);
          this.lastLines.push(line);
          if (this.lastLines.length > 20) this.lastLines.shift();
        }
      }
    } catch {
      // The process is gone.
    }
  }

  /** The next JSON line on stdout, within `timeoutMs`. */
  async next<T>(timeoutMs: number, what: string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    const exited = this.status.then((s) => {
      throw new Error(
        `${this.name} exited (code ${s.code}) before ${what}; its stderr ended with:\n` +
          this.lastLines.join("\n"),
      );
    });
    exited.catch(() => {});
    try {
      for (;;) {
        const line = await Promise.race([this.#stdout.next(), timeout, exited]);
        if (line.done) {
          await Promise.race([this.status, sleep(2000)]);
          throw new Error(
            `${this.name}: stdout closed before ${what}; its stderr ended with:\n` +
              this.lastLines.join("\n"),
          );
        }
        if (line.value.startsWith("{")) return JSON.parse(line.value) as T;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Writes a line to its stdin. */
  async send(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(line + "\n"));
  }

  /** Waits for it to exit (at most `timeoutMs`, then kills it) and for its stderr to end. */
  async finish(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.status,
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    this.kill();
    await this.status;
    await this.#stderrDone;
  }

  /** Kills it (SIGKILL, by its PID) if it still runs. */
  kill(): void {
    if (!children.has(this)) return;
    try {
      this.process.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

function killAll(): void {
  for (const child of [...children]) child.kill();
}

const onSignal = () => {
  killAll();
  Deno.exit(130);
};
Deno.addSignalListener("SIGINT", onSignal);
Deno.addSignalListener("SIGTERM", onSignal);

const NET = "--allow-net=127.0.0.1";

/** A daemon process with its key and a stats helper. */
class ServerProcess {
  readonly child: Child;
  ready!: ServerReady;

  constructor(label: string, env: Record<string, string>) {
    this.child = new Child(`server (${label})`, "server.ts", ["--max-seconds", "150"], [
      NET,
      "--allow-env=NETWORK_PROTOCOL_*",
      "--v8-flags=--expose-gc",
    ], { NETWORK_PROTOCOL_LOGGING_LOG_LEVEL: "info", ...env });
  }

  async start(): Promise<this> {
    this.ready = await this.child.next<ServerReady>(30_000, "its ready line");
    return this;
  }

  async stats(): Promise<ServerStats> {
    await this.child.send("stats");
    return await this.child.next<ServerStats>(60_000, "stats");
  }

  /** The median of `n` stats samples, `gapMs` apart (RSS and CPU from the same samples). */
  async sampled(n: number, gapMs: number): Promise<ServerStats> {
    const all: ServerStats[] = [];
    for (let i = 0; i < n; i++) {
      if (i > 0) await sleep(gapMs);
      all.push(await this.stats());
    }
    return {
      rss: median(all.map((s) => s.rss)),
      heapUsed: median(all.map((s) => s.heapUsed)),
      external: median(all.map((s) => s.external)),
      cpuMs: all.at(-1)!.cpuMs,
      cpuAfterGcMs: all.at(-1)!.cpuAfterGcMs,
      connections: all.at(-1)!.connections,
      handshaking: median(all.map((s) => s.handshaking)),
    };
  }

  get keyArgs(): string[] {
    return ["--port", String(this.ready.port), "--key", this.ready.publicKey];
  }

  async stop(): Promise<void> {
    try {
      await this.child.send("stop");
    } catch {
      // Already gone.
    }
    await this.child.finish(5000);
  }
}

function attacker(label: string, argv: string[]): Child {
  return new Child(`attacker (${label})`, "attacks.ts", [...argv, "--max-seconds", "90"], [NET]);
}

/** The honest clients. */
class Honest {
  readonly child: Child;

  constructor(server: ServerProcess) {
    this.child = new Child("honest clients", "honest.ts", [
      ...server.keyArgs,
      "--clients",
      "5",
      "--timeout-ms",
      "10000",
      "--max-seconds",
      "120",
    ], [NET]);
  }

  async start(): Promise<this> {
    await this.child.next(30_000, "its ready line");
    return this;
  }

  phase(name: string): Promise<void> {
    return this.child.send(`phase ${name}`);
  }

  async stop(): Promise<Record<string, PhaseStats>> {
    await this.child.send("stop");
    const { phases } = await this.child.next<{ phases: Record<string, PhaseStats> }>(
      30_000,
      "its results",
    );
    await this.child.finish(5000);
    return phases;
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

const results: Record<string, unknown> = {};
const table: string[][] = [];
const row = (...cells: (string | number)[]) => table.push(cells.map(String));
const kib = (bytes: number) => (bytes / 1024).toFixed(1);
const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : "-");

async function memoryScenario(): Promise<void> {
  // "header only" is the control: what a socket in its handshake costs without buffered bytes.
  const variants = [
    { name: "header only", announce: MAX_HANDSHAKE_PAYLOAD, body: 0 },
    {
      name: `hello ${MAX_HANDSHAKE_PAYLOAD} B`,
      announce: MAX_HANDSHAKE_PAYLOAD,
      body: MAX_HANDSHAKE_PAYLOAD - 1,
    },
    { name: "announce 16 MiB", announce: 16 * 1024 * 1024, body: 1024 * 1024 },
  ];
  const out: unknown[] = [];
  for (const variant of variants) {
    note(`memory: ${sockets} sockets, ${variant.name}`);
    const server = await new ServerProcess("memory", {
      NETWORK_PROTOCOL_SERVER_HANDSHAKE_RATE: "0",
      NETWORK_PROTOCOL_SERVER_HANDSHAKE_RATE_PER_ADDRESS: "0",
    }).start();
    try {
      await sleep(500);
      const before = await server.sampled(3, 100);
      const attack = attacker("preauth", [
        "--attack",
        "preauth",
        "--port",
        String(server.ready.port),
        "--sockets",
        String(sockets),
        "--announce",
        String(variant.announce),
        "--body",
        String(variant.body),
      ]);
      const holding = await attack.next<{
        bytesWritten: number;
        medianBytesWritten: number;
        closedByServer: number;
        medianCloseMs: number;
        writtenMs: number;
      }>(20_000, "holding");
      const during = await server.sampled(3, 100);
      await attack.send("release");
      await attack.next(20_000, "released");
      await attack.finish(5000);
      await sleep(300);
      const after = await server.sampled(3, 100);
      const held = sockets - holding.closedByServer;
      const perConnection = held > 0 ? (during.rss - before.rss) / held : NaN;
      const externalPer = held > 0 ? (during.external - before.external) / held : NaN;
      const figure = {
        variant: variant.name,
        announce: variant.announce,
        sockets,
        ...holding,
        handshakingOnServer: during.handshaking,
        rssBefore: before.rss,
        rssDuring: during.rss,
        rssAfter: after.rss,
        externalBefore: before.external,
        externalDuring: during.external,
        rssPerHeldConnectionKiB: perConnection / 1024,
        externalPerHeldConnectionKiB: externalPer / 1024,
        serverLogBytes: server.child.stderrBytes,
      };
      out.push(figure);
      row(
        "memory",
        variant.name,
        `${held}/${sockets} held, ${holding.closedByServer} closed by server` +
          (holding.closedByServer > 0 ? ` (median ${ms(holding.medianCloseMs)} ms)` : ""),
        `RSS ${mib(before.rss)} -> ${mib(during.rss)} -> ${mib(after.rss)} MiB`,
        held > 0
          ? `${kib(perConnection)} KiB RSS / held conn (external ${kib(externalPer)} KiB)`
          : `${kib(during.rss - before.rss)} KiB RSS in all`,
      );
    } finally {
      await server.stop();
    }
  }
  results.memory = out;
}

interface AuthAttackResult {
  connections: number;
  handshakeFailures: number;
  bytesWritten: number;
  recordsWritten: number;
  notEndedByServer: number;
  closeCodes: Record<string, number>;
  reasons: string[];
  medianEndMs: number;
  maxEndMs: number;
  perConnectionMedian: number;
  perConnectionTotal: number;
  seconds: number;
}

/** What one pass of an attack against a fresh server measured. */
interface Pass {
  /** What each attacker process printed. */
  outputs: Record<string, unknown>[];
  /** From starting the attackers to their last result, milliseconds. */
  attackMs: number;
  /** Server CPU (user + system) from just before the attack to 500 ms after it. */
  cpuMs: number;
  /** Server RSS after the attack (after a garbage collection). */
  rssAfter: number;
  /** Server log bytes from just before the attack to 500 ms after it. */
  logBytesDuringAttack: number;
  /** The same to the end of the server, whose shutdown flushes the budget's summary lines. */
  logBytesWithShutdown: number;
  /** Lines in `logBytesWithShutdown`. */
  logLines: number;
  /** The server's first log lines. */
  logSample: string[];
  /** Honest clients' figures per phase (`baseline`, `attack`), in a loud pass. */
  honest: Record<string, PhaseStats>;
}

/**
 * Runs one attack against a fresh server. A quiet pass has no honest clients, so that the
 * server's CPU time and log are the attack's alone; a loud pass first measures `baselineMs` of
 * honest traffic, then keeps it going through the attack and 500 ms after it.
 */
async function pass(
  label: string,
  env: Record<string, string>,
  attacks: { label: string; argv: string[] }[],
  baselineMs: number | "quiet",
): Promise<Pass> {
  const server = await new ServerProcess(label, env).start();
  let honest: Honest | undefined;
  const running: Child[] = [];
  try {
    if (baselineMs === "quiet") {
      await sleep(300);
    } else {
      honest = await new Honest(server).start();
      await honest.phase("baseline");
      await sleep(baselineMs);
    }
    const before = await server.stats();
    const logBefore = server.child.stderrBytes;
    const linesBefore = server.child.stderrLines;
    await honest?.phase("attack");
    const started = performance.now();
    for (const a of attacks) running.push(attacker(a.label, [...a.argv, ...server.keyArgs]));
    const outputs = await Promise.all(
      running.map((child) => child.next<Record<string, unknown>>(80_000, "its result")),
    );
    const attackMs = performance.now() - started;
    await sleep(500);
    const after = await server.stats();
    const logDuring = server.child.stderrBytes - logBefore;
    const phases = honest === undefined ? {} : await honest.stop();
    await server.stop();
    return {
      outputs,
      attackMs,
      cpuMs: after.cpuMs - before.cpuAfterGcMs,
      rssAfter: after.rss,
      logBytesDuringAttack: logDuring,
      logBytesWithShutdown: server.child.stderrBytes - logBefore,
      logLines: server.child.stderrLines - linesBefore,
      logSample: server.child.firstLines.slice(0, 40),
      honest: phases,
    };
  } finally {
    await Promise.all(running.map((child) => child.finish(3000)));
    if (honest !== undefined) await honest.child.finish(3000);
    await server.stop();
  }
}

/** A quiet pass (CPU, log), then a loud pass (honest clients), each on a fresh server. */
async function attackBoth(
  label: string,
  env: Record<string, string>,
  attacks: { label: string; argv: string[] }[],
  baselineMs: number,
): Promise<{ quiet: Pass; loud: Pass }> {
  const quiet = await pass(label, env, attacks, "quiet");
  const loud = await pass(label, env, attacks, baselineMs);
  return { quiet, loud };
}

function honestCells(phases: Record<string, PhaseStats>): string {
  const base = phases.baseline;
  const attack = phases.attack;
  if (base === undefined || attack === undefined) return "honest: -";
  return `honest ${attack.perSecond.toFixed(0)}/s (${
    (attack.perSecond / base.perSecond * 100).toFixed(0)
  }% of ${base.perSecond.toFixed(0)}/s), p99 ${ms(attack.p99)} ms, max ${
    ms(attack.max)
  } ms, longest gap ${ms(attack.longestGap)} ms, failed ${attack.failed}`;
}

async function logScenario(): Promise<void> {
  const out: Record<string, unknown> = {};
  const runs = [
    {
      name: "burst 5 peers x 5 records",
      argv: ["--peers", "5", "--records", "5", "--messages", "65000"],
    },
    {
      name: `reconnecting 4 peers for ${attackSeconds} s`,
      argv: [
        "--peers",
        "4",
        "--records",
        "1",
        "--messages",
        "65000",
        "--seconds",
        String(attackSeconds),
      ],
    },
  ];
  for (const run of runs) {
    note(`log: ${run.name}`);
    const { quiet, loud } = await attackBoth("log", {}, [{
      label: "logflood",
      argv: ["--attack", "logflood", ...run.argv],
    }], 2000);
    const a = quiet.outputs[0] as unknown as AuthAttackResult;
    const perByte = quiet.logBytesWithShutdown / a.bytesWritten;
    out[run.name] = {
      quiet,
      loud,
      logBytesPerByteSent: perByte,
      serverCpuMsPerConnection: quiet.cpuMs / Math.max(1, a.connections),
    };
    row(
      "log flood",
      run.name,
      `${a.connections} conns, ${mib(a.bytesWritten)} MiB sent, closes ${
        JSON.stringify(a.closeCodes)
      }, ${a.handshakeFailures} failed handshakes`,
      `${quiet.logBytesWithShutdown} B of log in ${quiet.logLines} lines = ${
        perByte.toExponential(2)
      } B per byte sent; server CPU ${ms(quiet.cpuMs)} ms (${
        ms(quiet.cpuMs / Math.max(1, a.connections))
      } ms/conn) in ${ms(quiet.attackMs)} ms`,
      honestCells(loud.honest),
    );
  }
  results.log = out;
}

/** Cost of opening one KEY_UPDATE record, in this process. */
function keyUpdateMicro(count: number, rounds: number) {
  const key = () => crypto.getRandomValues(new Uint8Array(32));
  const ping = encodeBatch([{ type: "ping" }]);
  const make = () => {
    const a = key();
    const b = key();
    const sender = new SecureChannel(
      { send: new CipherState(a), receive: new CipherState(b) },
      { minKeyUpdateIntervalMs: 0 },
    );
    const receiver = new SecureChannel(
      { send: new CipherState(b), receive: new CipherState(a) },
      { maxKeyUpdatesPerSecond: Infinity, minKeyUpdateIntervalMs: 0 },
    );
    return { sender, receiver };
  };
  const pairsNs: number[] = [];
  const dataNs: number[] = [];
  const directNs: number[] = [];
  for (let round = 0; round < rounds; round++) {
    // Pairs: KEY_UPDATE then DATA(ping) (a KEY_UPDATE must follow a DATA record).
    {
      const { sender, receiver } = make();
      const records: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        sender.sealKeyUpdate(records);
        sender.sealData(ping, records);
      }
      let keyUpdateTime = 0;
      const start = performance.now();
      for (let i = 0; i < records.length; i += 2) {
        const t = performance.now();
        receiver.open(records[i]!);
        keyUpdateTime += performance.now() - t;
        receiver.open(records[i + 1]!);
      }
      pairsNs.push((performance.now() - start) * 1e6 / count);
      directNs.push(keyUpdateTime * 1e6 / count);
    }
    // The same number of DATA(ping) records alone.
    {
      const { sender, receiver } = make();
      const records: Uint8Array[] = [];
      for (let i = 0; i < count; i++) sender.sealData(ping, records);
      const start = performance.now();
      for (const record of records) receiver.open(record);
      dataNs.push((performance.now() - start) * 1e6 / count);
    }
  }
  const pair = median(pairsNs);
  const data = median(dataNs);
  return {
    count,
    rounds,
    pairNs: pair,
    dataRecordNs: data,
    keyUpdateNs: pair - data,
    keyUpdateTimedDirectlyNs: median(directNs),
  };
}

async function keyUpdateScenario(): Promise<void> {
  note("keyupdate: micro-measurement of SecureChannel.open on KEY_UPDATE records");
  const micro = keyUpdateMicro(50_000, 3);
  row(
    "KEY_UPDATE",
    "open() in process (median of 3 x 50,000)",
    `KEY_UPDATE ${(micro.keyUpdateNs / 1000).toFixed(2)} µs (pair ${
      (micro.pairNs / 1000).toFixed(2)
    } - DATA ${(micro.dataRecordNs / 1000).toFixed(2)}; timed directly ${
      (micro.keyUpdateTimedDirectlyNs / 1000).toFixed(2)
    } µs)`,
    "",
    "",
  );
  const out: Record<string, unknown> = { micro };
  const runs = [
    {
      name: "pairs, one connection, 50,000 records",
      argv: ["--mode", "pairs", "--per-connection", "25000", "--peers", "1"],
    },
    {
      name: "consecutive, one connection, 50,000 records",
      argv: ["--mode", "consecutive", "--per-connection", "50000", "--peers", "1"],
    },
    {
      name: `pairs, 2 peers reconnecting for ${attackSeconds} s`,
      argv: [
        "--mode",
        "pairs",
        "--per-connection",
        "1000",
        "--peers",
        "2",
        "--seconds",
        String(attackSeconds),
      ],
    },
  ];
  for (const run of runs) {
    note(`keyupdate: ${run.name}`);
    const { quiet, loud } = await attackBoth("keyupdate", {}, [{
      label: "keyupdate",
      argv: ["--attack", "keyupdate", ...run.argv],
    }], 2000);
    const a = quiet.outputs[0] as unknown as AuthAttackResult;
    out[run.name] = {
      quiet,
      loud,
      serverCpuMsPerConnection: quiet.cpuMs / Math.max(1, a.connections),
      serverCpuUsPerRecordOpened: quiet.cpuMs * 1000 / Math.max(1, a.perConnectionTotal),
    };
    row(
      "KEY_UPDATE",
      run.name,
      `${a.connections} conns, ${a.recordsWritten} records sent, opened before close: median ${a.perConnectionMedian} / total ${a.perConnectionTotal}; closes ${
        JSON.stringify(a.closeCodes)
      }`,
      `server CPU ${ms(quiet.cpuMs)} ms (${
        ms(quiet.cpuMs / Math.max(1, a.connections))
      } ms/conn, handshake included) in ${ms(quiet.attackMs)} ms`,
      honestCells(loud.honest),
    );
  }
  results.keyupdate = out;
}

async function floodScenario(): Promise<void> {
  const out: Record<string, unknown> = {};
  const configs = [
    { name: "admission defaults", env: {} },
    {
      name: "admission disabled",
      env: {
        NETWORK_PROTOCOL_SERVER_HANDSHAKE_RATE: "0",
        NETWORK_PROTOCOL_SERVER_HANDSHAKE_RATE_PER_ADDRESS: "0",
      },
    },
  ];
  // The control: two processes that only take CPU, as the two attackers do, without traffic.
  {
    note("flood: control, 2 CPU-bound processes without traffic");
    const argv = ["--attack", "burn", "--seconds", String(attackSeconds)];
    const loud = await pass("flood", {}, [
      { label: "burn 1", argv },
      { label: "burn 2", argv },
    ], 2000);
    const base = loud.honest.baseline;
    const attack = loud.honest.attack;
    out["control: 2 CPU-bound processes, no traffic"] = {
      loud,
      honestThroughputRatio: base !== undefined && attack !== undefined
        ? attack.perSecond / base.perSecond
        : NaN,
    };
    row(
      "handshake flood",
      "control: 2 CPU-bound processes",
      "no traffic to the server: what sharing the 2 cores costs the honest clients",
      "",
      honestCells(loud.honest),
    );
  }
  for (const mode of ["handshake", "replay"]) {
    for (const config of configs) {
      const name = `${mode}, ${config.name}`;
      note(`flood: ${name}`);
      const argv = [
        "--attack",
        "flood",
        "--mode",
        mode,
        "--seconds",
        String(attackSeconds),
        "--concurrency",
        "32",
      ];
      const { quiet, loud } = await attackBoth("flood", config.env, [
        { label: "flood 1", argv },
        { label: "flood 2", argv },
      ], 2000);
      const count = (p: Pass) => {
        const outputs = p.outputs as { ok: number; refused: number; errors: number }[];
        const seconds = p.attackMs / 1000;
        const ok = outputs.reduce((n, o) => n + o.ok, 0);
        const refused = outputs.reduce((n, o) => n + o.refused, 0);
        return { ok, refused, perSecond: ok / seconds, refusedPerSecond: refused / seconds };
      };
      const q = count(quiet);
      const l = count(loud);
      const base = loud.honest.baseline;
      const attack = loud.honest.attack;
      const ratio = base !== undefined && attack !== undefined
        ? attack.perSecond / base.perSecond
        : NaN;
      out[name] = {
        quiet: { ...quiet, ...q, serverCpuMsPerHandshake: quiet.cpuMs / Math.max(1, q.ok) },
        loud: { ...loud, ...l },
        honestThroughputRatio: ratio,
      };
      row(
        "handshake flood",
        name,
        `quiet: ${q.perSecond.toFixed(0)} handshakes/s, ${
          q.refusedPerSecond.toFixed(0)
        } refused/s, server CPU ${ms(quiet.cpuMs)} ms (${
          (quiet.cpuMs / Math.max(1, q.ok)).toFixed(2)
        } ms/handshake), log ${quiet.logBytesWithShutdown} B`,
        `with honest clients: ${l.perSecond.toFixed(0)} handshakes/s, ${
          l.refusedPerSecond.toFixed(0)
        } refused/s`,
        honestCells(loud.honest),
      );
    }
  }
  results.flood = out;
}

// ---------------------------------------------------------------------------------------------

let failed = false;
try {
  if (wanted("keyupdate")) await keyUpdateScenario();
  if (wanted("memory")) await memoryScenario();
  if (wanted("log")) await logScenario();
  if (wanted("flood")) await floodScenario();
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  killAll();
}

const widths = [0, 1, 2, 3, 4].map((i) => Math.max(...table.map((r) => (r[i] ?? "").length)));
console.log(
  `\nHostile-peer benchmark (Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores), ${
    ((performance.now() - t0) / 1000).toFixed(0)
  } s\n`,
);
for (const r of table) {
  console.log(`${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padEnd(widths[1]!)}  ${r[2]}`);
  if (r[3] !== "") console.log(`${"".padEnd(widths[0]! + widths[1]! + 4)}${r[3]}`);
  if (r[4] !== "") console.log(`${"".padEnd(widths[0]! + widths[1]! + 4)}${r[4]}`);
}
if (jsonPath !== undefined) {
  const slash = jsonPath.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(jsonPath.slice(0, slash), { recursive: true });
  await Deno.writeTextFile(
    jsonPath,
    JSON.stringify({ date: new Date().toISOString(), deno: Deno.version.deno, results }, null, 2),
  );
  console.log(`\nWrote ${jsonPath}`);
}
Deno.removeSignalListener("SIGINT", onSignal);
Deno.removeSignalListener("SIGTERM", onSignal);
Deno.exit(failed ? 1 : 0);
