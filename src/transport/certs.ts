/**
 * Self-signed X.509 certificates for the TLS transport, made with `@peculiar/x509` on WebCrypto.
 *
 * `@peculiar/x509` is loaded on first use, not when this module is imported: it installs the
 * global `reflect-metadata` polyfill (`Reflect.getMetadata`), which an application importing the
 * package root must not get as a side effect.
 *
 * @module
 */

import type * as X509 from "@peculiar/x509";
import { isIP } from "node:net";

let loading: Promise<typeof X509> | undefined;

/** Loads `@peculiar/x509` once, on WebCrypto (a failed load is retried on the next call). */
function loadX509(): Promise<typeof X509> {
  loading ??= import("@peculiar/x509").then(
    (module) => {
      module.cryptoProvider.set(crypto);
      return module;
    },
    (error: unknown) => {
      loading = undefined;
      throw error;
    },
  );
  return loading;
}

/** Options of {@linkcode generateSelfSignedCert}. */
export interface SelfSignedCertOptions {
  /** The subject common name, 1 to 64 characters. */
  commonName: string;
  /**
   * Subject alternative names: DNS names (`"localhost"`, `"*.example.com"`) and IP addresses
   * (`"127.0.0.1"`, `"::1"`), detected automatically. TLS clients check these, not the common
   * name.
   *
   * @default {[commonName]}
   */
  altNames?: readonly string[];
  /**
   * Validity in days, 1 to 3650, counted from now (the certificate is valid from one minute
   * ago, to absorb clock skew).
   *
   * @default {365}
   */
  days?: number;
}

/** A generated certificate and its private key. */
export interface SelfSignedCert {
  /** The certificate, PEM (`-----BEGIN CERTIFICATE-----`). */
  certPem: string;
  /** The ECDSA P-256 private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). Keep it secret. */
  keyPem: string;
  /**
   * SHA-256 of the certificate's DER encoding, as upper-case hex pairs separated by colons
   * (`"AB:CD:..."`, 95 characters): the format of `openssl x509 -fingerprint -sha256` and of
   * Node's `fingerprint256`.
   */
  fingerprint: string;
}

const DNS_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

function isDnsName(name: string): boolean {
  if (name.length > 253) return false;
  const labels = (name.startsWith("*.") ? name.slice(2) : name).split(".");
  return labels.every((label) => DNS_LABEL.test(label));
}

/**
 * Returns an IP literal in the form the SAN encoder takes (an IPv6 address with an embedded
 * IPv4 tail, `"::ffff:1.2.3.4"`, is rewritten to hex groups), or `undefined` for a non-IP.
 */
function normalizeIp(name: string): string | undefined {
  const version = isIP(name);
  if (version === 0) return undefined;
  if (version === 4) return name;
  if (name.includes("%")) {
    throw new TypeError(
      `Alternative name "${name}" has a zone index, which a certificate cannot hold`,
    );
  }
  const lastColon = name.lastIndexOf(":");
  const tail = name.slice(lastColon + 1);
  if (!tail.includes(".")) return name;
  const [a, b, c, d] = tail.split(".").map(Number) as [number, number, number, number];
  return `${name.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${
    ((c << 8) | d).toString(16)
  }`;
}

