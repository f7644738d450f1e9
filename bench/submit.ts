/**
 * bench/submit: the control plane under load. Four figures from real swm-core processes on fresh spools, and
 * Slurm's `sbatch --wrap true` on a one-node Slurm on this machine for the first:
 *
 *   empty     durable submissions/s on an empty queue (the only gate unreachable: every job stays queued, the
 *             submit path alone); Slurm's partition is DOWN for the same reason
 *   loaded    the queue filled to --queued jobs on the managed local gate (--max-nodes at once), jobs running and
 *             finishing all along; then the rate of the next --loaded-jobs submissions; the core's RSS there
 *   restart   the empty-queue core topped up to --restart-jobs queued (active) jobs, killed (-9), started again:
 *             the time from the new process to the first answered call
 *
 * Smaller sizes run in seconds: --queued 10000 --restart-jobs 2000 --jobs 2000 --no-slurm.
 */
import { Command, InvalidArgumentError } from 'commander';
import { availableParallelism, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminBundle } from '../test/harness/certs.js';
import { connectTerminal, killGates, startCoreProcess, type CoreProcess } from '../test/harness/core.js';
import { rest } from '../test/harness/rest-client.js';
import { freePort, makeTestSpool, type TestSpool } from '../test/harness/spool.js';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { onExit } from './cleanup.js';
import { ensureSlurm, runSbatch, startSlurm, type SbatchRun } from './slurm-peer.js';
import { cpuSeconds, fmtCpu, fmtLatency, fmtMiB, fmtMs, fmtRate, fmtRatio, peakRssKiB, printSection, ratePerSec, rssKiB, summarize } from './stats.js';

const CPU_PROFILER = fileURLToPath(new URL('./cpu-profile.js', import.meta.url));
const SCRIPT = '#!/bin/sh\ntrue\n';
/** Submissions per terminal before the clock starts (connection set-up, JIT, SQLite page cache). */
const WARMUP_PER_TERMINAL = 25;
/** The goals (issue 11). */
const GOALS = { empty: 10_000, loaded: 5_000, rssMiB: 150, restartMs: 2_000 };

const positive = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a positive integer is needed');
  return n;
};

const options = new Command('bench-submit')
  .description('Durable job submissions per second to swm-core (empty queue, and with a full queue while jobs finish), RSS, restart time; Slurm sbatch beside.')
  .option('--terminals <n>', 'concurrent terminals (one mTLS WebSocket each)', positive, 8)
  .option('--in-flight <n>', 'requests each terminal keeps outstanding', positive, 8)
  .option('--jobs <n>', 'submissions measured on the empty queue', positive, 8000)
  .option('--queued <n>', 'jobs queued before the loaded measurement', positive, 100_000)
  .option('--loaded-jobs <n>', 'submissions measured with --queued jobs queued', positive, 10_000)
  .option('--max-nodes <n>', "the local remote's nodes in the loaded run (jobs running at once)", positive, 4)
  .option('--restart-jobs <n>', 'active (queued) jobs when the core is restarted', positive, 10_000)
  .option('--no-loaded', 'skip the loaded run')
  .option('--no-restart', 'skip the restart')
  .option('--slurm-submitters <n>', 'parallel sbatch loops', positive, 4)
  .option('--slurm-jobs <n>', 'sbatch submissions', positive, 2000)
  .option('--no-slurm', 'skip the Slurm peer')
  .option('--cpu-prof <dir>', "write each core's V8 CPU profile (.cpuprofile, as node --cpu-prof writes) into this directory")
  .parse()
  .opts<{
    terminals: number; inFlight: number; jobs: number; queued: number; loadedJobs: number; maxNodes: number; restartJobs: number;
    loaded: boolean; restart: boolean; slurmSubmitters: number; slurmJobs: number; slurm: boolean; cpuProf?: string;
  }>();
if (process.env.SKYPORT_BENCH_NO_SLURM === '1') options.slurm = false;

const profiling = (): NodeJS.ProcessEnv =>
  options.cpuProf ? { NODE_OPTIONS: `--import=${CPU_PROFILER}`, SKYPORT_CPU_PROFILE_DIR: resolve(options.cpuProf) } : {};

