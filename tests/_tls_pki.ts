/**
 * Test PKI for the TLS tests: a small CA with server and client certificates, another CA, an
 * expired client certificate and a self-signed one, all written to a temporary directory for
 * OpenSSL; and the helpers that run `openssl s_client` / `s_server` as the independent peer.
 */
import assert from "node:assert/strict";
import {
  generateCertificateAuthority,
  generateSelfSignedCert,
  issueCertificate,
  type SelfSignedCert,
} from "../src/transport/certs.ts";

/** A certificate with its key, in memory and on disk. */
export interface PkiEntry extends SelfSignedCert {
  certPath: string;
  keyPath: string;
}

/** Everything the TLS tests need. */
export interface Pki {
  dir: string;
  ca: PkiEntry;
  server: PkiEntry;
  client: PkiEntry;
  otherCa: PkiEntry;
  otherClient: PkiEntry;
  expiredClient: PkiEntry;
  selfSignedClient: PkiEntry;
}

async function save(dir: string, name: string, cert: SelfSignedCert): Promise<PkiEntry> {
  const certPath = `${dir}/${name}.pem`;
  const keyPath = `${dir}/${name}.key`;
  await Deno.writeTextFile(certPath, cert.certPem);
  await Deno.writeTextFile(keyPath, cert.keyPem, { mode: 0o600 });
  return { ...cert, certPath, keyPath };
}

/** Makes the PKI in a new temporary directory (the caller removes it). */
export async function makePki(): Promise<Pki> {
  const dir = await Deno.makeTempDir({ prefix: "npro-tls-" });
  const ca = await generateCertificateAuthority({ commonName: "npro test CA", days: 2 });
  const otherCa = await generateCertificateAuthority({ commonName: "npro other CA", days: 2 });
  const day = 86_400_000;
  const [server, client, otherClient, expiredClient, selfSignedClient] = await Promise.all([
    issueCertificate({
      issuer: ca,
      commonName: "localhost",
      altNames: ["localhost", "127.0.0.1"],
      usage: "server",
      days: 1,
    }),
    issueCertificate({ issuer: ca, commonName: "client-1", usage: "client", days: 1 }),
    issueCertificate({ issuer: otherCa, commonName: "client-other", usage: "client", days: 1 }),
    issueCertificate({
      issuer: ca,
      commonName: "client-expired",
      usage: "client",
      notBefore: new Date(Date.now() - 10 * day),
      notAfter: new Date(Date.now() - day),
    }),
    generateSelfSignedCert({ commonName: "client-self", days: 1 }),
  ]);
  return {
    dir,
    ca: await save(dir, "ca", ca),
    server: await save(dir, "server", server),
    client: await save(dir, "client", client),
    otherCa: await save(dir, "other-ca", otherCa),
    otherClient: await save(dir, "other-client", otherClient),
    expiredClient: await save(dir, "expired-client", expiredClient),
    selfSignedClient: await save(dir, "self-client", selfSignedClient),
  };
}

/**
 * Fails with instructions when the `openssl` command-line tool is missing: these tests need an
 * independent TLS peer, and are never skipped silently.
 */
export async function requireOpenssl(): Promise<string> {
  try {
    const { success, stdout } = await new Deno.Command("openssl", {
      args: ["version"],
      stdout: "piped",
      stderr: "null",
    }).output();
    assert.ok(success, "openssl version failed");
    return new TextDecoder().decode(stdout).trim();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      assert.fail(
        "The openssl command-line tool is not installed; these tests use it as the independent " +
          "TLS peer. Install it (apt-get install -y openssl; .ci/run does this when it is missing).",
      );
    }
    throw error;
  }
}

/** The result of an OpenSSL process run to its end. */
export interface OpensslRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `openssl <args>` with `input` on stdin (then keeps stdin open for `holdMs` before closing
 * it), killing the process by its PID after `timeoutMs`.
 */
export async function runOpenssl(
  args: string[],
  input: string,
  options: { timeoutMs?: number; holdMs?: number } = {},
): Promise<OpensslRun> {
  const child = new Deno.Command("openssl", {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }, options.timeoutMs ?? 8000);
  try {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input)).catch(() => {});
    if (options.holdMs !== undefined) await new Promise((r) => setTimeout(r, options.holdMs));
    await writer.close().catch(() => {});
    const { code, stdout, stderr } = await child.output();
    const decoder = new TextDecoder();
    return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** A running `openssl s_server`, killed by its PID when disposed. */
export interface OpensslServer extends AsyncDisposable {
  port: number;
  /** Everything it printed so far (what clients sent arrives here). */
  output(): string;
}

/** A free loopback port (listen on port 0, then close). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Starts `openssl s_server` on a free loopback port with the certificate and key, ALPN npro/2,
 * and waits until it accepts connections.
 */
export async function startOpensslServer(
  certPath: string,
  keyPath: string,
): Promise<OpensslServer> {
  const port = freePort();
  const child = new Deno.Command("openssl", {
    args: [
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-cert",
      certPath,
      "-key",
      keyPath,
      "-alpn",
      "npro/2",
      "-quiet",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const pump = (async () => {
    for await (const chunk of child.stdout) text += decoder.decode(chunk);
  })();
  const pumpErr = (async () => {
    for await (const chunk of child.stderr) text += decoder.decode(chunk);
  })();
  const stop = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.stdin.close().catch(() => {});
    await Promise.allSettled([child.status, pump, pumpErr]);
  };
  // -quiet prints nothing when ready: poll until the port accepts.
  const deadline = performance.now() + 5000;
  for (;;) {
    try {
      const probe = await Deno.connect({ hostname: "127.0.0.1", port });
      probe.close();
      break;
    } catch {
      if (performance.now() > deadline) {
        await stop();
        assert.fail(`openssl s_server did not start: ${text}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return { port, output: () => text, [Symbol.asyncDispose]: stop };
}

/** The SHA-256 fingerprint of a certificate file as OpenSSL prints it (`AB:CD:...`). */
export async function opensslFingerprint(certPath: string): Promise<string> {
  const { stdout } = await runOpenssl(
    ["x509", "-in", certPath, "-noout", "-fingerprint", "-sha256"],
    "",
  );
  const match = /Fingerprint=([0-9A-F:]+)/i.exec(stdout);
  assert.ok(match, stdout);
  return match[1]!.toUpperCase();
}

/** The SPKI pin of a certificate file computed by OpenSSL alone (base64 SHA-256 of the SPKI). */
export async function opensslSpkiPin(certPath: string): Promise<string> {
  const { stdout } = await new Deno.Command("sh", {
    args: [
      "-c",
      `openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der | ` +
      `openssl dgst -sha256 -binary | openssl base64`,
      "sh",
      certPath,
    ],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(stdout).trim();
}

/**
 * Server-side TCP sockets of `port` as the kernel lists them (`/proc/net/tcp`): their states, so
 * that a test can show a connection's socket is gone (not ESTABLISHED) after the server closed it.
 */
export async function serverSocketStates(port: number): Promise<string[]> {
  const names: Record<string, string> = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
  };
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const states: string[] = [];
  for (const line of (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4) continue;
    if (fields[1]!.endsWith(`:${hexPort}`)) states.push(names[fields[3]!] ?? fields[3]!);
  }
  return states;
}
