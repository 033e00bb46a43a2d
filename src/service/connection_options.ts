/**
 * The options and facts of a `Connection`: what the handshake established, the
 * limits and timeouts, and the options of `close()` and `request()`.
 *
 * @module
 */

import type { BodyCompressor, BodyDecompressor } from "../core/batch.ts";
import { MAX_PAYLOAD_SIZE } from "../core/packet.ts";
import type { Dispatcher } from "../protocol/dispatcher.ts";
import type { SecureChannel } from "../secure/channel.ts";
import type { TicketReceiver } from "../secure/session_ticket.ts";
import { nonNegativeOption, positiveOption } from "../util/options.ts";

/** What both sides learned in the handshake. */
export interface SessionInfo {
  /** The encrypted record channel, or `null` in plaintext mode. */
  channel: SecureChannel | null;
  /** The Noise pattern that ran, or `"plaintext"`. */
  pattern: string;
  /** The negotiated feature bitmap (0x1 lz4, 0x2 zstd). */
  features: number;
  /** The peer's static public key, when the pattern has one. */
  remoteStaticKey?: Uint8Array;
  /** The Noise handshake hash (equal on both sides unless tampered with). */
  handshakeHash?: Uint8Array;
  /** Whether the peer's key was checked against configured trust. */
  pinned: boolean;
  /**
   * Whether the session was resumed from a session ticket instead of a full handshake
   * (`pattern`, `remoteStaticKey` and `pinned` are then the full handshake's); absent = `false`.
   */
  resumed?: boolean;
  /** Client side: takes the session ticket the server announced in the handshake. */
  ticketReceiver?: TicketReceiver;
  /**
   * The peer's `max_message` hello parameter: the largest batch it accepts in one record
   * (secure mode) or packet (plaintext). The connection never sends more.
   */
  remoteMaxMessageSize?: number;
}

/** Options of a `Connection`. */
export interface ConnectionOptions {
  /** `"client"` or `"server"`: which side of the session this is. */
  role: "client" | "server";
  /** Handles incoming requests and un-numbered messages; without it they are delivered to `receive()`. */
  dispatcher?: Dispatcher;
  /** The packet payload limit, also the largest record (default 16 MiB). */
  maxPayloadSize?: number;
  /**
   * The most requests handled at once (default 32). At the limit the connection stops reading
   * its socket, so TCP pushes back on the peer; replies keep flowing, so it never deadlocks.
   */
  backpressureLimit?: number;
  /** The most bytes queued for writing before reading pauses and `send` throws (default 8 MiB). */
  maxOutboundBytes?: number;
  /** The most received messages waiting in `receive()` before reading pauses (default 1024). */
  maxReceiveQueue?: number;
  /** Send a Ping after this long without receiving anything; 3 missed means dead (0 disables). */
  heartbeatIntervalMs?: number;
  /** Close after this long without application messages in either direction (0 disables). */
  idleTimeoutMs?: number;
  /** The default time limit of `request()` (default 30000 ms). */
  responseTimeoutMs?: number;
  /** Close when a write makes no progress for this long (default 30000 ms; 0 disables). */
  writeTimeoutMs?: number;
  /** Compresses outgoing message bodies (only with negotiated compression). */
  compressor?: BodyCompressor;
  /** Decompresses incoming bodies; without it compressed bodies are a `PolicyViolation`. */
  decompressor?: BodyDecompressor;
  /** A numeric id for logs (default: a counter). */
  id?: number;
  /**
   * Protocol violations (an un-numbered message nobody handles, an empty record) the peer may
   * commit within a minute; one more closes the connection with CLOSE code 2 (default 16).
   */
  maxProtocolViolations?: number;
}

/** Options of `Connection.close`. */
export interface CloseOptions {
  /** A short reason sent to the peer in the CLOSE record (secure mode; default `"closed"`). */
  reason?: string;
  /** The CLOSE code (default `CloseCode.Normal`, 0; a shutdown sends `CloseCode.GoingAway`). */
  code?: number;
  /** How long to wait for in-flight work before closing at once (default 10000 ms). */
  timeoutMs?: number;
}

/** Options of `Connection.request`. */
export interface RequestOptions {
  /** Abandons the request: it rejects with `Cancelled` and the peer is sent a `cancel`. */
  signal?: AbortSignal;
  /** The time limit in milliseconds (default: the connection's `responseTimeoutMs`). */
  timeoutMs?: number;
}

/** Defaults of {@linkcode ConnectionOptions}. */
const DEFAULT_BACKPRESSURE_LIMIT = 32;
const DEFAULT_MAX_OUTBOUND_BYTES = 8 * 1024 * 1024;
const DEFAULT_MAX_RECEIVE_QUEUE = 1024;
const DEFAULT_RESPONSE_TIMEOUT_MS = 30_000;
const DEFAULT_WRITE_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_PROTOCOL_VIOLATIONS = 16;

/** The limits and timeouts of a connection, checked, with their defaults filled in. */
export interface ConnectionLimits {
  /** See {@linkcode ConnectionOptions.maxPayloadSize}. */
  maxPayloadSize: number;
  /** See {@linkcode ConnectionOptions.backpressureLimit}. */
  backpressureLimit: number;
  /** See {@linkcode ConnectionOptions.maxOutboundBytes}. */
  maxOutboundBytes: number;
  /** See {@linkcode ConnectionOptions.maxReceiveQueue}. */
  maxReceiveQueue: number;
  /** See {@linkcode ConnectionOptions.responseTimeoutMs}. */
  responseTimeoutMs: number;
  /** See {@linkcode ConnectionOptions.maxProtocolViolations}. */
  maxProtocolViolations: number;
  /** The heartbeat interval, idle timeout and write timeout, 0 for off. */
  liveness: { heartbeatMs: number; idleMs: number; writeTimeoutMs: number };
}

/**
 * Checks a connection's limits and fills in the defaults.
 *
 * @param options The connection's options.
 * @returns The limits.
 * @throws {RangeError} For a limit that is not a positive (or, where 0 disables, non-negative)
 * number.
 */
export function resolveLimits(options: ConnectionOptions): ConnectionLimits {
  return {
    maxPayloadSize: options.maxPayloadSize ?? MAX_PAYLOAD_SIZE,
    backpressureLimit: positiveOption(
      "backpressureLimit",
      options.backpressureLimit,
      DEFAULT_BACKPRESSURE_LIMIT,
    ),
    maxOutboundBytes: positiveOption(
      "maxOutboundBytes",
      options.maxOutboundBytes,
      DEFAULT_MAX_OUTBOUND_BYTES,
    ),
    maxReceiveQueue: positiveOption(
      "maxReceiveQueue",
      options.maxReceiveQueue,
      DEFAULT_MAX_RECEIVE_QUEUE,
    ),
    responseTimeoutMs: positiveOption(
      "responseTimeoutMs",
      options.responseTimeoutMs,
      DEFAULT_RESPONSE_TIMEOUT_MS,
    ),
    maxProtocolViolations: nonNegativeOption(
      "maxProtocolViolations",
      options.maxProtocolViolations,
      DEFAULT_MAX_PROTOCOL_VIOLATIONS,
    ),
    liveness: {
      heartbeatMs: nonNegativeOption("heartbeatIntervalMs", options.heartbeatIntervalMs, 0),
      idleMs: nonNegativeOption("idleTimeoutMs", options.idleTimeoutMs, 0),
      writeTimeoutMs: nonNegativeOption(
        "writeTimeoutMs",
        options.writeTimeoutMs,
        DEFAULT_WRITE_TIMEOUT_MS,
      ),
    },
  };
}
