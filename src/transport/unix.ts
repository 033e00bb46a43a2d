/**
 * Unix domain socket transport, with safe recovery of stale socket files and a configurable file
 * mode.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { listenError, withDeadline, wrapListener } from "./tcp.ts";
import { closeQuietly } from "../util/resource.ts";
import type {
  Listener,
  Transport,
  TransportConnectOptions,
  TransportListenOptions,
} from "./types.ts";

/** The default file mode of a listening socket: only the owner may connect. */
export const DEFAULT_UNIX_SOCKET_MODE = 0o600;

/** How long the stale-file probe waits for a connection to an existing socket file. */
const PROBE_TIMEOUT_MS = 1000;

/** Options of {@linkcode UnixTransport}. */
export interface UnixTransportOptions {
  /**
   * The permission bits of the socket file, applied with `Deno.chmod` right after it is
   * created. Connecting needs write permission on the file.
   *
   * @default {0o600}
   */
  mode?: number;
}

function checkPath(path: string): string {
  if (typeof path !== "string") {
    throw new TypeError(`Unix socket path must be a string, got "${typeof path}"`);
  }
  if (!path.startsWith("/")) {
    throw new TypeError(`Unix socket path "${path}" is not absolute`);
  }
  if (path.includes("\0")) throw new TypeError(`Unix socket path "${path}" contains a NUL byte`);
  // sun_path holds 108 bytes on Linux and 104 on the BSDs and macOS, NUL included.
  const limit = Deno.build.os === "linux" ? 107 : 103;
  const length = new TextEncoder().encode(path).length;
  if (length > limit) {
    throw new RangeError(
      `Unix socket path "${path}" is "${length}" bytes long and exceeds the limit "${limit}"`,
    );
  }
  return path;
}

/**
 * Unix domain sockets (POSIX only). Listening on a path where a socket file already exists first
 * probes it: when nothing answers (the file was left behind by a process that died), the file
 * is removed and reused; when a process answers, listening fails and the live socket is left
 * alone; a path that is not a socket is never touched. The socket file gets mode `0o600` unless
 * configured otherwise, and is removed when the listener closes.
 *
 * Needs `--allow-read=<path> --allow-write=<path>` and, from Deno 2.9 on,
 * `--allow-net=unix:<path>`.
 *
 * @example Round trip over a Unix socket
 * ```ts
 * import { UnixTransport } from "@npro/network-protocol/transport";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/npro.sock`;
 * const unix = new UnixTransport();
 * const listener = await unix.listen(path);
 * assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
 * const client = await unix.connect(path);
 * const server = await listener.accept();
 * await client.write(new Uint8Array([42]));
 * const buffer = new Uint8Array(1);
 * await server.read(buffer);
 * assert.equal(buffer[0], 42);
 * client.close();
 * server.close();
 * listener.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class UnixTransport implements Transport {
  /** Always `"unix"`. */
  readonly kind: "unix" = "unix";
  #mode: number;

  /**
   * Creates a Unix socket transport.
   *
   * @param options The file mode of listening sockets.
   * @throws {ProtocolError} code `ConfigError` on Windows, where Deno has no Unix sockets.
   */
  constructor(options: UnixTransportOptions = {}) {
    if (Deno.build.os === "windows") {
      throw new ProtocolError(
        "ConfigError",
        `Unix sockets are not available on "windows"; use the "tcp" or "tls" transport`,
      );
    }
    const mode = options.mode ?? DEFAULT_UNIX_SOCKET_MODE;
    if (!Number.isInteger(mode)) throw new TypeError(`mode must be an integer, got "${mode}"`);
    if (mode < 0 || mode > 0o777) {
      throw new RangeError(`mode "0o${mode.toString(8)}" is outside the range 0o0 to 0o777`);
    }
    this.#mode = mode;
  }

  /**
   * Listens on an absolute socket path.
   *
   * @param path The socket path.
   * @param options A signal that closes the listener.
   * @returns The listener; closing it removes the socket file.
   * @throws {ProtocolError} code `AddressInUse` when another process listens on the path,
   * `PermissionDenied` when the directory is not writable (or a Deno permission is missing),
   * `ConfigError` when the path is not a socket or the socket cannot be created otherwise.
   */
  async listen(path: string, options?: TransportListenOptions): Promise<Listener> {
    checkPath(path);
    await removeStaleSocket(path);
    let inner: Deno.UnixListener;
    try {
      inner = Deno.listen({ transport: "unix", path });
    } catch (error) {
      throw listenError(path, error);
    }
    try {
      await Deno.chmod(path, this.#mode);
    } catch (error) {
      closeQuietly(inner);
      throw listenError(path, error);
    }
    return wrapListener(inner, undefined, options);
  }

  /**
   * Connects to the socket at an absolute path.
   *
   * @param path The socket path.
   * @param options A signal and a time limit (default 5000 ms).
   * @returns The connection.
   * @throws {ProtocolError} code `ConnectionRefused` when nothing listens on the socket,
   * `PermissionDenied` without write permission on the socket file (or a Deno permission),
   * `ConnectionClosed` when the path does not exist, `Timeout` or `Cancelled`.
   */
  connect(path: string, options?: TransportConnectOptions): Promise<Deno.Conn> {
    try {
      checkPath(path);
    } catch (error) {
      return Promise.reject(error);
    }
    // Deno.connect for Unix sockets takes no signal; a Unix connect never waits for the
    // network, so the deadline only has to close a connection that arrives too late.
    return withDeadline(
      `Connecting to "${path}"`,
      options,
      () => Deno.connect({ transport: "unix", path }),
      closeQuietly,
    );
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw listenError(path, error);
  }
  if (info.isSocket !== true) {
    throw new ProtocolError(
      "ConfigError",
      `Cannot listen on "${path}": the path exists and is not a socket`,
    );
  }
  try {
    const probe = await withDeadline(
      `Probing "${path}"`,
      { timeoutMs: PROBE_TIMEOUT_MS },
      () => Deno.connect({ transport: "unix", path }),
      closeQuietly,
    );
    closeQuietly(probe);
  } catch (error) {
    const cause = error instanceof ProtocolError ? error.cause : error;
    if (cause instanceof Deno.errors.ConnectionRefused) {
      // Nobody listens: a file left behind by a process that died. Reuse the path.
      try {
        await Deno.remove(path);
      } catch (removeError) {
        if (!(removeError instanceof Deno.errors.NotFound)) throw listenError(path, removeError);
      }
      return;
    }
    if (cause instanceof Deno.errors.NotFound) return;
    const denied = error instanceof ProtocolError && error.code === "PermissionDenied";
    throw new ProtocolError(
      denied ? "PermissionDenied" : "ConfigError",
      `Cannot listen on "${path}": the existing socket could not be probed${
        denied ? " (permission denied)" : ""
      }, so it is left alone`,
      { cause: error },
    );
  }
  throw new ProtocolError(
    "AddressInUse",
    `Cannot listen on "${path}": the address is already in use by a live listener`,
  );
}
