/**
 * The session hello: the bytes that open every connection, before any record. The client's
 * first packet names the mode (plaintext or a Noise pattern), the suite, and its parameters
 * (feature bitmap, optional largest message); in Noise mode the first Noise message follows in
 * the same packet. The server answers with the second Noise message (whose payload carries its
 * parameters) or, in plaintext mode, with a hello of its own.
 *
 * ```text
 * hello  = version:u8 (0x01) || mode:u8 || pattern:u8 || suite:u8 || params_len:u16be || params
 *          [ || noise_message_1 ]                      (noise mode only)
 * params = *( type:u8 || len:u16be || value )          (TLV, each type at most once)
 *          0x01 features     len 4  u32be bitmap (0x1 lz4, 0x2 zstd, 0x4 multiplexing; other
 *                                   bits reserved)
 *          0x02 max_message  len 4  u32be largest record body the sender accepts
 *          0x03 resumption   len 0  client: it takes session tickets; server: a ticket follows
 *          0x81 ticket       len n  a session ticket (critical: resumption hellos only)
 *          types with bit 0x80 set are critical: unknown critical types fail the handshake
 * ```
 *
 * @module
 */

import { PROTOCOL_VERSION } from "../core/packet.ts";
import { ProtocolError } from "../errors.ts";

/** The hello format version this library writes and accepts. */
export const HELLO_VERSION = 0x01;

/** The size of the fixed part of a hello, before the parameters. */
export const HELLO_HEADER_SIZE = 6;

/** Mode bytes of a hello. */
export const HelloMode: {
  /** No encryption: only when both sides explicitly disabled it. */
  readonly Plaintext: 0x00;
  /** A Noise handshake follows. */
  readonly Noise: 0x01;
} = { Plaintext: 0x00, Noise: 0x01 } as const;

/** Suite bytes of a hello. */
export const HelloSuite: {
  /** No suite (plaintext mode). */
  readonly None: 0x00;
  /** `25519_ChaChaPoly_SHA256`, the only Noise suite. */
  readonly Noise25519ChaChaPolySha256: 0x01;
} = { None: 0x00, Noise25519ChaChaPolySha256: 0x01 } as const;

/** A Noise handshake pattern this library runs. */
export type PatternName =
  | "NN"
  | "NK"
  | "XX"
  | "IK"
  | "KK"
  | "NNpsk0"
  | "XXpsk3"
  | "IKpsk2";

/** Pattern bytes of a hello (0x00 means no pattern, in plaintext mode). */
export const PATTERN_IDS: Readonly<Record<PatternName, number>> = Object.freeze({
  NN: 0x01,
  NK: 0x02,
  XX: 0x03,
  IK: 0x04,
  KK: 0x05,
  NNpsk0: 0x11,
  XXpsk3: 0x13,
  IKpsk2: 0x14,
});

/**
 * Every {@linkcode PatternName}, in the order of {@linkcode PATTERN_IDS} (whose type makes the
 * compiler keep it complete).
 */
export const PATTERN_NAMES: readonly PatternName[] = Object.freeze(
  Object.keys(PATTERN_IDS) as PatternName[],
);

const PATTERNS_BY_ID = new Map<number, PatternName>(
  (Object.entries(PATTERN_IDS) as [PatternName, number][]).map(([name, id]) => [id, name]),
);

/**
 * The feature bit of multiplexing: the sender takes fragments, streams and GOAWAY
 * (docs/PROTOCOL.md, "Multiplexing"). The library always announces it.
 */
export const FEATURE_MULTIPLEX = 0x4;

/** Feature bits this version knows (lz4 0x1, zstd 0x2, multiplexing 0x4); the others are reserved. */
export const KNOWN_FEATURES = 0x7;

/** The parameters a side announces in the handshake. */
export interface HandshakeParams {
  /** The feature bitmap (u32): 0x1 lz4, 0x2 zstd, 0x4 multiplexing. */
  features: number;
  /** The largest record body the sender accepts, if it announces one. */
  maxMessageSize?: number;
  /**
   * Session resumption (TLV `0x03`): from a client, it takes session tickets; from a server, it
   * sends one after the handshake.
   */
  resumption?: boolean;
  /** A session ticket (critical TLV `0x81`): the client resumes the session it came from. */
  ticket?: Uint8Array;
}

/** A decoded hello. */
export interface Hello {
  /** The mode. */
  mode: "plaintext" | "noise";
  /** The Noise pattern, in noise mode. */
  pattern?: PatternName;
  /** The sender's parameters. */
  params: HandshakeParams;
  /** The hello bytes up to the end of the parameters: what the Noise prologue binds. */
  header: Uint8Array;
  /** The bytes after the parameters: the first Noise message in noise mode. */
  rest: Uint8Array;
}

