import { PacketDecoder } from "../../src/core/codec.ts";
import { decodePacket, encodePackets } from "../../src/core/packet.ts";
import type { FuzzTarget } from "../target.ts";

/** The packet decoder, whole and fed in chunks whose sizes come from the input itself. */
const target: FuzzTarget = {
  name: "packet",
  seeds: [
    encodePackets([{ version: 2, payload: new Uint8Array([1, 2, 3]) }]),
    encodePackets([
      { version: 1, payload: new Uint8Array(0) },
      { version: 2, payload: new Uint8Array(300).fill(7) },
    ]),
    new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 2, 0xff, 0xff, 0xff, 0xff]),
  ],
  run(input) {
    try {
      decodePacket(input, { maxPayloadSize: 4096 });
    } catch (error) {
      rethrowUnlessProtocol(error);
    }
    const decoder = new PacketDecoder({ maxPayloadSize: 4096, copyThreshold: input[0] ?? 0 });
    const step = 1 + ((input[input.length - 1] ?? 0) % 17);
    for (let offset = 0; offset < input.length; offset += step) {
      decoder.push(input.subarray(offset, offset + step));
      if (decoder.bufferedBytes > 9 + 4096) throw new Error("Decoder buffered beyond its limit");
    }
    decoder.finish();
  },
};

function rethrowUnlessProtocol(error: unknown): void {
  if (!(error instanceof Error) || error.name !== "ProtocolError") throw error;
}

export default target;
