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
import { NodeServerListener } from "./node_listener.ts";
import { checkNetPermission, nodeSocketConn } from "./tls_node.ts";
import type { Listener, TransportListenOptions } from "./types.ts";

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
  await listener.listen(hostname, port, { backlog, reusePort: true }, denoError);
  return listener;
}

class NodeTcpListener extends NodeServerListener<Deno.Conn> {
  readonly #limit: number;

  constructor(server: net.Server, limit: number, signal: AbortSignal | undefined) {
    super(server, "TCP", signal);
    this.#limit = limit;
    server.on("connection", (socket: net.Socket) => this.#onConnection(socket));
  }

  #onConnection(socket: net.Socket): void {
    const accepted = this.accepted;
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
}
