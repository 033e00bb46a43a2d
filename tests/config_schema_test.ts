import assert from "node:assert/strict";
import { exampleConfig } from "../src/config/example.ts";
import { KEYS } from "../src/config/schema.ts";
import type { KeyInfo } from "../src/config/spec.ts";
import { updateConfigDoc } from "../tools/config_docs.ts";

Deno.test("docs/CONFIGURATION.md key tables and examples/config.toml are generated from the schema", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/CONFIGURATION.md", import.meta.url));
  assert.equal(
    doc,
    updateConfigDoc(doc),
    "docs/CONFIGURATION.md is stale: run `deno task config:docs`",
  );
  const example = await Deno.readTextFile(new URL("../examples/config.toml", import.meta.url));
  assert.equal(
    example,
    exampleConfig(),
    "examples/config.toml is stale: run `deno task config:docs`",
  );
});

// "No key is unused". Each key of the schema names, in `readBy`, the modules that read it to do
// what it configures. Grepping all of src/ for a property name would pass on any unrelated
// `.address` or `.level`, so the check is narrower: a listed module must read the property from
// the key's own section, in one of the ways this code base reads configuration:
//   - a path through the section:        `config.server.handshakeRate`, `this.#config.client.x`
//   - a name bound to the section:       `const s = config.security;` ... `s.knownServersPath`
//   - a parameter typed by the section:  `config: LoggingConfig` ... `config.logToFile`
//   - destructuring the section:         `const { maxConnections } = this.#config.server;`
// Comments are removed first, and assignments (`x.address = ...`) do not count. A new key thus
// needs a reader before this test passes, and a refactor that moves a reader elsewhere fails here
// until `readBy` names the new module.

function stripComments(source: string): string {
  return source
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\#]/g, "\\$&");
}

/** Tells whether `source` reads `key` from its section (see above). */
function readsKey(source: string, key: Pick<KeyInfo, "section" | "property">): boolean {
  const code = stripComments(source);
  const section = escape(key.section);
  const property = escape(key.property);
  const notAssigned = String.raw`(?!\s*=[^=>])`;
  if (new RegExp(String.raw`\.${section}\??\.${property}\b${notAssigned}`).test(code)) return true;
  const receivers = new Set<string>();
  const bound = new RegExp(
    String.raw`\b(?:const|let)\s+(\w+)\s*=\s*[\w.#$?]*\.${section}\s*;`,
    "g",
  );
  for (const match of code.matchAll(bound)) receivers.add(match[1]!);
  const typeName = `${key.section[0]!.toUpperCase()}${key.section.slice(1)}Config`;
  const typed = new RegExp(String.raw`\b(\w+)\??\s*:\s*(?:Readonly<)?${typeName}\b`, "g");
  for (const match of code.matchAll(typed)) receivers.add(match[1]!);
  for (const receiver of receivers) {
    const read = new RegExp(
      String.raw`(?<![\w.#$])${escape(receiver)}\??\.${property}\b${notAssigned}`,
    );
    if (read.test(code)) return true;
  }
  const destructured = new RegExp(String.raw`\{([^{}]*)\}\s*=\s*[\w.#$?]*\.${section}\s*;`, "g");
  for (const match of code.matchAll(destructured)) {
    if (new RegExp(String.raw`(?:^|[\s,])${property}\b`).test(match[1]!)) return true;
  }
  return false;
}

Deno.test("readsKey sees reads through the section, never comments, writes or other objects", () => {
  const key = { section: "server", property: "handshakeRate" } as const;
  const reads = [
    "use(config.server.handshakeRate);",
    "use(this.#config.server.handshakeRate);",
    "const s = this.#config.server;\nuse(s.handshakeRate);",
    "const { maxHandshakes, handshakeRate } = this.#config.server;",
    "function f(config: ServerConfig) { return config.handshakeRate; }",
  ];
  for (const source of reads) assert.ok(readsKey(source, key), source);
  const notReads = [
    "// config.server.handshakeRate\n",
    "/** Uses `config.server.handshakeRate`. */\n",
    "config.server.handshakeRate = 5;",
    "use(options.handshakeRate);",
    "const s = config.client;\nuse(s.handshakeRate);",
    "use(config.server.handshakeRatePerAddress);",
  ];
  for (const source of notReads) assert.ok(!readsKey(source, key), source);
});

Deno.test("every configuration key is read by the code it configures", async () => {
  const unread: string[] = [];
  for (const key of KEYS) {
    assert.ok(key.readBy.length > 0, `${key.path} names no module that reads it`);
    for (const module of key.readBy) {
      assert.ok(
        !module.startsWith("config/"),
        `${key.path}: src/${module} is configuration code, not a reader of the key`,
      );
      const source = await Deno.readTextFile(new URL(`../src/${module}`, import.meta.url));
      if (!readsKey(source, key)) {
        unread.push(
          `${key.path}: src/${module} does not read ${key.section}.${key.property} ` +
            "(update readBy in src/config/schema.ts, or make the code use the key)",
        );
      }
    }
  }
  assert.deepEqual(unread, []);
});
