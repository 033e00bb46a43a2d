/**
 * The version `npro --version` prints. A test keeps it equal to deno.json's `version`.
 *
 * @module
 */

/** The package version. */
export const VERSION = "0.1.0";