interface Burst {
  submitted: number;
  wallMs: number;
  latencies: number[];
  coreCpuSec: number | null;
}

/** `count` submissions shared by the terminals, each keeping `inFlight` outstanding; latencies when asked. */
async function submitAll(core: CoreProcess, terminals: TerminalClient[], count: number, keepLatencies = true): Promise<Burst> {
  const latencies: number[] = [];
  let left = count;
  const lane = async (terminal: TerminalClient) => {
    while (left > 0) {
      left--;
      const t0 = performance.now();
      await terminal.call('job.submit', { script: SCRIPT, name: 'bench' });
      if (keepLatencies) latencies.push(performance.now() - t0);
    }
  };
  const cpu0 = cpuSeconds(core.child.pid!);
  const started = performance.now();
  await Promise.all(terminals.flatMap((t) => Array.from({ length: options.inFlight }, () => lane(t))));
  const wallMs = performance.now() - started;
  const cpu1 = cpuSeconds(core.child.pid!);
  return { submitted: count, wallMs, latencies, coreCpuSec: cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null };
}

/** A core on a fresh spool with `terminals` connected; stopped (and its spool removed) by the returned stop. */
async function startCore(
  configure: Parameters<typeof makeTestSpool>[0],
): Promise<{ spool: TestSpool; core: CoreProcess; terminals: TerminalClient[]; stop: () => Promise<void>; restart: () => Promise<{ listeningMs: number; answeredMs: number }> }> {
  const spool = await makeTestSpool(configure);
  let core: CoreProcess | null = null;
  const terminals: TerminalClient[] = [];
  const stop = onExit(async () => {
    await Promise.all(terminals.map((t) => t.close().catch(() => {})));
    await core?.kill('SIGTERM'); // a clean stop also writes the CPU profile
    killGates(spool);
    spool.cleanup();
  });
  const connect = async () => {
    terminals.length = 0;
    for (let i = 0; i < options.terminals; i++) terminals.push(await connectTerminal(spool.homeDir, core!.port));
  };
  try {
    core = await startCoreProcess(spool, profiling());
    await connect();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    spool,
    get core() {
      return core!;
    },
    terminals,
    stop,
    /** kill -9 the core, start it again; ms from the new process to its listening, and to its first answered call. */
    restart: async () => {
      await Promise.all(terminals.map((t) => t.close().catch(() => {})));
      await core!.kill('SIGKILL');
      const started = performance.now();
      core = await startCoreProcess(spool, profiling());
      const listeningMs = performance.now() - started;
      const terminal = await connectTerminal(spool.homeDir, core.port);
      await terminal.call('status');
      const answeredMs = performance.now() - started;
      terminals.push(terminal);
      return { listeningMs, answeredMs };
    },
  };
}

interface EmptyResult {
  burst: Burst;
  rssKiB: number | null;
  restart: { jobs: number; listeningMs: number; answeredMs: number; answered: number } | null;
}

async function measureEmpty(): Promise<EmptyResult> {
  // The only remote's gate is unmanaged and nothing listens on its port: jobs are accepted and stay queued.
  const deadPort = await freePort();
  const run = await startCore({
    configure: (config) => {
      for (const gate of config.gates) gate.managed = false;
      config.gates.find((g) => g.name === 'local')!.port = deadPort;
    },
  });
  try {
    await submitAll(run.core, run.terminals, WARMUP_PER_TERMINAL * options.terminals, false);
    const burst = await submitAll(run.core, run.terminals, options.jobs);
    const rss = peakRssKiB(run.core.child.pid!);
    if (!options.restart) return { burst, rssKiB: rss, restart: null };
    const stored = options.jobs + WARMUP_PER_TERMINAL * options.terminals;
    if (options.restartJobs > stored) await submitAll(run.core, run.terminals, options.restartJobs - stored, false);
    const jobs = Math.max(options.restartJobs, stored);
    const { listeningMs, answeredMs } = await run.restart();
    const status = await run.terminals[run.terminals.length - 1]!.call('status');
    return { burst, rssKiB: rss, restart: { jobs, listeningMs, answeredMs, answered: status.jobs.Q ?? 0 } };
  } finally {
    await run.stop();
  }
}

