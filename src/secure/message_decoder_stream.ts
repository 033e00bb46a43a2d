/**
 * The inbound stage of a session as a `TransformStream`: packets in, messages out, decoded by
 * the same {@linkcode RecordDecoder} that the connection's read loop uses.
 *
 * @module
 */

import type { DecodeBatchOptions } from "../core/batch.ts";
import type { Message } from "../core/message.ts";
import type { Packet } from "../core/packet.ts";
import type { CloseInfo, SecureChannel } from "./channel.ts";
import { RecordDecoder } from "./record_decoder.ts";

/** Options of a {@linkcode MessageDecoderStream}. */
export interface MessageDecoderStreamOptions {
  /** The session's channel (secure mode), or `null` for plaintext packets (the default). */
  channel?: SecureChannel | null;
  /**
   * How batches are decoded: the decompressor of a negotiated compression, limits, and whether
   * messages may be views into the packets (`ownedInput`: the default is `true` in secure mode,
   * where every record is decrypted into a fresh buffer, and `false` in plaintext mode).
   */
  decode?: DecodeBatchOptions;
}

/**
 * A `TransformStream` from batches of packets (as {@linkcode PacketDecoderStream} yields them)
 * to batches of messages: each input chunk yields one chunk with every message its packets
 * carry, so the stream's per-chunk cost is paid once per read, not per message.
 *
 * In secure mode each packet is a record: KEY_UPDATE records are applied, a CLOSE ends the
 * readable side (see {@linkcode MessageDecoderStream.remoteClose}) and the stream errors with
 * `Truncated` when its input ends without one. Any packet that breaks the protocol (another
 * version, a record that fails authentication, a malformed batch, an empty record) errors the
 * stream with the typed `ProtocolError`.
 *
 * @example Decode what an encoder wrote
 * ```ts
 * import { PacketDecoderStream } from "@npro/network-protocol/core";
 * import type { Message } from "@npro/network-protocol";
 * import { MessageDecoderStream, MessageEncoderStream } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const batch: Message[] = [{ type: "ping" }, { type: "echo", text: "hi" }];
 * const messages = ReadableStream.from([batch])
 *   .pipeThrough(new MessageEncoderStream())
 *   .pipeThrough(new PacketDecoderStream())
 *   .pipeThrough(new MessageDecoderStream());
 * const received = (await Array.fromAsync(messages)).flat();
 * assert.deepEqual(received, [
 *   { type: "ping" },
 *   { type: "echo", text: "hi" },
 *   { type: "disconnect" },
 * ]);
 * ```
 */
export class MessageDecoderStream extends TransformStream<Packet[], Message[]> {
  readonly #decoder: RecordDecoder;

  /**
   * Creates the stream.
   *
   * @param options The channel (secure mode) and how batches are decoded.
   */
  constructor(options: MessageDecoderStreamOptions = {}) {
    const channel = options.channel ?? null;
    const decoder = new RecordDecoder({
      channel,
      decode: { ownedInput: channel !== null, ...options.decode },
    });
    super({
      transform(packets, controller) {
        const messages: Message[] = [];
        for (let next = 0; next < packets.length;) {
          next = decoder.decode(packets, next);
          while (decoder.pending) messages.push(decoder.take());
        }
        if (messages.length > 0) controller.enqueue(messages);
        if (decoder.closeReceived !== undefined) controller.terminate();
      },
      flush() {
        // Without a CLOSE an encrypted stream may have been cut by an attacker.
        channel?.finish();
      },
    });
    this.#decoder = decoder;
  }

  /** The CLOSE the peer sent (secure mode), once received. */
  get remoteClose(): CloseInfo | undefined {
    return this.#decoder.closeReceived;
  }
}
