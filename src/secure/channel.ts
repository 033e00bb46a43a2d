/**
 * The encrypted record layer: a sans-I/O {@linkcode SecureChannel} over the two cipher states
 * that a Noise handshake splits into. Every record is one packet payload:
 *
 * ```text
 * record = ChaCha20-Poly1305(k_direction, n_direction, ad = empty, inner)   // inner + 16-byte tag
 * inner  = content || type:u8        type: 0x01 DATA, 0x02 KEY_UPDATE, 0x03 CLOSE
 * ```
 *
 * The nonce is the implicit per-direction counter of the Noise cipher state, so a replayed,
 * reordered, dropped, injected or reflected record fails authentication. After any failure the
 * channel is dead.
 *
 * The record types, CLOSE codes and limits are in `record_format.ts`, the options and their
 * defaults in `channel_options.ts`; both are re-exported here.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { resolveChannelOptions, type SecureChannelOptions } from "./channel_options.ts";
import type { CipherState } from "./noise/cipher_state.ts";
import {
  type CloseInfo,
  decodeCloseContent,
  encodeCloseInner,
  MAX_RECORD_NONCE,
  RECORD_TAG_SIZE,
  RecordType,
} from "./record_format.ts";

export {
  CloseCode,
  type CloseInfo,
  MAX_CLOSE_REASON_BYTES,
  MAX_RECORD_NONCE,
  RECORD_TAG_SIZE,
  RecordType,
} from "./record_format.ts";
export type { SecureChannelOptions } from "./channel_options.ts";

/** The two cipher states of a session, one per direction. */
export interface ChannelKeys {
  /** Encrypts what this side sends. */
  send: CipherState;
  /** Decrypts what this side receives. */
  receive: CipherState;
}

/** What {@linkcode SecureChannel.open} found in a record. */
export type OpenedRecord =
  | {
    /** A DATA record. */
    readonly type: "data";
    /** Its content: one encoded batch (a view into the decrypted buffer). */
    readonly body: Uint8Array;
  }
  | {
    /** A KEY_UPDATE record: the receive key was already advanced; nothing to do. */
    readonly type: "key_update";
  }
  | ({
    /** A CLOSE record: the peer will send nothing more. */
    readonly type: "close";
  } & CloseInfo);

const EMPTY = new Uint8Array(0);
const KEY_UPDATE_INNER = new Uint8Array([RecordType.KeyUpdate]);
const KEY_UPDATE_RESULT: OpenedRecord = Object.freeze({ type: "key_update" as const });

/**
 * An encrypted, authenticated record channel over the two directional cipher states of a
 * finished Noise handshake. It is sans-I/O: it turns bodies into record bytes and record bytes
 * into bodies, and the caller moves the bytes (one record per packet payload).
 *
 * - {@linkcode SecureChannel.sealData} seals one body (one encoded batch) into one DATA record.
 *   When a rekey threshold is reached it first pushes a KEY_UPDATE record, sealed as the last
 *   record under the old key, then advances the send key (Noise `REKEY`), so one call may push
 *   two records.
 * - {@linkcode SecureChannel.open} opens one record. A KEY_UPDATE advances the receive key.
 * - {@linkcode SecureChannel.sealClose} seals an authenticated CLOSE; {@linkcode SecureChannel.finish}
 *   must be called at end of stream and throws `Truncated` unless a CLOSE was received.
 *
 * After any failure while opening (authentication, a malformed record, a record after CLOSE, a
 * truncated stream) the channel is dead: every later call throws a {@linkcode ProtocolError}
 * with the same code, and no plaintext is released.
 *
 * @example Seal and open records
 * ```ts
 * import { CipherState } from "@npro/network-protocol/noise";
 * import { SecureChannel } from "@npro/network-protocol/secure";
 * import assert from "node:assert/strict";
 *
 * const k1 = new Uint8Array(32).fill(1);
 * const k2 = new Uint8Array(32).fill(2);
 * const alice = new SecureChannel({ send: new CipherState(k1), receive: new CipherState(k2) });
 * const bob = new SecureChannel({ send: new CipherState(k2), receive: new CipherState(k1) });
 *
 * const [record] = alice.sealData(new Uint8Array([1, 2, 3]));
 * const opened = bob.open(record!);
 * assert.equal(opened.type, "data");
 * if (opened.type === "data") assert.deepEqual([...opened.body], [1, 2, 3]);
 *
 * const [close] = alice.sealClose(0, "bye");
 * assert.deepEqual(bob.open(close!), { type: "close", code: 0, reason: "bye" });
 * assert.deepEqual(bob.finish(), { code: 0, reason: "bye" });
 * ```
 */