const TLV_FEATURES = 0x01;
const TLV_MAX_MESSAGE = 0x02;
const TLV_RESUMPTION = 0x03;
const TLV_TICKET = 0x81;
const TLV_CRITICAL = 0x80;
/** The largest session ticket a hello may carry. */
export const MAX_TICKET_SIZE = 512;
/** The largest parameter block accepted. */
export const MAX_PARAMS_SIZE = 1024;

function checkU32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(
      `Cannot use ${name} "${value}": it must be an integer from 0 to 4294967295`,
    );
  }
}

/**
 * Encodes handshake parameters as a TLV block.
 *
 * @param params The parameters.
 * @returns The TLV bytes.
 */
export function encodeParams(params: HandshakeParams): Uint8Array {
  checkU32("features", params.features);
  const hasMax = params.maxMessageSize !== undefined;
  if (hasMax) checkU32("max message size", params.maxMessageSize!);
  const ticket = params.ticket;
  if (ticket !== undefined && (ticket.length < 1 || ticket.length > MAX_TICKET_SIZE)) {
    throw new RangeError(
      `Cannot send a session ticket of "${ticket.length}" bytes: expected 1 to ${MAX_TICKET_SIZE}`,
    );
  }
  const size = 7 + (hasMax ? 7 : 0) + (params.resumption === true ? 3 : 0) +
    (ticket === undefined ? 0 : 3 + ticket.length);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = TLV_FEATURES;
  view.setUint16(1, 4);
  view.setUint32(3, params.features >>> 0);
  let offset = 7;
  if (hasMax) {
    out[offset] = TLV_MAX_MESSAGE;
    view.setUint16(offset + 1, 4);
    view.setUint32(offset + 3, params.maxMessageSize!);
    offset += 7;
  }
  if (params.resumption === true) {
    out[offset] = TLV_RESUMPTION; // length 0
    offset += 3;
  }
  if (ticket !== undefined) {
    out[offset] = TLV_TICKET;
    view.setUint16(offset + 1, ticket.length);
    out.set(ticket, offset + 3);
  }
  return out;
}

/**
 * Decodes a TLV parameter block. A missing features entry means no features.
 *
 * @param bytes The TLV bytes.
 * @returns The parameters.
 * @throws {ProtocolError} `HandshakeFailed` for a malformed block, a duplicate or an unknown
 * critical type.
 */
