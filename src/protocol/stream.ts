/**
 * The shape of a stream (docs/SERVICE.md, "Streams"): what `Connection.openStream`,
 * `Client.openStream` and a stream handler registered with `Dispatcher.registerStream` work
 * with. The implementation is the connection's (service layer); this file holds the types, so
 * that the dispatcher can name them.
 *
 * @module
 */

import type { ProtocolError } from "../errors.ts";
import type { HandlerContext } from "./dispatcher.ts";

/**
 * A bidirectional stream of bytes inside a connection, with its own flow control: `writable`
 * sends, `readable` receives (reading grants the peer more window, so a reader that stops
 * stalls only its own stream), `closeWrite()` half-closes, `reset(code)` ends both directions
 * at once.
 *
 * @example Upload through a stream and read the server's answer
 * ```ts
 * import { connect, Dispatcher, serve, type Stream } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * // The server counts the bytes it receives and answers with the count.
 * const dispatcher = new Dispatcher().registerStream("COUNT", async (stream: Stream) => {
 *   let total = 0;
 *   for await (const chunk of stream.readable) total += chunk.length;
 *   const writer = stream.writable.getWriter();
 *   await writer.write(new TextEncoder().encode(String(total)));
 *   await writer.close();
 * });
 * await using server = await serve({ address: "127.0.0.1:0" }, dispatcher);
 * const { port } = server.addr as Deno.NetAddr;
 * await using client = await connect({
 *   address: `127.0.0.1:${port}`,
 *   security: { serverKeys: [server.publicKey!] },
 * });
 *
 * await using stream = await client.openStream("COUNT");
 * const writer = stream.writable.getWriter();
 * await writer.write(new Uint8Array(100_000));
 * await writer.close(); // half-close: the server's loop ends
 * const answer = await new Response(stream.readable).text();
 * assert.equal(answer, "100000");
 * assert.equal(await stream.closed(), undefined);
 * ```
 */
export interface Stream extends AsyncDisposable {
  /** The stream's id on its connection (odd: opened by the client; even: by the server). */
  readonly id: number;
  /** The command it was opened with. */
  readonly command: string;
  /** The metadata it was opened with (empty when none). */
  readonly metadata: Uint8Array;
  /**
   * The bytes the peer sends. Reading grants the peer window; cancelling it discards what
   * else arrives (the peer is never stalled by a cancelled reader). Ends when the peer
   * half-closes, errors with a `StreamError` on a reset and with the connection's error when
   * the connection closes first.
   */
  readonly readable: ReadableStream<Uint8Array>;
  /**
   * Sends bytes: a write resolves once its bytes are queued within the peer's window (a chunk
   * must not be modified until then). Closing it half-closes the stream (`closeWrite()`);
   * aborting it resets the stream.
   */
  readonly writable: WritableStream<Uint8Array>;
  /**
   * Half-closes: waits for the writes already made, then tells the peer that no more data
   * follows. Reading goes on.
   *
   * @throws {TypeError} When a writer holds the writable side (close the writer instead).
   */
  closeWrite(): Promise<void>;
  /**
   * Ends the stream at once in both directions: what is queued is dropped, the peer's side
   * errors with a `StreamError` carrying `code`.
   *
   * @param code The reset code (default 0, `StreamResetCode.Cancel`; applications use 1000
   * and up).
   */
  reset(code?: number): void;
  /**
   * Resolves when the stream is over: with `undefined` once both sides half-closed, with the
   * `StreamError` of a reset, or with the connection's error. Never rejects.
   *
   * @returns A promise of the end.
   */
  closed(): Promise<ProtocolError | undefined>;
}

/**
 * Serves the streams opened with one command. When it returns (or its promise resolves), the
 * stream's writable side is closed if it was not, and what the peer still sends is discarded;
 * when it throws, the stream is reset with code 3 (`StreamResetCode.HandlerFailed`). Its
 * context's `signal` aborts when the stream is reset or the connection closes.
 *
 * @example A handler that answers with the number of bytes it received
 * ```ts
 * import type { StreamHandler } from "@npro/network-protocol";
 *
 * export const count: StreamHandler = async (stream, { signal }) => {
 *   let total = 0;
 *   for await (const chunk of stream.readable) {
 *     if (signal.aborted) return;
 *     total += chunk.length;
 *   }
 *   const writer = stream.writable.getWriter();
 *   await writer.write(new TextEncoder().encode(String(total)));
 *   await writer.close();
 * };
 * ```
 */
export type StreamHandler = (stream: Stream, context: HandlerContext) => void | Promise<void>;

/**
 * Options of `openStream` on `Connection` and `Client`.
 *
 * @example Open with metadata, a time limit and a signal
 * ```ts
 * import type { OpenStreamOptions } from "@npro/network-protocol";
 *
 * const options: OpenStreamOptions = {
 *   metadata: new TextEncoder().encode("report.csv"),
 *   timeoutMs: 2000,
 *   signal: AbortSignal.timeout(60_000),
 * };
 * // const stream = await client.openStream("UPLOAD", options);
 * ```
 */
export interface OpenStreamOptions {
  /** Opaque bytes for the handler (at most 16 KiB), `stream.metadata` on both sides. */
  metadata?: Uint8Array;
  /** Abandons the open (rejects with `Cancelled`; the peer gets a reset). */
  signal?: AbortSignal;
  /**
   * How long the peer may take to accept (default `multiplex.open_timeout`); past it the open
   * rejects with a `StreamError` of code `Timeout`.
   */
  timeoutMs?: number;
}