export class SecureChannel {
  #send: CipherState;
  #receive: CipherState;
  #rekeyAfterRecords: number;
  #rekeyAfterBytes: number;
  #rekeyAfterMs: number;
  #now: () => number;
  #maxBody: number;

  #sendRecords = 0;
  #sendBytes = 0;
  #sendKeySince: number;
  #keyUpdatesSent = 0;
  #keyUpdatesReceived = 0;

  #failure: ProtocolError | null = null;
  readonly #minKeyUpdateIntervalMs: number;
  readonly #maxKeyUpdatesPerSecond: number;
  /** KEY_UPDATE tokens left, refilled at `#maxKeyUpdatesPerSecond`. */
  #keyUpdateTokens: number;
  #keyUpdateRefilled: number;
  /** Whether a DATA record was opened since the last KEY_UPDATE (or since the start). */
  #dataSinceKeyUpdate = true;
  #sendClosed = false;
  #closeReceived: CloseInfo | null = null;

  /**
   * Creates a channel from the two cipher states of a finished handshake.
   *
   * @param keys The send and receive cipher states (they are used, not copied).
   * @param options Rekey thresholds, clock and record size limit.
   * @throws {TypeError} When a cipher state has no key.
   * @throws {RangeError} For a threshold that is not a positive integer.
   */
  constructor(keys: ChannelKeys, options?: SecureChannelOptions) {
    if (!keys.send.hasKey() || !keys.receive.hasKey()) {
      throw new TypeError("Cannot create a secure channel from a cipher state without a key");
    }
    if (keys.send === keys.receive) {
      throw new TypeError(
        "Cannot create a secure channel with one cipher state for both directions",
      );
    }
    this.#send = keys.send;
    this.#receive = keys.receive;
    const settings = resolveChannelOptions(options);
    this.#rekeyAfterRecords = settings.rekeyAfterRecords;
    this.#rekeyAfterBytes = settings.rekeyAfterBytes;
    this.#rekeyAfterMs = settings.rekeyAfterMs;
    this.#maxBody = settings.maxBody;
    this.#now = settings.now;
    this.#sendKeySince = settings.now();
    this.#minKeyUpdateIntervalMs = settings.minKeyUpdateIntervalMs;
    this.#maxKeyUpdatesPerSecond = settings.maxKeyUpdatesPerSecond;
    this.#keyUpdateTokens = settings.maxKeyUpdatesPerSecond;
    this.#keyUpdateRefilled = this.#sendKeySince;
  }

  /** The largest DATA body {@linkcode SecureChannel.sealData} accepts, in bytes. */
  get maxBodySize(): number {
    return this.#maxBody;
  }

  /** The nonce the next sealed record will use. */
  get sendNonce(): number {
    return this.#send.nonce;
  }

  /** The nonce the next opened record must have been sealed with. */
  get receiveNonce(): number {
    return this.#receive.nonce;
  }

  /** How many KEY_UPDATE records this side has sealed. */
  get keyUpdatesSent(): number {
    return this.#keyUpdatesSent;
  }

  /** How many KEY_UPDATE records this side has opened. */
  get keyUpdatesReceived(): number {
    return this.#keyUpdatesReceived;
  }