function checkOptions(options: SelfSignedCertOptions): Required<SelfSignedCertOptions> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Options must be an object, got "${options}"`);
  }
  const { commonName } = options;
  if (typeof commonName !== "string") {
    throw new TypeError(`commonName must be a string, got "${typeof commonName}"`);
  }
  if (commonName.length < 1 || commonName.length > 64) {
    throw new RangeError(
      `commonName length "${commonName.length}" is outside the range 1 to 64`,
    );
  }
  const altNames = options.altNames ?? [commonName];
  if (!Array.isArray(altNames)) throw new TypeError(`altNames must be an array of strings`);
  if (altNames.length < 1 || altNames.length > 100) {
    throw new RangeError(`altNames count "${altNames.length}" is outside the range 1 to 100`);
  }
  for (const name of altNames) {
    if (typeof name !== "string" || (normalizeIp(name) === undefined && !isDnsName(name))) {
      throw new TypeError(`Alternative name "${name}" is neither a DNS name nor an IP address`);
    }
  }
  const days = options.days ?? 365;
  if (typeof days !== "number" || !Number.isInteger(days)) {
    throw new TypeError(`days must be an integer, got "${days}"`);
  }
  if (days < 1 || days > 3650) {
    throw new RangeError(`days "${days}" is outside the range 1 to 3650`);
  }
  return { commonName, altNames, days };
}

/**
 * Formats a SHA-256 digest as upper-case colon-separated hex.
 *
 * @param digest The 32-byte digest.
 * @returns `"AB:CD:..."`.
 */
function colonHex(digest: Uint8Array): string {
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

/**
 * Computes the SHA-256 fingerprint of a PEM certificate, in the format of
 * {@linkcode SelfSignedCert.fingerprint}.
 *
 * @example Fingerprint a generated certificate
 * ```ts
 * import {
 *   certificateFingerprint,
 *   generateSelfSignedCert,
 * } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const { certPem, fingerprint } = await generateSelfSignedCert({ commonName: "localhost" });
 * assert.equal(await certificateFingerprint(certPem), fingerprint);
 * ```
 *
 * @param certPem The certificate, PEM.
 * @returns The fingerprint.
 * @throws {TypeError} When `certPem` is not a PEM certificate.
 */
export async function certificateFingerprint(certPem: string): Promise<string> {
  if (typeof certPem !== "string" || !certPem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new TypeError(`certPem must be a PEM certificate`);
  }
  const x509 = await loadX509();
  let cert: X509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (error) {
    throw new TypeError(`certPem is not a valid certificate`, { cause: error });
  }
  return colonHex(new Uint8Array(await crypto.subtle.digest("SHA-256", cert.rawData)));
}

/**
 * Generates a self-signed ECDSA P-256 leaf certificate for the TLS transport: basic constraints
 * `CA:FALSE` (critical, so clients accept it as a pinned trust anchor through `caCerts`), key
 * usage `digitalSignature`, extended key usage `serverAuth` and `clientAuth`, the given subject
 * alternative names, a random 128-bit serial number.
 *
 * @example Generate a certificate for localhost
 * ```ts
 * import { generateSelfSignedCert } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const cert = await generateSelfSignedCert({
 *   commonName: "npro-node-1",
 *   altNames: ["localhost", "127.0.0.1", "::1"],
 *   days: 30,
 * });
 * assert.match(cert.certPem, /^-----BEGIN CERTIFICATE-----/);
 * assert.match(cert.keyPem, /^-----BEGIN PRIVATE KEY-----/);
 * assert.equal(cert.fingerprint.length, 95);
 * ```
 *
 * @param options The subject name, alternative names and validity.
 * @returns The certificate and key, PEM, and the certificate's SHA-256 fingerprint.
 * @throws {TypeError} When a name is malformed.
 * @throws {RangeError} When a length, count or the validity is out of range.
 */
export async function generateSelfSignedCert(
  options: SelfSignedCertOptions,
): Promise<SelfSignedCert> {
  const { commonName, altNames, days } = checkOptions(options);
  const x509 = await loadX509();
  return await selfSigned(x509, commonName, days, leafExtensions(x509, altNames, "both"));
}

/** A new ECDSA P-256 key and a certificate for it, signed by itself, valid from a minute ago. */
async function selfSigned(
  x509: typeof X509,
  commonName: string,
  days: number,
  extensions: X509.Extension[],
): Promise<SelfSignedCert> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [commonName] }],
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + days * 86_400_000),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      ...extensions,
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return await result(x509, cert, keys.privateKey);
}

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** A random positive 128-bit serial number, hex. */
function randomSerial(): string {
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0]! & 0x7f) | 0x01; // Positive and exactly 16 bytes long.
  return Array.from(serial, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** What an issued certificate may be used for: TLS servers, TLS clients, or both. */
export type CertificateUsage = "server" | "client" | "both";

function leafExtensions(
  x509: typeof X509,
  altNames: readonly string[],
  usage: CertificateUsage,
): X509.Extension[] {
  const purposes = usage === "server"
    ? [x509.ExtendedKeyUsage.serverAuth]
    : usage === "client"
    ? [x509.ExtendedKeyUsage.clientAuth]
    : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth];
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(purposes),
    new x509.SubjectAlternativeNameExtension(
      altNames.map((name): X509.JsonGeneralName => {
        const ip = normalizeIp(name);
        return ip === undefined ? { type: "dns", value: name } : { type: "ip", value: ip };
      }),
    ),
  ];
}

async function result(
  x509: typeof X509,
  cert: X509.X509Certificate,
  privateKey: CryptoKey,
): Promise<SelfSignedCert> {
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", privateKey);
  return {
    certPem: cert.toString("pem"),
    keyPem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY"),
    fingerprint: colonHex(new Uint8Array(await crypto.subtle.digest("SHA-256", cert.rawData))),
  };
}

/** Options of {@linkcode generateCertificateAuthority}. */
export interface CertificateAuthorityOptions {
  /** The CA's common name, 1 to 64 characters (`"npro test CA"`). */
  commonName: string;
  /**
   * Validity in days, 1 to 3650.
   *
   * @default {3650}
   */
  days?: number;
}

/**
 * Generates a small certificate authority for mutual TLS: a self-signed ECDSA P-256 certificate
 * with basic constraints `CA:TRUE, pathlen:0` (critical: it signs leaf certificates only) and
 * key usage `keyCertSign, cRLSign`. Sign server and client certificates with
 * {@linkcode issueCertificate}; give the CA certificate to the peers that verify them
 * (`client.caCerts`, `server.clientCaCerts`). The key is a secret: keep it offline.
 *
 * @example A CA, a server certificate and a client certificate
 * ```ts
 * import {
 *   generateCertificateAuthority,
 *   issueCertificate,
 * } from "@npro/network-protocol/transport";
 * import { X509Certificate } from "node:crypto";
 * import assert from "node:assert/strict";
 *
 * const ca = await generateCertificateAuthority({ commonName: "npro test CA" });
 * const server = await issueCertificate({
 *   issuer: ca,
 *   commonName: "localhost",
 *   altNames: ["localhost", "127.0.0.1"],
 *   usage: "server",
 * });
 * const client = await issueCertificate({ issuer: ca, commonName: "client-1", usage: "client" });
 * const caCert = new X509Certificate(ca.certPem);
 * assert.ok(new X509Certificate(server.certPem).verify(caCert.publicKey));
 * assert.ok(new X509Certificate(client.certPem).checkIssued(caCert));
 * ```
 *
 * @param options The name and validity.
 * @returns The CA certificate and key, PEM, and the certificate's fingerprint.
 * @throws {TypeError} When the name is not a string.
 * @throws {RangeError} When a length or the validity is out of range.
 */
export async function generateCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<SelfSignedCert> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Options must be an object, got "${options}"`);
  }
  const { commonName, days } = checkOptions({
    commonName: options.commonName,
    altNames: ["ca.invalid"],
    days: options.days ?? 3650,
  });
  const x509 = await loadX509();
  return await selfSigned(x509, commonName, days, [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
  ]);
}

