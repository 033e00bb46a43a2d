/**
 * The cluster's probe messages (docs/PROTOCOL.md, "Cluster probes"): the payload of a `custom`
 * message with the command `npro.cluster`, sent in a numbered request and answered in its
 * response. Fixed-layout binary: a version byte, a kind byte, flags, then the fields of the kind.
 *
 * @module
 */

/** The custom command that carries every cluster message. */
export const CLUSTER_COMMAND = "npro.cluster";

/** The version of the payload layout. */
export const CLUSTER_WIRE_VERSION = 1;

/** The kinds of cluster message. */
export const ClusterKind = {
  /** A direct probe. */
  Ping: 1,
  /** An indirect probe: "probe `target` for me". */
  PingReq: 2,
  /** The answer to a probe: the answering node's identity and incarnation. */
  Ack: 3,
  /** The answer to an indirect probe whose target did not answer. */
  Nack: 4,
  /** A graceful leave. */
  Leave: 5,
} as const;

/** The length of a boot id. */
export const BOOT_ID_SIZE = 8;

/** The longest node id, in UTF-8 bytes. */
export const MAX_NODE_ID = 255;

/** A direct or indirect probe. */
export interface ProbeMessage {
  /** `ping` (direct) or `ping-req` (indirect: the receiver probes `target`). */
  readonly kind: "ping" | "ping-req";
  /** The sender's node id. */
  readonly from: string;
  /** The sender's boot id (8 bytes). */
  readonly bootId: Uint8Array;
  /** The sender's incarnation. */
  readonly incarnation: number;
  /** The probed node's id (its membership key as the sender knows it). */
  readonly target: string;
  /** The target's incarnation as the sender knows it. */
  readonly targetIncarnation: number;
  /** The sender suspects the target: the target answers with a higher incarnation. */
  readonly suspect: boolean;
}

/** An answer: the answering node's identity. */
export interface AckMessage {
  /** `ack`. */
  readonly kind: "ack";
  /** Its node id. */
  readonly from: string;
  /** Its boot id (8 bytes). */
  readonly bootId: Uint8Array;
  /** Its incarnation. */
  readonly incarnation: number;
  /** It is leaving (draining). */
  readonly leaving: boolean;
}

/** The answer to an indirect probe whose target did not answer in time. */
export interface NackMessage {
  /** `nack`. */
  readonly kind: "nack";
  /** The target that did not answer. */
  readonly target: string;
}

/** A graceful leave. */
export interface LeaveMessage {
  /** `leave`. */
  readonly kind: "leave";
  /** The leaving node's id. */
  readonly from: string;
  /** Its boot id (8 bytes). */
  readonly bootId: Uint8Array;
  /** Its incarnation. */
  readonly incarnation: number;
}

/** Any cluster message. */
export type ClusterMessage = ProbeMessage | AckMessage | NackMessage | LeaveMessage;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function idBytes(what: string, id: string): Uint8Array {
  const bytes = encoder.encode(id);
  if (bytes.length < 1 || bytes.length > MAX_NODE_ID) {
    throw new RangeError(
      `Cannot encode ${what} "${id}": it must be 1 to ${MAX_NODE_ID} UTF-8 bytes`,
    );
  }
  return bytes;
}

function checkBoot(bootId: Uint8Array): void {
  if (bootId.length !== BOOT_ID_SIZE) {
    throw new RangeError(`Cannot encode boot id of "${bootId.length}" bytes: it must be 8`);
  }
}

function checkIncarnation(value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`Cannot encode incarnation "${value}": it must be a u32`);
  }
}

/**
 * Encodes a cluster message (the payload of the `npro.cluster` custom message).
 *
 * @example A direct probe is 21 bytes plus its two ids
 * ```ts
 * import { encodeClusterMessage } from "./wire.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeClusterMessage({
 *   kind: "ping",
 *   from: "a",
 *   bootId: new Uint8Array(8),
 *   incarnation: 0,
 *   target: "b",
 *   targetIncarnation: 0,
 *   suspect: false,
 * });
 * assert.equal(bytes.length, 23);
 * ```
 *
 * @param message The message.
 * @returns Its bytes.
 * @throws {RangeError} For an id longer than 255 bytes, a boot id not of 8 bytes, or an
 * incarnation that is not a u32.
 */
