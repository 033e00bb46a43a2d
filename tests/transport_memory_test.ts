import assert from "node:assert/strict";
import fc from "fast-check";
import { encodePacket, encodePackets } from "../src/core/packet.ts";
import { ProtocolError } from "../src/errors.ts";
import { Dispatcher, registerStandardHandlers } from "../src/protocol/dispatcher.ts";
import { connect } from "../src/service/client.ts";
import { serve } from "../src/service/daemon.ts";
import { FrameReader } from "../src/service/frame_reader.ts";
import {
  DEFAULT_MEMORY_HIGH_WATER_MARK,
  type MemoryConn,
  memoryConnPair,
} from "../src/transport/memory_conn.ts";
import { MemoryTransport } from "../src/transport/memory_transport.ts";
import type { Transport } from "../src/transport/types.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/** Lets every promise job run (memory connections settle through promise jobs only). */
function flush(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Whether `promise` is still pending once every promise job has run. */
async function pending(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(() => (done = true), () => (done = true));
  await flush();
  return !done;
}

/** What an operation ended with: `ok <value>` or `err <error class>`. */
async function outcome(op: () => Promise<unknown> | unknown): Promise<string> {
  try {
    return `ok ${String(await op())}`;
  } catch (error) {
    return `err ${error instanceof Error ? error.constructor.name : String(error)}`;
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += await conn.write(data.subarray(offset));
}

/** Reads until EOF with reads of the given sizes (cycled). */
async function readAll(conn: Deno.Conn, sizes: readonly number[] = [4096]): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let i = 0;; i++) {
    const buffer = new Uint8Array(sizes[i % sizes.length]!);
    const n = await conn.read(buffer);
    if (n === null) break;
    parts.push(buffer.slice(0, n));
  }
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function bytes(n: number, seed = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
}

// ---------------------------------------------------------------------------------------------
// Ordering and segmentation

Deno.test("memory pair: bytes arrive in order whatever the write, read and buffer sizes", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 10 }),
      fc.integer({ min: 1, max: 512 }),
      fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
      async (chunks, readSizes, highWaterMark, maxReadSize) => {
        const [a, b] = memoryConnPair({
          highWaterMark,
          ...(maxReadSize === undefined ? {} : { maxReadSize }),
        });
        const writer = (async () => {
          for (const chunk of chunks) {
            await writeAll(a, chunk);
            assert.ok(a.bufferedAmount <= highWaterMark);
          }
          await a.closeWrite();
        })();
        const received = await readAll(b, readSizes);
        await writer;
        const expected = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
        let offset = 0;
        for (const chunk of chunks) {
          expected.set(chunk, offset);
          offset += chunk.length;
        }
        assert.deepEqual(received, expected);
        a.close();
        b.close();
      },
    ),
    { numRuns: 150 },
  );
});

Deno.test("memory pair: a read returns what is buffered, coalescing writes, up to its buffer", async () => {
  const [a, b] = memoryConnPair();
  await a.write(new Uint8Array([1, 2]));
  await a.write(new Uint8Array([3, 4, 5]));
  const buffer = new Uint8Array(4);
  assert.equal(await b.read(buffer), 4);
  assert.deepEqual(buffer, new Uint8Array([1, 2, 3, 4]));
  assert.equal(await b.read(buffer), 1);
  assert.equal(buffer[0], 5);
  a.close();
  b.close();
});

Deno.test("memory pair: maxReadSize splits the stream into reads of at most that size", async () => {
  const [a, b] = memoryConnPair({ maxReadSize: 3 });
  await a.write(bytes(10));
  const buffer = new Uint8Array(100);
  const sizes = [];
  for (let i = 0; i < 4; i++) sizes.push(await b.read(buffer));
  assert.deepEqual(sizes, [3, 3, 3, 1]);
  a.close();
  b.close();
});

Deno.test("memory pair: a pending read completes when data arrives; reads complete in call order", async () => {
  const [a, b] = memoryConnPair();
  const first = new Uint8Array(2);
  const second = new Uint8Array(2);
  const r1 = b.read(first);
  const r2 = b.read(second);
  assert.ok(await pending(r1));
  await a.write(new Uint8Array([1, 2, 3]));
  assert.equal(await r1, 2);
  assert.equal(await r2, 1);
  assert.deepEqual([...first, second[0]], [1, 2, 3]);
  a.close();
  b.close();
});

