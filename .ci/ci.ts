/**
 * `deno task ci`: every check CI runs, in order, stopping at the first failure. The test run's
 * summary is turned into the plain closing line `N passed, N failed`.
 *
 * @module
 */

/** Every entry point of the package (deno.json "exports"): doc lint sees the API they make together. */
const entryPoints: string[] = Object.values(
  (JSON.parse(await Deno.readTextFile("deno.json")) as { exports: Record<string, string> }).exports,
);

const steps: { name: string; args: string[] }[] = [
  { name: "format", args: ["fmt", "--check"] },
  { name: "lint", args: ["lint"] },
  { name: "type check", args: ["task", "check"] },
  { name: "tests", args: ["task", "test"] },
  { name: "doc lint", args: ["doc", "--lint", ...entryPoints] },
  { name: "publish dry run", args: ["publish", "--dry-run", "--allow-dirty"] },
  { name: "fuzz smoke", args: ["task", "fuzz", "--seconds", "20"] },
];

const decoder = new TextDecoder();
let passed = 0;
let failed = 0;
let testsRan = false;

for (const step of steps) {
  console.log(`\n=== ${step.name}: deno ${step.args.join(" ")}`);
  const child = new Deno.Command("deno", {
    args: step.args,
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
  }).spawn();
  let tail = "";
  for await (const chunk of child.stdout) {
    const text = decoder.decode(chunk, { stream: true });
    await Deno.stdout.write(chunk);
    tail = (tail + text).slice(-4096);
  }
  const status = await child.status;
  if (step.name === "tests") {
    testsRan = true;
    const match = /(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/.exec(tail);
    if (match) {
      passed = Number(match[1]);
      failed = Number(match[2]);
    } else if (!status.success) {
      failed = Math.max(failed, 1);
    }
  }
  if (!status.success) {
    console.log(`\n=== ${step.name} FAILED (exit code ${status.code})`);
    if (!testsRan || failed === 0) failed = Math.max(failed, 1);
    console.log(`${passed} passed, ${failed} failed`);
    Deno.exit(1);
  }
}
console.log(`${passed} passed, ${failed} failed`);
