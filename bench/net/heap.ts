/**
 * What an idle connection keeps on the JS heap, by kind of object: the difference between two V8
 * heap snapshots of the benchmark server (before and after the idle clients connected), divided by
 * the number of connections. Used by `deno task bench:net -- --only idle --heap`.
 *
 * @module
 */

/** One row of a breakdown: a kind of heap object and what it costs per connection. */
export interface HeapRow {
  /** `type:name` of the V8 node (strings, numbers and code are grouped). */
  kind: string;
  /** Bytes per connection (self size). */
  bytes: number;
  /** Objects per connection. */
  count: number;
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

function totals(snapshot: Snapshot): Map<string, { bytes: number; count: number }> {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const out = new Map<string, { bytes: number; count: number }>();
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]!]!;
    const name = /string|number|code/.test(type) ? "" : strings[nodes[i + nameAt]!]!.slice(0, 60);
    const key = `${type}:${name}`;
    const entry = out.get(key) ?? { bytes: 0, count: 0 };
    entry.bytes += nodes[i + sizeAt]!;
    entry.count++;
    out.set(key, entry);
  }
  return out;
}

/**
 * Compares two heap snapshot files.
 *
 * @param before The snapshot taken before the connections opened.
 * @param after The snapshot taken with them open.
 * @param connections How many connections are open in `after`.
 * @returns The rows, largest first, and the total per connection.
 */
export async function heapBreakdown(
  before: string,
  after: string,
  connections: number,
): Promise<{ total: number; rows: HeapRow[] }> {
  const a = totals(JSON.parse(await Deno.readTextFile(before)) as Snapshot);
  const b = totals(JSON.parse(await Deno.readTextFile(after)) as Snapshot);
  const rows: HeapRow[] = [];
  for (const kind of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(kind) ?? { bytes: 0, count: 0 };
    const y = b.get(kind) ?? { bytes: 0, count: 0 };
    rows.push({
      kind,
      bytes: (y.bytes - x.bytes) / connections,
      count: (y.count - x.count) / connections,
    });
  }
  rows.sort((p, q) => q.bytes - p.bytes);
  return { total: rows.reduce((sum, row) => sum + row.bytes, 0), rows };
}
