import { ProtocolError } from "../../src/errors.ts";
import {
  decodeHello,
  decodeParams,
  encodeHello,
  encodeParams,
  type HandshakeParams,
  HELLO_HEADER_SIZE,
  helloPrologue,
  PATTERN_IDS,
  type PatternName,
  PROLOGUE_LABEL,
} from "../../src/secure/hello.ts";
import type { FuzzTarget } from "../target.ts";

/**
 * The session hello, the first bytes a server parses from an unauthenticated peer
 * (src/secure/hello.ts): `decodeHello` on the input, and `decodeParams` on the input as a bare
 * TLV block. Invariants: only `ProtocolError` with the documented codes (`HandshakeFailed`,
 * `PolicyViolation`) comes out; a decoded hello splits the input exactly into `header` and
 * `rest`; its mode, pattern and parameters are consistent and in range; it survives
 * `encodeHello` and `decodeHello` again; and a hello whose parameter block is in canonical form
 * re-encodes to the same bytes. `run` throws the hello's `ProtocolError` when it was rejected.
 */
const counters = {
  /** Inputs that decodeHello accepted. */
  decoded: 0,
  /** Of those, hellos whose parameter block is canonical and re-encode to the input exactly. */
  canonical: 0,
  /** Rejected with PolicyViolation (version, mode, pattern or suite). */
  rejectedPolicy: 0,
  /** Rejected with HandshakeFailed (too short, or the parameter block is malformed). */
  rejectedMalformed: 0,
  /** Inputs that decodeParams accepted as a bare TLV block. */
  paramsDecoded: 0,
};

const PATTERNS = Object.keys(PATTERN_IDS) as PatternName[];
const HELLO_CODES = new Set(["HandshakeFailed", "PolicyViolation"]);

function tlv(type: number, value: number[]): number[] {
  return [type, value.length >>> 8, value.length & 0xff, ...value];
}

/** A hello with a hand-made parameter block. */
function rawHello(mode: number, pattern: number, suite: number, params: number[]): Uint8Array {
  return new Uint8Array([
    0x01,
    mode,
    pattern,
    suite,
    params.length >>> 8,
    params.length,
    ...params,
  ]);
}

const PARAMS: HandshakeParams[] = [
  { features: 0 },
  { features: 0x3 },
  { features: 0xffff_ffff },
  { features: 0x1, maxMessageSize: 16 * 1024 * 1024 },
  { features: 0x2, maxMessageSize: 0 },
  { features: 0, maxMessageSize: 0xffff_ffff },
  // Session resumption (issue 12): the request flag, and a resumption hello with its ticket.
  { features: 0x3, resumption: true },
  { features: 0, ticket: new Uint8Array(90).map((_, i) => i) },
  { features: 0x1, maxMessageSize: 1024, resumption: true, ticket: new Uint8Array([1]) },
];
// A stand-in for the first Noise message: the hello parser treats `rest` as opaque bytes.
const NOISE_MESSAGE = new Uint8Array(48).map((_, i) => i * 7);

function seeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  PARAMS.forEach((params, i) => {
    out.push(encodeHello("plaintext", undefined, params));
    out.push(encodeHello("noise", PATTERNS[i % PATTERNS.length]!, params, NOISE_MESSAGE));
  });
  for (const pattern of PATTERNS) {
    out.push(encodeHello("noise", pattern, { features: 0x3, maxMessageSize: 65_536 }));
  }
  // Unknown non-critical parameters are skipped; critical ones and duplicates are refused.
  out.push(rawHello(0x01, 0x03, 0x01, [...tlv(0x02, [0, 1, 0, 0]), ...tlv(0x40, [9, 9])]));
  out.push(rawHello(0x00, 0x00, 0x00, [...tlv(0x7f, []), ...tlv(0x01, [0, 0, 0, 3])]));
  out.push(rawHello(0x01, 0x01, 0x01, tlv(0x82, [1])));
  // The resumption flag has no value; a ticket is 1 to 512 bytes; neither may repeat.
  out.push(rawHello(0x01, 0x11, 0x01, [...tlv(0x03, []), ...tlv(0x81, [7, 7, 7])]));
  out.push(rawHello(0x01, 0x11, 0x01, tlv(0x03, [1])));
  out.push(rawHello(0x01, 0x11, 0x01, tlv(0x81, [])));
  out.push(rawHello(0x01, 0x11, 0x01, [...tlv(0x81, [1]), ...tlv(0x81, [2])]));
  out.push(rawHello(0x01, 0x01, 0x01, [...tlv(0x01, [0, 0, 0, 1]), ...tlv(0x01, [0, 0, 0, 1])]));
  out.push(rawHello(0x00, 0x00, 0x00, []));
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function sameParams(a: HandshakeParams, b: HandshakeParams): boolean {
  return a.features === b.features && a.maxMessageSize === b.maxMessageSize &&
    (a.resumption ?? false) === (b.resumption ?? false) &&
    (a.ticket === undefined ? b.ticket === undefined : b.ticket !== undefined &&
      sameBytes(a.ticket, b.ticket));
}

