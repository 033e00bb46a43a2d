import assert from "node:assert/strict";
import fc from "fast-check";
import * as x509 from "@peculiar/x509";
import { certificateFingerprint, generateSelfSignedCert } from "../src/transport/certs.ts";

x509.cryptoProvider.set(crypto);

function sanEntries(cert: x509.X509Certificate): Array<{ type: string; value: string }> {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  assert.ok(san, "no subjectAltName extension");
  return san.names.items.map((item) => ({ type: item.type, value: item.value }));
}

Deno.test("generateSelfSignedCert produces a CA:FALSE ECDSA P-256 leaf with the asked fields", async () => {
  const before = Date.now();
  const generated = await generateSelfSignedCert({
    commonName: "npro-node-1",
    altNames: ["localhost", "127.0.0.1", "::1", "*.example.com", "::ffff:192.0.2.1"],
    days: 30,
  });
  const cert = new x509.X509Certificate(generated.certPem);

  assert.equal(cert.subject, "CN=npro-node-1");
  assert.equal(cert.issuer, "CN=npro-node-1");
  assert.ok(await cert.verify({ signatureOnly: true }), "self-signature does not verify");
  assert.equal(cert.signatureAlgorithm.name, "ECDSA");
  assert.equal((cert.publicKey.algorithm as EcKeyAlgorithm).namedCurve, "P-256");

  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  assert.ok(basic);
  assert.equal(basic.ca, false);
  assert.equal(basic.critical, true);

  const usage = cert.getExtension(x509.KeyUsagesExtension);
  assert.ok(usage);
  assert.equal(usage.usages, x509.KeyUsageFlags.digitalSignature);

  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  assert.ok(eku);
  assert.deepEqual(
    [...eku.usages].sort(),
    [
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ].sort(),
  );

  assert.deepEqual(sanEntries(cert), [
    { type: "dns", value: "localhost" },
    { type: "ip", value: "127.0.0.1" },
    { type: "ip", value: "::1" },
    { type: "dns", value: "*.example.com" },
    { type: "ip", value: "::ffff:c000:201" }, // ::ffff:192.0.2.1
  ]);

  // Valid from one minute in the past (to the second), for 30 days.
  const notBefore = cert.notBefore.getTime();
  assert.ok(notBefore <= before - 59_000 && notBefore >= before - 62_000, `${cert.notBefore}`);
  const days = (cert.notAfter.getTime() - before) / 86_400_000;
  assert.ok(days > 29.99 && days < 30.01, `validity ${days} days`);

  // A positive, 16-byte random serial number.
  assert.match(cert.serialNumber, /^[0-7][0-9a-f]{31}$/i);

  // The fingerprint is SHA-256 over the DER, colon-separated upper-case hex.
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", cert.rawData));
  const expected = Array.from(digest, (b) => b.toString(16).padStart(2, "0").toUpperCase())
    .join(":");
  assert.equal(generated.fingerprint, expected);
  assert.match(generated.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  assert.equal(await certificateFingerprint(generated.certPem), expected);

  // The key is the certificate's key: a signature made with it verifies with the certificate.
  const keyDer = x509.PemConverter.decodeFirst(generated.keyPem);
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const privateKey = await crypto.subtle.importKey("pkcs8", keyDer, algorithm, false, ["sign"]);
  const data = new TextEncoder().encode("npro");
  const signature = await crypto.subtle.sign(algorithm, privateKey, data);
  const publicKey = await cert.publicKey.export(algorithm, ["verify"]);
  assert.ok(await crypto.subtle.verify(algorithm, publicKey, signature, data));
});

Deno.test("generateSelfSignedCert defaults: altNames = [commonName], 365 days, fresh serials", async () => {
  const a = await generateSelfSignedCert({ commonName: "localhost" });
  const b = await generateSelfSignedCert({ commonName: "localhost" });
  const certA = new x509.X509Certificate(a.certPem);
  const certB = new x509.X509Certificate(b.certPem);
  assert.deepEqual(sanEntries(certA), [{ type: "dns", value: "localhost" }]);
  const days = (certA.notAfter.getTime() - Date.now()) / 86_400_000;
  assert.ok(days > 364.9 && days < 365.1, `validity ${days} days`);
  assert.notEqual(certA.serialNumber, certB.serialNumber);
  assert.notEqual(a.fingerprint, b.fingerprint);
  assert.notEqual(a.keyPem, b.keyPem);
});

Deno.test("generateSelfSignedCert keeps any valid DNS name or IP as a SAN of the right type", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(
          fc.domain().map((value) => ({ type: "dns", value })),
          fc.ipV4().map((value) => ({ type: "ip", value })),
          fc.ipV6().map((value) => ({ type: "ip", value })),
        ),
        { minLength: 1, maxLength: 4 },
      ),
      async (names) => {
        const { certPem } = await generateSelfSignedCert({
          commonName: "prop",
          altNames: names.map((name) => name.value),
        });
        const entries = sanEntries(new x509.X509Certificate(certPem));
        assert.deepEqual(entries.map((entry) => entry.type), names.map((name) => name.type));
      },
    ),
    { numRuns: 30 },
  );
});

Deno.test("generateSelfSignedCert and certificateFingerprint validate their arguments", async () => {
  const bad: Array<[unknown, ErrorConstructor]> = [
    [{ commonName: "" }, RangeError],
    [{ commonName: "x".repeat(65) }, RangeError],
    [{ commonName: 42 }, TypeError],
    [{}, TypeError],
    [null, TypeError],
    [{ commonName: "a", altNames: [] }, RangeError],
    [{ commonName: "a", altNames: "localhost" }, TypeError],
    [{ commonName: "a", altNames: ["bad name"] }, TypeError],
    [{ commonName: "a", altNames: ["-bad.example"] }, TypeError],
    [{ commonName: "a", altNames: [42] }, TypeError],
    [{ commonName: "a", altNames: ["fe80::1%eth0"] }, TypeError],
    [{ commonName: "a", altNames: Array(101).fill("a") }, RangeError],
    [{ commonName: "a", days: 0 }, RangeError],
    [{ commonName: "a", days: 3651 }, RangeError],
    [{ commonName: "a", days: 1.5 }, TypeError],
    [{ commonName: "a", days: "7" }, TypeError],
  ];
  for (const [options, type] of bad) {
    await assert.rejects(
      generateSelfSignedCert(options as Parameters<typeof generateSelfSignedCert>[0]),
      type,
      JSON.stringify(options),
    );
  }
  await assert.rejects(certificateFingerprint("not pem"), TypeError);
  await assert.rejects(
    certificateFingerprint("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    TypeError,
  );
});
