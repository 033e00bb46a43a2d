/**
 * {@linkcode loadConfig}: a configuration file (at most 1 MiB of UTF-8, within a time limit)
 * plus environment overrides.
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";
import { layerFromEnv, resolveEnv } from "./env.ts";
import { ConfigError } from "./error.ts";
import { buildConfig, parseConfig } from "./parse.ts";
import { quote } from "./text.ts";
import type { LoadConfigOptions, NetworkConfig, ParseConfigOptions } from "./types.ts";
import { errorMessage } from "../util/error_message.ts";

/**
 * Reads a TOML configuration file (or starts from the defaults when no path is given), layers
 * environment overrides over it and validates the result.
 *
 * @example Defaults plus environment
 * ```ts
 * import { loadConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = await loadConfig({ env: { NETWORK_PROTOCOL_SERVER_ADDRESS: "0.0.0.0:9100" } });
 * assert.equal(config.server.address, "0.0.0.0:9100");
 * ```
 *
 * @param options The file, environment overrides, an abort signal and a timeout.
 * @returns The validated configuration.
 * @throws {ConfigError} When the file is missing or unreadable, or the configuration is invalid.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<NetworkConfig> {
  if (options.path === undefined) {
    const problems: string[] = [];
    const envLayer = layerFromEnv(resolveEnv(options.env), problems);
    return buildConfig([envLayer], problems, "Configuration is invalid");
  }
  const path = options.path instanceof URL ? options.path : String(options.path);
  const name = path instanceof URL ? path.href : path;
  const text = await readBounded(path, name, options.signal, options.timeout ?? 10_000);
  const parseOptions: ParseConfigOptions = { source: name };
  if (options.env !== undefined) parseOptions.env = options.env;
  return parseConfig(text, parseOptions);
}

const MAX_CONFIG_BYTES = 1024 * 1024;

async function readBounded(
  path: string | URL,
  name: string,
  signal: AbortSignal | undefined,
  timeout: number,
): Promise<string> {
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new RangeError(
      `The timeout must be a positive number of milliseconds, found "${timeout}"`,
    );
  }
  signal?.throwIfAborted();
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ConfigError(`Configuration file ${quote(name)} does not exist`, [], {
        cause: error,
      });
    }
    throw new ConfigError(
      `Cannot open configuration file ${quote(name)}: ${errorMessage(error)}`,
      [],
      { cause: error },
    );
  }
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      file.close();
    }
  };
  let reason: "timeout" | "abort" | undefined;
  const onAbort = () => {
    reason ??= "abort";
    close();
  };
  const timer = setTimeout(() => {
    reason ??= "timeout";
    close();
  }, timeout);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const chunks: Uint8Array[] = [];
    let total = 0;
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      let n: number | null;
      try {
        n = await file.read(buffer);
      } catch (error) {
        if (reason === "abort") {
          throw new ProtocolError("Cancelled", `Reading ${quote(name)} was aborted`, {
            cause: signal?.reason,
          });
        }
        if (reason === "timeout") {
          throw new ProtocolError("Timeout", `Reading ${quote(name)} took over ${timeout} ms`);
        }
        throw new ConfigError(
          `Cannot read configuration file ${quote(name)}: ${errorMessage(error)}`,
          [],
          { cause: error },
        );
      }
      if (n === null) break;
      total += n;
      if (total > MAX_CONFIG_BYTES) {
        throw new ConfigError(
          `Configuration file ${quote(name)} is larger than the limit "${MAX_CONFIG_BYTES}" bytes`,
          [],
        );
      }
      chunks.push(buffer.slice(0, n));
    }
    if (reason === "abort") {
      throw new ProtocolError("Cancelled", `Reading ${quote(name)} was aborted`, {
        cause: signal?.reason,
      });
    }
    const bytes = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, offset);
      offset += chunk.length;
    }
    try {
      return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
    } catch (error) {
      throw new ConfigError(`Configuration file ${quote(name)} is not valid UTF-8`, [], {
        cause: error,
      });
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    close();
  }
}
