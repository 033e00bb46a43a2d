/**
 * A server process of the network benchmark: a raw baseline (Deno TCP, Unix or native TLS echo
 * with 4-byte length framing), this library's daemon (`serve()`), or the js-libp2p-noise peer
 * (`libp2p_peer.ts`, loaded only for that kind), chosen by `--kind`.
 *
 * It prints one JSON {@linkcode ReadyLine} on stdout when it listens, then obeys lines on stdin:
 * `rss` prints `{"rss": bytes, "connections": n}` after a garbage collection (when `--expose-gc`
 * is on), `heap <path>` writes a V8 heap snapshot there after the same collections, `cpu` prints
 * `{"cpuMs": n}` (user and system time of all its threads so far), `stop` shuts down. It also stops when stdin closes or after `--max-seconds`.
 *
 * Started by `bench/net/main.ts`; not meant to be run by hand.
 *
 * @module
 */

import {
  ACK_ONLY,
  isPeer,
  isRaw,
  lines,
  MAX_RAW_FRAME,
  parseArgs,
  type ReadyLine,
  type ServerKind,
  toHex,
  transportOf,
  writeAll,
} from "./common.ts";
import process from "node:process";
import { createServer as createTlsServer } from "node:tls";
import v8 from "node:v8";
import { Dispatcher, type Message, serve, type Server } from "../../mod.ts";
import { certificateFingerprint } from "../../src/transport/mod.ts";

const args = parseArgs(Deno.args);
const kind = args.get("kind") as ServerKind;
const address = args.get("address") ?? "127.0.0.1:0";
const maxSeconds = Number(args.get("max-seconds") ?? 900);
const certPath = args.get("cert");
const keyPath = args.get("key");

const EMPTY = new Uint8Array(0);
let connections = 0;
let stop: () => Promise<void>;
let ready: ReadyLine;

// ---------------------------------------------------------------------------------------------
// Raw baseline: one reused, adaptive read buffer per connection; every complete frame of a read
// goes through a per-frame handler that returns a copy of the payload (`slice()`, as a real
// handler produces a new value: the "dispatch" server of the research baselines, which DESIGN.md
// P3 is calibrated on); the replies of one read are encoded into one buffer and written with one
// write.

function handler(payload: Uint8Array): Uint8Array {
  return payload.slice();
}

/**
 * Answers every complete frame in `buffer` from `cursor.start` to `end` (the handler's copy, or
 * an empty frame for an ack-only one) and moves `cursor.start` past them.
 *
 * @returns The replies in one buffer, or `undefined` when no frame was complete.
 */
function answerFrames(
  buffer: Uint8Array,
  view: DataView,
  cursor: { start: number },
  end: number,
  replies: Uint8Array[],
): Uint8Array | undefined {
  let start = cursor.start;
  let replyBytes = 0;
  while (end - start >= 4) {
    const word = view.getUint32(start);
    const length = (word & 0x7fffffff) >>> 0;
    if (end - start < 4 + length) break;
    const reply = word & ACK_ONLY ? EMPTY : handler(buffer.subarray(start + 4, start + 4 + length));
    replies.push(reply);
    replyBytes += 4 + reply.length;
    start += 4 + length;
  }
  cursor.start = start;
  if (replies.length === 0) return undefined;
  const out = new Uint8Array(replyBytes);
  const outView = new DataView(out.buffer);
  let offset = 0;
  for (const reply of replies) {
    outView.setUint32(offset, reply.length);
    out.set(reply, offset + 4);
    offset += 4 + reply.length;
  }
  replies.length = 0;
  return out;
}

