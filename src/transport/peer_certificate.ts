/**
 * The peer certificate of a TLS connection as the library exposes it
 * ({@linkcode PeerCertificateInfo}), read from its DER with `node:crypto`'s `X509Certificate`,
 * and the two kinds of pins: the SHA-256 fingerprint of the whole certificate and the SHA-256 of
 * its SubjectPublicKeyInfo (SPKI).
 *
 * @module
 */

import { createHash, X509Certificate } from "node:crypto";

/**
 * A TLS peer's certificate: who it names, who signed it, when it is valid, and the two hashes a
 * pin can name. `Connection.peerCertificate` and the `authorize` callback of the TLS server
 * options receive one.
 */
export interface PeerCertificateInfo {
  /** The subject's attributes (`{ CN: "client-1", O: "Example" }`); the last value of a repeated one. */
  readonly subject: Readonly<Record<string, string>>;
  /** The issuer's attributes, like `subject`. */
  readonly issuer: Readonly<Record<string, string>>;
  /** Subject alternative names as OpenSSL prints them: `"DNS:localhost"`, `"IP Address:127.0.0.1"`. */
  readonly subjectAltNames: readonly string[];
  /** The serial number, upper-case hex. */
  readonly serialNumber: string;
  /** Start of validity. */
  readonly validFrom: Date;
  /** End of validity. */
  readonly validTo: Date;
  /**
   * SHA-256 over the certificate's DER, upper-case hex pairs joined by colons: the format of
   * `openssl x509 -noout -fingerprint -sha256` and of Node's `fingerprint256`.
   */
  readonly fingerprint256: string;
  /**
   * SHA-256 over the certificate's SubjectPublicKeyInfo, standard base64 (44 characters): the
   * value of `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst
   * -sha256 -binary | base64`. It stays the same when a certificate is re-issued for the same
   * key.
   */
  readonly spkiSha256: string;
  /** The certificate's DER encoding. */
  readonly raw: Uint8Array;
  /** Whether the TLS library verified the chain to a configured CA. */
  readonly authorized: boolean;
  /** Why the chain did not verify (an OpenSSL-style code such as `"CERT_HAS_EXPIRED"`). */
  readonly authorizationError?: string;
}

function parseNames(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return Object.freeze(out);
}

/**
 * Describes a certificate given as DER.
 *
 * @example Describe a generated certificate
 * ```ts
 * import { describeCertificate } from "./peer_certificate.ts";
 * import { generateSelfSignedCert } from "./certs.ts";
 * import { X509Certificate } from "node:crypto";
 * import assert from "node:assert/strict";
 *
 * const { certPem, fingerprint } = await generateSelfSignedCert({ commonName: "localhost" });
 * const info = describeCertificate(new Uint8Array(new X509Certificate(certPem).raw), true);
 * assert.equal(info.fingerprint256, fingerprint);
 * assert.equal(info.subject.CN, "localhost");
 * assert.deepEqual(info.subjectAltNames, ["DNS:localhost"]);
 * ```
 *
 * @param der The certificate's DER encoding.
 * @param authorized Whether the chain verified.
 * @param authorizationError Why it did not.
 * @returns The description.
 * @throws {TypeError} When `der` is not a certificate.
 */
export function describeCertificate(
  der: Uint8Array,
  authorized: boolean,
  authorizationError?: string,
): PeerCertificateInfo {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (error) {
    throw new TypeError(`Peer certificate is not a valid X.509 certificate`, { cause: error });
  }
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  const info: PeerCertificateInfo = {
    subject: parseNames(cert.subject),
    issuer: parseNames(cert.issuer),
    subjectAltNames: Object.freeze(
      (cert.subjectAltName ?? "").split(", ").filter((name) => name.length > 0),
    ),
    serialNumber: cert.serialNumber.toUpperCase(),
    validFrom: new Date(cert.validFrom),
    validTo: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
    spkiSha256: createHash("sha256").update(spki).digest("base64"),
    raw: new Uint8Array(der),
    authorized,
    ...(authorizationError === undefined ? {} : { authorizationError }),
  };
  return Object.freeze(info);
}

/**
 * Normalises a certificate fingerprint pin: SHA-256 as 32 hex pairs, with or without colons, in
 * any case, becomes upper-case hex joined by colons.
 *
 * @example Accept openssl's and a bare hex form
 * ```ts
 * import { normalizeFingerprint } from "./peer_certificate.ts";
 * import assert from "node:assert/strict";
 *
 * const hex = "ab".repeat(32);
 * assert.equal(normalizeFingerprint(hex), Array(32).fill("AB").join(":"));
 * ```
 *
 * @param value The pin.
 * @param label Where it came from, for the error message.
 * @returns The canonical form.
 * @throws {TypeError} When it is not a SHA-256 fingerprint.
 */
