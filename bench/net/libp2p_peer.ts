/**
 * The js-libp2p-noise peer of the network benchmark (issue 12, item 6): `@chainsafe/libp2p-noise`
 * (its only pattern, Noise XX, with the libp2p identity payload: an Ed25519 signature over the
 * static key, checked by the other side) over plain `node:net` TCP sockets on 127.0.0.1, with
 * TCP_NODELAY on both ends.
 *
 * js-libp2p-noise secures a libp2p `MultiaddrConnection` (a `MessageStream`). Its own TCP
 * transport (`@libp2p/tcp`) wraps a `node:net` socket in a subclass of `@libp2p/utils`'
 * `AbstractMultiaddrConnection` that it does not export, and the transport itself needs a whole
 * libp2p node; {@linkcode SocketConnection} below is the same adapter, written here: socket data
 * goes to `onData()`, `sendData()` writes to the socket, `drain`, `end` and `close` map to the
 * stream's events, and closing ends the socket. Stream-muxer negotiation is skipped
 * (`skipStreamMuxerNegotiation`), as libp2p does when no muxer is configured.
 *
 * On the secured stream the peer speaks the raw baselines' framing (`common.ts`): a 4-byte
 * big-endian length whose top bit asks for an empty frame as the reply (the one-way bulk measure)
 * instead of a copy (an echo).
 *
 * Only the benchmark's server and client processes of kind `peer-libp2p-noise` import this module
 * (dynamically), and they need `--allow-env`: `@libp2p/logger`'s `weald` lists every environment
 * variable (`Object.keys(process.env)`) when it is imported.
 *
 * @module
 */

import { noise } from "@chainsafe/libp2p-noise";
import { generateKeyPair, publicKeyFromProtobuf, publicKeyToProtobuf } from "@libp2p/crypto/keys";
import type { ConnectionEncrypter, MessageStream, PeerId, PrivateKey } from "@libp2p/interface";
import { defaultLogger } from "@libp2p/logger";
import { peerIdFromPrivateKey, peerIdFromPublicKey } from "@libp2p/peer-id";
import { AbstractMultiaddrConnection, ipPortToMultiaddr } from "@libp2p/utils";
import { createConnection, createServer, type Socket } from "node:net";
import { ACK_ONLY, MAX_RAW_FRAME } from "./common.ts";

type SendData = Parameters<AbstractMultiaddrConnection["sendData"]>[0];

/**
 * A `node:net` socket as a libp2p `MultiaddrConnection`: the adapter `@libp2p/tcp` uses
 * (`TCPSocketMultiaddrConnection`), without its inactivity timeout (a benchmark's idle periods
 * are not failures).
 */
class SocketConnection extends AbstractMultiaddrConnection {
  readonly #socket: Socket;

  constructor(socket: Socket, direction: "inbound" | "outbound") {
    const log = defaultLogger().forComponent(`bench:libp2p:${direction}`);
    super({
      remoteAddr: ipPortToMultiaddr(socket.remoteAddress ?? "127.0.0.1", socket.remotePort ?? 0),
      direction,
      log,
    });
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.onData(chunk));
    socket.on("error", (error: Error) => this.abort(error));
    socket.once("end", () => this.onTransportClosed());
    socket.once("close", (hadError: boolean) => {
      if (hadError) this.abort(new Error("TCP transmission error"));
      else this.onTransportClosed();
    });
    socket.on("drain", () => this.safeDispatchEvent("drain"));
  }

  override sendData(data: SendData): { sentBytes: number; canSendMore: boolean } {
    let sentBytes = 0;
    let canSendMore = true;
    for (const buf of data) {
      sentBytes += buf.byteLength;
      canSendMore = this.#socket.write(buf);
      if (!canSendMore) break;
    }
    return { sentBytes, canSendMore };
  }

  override async sendClose(): Promise<void> {
    if (this.#socket.destroyed) return;
    const closed = new Promise<void>((resolve) => this.#socket.once("close", () => resolve()));
    this.#socket.destroySoon();
    await closed;
  }

  override sendReset(): void {
    this.#socket.destroy();
  }

  override sendPause(): void {
    this.#socket.pause();
  }

  override sendResume(): void {
    this.#socket.resume();
  }
}

/** A libp2p identity and the Noise encrypter built on it. */
interface Peer {
  peerId: PeerId;
  privateKey: PrivateKey;
  encrypter: ConnectionEncrypter;
}

async function makePeer(): Promise<Peer> {
  const privateKey = await generateKeyPair("Ed25519");
  const peerId = peerIdFromPrivateKey(privateKey);
  const encrypter = noise()({
    privateKey,
    peerId,
    logger: defaultLogger(),
    // Only consulted for early stream-muxer negotiation, which the benchmark skips.
    upgrader: { getStreamMuxers: () => new Map() } as never,
  });
  return { peerId, privateKey, encrypter };
}

const SKIP_MUXER = { skipStreamMuxerNegotiation: true } as const;
const EMPTY_FRAME = new Uint8Array(4);

/**
 * Answers raw frames arriving on a secured stream: an empty frame for an ack-only frame, a copy
 * otherwise; the replies of one arrival go out in one `send()`.
 */
function answerFrames(stream: MessageStream): void {
  const header = new Uint8Array(4);
  let headerBytes = 0;
  let remaining = 0;
  let ackOnly = false;
  let body: Uint8Array | undefined;
  let bodyAt = 0;
  stream.addEventListener("message", (event) => {
    const replies: Uint8Array[] = [];
    const data = event.data;
    for (const chunk of data instanceof Uint8Array ? [data] : data) {
      let at = 0;
      while (at < chunk.length) {
        if (headerBytes < 4) {
          header[headerBytes++] = chunk[at++]!;
          if (headerBytes < 4) continue;
          const word = new DataView(header.buffer).getUint32(0);
          remaining = (word & 0x7fffffff) >>> 0;
          if (remaining > MAX_RAW_FRAME) {
            stream.abort(new RangeError(`Frame of ${remaining} bytes is too large`));
            return;
          }
          ackOnly = (word & ACK_ONLY) !== 0;
          body = ackOnly ? undefined : new Uint8Array(4 + remaining);
          bodyAt = 4;
          body?.set(header);
        }
        const take = Math.min(remaining, chunk.length - at);
        body?.set(chunk.subarray(at, at + take), bodyAt);
        bodyAt += take;
        at += take;
        remaining -= take;
        if (remaining === 0) {
          replies.push(body ?? EMPTY_FRAME);
          headerBytes = 0;
        }
      }
    }
    if (replies.length === 1) stream.send(replies[0]!);
    else if (replies.length > 1) stream.send(concat(replies));
  });
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A running js-libp2p-noise server. */
export interface Libp2pServer {
  /** `host:port`. */
  address: string;
  /** The server's identity key (libp2p protobuf encoding), for the client to pin. */
  identityKey: Uint8Array;
  /** Open TCP connections (handshaking or secured). */
  connections(): number;
  /** Stops listening and drops every connection. */
  stop(): Promise<void>;
}

/**
 * Listens on `address` (`host:port`): every accepted socket gets TCP_NODELAY, then
 * `secureInbound()`, then the frame answerer.
 */
export async function startLibp2pServer(address: string): Promise<Libp2pServer> {
  const peer = await makePeer();
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    const connection = new SocketConnection(socket, "inbound");
    peer.encrypter.secureInbound(connection, SKIP_MUXER).then(
      (secured) => answerFrames(secured.connection),
      () => socket.destroy(),
    );
  });
  const index = address.lastIndexOf(":");
  const hostname = address.slice(0, index);
  await new Promise<void>((resolve) =>
    server.listen(Number(address.slice(index + 1)), hostname, resolve)
  );
  const bound = server.address() as { address: string; port: number };
  return {
    address: `${bound.address}:${bound.port}`,
    identityKey: publicKeyToProtobuf(peer.privateKey.publicKey),
    connections: () => sockets.size,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
        setTimeout(resolve, 1000);
      }),
  };
}

