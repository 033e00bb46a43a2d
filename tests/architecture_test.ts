/**
 * The layering rule of docs/ARCHITECTURE.md: a module imports only from its own layer or the
 * layers below it, so the trunk can change without the leaves noticing and the graph has no
 * upward edge.
 */
import assert from "node:assert/strict";

/** The layers, lowest first; a path belongs to the first entry it starts with. */
const LAYERS: { name: string; paths: string[] }[] = [
  { name: "foundation", paths: ["errors.ts", "util/", "log.ts", "log_budget.ts"] },
  { name: "core", paths: ["core/"] },
  { name: "secure, compression", paths: ["secure/", "compression/"] },
  { name: "protocol", paths: ["protocol/"] },
  { name: "transport", paths: ["transport/"] },
  { name: "config", paths: ["config/", "log_setup.ts"] },
  { name: "service", paths: ["service/"] },
  { name: "cli", paths: ["cli/"] },
];

const SRC = new URL("../src/", import.meta.url);

function layerOf(path: string): number {
  const index = LAYERS.findIndex((layer) => layer.paths.some((p) => path.startsWith(p)));
  if (index < 0) throw new Error(`src/${path} belongs to no layer of docs/ARCHITECTURE.md`);
  return index;
}

async function* sources(dir: URL, prefix = ""): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) {
      yield* sources(new URL(`${entry.name}/`, dir), `${prefix}${entry.name}/`);
    } else if (entry.name.endsWith(".ts")) yield `${prefix}${entry.name}`;
  }
}

/** Relative imports and re-exports of a module (type-only ones included: they couple too). */
function importsOf(text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/^(?:import|export)[^;]*?from\s+"(\.[^"]+)"/gms)) {
    found.push(match[1]!);
  }
  return found;
}

Deno.test("imports only go down the layers (core < secure, compression < protocol < transport < config < service < cli)", async () => {
  const upward: string[] = [];
  let edges = 0;
  for await (const path of sources(SRC)) {
    const text = await Deno.readTextFile(new URL(path, SRC));
    const from = layerOf(path);
    for (const specifier of importsOf(text)) {
      const target = new URL(specifier, new URL(path, SRC)).href.slice(SRC.href.length);
      edges++;
      const to = layerOf(target);
      if (to > from) {
        upward.push(
          `src/${path} (${LAYERS[from]!.name}) imports src/${target} (${LAYERS[to]!.name})`,
        );
      }
    }
  }
  assert.ok(edges > 100, `only ${edges} imports found: the scan is broken`);
  assert.deepEqual(upward, []);
});

Deno.test("the layer check sees an upward import", () => {
  const text = 'import { serve } from "../service/daemon.ts";\nexport { x } from "./y.ts";';
  assert.deepEqual(importsOf(text), ["../service/daemon.ts", "./y.ts"]);
  assert.ok(layerOf("service/daemon.ts") > layerOf("core/packet.ts"));
});
