/**
 * Runs a handshake driver over a minimal packet I/O interface, with a time limit and an
 * `AbortSignal`. The connection layer calls {@linkcode clientHandshake} or
 * {@linkcode serverHandshake} over a live socket.
 *
 * @module
 */

import { type Packet, PROTOCOL_VERSION } from "../core/packet.ts";
import { ProtocolError } from "../errors.ts";
import {
  ClientHandshake,
  type HandshakeDriver,
  type HandshakeResult,
  ServerHandshake,
} from "./handshake.ts";
import type { ClientSecurityOptions, ServerSecurityOptions } from "./policy.ts";

/** The packet I/O a handshake runs over. */
export interface HandshakeIO {
  /**
   * Reads the next packet; `null` at end of stream. It should stop when `signal` aborts.
   *
   * @param signal Aborted on timeout or cancellation.
   */
  readPacket(signal: AbortSignal): Promise<Packet | null>;
  /**
   * Writes packets with these payloads (version {@linkcode PROTOCOL_VERSION}), in order.
   *
   * @param payloads The packet payloads.
   */
  writePackets(payloads: Uint8Array[]): Promise<void>;
}

/** Options of a handshake run. */
export interface HandshakeRunOptions {
  /** Cancels the handshake: it then rejects with `Cancelled`. */
  signal?: AbortSignal;
}

function settle<T>(promise: Promise<T>, stopped: Promise<never>): Promise<T> {
  // The loser of the race must not become an unhandled rejection.
  promise.catch(() => {});
  return Promise.race([promise, stopped]);
}

/**
 * Runs `driver` over `io` until it completes, within its time limit.
 *
 * @example Run both sides over an in-memory pipe
 * ```ts
 * import { generateKeyPair } from "@npro/network-protocol";
 * import type { Packet } from "@npro/network-protocol/core";
 * import {
 *   ClientHandshake,
 *   type HandshakeIO,
 *   performHandshake,
 *   ServerHandshake,
 * } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * function pipe(): [HandshakeIO, HandshakeIO] {
 *   const queues: Packet[][] = [[], []];
 *   const waiters: (((p: Packet) => void) | undefined)[] = [undefined, undefined];
 *   const end = (me: 0 | 1): HandshakeIO => ({
 *     readPacket: () => {
 *       const next = queues[me]!.shift();
 *       return next ? Promise.resolve(next) : new Promise((r) => (waiters[me] = r));
 *     },
 *     writePackets: (payloads) => {
 *       for (const payload of payloads) {
 *         const packet = { version: 2, payload };
 *         const waiter = waiters[1 - me];
 *         waiters[1 - me] = undefined;
 *         if (waiter) waiter(packet);
 *         else queues[1 - me]!.push(packet);
 *       }
 *       return Promise.resolve();
 *     },
 *   });
 *   return [end(0), end(1)];
 * }
 *
 * const key = generateKeyPair();
 * const [a, b] = pipe();
 * const [client, server] = await Promise.all([
 *   performHandshake(a, new ClientHandshake({ serverKeys: [key.publicKey] })),
 *   performHandshake(b, new ServerHandshake({ staticKey: key })),
 * ]);
 * assert.deepEqual(client.handshakeHash, server.handshakeHash);
 * ```
 *
 * @param io The packet I/O.
 * @param driver A fresh {@linkcode ClientHandshake} or {@linkcode ServerHandshake}.
 * @param options An optional `AbortSignal`.
 * @returns The handshake result.
 * @throws {ProtocolError} `HandshakeFailed` (also when the peer closes or sends a packet of
 * another version; a client explains a server that closes after its first message or replies
 * with bytes that are not a packet), `PolicyViolation`, `Timeout` after the driver's
 * `timeoutMs`, `Cancelled` when the signal aborts; or what `io` throws.
 */
