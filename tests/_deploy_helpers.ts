/**
 * Helpers of the deployment tests (workers, HAProxy, nginx): free ports, the paths of the real
 * engines (a missing engine fails the test, it is never skipped), the lines of a child's output,
 * the `npro serve` command and HTTP reads of the admin endpoint.
 */

/**
 * The ports `fetch` refuses (the Fetch standard's "bad ports") from 1024 up: an admin endpoint on
 * one of them cannot be read by the tests. A port and the next one are kept clear of them, since
 * workers take consecutive admin ports.
 */
const BAD_PORTS = new Set([
  1719,
  1720,
  1723,
  2049,
  3659,
  4045,
  4190,
  5060,
  5061,
  6000,
  6566,
  6665,
  6666,
  6667,
  6668,
  6669,
  6679,
  6697,
  10080,
]);

/**
 * A free TCP port on 127.0.0.1 below the ephemeral range (so that no client takes it), neither it
 * nor the next one a port `fetch` refuses.
 */
export function freePort(): number {
  const [low] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/);
  const below = Math.max(2048, Number(low) - 1);
  for (let i = 0; i < 200; i++) {
    const port = 1024 + Math.floor(Math.random() * (below - 1024));
    if (BAD_PORTS.has(port) || BAD_PORTS.has(port + 1)) continue;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch {
      // In use: try another.
    }
  }
  throw new Error("No free port below the ephemeral range");
}

/** `count` distinct free ports. */
export function freePorts(count: number): number[] {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(freePort());
  return [...ports];
}

/** The first of `paths` that exists; fails with how to install `name` otherwise. */
export async function binary(name: string, paths: readonly string[]): Promise<string> {
  for (const path of paths) {
    try {
      await Deno.stat(path);
      return path;
    } catch {
      // Try the next.
    }
  }
  throw new Error(`${name} is not installed: run \`apt-get install -y ${name}\` (.ci/run does)`);
}

/** HAProxy's path (a missing HAProxy fails the test: .ci/run installs it). */
export function haproxyPath(): Promise<string> {
  return binary("haproxy", ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]);
}

/** Lines of a child's output, one at a time. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    for (let i = rest.indexOf("\n"); i >= 0; i = rest.indexOf("\n")) {
      yield rest.slice(0, i);
      rest = rest.slice(i + 1);
    }
  }
}

/** Reads lines until `done` says enough, within `timeoutMs`; returns every line read. */
export async function readUntil(
  output: AsyncGenerator<string>,
  done: (seen: readonly string[]) => boolean,
  timeoutMs: number,
): Promise<string[]> {
  const seen: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`No expected output within ${timeoutMs} ms: ${seen.join("\n")}`)),
      timeoutMs,
    );
  });
  try {
    while (!done(seen)) {
      const next = await Promise.race([output.next(), timeout]);
      if (next.done) throw new Error(`The output ended early:\n${seen.join("\n")}`);
      seen.push(next.value);
    }
    return seen;
  } finally {
    clearTimeout(timer);
  }
}

/** GET `url` with a time limit: the status and the body. */
export async function get(
  url: string,
  timeoutMs = 5000,
): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: response.status, body: await response.text() };
}

/** The value of an unlabelled metric in Prometheus text. */
export function metric(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`No metric "${name}" in:\n${text}`);
  return Number(line.slice(name.length + 1));
}

/** The path of src/cli/main.ts. */
export const CLI = new URL("../src/cli/main.ts", import.meta.url).pathname;

/** Waits `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sends `signal` to a child we started, ignoring that it may have ended. */
export function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal = "SIGKILL"): void {
  try {
    child.kill(signal);
  } catch {
    // Already ended.
  }
}
