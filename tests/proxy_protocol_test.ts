/**
 * The PROXY protocol parser (issue 16, item 4): versions 1 and 2 as HAProxy writes them, fed whole
 * and byte by byte; every malformed, truncated or oversized header refused; trusted proxy ranges;
 * the bounded read with its deadline.
 */

import assert from "node:assert/strict";
import { ProtocolError } from "../src/errors.ts";
import {
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_SIGNATURE,
  ProxyHeaderDecoder,
  type ProxyHeaderResult,
  readProxyHeader,
  TrustedProxies,
} from "../src/transport/proxy_protocol.ts";
import { memoryConnPair } from "../src/transport/memory_conn.ts";

const text = (s: string) => new TextEncoder().encode(s);

/** The 28-byte header HAProxy 2.6 sent with `send-proxy-v2` (research/wave2-design.md 6.2). */
const HAPROXY_V2 = Uint8Array.of(
  ...PROXY_V2_SIGNATURE,
  0x21, // v2, PROXY
  0x11, // TCP over IPv4
  0x00,
  0x0c, // 12 bytes of addresses
  127,
  0,
  0,
  1, // src 127.0.0.1
  127,
  0,
  0,
  1, // dst 127.0.0.1
  0x91,
  0x8e, // sport 37262
  0x4c,
  0x18, // dport 19480
);

function v2(verCmd: number, family: number, body: number[]): Uint8Array {
  return Uint8Array.of(
    ...PROXY_V2_SIGNATURE,
    verCmd,
    family,
    body.length >> 8,
    body.length & 0xff,
    ...body,
  );
}

function decodeAll(
  bytes: Uint8Array,
  options?: ConstructorParameters<typeof ProxyHeaderDecoder>[0],
) {
  const result = new ProxyHeaderDecoder(options).push(bytes);
  assert.ok(result !== undefined, "a complete header");
  return result;
}

/** Feeds one byte at a time: undefined until the last byte of the header, then the result. */
function decodeByteByByte(bytes: Uint8Array, headerLength: number): ProxyHeaderResult {
  const decoder = new ProxyHeaderDecoder();
  for (let i = 0; i < headerLength - 1; i++) {
    assert.equal(decoder.push(bytes.subarray(i, i + 1)), undefined, `byte ${i}`);
  }
  const result = decoder.push(bytes.subarray(headerLength - 1));
  assert.ok(result !== undefined);
  return result;
}

function refused(
  bytes: Uint8Array | string,
  pattern: RegExp,
  options?: { versions?: ("v1" | "v2")[] },
) {
  const input = typeof bytes === "string" ? text(bytes) : bytes;
  assert.throws(
    () => new ProxyHeaderDecoder(options).push(input),
    (error: unknown) =>
      error instanceof ProtocolError && error.code === "InvalidHeader" &&
      pattern.test(error.message),
    `refused: ${typeof bytes === "string" ? JSON.stringify(bytes) : bytes.length + " bytes"}`,
  );
}

Deno.test("PROXY v2: HAProxy's own header gives the client's address and port, whole or byte by byte", () => {
  const bytes = new Uint8Array([...HAPROXY_V2, 1, 2, 3]);
  for (const result of [decodeAll(bytes), decodeByteByByte(bytes, 28)]) {
    assert.deepEqual(result.header, {
      version: 2,
      command: "proxy",
      source: { transport: "tcp", hostname: "127.0.0.1", port: 37262 },
      destination: { transport: "tcp", hostname: "127.0.0.1", port: 19480 },
      length: 28,
    });
    assert.deepEqual([...result.rest], [1, 2, 3]);
  }
});

Deno.test("PROXY v2: IPv6 and Unix addresses, TLVs skipped, LOCAL and UNSPEC use the socket's addresses", () => {
  const ip6 = [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1];
  const ip6b = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
  const tlvs = [0x04, 0x00, 0x02, 0xaa, 0xbb]; // PP2_TYPE_NOOP with 2 bytes
  const six = decodeAll(v2(0x21, 0x21, [...ip6, ...ip6b, 0x1f, 0x90, 0x23, 0x28, ...tlvs]));
  assert.deepEqual(six.header.source, { transport: "tcp", hostname: "2001:db8::1", port: 8080 });
  assert.deepEqual(six.header.destination, {
    transport: "tcp",
    // RFC 5952: of two equal runs of zeros, the first becomes "::".
    hostname: "2001:db8::1:0:0:2",
    port: 9000,
  });
  assert.equal(six.header.length, 16 + 36 + 5);

  const path = (p: string) => [...text(p), ...new Array(108 - p.length).fill(0)];
  const unix = decodeAll(v2(0x21, 0x31, [...path("/run/client.sock"), ...path("/run/lb.sock")]));
  assert.deepEqual(unix.header.source, { transport: "unix", path: "/run/client.sock" });

  const local = decodeAll(v2(0x20, 0x00, []));
  assert.deepEqual(local.header, { version: 2, command: "local", length: 16 });
  // LOCAL with addresses (HAProxy's health checks may send them): still the socket's addresses.
  assert.equal(decodeAll(v2(0x20, 0x11, [...HAPROXY_V2.subarray(16)])).header.source, undefined);
  const unspec = decodeAll(v2(0x21, 0x00, [9, 9, 9]));
  assert.equal(unspec.header.command, "local");
});

