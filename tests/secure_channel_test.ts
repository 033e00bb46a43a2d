import assert from "node:assert/strict";
import { CloseCode, MAX_RECORD_NONCE, RecordType, SecureChannel } from "../src/secure/channel.ts";
import { ProtocolError } from "../src/errors.ts";
import { CipherState } from "../src/secure/noise/cipher_state.ts";
import { channelPair, randomBytes } from "./_secure_helpers.ts";

const EMPTY = new Uint8Array(0);

function openData(channel: SecureChannel, record: Uint8Array): Uint8Array {
  const opened = channel.open(record);
  assert.equal(opened.type, "data");
  return (opened as { body: Uint8Array }).body;
}

/** Opens every record; returns the DATA bodies; KEY_UPDATE records must be applied silently. */
function openAll(channel: SecureChannel, records: Uint8Array[]): Uint8Array[] {
  const bodies: Uint8Array[] = [];
  for (const record of records) {
    const opened = channel.open(record);
    if (opened.type === "data") bodies.push(opened.body);
    else assert.equal(opened.type, "key_update");
  }
  return bodies;
}

Deno.test("channel: DATA records round trip in both directions", () => {
  const { a, b } = channelPair();
  for (let i = 0; i < 50; i++) {
    const body = randomBytes(i * 7);
    const records = a.sealData(body);
    assert.equal(records.length, 1);
    assert.equal(records[0]!.length, body.length + 1 + 16);
    assert.deepEqual(openData(b, records[0]!), body);
    const reply = randomBytes(i);
    assert.deepEqual(openData(a, b.sealData(reply)[0]!), reply);
  }
  assert.equal(a.sendNonce, 50);
  assert.equal(b.receiveNonce, 50);
  assert.equal(a.keyUpdatesSent, 0);
});

Deno.test("channel: the record is body || type under ChaCha20-Poly1305 with the counter nonce", () => {
  const { a, k1 } = channelPair();
  const body = new Uint8Array([0xaa, 0xbb]);
  const [record] = a.sealData(body);
  // Decrypt with an independent cipher state of the same key: inner = body || 0x01.
  const inner = new CipherState(k1).decryptWithAd(EMPTY, record!);
  assert.deepEqual([...inner], [0xaa, 0xbb, RecordType.Data]);
  const [close] = a.sealClose(0x1234, "ok");
  const probe = new CipherState(k1);
  probe.setNonce(1);
  assert.deepEqual([...probe.decryptWithAd(EMPTY, close!)], [
    0x12,
    0x34,
    0x6f,
    0x6b,
    RecordType.Close,
  ]);
});

Deno.test("channel: an appended output array collects records", () => {
  const { a, b } = channelPair();
  const out: Uint8Array[] = [];
  a.sealData(new Uint8Array([1]), out);
  a.sealData(new Uint8Array([2]), out);
  assert.equal(out.length, 2);
  assert.deepEqual(openAll(b, out).map((x) => x[0]), [1, 2]);
});

Deno.test("channel: CLOSE carries a code and a reason, and ends each direction", () => {
  const { a, b } = channelPair();
  const [record] = a.sealClose(CloseCode.GoingAway, "shutting down ✓");
  assert.deepEqual(b.open(record!), { type: "close", code: 1, reason: "shutting down ✓" });
  assert.deepEqual(b.closeReceived, { code: 1, reason: "shutting down ✓" });
  assert.deepEqual(b.finish(), { code: 1, reason: "shutting down ✓" });
  assert.ok(a.closeSent);
  assert.throws(() => a.sealData(new Uint8Array([1])), { code: "ConnectionClosed" });
  assert.throws(() => a.sealClose(0), { code: "ConnectionClosed" });
  // The other direction still works after a half close.
  const reply = b.sealData(new Uint8Array([9]));
  assert.deepEqual([...openData(a, reply[0]!)], [9]);
  const [close2] = b.sealClose(0xffff, "");
  assert.deepEqual(a.open(close2!), { type: "close", code: 0xffff, reason: "" });
});