async function rawConnection(conn: Deno.Conn): Promise<void> {
  connections++;
  if (conn.localAddr.transport === "tcp" && "setNoDelay" in conn) {
    (conn as Deno.TcpConn).setNoDelay(true);
  }
  let buffer = new Uint8Array(4096);
  let view = new DataView(buffer.buffer);
  let start = 0;
  let end = 0;
  let grow = false;
  const replies: Uint8Array[] = [];
  const cursor = { start: 0 };
  try {
    for (;;) {
      if (end === buffer.length || (grow && start === 0)) {
        // Grow when the last read filled all the space it had (up to 256 KiB) or a frame needs
        // more room; otherwise move the partial frame to the front.
        const pending = end - start;
        const need = pending >= 4 ? 4 + ((view.getUint32(start) & 0x7fffffff) >>> 0) : 0;
        let size = grow && buffer.length < 256 * 1024 ? buffer.length * 2 : buffer.length;
        if (need > size) size = need;
        if (size > MAX_RAW_FRAME + 4) throw new RangeError(`Frame of ${need} bytes is too large`);
        if (size > buffer.length) {
          const next = new Uint8Array(size);
          next.set(buffer.subarray(start, end));
          buffer = next;
          view = new DataView(buffer.buffer);
        } else {
          buffer.copyWithin(0, start, end);
        }
        end = pending;
        start = 0;
      }
      const space = buffer.length - end;
      const n = await conn.read(buffer.subarray(end));
      if (n === null) break;
      grow = n === space;
      end += n;
      cursor.start = start;
      const out = answerFrames(buffer, view, cursor, end, replies);
      start = cursor.start;
      if (start === end) start = end = 0;
      if (out !== undefined) await writeAll(conn, out);
    }
  } catch {
    // The client went away.
  } finally {
    connections--;
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

function startRaw(): void {
  const transport = transportOf(kind);
  let listener: Deno.Listener;
  if (transport === "unix") {
    listener = Deno.listen({ transport: "unix", path: address });
  } else {
    const [hostname, port] = splitHostPort(address);
    listener = transport === "tls"
      ? Deno.listenTls({
        hostname,
        port,
        cert: Deno.readTextFileSync(certPath!),
        key: Deno.readTextFileSync(keyPath!),
      })
      : Deno.listen({ hostname, port });
  }
  const accepting = (async () => {
    try {
      for await (const conn of listener) void rawConnection(conn);
    } catch {
      // Listener closed.
    }
  })();
  const addr = listener.addr;
  ready = {
    address: addr.transport === "unix"
      ? addr.path
      : `${(addr as Deno.NetAddr).hostname}:${(addr as Deno.NetAddr).port}`,
    pid: Deno.pid,
  };
  stop = async () => {
    listener.close();
    await accepting;
  };
}

// ---------------------------------------------------------------------------------------------
// Raw TLS baseline with TCP_NODELAY on the server too: `Deno.listenTls` sockets cannot turn Nagle
// off, `node:tls` sockets can (`setNoDelay`). Same framing, handler and one write per batch of
// complete frames as the raw baseline above.

async function startNodeTls(): Promise<void> {
  const [hostname, port] = splitHostPort(address);
  const server = createTlsServer({
    cert: Deno.readTextFileSync(certPath!),
    key: Deno.readTextFileSync(keyPath!),
  }, (socket) => {
    socket.setNoDelay(true);
    connections++;
    let buffer = new Uint8Array(4096);
    let end = 0;
    const replies: Uint8Array[] = [];
    const cursor = { start: 0 };
    socket.on("data", (chunk: Uint8Array) => {
      if (end + chunk.length > buffer.length) {
        let size = buffer.length;
        while (size < end + chunk.length) size *= 2;
        if (size > 2 * (MAX_RAW_FRAME + 4)) {
          socket.destroy();
          return;
        }
        const next = new Uint8Array(size);
        next.set(buffer.subarray(0, end));
        buffer = next;
      }
      buffer.set(chunk, end);
      end += chunk.length;
      cursor.start = 0;
      const out = answerFrames(buffer, new DataView(buffer.buffer), cursor, end, replies);
      buffer.copyWithin(0, cursor.start, end);
      end -= cursor.start;
      if (out !== undefined) socket.write(out);
    });
    socket.on("error", () => {});
    socket.on("close", () => connections--);
  });
  await new Promise<void>((resolve) => server.listen(port, hostname, resolve));
  const bound = server.address() as { address: string; port: number };
  ready = { address: `${bound.address}:${bound.port}`, pid: Deno.pid };
  stop = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Connections a client left open do not hold the exit back.
      setTimeout(resolve, 1000);
    });
}

// ---------------------------------------------------------------------------------------------
// The library's daemon: a dispatcher with an echo handler ("E": answers with the message, whose
// payload the decoder already copied) and an ack handler ("A": answers with an empty message).

const ACK: Message = { type: "custom", command: "A", payload: EMPTY };
const BIG_REPLY: Message = { type: "custom", command: "BIG", payload: new Uint8Array(8 << 20) };