/** A js-libp2p-noise client that pins the server's identity key. */
export interface Libp2pClient {
  /** Connects (TCP_NODELAY), runs the XX handshake and returns the secured stream. */
  open(): Promise<MessageStream>;
}

/** Makes a client identity and the connector to `address`. */
export async function libp2pClient(
  address: string,
  identityKey: Uint8Array,
): Promise<Libp2pClient> {
  const peer = await makePeer();
  const remotePeer = peerIdFromPublicKey(publicKeyFromProtobuf(identityKey));
  const index = address.lastIndexOf(":");
  const host = address.slice(0, index);
  const port = Number(address.slice(index + 1));
  return {
    async open() {
      const socket = createConnection({ host, port, noDelay: true });
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", () => resolve());
        socket.once("error", reject);
      });
      socket.setNoDelay(true);
      const connection = new SocketConnection(socket, "outbound");
      try {
        const secured = await peer.encrypter.secureOutbound(connection, {
          ...SKIP_MUXER,
          remotePeer,
        });
        return secured.connection;
      } catch (error) {
        socket.destroy();
        throw error;
      }
    },
  };
}

/** One full XX handshake, then the stream is closed (the handshake measure). */
export async function libp2pHandshake(client: Libp2pClient): Promise<void> {
  const stream = await client.open();
  await stream.close();
}

/**
 * One-way bulk on one secured stream: `size`-byte ack-only frames, between `window / 2` and
 * `window` in flight (written `window / 2` at a time as one buffer, as the raw client does),
 * each answered by an empty frame.
 *
 * @param countWindow Warms up, then measures how far the progress counter moves.
 * @returns What `countWindow` returned.
 */
export async function libp2pBulk(
  client: Libp2pClient,
  size: number,
  window: number,
  countWindow: (progress: () => number) => Promise<{ rate: number; count: number }>,
): Promise<{ rate: number; count: number }> {
  const stream = await client.open();
  const half = Math.max(1, Math.floor(window / 2));
  const chunk = new Uint8Array(half * (4 + size));
  const view = new DataView(chunk.buffer);
  for (let i = 0; i < half; i++) {
    view.setUint32(i * (4 + size), (size | ACK_ONLY) >>> 0);
    chunk.fill(i & 0xff, i * (4 + size) + 4, (i + 1) * (4 + size));
  }
  let sent = 0;
  let received = 0;
  let replyBytes = 0;
  let running = true;
  let failure: unknown;
  let wake: (() => void) | null = null;
  const poke = () => {
    const resolve = wake;
    wake = null;
    resolve?.();
  };
  stream.addEventListener("message", (event) => {
    replyBytes += event.data.byteLength;
    received = Math.floor(replyBytes / 4);
    if (sent - received <= half || (!running && received >= sent)) poke();
  });
  stream.addEventListener("close", (event) => {
    if (running || received < sent) failure ??= event.error ?? new Error("Stream closed");
    poke();
  });
  const writer = (async () => {
    while (running && failure === undefined) {
      if (sent - received > half) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      sent += half;
      if (!stream.send(chunk)) await stream.onDrain();
    }
    while (received < sent && failure === undefined) {
      await new Promise<void>((resolve) => (wake = resolve));
    }
  })();
  const result = await countWindow(() => received);
  running = false;
  poke();
  await writer;
  if (failure !== undefined) throw failure;
  await stream.close();
  return result;
}