Deno.test("channel: a record after CLOSE kills the channel", () => {
  const { a, b } = channelPair();
  const records = a.sealClose(0);
  // A forged follow-up record cannot exist (nothing can be sealed after CLOSE); use a raw one.
  const raw = new CipherState(crypto.getRandomValues(new Uint8Array(32)));
  b.open(records[0]!);
  assert.throws(() => b.open(raw.encryptWithAd(EMPTY, new Uint8Array([1, 1]))), {
    code: "UnexpectedMessage",
  });
  assert.throws(() => b.sealData(new Uint8Array([1])), { code: "UnexpectedMessage" });
});

Deno.test("channel: close arguments are validated", () => {
  const { a } = channelPair();
  assert.throws(() => a.sealClose(-1), RangeError);
  assert.throws(() => a.sealClose(65536), RangeError);
  assert.throws(() => a.sealClose(0, "x".repeat(124)), RangeError);
  a.sealClose(0, "x".repeat(123));
});

Deno.test("channel: end of stream without CLOSE is Truncated and kills the channel", () => {
  const { a, b } = channelPair();
  openData(b, a.sealData(new Uint8Array([1]))[0]!);
  assert.throws(() => b.finish(), (error) => {
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.code, "Truncated");
    return true;
  });
  assert.equal(b.failure?.code, "Truncated");
  assert.throws(() => b.open(a.sealData(new Uint8Array([2]))[0]!), { code: "Truncated" });
  assert.throws(() => b.sealData(new Uint8Array([3])), { code: "Truncated" });
});

Deno.test("channel: after an authentication failure every call throws", () => {
  const { a, b } = channelPair();
  const records = [
    ...a.sealData(new Uint8Array([1])),
    ...a.sealData(new Uint8Array([2])),
  ];
  const bad = records[0]!.slice();
  bad[0]! ^= 1;
  assert.throws(() => b.open(bad), { code: "AuthenticationFailed" });
  // The genuine record no longer opens: the channel is dead, not just the record.
  assert.throws(() => b.open(records[0]!), { code: "AuthenticationFailed" });
  assert.throws(() => b.open(records[1]!), { code: "AuthenticationFailed" });
  assert.throws(() => b.sealData(new Uint8Array([1])), { code: "AuthenticationFailed" });
  assert.throws(() => b.sealClose(0), { code: "AuthenticationFailed" });
  assert.throws(() => b.sealKeyUpdate(), { code: "AuthenticationFailed" });
  assert.throws(() => b.finish(), { code: "AuthenticationFailed" });
});

Deno.test("channel: records shorter than a tag plus a type byte fail authentication", () => {
  for (const length of [0, 1, 15, 16]) {
    const { b } = channelPair();
    assert.throws(() => b.open(new Uint8Array(length)), { code: "AuthenticationFailed" });
  }
});

Deno.test("channel: authenticated but malformed records are InvalidMessage", () => {
  const cases: [string, Uint8Array][] = [
    ["unknown type", new Uint8Array([1, 2, 0x09])],
    ["type zero", new Uint8Array([0x00])],
    ["KEY_UPDATE with content", new Uint8Array([1, RecordType.KeyUpdate])],
    ["CLOSE without code", new Uint8Array([1, RecordType.Close])],
    ["CLOSE with bad UTF-8", new Uint8Array([0, 0, 0xff, RecordType.Close])],
    ["CLOSE reason too long", new Uint8Array([0, 0, ...new Uint8Array(124).fill(0x61), 3])],
  ];
  for (const [name, inner] of cases) {
    const key = randomBytes(32);
    const channel = new SecureChannel({
      send: new CipherState(randomBytes(32)),
      receive: new CipherState(key),
    });
    const record = new CipherState(key).encryptWithAd(EMPTY, inner);
    assert.throws(() => channel.open(record), { code: "InvalidMessage" }, name);
    assert.ok(channel.failure !== undefined, name);
  }
  // A record whose inner plaintext is empty (16 bytes: tag only) is refused before decryption.
  const key = randomBytes(32);
  const channel = new SecureChannel({
    send: new CipherState(randomBytes(32)),
    receive: new CipherState(key),
  });
  assert.throws(() => channel.open(new CipherState(key).encryptWithAd(EMPTY, EMPTY)), {
    code: "AuthenticationFailed",
  });
});

