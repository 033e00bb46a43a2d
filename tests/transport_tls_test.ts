import assert from "node:assert/strict";
import * as nodeTls from "node:tls";
import type { AddressInfo } from "node:net";
import { isProtocolError } from "../src/errors.ts";
import { formatHostPort } from "../src/transport/address.ts";
import {
  createTransport,
  generateSelfSignedCert,
  type SelfSignedCert,
  tlsHandshake,
  TlsTransport,
} from "../src/transport/mod.ts";
import type { TlsClientOptions } from "../src/transport/tls.ts";

const serverCert: SelfSignedCert = await generateSelfSignedCert({
  commonName: "npro-test-server",
  altNames: ["localhost", "127.0.0.1", "::1"],
  days: 1,
});
const otherCert: SelfSignedCert = await generateSelfSignedCert({
  commonName: "npro-other",
  altNames: ["localhost", "127.0.0.1"],
  days: 1,
});
const clientCert: SelfSignedCert = await generateSelfSignedCert({
  commonName: "npro-test-client",
  altNames: ["client.npro.test"],
  days: 1,
});

const server = { cert: serverCert.certPem, key: serverCert.keyPem };

async function readFull(conn: Deno.Conn, buffer: Uint8Array): Promise<boolean> {
  let offset = 0;
  while (offset < buffer.length) {
    const n = await conn.read(buffer.subarray(offset));
    if (n === null) return false;
    offset += n;
  }
  return true;
}

/** Connects `client` to a fresh TLS listener of `listenSide`; returns both ends or the errors. */
async function pair(
  listenSide: TlsTransport,
  clientSide: TlsTransport,
  options: { timeoutMs?: number; address?: string } = {},
): Promise<{
  client: PromiseSettledResult<Deno.Conn>;
  server: PromiseSettledResult<Deno.Conn>;
  alpn: string | null | undefined;
}> {
  await using listener = await listenSide.listen(options.address ?? "127.0.0.1:0");
  const { hostname, port } = listener.addr as Deno.NetAddr;
  const target = formatHostPort(hostname, port);
  let alpn: string | null | undefined;
  const [client, accepted] = await Promise.allSettled([
    clientSide.connect(target, { timeoutMs: options.timeoutMs ?? 3000 }),
    listener.accept().then(async (conn) => {
      alpn = (await tlsHandshake(conn, { timeoutMs: 3000 })).alpnProtocol;
      return conn;
    }),
  ]);
  return { client, server: accepted, alpn };
}

function closeAll(...results: PromiseSettledResult<Deno.Conn>[]): void {
  for (const result of results) if (result.status === "fulfilled") result.value.close();
}

Deno.test("TLS: echo with a pinned self-signed certificate and ALPN npro/2", async () => {
  const tls = createTransport("tls", { server, client: { caCerts: [serverCert.certPem] } });
  assert.equal(tls.kind, "tls");
  const { client, server: accepted, alpn } = await pair(tls as TlsTransport, tls as TlsTransport);
  assert.equal(client.status, "fulfilled", String((client as PromiseRejectedResult).reason));
  assert.equal(accepted.status, "fulfilled");
  if (client.status !== "fulfilled" || accepted.status !== "fulfilled") return;
  assert.equal(alpn, "npro/2");
  assert.equal((await (client.value as Deno.TlsConn).handshake()).alpnProtocol, "npro/2");
  await client.value.write(new TextEncoder().encode("hello"));
  const buffer = new Uint8Array(5);
  assert.ok(await readFull(accepted.value, buffer));
  await accepted.value.write(buffer);
  assert.ok(await readFull(client.value, buffer));
  assert.equal(new TextDecoder().decode(buffer), "hello");
  closeAll(client, accepted);
});

