/**
 * bench/lifecycle: N trivial jobs (`#!/bin/sh` + `true`) through the whole lifecycle on the local gate with
 * the plain-process runtime (partition → SSH connect → stage-in → run → stage-out → teardown), then the same
 * N jobs as `sbatch --wrap true` on a one-node Slurm on this machine, with the same concurrency allowed
 * (the local remote's node quota = the Slurm node's declared CPUs).
 *
 * Times are taken on the submitting side: submit = just before the job.submit call; running = receipt of
 * the first job.event in state R; finished = receipt of the job.event in F, E or C. For Slurm, submit = just
 * before starting sbatch; running and finished = the controller's prolog and epilog (allocation and
 * completion), which write a millisecond timestamp per job.
 */
import { Command, InvalidArgumentError } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectTerminal, gatePid, killGates, startCoreProcess, type CoreProcess } from '../test/harness/core.js';
import { makeTestSpool, type TestSpool } from '../test/harness/spool.js';
import type { TerminalClient } from '../terminal-protocol/client.js';
import type { Job } from '../terminal-protocol/job.js';
import { onExit } from './cleanup.js';
import { ensureSlurm, runSbatch, startSlurm, waitForCompletions, type SlurmCluster } from './slurm-peer.js';
import { cpuSeconds, fmtCpu, fmtLatency, fmtMiB, fmtMs, fmtRate, fmtRatio, peakRssKiB, printSection, ratePerSec, summarize, type LatencySummary } from './stats.js';

const CPU_PROFILER = fileURLToPath(new URL('./cpu-profile.js', import.meta.url));
const SCRIPT = '#!/bin/sh\ntrue\n';
const WARMUP_JOBS = 4;
/** What the shipped configuration allows the local remote at once. */
const DEFAULT_MAX_NODES = 32;
/**
 * Slurm tuned for a stream of short jobs: the FIFO scheduler (no backfill pass to pay for), every
 * submission and completion considered at once (no batch_sched_delay), no throttling between scheduling
 * cycles, the whole queue examined per cycle.
 */
const SLURM_THROUGHPUT_PARAMETERS = 'batch_sched_delay=0,sched_min_interval=0,default_queue_depth=10000';

const positive = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a positive integer is needed');
  return n;
};

const options = new Command('bench-lifecycle')
  .description('Trivial jobs end to end on the local gate, side by side with Slurm sbatch --wrap true.')
  .option('--jobs <n>', 'jobs to run', positive, 200)
  .option('--terminals <n>', 'terminals submitting (one mTLS WebSocket each)', positive, 4)
  .option('--in-flight <n>', 'submissions each terminal keeps outstanding', positive, 4)
  .option('--max-nodes <n>', `node quota of the local remote = CPUs declared for the Slurm node (shipped default ${DEFAULT_MAX_NODES})`, positive, DEFAULT_MAX_NODES)
  .option('--slurm-submitters <n>', 'parallel sbatch loops', positive, 4)
  .option('--slurm-scheduler-parameters <s>', 'slurm.conf SchedulerParameters', SLURM_THROUGHPUT_PARAMETERS)
  .option('--timeout <s>', 'give up waiting for jobs after this many seconds (per system)', positive, 120)
  .option('--no-slurm', 'skip the Slurm peer')
  .option('--cpu-prof <dir>', "write the V8 CPU profiles (.cpuprofile) of the core and its local gate into this directory")
  .parse()
  .opts<{
    jobs: number;
    terminals: number;
    inFlight: number;
    maxNodes: number;
    slurmSubmitters: number;
    slurmSchedulerParameters: string;
    timeout: number;
    slurm: boolean;
    cpuProf?: string;
  }>();

interface Figures {
  jobs: number;
  finished: number;
  failed: string[];
  wallMs: number;
  toRunning: LatencySummary;
  toFinished: LatencySummary;
}

/** One job as the submitting terminal saw it (performance.now() milliseconds). */
interface Tracked {
  submittedAt: number;
  runningAt?: number;
  processStartedAt?: number;
  finishedAt?: number;
  final?: Job;
}

const isFinal = (job: Job): boolean => job.state === 'F' || job.state === 'E' || job.state === 'C';