/** Options of {@linkcode issueCertificate}. */
export interface IssueCertificateOptions extends SelfSignedCertOptions {
  /** The CA that signs: its certificate and its ECDSA P-256 PKCS#8 key, PEM. */
  issuer: { readonly certPem: string; readonly keyPem: string };
  /**
   * Extended key usage: `"server"` (serverAuth), `"client"` (clientAuth) or `"both"`.
   *
   * @default {"both"}
   */
  usage?: CertificateUsage;
  /**
   * Start of validity, instead of one minute ago. With `notAfter`, for certificates that are
   * not valid yet or no longer (tests of expiry), or for a planned rotation.
   */
  notBefore?: Date;
  /** End of validity, instead of `days` from now. */
  notAfter?: Date;
}

/**
 * Issues a leaf certificate signed by a CA made with {@linkcode generateCertificateAuthority}:
 * a new ECDSA P-256 key, `CA:FALSE`, key usage `digitalSignature`, the extended key usage of
 * `usage`, the subject alternative names (default `[commonName]`), the authority key
 * identifier of the CA.
 *
 * @example A client certificate for mutual TLS
 * ```ts
 * import {
 *   generateCertificateAuthority,
 *   issueCertificate,
 * } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const ca = await generateCertificateAuthority({ commonName: "npro test CA" });
 * const client = await issueCertificate({ issuer: ca, commonName: "client-1", usage: "client" });
 * assert.match(client.certPem, /^-----BEGIN CERTIFICATE-----/);
 * assert.equal(client.fingerprint.length, 95);
 * ```
 *
 * @param options The CA, the subject, its names, usage and validity.
 * @returns The certificate and its new key, PEM, and the certificate's fingerprint.
 * @throws {TypeError} When a name is malformed or the issuer is not a P-256 CA made this way.
 * @throws {RangeError} When a length, count or the validity is out of range.
 */
export async function issueCertificate(
  options: IssueCertificateOptions,
): Promise<SelfSignedCert> {
  const { commonName, altNames, days } = checkOptions(options);
  const usage = options.usage ?? "both";
  if (usage !== "server" && usage !== "client" && usage !== "both") {
    throw new TypeError(`usage must be "server", "client" or "both", got "${usage}"`);
  }
  const issuer = options.issuer;
  if (
    issuer === null || typeof issuer !== "object" || typeof issuer.certPem !== "string" ||
    typeof issuer.keyPem !== "string"
  ) {
    throw new TypeError(`issuer must be { certPem, keyPem }`);
  }
  const x509 = await loadX509();
  let caCert: X509.X509Certificate;
  let caKey: CryptoKey;
  try {
    caCert = new x509.X509Certificate(issuer.certPem);
    caKey = await crypto.subtle.importKey(
      "pkcs8",
      x509.PemConverter.decodeFirst(issuer.keyPem),
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["sign"],
    );
  } catch (error) {
    throw new TypeError(
      `issuer must hold a certificate and an ECDSA P-256 PKCS#8 key, PEM (as made by ` +
        `generateCertificateAuthority)`,
      { cause: error },
    );
  }
  const now = Date.now();
  const notBefore = options.notBefore ?? new Date(now - 60_000);
  const notAfter = options.notAfter ?? new Date(now + days * 86_400_000);
  for (const [name, value] of [["notBefore", notBefore], ["notAfter", notAfter]] as const) {
    if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
      throw new TypeError(`${name} must be a valid Date`);
    }
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new RangeError(
      `notAfter "${notAfter.toISOString()}" is not after notBefore "${notBefore.toISOString()}"`,
    );
  }
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [commonName] }],
    issuer: caCert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      ...leafExtensions(x509, altNames, usage),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return await result(x509, cert, keys.privateKey);
}