Deno.test("channel: rekey after N records keeps both sides in step in both directions", () => {
  const { a, b } = channelPair({ rekeyAfterRecords: 3 }, { rekeyAfterRecords: 5 });
  let aRecords = 0;
  for (let i = 0; i < 200; i++) {
    const body = randomBytes(i % 40);
    const records = a.sealData(body);
    aRecords += records.length;
    assert.equal(records.length, i > 0 && i % 3 === 0 ? 2 : 1, `record ${i}`);
    const bodies = openAll(b, records);
    assert.deepEqual(bodies, [body]);
    const reply = randomBytes(i % 17);
    assert.deepEqual(openAll(a, b.sealData(reply)), [reply]);
  }
  assert.equal(a.keyUpdatesSent, 66);
  assert.equal(b.keyUpdatesReceived, 66);
  assert.equal(b.keyUpdatesSent, 39);
  assert.equal(a.keyUpdatesReceived, 39);
  assert.equal(a.sendNonce, aRecords);
});

Deno.test("channel: a KEY_UPDATE really changes the key", () => {
  const { a, b, k1 } = channelPair({ rekeyAfterRecords: 1 });
  openAll(b, a.sealData(new Uint8Array([1])));
  const records = a.sealData(new Uint8Array([2])); // KEY_UPDATE + DATA under the new key
  assert.equal(records.length, 2);
  // With the old key at the right nonce, the DATA record no longer opens.
  const stale = new CipherState(k1);
  stale.setNonce(2);
  assert.throws(() => stale.decryptWithAd(EMPTY, records[1]!), { code: "AuthenticationFailed" });
  // With the same REKEY applied it does.
  const fresh = new CipherState(k1);
  fresh.setNonce(1);
  assert.deepEqual([...fresh.decryptWithAd(EMPTY, records[0]!)], [RecordType.KeyUpdate]);
  fresh.rekey();
  assert.deepEqual([...fresh.decryptWithAd(EMPTY, records[1]!)], [2, RecordType.Data]);
  assert.deepEqual(openAll(b, records).map((x) => [...x]), [[2]]);
});

Deno.test("channel: rekey after a number of bytes", () => {
  const { a, b } = channelPair({ rekeyAfterBytes: 100 }, { rekeyAfterBytes: 1 });
  let sent = 0;
  let expected = 0;
  for (let i = 0; i < 300; i++) {
    const body = randomBytes((i * 13) % 61);
    if (sent >= 100) {
      expected++;
      sent = 0;
    }
    sent += body.length + 1;
    assert.deepEqual(openAll(b, a.sealData(body)), [body]);
    assert.deepEqual(openAll(a, b.sealData(body)), [body]);
  }
  assert.equal(a.keyUpdatesSent, expected);
  assert.equal(b.keyUpdatesReceived, expected);
  assert.ok(expected > 50);
  assert.equal(b.keyUpdatesSent, 299); // every record after the first reaches 1 byte
  assert.equal(a.keyUpdatesReceived, 299);
});

Deno.test("channel: rekey after time with an injected clock", () => {
  let now = 1_000;
  const clock = (): number => now;
  const { a, b } = channelPair({ rekeyAfterMs: 60_000, now: clock }, {
    rekeyAfterMs: 10,
    now: clock,
  });
  for (let i = 0; i < 100; i++) {
    now += 1_000;
    const records = a.sealData(new Uint8Array([i]));
    // 60 s after the last update (or the start), the next DATA is preceded by a KEY_UPDATE.
    assert.equal(records.length, i === 59 ? 2 : 1, `record ${i}`);
    openAll(b, records);
    assert.equal(b.sealData(new Uint8Array([i])).length, 2); // 1 s >= 10 ms every time
  }
  assert.equal(a.keyUpdatesSent, 1);
  assert.equal(b.keyUpdatesSent, 100);
  // Without traffic no record is produced; the update happens on the next DATA.
  now += 3_600_000;
  const records = a.sealData(new Uint8Array([7]));
  assert.equal(records.length, 2);
  assert.deepEqual(openAll(b, records).map((x) => [...x]), [[7]]);
  assert.equal(b.keyUpdatesReceived, 2);
});

Deno.test("channel: an explicit KEY_UPDATE is applied by the receiver", () => {
  const { a, b } = channelPair();
  const records = a.sealKeyUpdate();
  assert.deepEqual(b.open(records[0]!), { type: "key_update" });
  assert.deepEqual(openAll(b, a.sealData(new Uint8Array([5]))).map((x) => [...x]), [[5]]);
});