Deno.test("TLS: IPv6 loopback and serverName checked against the certificate", async () => {
  const localhostOnly = await generateSelfSignedCert({ commonName: "localhost" });
  const listenSide = new TlsTransport({
    server: { cert: localhostOnly.certPem, key: localhostOnly.keyPem },
  });
  // The certificate names "localhost" only: connecting by IP fails the name check...
  const byIp = await pair(
    listenSide,
    new TlsTransport({ client: { caCerts: [localhostOnly.certPem] } }),
  );
  assert.equal(byIp.client.status, "rejected");
  const nameError = (byIp.client as PromiseRejectedResult).reason;
  assert.ok(isProtocolError(nameError, "TlsError"), String(nameError));
  assert.ok(nameError.cause instanceof Error);
  closeAll(byIp.server);
  // ...and succeeds with serverName "localhost", over IPv6 too.
  const named = await pair(
    listenSide,
    new TlsTransport({ client: { caCerts: [localhostOnly.certPem], serverName: "localhost" } }),
    { address: "[::1]:0" },
  );
  assert.equal(named.client.status, "fulfilled");
  assert.equal(named.alpn, "npro/2");
  closeAll(named.client, named.server);
});

Deno.test("TLS: a wrong pin fails with TlsError on the client and the server", async () => {
  const result = await pair(
    new TlsTransport({ server }),
    new TlsTransport({ client: { caCerts: [otherCert.certPem] } }),
  );
  assert.equal(result.client.status, "rejected");
  const error = (result.client as PromiseRejectedResult).reason;
  assert.ok(isProtocolError(error, "TlsError"), String(error));
  assert.match(String((error.cause as Error).message), /UnknownIssuer|certificate/i);
  assert.equal(result.server.status, "rejected");
  assert.ok(isProtocolError((result.server as PromiseRejectedResult).reason, "TlsError"));
});

Deno.test("TLS: ALPN mismatch and a server without ALPN", async () => {
  const client: TlsClientOptions = { caCerts: [serverCert.certPem] };
  const mismatch = await pair(
    new TlsTransport({ server: { ...server, alpnProtocols: ["other/1"] } }),
    new TlsTransport({ client }),
  );
  assert.equal(mismatch.client.status, "rejected");
  assert.ok(isProtocolError((mismatch.client as PromiseRejectedResult).reason, "TlsError"));
  closeAll(mismatch.server);

  const noAlpnServer = new TlsTransport({ server: { ...server, alpnProtocols: [] } });
  const required = await pair(noAlpnServer, new TlsTransport({ client }));
  assert.equal(required.client.status, "rejected");
  const error = (required.client as PromiseRejectedResult).reason;
  assert.ok(isProtocolError(error, "TlsError"));
  assert.match(error.message, /selected no ALPN protocol/);
  closeAll(required.server);

  const optional = await pair(
    noAlpnServer,
    new TlsTransport({ client: { ...client, requireAlpn: false } }),
  );
  assert.equal(optional.client.status, "fulfilled");
  assert.equal(optional.alpn, null);
  closeAll(optional.client, optional.server);
});