export async function performHandshake(
  io: HandshakeIO,
  driver: HandshakeDriver,
  options: HandshakeRunOptions = {},
): Promise<HandshakeResult> {
  const signal = options.signal;
  if (signal?.aborted) {
    const error = new ProtocolError("Cancelled", "The handshake was cancelled", {
      cause: signal.reason,
    });
    driver.abort(error);
    throw error;
  }
  const controller = new AbortController();
  let reject: (error: ProtocolError) => void = () => {};
  const stopped = new Promise<never>((_, r) => (reject = r));
  stopped.catch(() => {});
  const stop = (error: ProtocolError): void => {
    driver.abort(error);
    controller.abort(error);
    reject(error);
  };
  const timer = setTimeout(() => {
    stop(
      new ProtocolError(
        "Timeout",
        `The handshake did not finish within "${driver.timeoutMs}" ms`,
      ),
    );
  }, driver.timeoutMs);
  const onAbort = (): void => {
    stop(new ProtocolError("Cancelled", "The handshake was cancelled", { cause: signal?.reason }));
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const first = driver.start();
    if (first.length > 0) await settle(io.writePackets(first), stopped);
    while (!driver.isComplete) {
      let packet: Packet | null;
      try {
        packet = await settle(io.readPacket(controller.signal), stopped);
      } catch (error) {
        // A timeout or a cancellation stays what it is; a read failure may be explained.
        if (controller.signal.aborted || !(error instanceof ProtocolError)) throw error;
        throw driver.explainReadFailure?.(error) ?? error;
      }
      if (controller.signal.aborted) throw controller.signal.reason;
      if (packet === null) {
        throw driver.explainReadFailure?.(undefined) ?? new ProtocolError(
          "HandshakeFailed",
          "The peer closed the connection during the handshake",
        );
      }
      if (packet.version !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          "HandshakeFailed",
          `Handshake packet has version "${packet.version}", expected "${PROTOCOL_VERSION}"`,
        );
      }
      const out = await settle(driver.receive(packet.payload), stopped);
      if (out.length > 0) await settle(io.writePackets(out), stopped);
    }
    if (controller.signal.aborted) throw controller.signal.reason;
    return driver.result();
  } catch (error) {
    if (error instanceof ProtocolError) driver.abort(error);
    else {driver.abort(
        new ProtocolError("HandshakeFailed", "The handshake failed", { cause: error }),
      );}
    throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Runs the client side of the handshake over `io`.
 *
 * @example Connect with a pinned server key
 * ```ts ignore
 * import { clientHandshake } from "@npro/network-protocol/secure";
 *
 * declare const io: import("@npro/network-protocol/secure").HandshakeIO;
 * declare const serverKey: Uint8Array;
 * const { channel, pinned } = await clientHandshake(io, { serverKeys: [serverKey] });
 * ```
 *
 * @param io The packet I/O.
 * @param options Security options, plus an optional `AbortSignal`.
 * @returns The handshake result.
 * @throws {TypeError} For invalid options (rejected before any I/O).
 * @throws {ProtocolError} As {@linkcode performHandshake}.
 */
export async function clientHandshake(
  io: HandshakeIO,
  options: ClientSecurityOptions & HandshakeRunOptions = {},
): Promise<HandshakeResult> {
  const { signal, ...security } = options;
  return await performHandshake(io, new ClientHandshake(security), signal ? { signal } : {});
}

/**
 * Runs the server side of the handshake over `io`. On failure nothing is sent to the client;
 * the caller closes the connection.
 *
 * @example Accept a client
 * ```ts ignore
 * import { serverHandshake } from "@npro/network-protocol/secure";
 *
 * declare const io: import("@npro/network-protocol/secure").HandshakeIO;
 * declare const staticKey: { publicKey: Uint8Array; privateKey: Uint8Array };
 * const { channel, remoteStaticKey } = await serverHandshake(io, { staticKey });
 * ```
 *
 * @param io The packet I/O.
 * @param options Security options, plus an optional `AbortSignal`.
 * @returns The handshake result.
 * @throws {TypeError} For invalid options (rejected before any I/O).
 * @throws {ProtocolError} As {@linkcode performHandshake}.
 */
export async function serverHandshake(
  io: HandshakeIO,
  options: ServerSecurityOptions & HandshakeRunOptions,
): Promise<HandshakeResult> {
  const { signal, ...security } = options;
  return await performHandshake(io, new ServerHandshake(security), signal ? { signal } : {});
}
