import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ACCOUNT_PREFIX, CLAIMS_DIR, canIsolate, passwdEntry } from '../gates/local/node-accounts.js';
import { localNodesRoot } from '../gates/local/local-gate.js';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { Job } from '../terminal-protocol/job.js';
import type { ParamsOf, ResultOf } from '../terminal-protocol/method.js';
import type { TerminalMethods } from '../terminal-protocol/terminal-methods.js';
import { gatePid, isFinal, startFixture, type CoreFixture, type CoreProcess } from './harness/core.js';
import { ensureTestImage, podmanWorks } from './harness/podman-image.js';
import { readJobFile } from './harness/submit.js';

/**
 * Fault injection: 50 jobs of mixed kinds run while the core is killed (-9) and restarted, and the local gate
 * is killed (-9, the core restarts it) or frozen (SIGSTOP for 1-3 s). A seeded PRNG chooses the jobs, the
 * moments they are submitted and canceled, and the faults; SWM_FAULT_SEED=<n> replays a run. Afterwards:
 * every acknowledged job ended once, as its script says, ran at most once, and nothing of it is left.
 */

const JOBS = 50;
/** Most nodes the local remote may hold at once: bounds the load on a small machine. */
const MAX_NODES = 5;
/** Faults are injected while jobs are in flight, for at most this long. */
const FAULT_WINDOW_MS = 60_000;
/** After the faults, how long every acknowledged job has to end. */
const SETTLE_MS = 90_000;
/** After every job ended, how long the gate has to finish removing what it made. */
const CLEANUP_MS = 15_000;
/** A terminal call that takes longer than this means the core hangs. */
const CALL_TIMEOUT_MS = 20_000;
/** Gate kills in a row (no core restart between) before the plan freezes it instead: the restart backoff grows fast. */
const GATE_KILLS_PER_CORE = 3;

/** mulberry32: a small, fast, seedable PRNG (uniform in [0, 1)). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function seedFromEnvironment(): number {
  const raw = process.env.SWM_FAULT_SEED;
  if (raw === undefined || raw === '') return randomBytes(4).readUInt32BE(0);
  const seed = Number(raw);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`SWM_FAULT_SEED must be an integer in [0, 2^32): ${raw}`);
  return seed;
}

type Kind = 'true' | 'sleep' | 'exit' | 'files' | 'cancel' | 'container';
type Expected = { state: 'F' | 'E'; exitcode: number } | { state: 'C' };

interface PlannedJob {
  index: number;
  kind: Kind;
  script: string;
  inputs: { path: string; content: Buffer }[];
  expected: Expected;
  /** A declared output and the content it must have. */
  output: { path: string; content: string } | null;
  /** Whether the job appends to a marker file on this machine (plain processes; a container sees only its directory). */
  hostMarker: boolean;
  /** Pause before this job is submitted. */
  gapMs: number;
  /** For canceled jobs: how long after its submission the cancel is sent. */
  cancelAfterMs: number | null;
}

type FaultKind = 'core-kill' | 'gate-kill' | 'gate-stop';
interface PlannedFault {
  delayMs: number;
  kind: FaultKind;
  /** How long a frozen gate stays frozen. */
  stopMs: number;
}

const pick = <T>(random: () => number, weighted: [T, number][]): T => {
  const total = weighted.reduce((sum, [, w]) => sum + w, 0);
  let r = random() * total;
  for (const [value, w] of weighted) if ((r -= w) < 0) return value;
  return weighted[weighted.length - 1]![0];
};
const between = (random: () => number, min: number, max: number): number => min + Math.floor(random() * (max - min + 1));