Deno.test("TLS: options the native backend cannot enforce throw TlsError", () => {
  const native = "native" as const;
  const cases: Array<[string, () => unknown]> = [
    [
      "server.clientAuth",
      () =>
        new TlsTransport({
          backend: native,
          server: { ...server, requireClientCert: true, clientCaCerts: [clientCert.certPem] },
        }),
    ],
    [
      "server.clientCaCerts",
      () =>
        new TlsTransport({
          backend: native,
          server: { ...server, clientAuth: "request", clientCaCerts: [clientCert.certPem] },
        }),
    ],
    ["server.clientCertFingerprints", () =>
      new TlsTransport({
        backend: native,
        server: {
          ...server,
          clientAuth: "require",
          clientCertFingerprints: [clientCert.fingerprint],
        },
      })],
    ["server.authorize", () =>
      new TlsTransport({
        backend: native,
        server: { ...server, authorize: () => true },
      })],
    ["server.minVersion", () =>
      new TlsTransport({
        backend: native,
        server: { ...server, minVersion: "TLSv1.3" },
      })],
    [
      "client.serverCertFingerprints",
      () =>
        new TlsTransport({
          backend: native,
          client: { serverCertFingerprints: [serverCert.fingerprint] },
        }),
    ],
    [
      "client.pinOnly",
      () =>
        new TlsTransport({
          backend: native,
          client: { pinOnly: true, serverSpkiPins: ["A".repeat(43) + "="] },
        }),
    ],
  ];
  for (const [option, build] of cases) {
    assert.throws(build, (e) => {
      assert.ok(isProtocolError(e, "TlsError"), `${option}: ${e}`);
      assert.ok(e.message.includes(`"${option}`), e.message);
      assert.match(e.message, /native Deno TLS backend/);
      return true;
    });
  }
  // Under "auto" the same options pick the node backend instead of throwing.
  assert.equal(
    new TlsTransport({
      server: { ...server, clientAuth: "require", clientCaCerts: [clientCert.certPem] },
    }).serverBackend,
    "node",
  );
  assert.equal(
    new TlsTransport({ client: { serverCertFingerprints: [serverCert.fingerprint] } })
      .clientBackend,
    "node",
  );
  assert.equal(new TlsTransport({ server }).serverBackend, "native");
  assert.equal(new TlsTransport({}).clientBackend, "native");
  // Contradictions are TypeErrors, never ignored.
  assert.throws(
    () => new TlsTransport({ server: { ...server, clientCaCerts: [clientCert.certPem] } }),
    /needs server.clientAuth "request" or "require"/,
  );
  assert.throws(
    () => new TlsTransport({ server: { ...server, clientAuth: "require" } }),
    /nothing would say which client certificates are good/,
  );
  assert.throws(
    () => new TlsTransport({ client: { pinOnly: true } }),
    /without a pin nothing would be trusted/,
  );
  assert.throws(
    () => new TlsTransport({ client: { serverCertFingerprints: ["AB:CD"] } }),
    /is not a SHA-256 fingerprint/,
  );
  assert.throws(
    () => new TlsTransport({ client: { serverSpkiPins: ["short"] } }),
    /is not an SPKI pin/,
  );
  assert.throws(() => new TlsTransport({ backend: "rustls" as never }), TypeError);
  assert.throws(
    () =>
      new TlsTransport({
        client: {
          pinOnly: true,
          caCerts: [serverCert.certPem],
          serverCertFingerprints: [serverCert.fingerprint],
        },
      }),
    /cannot be used with client.pinOnly/,
  );
  // Explicitly not asking is fine.
  new TlsTransport({ server: { ...server, requireClientCert: false, clientCaCerts: [] } });
  // Unknown options (Node-style names) are refused rather than ignored.
  assert.throws(
    () => new TlsTransport({ server: { ...server, ca: "x" } as never }),
    /Unknown TLS server option "ca"/,
  );
  assert.throws(
    () => new TlsTransport({ client: { rejectUnauthorized: false } as never }),
    TypeError,
  );
  assert.throws(() => new TlsTransport({ mTLS: true } as never), TypeError);
  assert.throws(() => new TlsTransport({ client: { cert: clientCert.certPem } }), TypeError);
  assert.throws(() => new TlsTransport({ server: { cert: "nope", key: "nope" } }), TypeError);
  assert.throws(
    () => new TlsTransport({ client: { alpnProtocols: ["x".repeat(256)] } }),
    RangeError,
  );
});

