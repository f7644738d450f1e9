/**
 * bench/submit: durable submissions per second from N terminals to a fresh swm-core, and the same shape for
 * Slurm's `sbatch --wrap true` on a one-node Slurm on this machine.
 *
 * The core runs as a real process on a fresh spool whose only gate is unmanaged and unreachable, so every
 * job stays queued: what is measured is the submit path alone (TLS WebSocket → validation → script parse →
 * group-committed, fsynced SQLite insert → acknowledgement). The Slurm partition is DOWN for the same
 * reason: sbatch is answered once slurmctld has queued the job, and nothing runs.
 */
import { Command, InvalidArgumentError } from 'commander';
import { availableParallelism, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectTerminal, killGates, startCoreProcess, type CoreProcess } from '../test/harness/core.js';
import { freePort, makeTestSpool, type TestSpool } from '../test/harness/spool.js';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { onExit } from './cleanup.js';
import { ensureSlurm, runSbatch, startSlurm, type SbatchRun, type SlurmCluster } from './slurm-peer.js';
import { cpuSeconds, fmtCpu, fmtLatency, fmtMiB, fmtRate, fmtRatio, peakRssKiB, printSection, ratePerSec, summarize } from './stats.js';

const CPU_PROFILER = fileURLToPath(new URL('./cpu-profile.js', import.meta.url));
const SCRIPT = '#!/bin/sh\ntrue\n';
/** Submissions per terminal before the clock starts (connection set-up, JIT, SQLite page cache). */
const WARMUP_PER_TERMINAL = 25;

const positive = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a positive integer is needed');
  return n;
};

const options = new Command('bench-submit')
  .description('Durable job submissions per second to swm-core from N terminals, side by side with Slurm sbatch.')
  .option('--terminals <n>', 'concurrent terminals (one mTLS WebSocket each)', positive, 8)
  .option('--jobs <n>', 'submissions in total, shared by the terminals', positive, 4000)
  .option('--in-flight <n>', 'requests each terminal keeps outstanding', positive, 4)
  .option('--slurm-submitters <n>', 'parallel sbatch loops', positive, 4)
  .option('--slurm-jobs <n>', 'sbatch submissions (default: --jobs)', positive)
  .option('--no-slurm', 'skip the Slurm peer')
  .option('--cpu-prof <dir>', "write the core's V8 CPU profile (.cpuprofile, as node --cpu-prof writes) into this directory")
  .parse()
  .opts<{ terminals: number; jobs: number; inFlight: number; slurmSubmitters: number; slurmJobs?: number; slurm: boolean; cpuProf?: string }>();

interface OursResult {
  submitted: number;
  wallMs: number;
  latencies: number[];
  stored: number;
  coreRssKiB: number | null;
  /** CPU seconds used during the measured window by the core, and by the terminals (this process). */
  coreCpuSec: number | null;
  terminalsCpuSec: number;
}

