/**
 * Session set-up shared by the daemon and the client: running the handshake over a fresh
 * connection, planning compression, and turning configuration into security options.
 *
 * @module
 */

import { encodePackets, PROTOCOL_VERSION } from "../core/packet.ts";
import { createConfig, type NetworkConfig, type NetworkConfigInput } from "../config/mod.ts";
import { ProtocolError } from "../errors.ts";
import {
  type CompressionSettings,
  localCompressionBits,
  planCompression,
} from "../compression/policy.ts";
import {
  ClientHandshake,
  type HandshakeResult,
  MAX_HANDSHAKE_PAYLOAD,
} from "../secure/handshake.ts";
import { type HandshakeIO, performHandshake, serverHandshake } from "../secure/handshake_runner.ts";
import type { TicketMessage } from "../core/message.ts";
import { SessionTicketIssuer, SessionTicketStore } from "../secure/session_ticket.ts";
import { decodeKey, type KeyPair, readKeyFile } from "../secure/keys.ts";
import { RECORD_TAG_SIZE } from "../secure/channel.ts";
import { FEATURE_MULTIPLEX } from "../secure/hello.ts";
import { KnownServersFile } from "../secure/known_servers.ts";
import {
  type ClientSecurityOptions,
  type CommonSecurityOptions,
  defaultAcceptedPatterns,
  PATTERN_INFO,
  type ServerSecurityOptions,
} from "../secure/policy.ts";
import { FrameReader } from "./frame_reader.ts";
import type { ConnectionOptions, SessionInfo } from "./connection.ts";

/** The smallest `max_message` a peer may announce (docs/PROTOCOL.md, "Parameters"). */
export const MIN_REMOTE_MAX_MESSAGE = 1024;

/** A connection whose handshake finished. */
export interface EstablishedSession {
  /** The frame reader that ran the handshake (it may hold early packets). */
  reader: FrameReader;
  /** What the handshake established. */
  session: SessionInfo;
  /** The compressor and decompressor the peers agreed on. */
  compression: Pick<ConnectionOptions, "compressor" | "decompressor">;
  /** Server side: the session ticket to send first, when the client asked for one. */
  ticket?: TicketMessage;
}

/** Writes all of `data` to `conn`. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let offset = 0;
  try {
    while (offset < data.length) offset += await conn.write(data.subarray(offset));
  } catch (cause) {
    throw new ProtocolError("ConnectionClosed", "Connection failed while writing", { cause });
  }
}

function handshakeIO(conn: Deno.Conn, reader: FrameReader): HandshakeIO {
  return {
    readPacket: () => reader.readPacket(),
    writePackets: (payloads) =>
      writeAll(
        conn,
        encodePackets(payloads.map((payload) => ({ version: PROTOCOL_VERSION, payload }))),
      ),
  };
}

/** Options of {@linkcode establish}. */
export interface EstablishOptions {
  /** Which side this is. */
  role: "client" | "server";
  /** The security options of that side. */
  security: ClientSecurityOptions | ServerSecurityOptions;
  /** The compression settings. */
  compression: CompressionSettings;
  /** The packet limit once the session is established. */
  maxPayloadSize: number;
  /** Cancels the handshake. */
  signal?: AbortSignal | undefined;
  /** Client side: set to whether the hello presented a session ticket (known even on failure). */
  attempt?: { resuming: boolean };
}

/**
 * Runs one side of the handshake over `conn` and plans compression. On failure the caller
 * closes `conn` (which also stops a pending read).
 *
 * @param conn The fresh transport connection.
 * @param options The side, its security options, compression, the packet limit and a signal.
 * @returns The established session.
 */
