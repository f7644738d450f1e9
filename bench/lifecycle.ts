/**
 * bench/lifecycle: trivial jobs (`#!/bin/sh` + `true`) through the whole lifecycle on the local gate with the
 * plain-process runtime (partition → SSH connect → stage-in → run → stage-out → teardown), then the same jobs
 * as `sbatch --wrap true` on a one-node Slurm on this machine, with the same concurrency allowed (the local
 * remote's node quota = the CPUs declared for the Slurm node). Two phases per system:
 *
 *   idle   a few jobs one at a time: the latency of one job on a system with free capacity;
 *   burst  N jobs submitted at once: end-to-end throughput, and the latency of jobs that queue behind others.
 *
 * Sky Port is measured twice: warm (partitions kept idle after their job and reused by the next one, as shipped;
 * the warm-up fills the quota with idle partitions first) and cold (keep-alive 0: a new partition per job, as
 * before partitions were reused). Warm also measures `swm logs -f` latency: jobs stamp lines with the time they
 * write them, and the bench takes the arrival of each line in a job.log notification.
 *
 * Times are taken on the submitting side: submit = just before the job.submit call; running = receipt of
 * the first job.event in state R; finished = receipt of the job.event in F, E or C. For Slurm, submit = just
 * before starting sbatch; running and finished = the controller's prolog and epilog (allocation and
 * completion), which record a millisecond timestamp per job.
 */
import { Command, InvalidArgumentError } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
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
 * submission and completion considered at once (no batch_sched_delay, no throttling between scheduling
 * cycles), the whole queue examined per cycle.
 */
const SLURM_THROUGHPUT_PARAMETERS = 'batch_sched_delay=0,sched_min_interval=0,default_queue_depth=10000';

const positive = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a positive integer is needed');
  return n;
};

const options = new Command('bench-lifecycle')
  .description('Trivial jobs end to end on the local gate, side by side with Slurm sbatch --wrap true.')
  .option('--jobs <n>', 'jobs in the burst', positive, 200)
  .option('--idle-jobs <n>', 'jobs run one at a time before the burst', positive, 10)
  .option('--terminals <n>', 'terminals submitting the burst (one mTLS WebSocket each)', positive, 4)
  .option('--in-flight <n>', 'submissions each terminal keeps outstanding', positive, 4)
  .option('--max-nodes <n>', `node quota of the local remote = CPUs declared for the Slurm node (shipped default ${DEFAULT_MAX_NODES})`, positive, DEFAULT_MAX_NODES)
  .option('--slurm-submitters <n>', 'parallel sbatch loops', positive, 4)
  .option('--slurm-scheduler-parameters <s>', 'slurm.conf SchedulerParameters', SLURM_THROUGHPUT_PARAMETERS)
  .option('--timeout <s>', 'give up waiting for the burst after this many seconds (per system)', positive, 120)
  .option('--no-slurm', 'skip the Slurm peer')
  .option('--mode <mode>', 'warm (partitions reused), cold (a new partition per job) or both', (v: string) => {
    if (!['warm', 'cold', 'both'].includes(v)) throw new InvalidArgumentError('warm, cold or both');
    return v;
  }, 'both')
  .option('--log-jobs <n>', 'jobs whose stamped lines measure logs -f latency (warm)', positive, 10)
  .option('--cpu-prof <dir>', "write the V8 CPU profiles (.cpuprofile) of the core and its local gate into this directory")
  .parse()
  .opts<{
    jobs: number;
    idleJobs: number;
    terminals: number;
    inFlight: number;
    maxNodes: number;
    slurmSubmitters: number;
    slurmSchedulerParameters: string;
    timeout: number;
    slurm: boolean;
    mode: 'warm' | 'cold' | 'both';
    logJobs: number;
    cpuProf?: string;
  }>();

/** One job as its submitter saw it, in milliseconds of one clock. */
interface Timeline {
  submittedAt: number;
  runningAt?: number;
  finishedAt?: number;
  /** Why it did not finish well (not F, or sbatch failed). */
  failure?: string;
}

interface Phase {
  jobs: number;
  finished: number;
  failures: string[];
  wallMs: number;
  toRunning: LatencySummary;
  toFinished: LatencySummary;
  timedOut: boolean;
}

