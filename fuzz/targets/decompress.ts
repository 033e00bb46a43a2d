import { ProtocolError } from "../../src/errors.ts";
import { compress, decompress } from "../../src/compression/compress.ts";
import type { FuzzTarget } from "../target.ts";

const MAX_SIZE = 1024 * 1024;
const text = new TextEncoder().encode(
  '{"level":"info","msg":"request served","path":"/api/v1/items","ms":12}\n'.repeat(40),
);

/**
 * LZ4 and Zstd decompression with a 1 MiB cap: anything but a `ProtocolError` is a finding, and
 * so is an output over the cap or an LZ4/Zstd disagreement on the bytes both accept.
 */
const target: FuzzTarget = {
  name: "decompress",
  seeds: [
    compress(text, { algorithm: "lz4" }),
    compress(text, { algorithm: "zstd" }),
    compress(text.subarray(0, 700), { algorithm: "zstd", level: 19 }),
    compress(new Uint8Array(0), { algorithm: "lz4" }),
    compress(new Uint8Array(0), { algorithm: "zstd" }),
    new Uint8Array([0xf0, 0xff, 0xff, 0xff, 0x1f, 0x00, 0x01, 0x00, 0xff, 0xff]),
    new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38, 0x02, 0x00, 0x10, 0x00]),
  ],
  run(input) {
    for (const algorithm of ["lz4", "zstd"] as const) {
      let out: Uint8Array;
      try {
        out = decompress(input, { algorithm, maxSize: MAX_SIZE });
      } catch (error) {
        if (error instanceof ProtocolError) continue;
        throw error;
      }
      if (out.length > MAX_SIZE) {
        throw new Error(`${algorithm} produced "${out.length}" bytes over the cap "${MAX_SIZE}"`);
      }
      const again = decompress(compress(out, { algorithm }), { algorithm, maxSize: MAX_SIZE });
      if (again.length !== out.length || again.some((b, i) => b !== out[i])) {
        throw new Error(`${algorithm} output did not survive a round trip`);
      }
    }
  },
};

export default target;
