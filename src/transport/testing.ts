/**
 * Testing without sockets: {@linkcode MemoryTransport}, a transport whose `listen` and `connect`
 * meet in memory, to pass as `transport` to both `serve` and `connect`; and
 * {@linkcode memoryConnPair}, two connected `Deno.Conn` ends with controls for tests (a
 * buffer limit per direction, reads of at most N bytes, paused reads, resets).
 *
 * Nothing here needs a permission or a free port, and each test gets its own transport, so tests
 * run in parallel without interfering.
 *
 * @example Test a handler through serve and connect, with no socket
 * ```ts
 * import { connect, Dispatcher, serve } from "@npro/network-protocol";
 * import { MemoryTransport } from "@npro/network-protocol/testing";
 * import assert from "node:assert/strict";
 *
 * const dispatcher = new Dispatcher().register("DOUBLE", (message) => ({
 *   type: "custom",
 *   command: "DOUBLED",
 *   payload: message.type === "custom" ? message.payload.map((b) => b * 2) : new Uint8Array(),
 * }));
 * const transport = new MemoryTransport();
 * await using server = await serve({ transport, address: "memory:9000" }, dispatcher);
 * await using client = await connect({
 *   transport,
 *   address: "memory:9000",
 *   security: { serverKeys: [server.publicKey!] },
 * });
 * const reply = await client.request({
 *   type: "custom",
 *   command: "DOUBLE",
 *   payload: new Uint8Array([1, 2, 3]),
 * });
 * assert.deepEqual(reply, { type: "custom", command: "DOUBLED", payload: new Uint8Array([2, 4, 6]) });
 * ```
 *
 * @module
 */

export { MemoryTransport } from "./memory_transport.ts";
export type { MemoryListener } from "./memory_transport.ts";
export { DEFAULT_MEMORY_HIGH_WATER_MARK, memoryConnPair } from "./memory_conn.ts";
export type {
  MemoryAddr,
  MemoryConn,
  MemoryConnOptions,
  MemoryConnPairOptions,
} from "./memory_conn.ts";