export function decodeParams(bytes: Uint8Array): HandshakeParams {
  if (bytes.length > MAX_PARAMS_SIZE) {
    throw handshakeError(
      `Handshake parameters of "${bytes.length}" bytes exceed "${MAX_PARAMS_SIZE}"`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const params: HandshakeParams = { features: 0 };
  const seen = new Set<number>();
  let offset = 0;
  while (offset < bytes.length) {
    if (offset + 3 > bytes.length) {
      throw handshakeError("Handshake parameters end inside a TLV header");
    }
    const type = bytes[offset]!;
    const length = view.getUint16(offset + 1);
    offset += 3;
    if (offset + length > bytes.length) {
      throw handshakeError(`Handshake parameter "${type}" of "${length}" bytes is truncated`);
    }
    if (seen.has(type)) throw handshakeError(`Handshake parameter "${type}" appears twice`);
    seen.add(type);
    if (type === TLV_FEATURES || type === TLV_MAX_MESSAGE) {
      if (length !== 4) {
        throw handshakeError(`Handshake parameter "${type}" has "${length}" bytes, expected "4"`);
      }
      const value = view.getUint32(offset);
      if (type === TLV_FEATURES) params.features = value;
      else params.maxMessageSize = value;
    } else if (type === TLV_RESUMPTION) {
      if (length !== 0) {
        throw handshakeError(`Handshake parameter "${type}" has "${length}" bytes, expected "0"`);
      }
      params.resumption = true;
    } else if (type === TLV_TICKET) {
      if (length < 1 || length > MAX_TICKET_SIZE) {
        throw handshakeError(
          `Session ticket of "${length}" bytes: expected 1 to "${MAX_TICKET_SIZE}"`,
        );
      }
      params.ticket = bytes.slice(offset, offset + length);
    } else if ((type & TLV_CRITICAL) !== 0) {
      throw handshakeError(`Unknown critical handshake parameter "${type}"`);
    }
    offset += length;
  }
  return params;
}

/**
 * Encodes a hello: the header and parameters, followed by `rest` (the first Noise message in
 * noise mode).
 *
 * @param mode The mode.
 * @param pattern The Noise pattern (noise mode) or `undefined` (plaintext).
 * @param params The sender's parameters.
 * @param rest Bytes appended after the parameters.
 * @returns The hello bytes.
 */
export function encodeHello(
  mode: "plaintext" | "noise",
  pattern: PatternName | undefined,
  params: HandshakeParams,
  rest: Uint8Array = new Uint8Array(0),
): Uint8Array {
  if ((mode === "noise") !== (pattern !== undefined)) {
    throw new TypeError(`A "${mode}" hello ${mode === "noise" ? "needs" : "has no"} pattern`);
  }
  const tlv = encodeParams(params);
  const out = new Uint8Array(HELLO_HEADER_SIZE + tlv.length + rest.length);
  out[0] = HELLO_VERSION;
  out[1] = mode === "noise" ? HelloMode.Noise : HelloMode.Plaintext;
  out[2] = pattern === undefined ? 0 : PATTERN_IDS[pattern];
  out[3] = mode === "noise" ? HelloSuite.Noise25519ChaChaPolySha256 : HelloSuite.None;
  out[4] = tlv.length >>> 8;
  out[5] = tlv.length & 0xff;
  out.set(tlv, HELLO_HEADER_SIZE);
  out.set(rest, HELLO_HEADER_SIZE + tlv.length);
  return out;
}

/**
 * Decodes a hello.
 *
 * @param bytes The packet payload.
 * @returns The hello; `header` and `rest` are views into `bytes`.
 * @throws {ProtocolError} `HandshakeFailed` for malformed bytes; `PolicyViolation` for a hello
 * version, mode, pattern or suite this library does not know.
 */
export function decodeHello(bytes: Uint8Array): Hello {
  if (bytes.length < HELLO_HEADER_SIZE) {
    throw handshakeError(`Hello of "${bytes.length}" bytes is shorter than "${HELLO_HEADER_SIZE}"`);
  }
  const version = bytes[0]!;
  if (version !== HELLO_VERSION) {
    throw new ProtocolError("PolicyViolation", `Unsupported hello version "${version}"`);
  }
  const modeByte = bytes[1]!;
  const patternByte = bytes[2]!;
  const suiteByte = bytes[3]!;
  let mode: "plaintext" | "noise";
  let pattern: PatternName | undefined;
  if (modeByte === HelloMode.Plaintext) {
    if (patternByte !== 0 || suiteByte !== HelloSuite.None) {
      throw new ProtocolError(
        "PolicyViolation",
        `Plaintext hello names pattern "${patternByte}" and suite "${suiteByte}"`,
      );
    }
    mode = "plaintext";
  } else if (modeByte === HelloMode.Noise) {
    pattern = PATTERNS_BY_ID.get(patternByte);
    if (pattern === undefined) {
      throw new ProtocolError("PolicyViolation", `Unknown handshake pattern "${patternByte}"`);
    }
    if (suiteByte !== HelloSuite.Noise25519ChaChaPolySha256) {
      throw new ProtocolError("PolicyViolation", `Unknown Noise suite "${suiteByte}"`);
    }
    mode = "noise";
  } else {
    throw new ProtocolError("PolicyViolation", `Unknown hello mode "${modeByte}"`);
  }
  const paramsLength = (bytes[4]! << 8) | bytes[5]!;
  const end = HELLO_HEADER_SIZE + paramsLength;
  if (end > bytes.length) {
    throw handshakeError(`Hello parameters of "${paramsLength}" bytes are truncated`);
  }
  const params = decodeParams(bytes.subarray(HELLO_HEADER_SIZE, end));
  const hello: Hello = { mode, params, header: bytes.subarray(0, end), rest: bytes.subarray(end) };
  if (pattern !== undefined) hello.pattern = pattern;
  return hello;
}

/**
 * Builds the Noise prologue for a hello: ASCII `npro/2` and a zero byte, then the hello bytes up
 * to the end of its parameters. Tampering with the mode, pattern, suite or parameters therefore
 * breaks the first authenticated message of the handshake.
 *
 * @param header The hello bytes up to the end of its parameters.
 * @returns The prologue.
 */
export function helloPrologue(header: Uint8Array): Uint8Array {
  const out = new Uint8Array(PROLOGUE_LABEL.length + header.length);
  out.set(PROLOGUE_LABEL);
  out.set(header, PROLOGUE_LABEL.length);
  return out;
}

/** The prologue label: ASCII `npro/2` (the packet version) followed by a zero byte. */
export const PROLOGUE_LABEL: Uint8Array = new TextEncoder().encode(`npro/${PROTOCOL_VERSION}\0`);

function handshakeError(message: string): ProtocolError {
  return new ProtocolError("HandshakeFailed", message);
}
