/**
 * The cluster's messages over the library's own Noise connections: one small pool per peer
 * (`createPool`), the peer's Noise static key checked by the handshake against the key pinned
 * or first seen for it (a known-servers store of the cluster's own), and the `npro.cluster`
 * command answered by the node's dispatcher.
 *
 * @module
 */

import type { NetworkConfig } from "../../config/mod.ts";
import type { Message } from "../../core/message.ts";
import type { KnownServers } from "../../secure/known_servers.ts";
import { fingerprint, type KeyPair } from "../../secure/keys.ts";
import { ServerKeyChangedError } from "../../secure/handshake_trust.ts";
import type { TlsClientOptions } from "../../transport/tls.ts";
import type { Transport } from "../../transport/types.ts";
import type { RequestOptions } from "../connection_options.ts";
import { createPool, type Pool } from "../pool.ts";
import { logger } from "../../log.ts";
import { PeerIdentityError } from "./errors.ts";
import type { ProbeReply, ProbeTransport } from "./detector.ts";
import type { PeerSpec } from "./types.ts";
import {
  CLUSTER_COMMAND,
  type ClusterMessage,
  decodeClusterMessage,
  encodeClusterMessage,
} from "./wire.ts";

const log = logger("cluster");

/**
 * The peers' Noise static keys: pinned ones, and the first key seen for each other peer. A
 * known-servers store for the handshake, so that a connection to a peer that presents another
 * key fails before any message is sent.
 */
export class PeerKeys implements KnownServers {
  /** For error messages. */
  readonly location = "the cluster's peer keys";
  readonly #keys = new Map<string, Uint8Array>();

  /**
   * The key of a peer.
   *
   * @param name The peer's membership key.
   */
  get(name: string): Uint8Array | undefined {
    return this.#keys.get(name);
  }

  /**
   * Records the key a peer presented first (or pins one).
   *
   * @param name The peer's membership key.
   * @param publicKey Its key.
   */
  set(name: string, publicKey: Uint8Array): void {
    if (!this.#keys.has(name)) {
      log.info("Peer {peer}: recorded its key {fingerprint} (first seen)", {
        peer: name,
        fingerprint: fingerprint(publicKey),
      });
    }
    this.#keys.set(name, publicKey.slice());
  }

  /**
   * Pins a peer's key (from its configuration): required from now on.
   *
   * @param name The peer's membership key.
   * @param publicKey Its key.
   */
  pin(name: string, publicKey: Uint8Array): void {
    this.#keys.set(name, publicKey.slice());
  }

  /**
   * Forgets a peer's key (it left the membership).
   *
   * @param name The peer's membership key.
   */
  delete(name: string): void {
    this.#keys.delete(name);
  }

  /**
   * The fingerprint of a peer's key, if known.
   *
   * @param name The peer's membership key.
   */
  fingerprintOf(name: string): string | undefined {
    const key = this.#keys.get(name);
    return key === undefined ? undefined : fingerprint(key);
  }
}

/** Options of {@linkcode NoiseProbeTransport}. */
export interface NoiseProbeTransportOptions {
  /** This node's static key (its identity as a client too). */
  staticKey: KeyPair;
  /** The configuration (client, transport, security, compression sections). */
  config: NetworkConfig;
  /** The peers' keys. */
  keys: PeerKeys;
  /** The probe interval, for the reconnection delays. */
  probeIntervalMs: number;
  /** A transport instead of the configuration's. */
  transport?: Transport;
  /** TLS client options, for `transport.kind = "tls"`. */
  tls?: TlsClientOptions;
}

interface Link {
  readonly address: string;
  readonly pool: Pool;
}

/**
 * Sends cluster messages, and the application's requests, to peers over one pool per peer.
 *
 * @example Made by createCluster; a peer's pool opens on first use
 * ```ts
 * import { NoiseProbeTransport, PeerKeys } from "./noise_transport.ts";
 * import { defaultConfig } from "../../config/mod.ts";
 * import { generateKeyPair } from "../../secure/keys.ts";
 *
 * const transport = new NoiseProbeTransport({
 *   staticKey: generateKeyPair(),
 *   config: defaultConfig(),
 *   keys: new PeerKeys(),
 *   probeIntervalMs: 1000,
 * });
 * await transport.close();
 * ```
 */
export class NoiseProbeTransport implements ProbeTransport {
  readonly #options: NoiseProbeTransportOptions;
  readonly #config: NetworkConfig;
  readonly #links = new Map<string, Link>();
  readonly #closing = new Set<Promise<void>>();

