import assert from "node:assert/strict";
import { isProtocolError } from "../src/errors.ts";
import { createTransport, UnixTransport } from "../src/transport/mod.ts";

const posix = Deno.build.os !== "windows";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "npro-unix-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test({
  name: "Unix: listen, connect, echo, mode 0o600 by default, file removed on close",
  ignore: !posix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = `${dir}/npro.sock`;
      const unix = createTransport("unix");
      assert.equal(unix.kind, "unix");
      const listener = await unix.listen(path);
      assert.equal((listener.addr as Deno.UnixAddr).path, path);
      const info = await Deno.lstat(path);
      assert.equal(info.isSocket, true);
      assert.equal(info.mode! & 0o777, 0o600);
      const client = await unix.connect(path, { timeoutMs: 2000 });
      const server = await listener.accept();
      await client.write(new TextEncoder().encode("ping"));
      const buffer = new Uint8Array(4);
      assert.equal(await server.read(buffer), 4);
      await server.write(buffer);
      assert.equal(await client.read(buffer), 4);
      assert.equal(new TextDecoder().decode(buffer), "ping");
      client.close();
      server.close();
      listener.close();
      assert.equal(await exists(path), false);
    }),
});

Deno.test({
  name: "Unix: the socket file mode is configurable",
  ignore: !posix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = `${dir}/group.sock`;
      await using listener = await new UnixTransport({ mode: 0o660 }).listen(path);
      assert.equal((await Deno.lstat(path)).mode! & 0o777, 0o660);
      assert.ok(listener.addr);
      assert.throws(() => new UnixTransport({ mode: 0o1000 }), RangeError);
      assert.throws(() => new UnixTransport({ mode: 1.5 }), TypeError);
    }),
});

Deno.test({
  name: "Unix: a stale socket file left by a SIGKILLed process is recovered",
  ignore: !posix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = `${dir}/stale.sock`;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          `Deno.listen({ transport: "unix", path: Deno.args[0] }); console.log("ready"); ` +
          `setTimeout(() => {}, 60000);`,
          path,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "inherit",
        env: { NO_COLOR: "1" },
      }).spawn();
      try {
        const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let output = "";
        const deadline = Date.now() + 20_000;
        while (!output.includes("ready") && Date.now() < deadline) {
          const { value, done } = await reader.read();
          if (done) break;
          output += value;
        }
        assert.ok(output.includes("ready"), `child did not start: "${output}"`);
        // The child is alive: its socket must be refused, and left in place.
        const live = await new UnixTransport().listen(path).then(
          (l) => {
            l.close();
            assert.fail("listened on a live socket");
          },
          (e) => e,
        );
        assert.ok(isProtocolError(live, "AddressInUse"), String(live));
        assert.match(live.message, /in use/);
        assert.equal(await exists(path), true);

        Deno.kill(child.pid, "SIGKILL");
        const status = await child.status;
        assert.equal(status.signal, "SIGKILL");
        await reader.cancel();
      } catch (error) {
        try {
          Deno.kill(child.pid, "SIGKILL");
        } catch {
          // Already gone.
        }
        await child.status;
        throw error;
      }
      // The dead process left its socket file behind; connecting to it is refused.
      assert.equal((await Deno.lstat(path)).isSocket, true);
      await assert.rejects(
        Deno.connect({ transport: "unix", path }),
        Deno.errors.ConnectionRefused,
      );
      const unix = new UnixTransport();
      await using listener = await unix.listen(path);
      const client = await unix.connect(path);
      const server = await listener.accept();
      client.close();
      server.close();
    }),
});

Deno.test({
  name: "Unix: listening on a live socket fails and never unlinks it",
  ignore: !posix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = `${dir}/live.sock`;
      const unix = new UnixTransport();
      await using first = await unix.listen(path);
      const error = await unix.listen(path).then(() => assert.fail("listened"), (e) => e);
      assert.ok(isProtocolError(error, "AddressInUse"));
      assert.match(error.message, /already in use/);
      // The first listener still works.
      const client = await unix.connect(path);
      const server = await first.accept();
      client.close();
      server.close();
    }),
});

Deno.test({
  name: "Unix: a path that is not a socket is refused and left untouched",
  ignore: !posix,
  fn: () =>
    withTempDir(async (dir) => {
      const file = `${dir}/important.txt`;
      await Deno.writeTextFile(file, "keep me");
      const unix = new UnixTransport();
      const error = await unix.listen(file).then(() => assert.fail("listened"), (e) => e);
      assert.ok(isProtocolError(error, "ConfigError"));
      assert.match(error.message, /not a socket/);
      assert.equal(await Deno.readTextFile(file), "keep me");
      // A symbolic link to a socket is not a socket either.
      const target = `${dir}/target.sock`;
      await using listener = await unix.listen(target);
      assert.ok(listener.addr);
      const link = `${dir}/link.sock`;
      await Deno.symlink(target, link);
      await assert.rejects(unix.listen(link), (e) => isProtocolError(e, "ConfigError"));
      assert.equal((await Deno.lstat(link)).isSymlink, true);
      // A directory neither.
      await assert.rejects(unix.listen(dir), (e) => isProtocolError(e, "ConfigError"));
    }),
});

Deno.test({
  name: "Unix: connect errors are typed and arguments are checked",
  ignore: !posix,
  fn: () =>
    withTempDir(async (dir) => {
      const unix = new UnixTransport();
      const missing = await unix.connect(`${dir}/none.sock`).then(
        () => assert.fail("connected"),
        (e) => e,
      );
      assert.ok(isProtocolError(missing, "ConnectionClosed"));
      assert.ok(missing.cause instanceof Deno.errors.NotFound);
      await assert.rejects(unix.connect("relative.sock"), TypeError);
      await assert.rejects(unix.listen("relative.sock"), TypeError);
      await assert.rejects(unix.listen(`/${"x".repeat(200)}`), RangeError);
      await assert.rejects(
        unix.connect(`${dir}/none.sock`, { signal: AbortSignal.abort() }),
        (e) => isProtocolError(e, "Cancelled"),
      );
    }),
});

Deno.test({
  name: "Unix: the listener's signal closes it and removes the file",
  ignore: !posix,
  fn: () =>
    withTempDir(async (dir) => {
      const path = `${dir}/signal.sock`;
      const controller = new AbortController();
      const listener = await new UnixTransport().listen(path, { signal: controller.signal });
      const pending = listener.accept();
      controller.abort();
      await assert.rejects(pending, (e) => isProtocolError(e, "ConnectionClosed"));
      assert.equal(await exists(path), false);
    }),
});