/** The jobs of a run, all decided by the PRNG. Every plain job records each run of itself in `markers/<job id>`. */
function planJobs(random: () => number, markers: string, image: string | null): PlannedJob[] {
  const jobs: PlannedJob[] = [];
  let containers = 0;
  for (let index = 0; index < JOBS; index++) {
    const weights: [Kind, number][] = [
      ['true', 14],
      ['sleep', 24],
      ['exit', 18],
      ['files', 14],
      ['cancel', 14],
      ['container', image && containers < 5 ? 16 : 0],
    ];
    const kind = pick(random, weights);
    const directives = [`#SWM name fault-${index}-${kind}`];
    const marker = `echo run >> ${markers}/"$SWM_JOB_ID"\necho "marker $SWM_JOB_ID"`;
    let body: string;
    let expected: Expected;
    let inputs: PlannedJob['inputs'] = [];
    let output: PlannedJob['output'] = null;
    let cancelAfterMs: number | null = null;
    switch (kind) {
      case 'true':
        body = 'true';
        expected = { state: 'F', exitcode: 0 };
        break;
      case 'sleep':
        body = `sleep 0.${between(random, 1, 9)}`;
        expected = { state: 'F', exitcode: 0 };
        break;
      case 'exit': {
        const code = between(random, 1, 120);
        body = `sleep 0.${between(random, 0, 5)}\nexit ${code}`;
        expected = { state: 'E', exitcode: code };
        break;
      }
      case 'files': {
        const text = `${Array.from({ length: between(random, 1, 2000) }, () => between(random, 0, 15).toString(16)).join('')}\n`;
        directives.push('#SWM input-files in.txt', '#SWM output-files out.txt');
        inputs = [{ path: 'in.txt', content: Buffer.from(text) }];
        body = 'tr a-f A-F < in.txt > out.txt';
        output = { path: 'out.txt', content: text.toUpperCase() };
        expected = { state: 'F', exitcode: 0 };
        break;
      }
      case 'cancel':
        body = 'sleep 60';
        expected = { state: 'C' };
        cancelAfterMs = between(random, 200, 8_000);
        break;
      case 'container': {
        containers++;
        const code = random() < 0.5 ? 0 : between(random, 1, 100);
        directives.push(`#SWM container-image ${image}`);
        body = `sleep 0.${between(random, 1, 5)}\nexit ${code}`;
        expected = code === 0 ? { state: 'F', exitcode: 0 } : { state: 'E', exitcode: code };
        break;
      }
    }
    const hostMarker = kind !== 'container';
    const script = ['#!/bin/sh', ...directives, hostMarker ? marker : 'echo "marker $SWM_JOB_ID"', body, ''].join('\n');
    jobs.push({ index, kind, script, inputs, expected, output, hostMarker, gapMs: between(random, 0, 600), cancelAfterMs });
  }
  return jobs;
}

/** The faults of a run, in order; the run stops injecting when its jobs are done or its window closes. */
function planFaults(random: () => number): PlannedFault[] {
  const faults: PlannedFault[] = [];
  let gateKills = 0;
  for (let i = 0; i < 60; i++) {
    let kind = pick<FaultKind>(random, [
      ['core-kill', 35],
      ['gate-kill', 30],
      ['gate-stop', 35],
    ]);
    if (kind === 'gate-kill' && gateKills >= GATE_KILLS_PER_CORE) kind = 'gate-stop';
    if (kind === 'gate-kill') gateKills++;
    if (kind === 'core-kill') gateKills = 0;
    faults.push({ delayMs: between(random, 1_000, 4_000), kind, stopMs: between(random, 1_000, 3_000) });
  }
  return faults;
}

const WAITING_FOR_INPUTS = 'waiting for input files';

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A process that exists and is not a zombie (an orphan's zombie lingers until init reaps it). */
const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

/** Live (non-zombie) processes whose real uid is `uid`, as "pid command". */
function processesOf(uid: number): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      const realUid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      const state = /^State:\s+(\S)/m.exec(status)?.[1];
      if (realUid !== uid || state === 'Z') continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      found.push(`${entry} ${command.slice(0, 120)}`);
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

/**
 * Live processes in one of `sessions` (a managed gate leads a session of its own, which its node processes
 * and the commands it runs stay in), as "pid command". The gate running now (`live`) and its idle spare node
 * processes (its children, still root, still where the gate is: they have not been handed a node) are not
 * counted; a node process that was handed a node runs as the node's account, in the node's directory.
 */
function processesInSessions(sessions: ReadonlySet<number>, live: number | null): string[] {
  const cwdOf = (pid: number | string): string | null => {
    try {
      return readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      return null;
    }
  };
  const liveCwd = live === null ? null : cwdOf(live);
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === live) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid pgrp session ...
      const [state, ppid, , session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z' || !sessions.has(Number(session))) continue;
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1]);
      const cwd = cwdOf(entry);
      if (live !== null && Number(ppid) === live && uid === 0 && cwd !== null && cwd === liveCwd) continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      found.push(`${entry} (session ${session}, parent ${ppid}, uid ${uid}, in ${cwd ?? '?'}) ${command.slice(0, 120)}`);
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

