/**
 * What the listeners built on a `node:net` server have in common (the `node:tls` backend and the
 * `reusePort` TCP listener): listening, the address, the error log, the abort signal, the queue of
 * accepted connections, close, iteration and disposal. A subclass turns the server's connection
 * events into connections and hands them to {@linkcode NodeServerListener.accepted}.
 *
 * @module
 */

import type net from "node:net";
import { logger } from "../log.ts";
import { peerEvents } from "../log_budget.ts";
import { waitAtMost } from "../util/async.ts";
import { errorMessage } from "../util/error_message.ts";
import { acceptUntilClosed } from "./accept_loop.ts";
import { AcceptQueue } from "./accept_queue.ts";
import type { Listener } from "./types.ts";

/** What {@linkcode NodeServerListener.listen} passes to `server.listen` besides host and port. */
export interface NodeListenOptions {
  /** The listen backlog. */
  backlog?: number | undefined;
  /** `SO_REUSEPORT`. */
  reusePort?: boolean;
}

/**
 * The common part of the `node:net`-based listeners.
 *
 * @example A listener that hands out every connection as it comes
 * ```ts ignore
 * class Plain extends NodeServerListener<Deno.Conn> {
 *   constructor(server: net.Server) {
 *     super(server, "TCP", undefined);
 *     server.on("connection", (socket) => this.accepted.deliver(nodeSocketConn(socket)));
 *   }
 * }
 * ```
 */
export abstract class NodeServerListener<C extends Deno.Conn> implements Listener {
  /** The address it listens on (set by {@linkcode NodeServerListener.listen}). */
  addr: Deno.NetAddr = { transport: "tcp", hostname: "0.0.0.0", port: 0 };
  /** Connections waiting for `accept()`. */
  protected readonly accepted: AcceptQueue<C> = new AcceptQueue<C>(() => this.addr);
  readonly #server: net.Server;
  readonly #what: string;
  readonly #log: ReturnType<typeof logger>;
  readonly #signal: AbortSignal | undefined;
  #serverClosed: Promise<void> | undefined;
  readonly #onAbort = (): void => this.close();

  /**
   * A listener over `server` (not listening yet).
   *
   * @param server The server.
   * @param what `"TCP"` or `"TLS"`, for the log.
   * @param signal Closes the listener when aborted.
   */
  constructor(server: net.Server, what: string, signal: AbortSignal | undefined) {
    this.#server = server;
    this.#what = what;
    this.#log = logger("transport", what.toLowerCase());
    this.#signal = signal;
  }

  /**
   * Listens, then records the address, logs later server errors (within the log budget) and
   * follows the abort signal. A failed listen closes the server.
   *
   * @param hostname The host.
   * @param port The port.
   * @param options The backlog and `reusePort`.
   * @param mapError Turns a listen error into the error thrown.
   */
  async listen(
    hostname: string,
    port: number,
    options: NodeListenOptions,
    mapError: (error: Error & { code?: string }) => Error = (error) => error,
  ): Promise<void> {
    const server = this.#server;
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        server.close();
        reject(mapError(error));
      };
      server.once("error", onError);
      server.listen({
        host: hostname,
        port,
        ...(options.reusePort === true ? { reusePort: true } : {}),
        ...(options.backlog === undefined ? {} : { backlog: options.backlog }),
      }, () => {
        server.off("error", onError);
        resolve();
      });
    });
    const address = server.address() as net.AddressInfo;
    this.addr = { transport: "tcp", hostname: address.address, port: address.port };
    server.on("error", (error: Error) => {
      if (peerEvents.allow(`${this.#what} listener error`)) {
        this.#log.warn("{what} listener error: {error}", {
          what: this.#what,
          error: errorMessage(error),
        });
      }
    });
    if (this.#signal?.aborted) this.close();
    else this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  accept(): Promise<Deno.Conn> {
    return this.accepted.accept();
  }

  /** Resolves when the server socket is closed (after `close()`). */
  closedPromise(): Promise<void> {
    return this.#serverClosed ?? Promise.resolve();
  }

  close(): void {
    if (this.accepted.closed) return;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#serverClosed = new Promise((resolve) => this.#server.close(() => resolve()));
    // Connections not handed out are dropped; handed-out ones belong to their owner.
    this.accepted.close();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Deno.Conn> {
    return acceptUntilClosed(() => this.accept(), () => this.accepted.closed);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    // The listening socket closes at once; Node's "close" event also waits for the connections
    // already handed out, which belong to their owners.
    await waitAtMost(this.closedPromise(), 100);
  }
}