export async function establish(
  conn: Deno.Conn,
  options: EstablishOptions,
): Promise<EstablishedSession> {
  const { role, security, compression, maxPayloadSize, signal } = options;
  // Until the peer is authenticated, packets are refused at their header beyond the handshake
  // limit: an unauthenticated peer can make the reader hold at most one such packet.
  const reader = new FrameReader(conn, { maxPayloadSize: MAX_HANDSHAKE_PAYLOAD });
  const io = handshakeIO(conn, reader);
  // Multiplexing (fragments, streams, GOAWAY) is always offered; it is used when both offer it.
  const features = localCompressionBits(compression) | FEATURE_MULTIPLEX;
  const handshake = { ...security, features, ...(signal === undefined ? {} : { signal }) };
  let result: HandshakeResult;
  if (role === "client") {
    const { signal: _, ...clientOptions } = handshake as ClientSecurityOptions & {
      signal?: AbortSignal;
    };
    const driver = new ClientHandshake(clientOptions);
    try {
      result = await performHandshake(io, driver, signal === undefined ? {} : { signal });
    } finally {
      if (options.attempt !== undefined) options.attempt.resuming = driver.resuming;
    }
  } else {
    result = await serverHandshake(io, handshake as ServerSecurityOptions);
  }
  const plan = planCompression(compression, result.features, maxPayloadSize);
  const session: SessionInfo = {
    channel: result.channel,
    pattern: result.pattern,
    features: result.features,
    pinned: result.pinned,
    resumed: result.resumed,
  };
  if (result.ticketReceiver !== undefined) session.ticketReceiver = result.ticketReceiver;
  if (result.remoteStaticKey !== undefined) session.remoteStaticKey = result.remoteStaticKey;
  if (result.handshakeHash !== undefined) session.handshakeHash = result.handshakeHash;
  if (result.remoteMaxMessageSize !== undefined) {
    // The peer's max_message parameter: the largest record body (batch) it accepts. Honoured
    // by the connection's sender; below MIN_REMOTE_MAX_MESSAGE no reply would ever fit.
    if (result.remoteMaxMessageSize < MIN_REMOTE_MAX_MESSAGE) {
      result.ticketReceiver?.discard();
      throw new ProtocolError(
        "PolicyViolation",
        `Peer's max_message "${result.remoteMaxMessageSize}" is below the minimum "${MIN_REMOTE_MAX_MESSAGE}"`,
      );
    }
    session.remoteMaxMessageSize = result.remoteMaxMessageSize;
  }
  const chosen: Pick<ConnectionOptions, "compressor" | "decompressor"> = {};
  if (plan.compressor !== undefined) chosen.compressor = plan.compressor;
  if (plan.decompressor !== undefined) chosen.decompressor = plan.decompressor;
  const established: EstablishedSession = { reader, session, compression: chosen };
  if (result.ticket !== undefined) established.ticket = result.ticket;
  return established;
}

/**
 * The compression settings of a configuration.
 *
 * @param config The configuration.
 * @returns The settings.
 */
export function compressionFromConfig(config: NetworkConfig): CompressionSettings {
  const c = config.compression;
  return {
    enabled: c.enabled,
    algorithm: c.algorithm,
    accept: c.accept,
    threshold: c.threshold,
    level: c.level,
  };
}

/** The options both sides take from `transport` and `security`. */
function commonSecurity(config: NetworkConfig, handshakeTimeoutMs: number): CommonSecurityOptions {
  const s = config.security;
  return {
    encryption: config.transport.encryptionEnabled,
    handshakeTimeoutMs,
    // The largest batch this side accepts: a packet minus the record's tag and type byte.
    maxMessageSize: config.transport.maxPayloadSize -
      (config.transport.encryptionEnabled ? RECORD_TAG_SIZE + 1 : 0),
    channel: {
      rekeyAfterRecords: s.rekeyAfterRecords,
      rekeyAfterBytes: s.rekeyAfterBytes,
      rekeyAfterMs: s.rekeyAfterMs,
      maxRecordSize: config.transport.maxPayloadSize,
    },
  };
}

