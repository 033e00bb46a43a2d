/**
 * In-memory helpers for the secure channel tests: channel pairs, handshake pairs with a
 * tampering hook, and a packet pipe for the async runner.
 *
 * @module
 */

import type { Packet } from "../src/core/packet.ts";
import { SecureChannel, type SecureChannelOptions } from "../src/secure/channel.ts";
import {
  ClientHandshake,
  type HandshakeDriver,
  type HandshakeResult,
  ServerHandshake,
} from "../src/secure/handshake.ts";
import type { HandshakeIO } from "../src/secure/handshake_runner.ts";
import { CipherState } from "../src/secure/noise/cipher_state.ts";
import type { ClientSecurityOptions, ServerSecurityOptions } from "../src/secure/policy.ts";

/** The raw cipher states behind a channel pair, for tests that need to reach below it. */
export interface ChannelPair {
  a: SecureChannel;
  b: SecureChannel;
  /** a's send state (= what b's receive state must follow). */
  aSend: CipherState;
  aReceive: CipherState;
  bSend: CipherState;
  bReceive: CipherState;
  k1: Uint8Array;
  k2: Uint8Array;
}

/**
 * Channel options without the KEY_UPDATE rate rules: most channel tests rekey after every
 * record to exercise the mechanism, far faster than the defaults allow.
 */
export const UNPOLICED: SecureChannelOptions = {
  minKeyUpdateIntervalMs: 0,
  maxKeyUpdatesPerSecond: Infinity,
};

/** Two channels with random keys, wired to each other (unpoliced unless options say so). */
export function channelPair(
  aOptions?: SecureChannelOptions,
  bOptions?: SecureChannelOptions,
): ChannelPair {
  const k1 = crypto.getRandomValues(new Uint8Array(32));
  const k2 = crypto.getRandomValues(new Uint8Array(32));
  const aSend = new CipherState(k1);
  const aReceive = new CipherState(k2);
  const bSend = new CipherState(k2);
  const bReceive = new CipherState(k1);
  return {
    a: new SecureChannel({ send: aSend, receive: aReceive }, { ...UNPOLICED, ...aOptions }),
    b: new SecureChannel({ send: bSend, receive: bReceive }, { ...UNPOLICED, ...bOptions }),
    aSend,
    aReceive,
    bSend,
    bReceive,
    k1,
    k2,
  };
}

/** Who sent a handshake packet, and its index in that side's sequence. */
export type Tamper = (
  from: "client" | "server",
  index: number,
  payload: Uint8Array,
) => Uint8Array | null;

/** The outcome of an in-memory handshake. */
export interface HandshakeOutcome {
  client?: HandshakeResult;
  server?: HandshakeResult;
  clientError?: unknown;
  serverError?: unknown;
  /** Every payload that crossed, in order, after tampering. */
  transcript: { from: "client" | "server"; payload: Uint8Array }[];
}

/**
 * Runs a handshake between two drivers in memory. `tamper` may replace or drop (return `null`)
 * any packet. Stops at the first error of either side.
 */
export async function runDrivers(
  client: HandshakeDriver,
  server: HandshakeDriver,
  tamper?: Tamper,
): Promise<HandshakeOutcome> {
  const outcome: HandshakeOutcome = { transcript: [] };
  const sent = { client: 0, server: 0 };
  const deliver = (from: "client" | "server", payloads: Uint8Array[]): Uint8Array[] => {
    const out: Uint8Array[] = [];
    for (const payload of payloads) {
      const index = sent[from]++;
      const changed = tamper ? tamper(from, index, payload) : payload;
      if (changed !== null) {
        out.push(changed);
        outcome.transcript.push({ from, payload: changed });
      }
    }
    return out;
  };
  let toServer: Uint8Array[];
  try {
    toServer = deliver("client", client.start());
  } catch (error) {
    outcome.clientError = error;
    return outcome;
  }
  for (let round = 0; round < 4; round++) {
    const toClient: Uint8Array[] = [];
    for (const payload of toServer) {
      try {
        toClient.push(...deliver("server", await server.receive(payload)));
      } catch (error) {
        outcome.serverError = error;
        return outcome;
      }
    }
    toServer = [];
    for (const payload of toClient) {
      try {
        toServer.push(...deliver("client", await client.receive(payload)));
      } catch (error) {
        outcome.clientError = error;
        return outcome;
      }
    }
    if (toServer.length === 0 && toClient.length === 0) break;
  }
  if (client.isComplete) outcome.client = client.result();
  if (server.isComplete) outcome.server = server.result();
  return outcome;
}

/** Runs a handshake between fresh drivers built from options. */
export function handshake(
  clientOptions: ClientSecurityOptions,
  serverOptions: ServerSecurityOptions,
  tamper?: Tamper,
): Promise<HandshakeOutcome> {
  return runDrivers(new ClientHandshake(clientOptions), new ServerHandshake(serverOptions), tamper);
}

/** Runs a handshake that must succeed on both sides and returns both results. */
export async function connect(
  clientOptions: ClientSecurityOptions,
  serverOptions: ServerSecurityOptions,
): Promise<{ client: HandshakeResult; server: HandshakeResult }> {
  const outcome = await handshake(clientOptions, serverOptions);
  if (outcome.clientError !== undefined) throw outcome.clientError;
  if (outcome.serverError !== undefined) throw outcome.serverError;
  if (outcome.client === undefined || outcome.server === undefined) {
    throw new Error("The handshake did not complete on both sides");
  }
  return { client: outcome.client, server: outcome.server };
}

/** One end of an in-memory packet pipe. */
export interface PipeEnd extends HandshakeIO {
  /** Ends the stream towards the peer (its next read returns `null`). */
  close(): void;
  /** Packets written by this end. */
  written: Uint8Array[];
}

/** An in-memory packet pipe whose reads honour the abort signal. */
export function pipe(): [PipeEnd, PipeEnd] {
  const queues: (Packet | null)[][] = [[], []];
  const waiters: (((packet: Packet | null) => void) | undefined)[] = [undefined, undefined];
  const push = (to: 0 | 1, packet: Packet | null): void => {
    const waiter = waiters[to];
    waiters[to] = undefined;
    if (waiter !== undefined) waiter(packet);
    else queues[to]!.push(packet);
  };
  const end = (me: 0 | 1): PipeEnd => {
    const other = (1 - me) as 0 | 1;
    const written: Uint8Array[] = [];
    return {
      written,
      readPacket(signal: AbortSignal): Promise<Packet | null> {
        const queue = queues[me]!;
        if (queue.length > 0) return Promise.resolve(queue.shift()!);
        return new Promise((resolve, reject) => {
          const onAbort = (): void => {
            waiters[me] = undefined;
            reject(signal.reason);
          };
          if (signal.aborted) return onAbort();
          signal.addEventListener("abort", onAbort, { once: true });
          waiters[me] = (packet) => {
            signal.removeEventListener("abort", onAbort);
            resolve(packet);
          };
        });
      },
      writePackets(payloads: Uint8Array[]): Promise<void> {
        for (const payload of payloads) {
          written.push(payload);
          push(other, { version: 2, payload });
        }
        return Promise.resolve();
      },
      close(): void {
        push(other, null);
      },
    };
  };
  return [end(0), end(1)];
}

/** Returns a copy of `bytes` with bit `bit` flipped. */
export function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = bytes.slice();
  copy[bit >>> 3]! ^= 1 << (bit & 7);
  return copy;
}

/** Random bytes. */
export function randomBytes(length: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length));
}
