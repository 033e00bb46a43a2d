/**
 * The inbound stage of a session, from packets to messages: each packet is checked (version 2),
 * opened by the secure channel (secure mode: KEY_UPDATE applied, CLOSE noticed) and decoded into
 * its batch of messages, which wait here until the consumer has the capacity to handle them. The
 * connection's read loop and {@linkcode MessageDecoderStream} both decode through it.
 *
 * @module
 */

import { decodeBatch, type DecodeBatchOptions } from "../core/batch.ts";
import type { Message } from "../core/message.ts";
import { type Packet, PROTOCOL_VERSION } from "../core/packet.ts";
import { ProtocolError } from "../errors.ts";
import type { CloseInfo, SecureChannel } from "./channel.ts";

/**
 * Records opened per call of {@linkcode RecordDecoder.decode}: a full 256 KiB read of the
 * smallest records is about 10,000 of them (10-100 ms of CPU for KEY_UPDATE or empty records,
 * measured in the hostile-peer study), so the connection decodes a read in slices and lets the
 * other connections run in between. Honest reads rarely hold this many records.
 */
export const RECORDS_PER_TURN = 1024;

/**
 * A record up to this many bytes that is followed by one of at least {@linkcode BULK_RECORD}
 * ends a call of {@linkcode RecordDecoder.decode}: its messages (a reply, a PONG) are handled
 * before the bulk behind it is opened (docs/SERVICE.md, "Fragments and streams").
 */
export const SMALL_RECORD = 8 * 1024;
/** See {@linkcode SMALL_RECORD}. */
export const BULK_RECORD = 16 * 1024;

const NO_MESSAGES: Message[] = [];

/** What a {@linkcode RecordDecoder} tells its consumer. */
export interface RecordDecoderHost {
  /**
   * A protocol violation that does not break the session by itself (an empty record): the
   * consumer counts them and decides.
   *
   * @param kind A short name of it.
   * @param detail What happened.
   * @returns `true` when the session ended because of it (decoding stops).
   */
  onViolation(kind: string, detail: string): boolean;
}

/** Options of a {@linkcode RecordDecoder}. */
export interface RecordDecoderOptions {
  /** The session's channel, or `null` in plaintext mode. */
  channel: SecureChannel | null;
  /** How batches are decoded (decompression, limits, ownership of the input). */
  decode?: DecodeBatchOptions;
  /**
   * Told about protocol violations that the consumer may tolerate up to a limit (the
   * connection counts them). Without it, the first one throws a `PolicyViolation`.
   */
  host?: RecordDecoderHost;
}

/** The default host: no violation is tolerated. */
const STRICT_HOST: RecordDecoderHost = {
  onViolation(_kind, detail) {
    throw new ProtocolError("PolicyViolation", detail);
  },
};

/**
 * Checks that a packet of an established session has the session's version (2). The codec
 * also parses the original crate's version 1; a session speaks version 2 only.
 *
 * @param packet The packet.
 * @throws {ProtocolError} `UnsupportedVersion` for any other version.
 */
export function checkSessionPacket(packet: Packet): void {
  if (packet.version !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      "UnsupportedVersion",
      `Packet has version "${packet.version}", expected "${PROTOCOL_VERSION}" after the handshake`,
    );
  }
}

/**
 * Decodes the packets of one session and queues their messages.
 *
 * @example Decode plaintext packets, take the messages
 * ```ts
 * import { encodeBatch } from "@npro/network-protocol/core";
 * import { RecordDecoder } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const decoder = new RecordDecoder({ channel: null });
 * const payload = encodeBatch([{ type: "ping" }, { type: "echo", text: "a" }]);
 * assert.equal(decoder.decode([{ version: 2, payload }], 0), 1);
 * assert.deepEqual(decoder.take(), { type: "ping" });
 * assert.deepEqual(decoder.take(), { type: "echo", text: "a" });
 * assert.equal(decoder.pending, false);
 * ```
 */
