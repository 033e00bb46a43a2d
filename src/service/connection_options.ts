/**
 * The options and facts of a `Connection`: what the handshake established, the
 * limits and timeouts, and the options of `close()` and `request()`.
 *
 * @module
 */

import type { BodyCompressor, BodyDecompressor } from "../core/batch.ts";
import { MAX_PAYLOAD_SIZE } from "../core/packet.ts";
import { INITIAL_BULK_WINDOW } from "../core/message.ts";
import type { Dispatcher } from "../protocol/dispatcher.ts";
import type { SecureChannel } from "../secure/channel.ts";
import type { TicketReceiver } from "../secure/session_ticket.ts";
import { nonNegativeOption, positiveOption } from "../util/options.ts";
import type { StreamSettings } from "./streams.ts";
import type { NetworkConfig } from "../config/types.ts";
import type { ConnectionObserver } from "./connection_stats.ts";

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
  /**
   * Fragmentation and streams (docs/SERVICE.md, "Fragments and streams"); used when both sides
   * negotiated multiplexing (hello feature `0x4`, always announced by this library).
   */
  multiplex?: MultiplexOptions;
  /**
   * Told of each handled request (opcode, outcome, duration) and each protocol violation of the
   * peer; the daemon's metrics use it.
   */
  observer?: ConnectionObserver;
}

/**
 * Fragmentation and stream settings of a connection (the `multiplex` section of the
 * configuration). Every field has a default.
 *
 * @example Settings for many small streams
 * ```ts
 * import type { MultiplexOptions } from "@npro/network-protocol";
 *
 * const options: MultiplexOptions = {
 *   maxInboundStreams: 1000,
 *   maxOutboundStreams: 10,
 *   initialWindow: 64 * 1024,
 *   // (1000 + 10) x 64 KiB must fit: about 63 MiB.
 *   connectionWindow: 64 * 1024 * 1024,
 * };
 * ```
 */
export interface MultiplexOptions {
  /** Messages larger than this travel as fragments; also the largest stream chunk (default 65536). */
  frameSize?: number;
  /** Streams the peer may have open at once; more are refused (default 100). */
  maxInboundStreams?: number;
  /** Streams this side may have open at once (default 100). */
  maxOutboundStreams?: number;
  /** The receive window a stream starts with (default 262144 bytes). */
  initialWindow?: number;
  /** The largest receive window of one stream, reached by auto-tuning (default 16 MiB). */
  maxWindow?: number;
  /**
   * The most receive window all streams of the connection hold together (default 64 MiB): the
   * bound of the memory streams may buffer. It must hold `(maxInboundStreams +
   * maxOutboundStreams) × initialWindow`.
   */
  connectionWindow?: number;
  /** How long `openStream` waits for the peer to accept (default 10000 ms). */
  openTimeoutMs?: number;
  /**
   * The bulk window this side grants: bytes of fragments and stream data the peer may have in
   * flight on the connection (default 1048576, at least 131072 and two frames). Larger windows
   * serve links with more bandwidth x delay. The library's sender uses all of it only while bulk
   * flows alone: beside small messages it keeps at most 36 KiB in flight (docs/SERVICE.md).
   */
  bulkWindow?: number;
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

/** Defaults of {@linkcode MultiplexOptions} (the `multiplex` section's defaults). */
export const DEFAULT_MULTIPLEX: Readonly<StreamSettings> = Object.freeze({
  frameSize: 65_536,
  maxInbound: 100,
  maxOutbound: 100,
  initialWindow: 262_144,
  maxWindow: 16 * 1024 * 1024,
  connectionWindow: 64 * 1024 * 1024,
  openTimeoutMs: 10_000,
  bulkWindow: 1_048_576,
});

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
  /** Fragmentation and streams. */
  streams: StreamSettings;
}

/**
 * The multiplexing options of a configuration's `multiplex` section.
 *
 * @param config The configuration.
 * @returns The options.
 */
export function multiplexFromConfig(config: NetworkConfig): MultiplexOptions {
  const m = config.multiplex;
  return {
    frameSize: m.frameSize,
    maxInboundStreams: m.maxInboundStreams,
    maxOutboundStreams: m.maxOutboundStreams,
    initialWindow: m.initialWindow,
    maxWindow: m.maxWindow,
    connectionWindow: m.connectionWindow,
    openTimeoutMs: m.openTimeout,
    bulkWindow: m.bulkWindow,
  };
}

/**
 * Checks multiplexing options and fills in the defaults.
 *
 * @param options The options.
 * @returns The settings.
 * @throws {RangeError} For a value out of range, or windows that do not fit together.
 */
export function resolveMultiplex(options?: MultiplexOptions): StreamSettings {
  // Connections made with the same options share one settings object (idle memory).
  if (options === undefined) return DEFAULT_MULTIPLEX;
  const cached = RESOLVED.get(options);
  if (cached !== undefined) return cached;
  const d = DEFAULT_MULTIPLEX;
  const settings: StreamSettings = {
    frameSize: positiveOption("frameSize", options.frameSize, d.frameSize),
    maxInbound: nonNegativeOption("maxInboundStreams", options.maxInboundStreams, d.maxInbound),
    maxOutbound: nonNegativeOption(
      "maxOutboundStreams",
      options.maxOutboundStreams,
      d.maxOutbound,
    ),
    initialWindow: positiveOption("initialWindow", options.initialWindow, d.initialWindow),
    maxWindow: positiveOption("maxWindow", options.maxWindow, d.maxWindow),
    connectionWindow: positiveOption(
      "connectionWindow",
      options.connectionWindow,
      d.connectionWindow,
    ),
    openTimeoutMs: positiveOption("openTimeoutMs", options.openTimeoutMs, d.openTimeoutMs),
    bulkWindow: positiveOption("bulkWindow", options.bulkWindow, d.bulkWindow),
  };
  if (
    settings.bulkWindow < INITIAL_BULK_WINDOW || settings.bulkWindow < 2 * settings.frameSize ||
    settings.bulkWindow > 0xffff_ffff
  ) {
    throw new RangeError(
      `Cannot use bulkWindow "${settings.bulkWindow}": it must be at least 131072 and twice frameSize "${settings.frameSize}", and at most 4294967295`,
    );
  }
  if (settings.frameSize < 1024) {
    throw new RangeError(`Cannot use frameSize "${settings.frameSize}": it must be at least 1024`);
  }
  if (settings.maxWindow > 0xffff_ffff || settings.initialWindow > settings.maxWindow) {
    throw new RangeError(
      `Cannot use initialWindow "${settings.initialWindow}" with maxWindow "${settings.maxWindow}": expected initialWindow <= maxWindow <= 4294967295`,
    );
  }
  const needed = (settings.maxInbound + settings.maxOutbound) * settings.initialWindow;
  if (settings.connectionWindow < needed || settings.connectionWindow < settings.maxWindow) {
    throw new RangeError(
      `Cannot use connectionWindow "${settings.connectionWindow}": it must hold maxWindow "${settings.maxWindow}" and (maxInboundStreams + maxOutboundStreams) x initialWindow = "${needed}"`,
    );
  }
  RESOLVED.set(options, Object.freeze(settings));
  return settings;
}

/** Settings already resolved, by their options object. */
const RESOLVED = new WeakMap<MultiplexOptions, StreamSettings>();

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
    streams: resolveMultiplex(options.multiplex),
  };
}