  /**
   * A transport (pools open on first use).
   *
   * @param options The node's key, the configuration and the peers' keys.
   */
  constructor(options: NoiseProbeTransportOptions) {
    this.#options = options;
    const c = options.config;
    const interval = options.probeIntervalMs;
    // A dead peer is tried again within two probe intervals, not after the client's long backoff.
    const reconnectDelay = Math.max(10, Math.min(Math.round(interval / 2), 60_000));
    this.#config = {
      ...c,
      client: {
        ...c.client,
        connectionTimeout: Math.max(100, Math.min(Math.round(interval * 2), 300_000)),
        reconnectDelay,
        maxReconnectDelay: Math.max(reconnectDelay, Math.min(interval * 2, 3_600_000)),
      },
    };
  }

  #link(key: string, spec: PeerSpec): Link {
    let link = this.#links.get(key);
    if (link !== undefined && link.address === spec.address) return link;
    if (link !== undefined) this.forget(key, false);
    if (spec.publicKey !== undefined) this.#options.keys.pin(key, spec.publicKey);
    const pool = createPool({
      config: this.#config,
      address: spec.address,
      ...(this.#options.transport === undefined ? {} : { transport: this.#options.transport }),
      ...(this.#options.tls === undefined ? {} : { tls: this.#options.tls }),
      security: {
        staticKey: this.#options.staticKey,
        knownServers: { store: this.#options.keys, name: key },
      },
      minConnections: 0,
      maxConnections: 2,
      circuitBreaker: false,
      retry: false,
      healthCheck: { idleMs: 0, intervalMs: 0 },
    });
    link = { address: spec.address, pool };
    this.#links.set(key, link);
    return link;
  }

  async send(
    key: string,
    spec: PeerSpec,
    message: ClusterMessage,
    options: { timeoutMs: number; signal: AbortSignal },
  ): Promise<ProbeReply> {
    const reply = await this.request(key, spec, {
      type: "custom",
      command: CLUSTER_COMMAND,
      payload: encodeClusterMessage(message),
    }, options);
    if (reply.type !== "custom" || reply.command !== CLUSTER_COMMAND) {
      throw new TypeError(`Peer "${key}" answered a cluster message with a "${reply.type}"`);
    }
    const fingerprint = this.#options.keys.fingerprintOf(key);
    return {
      reply: decodeClusterMessage(reply.payload),
      ...(fingerprint === undefined ? {} : { fingerprint }),
    };
  }

  /**
   * Sends a request to a peer through its pool.
   *
   * @param key The peer's membership key.
   * @param spec Its address.
   * @param message The request.
   * @param options A signal and a time limit.
   * @returns The answer.
   * @throws {PeerIdentityError} The peer's address presented another key.
   */
  async request(
    key: string,
    spec: PeerSpec,
    message: Message,
    options: RequestOptions,
  ): Promise<Message> {
    try {
      return await this.#link(key, spec).pool.request(message, options);
    } catch (error) {
      const changed = findKeyChange(error);
      if (changed !== undefined) {
        throw new PeerIdentityError(
          key,
          "key-mismatch",
          `Node at "${spec.address}" presented key "${
            fingerprint(changed.presentedKey)
          }", not the key "${fingerprint(changed.knownKey)}" of peer "${key}": refused`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * Closes a peer's pool.
   *
   * @param key The peer's membership key.
   * @param removed The peer left the membership: its recorded key is forgotten too (a peer that
   * moved to another address keeps its key).
   */
  forget(key: string, removed: boolean): void {
    const link = this.#links.get(key);
    if (link !== undefined) {
      this.#links.delete(key);
      const closing = link.pool.close();
      this.#closing.add(closing);
      void closing.finally(() => this.#closing.delete(closing));
    }
    if (removed) this.#options.keys.delete(key);
  }

  /** Closes every pool. */
  async close(): Promise<void> {
    const pools = [...this.#links.values()].map((link) => link.pool.close());
    this.#links.clear();
    await Promise.allSettled([...pools, ...this.#closing]);
  }
}

function findKeyChange(error: unknown): ServerKeyChangedError | undefined {
  for (let e = error, depth = 0; e !== undefined && depth < 8; depth++) {
    if (e instanceof ServerKeyChangedError) return e;
    e = e instanceof Error ? e.cause : undefined;
  }
  return undefined;
}
