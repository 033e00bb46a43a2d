/**
 * The deployment examples of examples/deploy/, run for real (issue 16): the daemons use
 * config.toml, HAProxy 2.6 runs haproxy.cfg and nginx runs nginx.conf, with only their ports and
 * paths replaced here. kubernetes.yaml cannot run here (no cluster): it is parsed and checked
 * against the daemon configuration it embeds.
 *
 * - A drain under load through HAProxy: SIGTERM to one of two back ends while a pool sends
 *   requests through HAProxy; none is lost and none runs twice (the back ends count executions).
 * - nginx `stream` with `proxy_protocol on;` carries a request to the daemon, which sees the
 *   client's own address.
 *
 * HAProxy and nginx must be installed (`.ci/run` installs them with apt-get): a missing one fails
 * the test; it is never skipped.
 */

import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { parseConfig } from "../src/config/parse.ts";
import { createPool } from "../src/service/pool.ts";
import { connect } from "../src/service/client.ts";
import { generateKeyPair, writeKeyFile } from "../src/secure/keys.ts";
import {
  binary,
  freePorts,
  get,
  haproxyPath,
  killQuietly,
  lines,
  readUntil,
  sleep,
} from "./_deploy_helpers.ts";

const EXAMPLES = new URL("../examples/deploy/", import.meta.url);
const BACKEND = new URL("./_deploy_backend.ts", import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Replaces each key of `replacements` in `text`, every one of which must occur. */
function template(text: string, replacements: Record<string, string>): string {
  for (const [from, to] of Object.entries(replacements)) {
    assert.ok(text.includes(from), `the example no longer contains "${from}"`);
    text = text.replaceAll(from, to);
  }
  return text;
}

/** A back end: tests/_deploy_backend.ts on examples/deploy/config.toml with its own ports. */
class Backend {
  readonly child: Deno.ChildProcess;
  readonly output: AsyncGenerator<string>;
  readonly name: string;

  constructor(name: string, port: number, admin: number, keyFile: string, dir: string) {
    this.name = name;
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-net=127.0.0.1",
        `--allow-read=${EXAMPLES.pathname},${dir}`,
        "--allow-env=NETWORK_PROTOCOL_*",
        BACKEND,
        name,
        `${EXAMPLES.pathname}config.toml`,
      ],
      env: {
        NO_COLOR: "1",
        NETWORK_PROTOCOL_SERVER_ADDRESS: `127.0.0.1:${port}`,
        NETWORK_PROTOCOL_ADMIN_ADDRESS: `127.0.0.1:${admin}`,
        NETWORK_PROTOCOL_SECURITY_STATIC_KEY_PATH: keyFile,
        NETWORK_PROTOCOL_LOGGING_LOG_LEVEL: "warn",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.output = lines(this.child.stdout);
  }

  async ready(): Promise<void> {
    await readUntil(this.output, (seen) => seen.some((l) => l.includes('"ready":true')), 60_000);
  }

  /** The request ids it ran, printed when it stops. */
  async executed(): Promise<string[]> {
    const seen = await readUntil(
      this.output,
      (s) => s.some((l) => l.startsWith('{"executed"')),
      60_000,
    );
    return JSON.parse(seen.find((l) => l.startsWith('{"executed"'))!).executed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    killQuietly(this.child);
    await this.output.return(undefined);
    await this.child.status;
  }
}

/** Lines of a child's stderr with the time each was read, collected in the background. */
function collect(stream: ReadableStream<Uint8Array>) {
  const seen: { at: number; line: string }[] = [];
  const done = (async () => {
    for await (const line of lines(stream)) seen.push({ at: performance.now(), line });
  })();
  return { seen, done };
}

async function makeKey(dir: string) {
  const key = generateKeyPair();
  const keyFile = `${dir}/key.json`;
  await writeKeyFile(keyFile, key);
  return { key, keyFile };
}

Deno.test("deploy: the daemon configuration of examples/deploy is valid and sets what the balancers need", async () => {
  const text = await Deno.readTextFile(new URL("config.toml", EXAMPLES));
  const config = parseConfig(text);
  assert.equal(config.server.proxyProtocol, true);
  assert.deepEqual(config.server.trustedProxies, ["127.0.0.1"]);
  assert.equal(config.admin.address, "127.0.0.1:9100");
  // HAProxy takes a draining daemon out after fall x inter = 2 x 250 ms: the grace is longer.
  const haproxy = await Deno.readTextFile(new URL("haproxy.cfg", EXAMPLES));
  const inter = Number(/inter (\d+)ms/.exec(haproxy)?.[1]);
  const fall = Number(/fall (\d+)/.exec(haproxy)?.[1]);
  assert.ok(config.server.drainGrace > inter * fall, `${config.server.drainGrace} ms grace`);
  assert.match(haproxy, /option httpchk GET \/readyz/);
  assert.match(haproxy, /server b1 127\.0\.0\.1:9000 check port 9100/);
});

Deno.test("deploy: SIGTERM to one of two daemons behind HAProxy under load: /readyz 503, HAProxy takes it out, no request lost or run twice", async () => {
  const haproxyBinary = await haproxyPath();
  const dir = await Deno.makeTempDir();
  const [front, port1, admin1, port2, admin2] = freePorts(5) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const { key, keyFile } = await makeKey(dir);
  const cfg = template(await Deno.readTextFile(new URL("haproxy.cfg", EXAMPLES)), {
    "127.0.0.1:8443": `127.0.0.1:${front}`,
    "127.0.0.1:9000 check port 9100": `127.0.0.1:${port1} check port ${admin1}`,
    "127.0.0.1:9001 check port 9101": `127.0.0.1:${port2} check port ${admin2}`,
  });
  await Deno.writeTextFile(`${dir}/haproxy.cfg`, cfg);
  await using b1 = new Backend("b1", port1, admin1, keyFile, dir);
  await using b2 = new Backend("b2", port2, admin2, keyFile, dir);
  await Promise.all([b1.ready(), b2.ready()]);
  const haproxy = new Deno.Command(haproxyBinary, {
    args: ["-f", `${dir}/haproxy.cfg`, "-db"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = collect(haproxy.stderr);
  const pool = createPool({
    address: `127.0.0.1:${front}`,
    security: { serverKeys: [key.publicKey] },
    minConnections: 4,
    maxConnections: 8,
    retry: { maxAttempts: 5 },
    healthCheck: { idleMs: 0, intervalMs: 0 },
  });
  try {
    // HAProxy serves once a request goes through (it may close connections while it starts).
    for (let i = 0;; i++) {
      try {
        await pool.request({ type: "custom", command: "WHO", payload: new Uint8Array() });
        break;
      } catch (error) {
        if (i >= 50) throw error;
        await sleep(100);
      }
    }
    // The load: 16 loops of WORK requests, each with a new id, until told to stop.
    const sent = new Set<string>();
    const answered = new Map<string, string>();
    const failed = new Map<string, unknown>();
    let running = true;
    let next = 0;
    const loops = Array.from({ length: 16 }, async () => {
      while (running) {
        const id = String(next++);
        sent.add(id);
        try {
          const reply = await pool.request(
            { type: "custom", command: "WORK", payload: encoder.encode(id) },
            { timeoutMs: 30_000 },
          ) as { payload: Uint8Array };
          answered.set(id, decoder.decode(reply.payload).split(" ")[0]!);
        } catch (error) {
          failed.set(id, error);
        }
      }
    });
    await sleep(1000);
    const before = new Set(answered.values());
    const sigterm = performance.now();
    b1.child.kill("SIGTERM");
    let notReadyAt = Infinity;
    for (let i = 0; i < 200 && notReadyAt === Infinity; i++) {
      try {
        if ((await get(`http://127.0.0.1:${admin1}/readyz`, 2000)).status === 503) {
          notReadyAt = performance.now();
        }
      } catch {
        break; // The endpoint is gone: the drain is over.
      }
      await sleep(20);
    }
    const b1Status = await b1.child.status;
    const b1Exit = performance.now();
    // The load goes on, on b2 alone, for a moment.
    const answeredAtExit = answered.size;
    await sleep(500);
    running = false;
    await Promise.all(loops);
    const executed1 = await b1.executed();
    b2.child.kill("SIGTERM");
    const executed2 = await b2.executed();
    assert.equal((await b2.child.status).code, 0);

    const failures = [...failed.values()].slice(0, 3).map(String);
    assert.equal(failed.size, 0, `${failed.size} requests failed: ${failures}`);
    assert.equal(answered.size, sent.size);
    assert.deepEqual(before, new Set(["b1", "b2"]), "both back ends served before the drain");
    assert.ok(answered.size > answeredAtExit, "requests went on after b1 stopped");
    // None lost, none run twice: every request ran exactly once, where its answer came from.
    const runs = new Map<string, string[]>();
    for (const [name, ids] of [["b1", executed1], ["b2", executed2]] as const) {
      for (const id of ids) runs.set(id, [...(runs.get(id) ?? []), name]);
    }
    const twice = [...runs].filter(([, names]) => names.length > 1);
    assert.deepEqual(twice, [], "requests run more than once");
    assert.equal(runs.size, sent.size, "every request ran");
    for (const [id, from] of answered) assert.deepEqual(runs.get(id), [from]);
    // The drain: /readyz turned 503, HAProxy took b1 out before it stopped, and b1 exited 0.
    assert.equal(b1Status.code, 0);
    assert.ok(notReadyAt < b1Exit, "b1's /readyz was 503 before it exited");
    const down = log.seen.find((l) => /Server npro\/b1 is DOWN/.test(l.line));
    assert.ok(
      down !== undefined && down.at < b1Exit,
      `HAProxy took b1 out before it exited: ${log.seen.map((l) => l.line).join("\n")}`,
    );
    console.log(
      `${sent.size} requests, b1 ran ${executed1.length}, b2 ${executed2.length}; ` +
        `${pool.stats().retries} retried after GOAWAY; /readyz 503 after ` +
        `${Math.round(notReadyAt - sigterm)} ms, HAProxy DOWN after ` +
        `${Math.round(down.at - sigterm)} ms, b1 exited after ${Math.round(b1Exit - sigterm)} ms`,
    );
  } finally {
    await pool.close();
    killQuietly(haproxy, "SIGTERM");
    await haproxy.status;
    await log.done;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deploy: nginx stream with proxy_protocol on carries requests to the daemons, which see the client's own address", async () => {
  const nginxBinary = await binary("nginx", ["/usr/sbin/nginx", "/usr/bin/nginx"]);
  const dir = await Deno.makeTempDir();
  const [front, port1, admin1, port2, admin2] = freePorts(5) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const { key, keyFile } = await makeKey(dir);
  const conf = template(await Deno.readTextFile(new URL("nginx.conf", EXAMPLES)), {
    "127.0.0.1:8443": `127.0.0.1:${front}`,
    "127.0.0.1:9000": `127.0.0.1:${port1}`,
    "127.0.0.1:9001": `127.0.0.1:${port2}`,
    "/run/nginx-npro.pid": `${dir}/nginx.pid`,
    "/var/log/nginx/npro-error.log": `${dir}/error.log`,
  });
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  await using b1 = new Backend("b1", port1, admin1, keyFile, dir);
  await using b2 = new Backend("b2", port2, admin2, keyFile, dir);
  await Promise.all([b1.ready(), b2.ready()]);
  // A child of this test (daemon off), its prefix, pid and logs in the temporary directory.
  const nginx = new Deno.Command(nginxBinary, {
    args: [
      "-p",
      `${dir}/`,
      "-c",
      `${dir}/nginx.conf`,
      "-e",
      `${dir}/error.log`,
      "-g",
      "daemon off;",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const messages = collect(nginx.stderr);
  try {
    const who = async () => {
      await using client = await connect({
        address: `127.0.0.1:${front}`,
        security: { serverKeys: [key.publicKey] },
        autoReconnect: false,
      });
      const reply = await client.request(
        { type: "custom", command: "WHO", payload: new Uint8Array() },
      ) as { payload: Uint8Array };
      const local = client.connection!.localAddr as Deno.NetAddr;
      return { seen: decoder.decode(reply.payload), own: `127.0.0.1:${local.port}` };
    };
    // nginx serves once a request goes through (at most 5 s).
    for (let i = 0;; i++) {
      try {
        await who();
        break;
      } catch (error) {
        if (i >= 50) {
          const log = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
          throw new Error(`nginx did not carry a request: ${error}\n${log}`, { cause: error });
        }
        await sleep(100);
      }
    }
    for (let i = 0; i < 4; i++) {
      const { seen, own } = await who();
      // The PROXY v1 header nginx wrote names this client's own socket, not nginx's.
      assert.equal(seen, own);
    }
  } finally {
    killQuietly(nginx, "SIGTERM");
    await nginx.status;
    await messages.done;
    await Deno.remove(dir, { recursive: true });
  }
});

// Kubernetes manifests, as far as they are read here.
interface Probe {
  httpGet: { path: string; port: string | number };
  periodSeconds: number;
  failureThreshold: number;
}
interface Container {
  name: string;
  command: string[];
  ports: { name: string; containerPort: number }[];
  readinessProbe: Probe;
  livenessProbe: Probe;
  lifecycle: { preStop: { sleep: { seconds: number } } };
  volumeMounts: { name: string; mountPath: string; subPath?: string }[];
}
interface Manifest {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec: {
    template: {
      spec: {
        terminationGracePeriodSeconds: number;
        containers: Container[];
        volumes: { name: string; configMap?: { name: string }; secret?: { secretName: string } }[];
      };
    };
    ports: { port: number; targetPort: string | number }[];
  };
}

Deno.test("deploy: kubernetes.yaml (not run on a cluster) agrees with the daemon configuration it carries", async () => {
  const text = await Deno.readTextFile(new URL("kubernetes.yaml", EXAMPLES));
  const documents = parseAllDocuments(text);
  for (const document of documents) assert.deepEqual(document.errors, []);
  const manifests = documents.map((d) => d.toJS() as Manifest);
  const of = (kind: string) => {
    const found = manifests.filter((m) => m.kind === kind);
    assert.equal(found.length, 1, `one ${kind}`);
    return found[0]!;
  };
  const configMap = of("ConfigMap");
  const deployment = of("Deployment");
  const service = of("Service");
  // The embedded configuration is valid, as npro serve reads it.
  const config = parseConfig(configMap.data!["config.toml"]!);
  const pod = deployment.spec.template.spec;
  const container = pod.containers.find((c) => c.name === "npro")!;
  const portNamed = (name: string | number) =>
    typeof name === "number" ? name : container.ports.find((p) => p.name === name)!.containerPort;
  const portOf = (address: string) => Number(address.slice(address.lastIndexOf(":") + 1));
  // Probes: /readyz and /livez on the admin port, never on the protocol port.
  assert.equal(container.readinessProbe.httpGet.path, "/readyz");
  assert.equal(container.livenessProbe.httpGet.path, "/livez");
  assert.equal(portNamed(container.readinessProbe.httpGet.port), portOf(config.admin.address));
  assert.equal(portNamed(container.livenessProbe.httpGet.port), portOf(config.admin.address));
  assert.equal(portNamed("npro"), portOf(config.server.address));
  assert.equal(portNamed(service.spec.ports[0]!.targetPort), portOf(config.server.address));
  // The same ports as the host example (config.toml), on the pod's own address, not loopback,
  // for the Service and the kubelet.
  const host = parseConfig(await Deno.readTextFile(new URL("config.toml", EXAMPLES)));
  assert.equal(portOf(config.server.address), portOf(host.server.address));
  assert.equal(portOf(config.admin.address), portOf(host.admin.address));
  assert.match(config.server.address, /^0\.0\.0\.0:/);
  assert.match(config.admin.address, /^0\.0\.0\.0:/);
  // The kubelet's SIGKILL comes after preStop, the grace and the shutdown, with a margin.
  const preStopMs = container.lifecycle.preStop.sleep.seconds * 1000;
  const needed = preStopMs + config.server.drainGrace + config.server.shutdownTimeout;
  assert.ok(
    pod.terminationGracePeriodSeconds * 1000 >= needed + 5000,
    `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} s against ${needed} ms`,
  );
  // Readiness fails within the grace: the Service stops sending before the daemon stops accepting.
  const readiness = container.readinessProbe;
  assert.ok(
    readiness.periodSeconds * readiness.failureThreshold * 1000 <= config.server.drainGrace,
  );
  // The command reads the mounted configuration; the key path is on a mounted volume.
  const configPath = container.command[container.command.indexOf("--config") + 1]!;
  const configMount = container.volumeMounts.find((m) => m.mountPath === configPath)!;
  assert.equal(configMount.subPath, "config.toml");
  assert.equal(
    pod.volumes.find((v) => v.name === configMount.name)?.configMap?.name,
    configMap.metadata.name,
  );
  const keyPath = config.security.staticKeyPath;
  assert.ok(
    container.volumeMounts.some((m) => keyPath.startsWith(`${m.mountPath}/`)),
    `static_key_path "${keyPath}" is on a mounted volume`,
  );
});