Deno.test("memory pair: the writer may reuse its buffer once the write resolved", async () => {
  const [a, b] = memoryConnPair();
  const data = new Uint8Array([1, 2, 3]);
  await a.write(data);
  data.fill(9);
  const buffer = new Uint8Array(3);
  await b.read(buffer);
  assert.deepEqual(buffer, new Uint8Array([1, 2, 3]));
  a.close();
  b.close();
});

Deno.test("memory pair: empty reads and writes resolve with 0 at once", async () => {
  const [a, b] = memoryConnPair();
  assert.equal(await a.write(new Uint8Array(0)), 0);
  assert.equal(await b.read(new Uint8Array(0)), 0);
  a.close();
  assert.equal(await a.read(new Uint8Array(0)), 0, "as Deno: 0 even on a closed connection");
  b.close();
});

// ---------------------------------------------------------------------------------------------
// Backpressure

Deno.test("memory pair: a write accepts what fits and waits while the buffer is full", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 8 });
  assert.equal(await a.write(bytes(20)), 8, "a partial write");
  assert.equal(a.bufferedAmount, 8);
  const blocked = a.write(bytes(5, 1));
  assert.ok(await pending(blocked), "the buffer is full: the write waits");
  const buffer = new Uint8Array(3);
  assert.equal(await b.read(buffer), 3);
  assert.equal(await blocked, 3, "it accepts as many bytes as the read freed");
  assert.equal(a.bufferedAmount, 8);
  a.close();
  b.close();
});

Deno.test("memory pair: writeAll of more than the buffer completes only as the reader reads", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 1024 });
  const data = bytes(10_000);
  let done = false;
  const writing = writeAll(a, data).then(() => (done = true));
  await flush();
  assert.equal(done, false);
  assert.equal(a.bufferedAmount, 1024, "bounded");
  const received = new Uint8Array(data.length);
  let offset = 0;
  while (offset < data.length) {
    const n = await b.read(received.subarray(offset, offset + 700));
    assert.ok(n !== null);
    offset += n;
    assert.ok(a.bufferedAmount <= 1024);
  }
  await writing;
  assert.equal(done, true);
  assert.deepEqual(received, data);
  a.close();
  b.close();
});

Deno.test("memory pair: the default buffer is 64 KiB per direction, independent both ways", async () => {
  const [a, b] = memoryConnPair();
  assert.equal(await a.write(new Uint8Array(100_000)), DEFAULT_MEMORY_HIGH_WATER_MARK);
  assert.equal(await b.write(new Uint8Array(10)), 10, "the other direction has its own buffer");
  a.close();
  b.close();
});

Deno.test("memory pair: pauseRead holds data and EOF while the writer blocks; resumeRead releases", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 4 });
  b.pauseRead();
  const buffer = new Uint8Array(8);
  const read = b.read(buffer);
  assert.equal(await a.write(bytes(6)), 4);
  const blocked = a.write(bytes(2));
  assert.ok(await pending(read), "paused: the read waits although data is there");
  assert.ok(await pending(blocked));
  b.resumeRead();
  assert.equal(await read, 4);
  assert.equal(await blocked, 2);
  await a.closeWrite();
  b.pauseRead();
  const rest = b.read(buffer);
  assert.ok(await pending(rest));
  b.resumeRead();
  assert.equal(await rest, 2);
  b.pauseRead();
  const eof = b.read(buffer);
  assert.ok(await pending(eof), "EOF waits too");
  b.resumeRead();
  assert.equal(await eof, null);
  a.close();
  b.close();
});

// ---------------------------------------------------------------------------------------------
// EOF, close and closeWrite

Deno.test("memory pair: after close the peer reads the bytes written before, then EOF for good", async () => {
  const [a, b] = memoryConnPair();
  await a.write(new Uint8Array([1, 2, 3]));
  a.close();
  const buffer = new Uint8Array(8);
  assert.equal(await b.read(buffer), 3);
  assert.equal(await b.read(buffer), null);
  assert.equal(await b.read(buffer), null);
  b.close();
});

Deno.test("memory pair: a pending read of the peer ends with EOF when the other end closes", async () => {
  const [a, b] = memoryConnPair();
  const read = b.read(new Uint8Array(8));
  assert.ok(await pending(read));
  a.close();
  assert.equal(await read, null);
  b.close();
});

