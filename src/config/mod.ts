/**
 * Configuration: defaults, TOML files, environment overrides and validation.
 *
 * A configuration has six sections (`server`, `client`, `transport`, `security`, `compression`,
 * `logging`). Every key has a default, so any partial TOML file (even an empty one) is valid.
 * Values are layered: defaults, then the TOML file, then `NETWORK_PROTOCOL_<SECTION>_<KEY>`
 * environment variables. Problems are reported all at once, each with the TOML line or the
 * environment variable it came from. See `docs/CONFIGURATION.md` for every key.
 *
 * TOML and environment names are snake_case (`server.backpressure_limit`,
 * `NETWORK_PROTOCOL_SERVER_BACKPRESSURE_LIMIT`); the TypeScript properties are camelCase
 * (`config.server.backpressureLimit`). Durations are integer milliseconds, sizes are bytes.
 *
 * The files, by concern: `types.ts` (the interfaces); `schema.ts` (the one table of keys that
 * the defaults, the checks, the environment names, the annotated TOML and the tables of
 * docs/CONFIGURATION.md are generated from) with `spec.ts` (the shape of its entries) and
 * `defaults.ts`; the sources `toml.ts` (with line numbers), `env.ts` and `options.ts` (the
 * `createConfig` object), layered by `layers.ts`, `parse.ts` and `load.ts`; the checks
 * `validate.ts`, `address.ts` and `warnings.ts`; annotated TOML in `example.ts` and `save.ts`;
 * `error.ts` and `text.ts` for the messages.
 *
 * @example Parse a partial file
 * ```ts
 * import { parseConfig } from "@npro/network-protocol";
 * import assert from "node:assert/strict";
 *
 * const config = parseConfig('[server]\naddress = "0.0.0.0:7000"\n');
 * assert.equal(config.server.address, "0.0.0.0:7000");
 * assert.equal(config.server.backpressureLimit, 32);
 * ```
 *
 * @module
 */

export { ConfigError } from "./error.ts";
export { defaultConfig } from "./defaults.ts";
export { configEnvNames } from "./env.ts";
export { createConfig, parseConfig } from "./parse.ts";
export { loadConfig } from "./load.ts";
export { saveConfig } from "./save.ts";
export { exampleConfig, stringifyConfig } from "./example.ts";
export { validateConfig } from "./validate.ts";
export { configWarnings } from "./warnings.ts";
export type {
  AdminConfig,
  ClientConfig,
  ClusterConfig,
  CompressionConfig,
  ConfigEnv,
  HandshakePatternName,
  LoadConfigOptions,
  LoggingConfig,
  LogLevelName,
  MultiplexConfig,
  NetworkConfig,
  NetworkConfigInput,
  ParseConfigOptions,
  PoolConfig,
  SaveConfigOptions,
  SecurityConfig,
  ServerConfig,
  TransportConfig,
} from "./types.ts";
