/**
 * README.md, run: every shell command and every code block of the README, in order, in an empty
 * directory, with the permissions the README gives them. Daemons (`serve` lines) run in the
 * background until the next one starts; `<key>` stands for the public key the latest one printed.
 *
 * What cannot run here is said, command by command, in {@linkcode NOT_RUN}: the test fails on a
 * README command that is neither run nor listed. Two commands are adapted, and only because
 * jsr.io is not reachable from CI: `deno add jsr:@npro/network-protocol` writes the `deno.json`
 * that `deno add` writes, with a `links` entry to this clone (Deno's override for a local
 * package, so `jsr:@npro/network-protocol/...` resolves here with this package's exports and
 * import map), and `deno install -g ... jsr:@npro/network-protocol/cli` installs this clone's
 * `src/cli/main.ts` (a global install ignores `links`) into the temporary directory, with the
 * README's permission flags unchanged.
 */
import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();

/** Commands the test does not run, and why. */
const NOT_RUN: Record<string, string> = {
  "deno task test": "the test suite itself (this test is part of it)",
  "deno task ci": "runs the test suite and more (this test is part of it)",
  "deno task bench": "minutes long; the task is checked to exist",
  "deno task bench:net": "minutes long; the task is checked to exist",
  "deno task bench:net -- --quick --json out.json": "a minute long; the task is checked to exist",
  "deno bench -A bench/core_bench.ts": "minutes long; the file is checked to exist",
  "deno run -A bench/compression_cli.ts": "needs the lz4 and zstd tools; the file is checked",
  "deno task fuzz --seconds 60": "a minute long; CI runs a 20 s fuzz run; the task is checked",
};

/** Needs Deno's runtime (denort): run only where `deno task check:compile` can run. */
const NEEDS_DENORT = new Set(["deno task compile", "./npro --version"]);

interface Block {
  lang: string;
  code: string;
  line: number;
}

function blocks(markdown: string): Block[] {
  const found: Block[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (open === null) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i]!);
    found.push({ lang: open[1]!, code: body.join("\n"), line: start + 1 });
  }
  return found;
}

