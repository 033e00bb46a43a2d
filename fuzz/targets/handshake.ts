import { ProtocolError } from "../../src/errors.ts";
import { nativeProvider } from "../../src/secure/crypto.ts";
import { HandshakeState } from "../../src/secure/noise/handshake_state.ts";
import type { FuzzTarget } from "../target.ts";

// Fixed keys: the target is deterministic, so a crash reproduces from its input alone.
const serverStatic = new Uint8Array(32).fill(0x11);
const clientStatic = new Uint8Array(32).fill(0x22);
const serverPublic = nativeProvider.publicKeyOf(serverStatic);
const clientPublic = nativeProvider.publicKeyOf(clientStatic);
const psk = new Uint8Array(32).fill(0x33);

interface Setup {
  protocol: string;
  responder: () => HandshakeState;
  initiator: () => HandshakeState;
}

function setup(pattern: string, options: { rs?: boolean; irs?: boolean; psk?: boolean }): Setup {
  const protocolName = `Noise_${pattern}_25519_ChaChaPoly_SHA256`;
  const psks = options.psk ? [psk] : [];
  return {
    protocol: pattern,
    responder: () =>
      new HandshakeState({
        protocolName,
        initiator: false,
        s: serverStatic,
        ...(options.irs ? { rs: clientPublic } : {}),
        psks,
      }),
    initiator: () =>
      new HandshakeState({
        protocolName,
        initiator: true,
        s: clientStatic,
        e: new Uint8Array(32).fill(0x44),
        ...(options.rs ? { rs: serverPublic } : {}),
        psks,
      }),
  };
}

const SETUPS: Setup[] = [
  setup("NN", {}),
  setup("NK", { rs: true }),
  setup("XX", {}),
  setup("IK", { rs: true }),
  setup("KK", { rs: true, irs: true }),
  setup("NNpsk0", { psk: true }),
  setup("XXpsk3", { psk: true }),
  setup("IKpsk2", { rs: true, psk: true }),
];

/**
 * Feeds the input as the first handshake message to fresh responders of several patterns, then
 * (when a responder accepted it and can reply) as the reply to an initiator's second read. Only
 * `ProtocolError` may escape the code under test.
 */
const target: FuzzTarget = {
  name: "handshake",
  seeds: SETUPS.map((s) => s.initiator().writeMessage(new Uint8Array([1, 2, 3]))),
  run(input) {
    for (const s of SETUPS) {
      const responder = s.responder();
      try {
        responder.readMessage(input);
        if (responder.isMyTurn) responder.writeMessage(input.subarray(0, 64));
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        if (!responder.isFailed) throw new Error(`${s.protocol}: error without a dead state`);
      }
      // The input as the responder's reply to an initiator.
      const initiator = s.initiator();
      try {
        initiator.writeMessage();
        initiator.readMessage(input);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
      }
    }
  },
};

export default target;