Deno.test("memory pair: closing an end rejects its own pending operations with Interrupted", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 2 });
  const read = a.read(new Uint8Array(8));
  await a.write(new Uint8Array(2));
  const write = a.write(new Uint8Array(2));
  assert.ok(await pending(write));
  a.close();
  await assert.rejects(read, Deno.errors.Interrupted);
  await assert.rejects(write, Deno.errors.Interrupted);
  assert.equal(a.isClosed, true);
  b.close();
});

Deno.test("memory pair: a closed end fails every later operation with BadResource", async () => {
  const [a, b] = memoryConnPair();
  a.close();
  await assert.rejects(a.read(new Uint8Array(1)), Deno.errors.BadResource);
  await assert.rejects(a.write(new Uint8Array(1)), Deno.errors.BadResource);
  await assert.rejects(a.write(new Uint8Array(0)), Deno.errors.BadResource);
  await assert.rejects(a.closeWrite(), Deno.errors.BadResource);
  assert.throws(() => a.close(), Deno.errors.BadResource);
  assert.throws(() => a.reset(), Deno.errors.BadResource);
  a[Symbol.dispose](); // like Deno: disposing a closed connection is silent
  b.close();
});

Deno.test("memory pair: writing to an end whose peer closed fails with BrokenPipe", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 4 });
  assert.equal(await a.write(bytes(8)), 4);
  const blocked = a.write(bytes(4));
  assert.ok(await pending(blocked));
  b.close();
  await assert.rejects(blocked, Deno.errors.BrokenPipe);
  await assert.rejects(a.write(new Uint8Array(1)), Deno.errors.BrokenPipe);
  assert.equal(a.bufferedAmount, 0, "what the peer never read is dropped");
  assert.equal(await a.read(new Uint8Array(1)), null, "and the end reads EOF");
  a.close();
});

Deno.test("memory pair: using disposes an end", async () => {
  const [a, b] = memoryConnPair();
  {
    using _a = a;
  }
  assert.equal(a.isClosed, true);
  assert.equal(await b.read(new Uint8Array(1)), null);
  b.close();
});

Deno.test("memory pair: closeWrite gives the peer EOF while both ends can still read", async () => {
  const [a, b] = memoryConnPair();
  await a.write(new Uint8Array([1]));
  await a.closeWrite();
  await a.closeWrite(); // idempotent, as in Deno
  const buffer = new Uint8Array(8);
  assert.equal(await b.read(buffer), 1);
  assert.equal(await b.read(buffer), null);
  await assert.rejects(a.write(new Uint8Array(1)), Deno.errors.BrokenPipe);
  assert.equal(await b.write(new Uint8Array([5, 6])), 2, "the peer still writes");
  assert.equal(await a.read(buffer), 2, "and the closing end still reads");
  assert.deepEqual(buffer.subarray(0, 2), new Uint8Array([5, 6]));
  a.close();
  b.close();
});

Deno.test("memory pair: closeWrite fails the end's own writes still waiting with BrokenPipe", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 2 });
  await a.write(new Uint8Array(2));
  const blocked = a.write(new Uint8Array(2));
  assert.ok(await pending(blocked));
  await a.closeWrite();
  await assert.rejects(blocked, Deno.errors.BrokenPipe);
  assert.equal(await readAll(b).then((data) => data.length), 2, "accepted bytes still arrive");
  a.close();
  b.close();
});

Deno.test("memory pair: a pending read survives its own end's closeWrite", async () => {
  const [a, b] = memoryConnPair();
  const read = a.read(new Uint8Array(4));
  await a.closeWrite();
  await b.write(new Uint8Array([9]));
  assert.equal(await read, 1);
  a.close();
  b.close();
});

// ---------------------------------------------------------------------------------------------
// Reset (fault injection)

Deno.test("memory pair: reset fails the peer's pending read with ConnectionReset once, then EOF", async () => {
  const [a, b] = memoryConnPair();
  const read = b.read(new Uint8Array(8));
  a.reset();
  await assert.rejects(read, Deno.errors.ConnectionReset);
  assert.equal(await b.read(new Uint8Array(8)), null);
  await assert.rejects(b.write(new Uint8Array(1)), Deno.errors.BrokenPipe);
  b.close();
});

Deno.test("memory pair: reset drops the bytes in flight and fails the peer's waiting writes", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 4 });
  await a.write(new Uint8Array([1, 2, 3]));
  assert.equal(await b.write(bytes(8)), 4);
  const blocked = b.write(bytes(4));
  assert.ok(await pending(blocked));
  a.reset();
  await assert.rejects(blocked, Deno.errors.ConnectionReset);
  await assert.rejects(b.read(new Uint8Array(8)), Deno.errors.ConnectionReset, "no data first");
  assert.equal(await b.read(new Uint8Array(8)), null);
  assert.equal(b.bufferedAmount, 0);
  b.close();
});