Deno.test("channel: the counter hard limit is 2^53 - 2 and leaves the last nonce for CLOSE", () => {
  assert.equal(MAX_RECORD_NONCE, 2 ** 53 - 2);
  const { a, b, aSend, bReceive } = channelPair();
  aSend.setNonce(MAX_RECORD_NONCE - 1);
  bReceive.setNonce(MAX_RECORD_NONCE - 1);
  const last = a.sealData(new Uint8Array([1]));
  assert.deepEqual(openAll(b, last).map((x) => [...x]), [[1]]);
  assert.throws(() => a.sealData(new Uint8Array([2])), { code: "LimitExceeded" });
  assert.throws(() => a.sealKeyUpdate(), { code: "LimitExceeded" });
  // A send-side limit does not kill the channel: CLOSE still goes out on the last nonce.
  const [close] = a.sealClose(CloseCode.KeyExhausted, "counter exhausted");
  assert.deepEqual(b.open(close!), { type: "close", code: 5, reason: "counter exhausted" });
  assert.equal(b.receiveNonce, MAX_RECORD_NONCE + 1);
});

Deno.test("channel: a rekey that would pass the limit is refused before anything is sealed", () => {
  const { a, aSend } = channelPair({ rekeyAfterRecords: 1 });
  a.sealData(new Uint8Array([1]));
  aSend.setNonce(MAX_RECORD_NONCE - 2); // KEY_UPDATE + DATA would need 2^53-4 and 2^53-3: fine
  assert.equal(a.sealData(new Uint8Array([1])).length, 2);
  aSend.setNonce(MAX_RECORD_NONCE - 1); // next DATA is due a KEY_UPDATE: needs two nonces
  const out: Uint8Array[] = [];
  assert.throws(() => a.sealData(new Uint8Array([1]), out), { code: "LimitExceeded" });
  assert.equal(out.length, 0);
  assert.equal(a.keyUpdatesSent, 1);
});

Deno.test("channel: a receive counter past the limit kills the channel", () => {
  const { a, b, aSend, bReceive } = channelPair();
  aSend.setNonce(MAX_RECORD_NONCE);
  bReceive.setNonce(MAX_RECORD_NONCE + 1);
  const [record] = a.sealClose(0);
  assert.throws(() => b.open(record!), { code: "LimitExceeded" });
  assert.equal(b.failure?.code, "LimitExceeded");
});

Deno.test("channel: bodies over the record limit are refused without killing the channel", () => {
  const { a, b } = channelPair({ maxRecordSize: 64 });
  assert.equal(a.maxBodySize, 47);
  assert.throws(() => a.sealData(new Uint8Array(48)), { code: "LimitExceeded" });
  const records = a.sealData(new Uint8Array(47));
  assert.equal(records[0]!.length, 64);
  assert.equal(openAll(b, records)[0]!.length, 47);
});

Deno.test("channel: options are validated", () => {
  const send = new CipherState(randomBytes(32));
  const receive = new CipherState(randomBytes(32));
  assert.throws(() => new SecureChannel({ send, receive }, { rekeyAfterRecords: 0 }), RangeError);
  assert.throws(() => new SecureChannel({ send, receive }, { rekeyAfterBytes: -1 }), RangeError);
  assert.throws(() => new SecureChannel({ send, receive }, { rekeyAfterMs: 1.5 }), RangeError);
  assert.throws(() => new SecureChannel({ send, receive }, { maxRecordSize: 16 }), RangeError);
  assert.throws(() => new SecureChannel({ send, receive: send }), TypeError);
  assert.throws(() => new SecureChannel({ send: new CipherState(), receive }), TypeError);
  // Infinity disables a threshold.
  const channel = new SecureChannel({ send, receive }, { rekeyAfterMs: Infinity });
  assert.equal(channel.sealData(new Uint8Array(1)).length, 1);
});

Deno.test("channel: the default thresholds are 2^20 records, 1 GiB and 10 minutes", () => {
  let now = 0;
  const { a } = channelPair({ now: () => now });
  const out: Uint8Array[] = [];
  now = 10 * 60 * 1000 - 1;
  a.sealData(new Uint8Array(1), out);
  assert.equal(out.length, 1);
  now = 10 * 60 * 1000;
  a.sealData(new Uint8Array(1), out);
  assert.equal(out.length, 3);
});