export class RecordDecoder {
  readonly #channel: SecureChannel | null;
  readonly #options: DecodeBatchOptions;
  readonly #host: RecordDecoderHost;
  #queue: Message[] = NO_MESSAGES;
  #index = 0;
  #close: CloseInfo | undefined;

  /**
   * Creates a decoder.
   *
   * @param options The channel (or `null`), how batches are decoded, and who is told about
   * tolerable violations.
   */
  constructor(options: RecordDecoderOptions) {
    this.#channel = options.channel;
    this.#options = options.decode ?? {};
    this.#host = options.host ?? STRICT_HOST;
  }

  /** The peer's CLOSE, once a record carried it: nothing after it is decoded. */
  get closeReceived(): CloseInfo | undefined {
    return this.#close;
  }

  /** Whether decoded messages wait to be taken. */
  get pending(): boolean {
    return this.#index < this.#queue.length;
  }

  /**
   * The decoded messages not taken yet, in order: a copy (GOAWAY looks for the highest request
   * id already received).
   *
   * @returns The messages.
   */
  peekPending(): Message[] {
    return this.#queue.slice(this.#index);
  }

  /**
   * Opens and decodes `packets` from `start` on, at most {@linkcode RECORDS_PER_TURN} of them,
   * queueing their messages. With `handOver`, it also stops after a small record followed by a
   * large one ({@linkcode SMALL_RECORD}), so that small messages are handled before the bulk
   * behind them is opened.
   *
   * @param packets The packets of one read.
   * @param start The first one not decoded yet.
   * @param handOver Stop after a small record followed by a large one (the consumer receives
   * bulk: fragments or stream data; pipelined small messages decode in one go).
   * @returns The index of the first packet not decoded (`packets.length` when done, or when a
   * CLOSE or a violation ended the session).
   * @throws {ProtocolError} For a record or batch that breaks the protocol (the channel's and
   * `decodeBatch`'s errors, `UnsupportedVersion` for a version-1 packet, `PolicyViolation` for
   * an empty record without a host that tolerates it).
   */
  decode(packets: Packet[], start: number, handOver = false): number {
    const end = Math.min(packets.length, start + RECORDS_PER_TURN);
    for (let i = start; i < end; i++) {
      const packet = packets[i]!;
      checkSessionPacket(packet);
      let body: Uint8Array;
      if (this.#channel !== null) {
        const opened = this.#channel.open(packet.payload);
        if (opened.type === "key_update") continue;
        if (opened.type === "close") {
          this.#close = { code: opened.code, reason: opened.reason };
          return packets.length;
        }
        body = opened.body;
      } else {
        body = packet.payload;
      }
      if (body.length === 0) {
        // A sender never seals an empty DATA record (nor sends an empty packet): each one
        // costs a decryption for nothing.
        if (this.#host.onViolation("empty record", "Received a record with no messages")) {
          return packets.length;
        }
        continue;
      }
      const messages = decodeBatch(body, this.#options);
      if (this.#index < this.#queue.length) {
        this.#queue.push(...messages);
      } else {
        this.#queue = messages;
        this.#index = 0;
      }
      if (
        handOver && i + 1 < end && body.length <= SMALL_RECORD &&
        packets[i + 1]!.payload.length >= BULK_RECORD
      ) {
        return i + 1;
      }
    }
    return end;
  }

  /**
   * Takes the next decoded message (check {@linkcode RecordDecoder.pending} first).
   *
   * @returns The message.
   */
  take(): Message {
    const message = this.#queue[this.#index]!;
    // Let the message go as soon as it is handled: a batch can hold large payloads.
    this.#queue[this.#index++] = undefined as unknown as Message;
    if (this.#index === this.#queue.length) {
      this.#queue = NO_MESSAGES;
      this.#index = 0;
    }
    return message;
  }
}