/** The core's V8 heap in use and its native (external) memory, in KiB, from its own /metrics. */
async function heapOf(spool: TestSpool, port: number): Promise<{ heapKiB: number; externalKiB: number } | null> {
  try {
    const text = (await rest(port, adminBundle(spool), '/metrics')).text;
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 1024;
    return { heapKiB: value('swm_core_nodejs_heap_size_used_bytes'), externalKiB: value('swm_core_nodejs_external_memory_bytes') };
  } catch {
    return null;
  }
}

interface LoadedResult {
  fill: Burst;
  burst: Burst;
  finishedDuring: number;
  queuedAtEnd: number;
  rssKiB: number | null;
  peakRssKiB: number | null;
  heap: { heapKiB: number; externalKiB: number } | null;
}

async function measureLoaded(): Promise<LoadedResult> {
  const run = await startCore({
    configure: (config) => {
      const local = config.remotes.find((r) => r.name === 'local')!;
      local.maxNodes = options.maxNodes;
      // Partitions kept for the next job: jobs finish at the pace the local gate runs them.
      local.idleTimeoutSec = 600;
    },
  });
  try {
    const fill = await submitAll(run.core, run.terminals, options.queued, false);
    const before = await run.terminals[0]!.call('status');
    const burst = await submitAll(run.core, run.terminals, options.loadedJobs);
    const after = await run.terminals[0]!.call('status');
    const ended = (s: typeof after) => (s.jobs.F ?? 0) + (s.jobs.E ?? 0) + (s.jobs.C ?? 0);
    return {
      fill,
      burst,
      finishedDuring: ended(after) - ended(before),
      queuedAtEnd: after.jobs.Q ?? 0,
      rssKiB: rssKiB(run.core.child.pid!),
      peakRssKiB: peakRssKiB(run.core.child.pid!),
      heap: await heapOf(run.spool, run.core.port),
    };
  } finally {
    await run.stop();
  }
}

async function measureSlurm(): Promise<{ run: SbatchRun; ctldRssKiB: number | null } | { skipped: string }> {
  if (!options.slurm) return { skipped: '--no-slurm' };
  const missing = ensureSlurm();
  if (missing) return { skipped: missing };
  let cluster: Awaited<ReturnType<typeof startSlurm>> | null = null;
  try {
    cluster = await startSlurm({ cpus: availableParallelism(), partitionUp: false, schedulerParameters: 'default_queue_depth=100', recordJobTimes: false });
    await runSbatch(cluster, Math.min(50, options.slurmSubmitters * 10), options.slurmSubmitters); // warm-up
    const run = await runSbatch(cluster, options.slurmJobs, options.slurmSubmitters);
    return { run, ctldRssKiB: cluster.controllerPeakRssKiB() };
  } catch (error) {
    return { skipped: `the one-node Slurm failed: ${(error as Error).message}` };
  } finally {
    await cluster?.stop();
  }
}

const goal = (met: boolean, what: string): string => `${what}: ${met ? 'met' : 'MISSED'}`;