async function readPsk(path: string): Promise<Uint8Array> {
  let text: string;
  try {
    text = (await Deno.readTextFile(path)).trim();
  } catch (cause) {
    throw new ProtocolError("ConfigError", `Cannot read the pre-shared key file "${path}"`, {
      cause,
    });
  }
  const line = text.split(/\r?\n/).find((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  try {
    return decodeKey((line ?? "").replace(/^psk:\s*/, "").trim());
  } catch (cause) {
    throw new ProtocolError(
      "ConfigError",
      `Pre-shared key file "${path}" does not hold a base64url 32-byte key`,
      { cause },
    );
  }
}

async function readStaticKey(path: string): Promise<KeyPair> {
  try {
    return await readKeyFile(path);
  } catch (cause) {
    if (cause instanceof ProtocolError) throw cause;
    throw new ProtocolError("ConfigError", `Cannot read the static key file "${path}"`, { cause });
  }
}

/**
 * The server's security options from a configuration: `security.static_key_path`,
 * `allowed_keys`, `psk_path`, `pattern`/`allow_unauthenticated`, `resumption` (a new
 * `SessionTicketIssuer` with `ticket_lifetime_ms` and `ticket_key_rotation_ms`),
 * `transport.encryption_enabled` and the handshake timeout, with `overrides` applied on top.
 *
 * What depends on the keys is computed last, from the merged options, so that a caller's `psk`,
 * `clientKeys`, `authorize` or `staticKey` counts exactly as it would without a configuration:
 * - without a static key, `generateKey` makes one for this run, but only when the patterns
 *   need it (a `psk` alone runs NNpsk0, which has no server key);
 * - `security.pattern` other than XX restricts the server to that pattern (XX stands for the
 *   policy's defaults), and `allow_unauthenticated` adds NN. An `accept` list in `overrides` wins.
 *
 * @param config The configuration.
 * @param overrides Options that replace the configuration's (for example an `authorize`
 * callback or a `staticKey` object).
 * @param generateKey Makes a static key for this run when none is configured and one is needed.
 * @returns The server security options.
 */
export async function serverSecurityFromConfig(
  config: NetworkConfig,
  overrides?: ServerSecurityOptions,
  generateKey?: () => KeyPair,
): Promise<ServerSecurityOptions> {
  const s = config.security;
  const fromConfig: ServerSecurityOptions = commonSecurity(
    config,
    config.server.connectionTimeout,
  );
  if (config.transport.encryptionEnabled) {
    if (s.staticKeyPath !== "") fromConfig.staticKey = await readStaticKey(s.staticKeyPath);
    if (s.allowedKeys.length > 0) fromConfig.clientKeys = s.allowedKeys.map(decodeKey);
    if (s.pskPath !== "") fromConfig.psk = await readPsk(s.pskPath);
  }
  if (config.transport.encryptionEnabled && s.resumption) {
    fromConfig.resumption = new SessionTicketIssuer({
      lifetimeMs: s.ticketLifetimeMs,
      keyRotationMs: s.ticketKeyRotationMs,
    });
  }
  const options: ServerSecurityOptions = { ...fromConfig, ...overrides };
  if (overrides?.resumption !== undefined && overrides.resumption !== fromConfig.resumption) {
    fromConfig.resumption?.destroy();
  }
  if (options.encryption === false) return options;
  const listed = overrides?.accept ?? (s.pattern === "XX" ? undefined : [s.pattern]);
  if (options.staticKey === undefined && generateKey !== undefined) {
    const needed = listed === undefined
      ? defaultAcceptedPatterns(options).length === 0
      : listed.some((pattern) => PATTERN_INFO[pattern]?.serverStatic === true);
    if (needed) options.staticKey = generateKey();
  }
  if (overrides?.accept === undefined && (listed !== undefined || s.allowUnauthenticated)) {
    const base = listed ?? defaultAcceptedPatterns(options);
    options.accept = s.allowUnauthenticated && !base.includes("NN") ? [...base, "NN"] : base;
  }
  return options;
}

/**
 * The client's security options from a configuration: `security.server_keys` (pins),
 * `known_servers_path` (trust on first use, keyed by `client.address` as written, when there
 * are no pins), `static_key_path`, `psk_path`, `pattern`, `resumption` (a new in-memory
 * `SessionTicketStore`, keyed by `client.address` as written), `transport.encryption_enabled`
 * and the handshake timeout.
 *
 * @param config The configuration.
 * @returns The client security options.
 * @throws {ProtocolError} `ConfigError` when a key file cannot be read, or when
 * `known_servers_path` is set with a pattern that sends no server key or an address that cannot
 * name an entry.
 */
export async function clientSecurityFromConfig(
  config: NetworkConfig,
): Promise<ClientSecurityOptions> {
  const s = config.security;
  const options: ClientSecurityOptions = commonSecurity(config, config.client.connectionTimeout);
  if (!config.transport.encryptionEnabled) return options;
  if (s.serverKeys.length > 0) options.serverKeys = s.serverKeys.map(decodeKey);
  if (s.staticKeyPath !== "") options.staticKey = await readStaticKey(s.staticKeyPath);
  if (s.pskPath !== "") options.psk = await readPsk(s.pskPath);
  // XX stands for the server's defaults, among which a client picks from its keys (NK with one
  // pin, XX, or XXpsk3/NNpsk0 with a psk); any other pattern is the only one a server with this
  // configuration accepts, so the client runs exactly that one (or fails before dialling).
  if (s.pattern !== "XX") options.pattern = s.pattern;
  // Pins win over trust on first use; without pins the client runs XX (or XXpsk3), which
  // transmits the server's static key, and checks it against the file before it sends its last
  // handshake message (and so before any data).
  if (s.knownServersPath !== "" && s.serverKeys.length === 0) {
    options.knownServers = knownServersFromConfig(config);
  }
  if (s.resumption) {
    options.resumption = { store: new SessionTicketStore(), name: config.client.address };
  }
  return options;
}

function knownServersFromConfig(config: NetworkConfig): NonNullable<
  ClientSecurityOptions["knownServers"]
> {
  const path = config.security.knownServersPath;
  const pattern = config.security.pattern;
  if (pattern === "NN") {
    throw new ProtocolError(
      "ConfigError",
      `security.known_servers_path "${path}" cannot be used with security.pattern "${pattern}": ` +
        `the server sends no static key to remember`,
    );
  }
  const name = config.client.address;
  if (name === "" || /[\s#]/.test(name)) {
    throw new ProtocolError(
      "ConfigError",
      `security.known_servers_path "${path}" cannot record client.address "${name}": ` +
        `an entry name must be non-empty, without spaces or "#"`,
    );
  }
  return { store: new KnownServersFile(path), name };
}

/**
 * Completes a configuration, applying an address override to one section before validation
 * (so that, say, a Unix socket path replaces the TCP default; with `transport.kind = "unix"` the
 * other section's unset address follows it, by the configuration's own rule).
 *
 * @param config A complete or partial configuration.
 * @param section The section the address belongs to.
 * @param address The address override.
 * @returns The validated configuration.
 */
export function withAddress(
  config: NetworkConfig | NetworkConfigInput | undefined,
  section: "server" | "client",
  address: string | undefined,
): NetworkConfig {
  const input: NetworkConfigInput = { ...(config ?? {}) };
  if (address !== undefined) input[section] = { ...input[section], address };
  return createConfig(input);
}