/** The commands of a shell block: continuation lines joined, comments removed. */
function commands(code: string): string[] {
  return code.replace(/\\\n\s*/g, "").split("\n")
    .map((line) => line.replace(/\s+#\s.*$/, "").trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

interface Daemon {
  child: Deno.ChildProcess;
  pid: number;
  key: string;
  stdout: ReadableStreamDefaultReader<string>;
  stderr: Promise<string[]>;
}

Deno.test("README: every shell command and code block runs", async () => {
  const started = performance.now();
  const readme = await Deno.readTextFile(`${root}README.md`);
  const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`)) as {
    name: string;
    version: string;
    tasks: Record<string, string>;
  };
  const denortAvailable = Deno.env.get("DENORT_BIN") !== undefined;
  const dir = await Deno.makeTempDir({ prefix: "npro_readme_" });
  const bin = `${dir}/.deno-install/bin`;
  const env = {
    NO_COLOR: "1",
    RUST_BACKTRACE: "0",
    PATH: `${bin}:${Deno.env.get("PATH") ?? ""}`,
  };
  let daemon: Daemon | undefined;
  const ran: string[] = [];
  const skipped: string[] = [];
  const tsFiles = new Map<string, boolean>();

  /** Expands `deno task NAME ARGS` into the task's own command, run from `dir`. */
  const expandTask = (command: string): string => {
    const match = /^deno task ([\w:]+)(.*)$/.exec(command);
    if (match === null) return command;
    const task = config.tasks[match[1]!];
    assert.ok(task !== undefined, `README runs a task deno.json lacks: ${command}`);
    return task
      .replace(/^deno (run|compile) /, `deno $1 --config ${root}deno.json `)
      .replace(/(^| )src\/cli\/main\.ts\b/, `$1${root}src/cli/main.ts`) + match[2];
  };

  const stopDaemon = async () => {
    if (daemon === undefined) return;
    const current = daemon;
    daemon = undefined;
    Deno.kill(current.pid, "SIGINT");
    const status = await current.child.status;
    await current.stdout.cancel();
    const stderr = (await current.stderr).join("");
    assert.equal(status.code, 0, `daemon exited with ${status.code}: ${stderr}`);
  };

  const startDaemon = async (command: string) => {
    await stopDaemon();
    const child = new Deno.Command("sh", {
      args: ["-c", command],
      cwd: dir,
      env,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const stderr = Array.fromAsync(child.stderr.pipeThrough(new TextDecoderStream()));
    let text = "";
    const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
    try {
      while (!/server key fingerprint/.test(text)) {
        const { value, done } = await stdout.read();
        if (done) {
          throw new Error(`"${command}" exited before serving:\n${text}${(await stderr).join("")}`);
        }
        text += value;
      }
    } finally {
      clearTimeout(deadline);
    }
    const pid = Number(/pid (\d+)\)/.exec(text)?.[1]);
    const key = /npro: server key (\S+)/.exec(text)?.[1];
    assert.ok(pid > 0 && key !== undefined, text);
    daemon = { child, pid, key, stdout, stderr };
  };

  const run = async (command: string) => {
    const output = await new Deno.Command("sh", {
      args: ["-c", command],
      cwd: dir,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
    assert.equal(output.code, 0, `"${command}" failed (${output.code}):\n${text}`);
    assert.doesNotMatch(text, /^\s+at /m, `"${command}" printed a stack trace`);
    return text;
  };

  try {
    for (const block of blocks(readme)) {
      if (block.lang === "ts") {
        const name = /^\/\/ (\w+\.ts)\n/.exec(block.code)?.[1];
        const file = name ?? `readme_block_${block.line}.ts`;
        await Deno.writeTextFile(`${dir}/${file}`, block.code);
        await run(`deno check ${file}`);
        if (name === undefined) {
          await run(`deno run --allow-net=127.0.0.1 ${file}`);
          ran.push(`ts block at line ${block.line}`);
        } else {
          tsFiles.set(name, false);
        }
        continue;
      }
      if (block.lang === "toml") {
        const file = `readme_block_${block.line}.toml`;
        await Deno.writeTextFile(`${dir}/${file}`, block.code + "\n");
        const text = await run(`npro config check ${file}`);
        assert.match(text, /is valid/);
        ran.push(`toml block at line ${block.line}`);
        continue;
      }
      assert.equal(block.lang, "sh", `README line ${block.line}: a block without a known language`);
      for (const raw of commands(block.code)) {
        if (raw in NOT_RUN) {
          const task = /^deno task ([\w:]+)/.exec(raw)?.[1];
          if (task !== undefined) assert.ok(task in config.tasks, `no task "${task}"`);
          const file = /\b(bench\/\S+\.ts)\b/.exec(raw)?.[1];
          if (file !== undefined) await Deno.stat(`${root}${file}`);
          skipped.push(`${raw}: ${NOT_RUN[raw]}`);
          continue;
        }
        if (NEEDS_DENORT.has(raw) && !denortAvailable) {
          skipped.push(`${raw}: needs a denort (DENORT_BIN), see deno task check:compile`);
          continue;
        }
        let command = raw;
        if (command === "deno add jsr:@npro/network-protocol") {
          await Deno.writeTextFile(
            `${dir}/deno.json`,
            JSON.stringify({
              imports: { [config.name]: `jsr:${config.name}@^${config.version}` },
              links: [root],
            }),
          );
          ran.push(`${raw} (simulated: the deno.json it writes, linked to this clone)`);
          continue;
        }
        if (command.startsWith("deno install -g ")) {
          command = command
            .replace(
              "deno install -g ",
              `deno install -g -f --root ${dir}/.deno-install --config ${root}deno.json `,
            )
            .replace(`jsr:${config.name}/cli`, `${root}src/cli/main.ts`);
        }
        command = expandTask(command);
        if (command.includes("<key>")) {
          assert.ok(daemon !== undefined, `"${raw}" needs a daemon to take <key> from`);
          command = command.replaceAll("<key>", daemon.key);
        }
        for (const name of tsFiles.keys()) if (command.includes(name)) tsFiles.set(name, true);
        if (/(^|\s)serve(\s|$)/.test(command) && !/--help/.test(command)) {
          await startDaemon(command);
        } else {
          const text = await run(command);
          if (/ ping /.test(` ${raw} `)) assert.match(text, /pong from .*seq=1 time=/, raw);
          if (raw === "npro --version") assert.equal(text.trim(), config.version);
          if (raw.endsWith("first_handler.ts")) assert.match(text, /^hello, ada$/m);
        }
        ran.push(raw);
      }
    }
  } finally {
    await stopDaemon();
    await Deno.remove(dir, { recursive: true });
  }
  for (const [name, used] of tsFiles) assert.ok(used, `README never runs ${name}`);
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `README: ran ${ran.length} commands and blocks in ${seconds.toFixed(1)} s; not run:\n  ${
      skipped.join("\n  ")
    }`,
  );
  assert.ok(ran.length >= 20, `only ${ran.length} commands ran: the README parse is broken`);
});