  /** The CLOSE the peer sent, once opened; otherwise `undefined`. */
  get closeReceived(): CloseInfo | undefined {
    return this.#closeReceived ?? undefined;
  }

  /** Whether a CLOSE was sealed by this side. */
  get closeSent(): boolean {
    return this.#sendClosed;
  }

  /** The failure that killed the channel, or `undefined` while it is usable. */
  get failure(): ProtocolError | undefined {
    return this.#failure ?? undefined;
  }

  /**
   * Seals one body (one encoded batch) into a DATA record and pushes the record bytes onto
   * `out`. When a rekey threshold is reached, a KEY_UPDATE record is pushed first.
   *
   * @param body The content of the record; it is copied.
   * @param out The array that receives the record(s); a new one by default.
   * @returns `out`.
   * @throws {ProtocolError} `LimitExceeded` when the body is larger than
   * {@linkcode SecureChannel.maxBodySize} or the record counter is exhausted (seal a CLOSE
   * then), `ConnectionClosed` after {@linkcode SecureChannel.sealClose}, or the code of an
   * earlier failure.
   */
  sealData(body: Uint8Array, out: Uint8Array[] = []): Uint8Array[] {
    this.#checkSend();
    if (body.length > this.#maxBody) {
      throw new ProtocolError(
        "LimitExceeded",
        `Record body of "${body.length}" bytes exceeds the limit "${this.#maxBody}"`,
      );
    }
    const inner = new Uint8Array(body.length + 1);
    inner.set(body);
    inner[body.length] = RecordType.Data;
    return this.#sealInner(inner, out);
  }

  /**
   * Seals a DATA record like {@linkcode SecureChannel.sealData}, from an inner buffer that the
   * caller already built: the body followed by one spare byte, which this method sets to the
   * DATA type. It saves the copy of the body; the channel takes `inner` over (do not reuse it).
   *
   * @example Seal a body written in place
   * ```ts
   * import { CipherState } from "@npro/network-protocol/noise";
   * import { SecureChannel } from "@npro/network-protocol/secure";
   * import assert from "node:assert/strict";
   *
   * const k1 = new Uint8Array(32).fill(1);
   * const k2 = new Uint8Array(32).fill(2);
   * const alice = new SecureChannel({ send: new CipherState(k1), receive: new CipherState(k2) });
   * const bob = new SecureChannel({ send: new CipherState(k2), receive: new CipherState(k1) });
   *
   * const inner = new Uint8Array(3 + 1);
   * inner.set([1, 2, 3]);
   * const [record] = alice.sealDataInner(inner);
   * const opened = bob.open(record!);
   * assert.equal(opened.type, "data");
   * if (opened.type === "data") assert.deepEqual([...opened.body], [1, 2, 3]);
   * ```
   *
   * @param inner The body and one spare byte at the end (`inner.length >= 1`).
   * @param out The array that receives the record(s); a new one by default.
   * @returns `out`.
   * @throws {RangeError} When `inner` is empty.
   * @throws {ProtocolError} As {@linkcode SecureChannel.sealData}.
   */
  sealDataInner(inner: Uint8Array, out: Uint8Array[] = []): Uint8Array[] {
    this.#checkSend();
    if (inner.length < 1) {
      throw new RangeError("Cannot seal a DATA record: the inner buffer has no spare type byte");
    }
    const bodyLength = inner.length - 1;
    if (bodyLength > this.#maxBody) {
      throw new ProtocolError(
        "LimitExceeded",
        `Record body of "${bodyLength}" bytes exceeds the limit "${this.#maxBody}"`,
      );
    }
    inner[bodyLength] = RecordType.Data;
    return this.#sealInner(inner, out);
  }