export function encodeClusterMessage(message: ClusterMessage): Uint8Array {
  switch (message.kind) {
    case "ping":
    case "ping-req": {
      checkBoot(message.bootId);
      checkIncarnation(message.incarnation);
      checkIncarnation(message.targetIncarnation);
      const from = idBytes("node id", message.from);
      const target = idBytes("target id", message.target);
      const out = new Uint8Array(3 + 8 + 4 + 4 + 1 + from.length + 1 + target.length);
      const view = new DataView(out.buffer);
      out[0] = CLUSTER_WIRE_VERSION;
      out[1] = message.kind === "ping" ? ClusterKind.Ping : ClusterKind.PingReq;
      out[2] = message.suspect ? 1 : 0;
      out.set(message.bootId, 3);
      view.setUint32(11, message.incarnation);
      view.setUint32(15, message.targetIncarnation);
      out[19] = from.length;
      out.set(from, 20);
      out[20 + from.length] = target.length;
      out.set(target, 21 + from.length);
      return out;
    }
    case "ack":
    case "leave": {
      checkBoot(message.bootId);
      checkIncarnation(message.incarnation);
      const from = idBytes("node id", message.from);
      const out = new Uint8Array(3 + 8 + 4 + 1 + from.length);
      out[0] = CLUSTER_WIRE_VERSION;
      out[1] = message.kind === "ack" ? ClusterKind.Ack : ClusterKind.Leave;
      out[2] = message.kind === "ack" && message.leaving ? 1 : 0;
      out.set(message.bootId, 3);
      new DataView(out.buffer).setUint32(11, message.incarnation);
      out[15] = from.length;
      out.set(from, 16);
      return out;
    }
    case "nack": {
      const target = idBytes("target id", message.target);
      const out = new Uint8Array(3 + 1 + target.length);
      out[0] = CLUSTER_WIRE_VERSION;
      out[1] = ClusterKind.Nack;
      out[3] = target.length;
      out.set(target, 4);
      return out;
    }
  }
}

/** A malformed cluster payload. */
export class ClusterWireError extends TypeError {
  /**
   * The error.
   *
   * @param message What is wrong.
   */
  constructor(message: string) {
    super(message);
    this.name = "ClusterWireError";
  }
}

/**
 * Decodes a cluster message.
 *
 * @example Round trip
 * ```ts
 * import { decodeClusterMessage, encodeClusterMessage } from "./wire.ts";
 * import assert from "node:assert/strict";
 *
 * const nack = { kind: "nack", target: "b" } as const;
 * assert.deepEqual(decodeClusterMessage(encodeClusterMessage(nack)), nack);
 * ```
 *
 * @param bytes The payload.
 * @returns The message.
 * @throws {ClusterWireError} For an unknown version or kind, a short or long payload, flags
 * not defined for the kind, or an id that is not UTF-8.
 */
export function decodeClusterMessage(bytes: Uint8Array): ClusterMessage {
  if (bytes.length < 4) throw new ClusterWireError(`Cluster message of ${bytes.length} bytes`);
  if (bytes[0] !== CLUSTER_WIRE_VERSION) {
    throw new ClusterWireError(`Cluster message version "${bytes[0]}" is not supported`);
  }
  const kind = bytes[1]!;
  const flags = bytes[2]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  const readId = (at: number): string => {
    const length = bytes[at];
    if (length === undefined || length === 0 || at + 1 + length > bytes.length) {
      throw new ClusterWireError("Cluster message id is empty or truncated");
    }
    offset = at + 1 + length;
    try {
      return decoder.decode(bytes.subarray(at + 1, at + 1 + length));
    } catch {
      throw new ClusterWireError("Cluster message id is not UTF-8");
    }
  };
  const end = (message: ClusterMessage): ClusterMessage => {
    if (offset !== bytes.length) {
      throw new ClusterWireError(`Cluster message has ${bytes.length - offset} extra bytes`);
    }
    return message;
  };
  const boot = (): Uint8Array => bytes.slice(3, 11);
  switch (kind) {
    case ClusterKind.Ping:
    case ClusterKind.PingReq: {
      if (bytes.length < 23 || flags > 1) throw new ClusterWireError("Malformed cluster probe");
      const from = readId(19);
      const target = readId(offset);
      return end({
        kind: kind === ClusterKind.Ping ? "ping" : "ping-req",
        from,
        bootId: boot(),
        incarnation: view.getUint32(11),
        target,
        targetIncarnation: view.getUint32(15),
        suspect: flags === 1,
      });
    }
    case ClusterKind.Ack:
    case ClusterKind.Leave: {
      if (bytes.length < 17 || flags > (kind === ClusterKind.Ack ? 1 : 0)) {
        throw new ClusterWireError("Malformed cluster ack or leave");
      }
      const from = readId(15);
      const incarnation = view.getUint32(11);
      return end(
        kind === ClusterKind.Ack
          ? { kind: "ack", from, bootId: boot(), incarnation, leaving: flags === 1 }
          : { kind: "leave", from, bootId: boot(), incarnation },
      );
    }
    case ClusterKind.Nack: {
      if (flags !== 0) throw new ClusterWireError("Malformed cluster nack");
      const target = readId(3);
      return end({ kind: "nack", target });
    }
    default:
      throw new ClusterWireError(`Cluster message kind "${kind}" is unknown`);
  }
}

/**
 * A boot id as 16 hex digits.
 *
 * @param bootId 8 bytes.
 * @returns The hex text.
 */
export function bootIdHex(bootId: Uint8Array): string {
  let text = "";
  for (const byte of bootId) text += byte.toString(16).padStart(2, "0");
  return text;
}