async function startLibrary(): Promise<void> {
  const dispatcher = new Dispatcher()
    .register("E", (message) => message)
    .register("A", () => ACK)
    // Head-of-line: an 8 MiB reply (the same buffer every time); numbered pings beside it are
    // answered by the connection itself.
    .register("BIG", () => BIG_REPLY)
    // Stream throughput: reads everything, then answers with the byte count.
    .registerStream("SINK", async (stream) => {
      let total = 0;
      for await (const chunk of stream.readable) total += chunk.length;
      const writer = stream.writable.getWriter();
      await writer.write(new TextEncoder().encode(String(total)));
      await writer.close();
    });
  const transport = transportOf(kind);
  const server: Server = await serve({
    address,
    config: {
      transport: {
        kind: transport,
        encryptionEnabled: kind.includes("noise"),
        tlsBackend: kind.startsWith("lib-node-") ? "node" : "auto",
      },
      // A capacity benchmark: every client comes from 127.0.0.1 and P6 measures how many
      // handshakes the server can do, so handshake admission (a defence, on by default) is off.
      server: {
        maxConnections: 20_000,
        maxHandshakes: 1024,
        handshakeRate: 0,
        handshakeRatePerAddress: 0,
      },
      logging: { logLevel: "error" },
      // `--resumption`: issue session tickets (P5c's resumed handshakes); off for every other run.
      // `--static-key <path>`: the key file that the worker processes of one run share.
      ...(args.has("resumption") || args.has("static-key")
        ? {
          security: {
            ...(args.has("resumption") ? { resumption: true } : {}),
            ...(args.has("static-key") ? { staticKeyPath: args.get("static-key")! } : {}),
          },
        }
        : {}),
    },
    // `--reuse-port`: one of the worker processes that share a port (SO_REUSEPORT).
    ...(args.has("reuse-port") ? { reusePort: true } : {}),
    ...(transport === "tls"
      ? {
        tls: {
          cert: { path: certPath! },
          key: { path: keyPath! },
          // Mutual TLS: the client presents the same (self-signed) certificate, pinned here.
          ...(kind === "lib-node-mtls"
            ? {
              clientAuth: "require" as const,
              clientCertFingerprints: [
                await certificateFingerprint(Deno.readTextFileSync(certPath!)),
              ],
            }
            : {}),
        },
      }
      : {}),
  }, dispatcher);
  const addr = server.addr;
  ready = {
    address: addr.transport === "unix"
      ? addr.path
      : `${(addr as Deno.NetAddr).hostname}:${(addr as Deno.NetAddr).port}`,
    pid: Deno.pid,
    ...(server.publicKey === undefined ? {} : { publicKey: toHex(server.publicKey) }),
  };
  stop = () => server.shutdown(2000);
  Object.defineProperty(globalThis, "benchConnections", {
    get: () => server.connections.size,
  });
}

// ---------------------------------------------------------------------------------------------
// The js-libp2p-noise peer (its packages need --allow-env, so only this kind imports them).

let peerConnections = () => 0;

async function startPeer(): Promise<void> {
  const { startLibp2pServer } = await import("./libp2p_peer.ts");
  const server = await startLibp2pServer(address);
  ready = { address: server.address, pid: Deno.pid, publicKey: toHex(server.identityKey) };
  peerConnections = server.connections;
  stop = server.stop;
}

function splitHostPort(value: string): [string, number] {
  const index = value.lastIndexOf(":");
  return [value.slice(0, index).replace(/^\[|\]$/g, ""), Number(value.slice(index + 1))];
}

function connectionCount(): number {
  if (isRaw(kind)) return connections;
  if (isPeer(kind)) return peerConnections();
  return (globalThis as unknown as { benchConnections: number }).benchConnections;
}

if (kind === "raw-node-tls") await startNodeTls();
else if (isRaw(kind)) startRaw();
else if (isPeer(kind)) await startPeer();
else await startLibrary();

const deadline = setTimeout(() => {
  console.error(`server ${kind}: ran for ${maxSeconds} s, stopping`);
  Deno.exit(3);
}, maxSeconds * 1000);
console.log(JSON.stringify(ready!));

for await (const line of lines(Deno.stdin.readable)) {
  if (line === "rss") {
    const gc = (globalThis as { gc?: () => void }).gc;
    for (let i = 0; i < 3; i++) gc?.();
    console.log(JSON.stringify({ ...Deno.memoryUsage(), connections: connectionCount() }));
  } else if (line.startsWith("heap ")) {
    // A V8 heap snapshot after the same collections as `rss` (bench/net/heap.ts reads it).
    const gc = (globalThis as { gc?: () => void }).gc;
    for (let i = 0; i < 3; i++) gc?.();
    const path = line.slice("heap ".length);
    v8.writeHeapSnapshot(path);
    console.log(JSON.stringify({ heap: path, connections: connectionCount() }));
  } else if (line === "cpu") {
    const { user, system } = process.cpuUsage();
    console.log(JSON.stringify({ cpuMs: (user + system) / 1000 }));
  } else if (line === "stop") {
    break;
  }
}
clearTimeout(deadline);
await stop!();
Deno.exit(0);
