/**
 * The contract of a sans-I/O handshake driver ({@linkcode HandshakeDriver}, with its
 * {@linkcode HandshakeResult}) and {@linkcode DriverCore}, the state that both session drivers
 * of `handshake.ts` share: turn-taking, the terminal failure, the size limit of a handshake
 * packet and the result a finished handshake builds.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { SecureChannel, type SecureChannelOptions } from "./channel.ts";
import type { CryptoProvider } from "./crypto.ts";
import { defaultProvider } from "./default_provider.ts";
import {
  type HandshakeParams,
  HELLO_HEADER_SIZE,
  MAX_PARAMS_SIZE,
  type PatternName,
} from "./hello.ts";
import { type HandshakeState, MAX_MESSAGE_LENGTH } from "./noise/handshake_state.ts";
import type { CommonSecurityOptions } from "./policy.ts";
import { RESUMPTION_LABEL, type TicketReceiver } from "./session_ticket.ts";
import type { TicketMessage } from "../core/message.ts";

/** The largest handshake packet payload accepted: the Noise message limit plus a hello. */
export const MAX_HANDSHAKE_PAYLOAD: number = MAX_MESSAGE_LENGTH + HELLO_HEADER_SIZE +
  MAX_PARAMS_SIZE;

/** The outcome of a successful handshake. */
export interface HandshakeResult {
  /** The encrypted record channel, or `null` in plaintext mode. */
  channel: SecureChannel | null;
  /** The Noise pattern that ran, or `"plaintext"`. */
  pattern: PatternName | "plaintext";
  /** The negotiated features: the intersection of both sides' bitmaps (0x1 lz4, 0x2 zstd). */
  features: number;
  /** The largest record body the peer accepts, when it announced one. */
  remoteMaxMessageSize?: number;
  /** The peer's static public key, when the pattern has one. */
  remoteStaticKey?: Uint8Array;
  /**
   * The Noise handshake hash `h`: equal on both sides of an untampered handshake. Compare it
   * out of band (or bind it in an application protocol) to detect a man in the middle of NN or
   * unpinned XX.
   */
  handshakeHash?: Uint8Array;
  /**
   * Whether the peer's static key was checked against configured trust. Client: a pinned
   * server key (NK, IK, KK, XX with `serverKeys`) or a known-servers entry. Server: the client
   * key passed `clientKeys` and `authorize`. A client that gets `false` should log a warning.
   * A resumed session keeps the value of the full handshake it resumes.
   */
  pinned: boolean;
  /**
   * Whether this session was resumed from a session ticket (a Noise NNpsk0 handshake keyed by
   * the ticket's secret) rather than authenticated by a full handshake. `pattern`,
   * `remoteStaticKey` and `pinned` are then those of the full handshake the ticket came from.
   */
  resumed: boolean;
  /**
   * Server side: the session ticket to send to the client (as the first message of the
   * session), when resumption is on and the client asked for one.
   */
  ticket?: TicketMessage;
  /**
   * Client side: takes the session ticket the server announced (pass it the server's `ticket`
   * message); discard it when the connection closes without one.
   */
  ticketReceiver?: TicketReceiver;
}

/** A handshake driver: fed received packet payloads, it returns payloads to send. */
export interface HandshakeDriver {
  /** Whether the handshake finished successfully. */
  readonly isComplete: boolean;
  /** The handshake time limit in milliseconds, from the options. */
  readonly timeoutMs: number;
  /**
   * Returns the payloads to send first (the client's hello; nothing for the server).
   *
   * @returns Packet payloads to send.
   */
  start(): Uint8Array[];
  /**
   * Processes one received packet payload.
   *
   * @param payload The packet payload.
   * @returns Packet payloads to send (possibly none).
   */
  receive(payload: Uint8Array): Promise<Uint8Array[]>;
  /**
   * The result, once complete.
   *
   * @returns The result.
   */
  result(): HandshakeResult;
  /** Ends the handshake as failed (for example on a timeout); later calls throw. */
  abort(reason: ProtocolError): void;
  /**
   * Explains why reading the peer's next packet failed, with what this side knows (optional).
   * `performHandshake` calls it when the stream ends (`cause` is `undefined`) or when
   * reading fails with a `ProtocolError` (a reset, bytes that are not a packet), and throws the
   * error it returns instead of a generic one.
   *
   * @param cause The read error, or `undefined` at a clean end of stream.
   * @returns A more helpful error, or `undefined` to keep the generic one.
   */
  explainReadFailure?(cause: ProtocolError | undefined): ProtocolError | undefined;
}

/**
 * Wraps an error of a handshake step as a `HandshakeFailed` error; `HandshakeFailed` and
 * `PolicyViolation` errors pass through.
 *
 * @param error What was thrown.
 * @param message The message of the wrapping error.
 * @returns The error to fail the handshake with.
 */
export function asHandshakeError(error: unknown, message: string): ProtocolError {
  if (
    error instanceof ProtocolError &&
    (error.code === "HandshakeFailed" || error.code === "PolicyViolation")
  ) {
    return error;
  }
  return new ProtocolError("HandshakeFailed", message, { cause: error });
}

/** Refuses a handshake packet payload over {@linkcode MAX_HANDSHAKE_PAYLOAD}. */
function checkSize(payload: Uint8Array): void {
  if (payload.length > MAX_HANDSHAKE_PAYLOAD) {
    throw new ProtocolError(
      "HandshakeFailed",
      `Handshake packet of "${payload.length}" bytes exceeds the limit "${MAX_HANDSHAKE_PAYLOAD}"`,
    );
  }
}