/** Each terminal submits its share, keeping `inFlight` calls outstanding; returns each call's latency. */
async function submitFrom(terminal: TerminalClient, count: number, inFlight: number, latencies: number[]): Promise<void> {
  let left = count;
  const lane = async () => {
    while (left > 0) {
      left--;
      const t0 = performance.now();
      await terminal.call('job.submit', { script: SCRIPT, name: 'bench' });
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
}

async function measureOurs(): Promise<OursResult> {
  // The only remote's gate is unmanaged and nothing listens on its port: jobs are accepted and stay queued.
  const deadPort = await freePort();
  const spool: TestSpool = await makeTestSpool({
    configure: (config) => {
      for (const gate of config.gates) gate.managed = false;
      config.gates.find((g) => g.name === 'local')!.port = deadPort;
    },
  });
  let core: CoreProcess | null = null;
  const terminals: TerminalClient[] = [];
  const stop = onExit(async () => {
    await Promise.all(terminals.map((t) => t.close().catch(() => {})));
    // SIGTERM lets the core stop cleanly, which also writes its CPU profile when one was asked for.
    await core?.kill('SIGTERM');
    killGates(spool);
    spool.cleanup();
  });
  try {
    core = await startCoreProcess(spool, options.cpuProf ? { NODE_OPTIONS: `--import=${CPU_PROFILER}`, SKYPORT_CPU_PROFILE_DIR: resolve(options.cpuProf) } : {});
    for (let i = 0; i < options.terminals; i++) terminals.push(await connectTerminal(spool.homeDir, core.port));

    await Promise.all(terminals.map((t) => submitFrom(t, WARMUP_PER_TERMINAL, options.inFlight, [])));

    const shares = terminals.map((_, i) => Math.floor(options.jobs / terminals.length) + (i < options.jobs % terminals.length ? 1 : 0));
    const latencies: number[] = [];
    const coreCpu0 = cpuSeconds(core.child.pid!);
    const benchCpu0 = process.cpuUsage();
    const started = performance.now();
    await Promise.all(terminals.map((t, i) => submitFrom(t, shares[i]!, options.inFlight, latencies)));
    const wallMs = performance.now() - started;
    const coreCpu1 = cpuSeconds(core.child.pid!);
    const benchCpu = process.cpuUsage(benchCpu0);

    const status = await terminals[0]!.call('status');
    const coreRssKiB = peakRssKiB(core.child.pid!);
    return {
      submitted: latencies.length,
      wallMs,
      latencies,
      stored: status.jobs.Q ?? 0,
      coreRssKiB,
      coreCpuSec: coreCpu0 !== null && coreCpu1 !== null ? coreCpu1 - coreCpu0 : null,
      terminalsCpuSec: (benchCpu.user + benchCpu.system) / 1e6,
    };
  } finally {
    await stop();
  }
}

async function measureSlurm(): Promise<{ run: SbatchRun; ctldRssKiB: number | null; settings: string[] } | { skipped: string }> {
  if (!options.slurm) return { skipped: '--no-slurm' };
  const missing = ensureSlurm();
  if (missing) return { skipped: missing };
  let cluster: SlurmCluster | null = null;
  try {
    cluster = await startSlurm({ cpus: availableParallelism(), partitionUp: false, schedulerParameters: 'default_queue_depth=100', recordJobTimes: false });
    await runSbatch(cluster, Math.min(50, options.slurmSubmitters * 10), options.slurmSubmitters); // warm-up
    const run = await runSbatch(cluster, options.slurmJobs ?? options.jobs, options.slurmSubmitters);
    return { run, ctldRssKiB: cluster.controllerPeakRssKiB(), settings: cluster.settings };
  } catch (error) {
    return { skipped: `the one-node Slurm failed: ${(error as Error).message}` };
  } finally {
    await cluster?.stop();
  }
}

async function main(): Promise<void> {
  const total = options.jobs;
  process.stdout.write(
    `bench/submit: ${total} job.submit calls from ${options.terminals} terminals (mTLS WebSocket each), ` +
      `${options.inFlight} in flight per terminal, after ${WARMUP_PER_TERMINAL} warm-up submissions per terminal\n` +
      `machine: ${availableParallelism()} CPUs, load average at start ${loadavg()[0]!.toFixed(2)}\n` +
      `core: real swm-core process, fresh spool, gate unreachable so jobs stay queued (durable submit path only)\n`,
  );
  const ours = await measureOurs();
  const oursRate = ratePerSec(ours.submitted, ours.wallMs);
  const oursLatency = summarize(ours.latencies);
  printSection('Sky Port (job.submit, acknowledged after the fsynced commit)', [
    ['durable submissions', fmtRate(oursRate, 'submissions')],
    ['latency', fmtLatency(oursLatency)],
    ['wall time', `${(ours.wallMs / 1000).toFixed(2)} s`],
    ['jobs stored (state Q)', `${ours.stored} (expected ${total + WARMUP_PER_TERMINAL * options.terminals})`],
    ['core peak RSS (VmHWM)', fmtMiB(ours.coreRssKiB)],
    ['CPU used while measured', `core ${fmtCpu(ours.coreCpuSec, ours.wallMs)}, terminals ${fmtCpu(ours.terminalsCpuSec, ours.wallMs)}`],
    ['goal (issue 2)', `>= 2000 submissions/s from 8 terminals: ${oursRate >= 2000 ? 'met' : 'MISSED'}`],
  ]);

  const slurm = await measureSlurm();
  if ('skipped' in slurm) {
    process.stdout.write(`\nSlurm peer skipped: ${slurm.skipped}\n`);
    return;
  }
  const slurmRate = ratePerSec(slurm.run.submissions.length, slurm.run.wallMs);
  printSection(`Slurm (sbatch --parsable --wrap true, ${options.slurmSubmitters} parallel submitters, partition DOWN so jobs stay pending)`, [
    ['submissions', fmtRate(slurmRate, 'submissions')],
    ['latency', fmtLatency(summarize(slurm.run.submissions.map((s) => s.latencyMs)))],
    ['wall time', `${(slurm.run.wallMs / 1000).toFixed(2)} s`],
    ['failed sbatch', String(slurm.run.failures.length)],
    ['slurmctld peak RSS', fmtMiB(slurm.ctldRssKiB)],
    ['settings', slurm.settings.join('; ')],
  ]);
  printSection('Ratio (Sky Port / Slurm)', [
    ['submissions/s', fmtRatio(oursRate, slurmRate)],
    ['p50 latency (Slurm / Sky Port)', fmtRatio(summarize(slurm.run.submissions.map((s) => s.latencyMs)).p50, oursLatency.p50)],
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
