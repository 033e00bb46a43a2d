import { SecureChannel } from "../../src/secure/channel.ts";
import { CipherState } from "../../src/secure/noise/cipher_state.ts";
import type { FuzzTarget } from "../target.ts";

/**
 * The record layer: the input is a sequence of records, each prefixed with a u16 big-endian
 * length (the last one takes what is left), opened in order by a fresh channel with fixed keys;
 * then the stream ends. Seeds are valid sequences under those keys, so mutations reach the
 * KEY_UPDATE, CLOSE and post-CLOSE paths. Invariants: only ProtocolError is thrown, and no
 * record opens after a failure.
 */
const KEY = new Uint8Array(32).fill(0x42);
const OTHER = new Uint8Array(32).fill(0x24);

function frame(records: Uint8Array[]): Uint8Array {
  const total = records.reduce((sum, r) => sum + 2 + r.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const record of records) {
    out[offset] = record.length >>> 8;
    out[offset + 1] = record.length & 0xff;
    out.set(record, offset + 2);
    offset += 2 + record.length;
  }
  return out;
}

function seed(build: (sender: SecureChannel) => Uint8Array[]): Uint8Array {
  const sender = new SecureChannel(
    { send: new CipherState(KEY), receive: new CipherState(OTHER) },
    { rekeyAfterRecords: 2 },
  );
  return frame(build(sender));
}

const target: FuzzTarget = {
  name: "record",
  seeds: [
    seed((s) => [...s.sealData(new Uint8Array([1, 2, 3])), ...s.sealClose(0, "bye")]),
    seed((s) => {
      const out: Uint8Array[] = [];
      for (let i = 0; i < 5; i++) s.sealData(new Uint8Array(i * 3).fill(i), out);
      s.sealKeyUpdate(out);
      s.sealData(new Uint8Array(0), out);
      return s.sealClose(0x1001, "done", out);
    }),
    seed((s) => s.sealData(new Uint8Array(40).fill(0xee))),
    new Uint8Array(0),
  ],
  run(input) {
    const channel = new SecureChannel({
      send: new CipherState(OTHER),
      receive: new CipherState(KEY),
    });
    let failed = false;
    let offset = 0;
    while (offset < input.length) {
      let length = input.length - offset;
      if (length >= 2) {
        length = Math.min((input[offset]! << 8) | input[offset + 1]!, input.length - offset - 2);
        offset += 2;
      }
      const record = input.subarray(offset, offset + length);
      offset += length;
      try {
        channel.open(record);
        if (failed) throw new Error("A record opened after the channel failed");
      } catch (error) {
        if (!(error instanceof Error) || error.name !== "ProtocolError") throw error;
        failed = true;
      }
    }
    channel.finish();
  },
};

export default target;