async function main(): Promise<void> {
  process.stdout.write(
    `bench/submit: ${options.terminals} terminals (mTLS WebSocket each) x ${options.inFlight} in flight\n` +
      `machine: ${availableParallelism()} CPUs, load average at start ${loadavg()[0]!.toFixed(2)}\n`,
  );
  const empty = await measureEmpty();
  const emptyRate = ratePerSec(empty.burst.submitted, empty.burst.wallMs);
  printSection(`Empty queue: ${options.jobs} job.submit, acknowledged after the fsynced commit (gate unreachable: jobs stay queued)`, [
    ['durable submissions', fmtRate(emptyRate, 'submissions')],
    ['latency', fmtLatency(summarize(empty.burst.latencies))],
    ['core CPU while measured', fmtCpu(empty.burst.coreCpuSec, empty.burst.wallMs)],
    ['core peak RSS', fmtMiB(empty.rssKiB)],
    ['goal', goal(emptyRate >= GOALS.empty, `>= ${GOALS.empty} submissions/s`)],
  ]);
  if (empty.restart)
    printSection(`Restart: kill -9 with ${empty.restart.jobs} active (queued) jobs, then a new core`, [
      ['new process → first answered call (status)', fmtMs(empty.restart.answeredMs)],
      ['of which until it listens', fmtMs(empty.restart.listeningMs)],
      ['jobs queued after the restart', `${empty.restart.answered} (expected ${empty.restart.jobs})`],
      ['goal', goal(empty.restart.answeredMs <= GOALS.restartMs && empty.restart.answered === empty.restart.jobs, `<= ${GOALS.restartMs} ms`)],
    ]);

  let loaded: LoadedResult | null = null;
  if (options.loaded) {
    loaded = await measureLoaded();
    const fillRate = ratePerSec(loaded.fill.submitted, loaded.fill.wallMs);
    const loadedRate = ratePerSec(loaded.burst.submitted, loaded.burst.wallMs);
    printSection(`Loaded: ${options.loadedJobs} job.submit with ${options.queued} queued, local gate running ${options.maxNodes} at once`, [
      ['filling the queue', `${fmtRate(fillRate, 'submissions')} (${options.queued} in ${(loaded.fill.wallMs / 1000).toFixed(1)} s)`],
      ['durable submissions', fmtRate(loadedRate, 'submissions')],
      ['latency', fmtLatency(summarize(loaded.burst.latencies))],
      ['jobs finished meanwhile', String(loaded.finishedDuring)],
      ['jobs queued at the end', String(loaded.queuedAtEnd)],
      ['core CPU while measured', fmtCpu(loaded.burst.coreCpuSec, loaded.burst.wallMs)],
      ['core RSS now / peak', `${fmtMiB(loaded.rssKiB)} / ${fmtMiB(loaded.peakRssKiB)}`],
      ['core V8 heap used / external', loaded.heap ? `${fmtMiB(loaded.heap.heapKiB)} / ${fmtMiB(loaded.heap.externalKiB)}` : 'n/a'],
      ['goal', goal(loadedRate >= GOALS.loaded, `>= ${GOALS.loaded} submissions/s`)],
      ['goal', goal(loaded.rssKiB !== null && loaded.rssKiB / 1024 <= GOALS.rssMiB, `RSS <= ${GOALS.rssMiB} MB`)],
    ]);
  }

  const slurm = await measureSlurm();
  if ('skipped' in slurm) {
    process.stdout.write(`\nSlurm peer skipped: ${slurm.skipped}\n`);
    return;
  }
  const slurmRate = ratePerSec(slurm.run.submissions.length, slurm.run.wallMs);
  printSection(`Slurm (sbatch --parsable --wrap true, ${options.slurmSubmitters} parallel submitters, partition DOWN so jobs stay pending)`, [
    ['submissions', fmtRate(slurmRate, 'submissions')],
    ['latency', fmtLatency(summarize(slurm.run.submissions.map((s) => s.latencyMs)))],
    ['failed sbatch', String(slurm.run.failures.length)],
    ['slurmctld peak RSS', fmtMiB(slurm.ctldRssKiB)],
  ]);
  printSection('Ratio (Sky Port / Slurm)', [
    ['submissions/s, empty queue', fmtRatio(emptyRate, slurmRate)],
    ...(loaded ? ([['submissions/s, loaded (against Slurm empty)', fmtRatio(ratePerSec(loaded.burst.submitted, loaded.burst.wallMs), slurmRate)]] as [string, string][]) : []),
  ]);
  process.stdout.write(
    '\nNote: sbatch latency includes starting the sbatch process and its MUNGE credential; slurmctld saves job state\n' +
      'to disk in the background, so a Slurm acknowledgement is not a durable commit. Sky Port acknowledges only\n' +
      'after the fsynced SQLite commit.\n',
  );
}

main().catch((error) => {
  process.stderr.write(`bench/submit failed: ${(error as Error).stack ?? error}\n`);
  process.exitCode = 1;
});
