import assert from "node:assert/strict";
import { getConfig, getLogger, reset, withContext } from "@logtape/logtape";
import { defaultConfig, type LoggingConfig } from "../src/config/mod.ts";
import { LOG_CATEGORY, logger } from "../src/log.ts";
import { setupLogging, toLogLevel } from "../src/log_setup.ts";
import { isProtocolError } from "../src/errors.ts";

function logging(overrides: Partial<LoggingConfig> = {}): LoggingConfig {
  return { ...defaultConfig().logging, ...overrides };
}

Deno.test("a library logger logs nothing until logging is configured", async () => {
  await reset();
  assert.equal(getConfig(), null);
  const calls: string[] = [];
  const saved = {
    stderr: Deno.stderr.writeSync,
    stdout: Deno.stdout.writeSync,
    log: console.log,
    info: console.info,
    warn: console.warn,
    error: console.error,
    debug: console.debug,
  };
  const spy = (name: string) => (...args: unknown[]) => {
    calls.push(name);
    return (args[0] as Uint8Array | undefined)?.length ?? 0;
  };
  Deno.stderr.writeSync = spy("stderr");
  Deno.stdout.writeSync = spy("stdout");
  console.log = spy("log");
  console.info = spy("info");
  console.warn = spy("warn");
  console.error = spy("error");
  console.debug = spy("debug");
  try {
    const log = logger("core");
    log.trace("trace");
    log.debug("debug");
    log.info("info {x}", { x: 1 });
    log.warn("warn");
    log.error("error", { error: new Error("boom") });
    log.fatal("fatal");
    withContext({ connId: 1 }, () => log.error("in context"));
  } finally {
    Object.assign(Deno.stderr, { writeSync: saved.stderr });
    Object.assign(Deno.stdout, { writeSync: saved.stdout });
    Object.assign(console, {
      log: saved.log,
      info: saved.info,
      warn: saved.warn,
      error: saved.error,
      debug: saved.debug,
    });
  }
  assert.deepEqual(calls, []);

  // Once configured, the same logger does log.
  const lines: string[] = [];
  await using _ = await setupLogging(logging(), { write: (line) => lines.push(line) });
  logger("core").error("now visible");
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /now visible/);
});

Deno.test("logger categories and level names", () => {
  assert.equal(LOG_CATEGORY, "npro");
  assert.deepEqual(logger("secure").category, ["npro", "secure"]);
  assert.deepEqual(logger("service", "pool").category, ["npro", "service", "pool"]);
  assert.equal(toLogLevel("trace"), "trace");
  assert.equal(toLogLevel("debug"), "debug");
  assert.equal(toLogLevel("Info"), "info");
  assert.equal(toLogLevel("warn"), "warning");
  assert.equal(toLogLevel("WARNING"), "warning");
  assert.equal(toLogLevel("error"), "error");
  assert.equal(toLogLevel("fatal"), "fatal");
  assert.throws(() => toLogLevel("loud"), RangeError);
});

Deno.test("level filtering", async () => {
  const lines: string[] = [];
  {
    await using _ = await setupLogging(logging({ logLevel: "warn" }), {
      write: (line) => lines.push(line),
    });
    const log = logger("daemon");
    log.trace("t");
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    log.fatal("f");
    getLogger(["elsewhere"]).error("not routed");
  }
  assert.deepEqual(lines.map((l) => /\[(\w+)\]/.exec(l)?.[1]), ["WRN", "ERR", "FTL"]);
  assert.ok(lines.every((l) => l.includes("npro.daemon")));

  lines.length = 0;
  {
    await using _ = await setupLogging(logging({ logLevel: "trace" }), {
      write: (line) => lines.push(line),
    });
    logger("daemon").trace("t");
  }
  assert.equal(lines.length, 1);
  // After disposal nothing is logged any more.
  logger("daemon").fatal("gone");
  assert.equal(lines.length, 1);
  assert.equal(getConfig(), null);
});

