/**
 * Web Streams adapters of a {@linkcode SecureChannel} for the connection pipeline: chunks are
 * batches (all packets of one read in, all record bodies of one turn out), so the per-chunk cost
 * of streams is paid per batch, not per record.
 *
 * @module
 */

import { type Packet, PROTOCOL_VERSION } from "../core/packet.ts";
import type { ProtocolError } from "../errors.ts";
import { checkSessionPacket } from "./record_decoder.ts";
import { checkCloseArguments } from "./record_format.ts";
import { CloseCode, type CloseInfo, type SecureChannel } from "./channel.ts";

/**
 * The two directions of a {@linkcode SecureChannel} as TransformStreams:
 *
 * - {@linkcode SecureStream.inbound}: `Packet[]` (records) in, `Uint8Array[]` (DATA bodies) out.
 *   KEY_UPDATE records are applied and dropped. A CLOSE ends the readable side; records after it
 *   are an error. Any failure (authentication, a packet of another version, a malformed record)
 *   errors the stream with the typed {@linkcode ProtocolError}; nothing after it is delivered.
 *   When the writable side closes without a CLOSE record, the stream errors with `Truncated`.
 * - {@linkcode SecureStream.outbound}: `Uint8Array[]` (bodies, one encoded batch each) in,
 *   `Packet[]` out, one DATA record per body (plus a KEY_UPDATE when a rekey is due). Closing the
 *   writable side appends an authenticated CLOSE record; aborting it does not.
 *
 * @example Pipe bodies through both directions
 * ```ts
 * import { CipherState } from "@npro/network-protocol/noise";
 * import { SecureChannel, SecureStream } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const k1 = new Uint8Array(32).fill(1);
 * const k2 = new Uint8Array(32).fill(2);
 * const a = new SecureStream(new SecureChannel({ send: new CipherState(k1), receive: new CipherState(k2) }));
 * const b = new SecureStream(new SecureChannel({ send: new CipherState(k2), receive: new CipherState(k1) }));
 *
 * const received = ReadableStream.from([[new Uint8Array([1])], [new Uint8Array([2])]])
 *   .pipeThrough(a.outbound)
 *   .pipeThrough(b.inbound);
 * const bodies: number[] = [];
 * for await (const batch of received) for (const body of batch) bodies.push(body[0]!);
 * assert.deepEqual(bodies, [1, 2]);
 * assert.deepEqual(b.remoteClose, { code: 0, reason: "" });
 * ```
 */
export class SecureStream {
  /** The channel both directions share. */
  readonly channel: SecureChannel;
  /** Records in, DATA bodies out. */
  readonly inbound: TransformStream<Packet[], Uint8Array[]>;
  /** Bodies in, records out. */
  readonly outbound: TransformStream<Uint8Array[], Packet[]>;
  #closeCode: number = CloseCode.Normal;
  #closeReason = "";

  /**
   * Wraps a channel.
   *
   * @param channel The channel of a finished handshake.
   */
  constructor(channel: SecureChannel) {
    this.channel = channel;
    this.inbound = new TransformStream<Packet[], Uint8Array[]>({
      transform: (packets, controller) => {
        let bodies: Uint8Array[] | undefined;
        let closed = false;
        for (let i = 0; i < packets.length; i++) {
          const packet = packets[i]!;
          try {
            checkSessionPacket(packet);
          } catch (error) {
            channel.abort(error as ProtocolError);
            throw error;
          }
          const record = channel.open(packet.payload);
          if (record.type === "data") (bodies ??= []).push(record.body);
          else if (record.type === "close") closed = true;
        }
        if (bodies !== undefined) controller.enqueue(bodies);
        if (closed) controller.terminate();
      },
      flush: () => {
        channel.finish();
      },
    });
    const scratch: Uint8Array[] = [];
    this.outbound = new TransformStream<Uint8Array[], Packet[]>({
      transform: (bodies, controller) => {
        const packets: Packet[] = [];
        for (let i = 0; i < bodies.length; i++) {
          scratch.length = 0;
          channel.sealData(bodies[i]!, scratch);
          for (let j = 0; j < scratch.length; j++) {
            packets.push({ version: PROTOCOL_VERSION, payload: scratch[j]! });
          }
        }
        scratch.length = 0;
        if (packets.length > 0) controller.enqueue(packets);
      },
      flush: (controller) => {
        if (channel.closeSent || channel.failure !== undefined) return;
        const [record] = channel.sealClose(this.#closeCode, this.#closeReason);
        controller.enqueue([{ version: PROTOCOL_VERSION, payload: record! }]);
      },
    });
  }

  /**
   * Sets the code and reason of the CLOSE record sent when the outbound side closes.
   *
   * @param code The u16 reason code (see {@linkcode CloseCode}).
   * @param reason A reason of at most 123 UTF-8 bytes.
   * @throws {RangeError} For a code outside 0..65535 or a reason too long.
   */
  setCloseReason(code: number, reason = ""): void {
    checkCloseArguments(code, reason);
    this.#closeCode = code;
    this.#closeReason = reason;
  }

  /** The CLOSE the peer sent, once received. */
  get remoteClose(): CloseInfo | undefined {
    return this.channel.closeReceived;
  }
}
