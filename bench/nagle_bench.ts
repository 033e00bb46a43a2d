/**
 * What switching Nagle's algorithm off buys: the round trip of a 64-byte request written in two
 * pieces (a 4-byte header, then the payload), with the transports' `TCP_NODELAY` sockets against
 * Nagle-on sockets measured in the same run. With Nagle on, the second small write waits for the
 * ACK of the first, which the peer delays (about 40 ms on Linux).
 *
 * The tests only check the mechanism (that `TCP_NODELAY` is set, see
 * tests/transport_tcp_test.ts and tests/transport_tls_test.ts); the latency is measured here.
 *
 * Run: deno bench -A bench/nagle_bench.ts (each group's summary gives the ratio to its baseline)
 *
 * @module
 */

import { generateSelfSignedCert } from "../src/transport/certs.ts";
import { formatHostPort } from "../src/transport/address.ts";
import { TcpTransport } from "../src/transport/tcp.ts";
import { type TlsClientOptions, TlsTransport } from "../src/transport/tls.ts";
import type { Listener } from "../src/transport/types.ts";

const HEADER = new Uint8Array([0, 0, 0, 64]);
const PAYLOAD = new Uint8Array(64).fill(7);
/** Round trips measured for a Nagle-on case (each costs tens of milliseconds). */
const NAGLE_ROUNDS = 40;

/** Reads exactly `buffer.length` bytes; returns false on EOF. */
async function readFull(conn: Deno.Conn, buffer: Uint8Array): Promise<boolean> {
  let offset = 0;
  while (offset < buffer.length) {
    const n = await conn.read(buffer.subarray(offset));
    if (n === null) return false;
    offset += n;
  }
  return true;
}

/** Echoes 68-byte requests, in two writes (header, payload) or in one. */
async function echo(conn: Deno.Conn, twoWrites: boolean): Promise<void> {
  const request = new Uint8Array(HEADER.length + PAYLOAD.length);
  try {
    while (await readFull(conn, request)) {
      if (twoWrites) {
        await conn.write(request.subarray(0, HEADER.length));
        await conn.write(request.subarray(HEADER.length));
      } else {
        await conn.write(request);
      }
    }
  } catch {
    // The client went away.
  } finally {
    conn.close();
  }
}

/** A connected client whose server echoes; returns one two-write round trip. */
async function echoPair(
  listener: Listener,
  dial: (address: string) => Promise<Deno.Conn>,
  options: { nagle: boolean; serverTwoWrites: boolean },
): Promise<() => Promise<void>> {
  const { hostname, port } = listener.addr as Deno.NetAddr;
  const [client, server] = await Promise.all([
    dial(formatHostPort(hostname, port)),
    listener.accept(),
  ]);
  listener.close();
  if (options.nagle) {
    (client as Deno.TcpConn).setNoDelay(false);
    (server as Deno.TcpConn).setNoDelay(false);
  }
  void echo(server, options.serverTwoWrites);
  const reply = new Uint8Array(HEADER.length + PAYLOAD.length);
  return async () => {
    await client.write(HEADER);
    await client.write(PAYLOAD);
    if (!await readFull(client, reply)) throw new Error("server closed early");
  };
}

// Plain TCP: both ends write in two pieces.
const tcp = new TcpTransport();
const tcpPair = async (address: string, nagle: boolean) =>
  echoPair(await tcp.listen(address), (a) => tcp.connect(a), { nagle, serverTwoWrites: true });
const tcpNoDelay = await tcpPair("127.0.0.1:0", false);
const tcpNoDelayV6 = await tcpPair("[::1]:0", false);
const tcpNagle = await tcpPair("127.0.0.1:0", true);

Deno.bench({
  name: "TcpTransport sockets, IPv4 (TCP_NODELAY)",
  group: "TCP two-write round trip, loopback",
  baseline: true,
  fn: tcpNoDelay,
});
Deno.bench({
  name: "TcpTransport sockets, IPv6 (TCP_NODELAY)",
  group: "TCP two-write round trip, loopback",
  fn: tcpNoDelayV6,
});
Deno.bench({
  name: "the IPv4 sockets with Nagle switched back on",
  group: "TCP two-write round trip, loopback",
  n: NAGLE_ROUNDS,
  warmup: 3,
  fn: tcpNagle,
});

// TLS: the client writes in two pieces; the server (Nagle on: Deno cannot change it for
// accepted TLS sockets) answers in one write, as the daemon does.
const cert = await generateSelfSignedCert({ commonName: "localhost", altNames: ["127.0.0.1"] });
const tlsPair = async (client: TlsClientOptions) => {
  const tls = new TlsTransport({ server: { cert: cert.certPem, key: cert.keyPem }, client });
  return echoPair(await tls.listen("127.0.0.1:0"), (a) => tls.connect(a), {
    nagle: false,
    serverTwoWrites: false,
  });
};
const tlsNoDelay = await tlsPair({ caCerts: [cert.certPem] });
const tlsWithCert = await tlsPair({
  caCerts: [cert.certPem],
  cert: cert.certPem,
  key: cert.keyPem,
});

Deno.bench({
  name: "TlsTransport client without a certificate (Deno.startTls, TCP_NODELAY)",
  group: "TLS two-write round trip, IPv4 loopback",
  baseline: true,
  fn: tlsNoDelay,
});
Deno.bench({
  name: "TlsTransport client with a certificate (Deno.connectTls, Nagle on)",
  group: "TLS two-write round trip, IPv4 loopback",
  n: NAGLE_ROUNDS,
  warmup: 3,
  fn: tlsWithCert,
});