Deno.test("memory pair: a reset of an end whose peer already closed changes nothing for the peer", async () => {
  const [a, b] = memoryConnPair();
  b.close();
  a.reset();
  assert.equal(a.isClosed, true);
  await assert.rejects(b.read(new Uint8Array(1)), Deno.errors.BadResource);
});

// ---------------------------------------------------------------------------------------------
// The same scenarios on loopback TCP and in memory

/** A connected loopback TCP pair (both ends closed by the caller). */
async function tcpPair(): Promise<[Deno.Conn, Deno.Conn]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await listener.accept();
  return [client, server];
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed by the scenario.
  }
}

/** Scenarios whose outcomes do not depend on timing, so TCP and memory must agree. */
const SCENARIOS: { name: string; run(a: Deno.Conn, b: Deno.Conn): Promise<string[]> }[] = [
  {
    name: "a read pending when its own end closes",
    async run(a) {
      const read = a.read(new Uint8Array(4));
      a.close();
      return [await outcome(() => read)];
    },
  },
  {
    name: "operations on a closed end",
    async run(a) {
      a.close();
      return [
        await outcome(() => a.read(new Uint8Array(4))),
        await outcome(() => a.write(new Uint8Array(4))),
        await outcome(() => a.closeWrite()),
        await outcome(() => a.close()),
        await outcome(() => a.read(new Uint8Array(0))),
        await outcome(() => a[Symbol.dispose]()),
      ];
    },
  },
  {
    name: "the peer reads what was written before close, then EOF",
    async run(a, b) {
      await a.write(new Uint8Array([1, 2, 3]));
      a.close();
      const buffer = new Uint8Array(8);
      return [
        await outcome(() => b.read(buffer)),
        await outcome(() => b.read(buffer)),
        await outcome(() => b.read(buffer)),
      ];
    },
  },
  {
    name: "half-close",
    async run(a, b) {
      await a.closeWrite();
      const buffer = new Uint8Array(8);
      return [
        await outcome(() => b.read(buffer)),
        await outcome(() => a.write(new Uint8Array(1))),
        // Deno resolves this Promise<void> with null: compare completion, not the value.
        await outcome(() => a.closeWrite().then(() => "done")),
        await outcome(() => b.write(new Uint8Array([1]))),
        await outcome(() => a.read(buffer)),
      ];
    },
  },
];

for (const scenario of SCENARIOS) {
  Deno.test(`memory pair and loopback TCP agree: ${scenario.name}`, async () => {
    const [ta, tb] = await tcpPair();
    let tcp: string[];
    try {
      tcp = await scenario.run(ta, tb);
    } finally {
      closeQuietly(ta);
      closeQuietly(tb);
    }
    const [ma, mb] = memoryConnPair();
    const memory = await scenario.run(ma, mb);
    closeQuietly(ma);
    closeQuietly(mb);
    assert.deepEqual(memory, tcp);
  });
}

// ---------------------------------------------------------------------------------------------
// Streams

Deno.test("memory pair: readable yields the bytes, ends at EOF and closes the end, as in Deno", async () => {
  const [a, b] = memoryConnPair({ maxReadSize: 2 });
  await a.write(new Uint8Array([1, 2, 3]));
  a.close();
  const chunks: number[][] = [];
  for await (const chunk of b.readable) chunks.push([...chunk]);
  assert.deepEqual(chunks, [[1, 2], [3]]);
  assert.equal(b.isClosed, true);
});

Deno.test("memory pair: readable errors with BadResource when its end closes during a read", async () => {
  const [a, b] = memoryConnPair();
  const reader = a.readable.getReader();
  const read = reader.read();
  a.close();
  await assert.rejects(read, Deno.errors.BadResource);
  b.close();
});

Deno.test("memory pair: cancelling readable closes the end", async () => {
  const [a, b] = memoryConnPair();
  await a.readable.cancel();
  assert.equal(a.isClosed, true);
  assert.equal(await b.read(new Uint8Array(1)), null);
  b.close();
});

