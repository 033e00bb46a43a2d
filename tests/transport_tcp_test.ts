import assert from "node:assert/strict";
import fc from "fast-check";
import { isProtocolError, ProtocolError } from "../src/errors.ts";
import { createTransport } from "../src/transport/mod.ts";
import { formatHostPort, parseHostPort } from "../src/transport/address.ts";
import { TcpTransport, withDeadline } from "../src/transport/tcp.ts";

const HEADER = 4;
const PAYLOAD = 64;

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

/** Echo server that answers each request with TWO writes (header, then payload). */
async function serveTwoWriteEcho(conn: Deno.Conn): Promise<void> {
  const header = new Uint8Array(HEADER);
  const payload = new Uint8Array(PAYLOAD);
  try {
    while (await readFull(conn, header) && await readFull(conn, payload)) {
      await conn.write(header);
      await conn.write(payload);
    }
  } catch {
    // The client went away.
  } finally {
    conn.close();
  }
}

/** The prototype of `Deno.TcpConn` (Deno exposes the type only), for spying on its methods. */
const tcpConnPrototype: Deno.TcpConn = await (async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  (await listener.accept()).close();
  return Object.getPrototypeOf(conn);
})();

type SocketOption = "setNoDelay" | "setKeepAlive";

/**
 * Records, until disposed, every `setNoDelay` and `setKeepAlive` call on any `Deno.TcpConn` (the
 * calls still go through). `last(conn, option)` is the value most recently set on `conn`, or
 * undefined when it was never set (Deno's default: Nagle on, keep-alive off).
 */
function spySocketOptions(): {
  last(conn: Deno.Conn, option: SocketOption): boolean | undefined;
  [Symbol.dispose](): void;
} {
  const calls: { conn: unknown; option: SocketOption; value: boolean }[] = [];
  const originals = {
    setNoDelay: tcpConnPrototype.setNoDelay,
    setKeepAlive: tcpConnPrototype.setKeepAlive,
  };
  for (const option of ["setNoDelay", "setKeepAlive"] as const) {
    const original = originals[option];
    tcpConnPrototype[option] = function (this: Deno.TcpConn, ...args: [boolean?]) {
      // Both default to true when called without an argument.
      calls.push({ conn: this, option, value: args[0] ?? true });
      return original.apply(this, args);
    };
  }
  return {
    last: (conn, option) => calls.findLast((c) => c.conn === conn && c.option === option)?.value,
    [Symbol.dispose]() {
      tcpConnPrototype.setNoDelay = originals.setNoDelay;
      tcpConnPrototype.setKeepAlive = originals.setKeepAlive;
    },
  };
}

/** One `Deno.connect` call made while {@linkcode blackholeDial} was installed. */
interface Dial {
  options: Deno.ConnectOptions;
  /** Whether the call has returned (rejected): its operation is over. */
  released: boolean;
}

/**
 * Replaces `Deno.connect`, until disposed, with a dial whose SYN is never answered: it stays
 * pending until the signal it was given aborts, then rejects with the signal's reason, as Deno's
 * own connect does. This stands in for a blackholed address, which no machine reliably has.
 */
function blackholeDial(): { dials: Dial[] } & Disposable {
  const original = Deno.connect;
  const dials: Dial[] = [];
  Deno.connect = ((options: Deno.ConnectOptions) => {
    const dial: Dial = { options, released: false };
    dials.push(dial);
    return new Promise<never>((_, reject) => {
      const signal = options.signal;
      if (signal === undefined) return; // Hangs for ever: the test fails on `released`.
      const release = (): void => {
        dial.released = true;
        reject(signal.reason);
      };
      if (signal.aborted) release();
      else signal.addEventListener("abort", release, { once: true });
    });
  }) as unknown as typeof Deno.connect;
  return {
    dials,
    [Symbol.dispose]() {
      Deno.connect = original;
    },
  };
}

Deno.test("parseHostPort parses IPv4, names and bracketed IPv6", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:9000"), { hostname: "127.0.0.1", port: 9000 });
  assert.deepEqual(parseHostPort("localhost:0"), { hostname: "localhost", port: 0 });
  assert.deepEqual(parseHostPort("[::1]:65535"), { hostname: "::1", port: 65535 });
  assert.deepEqual(parseHostPort("[fe80::1%eth0]:1"), { hostname: "fe80::1%eth0", port: 1 });
  for (const bad of ["127.0.0.1", ":9000", "::1:9000", "[::1]9000", "host:", "host:x", "a b:1"]) {
    assert.throws(() => parseHostPort(bad), TypeError, bad);
  }
  assert.throws(() => parseHostPort("host:65536"), RangeError);
  assert.throws(() => parseHostPort(42 as unknown as string), TypeError);
});

