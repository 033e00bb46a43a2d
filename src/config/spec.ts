/**
 * The shape of the schema table's entries: one kind of entry per kind of value (integer,
 * string, boolean, array of strings), each with its default, its limits, its description and
 * the modules that read it; and {@linkcode KeyInfo}, an entry with its derived names.
 *
 * @module
 */

import type { NetworkConfig } from "./types.ts";

/** The name of a section, as in TOML. */
export type SectionName = keyof NetworkConfig;

/** The kinds of value a key holds. */
export type ValueKind = "string" | "integer" | "boolean" | "strings";

/** Units shown after numbers in messages, comments and docs. */
export type Unit = "ms" | "bytes";

/** A string rule that needs more than a list of values. */
export type StringFormat =
  /** `host:port`, `[ipv6]:port` (port 0 allowed), or an absolute path for Unix sockets. */
  | "listen-address"
  /** `host:port`, `[ipv6]:port` (port 1..65535), or an absolute path for Unix sockets. */
  | "connect-address"
  /** Empty, or a host name or IP address. */
  | "host-name";

interface BaseSpec<T> {
  /** The default value. */
  readonly default: T;
  /** One or two sentences for the annotated TOML and the docs. */
  readonly description: string;
  /**
   * The modules (paths under `src/`, outside `src/config/`) that read the key to do what it
   * configures. tests/config_schema_test.ts checks that each of them reads it, so a key that
   * nothing uses cannot go unnoticed.
   */
  readonly readBy: readonly string[];
}

/** An integer key. */
export interface IntegerSpec extends BaseSpec<number> {
  /** The kind of value. */
  readonly kind: "integer";
  /** Smallest value (inclusive). */
  readonly min: number;
  /** Largest value (inclusive). */
  readonly max: number;
  /** Unit of the value. */
  readonly unit?: Unit;
  /** 0 is accepted too, and turns the feature off. */
  readonly zeroDisables?: boolean;
  /** Written in octal (file modes): `0o600` in TOML, `600` or `0o600` in the environment. */
  readonly octal?: boolean;
}

/** A string key. */
export interface StringSpec<T extends string = string> extends BaseSpec<T> {
  /** The kind of value. */
  readonly kind: "string";
  /** The allowed values, when the key is an enumeration. */
  readonly values?: readonly T[];
  /** Values accepted but not listed in messages and docs (synonyms). */
  readonly unlisted?: readonly T[];
  /** Values are compared without regard to case. */
  readonly caseInsensitive?: boolean;
  /** A rule the text must follow. */
  readonly format?: StringFormat;
  /** Length limits, in UTF-16 code units. */
  readonly length?: { readonly min: number; readonly max: number };
}

/** A boolean key. */
export interface BooleanSpec extends BaseSpec<boolean> {
  /** The kind of value. */
  readonly kind: "boolean";
}

/** An array-of-strings key. */
export interface StringsSpec<T extends string = string> extends BaseSpec<T[]> {
  /** The kind of value. */
  readonly kind: "strings";
  /** The values an item may take. */
  readonly values?: readonly T[];
  /** Items are base64url X25519 public keys. */
  readonly keys?: boolean;
  /** Length limits of each item, in UTF-8 bytes. */
  readonly itemBytes?: { readonly min: number; readonly max: number };
  /** No item may appear twice. */
  readonly unique?: boolean;
}

/** The entry of one key, chosen by the type of its property. */
export type KeySpec<T> = [T] extends [number] ? IntegerSpec
  : [T] extends [boolean] ? BooleanSpec
  : [T] extends [string] ? StringSpec<T>
  : [T] extends [(infer U extends string)[]] ? StringsSpec<U>
  : never;

/** Any entry of the table. */
export type AnySpec = IntegerSpec | StringSpec | BooleanSpec | StringsSpec;

/** The table of one section: one entry per property of its interface, in order. */
export type SectionSchema<C> = { readonly [K in keyof C]-?: KeySpec<C[K]> };

/** A key of the table with its names. */
export type KeyInfo = AnySpec & {
  /** Its section. */
  readonly section: SectionName;
  /** The TypeScript property (`backpressureLimit`). */
  readonly property: string;
  /** The TOML name inside the section (`backpressure_limit`). */
  readonly name: string;
  /** `section.name`, the name used in messages (`server.backpressure_limit`). */
  readonly path: string;
  /** The environment variable (`NETWORK_PROTOCOL_SERVER_BACKPRESSURE_LIMIT`). */
  readonly env: string;
};