Deno.test("JSON Lines output shape", async () => {
  const lines: string[] = [];
  {
    await using _ = await setupLogging(
      logging({ jsonFormat: true, appName: "svc", logLevel: "debug" }),
      { write: (line) => lines.push(line), categories: [["app", "http"]] },
    );
    logger("conn").with({ connId: 42 }).warn("handshake slow: {ms}ms", { ms: 123 });
    withContext({ requestId: "r1" }, () => logger("conn").debug("in context"));
    getLogger(["svc"]).info("app category");
    getLogger(["app", "http"]).info("extra category");
  }
  assert.equal(lines.length, 4);
  for (const line of lines) {
    assert.ok(line.endsWith("\n"));
    assert.equal(line.indexOf("\n"), line.length - 1, "one line per record");
  }
  const first = JSON.parse(lines[0]!);
  assert.deepEqual(Object.keys(first), [
    "app",
    "@timestamp",
    "level",
    "message",
    "logger",
    "properties",
  ]);
  assert.equal(first.app, "svc");
  assert.equal(first.level, "WARN");
  assert.equal(first.message, "handshake slow: 123ms");
  assert.equal(first.logger, "npro.conn");
  assert.deepEqual(first.properties, { connId: 42, ms: 123 });
  assert.ok(!Number.isNaN(Date.parse(first["@timestamp"])));
  const second = JSON.parse(lines[1]!);
  assert.equal(second.level, "DEBUG");
  assert.deepEqual(second.properties, { requestId: "r1" });
  assert.equal(JSON.parse(lines[2]!).logger, "svc");
  assert.equal(JSON.parse(lines[3]!).logger, "app.http");
});

Deno.test("file sink appends, and disposal closes the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "npro_log_" });
  try {
    const path = `${dir}/npro.log`;
    await Deno.writeTextFile(path, "existing\n");
    const console: string[] = [];
    {
      await using _ = await setupLogging(
        logging({ logToFile: true, logFilePath: path, logToConsole: false, jsonFormat: true }),
        { write: (line) => console.push(line) },
      );
      logger("daemon").info("to the file {n}", { n: 1 });
      logger("daemon").debug("filtered");
    }
    // The resource sanitizer fails this test if the file is still open here.
    const text = await Deno.readTextFile(path);
    const lines = text.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, 2);
    assert.equal(lines[0], "existing");
    assert.equal(JSON.parse(lines[1]!).message, "to the file 1");
    assert.deepEqual(console, []);
    if (Deno.build.os !== "windows") {
      const created = `${dir}/new.log`;
      {
        await using _ = await setupLogging(logging({ logToFile: true, logFilePath: created }), {
          write: () => {},
        });
        logger("x").info("hello");
      }
      assert.equal((await Deno.stat(created)).mode! & 0o777 & ~0o640, 0, "mode within 0o640");
      assert.match(await Deno.readTextFile(created), /\[INF\] npro\.x: hello\n$/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("setupLogging is re-entrant: a new setup replaces the old one and releases its file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "npro_log_" });
  try {
    const first: string[] = [];
    const second: string[] = [];
    const a = await setupLogging(logging({ logToFile: true, logFilePath: `${dir}/a.log` }), {
      write: (l) => first.push(l),
    });
    logger("x").info("one");
    const b = await setupLogging(logging(), { write: (l) => second.push(l) });
    logger("x").info("two");
    // Disposing the replaced handle must not tear down the current configuration.
    await a[Symbol.asyncDispose]();
    logger("x").info("three");
    await b[Symbol.asyncDispose]();
    logger("x").info("four");
    assert.equal(first.length, 1);
    assert.deepEqual(second.map((l) => l.trim().split(": ").at(-1)), ["two", "three"]);
    assert.match(await Deno.readTextFile(`${dir}/a.log`), /one\n$/);
    assert.equal(getConfig(), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("setupLogging rejects invalid sections and unopenable files", async () => {
  for (
    const bad of [
      logging({ logLevel: "loud" as "info" }),
      logging({ logToFile: true }),
      logging({ logToConsole: false }),
      logging({ logToFile: true, logFilePath: "/nonexistent-dir/npro/x.log" }),
    ]
  ) {
    await assert.rejects(setupLogging(bad, { write: () => {} }), (error) => {
      assert.ok(isProtocolError(error, "ConfigError"), String(error));
      return true;
    });
  }
  assert.equal(getConfig(), null);
});

Deno.test("the meta logger reports at warning to the same outputs", async () => {
  const lines: string[] = [];
  await using _ = await setupLogging(logging(), { write: (l) => lines.push(l) });
  getLogger(["logtape", "meta"]).info("not shown");
  getLogger(["logtape", "meta"]).warn("shown");
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /logtape\.meta: shown/);
});
