import {
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_SIGNATURE,
  ProxyHeaderDecoder,
} from "../../src/transport/proxy_protocol.ts";
import type { FuzzTarget } from "../target.ts";

/**
 * The PROXY header parser, the first bytes a server behind a load balancer reads from a peer it
 * has not authenticated (src/transport/proxy_protocol.ts): the input fed whole and then in two
 * pieces split at every 7th byte; both ways must agree, a decoded header must be no longer than
 * its version's limit, and a TCP source must carry a port from 0 to 65535.
 */
const counters = {
  /** Inputs that decoded to a header. */
  decoded: 0,
  /** Inputs that needed more bytes. */
  incomplete: 0,
  /** Inputs refused with a ProtocolError. */
  refused: 0,
};

const text = (s: string) => new TextEncoder().encode(s);
const v2 = (verCmd: number, family: number, body: number[]) =>
  Uint8Array.of(
    ...PROXY_V2_SIGNATURE,
    verCmd,
    family,
    body.length >> 8,
    body.length & 0xff,
    ...body,
  );

function decode(input: Uint8Array, split: number) {
  const decoder = new ProxyHeaderDecoder();
  const first = decoder.push(input.subarray(0, split));
  if (first !== undefined || split >= input.length) return first;
  return decoder.push(input.subarray(split));
}

const target: FuzzTarget = {
  name: "proxy_header",
  counters,
  seeds: [
    text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nrest"),
    text("PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 1 65535\r\n"),
    text("PROXY UNKNOWN\r\n"),
    v2(0x21, 0x11, [127, 0, 0, 1, 127, 0, 0, 1, 0x91, 0x8e, 0x4c, 0x18]),
    v2(0x21, 0x21, [...new Array(32).fill(1), 0, 80, 0, 81, 0x04, 0x00, 0x01, 0x00]),
    v2(0x20, 0x00, []),
    v2(0x21, 0x31, new Array(216).fill(0x2f)),
  ],
  run(input) {
    let whole;
    try {
      whole = new ProxyHeaderDecoder().push(input);
    } catch (error) {
      if (!(error instanceof Error) || error.name !== "ProtocolError") throw error;
      counters.refused++;
    }
    // The same bytes in two pieces give the same answer (the parser is incremental).
    let pieces;
    let piecesFailed = false;
    try {
      pieces = decode(input, Math.floor(input.length / 7));
    } catch (error) {
      if (!(error instanceof Error) || error.name !== "ProtocolError") throw error;
      piecesFailed = true;
    }
    if (whole === undefined) {
      counters.incomplete++;
      return;
    }
    counters.decoded++;
    if (
      piecesFailed || pieces === undefined ||
      JSON.stringify(pieces.header) !== JSON.stringify(whole.header)
    ) {
      throw new Error("A header decoded whole but not in two pieces, or differently");
    }
    const limit = whole.header.version === 1 ? PROXY_V1_MAX_LENGTH : 1024;
    if (whole.header.length > limit || whole.header.length > input.length) {
      throw new Error(`A header of "${whole.header.length}" bytes passed the limit "${limit}"`);
    }
    const source = whole.header.source;
    if (source?.transport === "tcp" && !(source.port >= 0 && source.port <= 65535)) {
      throw new Error(`Source port "${source.port}" is out of range`);
    }
  },
};

export default target;
