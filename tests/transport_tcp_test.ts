import assert from "node:assert/strict";
import fc from "fast-check";
import { isProtocolError, ProtocolError } from "../src/errors.ts";
import { createTransport } from "../src/transport/mod.ts";
import { formatHostPort, parseHostPort, TcpTransport, withDeadline } from "../src/transport/tcp.ts";

/** Set NPRO_TRANSPORT_VERBOSE=1 to print the measured round trips (and the Nagle baseline). */
const VERBOSE = Deno.env.get("NPRO_TRANSPORT_VERBOSE") === "1";
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

/**
 * Runs `rounds` request/reply round trips where both sides write each message in two pieces,
 * and returns the median round trip in milliseconds. With Nagle's algorithm on, every round trip
 * stalls on a delayed ACK (about 40 ms on Linux).
 */
async function medianTwoWriteRtt(
  address: string,
  rounds: number,
  noDelay = true,
): Promise<number> {
  const tcp = new TcpTransport();
  await using listener = await tcp.listen(address);
  const { hostname, port } = listener.addr as Deno.NetAddr;
  const accepted = listener.accept().then((conn) => {
    if (!noDelay) (conn as Deno.TcpConn).setNoDelay(false);
    return serveTwoWriteEcho(conn);
  });
  const client = await tcp.connect(formatHostPort(hostname, port), { timeoutMs: 2000 });
  if (!noDelay) (client as Deno.TcpConn).setNoDelay(false);
  const header = new Uint8Array([0, 0, 0, PAYLOAD]);
  const payload = new Uint8Array(PAYLOAD).fill(7);
  const reply = new Uint8Array(HEADER + PAYLOAD);
  const times: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      const start = performance.now();
      await client.write(header);
      await client.write(payload);
      assert.ok(await readFull(client, reply), "server closed early");
      times.push(performance.now() - start);
      assert.deepEqual(reply.subarray(HEADER), payload);
    }
  } finally {
    client.close();
    await accepted;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
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

Deno.test("TCP over IPv4 loopback: two-write requests get replies without the Nagle stall", async () => {
  const median = await medianTwoWriteRtt("127.0.0.1:0", 15);
  // Nagle's algorithm plus delayed ACKs would make this 40 ms or more.
  assert.ok(median < 25, `median round trip ${median.toFixed(2)} ms`);
  if (VERBOSE) {
    const nagle = await medianTwoWriteRtt("127.0.0.1:0", 15, false);
    console.log(
      `two-write RTT median: ${median.toFixed(3)} ms; with Nagle on: ${nagle.toFixed(3)} ms`,
    );
  }
});

Deno.test("TCP over IPv6 loopback: two-write requests get replies without the Nagle stall", async () => {
  let probe: Deno.Listener;
  try {
    probe = Deno.listen({ hostname: "::1", port: 0 });
  } catch {
    if (Deno.env.get("CI") === "true") throw new Error("IPv6 loopback is not available");
    console.warn("IPv6 loopback is not available; skipping");
    return;
  }
  probe.close();
  const median = await medianTwoWriteRtt("[::1]:0", 15);
  assert.ok(median < 25, `median round trip ${median.toFixed(2)} ms`);
  if (VERBOSE) console.log(`IPv6 two-write RTT median: ${median.toFixed(3)} ms`);
});

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

/**
 * A local address where connects hang: a listener with a backlog of 0 whose only queue slot is
 * taken and never accepted. Linux then drops further SYNs, so the client keeps retrying. Returns
 * undefined when the kernel behaves otherwise.
 */
async function blackhole(): Promise<{ address: string; [Symbol.dispose](): void } | undefined> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, tcpBacklog: 0 });
  const address = `127.0.0.1:${listener.addr.port}`;
  const held: Deno.Conn[] = [];
  const cleanup = (): void => {
    for (const conn of held) conn.close();
    listener.close();
  };
  for (let i = 0; i < 4; i++) {
    try {
      held.push(
        await Deno.connect({
          hostname: "127.0.0.1",
          port: listener.addr.port,
          signal: AbortSignal.timeout(300),
        }),
      );
    } catch {
      return { address, [Symbol.dispose]: cleanup };
    }
  }
  cleanup();
  return undefined;
}

Deno.test("TCP connect that hangs fails with Timeout and releases its operation", async () => {
  using hole = await blackhole();
  if (hole === undefined) {
    console.warn("No local blackhole on this kernel; covered by the injected-dial test");
    return;
  }
  const start = performance.now();
  const error = await new TcpTransport().connect(hole.address, { timeoutMs: 150 }).then(
    () => assert.fail("connected"),
    (e) => e,
  );
  const elapsed = performance.now() - start;
  assert.ok(isProtocolError(error, "Timeout"), String(error));
  assert.match(error.message, /timed out after 150 ms/);
  assert.ok(elapsed >= 140 && elapsed < 2000, `took ${elapsed} ms`);
});

Deno.test("TCP connect that hangs is cancelled by its signal", async () => {
  using hole = await blackhole();
  if (hole === undefined) {
    console.warn("No local blackhole on this kernel; covered by the injected-dial test");
    return;
  }
  const controller = new AbortController();
  const pending = new TcpTransport().connect(hole.address, {
    signal: controller.signal,
    timeoutMs: 5000,
  });
  setTimeout(() => controller.abort(new Error("user")), 50);
  const error = await pending.then(() => assert.fail("connected"), (e) => e);
  assert.ok(isProtocolError(error, "Cancelled"), String(error));
  assert.equal((error.cause as Error).message, "user");
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
