/**
 * The public API in layers (README.md, "Public API: the root and the subpaths"): every entry in
 * `deno.json` "exports" is documented with a runnable example, exports explicit names only, and
 * a name has one home (the root, or one subpath).
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))) as {
  name: string;
  exports: Record<string, string>;
};

/** `/noise` is a self-contained Noise library: it keeps the key helpers the root also has. */
const SHARED_WITH_NOISE = new Set(["generateKeyPair", "publicKeyOf", "KeyPair"]);

/** The names an entry file exports: re-exported lists and its own declarations. */
function exportedNames(text: string): string[] {
  const names: string[] = [];
  for (const match of text.matchAll(/^export\s+(?:type\s+)?\{([^}]*)\}/gm)) {
    for (const item of match[1]!.split(",")) {
      const name = item.trim().replace(/^type\s+/, "").split(/\s+as\s+/).pop()!.trim();
      if (name !== "") names.push(name);
    }
  }
  for (
    const match of text.matchAll(
      /^export\s+(?:declare\s+)?(?:async\s+)?(?:function\*?|class|interface|type|const|let|enum)\s+([A-Za-z_$][\w$]*)/gm,
    )
  ) {
    names.push(match[1]!);
  }
  return names;
}

const entries = await Promise.all(
  Object.entries(config.exports).map(async ([subpath, file]) => ({
    subpath,
    file,
    text: await Deno.readTextFile(new URL(file, ROOT)),
  })),
);

Deno.test("public API: every entry has a module doc with a titled example, and no export *", () => {
  for (const { file, text } of entries) {
    const doc = /^\/\*\*([\s\S]*?)\*\//.exec(text)?.[1] ?? "";
    assert.match(doc, /@module/, `${file} has no module doc`);
    assert.match(doc, /@example \S.*\n\s*\* ```ts\n/, `${file} has no titled example`);
    assert.doesNotMatch(text, /^export\s+(?:type\s+)?\*/m, `${file} uses export *`);
  }
});

Deno.test("public API: a name is exported by one entry (the root or one subpath)", () => {
  const homes = new Map<string, string[]>();
  for (const { subpath, text } of entries) {
    for (const name of exportedNames(text)) homes.set(name, [...homes.get(name) ?? [], subpath]);
  }
  assert.ok(homes.size > 150, `only ${homes.size} names found: the scan is broken`);
  const twice = [...homes].filter(([name, where]) =>
    where.length > 1 &&
    !(SHARED_WITH_NOISE.has(name) && where.length === 2 && where.includes("./noise"))
  );
  assert.deepEqual(twice, []);
});

Deno.test("public API: the README table lists every subpath of deno.json", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const section = readme.split("## Public API: the root and the subpaths")[1]?.split("\n## ")[0];
  assert.ok(section, "README.md has no public API section");
  const listed = [...section.matchAll(/^\| `(@npro\/network-protocol[^`]*)`/gm)].map((m) => m[1]);
  const exported = Object.keys(config.exports).map((subpath) =>
    subpath === "." ? config.name : `${config.name}${subpath.slice(1)}`
  );
  assert.deepEqual(listed, exported);
});

Deno.test("public API: the root keeps the application's names and none of the machinery", async () => {
  const root = await import("../mod.ts");
  for (
    const name of ["serve", "connect", "createPool", "Dispatcher", "ProtocolError", "loadConfig"]
  ) {
    assert.ok(name in root, `the root lacks ${name}`);
  }
  for (const name of ["encodePacket", "SecureChannel", "TcpTransport", "MemoryTransport"]) {
    assert.ok(!(name in root), `the root exports ${name}`);
  }
});