Deno.test("memory pair: writable writes whole chunks and closing it closes the end", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 3 });
  const reading = readAll(b, [2]);
  const writer = a.writable.getWriter();
  await writer.write(bytes(10));
  await writer.close();
  assert.deepEqual(await reading, bytes(10));
  assert.equal(a.isClosed, true);
  b.close();
});

Deno.test("memory pair: streams pipe one end into the other", async () => {
  const [a, b] = memoryConnPair({ highWaterMark: 16, maxReadSize: 5 });
  const data = bytes(1000);
  const sending = ReadableStream.from([data.subarray(0, 400), data.subarray(400)]).pipeTo(
    a.writable,
  );
  const received = await readAll(b, [64]);
  await sending;
  assert.deepEqual(received, data);
  b.close();
});

// ---------------------------------------------------------------------------------------------
// Addresses and arguments

Deno.test("memory pair: the addresses mirror each other; defaults are TCP-like and distinct", () => {
  const [a, b] = memoryConnPair();
  assert.deepEqual(a.localAddr, b.remoteAddr);
  assert.deepEqual(a.remoteAddr, b.localAddr);
  assert.equal(a.localAddr.transport, "tcp");
  assert.notDeepEqual(a.localAddr, a.remoteAddr);
  a.close();
  b.close();
  const [c, d] = memoryConnPair({
    localAddr: { transport: "unix", path: "" },
    remoteAddr: { transport: "unix", path: "/run/x.sock" },
  });
  assert.deepEqual(d.localAddr, { transport: "unix", path: "/run/x.sock" });
  c.close();
  d.close();
});

Deno.test("memory pair: socket tuning and ref/unref are accepted and do nothing", async () => {
  const [a, b] = memoryConnPair();
  a.setNoDelay(true);
  a.setKeepAlive(true);
  a.unref();
  a.ref();
  assert.equal(await a.write(new Uint8Array(1)), 1);
  a.close();
  b.close();
});

Deno.test("memory pair: bad arguments fail with TypeError or RangeError", async () => {
  assert.throws(() => memoryConnPair({ highWaterMark: 1.5 }), TypeError);
  assert.throws(() => memoryConnPair({ highWaterMark: 0 }), RangeError);
  assert.throws(() => memoryConnPair({ maxReadSize: -1 }), RangeError);
  assert.throws(() => memoryConnPair({ maxReadSize: Number.NaN }), TypeError);
  assert.throws(
    () => memoryConnPair({ localAddr: { transport: "udp", hostname: "x", port: 1 } }),
    TypeError,
  );
  assert.throws(() => new MemoryTransport({ highWaterMark: 0 }), RangeError);
  const [a, b] = memoryConnPair();
  await assert.rejects(a.read("x" as unknown as Uint8Array), TypeError);
  await assert.rejects(a.write([1] as unknown as Uint8Array), TypeError);
  a.close();
  b.close();
});

// ---------------------------------------------------------------------------------------------
// FrameReader over a memory pair

Deno.test("FrameReader reassembles packets delivered one byte at a time", async () => {
  const [a, b] = memoryConnPair({ maxReadSize: 1, highWaterMark: 16 });
  const payloads = [new Uint8Array([1]), bytes(300), new Uint8Array(0), bytes(40, 3)];
  const writing = (async () => {
    await writeAll(a, encodePackets(payloads.map((payload) => ({ version: 2, payload }))));
    a.close();
  })();
  const reader = new FrameReader(b);
  const got: Uint8Array[] = [];
  for (let batch = await reader.read(); batch !== null; batch = await reader.read()) {
    got.push(...batch.map((packet) => packet.payload.slice()));
  }
  await writing;
  assert.deepEqual(got, payloads);
  assert.equal(reader.eof, true);
  b.close();
});

Deno.test("FrameReader reads a batch of packets a single read delivered", async () => {
  const [a, b] = memoryConnPair();
  await a.write(
    encodePackets([1, 2, 3].map((n) => ({ version: 2, payload: new Uint8Array([n]) }))),
  );
  const batch = await new FrameReader(b).read();
  assert.deepEqual(batch?.map((packet) => packet.payload[0]), [1, 2, 3]);
  a.close();
  b.close();
});

Deno.test("FrameReader: a stream that ends inside a packet fails with Truncated", async () => {
  const [a, b] = memoryConnPair();
  const wire = encodePacket({ version: 2, payload: bytes(50) });
  await a.write(wire.subarray(0, 20));
  a.close();
  await assert.rejects(
    new FrameReader(b).read(),
    (e: unknown) => e instanceof ProtocolError && e.code === "Truncated",
  );
  b.close();
});