/** Follows the jobs a terminal submitted through job.event notifications and resolves when all ended. */
class JobTracker {
  readonly jobs = new Map<string, Tracked>();
  private ended = 0;
  private expected = Infinity;
  private resolveAll: () => void = () => {};
  readonly allEnded = new Promise<void>((resolve) => (this.resolveAll = resolve));
  /** Jobs already past state R when their subscription was answered (their R time is unknown). */
  lateSubscriptions = 0;

  expect(count: number): void {
    this.expected = count;
    if (this.ended >= count) this.resolveAll();
  }

  listen(terminal: TerminalClient): void {
    terminal.on('notification', (name: string, job: Job) => {
      if (name === 'job.event') this.observe(job.id, job, performance.now());
    });
  }

  observe(id: string, job: Job, at: number, fromSubscription = false): void {
    const t = this.jobs.get(id);
    if (!t || t.finishedAt !== undefined) return;
    if (job.state === 'R' && t.runningAt === undefined) t.runningAt = at;
    if (job.state === 'R' && job.state_details === 'running' && t.processStartedAt === undefined) t.processStartedAt = at;
    if (isFinal(job)) {
      if (fromSubscription && t.runningAt === undefined) this.lateSubscriptions++;
      t.finishedAt = at;
      t.final = job;
      if (++this.ended >= this.expected) this.resolveAll();
    }
  }
}

