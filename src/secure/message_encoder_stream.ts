/**
 * The outbound stage of a session as a `TransformStream`: messages in, the bytes of one write
 * out, encoded by the same {@linkcode RecordEncoder} that the connection's outbox uses.
 *
 * @module
 */

import type { BodyCompressor } from "../core/batch.ts";
import type { Message } from "../core/message.ts";
import { CloseCode, type SecureChannel } from "./channel.ts";
import { checkCloseArguments } from "./record_format.ts";
import { RecordEncoder } from "./record_encoder.ts";

/** Options of a {@linkcode MessageEncoderStream}. */
export interface MessageEncoderStreamOptions {
  /** The session's channel (secure mode), or `null` for plaintext packets (the default). */
  channel?: SecureChannel | null;
  /** The largest packet payload to send (default 16 MiB; the peer's `max_message` if lower). */
  maxPayloadSize?: number;
  /** Compresses message bodies (a negotiated compression). */
  compressor?: BodyCompressor;
  /**
   * What closing the writable side appends: the CLOSE record with this code and reason (secure
   * mode; default code 0 and no reason) or a `disconnect` message (plaintext), as a connection's
   * graceful close does; `false` appends nothing. Aborting the writable side never appends.
   */
  close?: { code?: number; reason?: string } | false;
}

/**
 * A `TransformStream` from messages (one, or a batch) to bytes: each input chunk becomes ONE
 * output chunk, the packets of a connection's one write per turn (batches of at most 256 KiB,
 * each a plain batch or a sealed DATA record).
 *
 * @example Write messages to a socket through the stream
 * ```ts
 * import { MessageEncoderStream } from "@npro/network-protocol/secure";
 * import { HEADER_SIZE } from "@npro/network-protocol/core";
 * import type { Message } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const batch: Message[] = [{ type: "ping" }, { type: "ping" }];
 * const chunks = await Array.fromAsync(
 *   ReadableStream.from([batch])
 *     .pipeThrough(new MessageEncoderStream({ close: false })),
 * );
 * // Two messages, one chunk: one packet, one batch of two entries (flags, length, tag).
 * assert.equal(chunks.length, 1);
 * assert.equal(chunks[0]!.length, HEADER_SIZE + 2 * 3);
 * ```
 */
export class MessageEncoderStream extends TransformStream<Message | Message[], Uint8Array> {
  /**
   * Creates the stream.
   *
   * @param options The channel (secure mode), the send limit, the compressor and the farewell.
   * @throws {RangeError} For a send limit too small, or a close code or reason out of range.
   */
  constructor(options: MessageEncoderStreamOptions = {}) {
    const channel = options.channel ?? null;
    const encoder = new RecordEncoder({
      channel,
      ...(options.maxPayloadSize === undefined ? {} : { maxPayloadSize: options.maxPayloadSize }),
      compressor: options.compressor,
    });
    let close: { code: number; reason: string } | undefined;
    if (options.close !== false) {
      const { code = CloseCode.Normal, reason = "" } = options.close ?? {};
      checkCloseArguments(code, reason);
      close = { code, reason };
    }
    super({
      transform(input, controller) {
        const messages = Array.isArray(input) ? input : [input];
        if (messages.length > 0) controller.enqueue(encoder.encode(messages));
      },
      flush(controller) {
        if (close === undefined) return;
        if (channel !== null && (channel.closeSent || channel.failure !== undefined)) return;
        controller.enqueue(encoder.encodeClose(close.code, close.reason));
      },
    });
  }
}
