/**
 * Operating-system and permission errors get their own codes: `ConnectionRefused`,
 * `AddressInUse` and `PermissionDenied`, with the original error as `cause`.
 */
import assert from "node:assert/strict";
import { isProtocolError } from "../src/errors.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { generateKeyPair } from "../src/secure/keys.ts";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { generateSelfSignedCert } from "../src/transport/certs.ts";
import { TcpTransport } from "../src/transport/tcp.ts";
import { TlsTransport } from "../src/transport/tls.ts";
import { UnixTransport } from "../src/transport/unix.ts";

const posix = Deno.build.os !== "windows";

/** A port on 127.0.0.1 that nothing listens on (just released). */
function closedPort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = probe.addr;
  probe.close();
  return port;
}

Deno.test("OS errors: connect() to a closed port fails with ConnectionRefused", async () => {
  const error = await connect({
    address: `127.0.0.1:${closedPort()}`,
    autoReconnect: false,
  }).then(() => assert.fail("connected"), (e) => e);
  assert.ok(isProtocolError(error, "ConnectionRefused"), String(error));
  assert.ok(error.cause instanceof Deno.errors.ConnectionRefused);
  assert.match(error.message, /refused/);
});

Deno.test({
  name: "OS errors: a Unix socket nobody listens on is ConnectionRefused",
  ignore: !posix,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "npro-os-" });
    try {
      const path = `${dir}/dead.sock`;
      // A socket file without a listener: a process binds it and exits without closing (a
      // closed Deno listener removes its file; an exiting process leaves it behind).
      const child = await new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} }); Deno.exit(0);`,
        ],
        env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
        stdin: "null",
      }).output();
      assert.equal(child.code, 0, new TextDecoder().decode(child.stderr));
      assert.equal((await Deno.lstat(path)).isSocket, true);
      const error = await new UnixTransport().connect(path).then(
        () => assert.fail("connected"),
        (e) => e,
      );
      assert.ok(isProtocolError(error, "ConnectionRefused"), String(error));
      assert.ok(error.cause instanceof Deno.errors.ConnectionRefused);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("OS errors: serve() and TLS listen on a used port fail with AddressInUse", async () => {
  await using first = await new TcpTransport().listen("127.0.0.1:0");
  const address = `127.0.0.1:${(first.addr as Deno.NetAddr).port}`;
  const served = await serve(
    { address, security: { staticKey: generateKeyPair() } },
    registerStandardHandlers(new Dispatcher()),
  ).then(async (server) => {
    await server.shutdown(100);
    assert.fail("served on a used port");
  }, (e) => e);
  assert.ok(isProtocolError(served, "AddressInUse"), String(served));
  assert.ok(served.cause instanceof Deno.errors.AddrInUse);
  assert.match(served.message, /already in use/);

  const { certPem, keyPem } = await generateSelfSignedCert({ commonName: "localhost" });
  const tls = new TlsTransport({ server: { cert: certPem, key: keyPem } });
  const error = await tls.listen(address).then((l) => {
    l.close();
    assert.fail("listened on a used port");
  }, (e) => e);
  assert.ok(isProtocolError(error, "AddressInUse"), String(error));
});

Deno.test({
  name: "OS errors: missing Deno permissions fail with PermissionDenied (listen and connect)",
  ignore: !posix,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "npro-os-" });
    try {
      const script = `${dir}/denied.ts`;
      const tcpModule = new URL("../src/transport/tcp.ts", import.meta.url).href;
      const unixModule = new URL("../src/transport/unix.ts", import.meta.url).href;
      await Deno.writeTextFile(
        script,
        `import { TcpTransport } from ${JSON.stringify(tcpModule)};\n` +
          `import { UnixTransport } from ${JSON.stringify(unixModule)};\n` +
          `const attempts = [\n` +
          `  () => new TcpTransport().listen("127.0.0.1:0"),\n` +
          `  () => new UnixTransport().listen(${JSON.stringify(`${dir}/a.sock`)}),\n` +
          `  () => new UnixTransport().connect(${JSON.stringify(`${dir}/a.sock`)}),\n` +
          `];\n` +
          `for (const attempt of attempts) {\n` +
          `  try { (await attempt()).close(); console.log("allowed"); }\n` +
          `  catch (e) { console.log(e.code, e.cause?.name); }\n` +
          `}\n`,
      );
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", "--no-lock", "--no-config", script],
        env: { NO_COLOR: "1", RUST_BACKTRACE: "0" },
        stdin: "null",
      }).output();
      const lines = new TextDecoder().decode(output.stdout).trim().split("\n");
      assert.deepEqual(
        lines,
        [
          "PermissionDenied NotCapable",
          "PermissionDenied NotCapable",
          "PermissionDenied NotCapable",
        ],
        new TextDecoder().decode(output.stderr),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "OS errors: a Unix socket in a directory the user cannot write is PermissionDenied",
  ignore: !posix,
  fn: async () => {
    // Root bypasses directory permissions, so as root (CI) the attempt runs in a child process
    // with the uid of "nobody" (util-linux's setpriv), where the kernel answers EACCES.
    const dir = await Deno.makeTempDir({ prefix: "npro-os-" });
    try {
      await Deno.chmod(dir, 0o755);
      await Deno.mkdir(`${dir}/locked`, { mode: 0o500 });
      await Deno.chmod(`${dir}/locked`, 0o500);
      const path = `${dir}/locked/npro.sock`;
      if (Deno.uid() !== 0) {
        const error = await new UnixTransport().listen(path).then(
          (l) => {
            l.close();
            assert.fail("listened in a read-only directory");
          },
          (e) => e,
        );
        assert.ok(isProtocolError(error, "PermissionDenied"), String(error));
        assert.ok(error.cause instanceof Deno.errors.PermissionDenied);
        return;
      }
      // The child reads a copy of src/ (the clone itself may sit in a folder "nobody" cannot
      // enter); the transport modules import nothing from npm.
      const copied = await new Deno.Command("cp", {
        args: ["-r", new URL("../src/", import.meta.url).pathname, `${dir}/src`],
      }).output();
      assert.ok(copied.success, new TextDecoder().decode(copied.stderr));
      await new Deno.Command("chmod", { args: ["-R", "a+rX", `${dir}/src`] }).output();
      const unixModule = new URL(`file://${dir}/src/transport/unix.ts`).href;
      const script = `${dir}/attempt.ts`;
      await Deno.writeTextFile(
        script,
        `import { UnixTransport } from ${JSON.stringify(unixModule)};\n` +
          `try { (await new UnixTransport().listen(${JSON.stringify(path)})).close(); ` +
          `console.log("allowed"); } catch (e) { console.log(e.code, e.cause?.name); }\n`,
      );
      await Deno.chmod(script, 0o644);
      await Deno.mkdir(`${dir}/deno_dir`, { mode: 0o777 });
      await Deno.chmod(`${dir}/deno_dir`, 0o777);
      const output = await new Deno.Command("setpriv", {
        args: [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          Deno.execPath(),
          "run",
          "--no-prompt",
          "--no-lock",
          "--no-config",
          `--allow-read=${dir}`,
          `--allow-write=${dir}`,
          script,
        ],
        env: { NO_COLOR: "1", RUST_BACKTRACE: "0", DENO_DIR: `${dir}/deno_dir` },
        stdin: "null",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(
        new TextDecoder().decode(output.stdout).trim(),
        "PermissionDenied PermissionDenied",
        stderr,
      );
    } finally {
      await Deno.chmod(`${dir}/locked`, 0o700).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