Deno.test("PROXY v2: truncated, wrong, oversized and datagram headers are refused or wait for more", () => {
  // Truncated: 20 of 28 bytes wait for more (a parser that accepts them reads garbage addresses).
  const decoder = new ProxyHeaderDecoder();
  assert.equal(decoder.push(HAPROXY_V2.subarray(0, 20)), undefined);
  assert.equal(decoder.bufferedBytes, 20);
  assert.throws(
    () => decoder.finish(),
    (e: unknown) => e instanceof ProtocolError && e.code === "Truncated",
  );

  const wrongSignature = HAPROXY_V2.slice();
  wrongSignature[7] = 0x00;
  refused(wrongSignature, /signature is wrong/);
  refused(v2(0x11, 0x11, [...HAPROXY_V2.subarray(16)]), /version "1", not "2"/);
  refused(v2(0x22, 0x11, [...HAPROXY_V2.subarray(16)]), /unknown command "2"/);
  refused(v2(0x21, 0x41, [...HAPROXY_V2.subarray(16)]), /unknown address family/);
  refused(v2(0x21, 0x12, [...HAPROXY_V2.subarray(16)]), /relays protocol "2", not a stream/);
  refused(v2(0x21, 0x11, [1, 2, 3, 4]), /fewer than the "12" of its addresses/);
  refused(v2(0x21, 0x21, new Array(20).fill(0)), /fewer than the "36"/);
  // Over the limit: refused from the fixed 16 bytes, before the body is read.
  const huge = v2(0x21, 0x11, new Array(2000).fill(0));
  refused(huge.subarray(0, 16), /of "2016" bytes exceeds the limit "1024"/);
  assert.equal(decodeAll(huge, { maxHeaderBytes: 4096 }).header.length, 2016);
});

Deno.test("PROXY v1: TCP4, TCP6 and UNKNOWN as HAProxy writes them, byte by byte too", () => {
  const line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  const bytes = text(line + "GET");
  for (const result of [decodeAll(bytes), decodeByteByByte(bytes, line.length)]) {
    assert.deepEqual(result.header, {
      version: 1,
      command: "proxy",
      source: { transport: "tcp", hostname: "192.168.0.1", port: 56324 },
      destination: { transport: "tcp", hostname: "192.168.0.11", port: 443 },
      length: line.length,
    });
    assert.equal(new TextDecoder().decode(result.rest), "GET");
  }
  const six = decodeAll(text("PROXY TCP6 2001:DB8::0:1 ::ffff:192.0.2.1 1 65535\r\n"));
  assert.deepEqual(six.header.source, { transport: "tcp", hostname: "2001:db8::1", port: 1 });
  assert.deepEqual(six.header.destination, {
    transport: "tcp",
    hostname: "::ffff:c000:201",
    port: 65535,
  });
  const unknownLine = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
  const unknown = decodeAll(text(unknownLine));
  assert.deepEqual(unknown.header, { version: 1, command: "local", length: unknownLine.length });
  // The longest header allowed: exactly 107 bytes.
  const longest = "PROXY UNKNOWN " + "x".repeat(PROXY_V1_MAX_LENGTH - 16) + "\r\n";
  assert.equal(longest.length, PROXY_V1_MAX_LENGTH);
  assert.equal(decodeAll(text(longest)).header.length, PROXY_V1_MAX_LENGTH);
});

