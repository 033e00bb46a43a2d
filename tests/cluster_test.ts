/**
 * Cluster peer monitoring with five members in five processes on loopback (docs/CLUSTER.md,
 * "Tested behaviour"): a SIGKILLed node is declared dead by every other within the bound; a
 * SIGSTOPped node is suspected and refutes on SIGCONT without being declared dead; a node whose
 * event loop is blocked for 2 s declares no one dead; a one-way blackhole between two nodes is
 * bridged by indirect probes; a restarted node comes back as a new incarnation.
 */

import assert from "node:assert/strict";
import {
  BlackholeProxy,
  NodeProcess,
  nodeSpecs,
  type ProbeSettings,
  until,
} from "./_cluster_procs.ts";

const SETTINGS: ProbeSettings = {
  probeIntervalMs: 200,
  probeTimeoutMs: 100,
  indirectProbes: 3,
  suspicionMultiplier: 15,
};
// memberlist's rule: 15 x max(1, log10 5) x 200 ms.
const SUSPICION_MS = 3000;
// docs/CLUSTER.md, "Detection bound": one probe interval until the next probe, the direct and
// the indirect probe timeouts, then the suspicion timeout.
const BOUND_MS = SETTINGS.probeIntervalMs + 3 * SETTINGS.probeTimeoutMs + SUSPICION_MS;
// Scheduling slack on a shared, loaded machine (the bound is for a healthy observer).
const SLACK_MS = 2000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test({
  name: "cluster: five processes: stop, block, blackhole, kill, restart",
  sanitizeOps: true,
  sanitizeResources: true,
  fn: async (t) => {
    const specs = nodeSpecs(5);
    const [s0, s1] = [specs[0]!, specs[1]!];
    // n0 reaches n1 through a proxy that drops everything n1 sends back to n0.
    const proxy = new BlackholeProxy(s1.port);
    const nodes: NodeProcess[] = [];
    try {
      for (const spec of specs) {
        nodes.push(
          new NodeProcess(
            spec,
            specs,
            SETTINGS,
            (peer) =>
              spec === s0 && peer === s1 ? `127.0.0.1:${proxy.port}` : `127.0.0.1:${peer.port}`,
          ),
        );
      }
      const [n0, n1, n2, n3] = [nodes[0]!, nodes[1]!, nodes[2]!, nodes[3]!];
      const converged = (list: NodeProcess[], expected: number) =>
        list.every((node) => {
          const view = Object.values(node.view());
          return view.length === expected && view.every((p) => p.state === "alive" && p.seen);
        });
      await until(() => converged(nodes, 4), 30_000, "every node sees four alive peers");

      await t.step("a SIGSTOPped node is suspected and refutes on SIGCONT", async () => {
        const stoppedAt = Date.now();
        n2.signal("SIGSTOP");
        await sleep(1200);
        n2.signal("SIGCONT");
        const others = nodes.filter((n) => n !== n2);
        await until(
          () =>
            others.every((n) =>
              n.about("n2", "alive").some((l) => l.t >= stoppedAt && l.from === "suspect")
            ),
          SUSPICION_MS + 5000,
          "every other node saw n2 refute",
        );
        for (const n of others) {
          assert.ok(
            n.about("n2", "suspect").some((l) => l.t >= stoppedAt),
            `${n.spec.id} suspected n2`,
          );
          assert.deepEqual(n.about("n2", "dead"), [], `${n.spec.id} never declared n2 dead`);
          const refuted = n.about("n2", "alive").find((l) => l.t >= stoppedAt)!;
          assert.ok(refuted.incarnation! > 0, "n2 refuted with a higher incarnation");
        }
      });

      await t.step("a node whose event loop is blocked for 2 s declares no one dead", async () => {
        const blockedAt = Date.now();
        await n3.command("block 2000");
        await until(() => n3.lines.some((l) => l.type === "unblocked"), 10_000, "n3 unblocked");
        // Past the suspicion timeout of anything suspected during the block.
        await sleep(SUSPICION_MS + 1000);
        assert.deepEqual(n3.lines.filter((l) => l.type === "dead"), [], "n3 declared no one dead");
        assert.ok(
          n3.lines.some((l) =>
            l.type === "local-health" && l.stalledMs! >= 1000 && l.t >= blockedAt
          ),
          "n3 noticed its own stall",
        );
        await until(() => converged([n3], 4), 10_000, "n3 sees four alive peers again");
      });

      await t.step(
        "a SIGKILLed node is declared dead by every other within the bound",
        async () => {
          const n4 = nodes[4]!;
          const killedAt = Date.now();
          n4.signal("SIGKILL");
          await n4.status;
          const others = nodes.slice(0, 4);
          await until(
            () => others.every((n) => n.about("n4", "dead").some((l) => l.t >= killedAt)),
            BOUND_MS + SLACK_MS + 3000,
            "every other node declared n4 dead",
          );
          const times = others.map((n) =>
            n.about("n4", "dead").find((l) => l.t >= killedAt)!.t - killedAt
          );
          console.log(`SIGKILL detected after ${times.join(", ")} ms (bound ${BOUND_MS} ms)`);
          for (const ms of times) assert.ok(ms <= BOUND_MS + SLACK_MS, `detected in ${ms} ms`);
        },
      );

      await t.step("a restarted node comes back as a new incarnation", async () => {
        const old = nodes[4]!;
        const oldBoot = old.lines.find((l) => l.type === "ready")!.bootId;
        await old.stop();
        const restartedAt = Date.now();
        const again = new NodeProcess(specs[4]!, specs, SETTINGS);
        nodes[4] = again;
        const others = nodes.slice(0, 4);
        await until(
          () =>
            others.every((n) =>
              n.about("n4", "updated").some((l) =>
                l.t >= restartedAt && l.reason === "restarted"
              ) &&
              n.about("n4", "alive").some((l) => l.t >= restartedAt)
            ),
          20_000,
          "every other node saw n4 restart",
        );
        const newBoot = again.lines.find((l) => l.type === "ready")!.bootId;
        assert.notEqual(newBoot, oldBoot);
        for (const n of others) {
          const updated = n.about("n4", "updated").find((l) => l.t >= restartedAt)!;
          assert.equal(updated.bootId, newBoot);
        }
      });

      await t.step("a one-way blackhole is bridged by indirect probes", () => {
        // n0's probes to n1 went through the proxy all along and were never answered directly.
        console.log(
          `blackholed path: n0 suspected n1 ${n0.about("n1", "suspect").length} times, ` +
            `declared it dead ${n0.about("n1", "dead").length} times`,
        );
        assert.deepEqual(n0.about("n1", "dead"), [], "n0 never declared n1 dead");
        assert.equal(n0.view()["n1"]?.state, "alive");
        assert.ok(n0.view()["n1"]?.seen, "n0 heard from n1 (through other nodes)");
        assert.deepEqual(n1.about("n0", "dead"), [], "n1 never declared n0 dead");
      });
    } finally {
      await Promise.all(nodes.map((node) => node.stop()));
      await proxy.close();
    }
  },
});
