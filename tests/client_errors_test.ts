/**
 * What a client can tell from a failed handshake: a server that closes after the first message
 * (a wrong pinned key, a refused pattern or mode) and a server that does not speak this protocol
 * (TLS, HTTP) on the port.
 */
import assert from "node:assert/strict";
import { isProtocolError } from "../src/errors.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { fingerprint, generateKeyPair } from "../src/secure/keys.ts";
import { connect, type ConnectOptions } from "../src/service/client.ts";
import { serve, type Server } from "../src/service/daemon.ts";
import { generateSelfSignedCert } from "../src/transport/certs.ts";
import { tlsHandshake, TlsTransport } from "../src/transport/tls.ts";

const dispatcher = () => registerStandardHandlers(new Dispatcher());

function addressOf(addr: Deno.Addr): string {
  return `127.0.0.1:${(addr as Deno.NetAddr).port}`;
}

/** Connects and returns the error; a connection that succeeds fails the test. */
async function failure(options: ConnectOptions): Promise<Error> {
  return await connect({
    autoReconnect: false,
    ...options,
    config: { client: { connectionTimeout: 3000 }, ...options.config },
  }).then(
    async (client) => {
      await client.close();
      assert.fail("connected");
    },
    (e) => e,
  );
}

async function startServer(options: Parameters<typeof serve>[0]): Promise<Server> {
  return await serve({ address: "127.0.0.1:0", ...options }, dispatcher());
}

Deno.test("client errors: a server that closes after an NK hello is probably not the pinned one", async () => {
  await using server = await startServer({ security: { staticKey: generateKeyPair() } });
  const pinned = generateKeyPair().publicKey;
  const error = await failure({
    address: addressOf(server.addr),
    security: { serverKeys: [pinned] },
  });
  assert.ok(isProtocolError(error, "HandshakeFailed"), String(error));
  assert.match(
    error.message,
    /^The server closed the connection after our first handshake message/,
  );
  assert.match(error.message, /its key is probably not the pinned one/);
  assert.ok(error.message.includes(`"${fingerprint(pinned)}"`), error.message);
});

Deno.test("client errors: an IK client refused at its first message gets the same explanation", async () => {
  await using server = await startServer({ security: { staticKey: generateKeyPair() } });
  const pinned = generateKeyPair().publicKey;
  const error = await failure({
    address: addressOf(server.addr),
    security: { pattern: "IK", serverKeys: [pinned], staticKey: generateKeyPair() },
  });
  assert.ok(isProtocolError(error, "HandshakeFailed"), String(error));
  assert.match(error.message, /its key is probably not the pinned one/);
  assert.match(error.message, /this client's key/);
  assert.ok(error.message.includes(fingerprint(pinned)), error.message);
});

Deno.test("client errors: a server that refuses the pattern or the mode says which one", async () => {
  // XX against a server that accepts NK only.
  {
    await using server = await startServer({
      security: { staticKey: generateKeyPair(), accept: ["NK"] },
    });
    const error = await failure({ address: addressOf(server.addr) });
    assert.ok(isProtocolError(error, "HandshakeFailed"), String(error));
    assert.match(error.message, /does not accept pattern "XX"/);
  }
  // Plaintext against a server that requires encryption.
  {
    await using server = await startServer({ security: { staticKey: generateKeyPair() } });
    const error = await failure({
      address: addressOf(server.addr),
      config: { transport: { encryptionEnabled: false } },
    });
    assert.ok(isProtocolError(error, "HandshakeFailed"), String(error));
    assert.match(error.message, /requires encryption/);
  }
});

Deno.test("client errors: a TLS server on the port is reported as a transport mismatch", async () => {
  const { certPem, keyPem } = await generateSelfSignedCert({
    commonName: "localhost",
    altNames: ["127.0.0.1"],
  });
  const tls = new TlsTransport({ server: { cert: certPem, key: keyPem } });
  await using listener = await tls.listen("127.0.0.1:0");
  // The TLS server answers the NPRO hello with an alert and closes.
  const served = (async () => {
    const conn = await listener.accept();
    try {
      await tlsHandshake(conn, { timeoutMs: 3000 });
    } catch {
      // Expected: the client does not speak TLS.
    } finally {
      try {
        conn.close();
      } catch {
        // Closed by the failed handshake.
      }
    }
  })();
  const error = await failure({
    address: addressOf(listener.addr),
    security: { serverKeys: [generateKeyPair().publicKey] },
  });
  await served;
  assert.ok(isProtocolError(error, "HandshakeFailed"), String(error));
  assert.match(error.message, /not a handshake packet of this protocol/);
  assert.match(error.message, /speaks TLS/);
  assert.match(error.message, /transport\.kind = "tls"/);
});

Deno.test("client errors: an HTTP server on the port is reported as not speaking this protocol", async () => {
  await using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      await conn.read(new Uint8Array(1024));
      await conn.write(
        new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
      );
    } finally {
      conn.close();
    }
  })();
  const error = await failure({ address: addressOf(listener.addr) });
  await served;
  assert.ok(isProtocolError(error, "HandshakeFailed"), String(error));
  assert.match(error.message, /not a handshake packet of this protocol/);
  assert.match(error.message, /another protocol/);
});

Deno.test("client errors: a TLS client against a server without TLS is told it does not speak TLS", async () => {
  await using server = await startServer({ security: { staticKey: generateKeyPair() } });
  const error = await failure({
    address: addressOf(server.addr),
    config: { transport: { kind: "tls" } },
    security: { serverKeys: [server.publicKey!] },
  });
  assert.ok(isProtocolError(error, "TlsError"), String(error));
  assert.match(error.message, /does not speak TLS|not TLS/);
  assert.match(error.message, /transport\.kind = "tcp"/);
});