Deno.test("PROXY v1: malformed lines are refused", () => {
  refused("PROXZ TCP4", /does not start with "PROXY "/);
  refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", /printable ASCII|CR/);
  refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", /CR not followed by LF/);
  refused("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", /is not "TCP4\|TCP6/);
  refused("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", /is not "TCP4\|TCP6/);
  refused("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", /is not "TCP4\|TCP6/);
  refused("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", /not IPv4/);
  refused("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", /not IPv4/);
  refused("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", /not IPv4/);
  refused("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", /not IPv6/);
  refused("PROXY TCP6 1::2::3 ::1 1 2\r\n", /not IPv6/);
  refused("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", /port that is not 0 to 65535/);
  refused("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", /port that is not 0 to 65535/);
  refused("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", /port that is not 0 to 65535/);
  refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\u0000\r\n", /printable ASCII/);
  refused("PROXY UNKNOWN " + "x".repeat(PROXY_V1_MAX_LENGTH), /longer than "107" bytes/);
  refused("PROXY UNKNOWN " + "x".repeat(PROXY_V1_MAX_LENGTH - 15) + "\r\n", /longer than "107"/);
});

Deno.test("PROXY: a connection without a header, or with a version not accepted, is refused at its first byte", () => {
  refused(Uint8Array.of(0x00, 0x01), /does not start with a PROXY v1 or v2 header/);
  refused("GET / HTTP/1.1\r\n", /does not start with a PROXY/);
  refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", /PROXY v2 header/, { versions: ["v2"] });
  refused(HAPROXY_V2, /PROXY v1 header/, { versions: ["v1"] });
  assert.throws(() => new ProxyHeaderDecoder({ versions: [] }), RangeError);
  assert.throws(() => new ProxyHeaderDecoder({ maxHeaderBytes: 10 }), RangeError);
  // One header per connection.
  const decoder = new ProxyHeaderDecoder();
  decoder.push(HAPROXY_V2);
  assert.throws(() => decoder.push(HAPROXY_V2), ProtocolError);
});

Deno.test("PROXY: trusted proxies match addresses, IPv4 and IPv6 ranges, and IPv4-mapped peers", () => {
  const trusted = new TrustedProxies(["10.0.0.0/8", "192.168.1.7", "fd00::/8", "::1", "0.0.0.0/0"]);
  assert.equal(trusted.size, 5);
  const strict = new TrustedProxies([
    "10.0.0.0/8",
    "192.168.1.7",
    "fd00::/8",
    "::1",
    "172.16.0.0/12",
  ]);
  for (
    const yes of [
      "10.0.0.1",
      "10.255.255.255",
      "192.168.1.7",
      "fd12::1",
      "::1",
      "::ffff:10.9.9.9",
      "172.31.0.1",
    ]
  ) {
    assert.ok(strict.has(yes), yes);
  }
  for (
    const no of [
      "11.0.0.1",
      "192.168.1.8",
      "fe80::1",
      "::2",
      "::ffff:11.0.0.1",
      "172.32.0.1",
      "localhost",
      "",
    ]
  ) {
    assert.ok(!strict.has(no), no);
  }
  assert.ok(trusted.has("203.0.113.9"), "0.0.0.0/0 trusts every IPv4 peer");
  assert.ok(!new TrustedProxies([]).has("127.0.0.1"));
  for (const bad of ["10.0.0.0/33", "::/129", "10.0.0/8", "host", "10.0.0.1/", "10.0.0.1/x"]) {
    assert.throws(() => new TrustedProxies([bad]), TypeError, bad);
  }
});

Deno.test("PROXY: readProxyHeader reads the header and hands back what followed it", async () => {
  const [proxy, server] = memoryConnPair();
  const sent = new Uint8Array([...HAPROXY_V2, 7, 7]);
  await proxy.write(sent.subarray(0, 10));
  const reading = readProxyHeader(server, { timeoutMs: 2000 });
  await proxy.write(sent.subarray(10));
  const { header, rest } = await reading;
  assert.equal((header.source as Deno.NetAddr).port, 37262);
  assert.deepEqual([...rest], [7, 7]);
  proxy.close();
  server.close();
});

Deno.test("PROXY: readProxyHeader fails on time, on a truncated stream and when cancelled", async () => {
  {
    const [proxy, server] = memoryConnPair();
    const started = performance.now();
    await assert.rejects(
      readProxyHeader(server, { timeoutMs: 50 }),
      (e: unknown) => e instanceof ProtocolError && e.code === "Timeout",
    );
    assert.ok(performance.now() - started < 1000);
    proxy.close();
    server.close();
  }
  {
    const [proxy, server] = memoryConnPair();
    await proxy.write(HAPROXY_V2.subarray(0, 20));
    proxy.close();
    await assert.rejects(
      readProxyHeader(server, { timeoutMs: 2000 }),
      (e: unknown) => e instanceof ProtocolError && e.code === "Truncated",
    );
    server.close();
  }
  {
    const [proxy, server] = memoryConnPair();
    const controller = new AbortController();
    const reading = readProxyHeader(server, { timeoutMs: 2000, signal: controller.signal });
    controller.abort(new Error("stop"));
    await assert.rejects(
      reading,
      (e: unknown) => e instanceof ProtocolError && e.code === "Cancelled",
    );
    proxy.close();
    server.close();
  }
  {
    const [proxy, server] = memoryConnPair();
    await proxy.write(text("SSH-2.0-OpenSSH\r\n"));
    await assert.rejects(
      readProxyHeader(server, { timeoutMs: 2000 }),
      (e: unknown) => e instanceof ProtocolError && e.code === "InvalidHeader",
    );
    proxy.close();
    server.close();
  }
});
