/**
 * The shape of a fuzz target. Every file in `fuzz/targets/` default-exports one.
 *
 * @module
 */

/** A fuzz target: `run` must throw nothing but `ProtocolError`, never hang, never grow without bound. */
export interface FuzzTarget {
  /** The target's name, used by `--target`. */
  name: string;
  /** Valid or interesting inputs that mutations start from. */
  seeds: Uint8Array[];
  /** Feeds one input to the code under test. */
  run(input: Uint8Array): void;
  /**
   * Counters the target updates while it runs (for example inputs that reached a parser and
   * inputs it rejected), so that a run shows how deep its inputs went. The engine sets them to
   * zero when a run starts and `deno task fuzz` prints them.
   */
  counters?: Record<string, number>;
}
