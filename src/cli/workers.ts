/**
 * `npro serve --workers N`: the parent process starts N `npro serve` processes that share the
 * listen address through `SO_REUSEPORT` (`server.reuse_port`), forwards SIGTERM and SIGINT to
 * them (each drains), and exits once all of them have exited.
 *
 * Restart policy: none. A worker that exits while the parent is not stopping (a crash, a
 * `kill -9`) is reported on stderr, the other workers are drained, and the parent exits 1, so
 * that the supervisor that started `npro serve` (systemd `Restart=`, Kubernetes) restarts the
 * whole group: a half-sized group never keeps running silently.
 *
 * Admin endpoints: worker `i` (0 to N - 1) serves `/livez`, `/readyz` and `/metrics` on the
 * host of `admin.address` and its port + `i` (port 0: a free port each); never one shared port,
 * where every scrape would reach another process.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { formatHostPort, parseHostPort } from "../transport/address.ts";
import { errorMessage } from "../util/error_message.ts";

/** What the parent needs to start its workers. */
export interface WorkerPlan {
  /** How many processes. */
  workers: number;
  /** The shared listen address (`host:port`, a fixed port). */
  address: string;
  /** The base admin address (`host:port`), or `""` for none. */
  admin: string;
  /** The `--config` file, if one was given. */
  configPath: string | undefined;
  /** Files a worker reads (key, PSK, known servers), when the parent may read them. */
  readPaths: readonly string[];
  /** Files a worker writes (its log file), when the parent may write them. */
  writePaths: readonly string[];
  /** The longest a drain takes (`server.drain_grace` + `server.shutdown_timeout`), in ms. */
  stopTimeoutMs: number;
}

/** How long, past `stopTimeoutMs`, the parent waits before it kills a worker that hangs. */
const KILL_MARGIN_MS = 5000;

/**
 * The admin address of worker `index`: the port of `base` plus `index` (port 0 stays 0).
 *
 * @example Three workers from base port 9100
 * ```ts
 * import { workerAdminAddress } from "./workers.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(workerAdminAddress("127.0.0.1:9100", 2), "127.0.0.1:9102");
 * assert.equal(workerAdminAddress("[::1]:0", 1), "[::1]:0");
 * ```
 *
 * @param base The base admin address, `host:port`.
 * @param index The worker's index, from 0.
 * @returns The worker's admin address.
 * @throws {RangeError} When the port would pass 65535.
 */
export function workerAdminAddress(base: string, index: number): string {
  const { hostname, port } = parseHostPort(base);
  if (port === undefined) throw new RangeError(`Admin address "${base}" has no port`);
  if (port === 0) return formatHostPort(hostname, 0);
  if (port + index > 65535) {
    throw new RangeError(
      `Admin port "${port}" plus worker index "${index}" is above 65535: lower admin.address's port`,
    );
  }
  return formatHostPort(hostname, port + index);
}

/**
 * The command line of worker `index`: the same program (`deno run` with the same main module,
 * or the compiled binary itself), with `--workers 1 --reuse-port`, the shared address, its own
 * admin address, and, under `deno run`, only the permissions it needs (net for its two
 * addresses, read and write for its files, the `NETWORK_PROTOCOL_*` environment when the
 * parent has it).
 *
 * @example The command of worker 1 under `deno run`
 * ```ts
 * import { workerCommand } from "./workers.ts";
 * import assert from "node:assert/strict";
 *
 * const { args } = workerCommand({
 *   workers: 2,
 *   address: "127.0.0.1:9000",
 *   admin: "127.0.0.1:9100",
 *   configPath: undefined,
 *   readPaths: [],
 *   writePaths: [],
 *   stopTimeoutMs: 10_000,
 * }, 1, { standalone: false, env: false, runSelf: false });
 * assert.ok(args.includes("--allow-net=127.0.0.1:9000,127.0.0.1:9101"));
 * assert.deepEqual(args.slice(-9), [
 *   "serve", "--workers", "1", "--reuse-port", "--stop-with-parent", "--address", "127.0.0.1:9000",
 *   "--admin", "127.0.0.1:9101",
 * ]);
 * ```
 *
 * @param plan The plan.
 * @param index The worker's index.
 * @param runtime Whether this is a compiled binary, whether the parent may read
 * `NETWORK_PROTOCOL_*` variables, and whether it may run its own executable by path (else it
 * runs `deno` from PATH).
 * @returns The program and its arguments.
 */