function phaseOf(timelines: Timeline[], expected: number, timedOut: boolean): Phase {
  const done = timelines.filter((t) => t.finishedAt !== undefined);
  const first = Math.min(...timelines.map((t) => t.submittedAt));
  const last = Math.max(...done.map((t) => t.finishedAt!));
  return {
    jobs: expected,
    finished: done.length,
    failures: timelines.flatMap((t) => (t.failure ? [t.failure] : [])),
    wallMs: last - first,
    toRunning: summarize(timelines.filter((t) => t.runningAt !== undefined).map((t) => t.runningAt! - t.submittedAt)),
    toFinished: summarize(done.map((t) => t.finishedAt! - t.submittedAt)),
    timedOut,
  };
}

const isFinal = (job: Job): boolean => job.state === 'F' || job.state === 'E' || job.state === 'C';

const withTimeout = <T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  Promise.race([promise, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms).unref())]);

/** Follows submitted jobs through job.event notifications; `allEnded` resolves when every one has ended. */
class JobTracker {
  readonly jobs = new Map<string, Timeline>();
  /** Jobs already past state R when their subscription was answered (their R time is unknown). */
  lateSubscriptions = 0;
  private ended = 0;
  private expected = Infinity;
  private resolveAll: () => void = () => {};
  readonly allEnded = new Promise<void>((resolve) => (this.resolveAll = resolve));
  private readonly detach: (() => void)[] = [];

  constructor(terminals: TerminalClient[]) {
    for (const terminal of terminals) {
      const listener = (name: string, job: Job) => {
        if (name === 'job.event') this.observe(job, performance.now());
      };
      terminal.on('notification', listener);
      this.detach.push(() => terminal.off('notification', listener));
    }
  }

  expect(count: number): void {
    this.expected = count;
    if (this.ended >= count) this.resolveAll();
  }

  observe(job: Job, at: number, fromSubscription = false): void {
    const t = this.jobs.get(job.id);
    if (!t || t.finishedAt !== undefined) return;
    if (job.state === 'R') t.runningAt ??= at;
    if (!isFinal(job)) return;
    if (fromSubscription && t.runningAt === undefined) this.lateSubscriptions++;
    t.finishedAt = at;
    if (job.state !== 'F') t.failure = `${job.state}: ${job.state_details}`;
    if (++this.ended >= this.expected) this.resolveAll();
  }

  close(): void {
    for (const off of this.detach) off();
  }
}

