/**
 * A connection's messages as Web Streams: `Connection.readable` yields what `receiveBatch()`
 * returns, `Connection.writable` sends through the outbox with its backpressure.
 *
 * @module
 */

import type { Message } from "../core/message.ts";
import type { ProtocolError } from "../errors.ts";

/** What {@linkcode messageReadable} reads. */
export interface MessageSource {
  /**
   * The next batch of received messages, or `null` once the connection is closed.
   *
   * @param signal Stops waiting.
   * @returns The batch, or `null`.
   */
  receiveBatch(signal?: AbortSignal): Promise<Message[] | null>;
  /**
   * The error that closed the connection, if it failed.
   *
   * @returns The error, or `undefined` after a clean close.
   */
  failure(): ProtocolError | undefined;
}

/** What {@linkcode messageWritable} writes to. */
export interface MessageSink {
  /**
   * Queues one message.
   *
   * @param message The message.
   */
  send(message: Message): void;
  /**
   * Resolves when everything queued has been written.
   *
   * @param signal Stops waiting.
   */
  flush(signal?: AbortSignal): Promise<void>;
  /** Bytes queued or being written. */
  readonly outboundBytes: number;
}

/**
 * A readable stream of received message batches: one `receiveBatch()` per pull (the stream
 * buffers nothing: messages wait in the connection's bounded receive queue, which pauses
 * reading from the socket when full). It closes when the connection closes cleanly and errors
 * with the connection's error when it failed. Cancelling it stops the pending receive; the
 * connection stays open.
 *
 * @param source The connection.
 * @returns The stream.
 */
export function messageReadable(source: MessageSource): ReadableStream<Message[]> {
  const cancel = new AbortController();
  return new ReadableStream<Message[]>({
    async pull(controller) {
      let batch: Message[] | null;
      try {
        batch = await source.receiveBatch(cancel.signal);
      } catch (error) {
        if (cancel.signal.aborted) return;
        throw error;
      }
      if (batch !== null) {
        controller.enqueue(batch);
        return;
      }
      const failure = source.failure();
      if (failure === undefined) controller.close();
      else controller.error(failure);
    },
    cancel(reason) {
      cancel.abort(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * A writable stream of messages or batches of messages, sent as `send()` does (everything sent
 * in one turn goes out in one write). A write waits while at least `highWaterBytes` are queued
 * or being written, until they are written: a producer faster than the peer is paused rather
 * than refused. A write to a closed connection errors the stream with `ConnectionClosed`.
 * Closing the stream waits until everything is written; the connection stays open.
 *
 * @param sink The connection.
 * @param highWaterBytes Outbound bytes above which a write waits.
 * @returns The stream.
 */
export function messageWritable(
  sink: MessageSink,
  highWaterBytes: number,
): WritableStream<Message | Message[]> {
  return new WritableStream<Message | Message[]>({
    async write(chunk) {
      const messages = Array.isArray(chunk) ? chunk : [chunk];
      for (let i = 0; i < messages.length; i++) {
        if (sink.outboundBytes >= highWaterBytes) await sink.flush();
        sink.send(messages[i]!);
      }
    },
    async close() {
      await sink.flush();
    },
  }, { highWaterMark: 1 });
}