function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffff_ffff;
}

function checkParams(params: HandshakeParams, what: string): void {
  if (!isU32(params.features)) throw new Error(`${what}: features "${params.features}" not u32`);
  if (params.maxMessageSize !== undefined && !isU32(params.maxMessageSize)) {
    throw new Error(`${what}: max message size "${params.maxMessageSize}" not u32`);
  }
  const again = decodeParams(encodeParams(params));
  if (!sameParams(again, params)) throw new Error(`${what}: parameters did not round-trip`);
}

function rejected(error: unknown): ProtocolError {
  if (!(error instanceof ProtocolError)) throw error;
  if (!HELLO_CODES.has(error.code)) {
    throw new Error(`Hello parser threw undocumented code "${error.code}": ${error.message}`);
  }
  return error;
}

const target: FuzzTarget = {
  name: "hello",
  seeds: seeds(),
  counters,
  run(input) {
    // The TLV parser alone, on the whole input.
    try {
      const params = decodeParams(input);
      counters.paramsDecoded++;
      checkParams(params, "decodeParams");
    } catch (error) {
      rejected(error);
    }

    let hello;
    try {
      hello = decodeHello(input);
    } catch (error) {
      const failure = rejected(error);
      if (failure.code === "PolicyViolation") counters.rejectedPolicy++;
      else counters.rejectedMalformed++;
      throw failure;
    }
    counters.decoded++;
    const { header, rest, params, mode, pattern } = hello;
    if (header.length < HELLO_HEADER_SIZE || header.length + rest.length !== input.length) {
      throw new Error("Hello header and rest do not split the input");
    }
    if (!sameBytes(header, input.subarray(0, header.length))) {
      throw new Error("Hello header is not the start of the input");
    }
    if (!sameBytes(rest, input.subarray(header.length))) {
      throw new Error("Hello rest is not the end of the input");
    }
    if (mode === "noise" ? !PATTERNS.includes(pattern!) : pattern !== undefined) {
      throw new Error(`Hello mode "${mode}" with pattern "${pattern}"`);
    }
    checkParams(params, "decodeHello");
    const block = header.subarray(HELLO_HEADER_SIZE);
    if (!sameParams(decodeParams(block), params)) {
      throw new Error("decodeParams disagrees with decodeHello on the same block");
    }
    const prologue = helloPrologue(header);
    if (!sameBytes(prologue.subarray(PROLOGUE_LABEL.length), header)) {
      throw new Error("Prologue does not end with the hello header");
    }

    // Round trip: encoding the decoded hello gives a hello that decodes to the same.
    const encoded = encodeHello(mode, pattern, params, rest);
    const again = decodeHello(encoded);
    if (
      again.mode !== mode || again.pattern !== pattern || !sameParams(again.params, params) ||
      !sameBytes(again.rest, rest)
    ) {
      throw new Error("Hello did not survive encodeHello and decodeHello");
    }
    if (sameBytes(block, encodeParams(params))) {
      if (!sameBytes(encoded, input)) throw new Error("Canonical hello re-encoded differently");
      counters.canonical++;
    }
  },
};

export default target;