/** Submit `count` jobs from one terminal with `inFlight` calls outstanding, subscribing to each at once. */
async function submitFrom(terminal: TerminalClient, tracker: JobTracker, count: number, inFlight: number, script = SCRIPT): Promise<void> {
  let left = count;
  const subscriptions: Promise<unknown>[] = [];
  const lane = async () => {
    while (left > 0) {
      left--;
      const submittedAt = performance.now();
      const { id } = await terminal.call('job.submit', { script, name: 'bench' });
      tracker.jobs.set(id, { submittedAt });
      subscriptions.push(terminal.call('job.subscribe', { id }).then((job) => tracker.observe(job, performance.now(), true)));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  await Promise.all(subscriptions);
}

/** Submit `count` jobs spread over the terminals and wait until all have ended (or the timeout). */
async function runJobs(terminals: TerminalClient[], count: number, timeoutMs: number, script = SCRIPT): Promise<{ timelines: Timeline[]; timedOut: boolean; late: number }> {
  const tracker = new JobTracker(terminals);
  try {
    const shares = terminals.map((_, i) => Math.floor(count / terminals.length) + (i < count % terminals.length ? 1 : 0));
    await Promise.all(terminals.map((t, i) => submitFrom(t, tracker, shares[i]!, options.inFlight, script)));
    tracker.expect(count);
    const outcome = await withTimeout(tracker.allEnded, timeoutMs);
    return { timelines: [...tracker.jobs.values()], timedOut: outcome === 'timeout', late: tracker.lateSubscriptions };
  } finally {
    tracker.close();
  }
}

/** Poll `status` (the protocol has no event for it) until the local gate is connected and has flavors. */
async function waitForGate(terminal: TerminalClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const gate = (await terminal.call('status')).gates.find((g) => g.name === 'local');
    if (gate?.connected && (await terminal.call('flavor.list', { remote: 'local' })).length) return;
    if (Date.now() > deadline) throw new Error(`the local gate did not connect within ${timeoutMs} ms: ${JSON.stringify(gate)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const isGone = (pid: number): boolean => {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return !existsSync(`/proc/${pid}`);
  }
};

/** SIGTERM a process that is not our child and wait (polling /proc) until it is gone, at most `ms`. */
async function terminateProcess(pid: number, ms: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + ms;
  while (!isGone(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/**
 * Jobs that print stamped lines (`line <epoch ns>`) a tenth of a second apart: the delay from the stamp to the
 * line's arrival in a job.log notification, per line.
 */
async function measureLogLatency(terminal: TerminalClient, jobs: number): Promise<LatencySummary> {
  const samples: number[] = [];
  const pending = new Map<string, string>();
  const listener = (name: string, params: { id: string; stream: string; data: string }) => {
    if (name !== 'job.log' || params.stream !== 'stdout') return;
    const arrivedNs = BigInt(Date.now()) * 1_000_000n;
    const text = (pending.get(params.id) ?? '') + params.data;
    const lines = text.split('\n');
    pending.set(params.id, lines.pop()!);
    for (const line of lines) {
      const m = /^line (\d+)$/.exec(line);
      if (m) samples.push(Number(arrivedNs - BigInt(m[1]!)) / 1e6);
    }
  };
  terminal.on('notification', listener as never);
  try {
    const script = '#!/bin/sh\nsleep 0.5\nfor i in 1 2 3 4 5 6 7 8 9 10; do echo "line $(date +%s%N)"; sleep 0.1; done\n';
    await runJobs([terminal], jobs, 120_000, script);
  } finally {
    terminal.off('notification', listener as never);
  }
  return summarize(samples);
}

interface OursResult {
  mode: 'warm' | 'cold';
  logs: LatencySummary | null;
  idle: Phase;
  burst: Phase;
  lateSubscriptions: number;
  leftoverPartitions: number;
  coreRssKiB: number | null;
  gateRssKiB: number | null;
  coreCpuSec: number | null;
  gateCpuSec: number | null;
}

async function measureOurs(mode: 'warm' | 'cold'): Promise<OursResult> {
  const spool: TestSpool = await makeTestSpool({
    configure: (config) => {
      const local = config.remotes.find((r) => r.name === 'local')!;
      local.maxNodes = options.maxNodes;
      // Warm: the shipped behaviour (idle partitions kept for the next job), with a keep-alive longer than the run.
      local.idleTimeoutSec = mode === 'warm' ? 600 : 0;
    },
  });
  let core: CoreProcess | null = null;
  let gate: number | null = null;
  const terminals: TerminalClient[] = [];
  const stop = onExit(async () => {
    await Promise.all(terminals.map((t) => t.close().catch(() => {})));
    await core?.kill('SIGTERM');
    // A gate stopped by SIGTERM exits cleanly (and writes its CPU profile); SIGKILL whatever is left.
    if (gate !== null) await terminateProcess(gate, 5_000);
    killGates(spool);
    spool.cleanup();
  });
  try {
    const profiling = options.cpuProf ? { NODE_OPTIONS: `--import=${CPU_PROFILER}`, SKYPORT_CPU_PROFILE_DIR: resolve(options.cpuProf) } : {};
    core = await startCoreProcess(spool, profiling);
    for (let i = 0; i < options.terminals; i++) terminals.push(await connectTerminal(spool.homeDir, core.port));
    await waitForGate(terminals[0]!, 30_000);
    gate = gatePid(spool);
    // Warm: as many concurrent jobs as the quota allows, so that the burst finds the quota filled with idle partitions.
    const warmup = mode === 'warm' ? options.maxNodes : WARMUP_JOBS;
    if ((await runJobs(terminals, warmup, 120_000, mode === 'warm' ? '#!/bin/sh\nsleep 1\n' : SCRIPT)).timedOut) throw new Error('the warm-up jobs did not finish');

    const idle: Timeline[] = [];
    for (let i = 0; i < options.idleJobs; i++) idle.push(...(await runJobs(terminals.slice(0, 1), 1, 60_000)).timelines);

    const cpu0 = { core: cpuSeconds(core.child.pid!), gate: cpuSeconds(gate) };
    const burst = await runJobs(terminals, options.jobs, options.timeout * 1000);
    const cpu1 = { core: cpuSeconds(core.child.pid!), gate: cpuSeconds(gate) };
    const delta = (a: number | null, b: number | null) => (a !== null && b !== null ? b - a : null);
    const logs = mode === 'warm' ? await measureLogLatency(terminals[0]!, options.logJobs) : null;
    const leftover = (await terminals[0]!.call('partition.list')).filter((p) => p.state !== 'idle').length;
    return {
      mode,
      logs,
      idle: phaseOf(idle, options.idleJobs, false),
      burst: phaseOf(burst.timelines, options.jobs, burst.timedOut),
      lateSubscriptions: burst.late,
      leftoverPartitions: leftover,
      coreRssKiB: peakRssKiB(core.child.pid!),
      gateRssKiB: peakRssKiB(gate),
      coreCpuSec: delta(cpu0.core, cpu1.core),
      gateCpuSec: delta(cpu0.gate, cpu1.gate),
    };
  } finally {
    await stop();
  }
}

interface SlurmResult {
  idle: Phase;
  burst: Phase;
  ctldRssKiB: number | null;
  settings: string[];
}

/** Submit `count` sbatch jobs and wait for their completion records; times on the epoch-ms clock. */
async function runSbatchJobs(cluster: SlurmCluster, count: number, submitters: number, timeoutMs: number): Promise<{ timelines: Timeline[]; timedOut: boolean }> {
  const run = await runSbatch(cluster, count, submitters);
  const { times, timedOut } = await waitForCompletions(cluster, run.submissions.map((s) => s.jobId), timeoutMs);
  const timelines: Timeline[] = run.submissions.map((s) => ({ submittedAt: s.submittedAt, runningAt: times.get(s.jobId)?.start, finishedAt: times.get(s.jobId)?.end }));
  return { timelines: [...timelines, ...run.failures.map((failure) => ({ submittedAt: run.submissions[0]?.submittedAt ?? 0, failure }))], timedOut };
}

async function measureSlurm(): Promise<SlurmResult | { skipped: string }> {
  if (!options.slurm) return { skipped: '--no-slurm' };
  const missing = ensureSlurm();
  if (missing) return { skipped: missing };
  let cluster: SlurmCluster | null = null;
  try {
    cluster = await startSlurm({ cpus: options.maxNodes, partitionUp: true, schedulerParameters: options.slurmSchedulerParameters, recordJobTimes: true });
    if ((await runSbatchJobs(cluster, WARMUP_JOBS, options.slurmSubmitters, 60_000)).timedOut) throw new Error('the warm-up jobs did not finish');
    const idle: Timeline[] = [];
    for (let i = 0; i < options.idleJobs; i++) idle.push(...(await runSbatchJobs(cluster, 1, 1, 60_000)).timelines);
    const burst = await runSbatchJobs(cluster, options.jobs, options.slurmSubmitters, options.timeout * 1000);
    return {
      idle: phaseOf(idle, options.idleJobs, false),
      burst: phaseOf(burst.timelines, options.jobs, burst.timedOut),
      ctldRssKiB: cluster.controllerPeakRssKiB(),
      settings: cluster.settings,
    };
  } catch (error) {
    return { skipped: `the one-node Slurm failed: ${(error as Error).message}` };
  } finally {
    await cluster?.stop();
  }
}

const endedLine = (p: Phase, word: string): string =>
  `${p.finished} of ${p.jobs}${p.timedOut ? ` (gave up after ${options.timeout} s)` : ''}; ${word}: ${p.failures.length}` +
  (p.failures.length ? ` (${[...new Set(p.failures)].slice(0, 3).join(' | ')})` : '');

async function main(): Promise<void> {
  const quota = options.maxNodes === DEFAULT_MAX_NODES ? 'the shipped default' : `raised from the shipped ${DEFAULT_MAX_NODES} by --max-nodes`;
  process.stdout.write(
    `bench/lifecycle: jobs "#!/bin/sh\\ntrue"; idle: ${options.idleJobs} jobs one at a time; burst: ${options.jobs} jobs from ` +
      `${options.terminals} terminals (${options.inFlight} submissions in flight each); after ${WARMUP_JOBS} warm-up jobs\n` +
      `concurrency allowed: ${options.maxNodes} one-node partitions at once (local remote maxNodes, ${quota}) = ${options.maxNodes} CPUs declared for the Slurm node\n` +
      `machine: ${availableParallelism()} CPUs, load average at start ${loadavg()[0]!.toFixed(2)}\n`,
  );
  const modes: ('warm' | 'cold')[] = options.mode === 'both' ? ['warm', 'cold'] : [options.mode];
  const results: OursResult[] = [];
  for (const mode of modes) {
    const ours = await measureOurs(mode);
    results.push(ours);
    const oursRate = ratePerSec(ours.burst.finished, ours.burst.wallMs);
    printSection(
      mode === 'warm'
        ? 'Sky Port, warm (partitions reused; real swm-core + managed local gate, plain-process runtime)'
        : 'Sky Port, cold (keep-alive 0: a new partition per job)',
      [
        ['idle: submit -> R', fmtLatency(ours.idle.toRunning)],
        ['idle: submit -> finished', fmtLatency(ours.idle.toFinished)],
        ['burst: throughput end to end', fmtRate(oursRate, 'jobs')],
        ['burst: submit -> R', fmtLatency(ours.burst.toRunning)],
        ['burst: submit -> finished', fmtLatency(ours.burst.toFinished)],
        ['burst: wall time', `${(ours.burst.wallMs / 1000).toFixed(2)} s`],
        ['burst: jobs ended', endedLine(ours.burst, 'not F')],
        ...(ours.lateSubscriptions ? ([['burst: R missed', `${ours.lateSubscriptions} jobs had left R before their subscription was answered`]] as [string, string][]) : []),
        ['partitions left (not idle)', String(ours.leftoverPartitions)],
        ['core peak RSS (VmHWM)', fmtMiB(ours.coreRssKiB)],
        ['local gate peak RSS', fmtMiB(ours.gateRssKiB)],
        ['burst: CPU used', `core ${fmtCpu(ours.coreCpuSec, ours.burst.wallMs)}, gate ${fmtCpu(ours.gateCpuSec, ours.burst.wallMs)}`],
        ...(mode === 'warm'
          ? ([
              ['goal: submit -> R p50 < 20 ms', `idle ${ours.idle.toRunning.p50 < 20 ? 'met' : 'MISSED'}, burst ${ours.burst.toRunning.p50 < 20 ? 'met' : 'MISSED'}`],
              ['logs -f: written -> shown', ours.logs ? fmtLatency(ours.logs) : '-'],
              ['goal: logs -f p50 < 100 ms', ours.logs && ours.logs.p50 < 100 ? 'met' : 'MISSED'],
            ] as [string, string][])
          : []),
      ],
    );
  }

  const slurm = await measureSlurm();
  if ('skipped' in slurm) {
    process.stdout.write(`\nSlurm peer skipped: ${slurm.skipped}\n`);
    return;
  }
  const slurmRate = ratePerSec(slurm.burst.finished, slurm.burst.wallMs);
  printSection(`Slurm (sbatch --parsable --wrap true; burst from ${options.slurmSubmitters} parallel submitters)`, [
    ['idle: submit -> R (allocated)', fmtLatency(slurm.idle.toRunning)],
    ['idle: submit -> completed', fmtLatency(slurm.idle.toFinished)],
    ['burst: throughput end to end', fmtRate(slurmRate, 'jobs')],
    ['burst: submit -> R (allocated)', fmtLatency(slurm.burst.toRunning)],
    ['burst: submit -> completed', fmtLatency(slurm.burst.toFinished)],
    ['burst: wall time', `${(slurm.burst.wallMs / 1000).toFixed(2)} s`],
    ['burst: jobs completed', endedLine(slurm.burst, 'failed sbatch')],
    ['slurmctld peak RSS', fmtMiB(slurm.ctldRssKiB)],
    ['settings', slurm.settings.join('; ')],
  ]);
  const p50 = (a: LatencySummary, b: LatencySummary) => `${fmtRatio(a.p50, b.p50)} (${fmtMs(a.p50)} vs ${fmtMs(b.p50)})`;
  for (const ours of results) {
    const oursRate = ratePerSec(ours.burst.finished, ours.burst.wallMs);
    const goal = ours.mode === 'warm' ? 5 : 2;
    printSection(`Ratio, ${ours.mode} (Sky Port / Slurm; for latencies Slurm / Sky Port, so > 1 means Sky Port is faster)`, [
      ['burst throughput', `${fmtRatio(oursRate, slurmRate)} (goal >= ${goal}x: ${oursRate >= goal * slurmRate ? 'met' : 'MISSED'})`],
      ['idle submit -> R p50', p50(slurm.idle.toRunning, ours.idle.toRunning)],
      ['idle submit -> finished p50', p50(slurm.idle.toFinished, ours.idle.toFinished)],
      ['burst submit -> R p50', p50(slurm.burst.toRunning, ours.burst.toRunning)],
      ['burst submit -> finished p50', p50(slurm.burst.toFinished, ours.burst.toFinished)],
    ]);
  }
}

main().catch((error) => {
  process.stderr.write(`bench/lifecycle failed: ${(error as Error).stack ?? error}\n`);
  process.exitCode = 1;
});