Deno.test("parseHostPort round-trips formatHostPort", () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain()),
      fc.integer({ min: 0, max: 65535 }),
      (hostname, port) => {
        assert.deepEqual(parseHostPort(formatHostPort(hostname, port)), { hostname, port });
      },
    ),
    { numRuns: 200 },
  );
});

for (const [family, address] of [["IPv4", "127.0.0.1:0"], ["IPv6", "[::1]:0"]] as const) {
  Deno.test(`TCP over ${family} loopback: connected and accepted sockets get TCP_NODELAY and keep-alive`, async () => {
    // The latency this buys (no Nagle stall on a request written in two pieces) is measured by
    // bench/nagle_bench.ts; here the mechanism is checked.
    using spy = spySocketOptions();
    const tcp = new TcpTransport();
    await using listener = await tcp.listen(address);
    const { hostname, port } = listener.addr as Deno.NetAddr;
    const client = await tcp.connect(formatHostPort(hostname, port), { timeoutMs: 2000 });
    const accepted = await listener.accept();
    const served = serveTwoWriteEcho(accepted);
    try {
      for (const [side, conn] of [["connected", client], ["accepted", accepted]] as const) {
        assert.equal(spy.last(conn, "setNoDelay"), true, `${side} socket: TCP_NODELAY not set`);
        assert.equal(spy.last(conn, "setKeepAlive"), true, `${side} socket: keep-alive not set`);
      }
      // The tuned sockets carry a request and its reply written in two pieces each.
      const payload = new Uint8Array(PAYLOAD).fill(7);
      await client.write(new Uint8Array([0, 0, 0, PAYLOAD]));
      await client.write(payload);
      const reply = new Uint8Array(HEADER + PAYLOAD);
      assert.ok(await readFull(client, reply), "server closed early");
      assert.deepEqual(reply.subarray(HEADER), payload);
    } finally {
      client.close();
      await served;
    }
  });
}

Deno.test("TCP connect to a closed port fails with ConnectionRefused", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = probe.addr;
  probe.close();
  const error = await new TcpTransport().connect(`127.0.0.1:${port}`).then(
    () => assert.fail("connected"),
    (e) => e,
  );
  assert.ok(isProtocolError(error, "ConnectionRefused"), String(error));
  assert.ok(error.cause instanceof Deno.errors.ConnectionRefused);
  assert.match(error.message, /refused/);
});

Deno.test("TCP connect with an already aborted signal fails with Cancelled", async () => {
  const reason = new Error("stop");
  const error = await new TcpTransport()
    .connect("127.0.0.1:9", { signal: AbortSignal.abort(reason) })
    .then(() => assert.fail("connected"), (e) => e);
  assert.ok(isProtocolError(error, "Cancelled"));
  assert.equal(error.cause, reason);
});

Deno.test("TCP connect that hangs fails with Timeout and releases its operation", async () => {
  // 192.0.2.1 (TEST-NET-1) is never dialled for real: blackholeDial answers instead.
  using hole = blackholeDial();
  const start = performance.now();
  const error = await new TcpTransport().connect("192.0.2.1:9", { timeoutMs: 150 }).then(
    () => assert.fail("connected"),
    (e) => e,
  );
  const elapsed = performance.now() - start;
  assert.ok(isProtocolError(error, "Timeout"), String(error));
  assert.match(error.message, /timed out after 150 ms/);
  assert.equal(hole.dials.length, 1);
  const [dial] = hole.dials;
  assert.deepEqual(
    { hostname: dial!.options.hostname, port: dial!.options.port },
    { hostname: "192.0.2.1", port: 9 },
  );
  assert.ok(dial!.options.signal?.aborted, "the dial was not given a signal that aborts");
  assert.ok(dial!.released, "the dial was still pending when connect failed");
  // Not before its time limit; the upper bound is a liveness bound, not a speed claim.
  assert.ok(elapsed >= 140 && elapsed < 2000, `took ${elapsed} ms`);
});