export function normalizeFingerprint(value: string, label = "fingerprint"): string {
  const hex = typeof value === "string" ? value.replace(/:/g, "") : "";
  if (
    !/^[0-9A-Fa-f]{64}$/.test(hex) ||
    (value.includes(":") && !/^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$/.test(value))
  ) {
    throw new TypeError(
      `${label} "${value}" is not a SHA-256 fingerprint (32 hex pairs, as "AB:CD:..." or "abcd...")`,
    );
  }
  return hex.toUpperCase().match(/../g)!.join(":");
}

/**
 * Normalises an SPKI pin: the standard base64 of a SHA-256 digest (44 characters), optionally
 * written `sha256/...` or `sha256//...` (curl's `--pinnedpubkey` form), becomes the bare base64.
 *
 * @example Strip the prefix
 * ```ts
 * import { normalizeSpkiPin } from "./peer_certificate.ts";
 * import assert from "node:assert/strict";
 *
 * const pin = "O8i8q0aBwX0jCNMgsFZo+GbzxdU1QIwgXodBOOE4+Ww=";
 * assert.equal(normalizeSpkiPin(`sha256//${pin}`), pin);
 * ```
 *
 * @param value The pin.
 * @param label Where it came from, for the error message.
 * @returns The bare base64.
 * @throws {TypeError} When it is not the base64 of 32 bytes.
 */
export function normalizeSpkiPin(value: string, label = "SPKI pin"): string {
  const bare = typeof value === "string" ? value.replace(/^sha256\/\/?/i, "") : "";
  if (!/^[A-Za-z0-9+/]{43}=$/.test(bare)) {
    throw new TypeError(
      `${label} "${value}" is not an SPKI pin (the base64 of a SHA-256 digest, 44 characters)`,
    );
  }
  return bare;
}

/** The pins of one side, normalised. */
export interface PinSet {
  /** Certificate fingerprints, `"AB:CD:..."`. */
  readonly fingerprints: readonly string[];
  /** SPKI hashes, bare base64. */
  readonly spki: readonly string[];
}

/**
 * Whether a certificate matches one of the pins (any fingerprint or any SPKI hash).
 *
 * @param cert The certificate.
 * @param pins The pins.
 * @returns Whether it is pinned.
 */
export function isPinned(cert: PeerCertificateInfo, pins: PinSet): boolean {
  return pins.fingerprints.includes(cert.fingerprint256) || pins.spki.includes(cert.spkiSha256);
}

/**
 * Says which pin a certificate missed, naming what was received and what was expected:
 * `the server's certificate fingerprint AA:.. is not pinned (expected BB:..)`.
 *
 * @param whose `"the server's"` or `"the client's"`.
 * @param cert The certificate.
 * @param pins The pins it did not match.
 * @returns The sentence (lower case, to follow a prefix).
 */
export function pinMismatch(whose: string, cert: PeerCertificateInfo, pins: PinSet): string {
  const parts: string[] = [];
  if (pins.fingerprints.length > 0) {
    parts.push(
      `${whose} certificate fingerprint ${cert.fingerprint256} is not pinned (expected ${
        pins.fingerprints.join(" or ")
      })`,
    );
  }
  if (pins.spki.length > 0) {
    parts.push(
      `${whose} public key sha256/${cert.spkiSha256} is not pinned (expected ${
        pins.spki.map((pin) => `sha256/${pin}`).join(" or ")
      })`,
    );
  }
  return parts.join(", and ");
}

/**
 * Computes the SPKI pin of a PEM certificate: SHA-256 over its SubjectPublicKeyInfo, standard
 * base64, the value `serverSpkiPins` and `clientSpkiPins` take.
 *
 * @example Pin a certificate's key
 * ```ts
 * import { certificateSpkiPin, generateSelfSignedCert } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const { certPem } = await generateSelfSignedCert({ commonName: "localhost" });
 * assert.equal(certificateSpkiPin(certPem).length, 44);
 * ```
 *
 * @param certPem The certificate, PEM.
 * @returns The pin.
 * @throws {TypeError} When `certPem` is not a PEM certificate.
 */
export function certificateSpkiPin(certPem: string): string {
  if (typeof certPem !== "string" || !certPem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new TypeError(`certPem must be a PEM certificate`);
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (error) {
    throw new TypeError(`certPem is not a valid certificate`, { cause: error });
  }
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}