Deno.test("FrameReader: a reset peer fails the read with ConnectionClosed, caused by ConnectionReset", async () => {
  const [a, b] = memoryConnPair();
  const reader = new FrameReader(b);
  const read = reader.read();
  await a.write(encodePacket({ version: 2, payload: bytes(50) }).subarray(0, 10));
  a.reset();
  const error = await read.then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof ProtocolError && error.code === "ConnectionClosed");
  assert.ok(error.cause instanceof Deno.errors.ConnectionReset);
  b.close();
});

Deno.test("FrameReader: closing the connection ends a pending read with ConnectionClosed", async () => {
  const [a, b] = memoryConnPair();
  const read = new FrameReader(b).readPacket();
  b.close();
  const error = await read.then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof ProtocolError && error.code === "ConnectionClosed");
  assert.ok(error.cause instanceof Deno.errors.Interrupted);
  a.close();
});

// ---------------------------------------------------------------------------------------------
// MemoryTransport

Deno.test("MemoryTransport: listen on port 0 picks a free port; connect reaches it", async () => {
  const transport = new MemoryTransport();
  assert.equal(transport.kind, "memory");
  await using listener = await transport.listen("memory:0");
  const addr = listener.addr as Deno.NetAddr;
  assert.equal(addr.transport, "tcp");
  assert.equal(addr.hostname, "memory");
  assert.ok(addr.port >= 49152);
  const client = await transport.connect(`MEMORY:${addr.port}`);
  const server = await listener.accept();
  assert.deepEqual(server.localAddr, addr);
  assert.deepEqual(client.remoteAddr, addr);
  assert.deepEqual(server.remoteAddr, client.localAddr);
  assert.equal((client.localAddr as Deno.NetAddr).hostname, "memory");
  assert.notEqual((client.localAddr as Deno.NetAddr).port, addr.port);
  await client.write(new Uint8Array([1, 2]));
  client.close();
  assert.deepEqual(await readAll(server), new Uint8Array([1, 2]));
  server.close();
});

Deno.test("MemoryTransport: a connection waits in the backlog until accepted", async () => {
  const transport = new MemoryTransport();
  await using listener = await transport.listen("127.0.0.1:7000");
  const client = await transport.connect("127.0.0.1:7000");
  await client.write(new Uint8Array([3]));
  const server = await listener.accept();
  const buffer = new Uint8Array(1);
  assert.equal(await server.read(buffer), 1);
  assert.equal(buffer[0], 3);
  client.close();
  server.close();
});

Deno.test("MemoryTransport: a pending accept takes the next connection", async () => {
  const transport = new MemoryTransport();
  await using listener = await transport.listen("host:1");
  const accepting = listener.accept();
  assert.ok(await pending(accepting));
  const client = await transport.connect("host:1");
  const server = await accepting;
  assert.deepEqual(server.remoteAddr, client.localAddr);
  client.close();
  server.close();
});

Deno.test("MemoryTransport: options size the buffers of its connections", async () => {
  const transport = new MemoryTransport({ highWaterMark: 5, maxReadSize: 2 });
  await using listener = await transport.listen("h:1");
  const client = await transport.connect("h:1");
  const server = await listener.accept();
  assert.equal(await client.write(bytes(9)), 5);
  assert.equal(await server.read(new Uint8Array(9)), 2);
  client.close();
  server.close();
});

Deno.test("MemoryTransport: two listeners cannot share an address; registries are per transport", async () => {
  const transport = new MemoryTransport();
  await using _listener = await transport.listen("memory:9000");
  await assert.rejects(
    transport.listen("Memory:9000"),
    (e: unknown) => e instanceof ProtocolError && e.code === "AddressInUse",
  );
  const other = new MemoryTransport();
  await assert.rejects(
    other.connect("memory:9000"),
    (e: unknown) =>
      e instanceof ProtocolError && e.code === "ConnectionRefused" &&
      e.cause instanceof Deno.errors.ConnectionRefused,
  );
  await using _again = await other.listen("memory:9000");
});