export function workerCommand(
  plan: WorkerPlan,
  index: number,
  runtime: { standalone: boolean; env: boolean; runSelf: boolean },
): { program: string; args: string[] } {
  const admin = plan.admin === "" ? undefined : workerAdminAddress(plan.admin, index);
  const serveArgs = [
    "serve",
    "--workers",
    "1",
    "--reuse-port",
    // A worker drains and exits when its parent is gone (its standard input ends), even after a
    // `kill -9` of the parent: it never serves on alone.
    "--stop-with-parent",
    "--address",
    plan.address,
    ...(admin === undefined ? [] : ["--admin", admin]),
  ];
  if (plan.configPath !== undefined) serveArgs.splice(1, 0, "--config", plan.configPath);
  const self = Deno.execPath();
  if (runtime.standalone) return { program: self, args: serveArgs };
  // `--allow-run=deno` grants the `deno` of PATH, which may be a link to this executable.
  const program = runtime.runSelf ? self : "deno";
  const read = [...(plan.configPath === undefined ? [] : [plan.configPath]), ...plan.readPaths];
  const args = [
    "run",
    "--no-prompt",
    `--allow-net=${[plan.address, ...(admin === undefined ? [] : [admin])].join(",")}`,
    ...(read.length === 0 ? [] : [`--allow-read=${read.join(",")}`]),
    ...(plan.writePaths.length === 0 ? [] : [`--allow-write=${plan.writePaths.join(",")}`]),
    ...(runtime.env ? ["--allow-env=NETWORK_PROTOCOL_*"] : []),
    Deno.mainModule,
    ...serveArgs,
  ];
  return { program, args };
}

/**
 * Runs the workers until they have all exited: SIGTERM and SIGINT are forwarded to them; a
 * worker that exits unexpectedly stops the others (no restart, see the module documentation).
 *
 * @param plan What to run.
 * @param out Prints a line on standard output.
 * @param note Prints a line on standard error.
 * @returns The exit code: 0 when every worker stopped cleanly after a signal, else 1.
 */
export async function runWorkers(
  plan: WorkerPlan,
  out: (line: string) => void,
  note: (line: string) => void,
): Promise<number> {
  const { port } = parseHostPort(plan.address);
  if (port === undefined || port === 0) {
    throw new ProtocolError(
      "ConfigError",
      `--workers needs a fixed port to share, not "${plan.address}" (port 0 gives each process its own)`,
    );
  }
  if (plan.admin !== "") workerAdminAddress(plan.admin, plan.workers - 1);
  const runtime = {
    standalone: Deno.build.standalone === true,
    env: Deno.permissions.querySync({ name: "env", variable: "NETWORK_PROTOCOL_SERVER_ADDRESS" })
      .state === "granted",
    runSelf: Deno.permissions.querySync({ name: "run", command: Deno.execPath() }).state ===
      "granted",
  };
  let stopping = false;
  let failed = false;
  const children: { index: number; child: Deno.ChildProcess; done: boolean }[] = [];
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const stopAll = (signal: Deno.Signal): void => {
    if (!stopping) {
      stopping = true;
      // A worker that does not finish its drain in time is killed (only our own children).
      killTimer = setTimeout(() => {
        for (const entry of children) {
          if (entry.done) continue;
          note(`npro: worker ${entry.index} (pid ${entry.child.pid}) did not stop: killing it`);
          try {
            entry.child.kill("SIGKILL");
          } catch {
            // Already gone.
          }
        }
      }, plan.stopTimeoutMs + KILL_MARGIN_MS);
    }
    for (const entry of children) {
      if (entry.done) continue;
      try {
        entry.child.kill(signal);
      } catch {
        // Already gone.
      }
    }
  };
  const handlers = signals.map((signal) => {
    const handler = () => stopAll(signal === "SIGINT" ? "SIGINT" : "SIGTERM");
    Deno.addSignalListener(signal, handler);
    return { signal, handler };
  });
  let spawnError: unknown;
  try {
    try {
      for (let index = 0; index < plan.workers && !stopping; index++) {
        const { program, args } = workerCommand(plan, index, runtime);
        const child = new Deno.Command(program, {
          args,
          // Never written: it closes when this process ends, however it ends.
          stdin: "piped",
          stdout: "inherit",
          stderr: "inherit",
        }).spawn();
        children.push({ index, child, done: false });
        out(`npro: worker ${index} started (pid ${child.pid})`);
      }
    } catch (error) {
      // The workers already started must not outlive the parent.
      spawnError = error;
      stopAll("SIGTERM");
    }
    await Promise.all(children.map(async (entry) => {
      const status = await entry.child.status;
      entry.done = true;
      const how = status.signal === null ? `code ${status.code}` : `signal ${status.signal}`;
      if (!stopping) {
        failed = true;
        note(
          `npro: worker ${entry.index} (pid ${entry.child.pid}) exited unexpectedly (${how}); ` +
            "stopping the other workers (no restart: the supervisor restarts npro serve)",
        );
        stopAll("SIGTERM");
      } else if (!status.success) {
        failed = true;
        note(`npro: worker ${entry.index} (pid ${entry.child.pid}) stopped with ${how}`);
      }
    }));
  } finally {
    clearTimeout(killTimer);
    for (const { signal, handler } of handlers) Deno.removeSignalListener(signal, handler);
  }
  if (spawnError !== undefined) {
    throw new ProtocolError(
      "ConfigError",
      `Cannot start worker ${children.length}: ${errorMessage(spawnError)}` +
        (spawnError instanceof Deno.errors.NotCapable
          ? " (under deno run, --workers needs --allow-run=deno)"
          : ""),
      { cause: spawnError },
    );
  }
  out(`npro: all ${children.length} workers stopped`);
  return failed ? 1 : 0;
}
