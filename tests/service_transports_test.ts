import assert from "node:assert/strict";
import { connect, type ConnectOptions } from "../src/service/client.ts";
import { serve, type ServeOptions, type Server } from "../src/service/daemon.ts";
import { encodePacket } from "../src/core/packet.ts";
import { generateKeyPair } from "../src/secure/keys.ts";
import {
  generateCertificateAuthority,
  generateSelfSignedCert,
  issueCertificate,
} from "../src/transport/certs.ts";
import { TlsTransport } from "../src/transport/tls.ts";
import type { NetworkConfigInput } from "../src/config/mod.ts";
import {
  add,
  PATIENT_HANDSHAKE_MS,
  portOf,
  PROMPT_CLOSE_MS,
  readUntilClosed,
  SHORT_HANDSHAKE_MS,
  STALLED_CLOSE_MS,
  sumOf,
  testDispatcher,
  waitFor,
  writeAll,
} from "./_service_helpers.ts";

/** How to reach a server over one transport, for the daemon, the client and a raw attacker. */
interface Fixture {
  name: string;
  server(config: NetworkConfigInput): ServeOptions;
  client(server: Server, config: NetworkConfigInput): ConnectOptions;
  raw(server: Server): Promise<Deno.Conn>;
}

const cert = await generateSelfSignedCert({
  commonName: "localhost",
  altNames: ["localhost", "127.0.0.1"],
  days: 1,
});
// Mutual TLS on the node:tls backend: a small CA, its server and client certificates.
const ca = await generateCertificateAuthority({ commonName: "npro test CA", days: 1 });
const caServer = await issueCertificate({
  issuer: ca,
  commonName: "localhost",
  altNames: ["localhost", "127.0.0.1"],
  usage: "server",
  days: 1,
});
const caClient = await issueCertificate({
  issuer: ca,
  commonName: "client-1",
  usage: "client",
  days: 1,
});
const mtlsClientOptions = {
  caCerts: [ca.certPem],
  cert: caClient.certPem,
  key: caClient.keyPem,
};
const dir = await Deno.makeTempDir();
let socketCount = 0;

const fixtures: Fixture[] = [
  {
    name: "TCP",
    server: (config) => ({ address: "127.0.0.1:0", config }),
    client: (server, config) => ({ address: `127.0.0.1:${portOf(server.addr)}`, config }),
    raw: (server) => Deno.connect({ hostname: "127.0.0.1", port: portOf(server.addr) }),
  },
  {
    name: "Unix",
    server: (config) => ({
      address: `${dir}/s${socketCount++}.sock`,
      config: { ...config, transport: { ...config.transport, kind: "unix" } },
    }),
    client: (server, config) => ({
      address: (server.addr as Deno.UnixAddr).path,
      config: { ...config, transport: { ...config.transport, kind: "unix" } },
    }),
    raw: (server) => Deno.connect({ transport: "unix", path: (server.addr as Deno.UnixAddr).path }),
  },
  {
    name: "TLS",
    server: (config) => ({
      address: "127.0.0.1:0",
      config: { ...config, transport: { ...config.transport, kind: "tls" } },
      tls: { cert: cert.certPem, key: cert.keyPem },
    }),
    client: (server, config) => ({
      address: `localhost:${portOf(server.addr)}`,
      config: { ...config, transport: { ...config.transport, kind: "tls" } },
      tls: { caCerts: [cert.certPem] },
    }),
    raw: (server) =>
      Deno.connectTls({
        hostname: "localhost",
        port: portOf(server.addr),
        caCerts: [cert.certPem],
        alpnProtocols: ["npro/2"],
      }),
  },
  {
    name: "TLS (node backend)",
    server: (config) => ({
      address: "127.0.0.1:0",
      config: { ...config, transport: { ...config.transport, kind: "tls", tlsBackend: "node" } },
      tls: { cert: cert.certPem, key: cert.keyPem },
    }),
    client: (server, config) => ({
      address: `localhost:${portOf(server.addr)}`,
      config: { ...config, transport: { ...config.transport, kind: "tls", tlsBackend: "node" } },
      tls: { caCerts: [cert.certPem] },
    }),
    raw: (server) =>
      new TlsTransport({ backend: "node", client: { caCerts: [cert.certPem] } })
        .connect(`localhost:${portOf(server.addr)}`),
  },
  {
    name: "mutual TLS (node backend)",
    server: (config) => ({
      address: "127.0.0.1:0",
      config: { ...config, transport: { ...config.transport, kind: "tls" } },
      tls: {
        cert: caServer.certPem,
        key: caServer.keyPem,
        clientAuth: "require",
        clientCaCerts: [ca.certPem],
      },
    }),
    client: (server, config) => ({
      address: `localhost:${portOf(server.addr)}`,
      config: { ...config, transport: { ...config.transport, kind: "tls" } },
      tls: mtlsClientOptions,
    }),
    raw: (server) =>
      new TlsTransport({ client: mtlsClientOptions }).connect(
        `localhost:${portOf(server.addr)}`,
      ),
  },
];

