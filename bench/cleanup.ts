/**
 * What a benchmark started (a core, its gates, a Slurm cluster, temp spools) must be stopped even when the
 * run is interrupted: `finally` blocks do not run on SIGINT, so each resource also registers its stop here.
 */
const pending = new Set<() => Promise<void>>();
let interrupted = false;

/** Register a stop function; the returned function runs it (once) and unregisters it. */
export function onExit(stop: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | null = null;
  const run = (): Promise<void> => {
    pending.delete(run);
    done ??= stop().catch((error: Error) => {
      process.stderr.write(`cleanup failed: ${error.message}\n`);
    });
    return done;
  };
  pending.add(run);
  return run;
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping what the benchmark started\n`);
    void Promise.all([...pending].map((stop) => stop())).finally(() => process.exit(130));
  });
}

/** The stops of one run, in the order things were started; `stopAll` runs them newest first. */
export function runTeardown(): { cleanup: (stop: () => Promise<void>) => () => Promise<void>; stopAll: () => Promise<void> } {
  const stops: Array<() => Promise<void>> = [];
  return {
    cleanup: (stop) => {
      const run = onExit(stop);
      stops.push(run);
      return run;
    },
    stopAll: async () => {
      for (const stop of stops.reverse()) await stop();
    },
  };
}
