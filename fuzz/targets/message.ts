import { decodeBatch, encodeBatch } from "../../src/core/batch.ts";
import { decodeMessage, encodeMessage } from "../../src/core/message.ts";
import type { FuzzTarget } from "../target.ts";

/** The message and batch decoders; whatever decodes must re-encode and decode to the same. */
const target: FuzzTarget = {
  name: "message",
  seeds: [
    encodeMessage({ type: "echo", text: "hello" }),
    encodeMessage({ type: "request", id: 300, deadline: 5, message: { type: "ping" } }),
    encodeMessage({ type: "error", id: 1, code: 2, text: "x" }),
    // The session ticket (issue 12): a lifetime and 1 to 512 opaque bytes.
    encodeMessage({ type: "ticket", lifetime: 3_600_000, ticket: new Uint8Array(90).fill(7) }),
    // Multiplexing (issue 13): a fragment, the stream messages and GOAWAY.
    encodeBatch([
      { type: "fragment", id: 1, total: 300, chunk: new Uint8Array(40).fill(5) },
      { type: "stream_open", id: 1, window: 262144, command: "UP", metadata: new Uint8Array([1]) },
      { type: "stream_accept", id: 1, window: 65536 },
      { type: "stream_data", id: 1, data: new Uint8Array([104, 105]) },
      { type: "stream_window", id: 1, delta: 131072 },
      { type: "stream_end", id: 1 },
      { type: "stream_reset", id: 3, code: 1 },
      { type: "goaway", lastRequest: 7, lastStream: 3, code: 1, reason: "bye" },
      { type: "window", delta: 131072 },
    ]),
    encodeBatch([
      { type: "ping" },
      { type: "custom", command: "CMD", payload: new Uint8Array([1, 2]) },
      { type: "response", id: 4, message: { type: "pong" } },
    ]),
  ],
  run(input) {
    let single: unknown;
    try {
      single = decodeMessage(input);
    } catch (error) {
      if (!(error instanceof Error) || error.name !== "ProtocolError") throw error;
    }
    if (single !== undefined) {
      const again = decodeMessage(encodeMessage(single as never));
      if (JSON.stringify(again) !== JSON.stringify(single)) {
        throw new Error("Message did not survive a re-encoding");
      }
    }
    const batch = decodeBatch(input, { maxMessages: 1024 });
    const again = decodeBatch(encodeBatch(batch));
    if (again.length !== batch.length) throw new Error("Batch did not survive a re-encoding");
  },
};

export default target;
