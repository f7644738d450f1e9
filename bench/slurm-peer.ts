/**
 * The Slurm peer of the benchmarks: a one-node Slurm cluster on loopback, private to one benchmark run
 * (its own munged socket, slurm.conf, state and spool directories, ports), and `sbatch --wrap true` measured
 * against it. Nothing of the machine's own Slurm or MUNGE setup is used or touched.
 *
 *   munged ──socket──► slurmctld (port A) ◄──► slurmd -N localhost (port B)
 *                          ▲
 *                sbatch/squeue (SLURM_CONF=<dir>/slurm.conf)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/harness/spool.js';
import { onExit } from './cleanup.js';
import { peakRssKiB } from './stats.js';

const INSTALL_SCRIPT = fileURLToPath(new URL('../../scripts/install-slurm.sh', import.meta.url));
const DAEMONS = ['munged', 'mungekey', 'slurmctld', 'slurmd'] as const;
const CLIENTS = ['sbatch', 'squeue', 'sinfo', 'scancel'] as const;

/** Where a command lives (PATH, then the sbin directories daemons are installed in), or null. */
function locate(command: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin']) {
    if (dir && existsSync(join(dir, command))) return join(dir, command);
  }
  return null;
}

/**
 * Make sure Slurm and MUNGE are there (scripts/install-slurm.sh installs them as root on Debian and only
 * prints a note elsewhere). Returns null when the peer can run, else the reason it cannot.
 */
export function ensureSlurm(): string | null {
  if (process.env.SKYPORT_BENCH_NO_SLURM) return 'SKYPORT_BENCH_NO_SLURM is set';
  const missing = () => [...DAEMONS, ...CLIENTS].filter((c) => !locate(c));
  if (missing().length && existsSync(INSTALL_SCRIPT)) spawnSync('bash', [INSTALL_SCRIPT], { stdio: ['ignore', 'inherit', 'inherit'] });
  const still = missing();
  if (still.length) return `not installed: ${still.join(', ')} (scripts/install-slurm.sh installs slurm-wlm and munge as root on Debian)`;
  if (process.getuid?.() !== 0) return 'slurmd must run as root to start jobs';
  return null;
}

export interface SlurmOptions {
  /** CPUs declared for the node: the most one-CPU jobs that run at once (hardware is overridden). */
  cpus: number;
  /** false: the partition is DOWN, so jobs are accepted and stay pending (the submit path alone). */
  partitionUp: boolean;
  /** slurm.conf SchedulerParameters. */
  schedulerParameters: string;
  /** Record each job's allocation and completion time (ms) through PrologSlurmctld/EpilogSlurmctld. */
  recordJobTimes: boolean;
}

export interface SlurmCluster {
  dir: string;
  /** Environment for Slurm's client commands (SLURM_CONF of this cluster). */
  env: NodeJS.ProcessEnv;
  /** Lines "<job id> start|end <epoch ms>" appended by the controller's prolog and epilog. */
  jobTimesFile: string;
  /** The slurm.conf lines that matter for throughput, for the report. */
  settings: string[];
  /** Peak RSS of slurmctld in KiB (read it before stop). */
  controllerPeakRssKiB: () => number | null;
  /** Stop every daemon (cancelling what is left) and remove the directory; safe to call twice, and run on SIGINT/SIGTERM. */
  stop: () => Promise<void>;
}

interface Daemon {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
}

function startDaemon(name: string, command: string, args: string[], logFile: string): Daemon {
  const fd = openSync(logFile, 'a');
  const child = spawn(command, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => {});
  return { name, child, exited };
}

async function stopDaemon(daemon: Daemon): Promise<void> {
  if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) return;
  daemon.child.kill('SIGTERM');
  const killer = setTimeout(() => daemon.child.kill('SIGKILL'), 5_000);
  await daemon.exited;
  clearTimeout(killer);
}

const tail = (file: string, lines = 15): string => {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
};

/** Run a Slurm client command of this cluster; resolves with stdout, rejects with stderr. */
export function slurmCommand(env: NodeJS.ProcessEnv, cwd: string, command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    // 'close', not 'exit': the output pipes may still hold data when the process has exited.
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${err.trim()}`))));
  });
}

/** Poll (the controller offers no event for it) until the node reports the wanted state. */
async function waitForNode(env: NodeJS.ProcessEnv, cwd: string, wanted: RegExp, timeoutMs: number, logs: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      last = (await slurmCommand(env, cwd, 'sinfo', ['-h', '-N', '-o', '%T'])).trim();
      if (wanted.test(last)) return;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the Slurm node did not become ${wanted} within ${timeoutMs} ms (last: ${last})\n${logs()}`);
}

