/**
 * Importing the package must not change the global environment: `@peculiar/x509` installs the
 * `reflect-metadata` polyfill, so certificate generation loads it on first use only. Each check
 * runs in its own `deno` process, so no other test's imports interfere.
 */
import assert from "node:assert/strict";

const root = new URL("..", import.meta.url);

/** Runs a module in a fresh process with no permissions but reading the repository. */
async function run(code: string, ...allow: string[]): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", `--allow-read=${root.pathname}`, ...allow, "-"],
    cwd: root,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
  }).spawn();
  const writer = output.stdin.getWriter();
  await writer.write(new TextEncoder().encode(code));
  await writer.close();
  const { code: status, stdout, stderr } = await output.output();
  assert.equal(status, 0, new TextDecoder().decode(stderr));
  return new TextDecoder().decode(stdout).trim();
}

Deno.test("importing the package root installs no global: Reflect.getMetadata stays undefined", async () => {
  const result = await run(`
    const before = typeof Reflect.getMetadata;
    const globals = new Set(Object.getOwnPropertyNames(globalThis));
    const mod = await import(${JSON.stringify(new URL("mod.ts", root).href)});
    const added = Object.getOwnPropertyNames(globalThis).filter((name) => !globals.has(name));
    console.log(JSON.stringify({
      before,
      after: typeof Reflect.getMetadata,
      added,
      exports: typeof mod.serve,
    }));
  `);
  assert.deepEqual(JSON.parse(result), {
    before: "undefined",
    after: "undefined",
    added: [],
    exports: "function",
  });
});

Deno.test("the CLI module and the transport subpath install no global either, until a certificate is made", async () => {
  const result = await run(`
    await import(${JSON.stringify(new URL("src/cli/main.ts", root).href)});
    const transport = await import(${JSON.stringify(new URL("src/transport/mod.ts", root).href)});
    const imported = typeof Reflect.getMetadata;
    await transport.generateSelfSignedCert({ commonName: "localhost" });
    console.log(JSON.stringify({ imported, afterCert: typeof Reflect.getMetadata }));
  `);
  // The second value shows the check can fail: generating a certificate loads the polyfill.
  assert.deepEqual(JSON.parse(result), { imported: "undefined", afterCert: "function" });
});

Deno.test("test-only dependencies are not in the module graph of any exported entry point", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root))) as {
    exports: Record<string, string>;
  };
  for (const [name, path] of Object.entries(config.exports)) {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", path],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const graph = JSON.parse(new TextDecoder().decode(stdout)) as {
      modules: { kind?: string; npmPackage?: string }[];
      npmPackages: Record<string, { dependencies?: string[] }>;
    };
    // The npm packages the graph imports, and everything they depend on (npmPackages alone is
    // the whole lockfile snapshot, not what this entry point reaches).
    const reached = new Set<string>();
    const pending = graph.modules.flatMap((m) => m.npmPackage === undefined ? [] : [m.npmPackage]);
    while (pending.length > 0) {
      const id = pending.pop()!;
      if (reached.has(id)) continue;
      reached.add(id);
      pending.push(...(graph.npmPackages[id]?.dependencies ?? []));
    }
    // The root reaches smol-toml (configuration): an empty set would mean the check is broken.
    if (name === ".") {
      assert.ok([...reached].some((p) => p.startsWith("smol-toml@")), [...reached].join(", "));
    }
    const packages = [...reached];
    for (const testOnly of ["fast-check", "pure-rand"]) {
      assert.ok(
        !packages.some((p) => p.startsWith(`${testOnly}@`)),
        `Export "${name}" (${path}) reaches "${testOnly}": ${packages.join(", ")}`,
      );
    }
  }
});
