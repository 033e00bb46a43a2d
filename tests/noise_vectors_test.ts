// Every cacophony vector of Noise_*_25519_ChaChaPoly_SHA256, handshake and transport messages,
// for each crypto provider.
import assert from "node:assert/strict";
import { type CryptoProvider, nativeProvider, portableProvider } from "../src/secure/crypto.ts";
import { hybridProvider, initCrypto } from "../src/secure/default_provider.ts";
import { HandshakeState } from "../src/secure/noise/handshake_state.ts";
import type { CipherState } from "../src/secure/noise/cipher_state.ts";
import { hex, readVectors, toHex } from "./_vectors.ts";

interface NoiseVector {
  protocol_name: string;
  init_prologue: string;
  init_psks?: string[];
  init_static?: string;
  init_ephemeral: string;
  init_remote_static?: string;
  resp_prologue: string;
  resp_psks?: string[];
  resp_static?: string;
  resp_ephemeral?: string;
  resp_remote_static?: string;
  handshake_hash: string;
  messages: { payload: string; ciphertext: string }[];
}

function runVector(vector: NoiseVector, provider: CryptoProvider): void {
  const common = { protocolName: vector.protocol_name, provider };
  const init = new HandshakeState({
    ...common,
    initiator: true,
    prologue: hex(vector.init_prologue),
    ...(vector.init_static ? { s: hex(vector.init_static) } : {}),
    e: hex(vector.init_ephemeral),
    ...(vector.init_remote_static ? { rs: hex(vector.init_remote_static) } : {}),
    psks: (vector.init_psks ?? []).map(hex),
  });
  const resp = new HandshakeState({
    ...common,
    initiator: false,
    prologue: hex(vector.resp_prologue),
    ...(vector.resp_static ? { s: hex(vector.resp_static) } : {}),
    ...(vector.resp_ephemeral ? { e: hex(vector.resp_ephemeral) } : {}),
    ...(vector.resp_remote_static ? { rs: hex(vector.resp_remote_static) } : {}),
    psks: (vector.resp_psks ?? []).map(hex),
  });
  const oneWay = init.pattern.oneWay;
  let transport: [CipherState, CipherState, CipherState, CipherState] | undefined;
  let handshakeMessages = 0;
  vector.messages.forEach((message, index) => {
    const fromInitiator = oneWay || index % 2 === 0;
    const payload = hex(message.payload);
    let ciphertext: Uint8Array;
    let received: Uint8Array;
    if (transport === undefined) {
      const [writer, reader] = fromInitiator ? [init, resp] : [resp, init];
      assert.ok(writer.isMyTurn, `message ${index}: writer's turn`);
      ciphertext = writer.writeMessage(payload);
      received = reader.readMessage(ciphertext);
      handshakeMessages++;
      if (init.isComplete) {
        assert.ok(resp.isComplete);
        assert.equal(toHex(init.handshakeHash), vector.handshake_hash, "initiator handshake hash");
        assert.equal(toHex(resp.handshakeHash), vector.handshake_hash, "responder handshake hash");
        const [i1, i2] = init.split();
        const [r1, r2] = resp.split();
        transport = [i1, i2, r1, r2];
      }
    } else {
      const [i1, i2, r1, r2] = transport;
      const [send, receive] = fromInitiator || oneWay ? [i1, r1] : [r2, i2];
      ciphertext = send.encryptWithAd(new Uint8Array(), payload);
      received = receive.decryptWithAd(new Uint8Array(), ciphertext);
    }
    assert.equal(toHex(ciphertext), message.ciphertext, `message ${index} ciphertext`);
    assert.equal(toHex(received), message.payload, `message ${index} payload`);
  });
  assert.equal(handshakeMessages, init.pattern.messages.length);
  assert.ok(transport !== undefined, "handshake completed");
}

await initCrypto();
const providers = [nativeProvider, portableProvider, hybridProvider];

Deno.test("noise vectors: all 59 cacophony vectors for 25519_ChaChaPoly_SHA256", async (t) => {
  const { vectors } = readVectors<{ vectors: NoiseVector[] }>(
    "cacophony_25519_ChaChaPoly_SHA256.json",
  );
  assert.equal(vectors.length, 59);
  for (const provider of providers) {
    await t.step(`${provider.name} provider`, async (t) => {
      for (const vector of vectors) {
        await t.step(vector.protocol_name, () => runVector(vector, provider));
      }
    });
  }
});
