/**
 * The `reusePort` listener of `TcpTransport`: a `node:net` server bound with `SO_REUSEPORT`, so
 * that several processes share one port without `--unstable-net` (Deno 2.9.6's
 * `Deno.listen({ reusePort: true })` exits the process with code 70 without that flag, while
 * `node:net` shares the port with no flag; research/wave2-design.md section 6.1). Accepted
 * sockets become `Deno.Conn`s through the adapter of the `node:tls` backend.
 *
 * @module
 */

import net from "node:net";
import { logger } from "../log.ts";
import { peerEvents } from "../log_budget.ts";
import { errorMessage } from "../util/error_message.ts";
import { waitAtMost } from "../util/async.ts";
import { acceptUntilClosed } from "./accept_loop.ts";
import { AcceptQueue } from "./accept_queue.ts";
import { checkNetPermission, nodeSocketConn } from "./tls_node.ts";
import type { Listener, TransportListenOptions } from "./types.ts";

const log = logger("transport", "tcp");

/** Connections accepted by the kernel but not yet by the caller, when no backlog is given. */
const DEFAULT_QUEUE = 511;

/** Converts a `node:net` listen error into the `Deno.errors` class `listenError` expects. */
function denoError(error: Error & { code?: string }): Error {
  switch (error.code) {
    case "EADDRINUSE":
      return new Deno.errors.AddrInUse(error.message);
    case "EACCES":
    case "EPERM":
      return new Deno.errors.PermissionDenied(error.message);
    default:
      return error;
  }
}

/**
 * Listens on `hostname:port` with `SO_REUSEPORT` through `node:net`. Accepted sockets get
 * `TCP_NODELAY` and keep-alive, as those of `Deno.listen` do in `TcpTransport`.
 *
 * @param hostname The host to bind.
 * @param port The port to bind (0 picks one; only a fixed port can be shared).
 * @param backlog The listen backlog, also the bound of accepted connections waiting for
 * `accept()` (beyond it, new ones are closed).
 * @param options A signal that closes the listener.
 * @returns The listener.
 * @throws {Deno.errors.AddrInUse} When a process holds the port without `SO_REUSEPORT`.
 * @throws {Deno.errors.NotCapable} Without `--allow-net` for the address.
 */
export async function listenReusePort(
  hostname: string,
  port: number,
  backlog: number | undefined,
  options: TransportListenOptions | undefined,
): Promise<Listener> {
  checkNetPermission(hostname, port);
  const server = net.createServer({ noDelay: true, keepAlive: true });
  const listener = new NodeTcpListener(server, backlog ?? DEFAULT_QUEUE, options?.signal);
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => {
      server.close();
      reject(denoError(error));
    };
    server.once("error", onError);
    server.listen({
      host: hostname,
      port,
      reusePort: true,
      ...(backlog === undefined ? {} : { backlog }),
    }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  listener.started();
  return listener;
}

class NodeTcpListener implements Listener {
  addr: Deno.NetAddr = { transport: "tcp", hostname: "0.0.0.0", port: 0 };
  readonly #server: net.Server;
  readonly #limit: number;
  readonly #signal: AbortSignal | undefined;
  readonly #accepted = new AcceptQueue<Deno.Conn>(() => this.addr);
  #serverClosed: Promise<void> | undefined;
  #onAbort = (): void => this.close();

  constructor(server: net.Server, limit: number, signal: AbortSignal | undefined) {
    this.#server = server;
    this.#limit = limit;
    this.#signal = signal;
    server.on("connection", (socket: net.Socket) => this.#onConnection(socket));
  }

  /** Called once the socket listens. */
  started(): void {
    const address = this.#server.address() as net.AddressInfo;
    this.addr = { transport: "tcp", hostname: address.address, port: address.port };
    this.#server.on("error", (error: Error) => {
      if (peerEvents.allow("TCP listener error")) {
        log.warn("TCP listener error: {error}", { error: errorMessage(error) });
      }
    });
    if (this.#signal?.aborted) this.close();
    else this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  #onConnection(socket: net.Socket): void {
    const accepted = this.#accepted;
    if (accepted.closed || (!accepted.waiting && accepted.length >= this.#limit)) {
      socket.destroy();
      return;
    }
    let conn: Deno.Conn;
    try {
      socket.setNoDelay(true);
      socket.setKeepAlive(true);
      conn = nodeSocketConn(socket);
    } catch {
      // The peer is already gone.
      socket.destroy();
      return;
    }
    accepted.deliver(conn);
  }

  accept(): Promise<Deno.Conn> {
    return this.#accepted.accept();
  }

  close(): void {
    if (this.#accepted.closed) return;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#serverClosed = new Promise((resolve) => this.#server.close(() => resolve()));
    this.#accepted.close();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Deno.Conn> {
    return acceptUntilClosed(() => this.accept(), () => this.#accepted.closed);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    // The listening socket closes at once; Node's "close" event also waits for the connections
    // already handed out, which belong to their owners.
    await waitAtMost(this.#serverClosed ?? Promise.resolve(), 100);
  }
}
