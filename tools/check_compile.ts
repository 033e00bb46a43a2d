/**
 * `deno task check:compile`: `deno task compile` makes an `npro` that really is npro. `deno
 * compile` needs Deno's runtime (denort) for this Deno version: from `DENORT_BIN`, or downloaded
 * earlier into `DENO_DIR`. Without one (no access to dl.deno.land) this check cannot run: it says
 * so and exits with 2, it never passes. It is a task of its own, not part of `deno task test`,
 * because CI machines cannot download a denort; it is the only way to tell a real build from a
 * wrong `DENORT_BIN` (the full `deno` binary given as denort "compiles" into Deno's own CLI, which
 * prints "Usage: deno").
 *
 * @module
 */
import assert from "node:assert/strict";
import { VERSION } from "../src/cli/version.ts";

const root = new URL("..", import.meta.url).pathname;

/** Where the runtime comes from, or `undefined` when no denort is on this machine. */
async function findDenort(): Promise<string | undefined> {
  const fromEnv = Deno.env.get("DENORT_BIN");
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
  }).output();
  const { denoDir } = JSON.parse(new TextDecoder().decode(stdout)) as { denoDir: string };
  const zip = `${denoDir}/dl/release/v${Deno.version.deno}/denort-${Deno.build.target}.zip`;
  try {
    await Deno.stat(zip);
    return zip;
  } catch {
    return undefined;
  }
}

const denort = await findDenort();
if (denort === undefined) {
  console.error(
    "check:compile cannot run: no denort for this Deno version (set DENORT_BIN, or let deno compile download one)",
  );
  Deno.exit(2);
}

const { tasks } = JSON.parse(await Deno.readTextFile(`${root}deno.json`)) as {
  tasks: Record<string, string>;
};
const dir = await Deno.makeTempDir();
try {
  // The task's own command, with the output in a temporary directory.
  const args = tasks.compile!.split(" ").slice(1);
  const output = args.indexOf("--output");
  assert.ok(output > 0, tasks.compile);
  args[output + 1] = `${dir}/npro`;
  const built = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const listing = new TextDecoder().decode(built.stdout) +
    new TextDecoder().decode(built.stderr);
  assert.equal(built.code, 0, listing);
  // Test-only and benchmark-only packages stay out of the binary.
  for (const name of ["fast-check", "libp2p", "chainsafe"]) {
    assert.ok(!listing.includes(name), `the binary embeds ${name}:\n${listing}`);
  }
  assert.match(listing, /commander/, "the compile listing changed: this check is blind");
  const run = async (...cliArgs: string[]) => {
    const result = await new Deno.Command(`${dir}/npro`, {
      args: cliArgs,
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    return { code: result.code, out: new TextDecoder().decode(result.stdout) };
  };
  const version = await run("--version");
  assert.equal(version.out.trim(), VERSION, `not npro (was DENORT_BIN "${denort}" a denort?)`);
  const help = await run("--help");
  assert.equal(help.code, 0);
  assert.match(help.out, /^Usage: npro /);
  const keygen = await run("keygen");
  assert.equal(keygen.code, 0);
  assert.match(keygen.out, /^public: /m);
} finally {
  await Deno.remove(dir, { recursive: true });
}
console.log(`check:compile: the compiled npro ${VERSION} prints its version, usage and a key`);