Deno.test("MemoryTransport: closing a listener frees its address and ends pending accepts", async () => {
  const transport = new MemoryTransport();
  const listener = await transport.listen("memory:9001");
  const accepting = listener.accept();
  listener.close();
  listener.close(); // idempotent
  for (const op of [accepting, listener.accept()]) {
    await assert.rejects(
      op,
      (e: unknown) =>
        e instanceof ProtocolError && e.code === "ConnectionClosed" &&
        e.message === 'Listener on "memory:9001" is closed',
    );
  }
  await assert.rejects(
    transport.connect("memory:9001"),
    (e: unknown) => e instanceof ProtocolError && e.code === "ConnectionRefused",
  );
  await using _again = await transport.listen("memory:9001");
});

Deno.test("MemoryTransport: closing a listener resets connections it never accepted", async () => {
  const transport = new MemoryTransport();
  const listener = await transport.listen("memory:9002");
  const client = await transport.connect("memory:9002");
  listener.close();
  await assert.rejects(client.read(new Uint8Array(1)), Deno.errors.ConnectionReset);
  await assert.rejects(client.write(new Uint8Array(1)), Deno.errors.BrokenPipe);
  client.close();
});

Deno.test("MemoryTransport: iteration yields connections and ends when the listener closes", async () => {
  const transport = new MemoryTransport();
  const listener = await transport.listen("memory:9003");
  const clients = [await transport.connect("memory:9003"), await transport.connect("memory:9003")];
  const accepted: MemoryConn[] = [];
  const loop = (async () => {
    for await (const conn of listener) {
      accepted.push(conn);
      if (accepted.length === 2) listener.close();
    }
  })();
  await loop;
  assert.equal(accepted.length, 2);
  for (const conn of [...clients, ...accepted]) conn.close();
});

Deno.test("MemoryTransport: a listen signal closes the listener", async () => {
  const transport = new MemoryTransport();
  const controller = new AbortController();
  const listener = await transport.listen("memory:9004", { signal: controller.signal });
  const accepting = listener.accept();
  controller.abort();
  await assert.rejects(
    accepting,
    (e: unknown) => e instanceof ProtocolError && e.code === "ConnectionClosed",
  );
  await assert.rejects(transport.connect("memory:9004"), ProtocolError);
  const aborted = await transport.listen("memory:9004", { signal: controller.signal });
  await assert.rejects(aborted.accept(), ProtocolError);
  await using _free = await transport.listen("memory:9004");
});

Deno.test("MemoryTransport: absolute paths give Unix-like addresses", async () => {
  const transport = new MemoryTransport();
  await using listener = await transport.listen("/run/npro.sock");
  assert.deepEqual(listener.addr, { transport: "unix", path: "/run/npro.sock" });
  const client = await transport.connect("/run/npro.sock");
  const server = await listener.accept();
  assert.deepEqual(client.localAddr, { transport: "unix", path: "" });
  assert.deepEqual(server.remoteAddr, client.localAddr);
  assert.deepEqual(server.localAddr, listener.addr);
  client.close();
  server.close();
});

Deno.test("MemoryTransport: connect checks its arguments and honours an aborted signal", async () => {
  const transport = new MemoryTransport();
  await using _listener = await transport.listen("memory:9005");
  await assert.rejects(transport.connect("no-port"), TypeError);
  await assert.rejects(transport.connect("memory:0"), RangeError);
  await assert.rejects(transport.connect("memory:70000"), RangeError);
  await assert.rejects(transport.listen("memory"), TypeError);
  await assert.rejects(transport.listen(5 as unknown as string), TypeError);
  await assert.rejects(transport.connect("memory:9005", { timeoutMs: 0 }), RangeError);
  await assert.rejects(
    transport.connect("memory:9005", { signal: {} as AbortSignal }),
    TypeError,
  );
  await assert.rejects(
    transport.connect("memory:9005", { signal: AbortSignal.abort() }),
    (e: unknown) => e instanceof ProtocolError && e.code === "Cancelled",
  );
});

// ---------------------------------------------------------------------------------------------
// End to end: the daemon and the client over memory

Deno.test({
  name: "serve and connect over MemoryTransport: Noise handshake, request and response, no socket",
  sanitizeOps: true,
  sanitizeResources: true,
  async fn() {
    const transport = new MemoryTransport();
    const server = await serve(
      { transport, address: "memory:9000" },
      registerStandardHandlers(new Dispatcher()),
    );
    assert.ok(server.publicKey !== undefined, "secure mode: the server has a static key");
    const client = await connect({
      transport,
      address: "memory:9000",
      autoReconnect: false,
      security: { serverKeys: [server.publicKey] },
    });
    assert.deepEqual(client.remoteStaticKey, server.publicKey, "the Noise handshake authenticated");
    assert.deepEqual(await client.request({ type: "echo", text: "hi" }), {
      type: "echo",
      text: "hi",
    });
    assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
    assert.equal(server.connections.size, 1);
    await client.close();
    await server.shutdown();
    await server.closed();
  },
});

