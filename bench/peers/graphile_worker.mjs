// graphile-worker as a benchmark peer: `node graphile_worker.mjs migrate|worker`.
//
// Environment: DATABASE_URL; BENCH_CONCURRENCY (worker); BENCH_STAMP_FILE (the `stamp` task
// appends the wall-clock time, in nanoseconds, at which it started).
// Settings as in the measurement: localQueue 200, completeJobBatchDelay 0.
import { appendFileSync } from "node:fs";
import { Logger, run, runMigrations } from "graphile-worker";

const connectionString = process.env.DATABASE_URL;
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? "10");
const quiet = new Logger(() => () => {});

const preset = {
  worker: {
    connectionString,
    concurrentJobs: concurrency,
    maxPoolSize: Math.max(10, concurrency + 2),
    pollInterval: 2000,
    localQueue: { size: 200 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};

const taskList = {
  noop: async () => {},
  stamp: async () => {
    const ns = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e3)) * 1000n;
    appendFileSync(process.env.BENCH_STAMP_FILE, `${ns}\n`);
  },
};

const mode = process.argv[2];
if (mode === "migrate") {
  await runMigrations({ preset, logger: quiet });
  console.log("BENCH_READY");
} else if (mode === "worker") {
  const runner = await run({ preset, taskList, logger: quiet, noHandleSignals: true });
  process.on("SIGTERM", () => {
    runner.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  console.log("BENCH_READY");
  await runner.promise;
} else {
  console.error(`usage: node graphile_worker.mjs migrate|worker (got ${mode})`);
  process.exit(2);
}