  /**
   * Seals a DATA record in place, in the buffer that will be written: the body is the first
   * `bodyLength` bytes of `record`, followed by 17 bytes of room that receive the record type
   * and the tag. The record encoder seals this way straight into the outgoing packet. When a
   * rekey threshold is reached, a KEY_UPDATE record is pushed onto `before` first: it must be
   * sent before this one.
   *
   * @example Seal a record into the packet buffer
   * ```ts
   * import { CipherState } from "@npro/network-protocol/noise";
   * import { SecureChannel } from "@npro/network-protocol/secure";
   * import assert from "node:assert/strict";
   *
   * const k1 = new Uint8Array(32).fill(1);
   * const k2 = new Uint8Array(32).fill(2);
   * const alice = new SecureChannel({ send: new CipherState(k1), receive: new CipherState(k2) });
   * const bob = new SecureChannel({ send: new CipherState(k2), receive: new CipherState(k1) });
   *
   * const record = new Uint8Array(3 + 17);
   * record.set([1, 2, 3]);
   * const before: Uint8Array[] = [];
   * alice.sealDataInPlace(record, 3, before);
   * assert.equal(before.length, 0);
   * const opened = bob.open(record);
   * assert.equal(opened.type, "data");
   * if (opened.type === "data") assert.deepEqual([...opened.body], [1, 2, 3]);
   * ```
   *
   * @param record The body, then at least 17 bytes of room.
   * @param bodyLength The body length.
   * @param before Receives a KEY_UPDATE record when one is due.
   * @throws {RangeError} When `record` has no room for the type byte and the tag.
   * @throws {ProtocolError} As {@linkcode SecureChannel.sealData}.
   */
  sealDataInPlace(record: Uint8Array, bodyLength: number, before: Uint8Array[]): void {
    this.#checkSend();
    if (!Number.isInteger(bodyLength) || bodyLength < 0 || bodyLength + 17 > record.length) {
      throw new RangeError(
        `Cannot seal a DATA record of "${bodyLength}" bytes in "${record.length}" bytes: it needs "17" more`,
      );
    }
    if (bodyLength > this.#maxBody) {
      throw new ProtocolError(
        "LimitExceeded",
        `Record body of "${bodyLength}" bytes exceeds the limit "${this.#maxBody}"`,
      );
    }
    const rekey = this.#rekeyDue();
    this.#checkNonceRoom(rekey ? 2 : 1);
    if (rekey) this.#pushKeyUpdate(before);
    record[bodyLength] = RecordType.Data;
    this.#send.encryptInPlace(EMPTY, record, bodyLength + 1);
    this.#sendRecords++;
    this.#sendBytes += bodyLength + 1;
  }

  #sealInner(inner: Uint8Array, out: Uint8Array[]): Uint8Array[] {
    const rekey = this.#rekeyDue();
    this.#checkNonceRoom(rekey ? 2 : 1);
    if (rekey) this.#pushKeyUpdate(out);
    out.push(this.#send.encryptWithAd(EMPTY, inner));
    this.#sendRecords++;
    this.#sendBytes += inner.length;
    return out;
  }

  /**
   * Seals a KEY_UPDATE record now (the last record under the current send key) and advances
   * the send key. {@linkcode SecureChannel.sealData} does this by itself at the thresholds.
   *
   * @param out The array that receives the record; a new one by default.
   * @returns `out`.
   * @throws {ProtocolError} As {@linkcode SecureChannel.sealData}.
   */
  sealKeyUpdate(out: Uint8Array[] = []): Uint8Array[] {
    this.#checkSend();
    this.#checkNonceRoom(1);
    this.#pushKeyUpdate(out);
    return out;
  }