for (const fx of fixtures) {
  Deno.test(`${fx.name}: request/reply in every security mode`, async (t) => {
    const serverKey = generateKeyPair();
    const clientKey = generateKeyPair();
    const psk = crypto.getRandomValues(new Uint8Array(32));
    const modes: [
      string,
      ServeOptions["security"],
      ConnectOptions["security"],
      NetworkConfigInput,
    ][] = [
      ["NK", { staticKey: serverKey }, { serverKeys: [serverKey.publicKey] }, {}],
      ["XX unpinned", { staticKey: serverKey }, {}, {}],
      [
        "XX mutual",
        { staticKey: serverKey, authorize: (k) => k.every((b, i) => b === clientKey.publicKey[i]) },
        { staticKey: clientKey, serverKeys: [serverKey.publicKey, generateKeyPair().publicKey] },
        {},
      ],
      ["IK", { staticKey: serverKey }, {
        pattern: "IK",
        staticKey: clientKey,
        serverKeys: [serverKey.publicKey],
      }, {}],
      ["XXpsk3", { staticKey: serverKey, psk }, { pattern: "XXpsk3", psk }, {}],
      ["NN", { accept: ["NN"] }, { pattern: "NN" }, {}],
      ["plaintext", {}, {}, { transport: { encryptionEnabled: false } }],
    ];
    for (const [name, serverSecurity, clientSecurity, config] of modes) {
      await t.step(name, async () => {
        await using server = await serve(
          { ...fx.server(config), ...(serverSecurity ? { security: serverSecurity } : {}) },
          testDispatcher(),
        );
        await using client = await connect({
          ...fx.client(server, config),
          ...(clientSecurity ? { security: clientSecurity } : {}),
          autoReconnect: false,
        });
        assert.equal(sumOf(await client.request(add(40, 2))), 42);
        const big = "z".repeat(200_000);
        assert.deepEqual(await client.request({ type: "echo", text: big }), {
          type: "echo",
          text: big,
        });
      });
    }
  });

  Deno.test(`${fx.name}: bad input closes only its own connection`, async (t) => {
    const key = generateKeyPair();
    // Input rejected as soon as it is read goes to a server whose handshake timeout cannot fire
    // before PROMPT_CLOSE_MS; the stalled frame goes to one with a short handshake timeout. Each
    // server has a good client (without reconnection) that must keep being served.
    const start = async (connectionTimeout: number) => {
      const server = await serve(
        { ...fx.server({ server: { connectionTimeout } }), security: { staticKey: key } },
        testDispatcher(),
      );
      try {
        const good = await connect({
          ...fx.client(server, {}),
          security: { serverKeys: [key.publicKey] },
          autoReconnect: false,
        });
        await waitFor(() => server.connections.size === 1);
        return {
          server,
          good,
          // The server's end of the good client's connection.
          goodSide: [...server.connections][0]!,
          async [Symbol.asyncDispose]() {
            await good[Symbol.asyncDispose]();
            await server[Symbol.asyncDispose]();
          },
        };
      } catch (error) {
        await server.shutdown();
        throw error;
      }
    };
    await using patient = await start(PATIENT_HANDSHAKE_MS);
    await using strict = await start(SHORT_HANDSHAKE_MS);
    const attacks: [string, Uint8Array, typeof patient, number][] = [
      ["garbage", new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"), patient, PROMPT_CLOSE_MS],
      [
        "4 GiB header",
        new Uint8Array([0x4e, 0x50, 0x52, 0x4f, 2, 0xff, 0xff, 0xff, 0xff]),
        patient,
        PROMPT_CLOSE_MS,
      ],
      [
        "truncated frame (closed by the handshake timeout)",
        encodePacket({ version: 2, payload: new Uint8Array(64) }).subarray(0, 30),
        strict,
        STALLED_CLOSE_MS,
      ],
    ];
    let n = 0;
    for (const [name, bytes, target, withinMs] of attacks) {
      await t.step(name, async () => {
        const conn = await fx.raw(target.server);
        await writeAll(conn, bytes);
        // Fails unless the SERVER closes it within `withinMs`.
        await readUntilClosed(conn, withinMs);
        conn.close();
        n++;
        assert.equal(sumOf(await target.good.request(add(n, 2))), n + 2);
      });
    }
    // The good clients were never reconnected: their server-side connections are the ones from
    // before the attacks, still open, and the only ones.
    for (const { server, goodSide } of [patient, strict]) {
      await waitFor(() => server.handshaking === 0);
      assert.deepEqual([...server.connections], [goodSide]);
      assert.equal(goodSide.isClosed, false);
    }
  });
}

Deno.test({
  name: "clean up the socket directory",
  fn: async () => {
    await Deno.remove(dir, { recursive: true });
  },
});