Deno.test("TLS: listen errors are typed; certificates load from files", async () => {
  await assert.rejects(
    new TlsTransport({}).listen("127.0.0.1:0"),
    (e) => isProtocolError(e, "TlsError"),
  );
  await assert.rejects(
    new TlsTransport({ server: { cert: serverCert.certPem, key: otherCert.certPem } })
      .listen("127.0.0.1:0"),
    (e) => isProtocolError(e, "TlsError"),
  );
  const dir = await Deno.makeTempDir({ prefix: "npro-tls-" });
  try {
    await Deno.writeTextFile(`${dir}/cert.pem`, serverCert.certPem);
    await Deno.writeTextFile(`${dir}/key.pem`, serverCert.keyPem);
    const fromFiles = new TlsTransport({
      server: { cert: { path: `${dir}/cert.pem` }, key: { path: `${dir}/key.pem` } },
      client: { caCerts: [{ path: `${dir}/cert.pem` }] },
    });
    const result = await pair(fromFiles, fromFiles);
    assert.equal(result.client.status, "fulfilled");
    closeAll(result.client, result.server);
    const missing = new TlsTransport({
      server: { cert: { path: `${dir}/none.pem` }, key: { path: `${dir}/key.pem` } },
    });
    const error = await missing.listen("127.0.0.1:0").then(() => assert.fail("bound"), (e) => e);
    assert.ok(isProtocolError(error, "TlsError"));
    assert.ok(error.cause instanceof Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A TCP server that accepts and never says anything: the TLS handshake stalls. */
async function withSilentServer(fn: (address: string) => Promise<void>): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const loop = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  try {
    await fn(`127.0.0.1:${listener.addr.port}`);
  } finally {
    listener.close();
    await loop;
    for (const conn of held) conn.close();
  }
}

Deno.test("TLS: a stalled handshake times out and is released, with and without a client cert", async () => {
  await withSilentServer(async (address) => {
    for (
      const client of [
        { caCerts: [serverCert.certPem] },
        { caCerts: [serverCert.certPem], cert: clientCert.certPem, key: clientCert.keyPem },
      ]
    ) {
      const start = performance.now();
      const error = await new TlsTransport({ client }).connect(address, { timeoutMs: 150 })
        .then(() => assert.fail("connected"), (e) => e);
      const elapsed = performance.now() - start;
      assert.ok(isProtocolError(error, "Timeout"), String(error));
      assert.ok(elapsed >= 140 && elapsed < 2000, `took ${elapsed} ms`);
    }
  });
});

Deno.test("TLS: a stalled handshake is cancelled by the caller's signal", async () => {
  await withSilentServer(async (address) => {
    const controller = new AbortController();
    const pending = new TlsTransport({ client: { caCerts: [serverCert.certPem] } })
      .connect(address, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("user")), 50);
    const error = await pending.then(() => assert.fail("connected"), (e) => e);
    assert.ok(isProtocolError(error, "Cancelled"), String(error));
  });
});

Deno.test("TLS: refused connection and server-side handshake timeout", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = probe.addr;
  probe.close();
  await assert.rejects(
    new TlsTransport().connect(`127.0.0.1:${port}`),
    (e) => isProtocolError(e, "ConnectionRefused"),
  );
  // A client that connects over plain TCP and never starts TLS.
  await using listener = await new TlsTransport({ server }).listen("127.0.0.1:0");
  const raw = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  const accepted = await listener.accept();
  await assert.rejects(
    tlsHandshake(accepted, { timeoutMs: 100 }),
    (e) => isProtocolError(e, "Timeout"),
  );
  assert.throws(() => accepted.close(), Deno.errors.BadResource); // Already closed.
  raw.close();
  await assert.rejects(tlsHandshake(raw), TypeError);
});

/**
 * Records, until disposed, in order: the TCP sockets `Deno.connect` opens, the `setNoDelay` calls
 * made on them, and the sockets handed to `Deno.startTls` (every call still goes through).
 */
function spyTlsUpgrade(): { events: [string, Deno.Conn][] } & Disposable {
  const { connect, startTls } = Deno;
  const events: [string, Deno.Conn][] = [];
  Deno.connect = (async (options: Deno.ConnectOptions) => {
    const conn = await connect(options);
    events.push(["connect", conn]);
    const setNoDelay = conn.setNoDelay;
    conn.setNoDelay = (noDelay = true) => {
      events.push([`setNoDelay(${noDelay})`, conn]);
      setNoDelay.call(conn, noDelay);
    };
    return conn;
  }) as typeof Deno.connect;
  Deno.startTls = ((conn: Deno.TcpConn, options?: Deno.StartTlsOptions) => {
    events.push(["startTls", conn]);
    return startTls(conn, options);
  }) as typeof Deno.startTls;
  return {
    events,
    [Symbol.dispose]() {
      Object.assign(Deno, { connect, startTls });
    },
  };
}

Deno.test("TLS: the client without a certificate switches Nagle off before the TLS upgrade", async () => {
  // What this buys (no Nagle stall on a request written in two pieces) is measured by
  // bench/nagle_bench.ts; here the mechanism is checked.
  using spy = spyTlsUpgrade();
  const tls = new TlsTransport({ server, client: { caCerts: [serverCert.certPem] } });
  const { client, server: accepted } = await pair(tls, tls);
  try {
    assert.equal(client.status, "fulfilled", String((client as PromiseRejectedResult).reason));
    assert.equal(accepted.status, "fulfilled");
    const sockets = spy.events.filter(([what]) => what === "connect").map(([, conn]) => conn);
    assert.equal(sockets.length, 1, "the client did not open its TCP socket with Deno.connect");
    assert.deepEqual(
      spy.events.filter(([, conn]) => conn === sockets[0]).map(([what]) => what),
      ["connect", "setNoDelay(true)", "startTls"],
    );
    if (client.status !== "fulfilled" || accepted.status !== "fulfilled") return;
    // The upgraded socket carries a request written in two pieces.
    await client.value.write(new Uint8Array([0, 0, 0, 64]));
    await client.value.write(new Uint8Array(64).fill(1));
    const request = new Uint8Array(68);
    assert.ok(await readFull(accepted.value, request));
    assert.deepEqual(request.subarray(4), new Uint8Array(64).fill(1));
  } finally {
    closeAll(client, accepted);
  }
});

Deno.test("TLS: the client presents its certificate to a server that requires one", async () => {
  // The native Deno server cannot ask for client certificates; node:tls can.
  let peerFingerprint: string | undefined;
  let authorized: boolean | undefined;
  const nodeServer = nodeTls.createServer({
    cert: serverCert.certPem,
    key: serverCert.keyPem,
    ca: [clientCert.certPem],
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ["npro/2"],
  }, (socket) => {
    authorized = socket.authorized;
    peerFingerprint = socket.getPeerCertificate().fingerprint256;
    socket.end("ok");
  });
  const clientErrors: unknown[] = [];
  nodeServer.on("tlsClientError", (error) => clientErrors.push(error));
  await new Promise<void>((resolve) => nodeServer.listen(0, "127.0.0.1", resolve));
  const { port } = nodeServer.address() as AddressInfo;
  try {
    const withCert = new TlsTransport({
      client: { caCerts: [serverCert.certPem], cert: clientCert.certPem, key: clientCert.keyPem },
    });
    const conn = await withCert.connect(`127.0.0.1:${port}`, { timeoutMs: 3000 });
    const buffer = new Uint8Array(2);
    assert.ok(await readFull(conn, buffer));
    assert.equal(new TextDecoder().decode(buffer), "ok");
    conn.close();
    assert.equal(authorized, true);
    assert.equal(peerFingerprint, clientCert.fingerprint);

    // Without a certificate the same server refuses the handshake.
    authorized = undefined;
    const without = new TlsTransport({ client: { caCerts: [serverCert.certPem] } });
    const error = await without.connect(`127.0.0.1:${port}`, { timeoutMs: 3000 }).then(
      (c) => {
        // TLS 1.3 may report the refusal after the handshake, on the first read.
        return readFull(c, new Uint8Array(1)).then(
          (ok) => {
            c.close();
            return ok ? assert.fail("server accepted a client without a certificate") : null;
          },
          (e) => {
            c.close();
            return e;
          },
        );
      },
      (e) => e,
    );
    // TLS 1.3 completes the client's side of the handshake before the server checks the
    // client's certificate, so the refusal arrives as an alert on the first read.
    assert.ok(error instanceof Error, String(error));
    assert.match(error.message, /CertificateRequired/);
    assert.equal(authorized, undefined); // The server never saw a secure connection.
  } finally {
    await new Promise((resolve) => nodeServer.close(resolve));
  }
});

Deno.test("TLS: native backend, with a client certificate, serverName must equal the host", async () => {
  const tls = new TlsTransport({
    backend: "native",
    client: {
      caCerts: [serverCert.certPem],
      serverName: "localhost",
      cert: clientCert.certPem,
      key: clientCert.keyPem,
    },
  });
  await assert.rejects(
    tls.connect("127.0.0.1:1"),
    (e) => isProtocolError(e, "TlsError") && /cannot differ/.test(e.message),
  );
});
