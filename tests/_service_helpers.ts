import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { type Client, connect } from "../src/service/client.ts";
import { serve, type Server } from "../src/service/daemon.ts";
import type { Message } from "../src/core/message.ts";

/** A dispatcher with PING, ECHO, an async SLOW handler and an ADD handler. */
export function testDispatcher(): Dispatcher {
  const d = registerStandardHandlers(new Dispatcher());
  d.register("SLOW", async (message, ctx) => {
    const ms = message.type === "custom" ? message.payload[0] ?? 10 : 10;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      ctx.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(ctx.signal.reason);
      }, { once: true });
    });
    return message;
  });
  d.register("ADD", (message) => {
    if (message.type !== "custom") throw new TypeError("expected custom");
    const view = new DataView(message.payload.buffer, message.payload.byteOffset);
    const sum = view.getUint32(0) + view.getUint32(4);
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, sum);
    return { type: "custom", command: "SUM", payload: out };
  });
  return d;
}

/** An ADD request for a + b. */
export function add(a: number, b: number): Message {
  const payload = new Uint8Array(8);
  const view = new DataView(payload.buffer);
  view.setUint32(0, a);
  view.setUint32(4, b);
  return { type: "custom", command: "ADD", payload };
}

/** Reads the u32 of a SUM answer. */
export function sumOf(message: Message): number {
  if (message.type !== "custom" || message.command !== "SUM") {
    throw new TypeError(`expected SUM, got ${JSON.stringify(message)}`);
  }
  return new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0);
}

/** The port of a listening address. */
export function portOf(addr: Deno.Addr): number {
  return (addr as Deno.NetAddr).port;
}

/** Polls `condition` every 5 ms until it holds, or fails after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  timeoutMs = 5000,
  what = "condition",
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Reads from `conn` until EOF or error; returns the bytes read. */
export async function readUntilClosed(conn: Deno.Conn, timeoutMs = 5000): Promise<number> {
  const buffer = new Uint8Array(65536);
  let total = 0;
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return total;
      total += n;
    }
  } catch {
    return total;
  } finally {
    clearTimeout(timer);
  }
}

/** Writes all of `data` (a single `conn.write` may write only part of it). */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += await conn.write(data.subarray(offset));
}

/** A plaintext daemon on loopback and a client connected to it; disposing closes both. */
export async function plaintextPair(
  dispatcher: Dispatcher,
): Promise<{ server: Server; client: Client } & AsyncDisposable> {
  const config = { transport: { encryptionEnabled: false } };
  const server = await serve({ address: "127.0.0.1:0", config }, dispatcher);
  try {
    const client = await connect({ address: `127.0.0.1:${portOf(server.addr)}`, config });
    return {
      server,
      client,
      async [Symbol.asyncDispose]() {
        await client[Symbol.asyncDispose]();
        await server[Symbol.asyncDispose]();
      },
    };
  } catch (error) {
    await server.shutdown();
    throw error;
  }
}