/** Node accounts whose claim file names this gate's state directory. */
function claimsOf(gateState: string): string[] {
  if (!existsSync(CLAIMS_DIR)) return [];
  return readdirSync(CLAIMS_DIR).filter((name) => {
    try {
      return readFileSync(join(CLAIMS_DIR, name), 'utf8') === gateState;
    } catch {
      return false;
    }
  });
}

const claimHolder = (name: string): string | null => {
  try {
    return readFileSync(join(CLAIMS_DIR, name), 'utf8');
  } catch {
    return null;
  }
};

interface Observed {
  /** Every state the job was seen in (notifications and polls), in order, as "S end_time". */
  history: string[];
  /** The first terminal observation, and anything seen after it that differs from it. */
  firstFinal: string | null;
  leftFinal: string[];
}

describe('fault injection: kill -9 of the core, kill -9 and SIGSTOP of the gate, over 50 mixed jobs', function () {
  this.timeout(300_000);
  const seed = seedFromEnvironment();
  const tag = `[seed ${seed}: replay with SWM_FAULT_SEED=${seed}]`;
  const random = mulberry32(seed);
  const isolate = canIsolate();
  const containersOk = podmanWorks();

  let f: CoreFixture;
  let markers: string;
  let gateState: string;
  let plan: PlannedJob[];
  /** Acknowledged job id → its plan. */
  const acknowledged = new Map<string, PlannedJob>();
  const observed = new Map<string, Observed>();
  /** Submissions whose answer was lost with the connection: the job may or may not exist. */
  let unansweredSubmits = 0;
  const cancels = new Map<string, string>();
  /** Unacknowledged jobs that waited for inputs nobody could upload (canceled by the test). */
  const strangersWaitingForInputs = new Set<string>();
  const timeline: string[] = [];
  const coreExits: string[] = [];
  const accountsUsed = new Set<string>();
  /** Every process that was this spool's managed gate (seen in its pidfile or in the core's log). */
  const gatePids = new Set<number>();
  /** Core processes this test killed (any other exit is a crash). */
  const killedCores = new WeakSet<object>();
  let stoppedGate: number | null = null;
  let restarting: Promise<void> | null = null;
  let started = 0;
  let finalJobs: Job[] = [];

  const note = (line: string): void => {
    timeline.push(`${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s  ${line}`);
  };

  const observe = (job: Job): void => {
    const entry = observed.get(job.id);
    if (!entry) return;
    const seen = `${job.state} ${job.end_time ?? '-'}`;
    if (entry.history[entry.history.length - 1] !== seen) entry.history.push(seen);
    if (entry.firstFinal === null) {
      if (isFinal(job)) entry.firstFinal = seen;
    } else if (seen !== entry.firstFinal) entry.leftFinal.push(seen);
  };
  const onNotification = (name: string, params: unknown): void => {
    if (name === 'job.event') observe(params as Job);
  };

  /** Follow a core process: an exit we did not cause is a crash, recorded; the core is then started again, as its supervisor would. */
  const watchCore = (core: CoreProcess): void => {
    const child = core.child;
    child.once('exit', (code, signal) => {
      if (killedCores.has(child)) return;
      coreExits.push(`pid ${child.pid} exited by itself (${signal ?? `code ${code}`}):\n${core.output().slice(-4000)}`);
      note(`core exited by itself (${signal ?? `code ${code}`}); starting it again`);
      restartCore().catch(() => undefined);
    });
  };

  /** A terminal call that survives core restarts: lost connections wait for the restart and try again. */
  async function call<M extends keyof TerminalMethods & string>(method: M, params?: ParamsOf<TerminalMethods, M>): Promise<ResultOf<TerminalMethods, M>> {
    const until = Date.now() + 60_000;
    for (;;) {
      while (restarting) await restarting;
      const client = f.admin;
      try {
        return await client.call(method, params, { timeoutMs: CALL_TIMEOUT_MS });
      } catch (error) {
        if (!(error instanceof RpcError) || error.code !== ErrorCode.Unavailable || Date.now() > until) throw error;
        if (!restarting) await pause(200);
      }
    }
  }

  const subscribe = (client: TerminalClient, id: string): void => {
    client.call('job.subscribe', { id }).then(observe, () => undefined);
  };

  /** Kill -9 the core (if it still runs) and start it again; callers of `call` wait for it. */
  function restartCore(): Promise<void> {
    if (restarting) return restarting;
    killedCores.add(f.core.child);
    f.admin.off('notification', onNotification);
    restarting = f
      .restart('SIGKILL')
      .then(() => {
        watchCore(f.core);
        f.admin.on('notification', onNotification);
        for (const id of acknowledged.keys()) subscribe(f.admin, id);
      })
      .finally(() => {
        restarting = null;
      });
    return restarting;
  }

  /** The gate's pid once it runs (it is being restarted after a kill), or null after `timeoutMs`. */
  async function liveGate(timeoutMs = 40_000): Promise<number | null> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        const pid = gatePid(f.spool);
        if (alive(pid)) return pid;
      } catch {
        /* no pidfile yet */
      }
      if (Date.now() > until) return null;
      await pause(100);
    }
  }

  async function inject(fault: PlannedFault): Promise<void> {
    if (fault.kind === 'core-kill') {
      note('core: SIGKILL, restart');
      await restartCore();
      note('core: listening again');
      return;
    }
    const pid = await liveGate();
    if (pid === null) throw new Error(`${tag} the managed gate did not come back within 40 s`);
    if (fault.kind === 'gate-kill') {
      note(`gate ${pid}: SIGKILL`);
      process.kill(pid, 'SIGKILL');
      return;
    }
    note(`gate ${pid}: SIGSTOP for ${fault.stopMs} ms`);
    process.kill(pid, 'SIGSTOP');
    stoppedGate = pid;
    try {
      await pause(fault.stopMs);
    } finally {
      process.kill(pid, 'SIGCONT');
      stoppedGate = null;
      note(`gate ${pid}: SIGCONT`);
    }
  }

  /** Submit a planned job until it is acknowledged, then upload and commit its inputs. */
  async function submit(job: PlannedJob): Promise<string> {
    let id: string;
    for (;;) {
      while (restarting) await restarting;
      try {
        id = (await f.admin.call('job.submit', {
          script: job.script,
          ...(job.inputs.length ? { inputs: job.inputs.map((i) => ({ path: i.path, size: i.content.length, sha256: sha256(i.content) })) } : {}),
        }, { timeoutMs: CALL_TIMEOUT_MS })).id;
        break;
      } catch (error) {
        if (!(error instanceof RpcError) || error.code !== ErrorCode.Unavailable) throw error;
        unansweredSubmits++;
        note(`job ${job.index}: submission unanswered (${error.message}); submitting again`);
        if (!restarting) await pause(200);
      }
    }
    acknowledged.set(id, job);
    observed.set(id, { history: [], firstFinal: null, leftFinal: [] });
    subscribe(f.admin, id);
    note(`job ${job.index} (${job.kind}) acknowledged: ${id}`);
    if (job.inputs.length === 0) return id;
    try {
      // Writes are idempotent (same bytes, same offset), so `call` may repeat them across a restart.
      for (const input of job.inputs) await call('job.input.write', { id, path: input.path, offset: 0, data: input.content.toString('base64') });
      await call('job.input.commit', { id });
    } catch (error) {
      // A commit repeated because its answer was lost is refused once the first took effect: the job no longer waits.
      if ((await call('job.get', { id })).state_details === WAITING_FOR_INPUTS) throw error;
    }
    return id;
  }

  async function cancelLater(id: string, afterMs: number): Promise<void> {
    await pause(afterMs);
    try {
      const job = await call('job.cancel', { id });
      cancels.set(id, `sent in ${job.state} (${job.state_details})`);
      note(`cancel ${id} in ${job.state}`);
    } catch (error) {
      cancels.set(id, `refused: ${(error as Error).message}`);
      note(`cancel ${id} refused: ${(error as Error).message}`);
    }
  }

  /**
   * Poll every job until all ended (or the deadline). A job whose submission went unanswered and that declared
   * inputs waits for them, rightly, since nobody knew its id to upload them: it is canceled.
   */
  async function allEnded(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const { jobs } = await call('job.list', { all: true, limit: 1000 });
      jobs.forEach(observe);
      finalJobs = jobs;
      for (const job of jobs) {
        if (acknowledged.has(job.id) || strangersWaitingForInputs.has(job.id) || job.state_details !== WAITING_FOR_INPUTS) continue;
        strangersWaitingForInputs.add(job.id);
        await call('job.cancel', { id: job.id }).catch(() => undefined);
        note(`unacknowledged job ${job.id} (${job.name}) waited for its inputs: canceled`);
      }
      if (jobs.every(isFinal)) return true;
      if (Date.now() > until) return false;
      await pause(300);
    }
  }

  const scanClaims = (): void => {
    for (const name of claimsOf(gateState)) accountsUsed.add(name);
    try {
      gatePids.add(gatePid(f.spool));
    } catch {
      /* no pidfile at this moment */
    }
  };

  /** Gates the core started or adopted, from its log (a gate killed while starting never wrote its pidfile). */
  const gatesInCoreLog = (): number[] => {
    const log = join(f.spool.spool.logsDir, 'core.log');
    if (!existsSync(log)) return [];
    return readFileSync(log, 'utf8')
      .split('\n')
      .filter((line) => /"msg":"(started managed gate|adopted running gate)"/.test(line) && line.includes('"gate":"local"'))
      .flatMap((line) => {
        const pids = [...line.matchAll(/"pid":(\d+)/g)].map((m) => Number(m[1]));
        return pids.length ? [pids[pids.length - 1]!] : [];
      });
  };

  /** Accounts the gate's log says it used (a claim can come and go between two scans). */
  const accountsInGateLog = (): string[] => {
    const log = join(f.spool.spool.logsDir, 'gate-local.log');
    if (!existsSync(log)) return [];
    return [...readFileSync(log, 'utf8').matchAll(new RegExp(`"account":"(${ACCOUNT_PREFIX}\\d+)"`, 'g'))].map((m) => m[1]!);
  };

  /** What is left of the run on this machine, per kind; empty lists when nothing is. */
  async function leftovers(): Promise<{
    partitions: string[];
    gatePartitions: string[];
    nodeDirs: string[];
    claims: string[];
    processes: string[];
    gateProcesses: string[];
    unchecked: string[];
  }> {
    const status = await call('status');
    const local = status.gates.find((g) => g.name === 'local');
    const partitions =
      local?.connected && local.health === 'healthy'
        ? (await call('partition.list')).map((p) => `${p.name} (${p.status}, job ${p.jobId})`)
        : [`cannot list: the local gate is ${local ? `${local.health} (${local.problem})` : 'missing'}`];
    const stateFile = join(gateState, 'state.json');
    const gatePartitions = existsSync(stateFile)
      ? (JSON.parse(readFileSync(stateFile, 'utf8')) as { partitions: { name: string; status: string }[] }).partitions.map((p) => `${p.name} (${p.status})`)
      : [];
    const nodesRoot = localNodesRoot(gateState);
    // One directory per partition under the gate's nodes root (which itself stays, naming its owner in .owner).
    const nodeDirs = !existsSync(nodesRoot) ? [] : readdirSync(nodesRoot).filter((d) => d !== '.owner').map((d) => join(nodesRoot, d));
    const claims = isolate ? claimsOf(gateState) : [];
    const processes: string[] = [];
    const unchecked: string[] = [];
    if (isolate) {
      const passwd = readFileSync('/etc/passwd', 'utf8');
      for (const name of new Set([...accountsUsed, ...accountsInGateLog()])) {
        const holder = claimHolder(name);
        // Released and claimed since by another spool's gate on this machine: its processes are that gate's.
        if (holder !== null && holder !== gateState) {
          unchecked.push(name);
          continue;
        }
        const account = passwdEntry(passwd, name);
        if (account) processes.push(...processesOf(account.uid).map((p) => `${name}: ${p}`));
      }
    }
    // Node processes (and anything else) started by this spool's gates, past and present, other than the gate running now.
    for (const pid of gatesInCoreLog()) gatePids.add(pid);
    const live = await liveGate(0);
    const gateProcesses = processesInSessions(gatePids, live);
    return { partitions, gatePartitions, nodeDirs, claims, processes, gateProcesses, unchecked };
  }

  let left: Awaited<ReturnType<typeof leftovers>> | undefined;

  before(async function () {
    console.log(`    fault injection seed: ${seed} (replay with SWM_FAULT_SEED=${seed})`);
    if (!isolate) console.log('    not root: nodes run as the gate\'s own user, so node accounts, their claims and processes are not checked');
    if (!containersOk) console.log('    podman is not installed: no container jobs in this run (run `make test` as root on Debian to install it)');
    const image = containersOk ? ensureTestImage() : null;
    markers = mkdtempSync(join(tmpdir(), 'skyport-faults-'));
    // Node accounts append to the markers of their jobs.
    chmodSync(markers, 0o1777);
    plan = planJobs(random, markers, image);
    const faults = planFaults(random);
    console.log(`    jobs: ${Object.entries(countBy(plan.map((j) => j.kind))).map(([k, n]) => `${n} ${k}`).join(', ')}`);

    f = await startFixture({
      configure: (config) => {
        for (const remote of config.remotes) remote.maxNodes = MAX_NODES;
      },
    });
    gateState = f.spool.spool.gateState('local');
    watchCore(f.core);
    f.admin.on('notification', onNotification);
    started = Date.now();

    const scanner = setInterval(scanClaims, 200);
    try {
      let submitting = true;
      const cancelsSent: Promise<void>[] = [];
      const submissions = (async () => {
        try {
          for (const job of plan) {
            await pause(job.gapMs);
            const id = await submit(job);
            if (job.cancelAfterMs !== null) cancelsSent.push(cancelLater(id, job.cancelAfterMs));
          }
        } finally {
          submitting = false;
        }
      })();
      const injections = (async () => {
        for (const fault of faults) {
          await pause(fault.delayMs);
          if (Date.now() - started > FAULT_WINDOW_MS) break;
          if (!submitting) {
            const { jobs } = await call('job.list', { all: true, limit: 1000 });
            // Settled: ended, or a job nobody was told about that waits for its inputs.
            if (jobs.every((j) => isFinal(j) || (!acknowledged.has(j.id) && j.state_details === WAITING_FOR_INPUTS))) break;
          }
          await inject(fault);
        }
        note('faults: done');
      })();
      await Promise.all([submissions, injections]);
      await Promise.all(cancelsSent);
      note(`all ${JOBS} jobs acknowledged (${unansweredSubmits} submissions unanswered)`);

      const ended = await allEnded(SETTLE_MS);
      note(ended ? 'every job ended' : `jobs still not ended after ${SETTLE_MS / 1000} s`);
      if (ended) {
        // Teardown precedes the end of a job: what is left now should be gone at once, or after the gate's last deletion.
        const until = Date.now() + CLEANUP_MS;
        for (;;) {
          scanClaims();
          left = await leftovers();
          const { unchecked: _unchecked, ...rest } = left;
          if (Object.values(rest).every((list) => list.length === 0) || Date.now() > until) break;
          await pause(250);
        }
        note('cleanup checked');
      }
    } finally {
      clearInterval(scanner);
      if (stoppedGate !== null) process.kill(stoppedGate, 'SIGCONT');
    }
    console.log(`    ${timeline.filter((l) => /core:|gate \d+: SIG(KILL|STOP)/.test(l)).length} faults injected; run took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  let failed = false;
  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });

  after(async function () {
    if (stoppedGate !== null) process.kill(stoppedGate, 'SIGCONT');
    if (f) killedCores.add(f.core.child);
    // A failure (of a test or of the run itself) leaves its timeline and the daemon's logs for the replay.
    if (failed || !left) {
      console.log(`    ${tag} timeline:\n${timeline.map((l) => `      ${l}`).join('\n')}`);
      if (f && existsSync(f.spool.spool.logsDir)) {
        const kept = mkdtempSync(join(tmpdir(), `skyport-faults-${seed}-logs-`));
        cpSync(f.spool.spool.logsDir, kept, { recursive: true });
        console.log(`    ${tag} the core's and the gate's logs are kept in ${kept}`);
      }
    }
    await f?.stop();
    if (markers) rmSync(markers, { recursive: true, force: true });
  });

  it('the core never exits by itself', () => {
    expect(coreExits, `${tag} the core crashed`).to.deep.equal([]);
  });

  it('every acknowledged job reaches a terminal state, and leaves it never', () => {
    expect(acknowledged.size, `${tag} acknowledged jobs`).to.equal(JOBS);
    const notEnded = [...acknowledged.keys()].flatMap((id) => {
      const job = finalJobs.find((j) => j.id === id);
      return job && isFinal(job) ? [] : [`${id} (${acknowledged.get(id)!.kind}): ${job ? `${job.state} ${job.state_details}` : 'not listed'}`];
    });
    expect(notEnded, `${tag} jobs that did not end within ${SETTLE_MS / 1000} s`).to.deep.equal([]);
    const leftFinal = [...observed].flatMap(([id, o]) => (o.leftFinal.length ? [`${id}: ${o.history.join(' → ')}`] : []));
    expect(leftFinal, `${tag} jobs seen in another state after their first terminal state`).to.deep.equal([]);
  });

  it('the store holds no job but the acknowledged ones and those whose submission went unanswered', () => {
    const strangers = finalJobs.filter((j) => !acknowledged.has(j.id));
    expect(strangers.length, `${tag} jobs nobody was told about: ${strangers.map((j) => `${j.id} ${j.name}`).join(', ')}`).to.be.at.most(unansweredSubmits);
    expect(strangers.filter((j) => !isFinal(j)).map((j) => `${j.id} ${j.name}: ${j.state} ${j.state_details}`), `${tag} unacknowledged jobs that did not end`).to.deep.equal([]);
    const ranWithoutInputs = strangers.filter((j) => strangersWaitingForInputs.has(j.id) && j.state !== 'C');
    expect(ranWithoutInputs.map((j) => `${j.id} ${j.name}: ${j.state}`), `${tag} unacknowledged jobs waiting for inputs that did not end C when canceled`).to.deep.equal([]);
  });

  it('each job ends as its script says: F with exit 0, E with its exit code, C when canceled', async () => {
    const wrong: string[] = [];
    for (const [id, job] of acknowledged) {
      const got = finalJobs.find((j) => j.id === id);
      if (!got) continue; // reported above
      const expected = job.expected;
      const where = `${id} (job ${job.index}, ${job.kind}${cancels.has(id) ? `, cancel ${cancels.get(id)}` : ''})`;
      let problem: string | null = null;
      if (got.state !== expected.state) problem = `${got.state} "${got.state_details}", expected ${expected.state}`;
      else if (expected.state !== 'C' && got.exitcode !== expected.exitcode) problem = `exit code ${got.exitcode}, expected ${expected.exitcode}`;
      else if (expected.state === 'E' && !got.state_details.includes(`exit code ${expected.exitcode}`))
        problem = `details "${got.state_details}" do not name exit code ${expected.exitcode}`;
      if (problem === null) continue;
      const stderr = (await call('job.logs', { id, stream: 'stderr' }).catch((e: Error) => ({ data: `unreadable: ${e.message}` }))).data;
      wrong.push(`${where}: ${problem}${stderr ? `; stderr: ${JSON.stringify(stderr.slice(-300))}` : ''}`);
    }
    expect(wrong, `${tag} jobs that ended otherwise than their script says`).to.deep.equal([]);
  });

  it('no job ran twice: one run marker per job that ran, declared outputs intact', async () => {
    const wrong: string[] = [];
    for (const [id, job] of acknowledged) {
      const got = finalJobs.find((j) => j.id === id);
      if (!got || !isFinal(got)) continue; // reported above
      const ran = job.expected.state !== 'C';
      if (job.hostMarker) {
        const file = join(markers, id);
        const runs = existsSync(file) ? readFileSync(file, 'utf8') : '';
        if (ran ? runs !== 'run\n' : runs !== '' && runs !== 'run\n') wrong.push(`${id} (job ${job.index}, ${job.kind}): marker file ${JSON.stringify(runs)}`);
      }
      const stdout = (await call('job.logs', { id, stream: 'stdout' })).data;
      const line = `marker ${id}\n`;
      if (ran ? stdout !== line : stdout !== '' && stdout !== line) wrong.push(`${id} (job ${job.index}, ${job.kind}): stdout ${JSON.stringify(stdout)}`);
      if (job.output && got.state === 'F') {
        const content = (await readJobFile(f.admin, id, job.output.path).catch((e: Error) => Buffer.from(`unreadable: ${e.message}`))).toString();
        if (content !== job.output.content) wrong.push(`${id} (job ${job.index}): ${job.output.path} differs from what its script wrote`);
      }
    }
    expect(wrong, `${tag} jobs whose runs or results are wrong`).to.deep.equal([]);
  });

  it('no partition is left, neither in the core\'s view nor in the gate\'s state', () => {
    expect(left, `${tag} the jobs did not end, so nothing was checked`).to.not.equal(undefined);
    expect(left!.partitions, `${tag} partition.list`).to.deep.equal([]);
    expect(left!.gatePartitions, `${tag} partitions in ${join(gateState, 'state.json')}`).to.deep.equal([]);
  });

  it('no node directory is left', () => {
    expect(left, `${tag} the jobs did not end, so nothing was checked`).to.not.equal(undefined);
    expect(left!.nodeDirs, `${tag} node directories`).to.deep.equal([]);
  });

  it("no process of the gate's sessions is left: node servers of a killed gate, commands it ran", () => {
    expect(left, `${tag} the jobs did not end, so nothing was checked`).to.not.equal(undefined);
    expect(gatePids.size, `${tag} no gate pid was seen: the check would see nothing`).to.be.greaterThan(0);
    expect(left!.gateProcesses, `${tag} processes in the sessions of gates ${[...gatePids].join(', ')}`).to.deep.equal([]);
  });

  it('no node account stays claimed and none runs a process (job, runner, container or conmon)', function () {
    if (!isolate) {
      console.log('    not root: nodes have no accounts of their own here');
      this.skip();
    }
    expect(left, `${tag} the jobs did not end, so nothing was checked`).to.not.equal(undefined);
    expect(accountsUsed.size + accountsInGateLog().length, `${tag} the gate claimed no account: the check would see nothing`).to.be.greaterThan(0);
    if (left!.unchecked.length) console.log(`    accounts claimed since by another spool's gate, not checked: ${left!.unchecked.join(', ')}`);
    expect(left!.claims, `${tag} claim files in ${CLAIMS_DIR} naming ${gateState}`).to.deep.equal([]);
    expect(left!.processes, `${tag} processes of the gate's node accounts`).to.deep.equal([]);
  });
});

const sha256 = (content: Buffer): string => createHash('sha256').update(content).digest('hex');

function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