  /**
   * Seals an authenticated CLOSE record. Nothing can be sealed afterwards.
   *
   * @param code The u16 reason code (see {@linkcode CloseCode}).
   * @param reason A short reason text, at most 123 UTF-8 bytes.
   * @param out The array that receives the record; a new one by default.
   * @returns `out`.
   * @throws {RangeError} For a code outside 0..65535 or a reason over 123 bytes.
   * @throws {ProtocolError} `ConnectionClosed` after an earlier CLOSE, `LimitExceeded` when the
   * counter is past its limit, or `AuthenticationFailed` after a record failed authentication.
   * After other failures (an authenticated record that broke the rules) a CLOSE can still be
   * sealed, to tell the peer why the session ends.
   */
  sealClose(code: number, reason = "", out: Uint8Array[] = []): Uint8Array[] {
    const inner = encodeCloseInner(code, reason);
    // A CLOSE may still say why after an authenticated record broke the rules (the peer is
    // who it claims to be); after a record that failed authentication, nothing is sent.
    if (this.#failure?.code === "AuthenticationFailed") throw this.#dead();
    if (this.#sendClosed) {
      throw new ProtocolError("ConnectionClosed", "Cannot seal a record after CLOSE");
    }
    if (this.#send.nonce > MAX_RECORD_NONCE) {
      throw new ProtocolError(
        "LimitExceeded",
        `Send record counter "${this.#send.nonce}" is past the limit "${MAX_RECORD_NONCE}"`,
      );
    }
    out.push(this.#send.encryptWithAd(EMPTY, inner));
    this.#sendClosed = true;
    return out;
  }

  /**
   * Opens one record (one packet payload).
   *
   * @param record The record bytes.
   * @returns The DATA body, a KEY_UPDATE marker (already applied) or the CLOSE.
   * @throws {ProtocolError} `AuthenticationFailed` for a record that does not authenticate
   * (tampered, replayed, reordered, dropped, injected, reflected, or from another session),
   * `InvalidMessage` for an authenticated record with a bad type or content,
   * `UnexpectedMessage` for a record after CLOSE, `LimitExceeded` past the counter limit, or the
   * code of an earlier failure. The channel is dead after any of them.
   */
  open(record: Uint8Array): OpenedRecord {
    if (this.#failure !== null) throw this.#dead();
    if (this.#closeReceived !== null) {
      throw this.#fail(
        new ProtocolError("UnexpectedMessage", "Received a record after the peer's CLOSE"),
      );
    }
    const nonce = this.#receive.nonce;
    if (nonce > MAX_RECORD_NONCE) {
      throw this.#fail(
        new ProtocolError(
          "LimitExceeded",
          `Receive record counter "${nonce}" is past the limit "${MAX_RECORD_NONCE}"`,
        ),
      );
    }
    if (record.length < RECORD_TAG_SIZE + 1) {
      throw this.#fail(
        new ProtocolError(
          "AuthenticationFailed",
          `Record "${nonce}" of "${record.length}" bytes is shorter than the minimum "${
            RECORD_TAG_SIZE + 1
          }"`,
        ),
      );
    }
    let inner: Uint8Array;
    try {
      inner = this.#receive.decryptWithAd(EMPTY, record);
    } catch (cause) {
      throw this.#fail(
        new ProtocolError("AuthenticationFailed", `Record "${nonce}" failed authentication`, {
          cause,
        }),
      );
    }
    const end = inner.length - 1;
    const type = inner[end];
    if (type === RecordType.Data) {
      this.#dataSinceKeyUpdate = true;
      return { type: "data", body: inner.subarray(0, end) };
    }
    if (type === RecordType.KeyUpdate) {
      if (end !== 0) {
        throw this.#fail(
          new ProtocolError(
            "InvalidMessage",
            `KEY_UPDATE record "${nonce}" has "${end}" content bytes, expected "0"`,
          ),
        );
      }
      this.#checkKeyUpdateRate(nonce);
      this.#receive.rekey();
      this.#keyUpdatesReceived++;
      return KEY_UPDATE_RESULT;
    }
    if (type === RecordType.Close) {
      const info = this.#parseClose(inner.subarray(0, end), nonce);
      this.#closeReceived = info;
      return { type: "close", code: info.code, reason: info.reason };
    }
    throw this.#fail(
      new ProtocolError("InvalidMessage", `Record "${nonce}" has an unknown type "${type}"`),
    );
  }

  /**
   * Reports the end of the inbound stream. Returns the peer's CLOSE; without one the stream
   * was truncated (an attacker may have cut it), which is an error and kills the channel.
   *
   * @returns The CLOSE the peer sent.
   * @throws {ProtocolError} `Truncated` when no CLOSE was received, or the code of an earlier
   * failure.
   */
  finish(): CloseInfo {
    if (this.#failure !== null) throw this.#dead();
    if (this.#closeReceived === null) {
      throw this.#fail(
        new ProtocolError(
          "Truncated",
          `Encrypted stream ended after "${this.#receive.nonce}" records without a CLOSE record`,
        ),
      );
    }
    return this.#closeReceived;
  }

  /**
   * Kills the channel from outside (for example when the transport failed): every later call
   * throws `reason`'s code. Does nothing when the channel is already dead.
   *
   * @param reason The failure.
   */
  abort(reason: ProtocolError): void {
    if (this.#failure === null) this.#failure = reason;
  }

  #parseClose(content: Uint8Array, nonce: number): CloseInfo {
    try {
      return decodeCloseContent(content, nonce);
    } catch (error) {
      throw this.#fail(error as ProtocolError);
    }
  }

  /** Enforces the receive-side KEY_UPDATE rules (docs/PROTOCOL.md, "KEY_UPDATE"). */
  #checkKeyUpdateRate(nonce: number): void {
    if (!this.#dataSinceKeyUpdate) {
      throw this.#fail(
        new ProtocolError(
          "PolicyViolation",
          `KEY_UPDATE record "${nonce}" follows another KEY_UPDATE with no DATA record between them`,
        ),
      );
    }
    this.#dataSinceKeyUpdate = false;
    const max = this.#maxKeyUpdatesPerSecond;
    if (max === Infinity) return;
    const now = this.#now();
    this.#keyUpdateTokens = Math.min(
      max,
      this.#keyUpdateTokens + ((now - this.#keyUpdateRefilled) * max) / 1000,
    );
    this.#keyUpdateRefilled = now;
    if (this.#keyUpdateTokens < 1) {
      throw this.#fail(
        new ProtocolError(
          "PolicyViolation",
          `KEY_UPDATE record "${nonce}" exceeds the limit of "${max}" KEY_UPDATEs per second`,
        ),
      );
    }
    this.#keyUpdateTokens -= 1;
  }

  #rekeyDue(): boolean {
    const age = this.#now() - this.#sendKeySince;
    return (this.#sendRecords >= this.#rekeyAfterRecords ||
      this.#sendBytes >= this.#rekeyAfterBytes ||
      age >= this.#rekeyAfterMs) && age >= this.#minKeyUpdateIntervalMs;
  }

  #pushKeyUpdate(out: Uint8Array[]): void {
    out.push(this.#send.encryptWithAd(EMPTY, KEY_UPDATE_INNER));
    this.#send.rekey();
    this.#keyUpdatesSent++;
    this.#sendRecords = 0;
    this.#sendBytes = 0;
    this.#sendKeySince = this.#now();
  }

  #checkSend(): void {
    if (this.#failure !== null) throw this.#dead();
    if (this.#sendClosed) {
      throw new ProtocolError("ConnectionClosed", "Cannot seal a record after CLOSE");
    }
  }

  #checkNonceRoom(records: number): void {
    // Nonces up to MAX_RECORD_NONCE - 1 for DATA and KEY_UPDATE; MAX_RECORD_NONCE is for CLOSE.
    if (this.#send.nonce + records > MAX_RECORD_NONCE) {
      throw new ProtocolError(
        "LimitExceeded",
        `Send record counter "${this.#send.nonce}" reached the limit "${MAX_RECORD_NONCE}"; seal a CLOSE`,
      );
    }
  }

  #fail(error: ProtocolError): ProtocolError {
    if (this.#failure === null) this.#failure = error;
    return error;
  }

  #dead(): ProtocolError {
    const failure = this.#failure!;
    return new ProtocolError(
      failure.code,
      `The secure channel is dead after an earlier failure: ${failure.message}`,
      { cause: failure },
    );
  }
}
