/**
 * The record stages on their own: a secure `RecordEncoder` turns messages into the bytes of one
 * write (sealed DATA records in packets) and a `RecordDecoder` opens and decodes them, with no
 * socket. The per-message cost of the encrypted path without the network (docs/PERFORMANCE.md,
 * "Zero-copy record path"). Run with `deno bench -A bench/record_bench.ts`.
 *
 * @module
 */

import { PacketDecoder } from "../src/core/codec.ts";
import type { Message } from "../src/core/message.ts";
import { SecureChannel } from "../src/secure/channel.ts";
import { initCrypto } from "../src/secure/default_provider.ts";
import { CipherState } from "../src/secure/noise/cipher_state.ts";
import { RecordDecoder } from "../src/secure/record_decoder.ts";
import { RecordEncoder } from "../src/secure/record_encoder.ts";

await initCrypto();

const k1 = new Uint8Array(32).fill(1);
const k2 = new Uint8Array(32).fill(2);

for (const [label, size] of [["64 B", 64], ["1 KiB", 1024], ["64 KiB", 65536]] as const) {
  const alice = new SecureChannel({ send: new CipherState(k1), receive: new CipherState(k2) });
  const bob = new SecureChannel({ send: new CipherState(k2), receive: new CipherState(k1) });
  const encoder = new RecordEncoder({ channel: alice });
  const decoder = new RecordDecoder({ channel: bob });
  const packets = new PacketDecoder();
  const messages: Message[] = [{
    type: "custom",
    command: "PUT",
    payload: new Uint8Array(size).fill(5),
  }];
  Deno.bench({
    name: `encode and decode one ${label} message (secure)`,
    group: `record ${label}`,
    fn() {
      decoder.decode(packets.push(encoder.encode(messages)), 0);
      while (decoder.pending) decoder.take();
    },
  });
  const bytes = new RecordEncoder({
    channel: new SecureChannel({ send: new CipherState(k1), receive: new CipherState(k2) }),
  });
  Deno.bench({
    name: `encode one ${label} message (secure)`,
    group: `record ${label}`,
    fn() {
      bytes.encode(messages);
    },
  });
}