/** Submit `count` jobs from one terminal with `inFlight` calls outstanding, subscribing to each at once. */
async function submitAll(terminal: TerminalClient, tracker: JobTracker, count: number, inFlight: number): Promise<void> {
  let left = count;
  const subscriptions: Promise<unknown>[] = [];
  const lane = async () => {
    while (left > 0) {
      left--;
      const submittedAt = performance.now();
      const { id } = await terminal.call('job.submit', { script: SCRIPT, name: 'bench' });
      tracker.jobs.set(id, { submittedAt });
      subscriptions.push(terminal.call('job.subscribe', { id }).then((job) => tracker.observe(id, job, performance.now(), true)));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  await Promise.all(subscriptions);
}

/** Poll `status` (the protocol has no event for it) until the local gate is connected and has flavors. */
async function waitForGate(terminal: TerminalClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await terminal.call('status');
    const gate = status.gates.find((g) => g.name === 'local');
    if (gate?.connected && (await terminal.call('flavor.list', { remote: 'local' })).length) return;
    if (Date.now() > deadline) throw new Error(`the local gate did not connect within ${timeoutMs} ms: ${JSON.stringify(gate)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGTERM a process and wait (polling /proc: it is not our child) until it is gone, at most `ms`. */
async function terminateProcess(pid: number, ms: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + ms;
  while (existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(readProcStat(pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

const readProcStat = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return '';
  }
};

const withTimeout = <T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  Promise.race([promise, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms).unref())]);

async function runJobs(terminals: TerminalClient[], count: number): Promise<{ tracker: JobTracker; timedOut: boolean }> {
  const tracker = new JobTracker();
  for (const t of terminals) tracker.listen(t);
  const shares = terminals.map((_, i) => Math.floor(count / terminals.length) + (i < count % terminals.length ? 1 : 0));
  await Promise.all(terminals.map((t, i) => submitAll(t, tracker, shares[i]!, options.inFlight)));
  tracker.expect(count);
  const outcome = await withTimeout(tracker.allEnded, options.timeout * 1000);
  return { tracker, timedOut: outcome === 'timeout' };
}

function figuresOf(tracker: JobTracker, count: number): Figures & { toProcessStart: LatencySummary } {
  const all = [...tracker.jobs.values()];
  const done = all.filter((t) => t.finishedAt !== undefined);
  const first = Math.min(...all.map((t) => t.submittedAt));
  const last = Math.max(...done.map((t) => t.finishedAt!));
  const failed = done.filter((t) => t.final!.state !== 'F').map((t) => `${t.final!.state}: ${t.final!.state_details}`);
  return {
    jobs: count,
    finished: done.length,
    failed,
    wallMs: last - first,
    toRunning: summarize(all.filter((t) => t.runningAt !== undefined).map((t) => t.runningAt! - t.submittedAt)),
    toProcessStart: summarize(all.filter((t) => t.processStartedAt !== undefined).map((t) => t.processStartedAt! - t.submittedAt)),
    toFinished: summarize(done.map((t) => t.finishedAt! - t.submittedAt)),
  };
}

async function measureOurs() {
  const spool: TestSpool = await makeTestSpool({
    configure: (config) => {
      config.remotes.find((r) => r.name === 'local')!.maxNodes = options.maxNodes;
    },
  });
  let core: CoreProcess | null = null;
  const terminals: TerminalClient[] = [];
  let gate: number | null = null;
  const stop = onExit(async () => {
    await Promise.all(terminals.map((t) => t.close().catch(() => {})));
    await core?.kill('SIGTERM');
    // A gate stopped by SIGTERM exits cleanly (and writes its CPU profile); SIGKILL whatever is left.
    if (gate !== null) await terminateProcess(gate, 5_000);
    killGates(spool);
    spool.cleanup();
  });
  try {
    core = await startCoreProcess(spool, options.cpuProf ? { NODE_OPTIONS: `--import=${CPU_PROFILER}`, SKYPORT_CPU_PROFILE_DIR: resolve(options.cpuProf) } : {});
    for (let i = 0; i < options.terminals; i++) terminals.push(await connectTerminal(spool.homeDir, core.port));
    await waitForGate(terminals[0]!, 30_000);
    const warm = await runJobs(terminals.slice(0, 1), WARMUP_JOBS);
    if (warm.timedOut) throw new Error('the warm-up jobs did not finish');

    gate = gatePid(spool);
    const cpu0 = { core: cpuSeconds(core.child.pid!), gate: cpuSeconds(gate) };
    const { tracker, timedOut } = await runJobs(terminals, options.jobs);
    const cpu1 = { core: cpuSeconds(core.child.pid!), gate: cpuSeconds(gate) };
    const figures = figuresOf(tracker, options.jobs);
    const leftover = (await terminals[0]!.call('partition.list')).length;
    const delta = (a: number | null, b: number | null) => (a !== null && b !== null ? b - a : null);
    return {
      ...figures,
      timedOut,
      lateSubscriptions: tracker.lateSubscriptions,
      leftover,
      coreRssKiB: peakRssKiB(core.child.pid!),
      gateRssKiB: peakRssKiB(gate),
      coreCpuSec: delta(cpu0.core, cpu1.core),
      gateCpuSec: delta(cpu0.gate, cpu1.gate),
    };
  } finally {
    await stop();
  }
}

async function measureSlurm(): Promise<(Figures & { ctldRssKiB: number | null; settings: string[]; timedOut: boolean }) | { skipped: string }> {
  if (!options.slurm) return { skipped: '--no-slurm' };
  const missing = ensureSlurm();
  if (missing) return { skipped: missing };
  let cluster: SlurmCluster | null = null;
  const stop = onExit(async () => cluster?.stop());
  try {
    cluster = await startSlurm({ cpus: options.maxNodes, partitionUp: true, schedulerParameters: options.slurmSchedulerParameters, recordJobTimes: true });
    const warm = await runSbatch(cluster, WARMUP_JOBS, options.slurmSubmitters);
    if ((await waitForCompletions(cluster, warm.submissions.map((s) => s.jobId), 60_000)).timedOut) throw new Error('the warm-up jobs did not finish');

    const run = await runSbatch(cluster, options.jobs, options.slurmSubmitters);
    const ids = run.submissions.map((s) => s.jobId);
    const { times, timedOut } = await waitForCompletions(cluster, ids, options.timeout * 1000);
    const started = run.submissions.filter((s) => times.get(s.jobId)?.start !== undefined);
    const ended = run.submissions.filter((s) => times.get(s.jobId)?.end !== undefined);
    const first = Math.min(...run.submissions.map((s) => s.submittedAt));
    const last = Math.max(...ended.map((s) => times.get(s.jobId)!.end!));
    return {
      jobs: options.jobs,
      finished: ended.length,
      failed: run.failures,
      wallMs: last - first,
      toRunning: summarize(started.map((s) => times.get(s.jobId)!.start! - s.submittedAt)),
      toFinished: summarize(ended.map((s) => times.get(s.jobId)!.end! - s.submittedAt)),
      ctldRssKiB: cluster.controllerPeakRssKiB(),
      settings: cluster.settings,
      timedOut,
    };
  } catch (error) {
    return { skipped: `the one-node Slurm failed: ${(error as Error).message}` };
  } finally {
    await stop();
  }
}

async function main(): Promise<void> {
  process.stdout.write(
    `bench/lifecycle: ${options.jobs} jobs "#!/bin/sh\\ntrue" end to end, submitted from ${options.terminals} terminals ` +
      `(${options.inFlight} submissions in flight each), after ${WARMUP_JOBS} warm-up jobs; machine: ${availableParallelism()} CPUs\n` +
      `concurrency allowed: ${options.maxNodes} one-node partitions at once (local remote maxNodes` +
      `${options.maxNodes === DEFAULT_MAX_NODES ? ', the shipped default' : `, raised from the shipped ${DEFAULT_MAX_NODES} by this run`}) ` +
      `= ${options.maxNodes} CPUs declared for the Slurm node\n`,
  );
  const ours = await measureOurs();
  const oursRate = ratePerSec(ours.finished, ours.wallMs);
  printSection('Sky Port (real swm-core + managed local gate, plain-process runtime)', [
    ['throughput end to end', fmtRate(oursRate, 'jobs')],
    ['submit -> R', fmtLatency(ours.toRunning)],
    ['submit -> process started', fmtLatency(ours.toProcessStart)],
    ['submit -> finished', fmtLatency(ours.toFinished)],
    ['wall time', `${(ours.wallMs / 1000).toFixed(2)} s`],
    ['jobs ended', `${ours.finished} of ${ours.jobs}${ours.timedOut ? ` (gave up after ${options.timeout} s)` : ''}; not F: ${ours.failed.length}${ours.failed.length ? ` (${[...new Set(ours.failed)].slice(0, 3).join(' | ')})` : ''}`],
    ['partitions left', String(ours.leftover)],
    ['core peak RSS (VmHWM)', fmtMiB(ours.coreRssKiB)],
    ['local gate peak RSS', fmtMiB(ours.gateRssKiB)],
    ['CPU used while measured', `core ${fmtCpu(ours.coreCpuSec, ours.wallMs)}, gate ${fmtCpu(ours.gateCpuSec, ours.wallMs)}`],
    ...(ours.lateSubscriptions ? ([['R missed', `${ours.lateSubscriptions} jobs had left R before their subscription was answered`]] as [string, string][]) : []),
    ['goal (issue 3)', `submit -> R p50 < 300 ms: ${ours.toRunning.p50 < 300 ? 'met' : 'MISSED'}`],
  ]);

  const slurm = await measureSlurm();
  if ('skipped' in slurm) {
    process.stdout.write(`\nSlurm peer skipped: ${slurm.skipped}\n`);
    return;
  }
  const slurmRate = ratePerSec(slurm.finished, slurm.wallMs);
  printSection(`Slurm (sbatch --parsable --wrap true, ${options.slurmSubmitters} parallel submitters)`, [
    ['throughput end to end', fmtRate(slurmRate, 'jobs')],
    ['submit -> R (allocated)', fmtLatency(slurm.toRunning)],
    ['submit -> completed', fmtLatency(slurm.toFinished)],
    ['wall time', `${(slurm.wallMs / 1000).toFixed(2)} s`],
    ['jobs completed', `${slurm.finished} of ${slurm.jobs}${slurm.timedOut ? ` (gave up after ${options.timeout} s)` : ''}; failed sbatch: ${slurm.failed.length}`],
    ['slurmctld peak RSS', fmtMiB(slurm.ctldRssKiB)],
    ['settings', slurm.settings.join('; ')],
  ]);
  printSection('Ratio (Sky Port / Slurm)', [
    ['throughput', `${fmtRatio(oursRate, slurmRate)} (goal >= 2x: ${oursRate >= 2 * slurmRate ? 'met' : 'MISSED'})`],
    ['submit -> R p50 (Slurm / Sky Port)', `${fmtRatio(slurm.toRunning.p50, ours.toRunning.p50)} (${fmtMs(slurm.toRunning.p50)} vs ${fmtMs(ours.toRunning.p50)})`],
    ['submit -> finished p50 (Slurm / Sky Port)', `${fmtRatio(slurm.toFinished.p50, ours.toFinished.p50)} (${fmtMs(slurm.toFinished.p50)} vs ${fmtMs(ours.toFinished.p50)})`],
  ]);
}

main().catch((error) => {
  process.stderr.write(`bench/lifecycle failed: ${(error as Error).stack ?? error}\n`);
  process.exitCode = 1;
});