Deno.test("TCP connect that hangs is cancelled by its signal", async () => {
  using hole = blackholeDial();
  const controller = new AbortController();
  const pending = new TcpTransport().connect("192.0.2.1:9", {
    signal: controller.signal,
    timeoutMs: 5000,
  });
  for (let i = 0; i < 100 && hole.dials.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(hole.dials.length, 1, "connect never dialled");
  assert.ok(!hole.dials[0]!.released, "the dial is not pending");
  controller.abort(new Error("user"));
  const error = await pending.then(() => assert.fail("connected"), (e) => e);
  assert.ok(isProtocolError(error, "Cancelled"), String(error));
  assert.equal((error.cause as Error).message, "user");
  assert.ok(hole.dials[0]!.options.signal?.aborted, "the dial's signal was not aborted");
  assert.ok(hole.dials[0]!.released, "the dial was still pending when connect failed");
});

Deno.test("withDeadline times out a slow dial and closes the connection it yields late", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let lateConn: Deno.Conn | undefined;
  let disposed = false;
  const error = await withDeadline(
    "Slow dial",
    { timeoutMs: 30 },
    async () => {
      // Ignores its signal on purpose: the deadline must still win and clean up afterwards.
      await new Promise((resolve) => setTimeout(resolve, 60));
      lateConn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
      return lateConn;
    },
    (conn) => {
      disposed = true;
      conn.close();
    },
  ).then(() => assert.fail("resolved"), (e) => e);
  assert.ok(isProtocolError(error, "Timeout"));
  // The dial ignores its signal, so its connection arrives after the error: wait for it.
  for (let i = 0; i < 100 && !disposed; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(disposed, "late connection was not disposed");
  assert.throws(() => lateConn!.close(), Deno.errors.BadResource);
  const server = await listener.accept();
  server.close();
  listener.close();
});

Deno.test("withDeadline passes a dial's own signal-honouring abort through as Cancelled", async () => {
  const controller = new AbortController();
  let seen: AbortSignal | undefined;
  const pending = withDeadline(
    "Dial",
    { signal: controller.signal, timeoutMs: 1000 },
    (signal) => {
      seen = signal;
      return new Promise<Deno.Conn>((_, reject) => {
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
    },
    () => assert.fail("nothing to dispose"),
  );
  controller.abort("bye");
  const error = await pending.then(() => assert.fail("resolved"), (e) => e);
  assert.ok(isProtocolError(error, "Cancelled"));
  assert.equal(error.cause, "bye");
  assert.ok(seen?.aborted);
});

Deno.test("TCP connect and listen reject bad arguments", async () => {
  const tcp = new TcpTransport();
  await assert.rejects(tcp.connect("nohost"), TypeError);
  await assert.rejects(tcp.connect("127.0.0.1:0"), RangeError);
  await assert.rejects(tcp.connect("127.0.0.1:1", { timeoutMs: 0 }), RangeError);
  await assert.rejects(tcp.connect("127.0.0.1:1", { timeoutMs: Number.NaN }), TypeError);
  await assert.rejects(tcp.listen("[::1"), TypeError);
  assert.throws(() => new TcpTransport({ backlog: 0 }), RangeError);
  assert.throws(() => createTransport("udp" as "tcp"), TypeError);
});

Deno.test("TCP listen on a used port fails with AddressInUse", async () => {
  const tcp = new TcpTransport();
  await using first = await tcp.listen("127.0.0.1:0");
  const { port } = first.addr as Deno.NetAddr;
  const error = await tcp.listen(`127.0.0.1:${port}`).then(() => assert.fail("bound"), (e) => e);
  assert.ok(isProtocolError(error, "AddressInUse"));
  assert.ok(error.cause instanceof Deno.errors.AddrInUse);
});

Deno.test("TCP listener: iteration, close, signal and accept after close", async () => {
  const tcp = createTransport("tcp");
  assert.equal(tcp.kind, "tcp");
  const controller = new AbortController();
  const listener = await tcp.listen("127.0.0.1:0", { signal: controller.signal });
  const { port } = listener.addr as Deno.NetAddr;
  const clients = await Promise.all([1, 2, 3].map(() => tcp.connect(`127.0.0.1:${port}`)));
  const accepted: Deno.Conn[] = [];
  const loop = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  while (accepted.length < 3) await new Promise((r) => setTimeout(r, 5));
  controller.abort(); // Closes the listener: the loop ends without an error.
  await loop;
  const error = await listener.accept().then(() => assert.fail("accepted"), (e) => e);
  assert.ok(error instanceof ProtocolError && error.code === "ConnectionClosed");
  listener.close(); // Idempotent.
  await listener[Symbol.asyncDispose]();
  for (const conn of [...clients, ...accepted]) conn.close();
});

Deno.test("TCP listener close wakes a pending accept with ConnectionClosed", async () => {
  const listener = await new TcpTransport().listen("127.0.0.1:0");
  const pending = listener.accept();
  listener.close();
  await assert.rejects(pending, (e) => isProtocolError(e, "ConnectionClosed"));
});

Deno.test("TCP connect without the net permission fails with PermissionDenied, not a network error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "npro-perm-" });
  try {
    const script = `${dir}/connect.ts`;
    const tcpModule = new URL("../src/transport/tcp.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { TcpTransport } from ${JSON.stringify(tcpModule)};\n` +
        `try { await new TcpTransport().connect("127.0.0.1:9"); console.log("connected"); }\n` +
        `catch (e) { console.log(e.code, e.cause?.name); }\n`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-lock", "--no-config", script],
      env: { NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout).trim();
    assert.equal(stdout, "PermissionDenied NotCapable", new TextDecoder().decode(output.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
