import assert from "node:assert/strict";
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

/**
 * How the peer ended a connection: a clean EOF, or an abrupt end (a reset, a broken pipe, or a TLS
 * stream cut without `close_notify`).
 */
export type PeerClose = "eof" | "reset";

/**
 * Reads from `conn` until the PEER closes it, and returns how (EOF or an abrupt end) and how
 * many bytes arrived before. If the connection is still open after `timeoutMs`, it closes `conn`
 * itself (ending the pending read) and throws an `AssertionError`: a test that awaits it proves
 * that the other side closed the connection within `timeoutMs`. Other read errors are rethrown.
 *
 * The caller still owns `conn` after a peer close and must close it.
 *
 * @param conn The connection to drain.
 * @param timeoutMs How long the peer has to close it.
 * @returns How the peer closed it, and the bytes read before.
 */
export async function readUntilClosed(
  conn: Deno.Conn,
  timeoutMs: number,
): Promise<{ how: PeerClose; bytes: number }> {
  const buffer = new Uint8Array(65536);
  let bytes = 0;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, timeoutMs);
  try {
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buffer);
      } catch (error) {
        if (timedOut) break;
        if (
          error instanceof Deno.errors.ConnectionReset ||
          error instanceof Deno.errors.ConnectionAborted ||
          error instanceof Deno.errors.BrokenPipe ||
          error instanceof Deno.errors.UnexpectedEof
        ) {
          return { how: "reset", bytes };
        }
        throw error;
      }
      if (timedOut) break;
      if (n === null) return { how: "eof", bytes };
      bytes += n;
    }
  } finally {
    clearTimeout(timer);
  }
  assert.fail(
    `the peer did not close the connection within ${timeoutMs} ms (${bytes} bytes read)`,
  );
}

/**
 * Time limits for "bad input closes its connection" tests, chosen so that no assertion depends on
 * how fast the machine is:
 *
 * - input the server can reject as soon as it reads it goes to a server whose handshake timeout is
 *   {@linkcode PATIENT_HANDSHAKE_MS}, and must be closed within {@linkcode PROMPT_CLOSE_MS}, well
 *   before that timeout could fire: a close in time is the server reacting to the input;
 * - input that stalls the handshake goes to a server whose handshake timeout is
 *   {@linkcode SHORT_HANDSHAKE_MS}, and must be closed within {@linkcode STALLED_CLOSE_MS}, a
 *   liveness bound of five times that timeout.
 */
export const PATIENT_HANDSHAKE_MS = 60_000;
/** See {@linkcode PATIENT_HANDSHAKE_MS}. */
export const PROMPT_CLOSE_MS = 10_000;
/** See {@linkcode PATIENT_HANDSHAKE_MS}. */
export const SHORT_HANDSHAKE_MS = 300;
/** See {@linkcode PATIENT_HANDSHAKE_MS}. */
export const STALLED_CLOSE_MS = 5 * SHORT_HANDSHAKE_MS;

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