/** Start munged, slurmctld and slurmd as this user (root) on a fresh private directory. */
export async function startSlurm(options: SlurmOptions): Promise<SlurmCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'skyport-bench-slurm-'));
  // munged insists that every directory on the way to its socket is searchable by all.
  chmodSync(dir, 0o755);
  const paths = {
    keyDir: join(dir, 'munge'),
    socketDir: join(dir, 'socket'),
    state: join(dir, 'state'),
    spool: join(dir, 'slurmd'),
    logs: join(dir, 'log'),
    work: join(dir, 'work'),
  };
  mkdirSync(paths.keyDir, { mode: 0o700 });
  for (const d of [paths.socketDir, paths.state, paths.spool, paths.logs, paths.work]) mkdirSync(d, { mode: 0o755 });
  const key = join(paths.keyDir, 'munge.key');
  const socket = join(paths.socketDir, 'munge.socket');
  const conf = join(dir, 'slurm.conf');
  const jobTimesFile = join(dir, 'job-times');
  writeFileSync(jobTimesFile, '');

  const daemons: Daemon[] = [];
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SLURM_')));
  env.SLURM_CONF = conf;
  // Registered at once: an interrupted start must not leave daemons behind either.
  const stop = onExit(async () => {
    const ctld = daemons.find((d) => d.name === 'slurmctld');
    if (ctld && ctld.child.exitCode === null) await slurmCommand(env, paths.work, 'scancel', ['--quiet', '--full', '--user', 'root']).catch(() => {});
    // Reverse order: the node, then the controller, then the authentication daemon they both use.
    for (const d of [...daemons].reverse()) await stopDaemon(d);
    rmSync(dir, { recursive: true, force: true });
  });

  try {
    const made = spawnSync(locate('mungekey')!, ['--create', '--keyfile', key], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`mungekey failed: ${made.stderr}`);
    daemons.push(
      startDaemon(
        'munged',
        locate('munged')!,
        ['--foreground', `--socket=${socket}`, `--key-file=${key}`, `--pid-file=${join(paths.keyDir, 'munged.pid')}`, `--seed-file=${join(paths.keyDir, 'munged.seed')}`, `--log-file=${join(paths.logs, 'munged.log')}`],
        join(paths.logs, 'munged.out'),
      ),
    );
    await waitForFile(socket, 10_000, () => tail(join(paths.logs, 'munged.out')));

    const hooks: string[] = [];
    if (options.recordJobTimes) {
      for (const [hook, word] of [['PrologSlurmctld', 'start'], ['EpilogSlurmctld', 'end']] as const) {
        const script = join(dir, `${word}.sh`);
        writeFileSync(script, `#!/bin/sh\necho "$SLURM_JOB_ID ${word} $(/bin/date +%s%3N)" >> ${jobTimesFile}\n`, { mode: 0o755 });
        hooks.push(`${hook}=${script}`);
      }
    }
    const [ctldPort, slurmdPort] = [await freePort(), await freePort()];
    const settings = [
      'SchedulerType=sched/builtin',
      `SchedulerParameters=${options.schedulerParameters}`,
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_CPU',
      `NodeName=localhost NodeAddr=127.0.0.1 CPUs=${options.cpus} State=UNKNOWN`,
      `PartitionName=bench Nodes=localhost Default=YES MaxTime=INFINITE OverSubscribe=NO State=${options.partitionUp ? 'UP' : 'DOWN'}`,
    ];
    writeFileSync(
      conf,
      [
        'ClusterName=skyportbench',
        'SlurmctldHost=localhost',
        `SlurmctldPort=${ctldPort}`,
        `SlurmdPort=${slurmdPort}`,
        'SlurmUser=root',
        'SlurmdUser=root',
        'AuthType=auth/munge',
        'CredType=cred/munge',
        `AuthInfo=socket=${socket}`,
        `StateSaveLocation=${paths.state}`,
        `SlurmdSpoolDir=${paths.spool}`,
        `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`,
        `SlurmdPidFile=${join(dir, 'slurmd.pid')}`,
        `SlurmctldLogFile=${join(paths.logs, 'slurmctld.log')}`,
        `SlurmdLogFile=${join(paths.logs, 'slurmd.log')}`,
        'SlurmctldDebug=info',
        'SlurmdDebug=info',
        // No cgroups in these sandboxes: track processes through /proc, bind no tasks.
        'ProctrackType=proctrack/linuxproc',
        'TaskPlugin=task/none',
        'SwitchType=switch/none',
        'MpiDefault=none',
        'JobAcctGatherType=jobacct_gather/none',
        'AccountingStorageType=accounting_storage/none',
        'JobCompType=jobcomp/none',
        // The node declares the CPUs of the configuration, not of the hardware.
        'SlurmdParameters=config_overrides',
        'ReturnToService=2',
        'MaxJobCount=100000',
        'MinJobAge=300',
        ...hooks,
        ...settings,
        '',
      ].join('\n'),
    );
    daemons.push(startDaemon('slurmctld', locate('slurmctld')!, ['-D', '-f', conf], join(paths.logs, 'slurmctld.out')));
    daemons.push(startDaemon('slurmd', locate('slurmd')!, ['-D', '-N', 'localhost', '-f', conf], join(paths.logs, 'slurmd.out')));
    const logs = () => ['slurmctld.out', 'slurmd.out'].map((f) => `--- ${f}\n${tail(join(paths.logs, f))}`).join('\n');
    await waitForNode(env, paths.work, /^(idle|down)/, 30_000, logs);
    return {
      dir: paths.work,
      env,
      jobTimesFile,
      settings,
      controllerPeakRssKiB: () => {
        const pid = daemons.find((d) => d.name === 'slurmctld')?.child.pid;
        return pid ? peakRssKiB(pid) : null;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

function waitForFile(path: string, timeoutMs: number, logs: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = () => {
      if (existsSync(path)) resolve();
      else if (Date.now() > deadline) reject(new Error(`${path} did not appear within ${timeoutMs} ms\n${logs()}`));
      else setTimeout(check, 20);
    };
    check();
  });
}

/** One `sbatch` as measured from the submitting side. */
export interface Submission {
  jobId: string;
  /** Epoch ms when sbatch was started. */
  submittedAt: number;
  /** From starting sbatch to its exit with the job id. */
  latencyMs: number;
}

export interface SbatchRun {
  submissions: Submission[];
  failures: string[];
  wallMs: number;
}

/**
 * Submit `jobs` times `sbatch --parsable --wrap true` from `submitters` parallel loops (each starts its next
 * sbatch when the previous one exits: the shape of N users' scripts submitting as fast as they can).
 */
export async function runSbatch(cluster: SlurmCluster, jobs: number, submitters: number): Promise<SbatchRun> {
  const submissions: Submission[] = [];
  const failures: string[] = [];
  let next = 0;
  const started = performance.now();
  const loop = async () => {
    while (next < jobs) {
      next++;
      const submittedAt = Date.now();
      const t0 = performance.now();
      try {
        const out = await slurmCommand(cluster.env, cluster.dir, 'sbatch', ['--parsable', '--wrap', 'true']);
        const jobId = out.trim().split(';')[0]!;
        if (!/^\d+$/.test(jobId)) throw new Error(`sbatch answered "${out.trim()}" instead of a job id`);
        submissions.push({ jobId, submittedAt, latencyMs: performance.now() - t0 });
      } catch (error) {
        failures.push((error as Error).message);
        if (failures.length > 20) throw new Error(`sbatch keeps failing: ${failures.slice(-3).join(' | ')}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, submitters) }, loop));
  return { submissions, failures, wallMs: performance.now() - started };
}

export interface JobTimes {
  start?: number;
  end?: number;
}

/** Parse the prolog/epilog record: job id → epoch ms of allocation and completion. */
export function readJobTimes(file: string): Map<string, JobTimes> {
  const times = new Map<string, JobTimes>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [id, word, ms] = line.trim().split(/\s+/);
    if (!id || !ms || (word !== 'start' && word !== 'end')) continue;
    const entry = times.get(id) ?? {};
    entry[word] = Number(ms);
    times.set(id, entry);
  }
  return times;
}

/** Resolve once every job of `ids` has a completion record (watching the record file), or at the timeout. */
export function waitForCompletions(cluster: SlurmCluster, ids: readonly string[], timeoutMs: number): Promise<{ times: Map<string, JobTimes>; timedOut: boolean }> {
  return new Promise((resolve) => {
    let done = false;
    const check = (timedOut = false) => {
      if (done) return;
      const times = readJobTimes(cluster.jobTimesFile);
      if (timedOut || ids.every((id) => times.get(id)?.end !== undefined)) {
        done = true;
        watcher.close();
        clearTimeout(timer);
        clearInterval(safety);
        resolve({ times, timedOut });
      }
    };
    const watcher = watch(cluster.jobTimesFile, () => check());
    // fs.watch may coalesce or miss appends from other processes: a slow re-check makes sure nothing is lost.
    const safety = setInterval(() => check(), 500);
    const timer = setTimeout(() => check(true), timeoutMs);
    check();
  });
}