/** What a driver knows when its handshake completes. */
export interface FinishOptions {
  /** The finished Noise handshake, to split into the channel; none in plaintext mode. */
  hs?: HandshakeState | undefined;
  /** Whether this side is the initiator (the client). */
  initiator: boolean;
  /** This side's feature bitmap. */
  localFeatures: number;
  /** The peer's parameters. */
  remote: HandshakeParams;
  /** The pattern that ran, or `"plaintext"`. */
  pattern: PatternName | "plaintext";
  /** Whether the peer's static key was checked against configured trust. */
  pinned: boolean;
  /** Whether the session was resumed from a ticket (default `false`). */
  resumed?: boolean;
  /** The peer's static key when the handshake itself carried none (a resumed session's). */
  remoteStaticKey?: Uint8Array | undefined;
  /** Whether to derive the resumption secret before the split (returned by `finish`). */
  resumption?: boolean;
}

/**
 * The state shared by both session drivers: turn-taking, terminal failure, the result. A driver
 * sets {@linkcode DriverCore.step} to its handling of one packet payload; the core calls it one
 * packet at a time, in turn, and turns what it throws into the terminal failure.
 */
export class DriverCore {
  /** The crypto provider of the handshake. */
  readonly provider: CryptoProvider;
  /** Options of the resulting channel. */
  readonly channelOptions: SecureChannelOptions | undefined;
  /** Where the handshake is: not started, waiting for a packet, finished, or failed. */
  state: "start" | "wait" | "done" | "failed" = "start";
  /** The terminal failure, once failed. */
  failure: ProtocolError | undefined;
  /** The result, once finished. */
  out: HandshakeResult | undefined;
  /** Whether a step is running (a packet is being processed). */
  busy = false;
  /** The driver's handling of one packet payload in turn. */
  step: (payload: Uint8Array) => Promise<Uint8Array[]> = () =>
    Promise.reject(new ProtocolError("HandshakeFailed", "The handshake driver has no step"));

  /**
   * Takes the crypto provider and the channel's options.
   *
   * @param options The options both sides share.
   */
  constructor(options: CommonSecurityOptions) {
    this.provider = options.provider ?? defaultProvider();
    this.channelOptions = options.channel;
  }

  /**
   * Processes one received packet payload with {@linkcode DriverCore.step}, in turn.
   *
   * @param payload The packet payload.
   * @returns Packet payloads to send (possibly none).
   * @throws {ProtocolError} `HandshakeFailed` or `PolicyViolation`; the handshake is failed.
   */
  async receive(payload: Uint8Array): Promise<Uint8Array[]> {
    this.check();
    if (this.state !== "wait" || this.busy) {
      throw this.fail(
        new ProtocolError("HandshakeFailed", "Received a handshake packet out of turn"),
      );
    }
    this.busy = true;
    try {
      checkSize(payload);
      const out = await this.step(payload);
      this.check();
      return out;
    } catch (error) {
      throw this.fail(asHandshakeError(error, "Handshake failed"));
    } finally {
      this.busy = false;
    }
  }

  /**
   * The result, once complete.
   *
   * @returns The result.
   * @throws {ProtocolError} `HandshakeFailed` before completion or after a failure.
   */
  result(): HandshakeResult {
    this.check();
    if (this.out === undefined) {
      throw new ProtocolError("HandshakeFailed", "Handshake is not complete");
    }
    return this.out;
  }

  /**
   * Fails the handshake with `reason` unless it already finished or failed.
   *
   * @param reason The failure.
   */
  abort(reason: ProtocolError): void {
    if (this.state !== "done" && this.state !== "failed") this.fail(reason);
  }

  /**
   * Throws when the handshake failed earlier.
   *
   * @throws {ProtocolError} With the code of the earlier failure.
   */
  check(): void {
    if (this.failure !== undefined) {
      throw new ProtocolError(
        this.failure.code,
        `The handshake failed earlier: ${this.failure.message}`,
        { cause: this.failure },
      );
    }
  }

  /**
   * Makes `error` the terminal failure (the first one wins) and kills a channel already built.
   *
   * @param error The failure.
   * @returns `error`, to throw.
   */
  fail(error: ProtocolError): ProtocolError {
    if (this.failure === undefined) {
      this.failure = error;
      this.state = "failed";
      this.out?.channel?.abort(error);
      this.out?.ticketReceiver?.discard();
      this.out = undefined;
    }
    return error;
  }

  /**
   * Completes the handshake: splits the Noise state into the channel and builds the result.
   *
   * @param options What the driver knows at the end.
   * @returns The resumption secret (`HKDF(ck, "npro/2 resumption", 2)[0]`), when asked for.
   */
  finish(options: FinishOptions): Uint8Array | undefined {
    const { hs, remote } = options;
    let channel: SecureChannel | null = null;
    let secret: Uint8Array | undefined;
    if (hs !== undefined) {
      if (options.resumption === true) secret = hs.deriveSecret(RESUMPTION_LABEL);
      const [c1, c2] = hs.split();
      channel = new SecureChannel(
        options.initiator ? { send: c1, receive: c2 } : { send: c2, receive: c1 },
        this.channelOptions,
      );
    }
    const result: HandshakeResult = {
      channel,
      pattern: options.pattern,
      features: options.localFeatures & remote.features,
      pinned: options.pinned,
      resumed: options.resumed ?? false,
    };
    if (remote.maxMessageSize !== undefined) result.remoteMaxMessageSize = remote.maxMessageSize;
    if (hs !== undefined) {
      result.handshakeHash = hs.handshakeHash.slice();
      const rs = hs.remoteStaticKey ?? options.remoteStaticKey;
      if (rs !== undefined) result.remoteStaticKey = rs.slice();
    }
    this.out = result;
    this.state = "done";
    return secret;
  }
}
