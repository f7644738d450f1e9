import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TerminalClient } from '../../terminal-protocol/client.js';
import type { Job } from '../../terminal-protocol/job.js';
import { homePaths } from '../../spool-bootstrap/paths.js';
import { makeTestSpool, type TestSpool, type TestSpoolOptions } from './spool.js';

export const DIST = fileURLToPath(new URL('../../', import.meta.url));
export const CORE_MAIN = join(DIST, 'core/main.js');
export const SWM_MAIN = join(DIST, 'terminal/main.js');

export interface CoreProcess {
  child: ChildProcess;
  port: number;
  /** Everything the process wrote to stderr so far. */
  output: () => string;
  kill: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Start `swm-core` as a real process on the test spool; resolves once it listens. */
export function startCoreProcess(spool: TestSpool, env: NodeJS.ProcessEnv = {}): Promise<CoreProcess> {
  const child = spawn(process.execPath, [CORE_MAIN, '--spool', spool.spoolDir], {
    env: { ...process.env, SWM_LOG_LEVEL: process.env.SWM_LOG_LEVEL ?? 'info', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`swm-core did not start within 20 s:\n${output}`)), 20_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const m = /listening on port (\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve({
          child,
          port: Number(m[1]),
          output: () => output,
          kill: (signal = 'SIGTERM') => {
            if (child.exitCode !== null || child.signalCode !== null) return exited;
            child.kill(signal);
            return exited;
          },
        });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`swm-core exited with ${code} before listening:\n${output}`));
    });
  });
}

/** Kill the managed gates a core left running (they are detached on purpose). */
export function killGates(spool: TestSpool): void {
  const dir = join(spool.spoolDir, 'gates');
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const pidfile = join(dir, name, 'gate.pid');
    if (!existsSync(pidfile)) continue;
    try {
      process.kill(JSON.parse(readFileSync(pidfile, 'utf8')).pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** A terminal connected with a bundle (the spool's admin home by default). */
export async function connectTerminal(homeDir: string, port?: number): Promise<TerminalClient> {
  const home = homePaths(homeDir);
  const url = port ? `wss://localhost:${port}` : (JSON.parse(readFileSync(home.config, 'utf8')) as { coreUrl: string }).coreUrl;
  const client = new TerminalClient({
    url,
    credentials: { cert: readFileSync(home.cert), key: readFileSync(home.key), ca: readFileSync(home.ca) },
  });
  return client.connect();
}

/**
 * Wait, by subscription (no polling), until a job satisfies `done`; rejects after `timeoutMs` with the
 * job's last state.
 */
export function waitForJob(client: TerminalClient, id: string, done: (job: Job) => boolean, timeoutMs = 30_000): Promise<Job> {
  return new Promise((resolve, reject) => {
    let last: Job | null = null;
    const finish = (error: Error | null, job?: Job) => {
      clearTimeout(timer);
      client.off('notification', onNotification);
      if (error) reject(error);
      else resolve(job!);
    };
    const onNotification = (name: string, job: Job) => {
      if (name !== 'job.event' || job.id !== id) return;
      last = job;
      if (done(job)) finish(null, job);
    };
    const timer = setTimeout(
      () => finish(new Error(`job ${id} did not reach the expected state in ${timeoutMs} ms; last: ${last ? `${last.state} ${last.state_details}` : 'no event'}`)),
      timeoutMs,
    );
    client.on('notification', onNotification);
    client.call('job.subscribe', { id }).then(
      (job) => {
        last = job;
        if (done(job)) finish(null, job);
      },
      (error: Error) => finish(error),
    );
  });
}

export const isFinal = (job: Job): boolean => ['F', 'E', 'C'].includes(job.state);

/**
 * Wait until a running job's stdout carries `text` (a job that prints once it is ready: listening, started). The
 * job is subscribed to, so its output is pushed as printed; what it printed before is read from its log. Rejects
 * when the job ends first or nothing comes within `timeoutMs`.
 */
export async function waitForOutput(client: TerminalClient, id: string, text: string, timeoutMs = 60_000): Promise<void> {
  let seen: () => void = () => undefined;
  const printed = new Promise<void>((resolve) => (seen = resolve));
  // What the job printed before its log was followed is in its log: read again whenever a push comes (a push
  // with no data marks the start of following, past bytes this terminal has not read), as a terminal does.
  const look = () =>
    client.call('job.logs', { id, stream: 'stdout' }).then(
      (log) => log.data.includes(text) && seen(),
      () => undefined,
    );
  const onLog = (name: string, params: { id: string; data: string }) => {
    if (name !== 'job.log' || params.id !== id) return;
    if (params.data.includes(text)) seen();
    else void look();
  };
  client.on('notification', onLog);
  let timer: NodeJS.Timeout | undefined;
  try {
    await client.call('job.subscribe', { id });
    const job = await waitForJob(client, id, (j) => j.state === 'R' || isFinal(j), timeoutMs);
    if (job.state !== 'R') throw new Error(`job ${id} ended ${job.state} (${job.state_details}) before printing "${text}"`);
    await look();
    await Promise.race([
      printed,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`job ${id} did not print "${text}" within ${timeoutMs} ms`)), timeoutMs))),
    ]);
  } finally {
    clearTimeout(timer);
    client.off('notification', onLog);
    await client.call('job.unsubscribe', { id }).catch(() => undefined);
  }
}

/** A running core on a fresh spool, with an admin terminal; `stop` kills everything it started. */
export interface CoreFixture {
  spool: TestSpool;
  core: CoreProcess;
  admin: TerminalClient;
  restart: (signal?: NodeJS.Signals) => Promise<void>;
  stop: () => Promise<void>;
}

/**
 * Start a core (with its managed local gate) on a fresh spool and connect its admin.
 * Call `stop()` in `after`: it kills the core, the gates it started and removes the spool.
 */
export async function startFixture(options: TestSpoolOptions = {}): Promise<CoreFixture> {
  const spool = await makeTestSpool(options);
  let core = await startCoreProcess(spool);
  let admin = await connectTerminal(spool.homeDir);
  const fixture: CoreFixture = {
    spool,
    get core() {
      return core;
    },
    get admin() {
      return admin;
    },
    restart: async (signal: NodeJS.Signals = 'SIGKILL') => {
      await admin.close();
      await core.kill(signal);
      core = await startCoreProcess(spool);
      admin = await connectTerminal(spool.homeDir);
    },
    stop: async () => {
      await admin.close().catch(() => {});
      await core.kill('SIGKILL');
      killGates(spool);
      spool.cleanup();
    },
  };
  return fixture;
}

/** The pid of a managed gate, from its pidfile. */
export function gatePid(spool: TestSpool, name = 'local'): number {
  return (JSON.parse(readFileSync(join(spool.spoolDir, 'gates', name, 'gate.pid'), 'utf8')) as { pid: number }).pid;
}

/**
 * A core (startFixture) whose azure gate is managed with `gateOptions` (a fake Azure's, see
 * azureGateOptionsFor) and whose azure remote is in eastus with `maxNodes`.
 */
export function startAzureFixture(gateOptions: Record<string, unknown>, maxNodes: number, configure?: TestSpoolOptions['configure']): Promise<CoreFixture> {
  return startFixture({
    configure: (config) => {
      configure?.(config);
      const gate = config.gates.find((g) => g.name === 'azure')!;
      gate.managed = true;
      gate.options = gateOptions;
      const remote = config.remotes.find((r) => r.name === 'azure')!;
      remote.location = 'eastus';
      remote.maxNodes = maxNodes;
    },
  });
}