Deno.test("serve and connect over MemoryTransport with Unix-like paths", async () => {
  const transport = new MemoryTransport();
  const config = { transport: { kind: "unix" as const } };
  await using server = await serve(
    { transport, address: "/memory/npro.sock", config },
    registerStandardHandlers(new Dispatcher()),
  );
  assert.deepEqual(server.addr, { transport: "unix", path: "/memory/npro.sock" });
  await using client = await connect({
    transport,
    address: "/memory/npro.sock",
    config,
    autoReconnect: false,
    security: { serverKeys: [server.publicKey!] },
  });
  assert.deepEqual(await client.request({ type: "echo", text: "unix" }), {
    type: "echo",
    text: "unix",
  });
});

Deno.test("connect over MemoryTransport to a name nobody listens on fails with ConnectionRefused", async () => {
  await assert.rejects(
    connect({ transport: new MemoryTransport(), address: "memory:1", autoReconnect: false }),
    (e: unknown) => e instanceof ProtocolError && e.code === "ConnectionRefused",
  );
});

Deno.test("a large response crosses a small memory buffer, driven by backpressure", async () => {
  const transport = new MemoryTransport({ highWaterMark: 1024, maxReadSize: 333 });
  await using server = await serve(
    { transport, address: "memory:9000" },
    registerStandardHandlers(new Dispatcher()),
  );
  await using client = await connect({
    transport,
    address: "memory:9000",
    autoReconnect: false,
    security: { serverKeys: [server.publicKey!] },
  });
  const text = "x".repeat(200_000);
  assert.deepEqual(await client.request({ type: "echo", text }), { type: "echo", text });
});

Deno.test("the client sees its connection end when the server's memory connection is reset", async () => {
  const inner = new MemoryTransport();
  const accepted: MemoryConn[] = [];
  // A transport wrapper that keeps the server ends, to inject a fault under the daemon.
  const transport: Transport = {
    kind: "memory",
    connect: (address, options) => inner.connect(address, options),
    listen: async (address, options) => {
      const listener = await inner.listen(address, options);
      return {
        get addr() {
          return listener.addr;
        },
        accept: async () => {
          const conn = await listener.accept();
          accepted.push(conn);
          return conn;
        },
        close: () => listener.close(),
        async *[Symbol.asyncIterator]() {
          for (;;) {
            try {
              const conn = await listener.accept();
              accepted.push(conn);
              yield conn;
            } catch {
              return;
            }
          }
        },
        [Symbol.asyncDispose]: () => listener[Symbol.asyncDispose](),
      };
    },
  };
  await using server = await serve(
    { transport, address: "memory:9000" },
    registerStandardHandlers(new Dispatcher()),
  );
  await using client = await connect({
    transport,
    address: "memory:9000",
    autoReconnect: false,
    security: { serverKeys: [server.publicKey!] },
  });
  assert.deepEqual(await client.request({ type: "ping" }), { type: "pong" });
  assert.equal(accepted.length, 1);
  accepted[0]!.reset();
  const error = await client.closed();
  assert.ok(error instanceof ProtocolError, `closed with ${String(error)}`);
  assert.equal(error.code, "ConnectionClosed");
  assert.equal(client.isClosed, true);
});

Deno.test("server: a listener that fails to accept stops the server; closed() says why", async () => {
  const memory = new MemoryTransport();
  const failing: Transport = {
    kind: memory.kind,
    connect: (address, options) => memory.connect(address, options),
    listen: async (address, options) => {
      const listener = await memory.listen(address, options);
      let calls = 0;
      return Object.assign(Object.create(listener), {
        addr: listener.addr,
        accept: () =>
          ++calls === 1
            ? Promise.reject(new Deno.errors.BadResource("listener broke"))
            : listener.accept(),
        close: () => listener.close(),
      });
    },
  };
  const server = await serve(
    { address: "memory:9100", transport: failing },
    new Dispatcher(),
  );
  const error = await server.closed();
  assert.ok(error instanceof ProtocolError);
  assert.equal(error.code, "ConnectionClosed");
  assert.match(error.message, /listener failed \(listener broke\)/);
  assert.equal(server.isClosed, true);
  await server.shutdown();
});
