import { expect } from 'chai';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GATE_HEARTBEAT } from '../core/gates/gate-client.js';
import { place, schedule, type RemoteCapacity } from '../core/scheduler/schedule.js';
import { WaitReasons } from '../core/scheduler/wait-reasons.js';
import { loadCoreConfig } from '../spool-bootstrap/config.js';
import { homePaths, spoolPaths } from '../spool-bootstrap/paths.js';
import { chooseSpoolPorts } from '../spool-bootstrap/spool-ports.js';
import type { z } from 'zod';
import type { TerminalClient } from '../terminal-protocol/client.js';
import type { GateHealth } from '../terminal-protocol/terminal-methods.js';
import {
  SWM_MAIN,
  connectTerminal,
  gatePid,
  isFinal,
  killGates,
  startCoreProcess,
  startFixture,
  waitForJob,
  type CoreFixture,
  type CoreProcess,
} from './harness/core.js';
import { makeTestSpool, type TestSpool } from './harness/spool.js';
import { submitJob } from './harness/submit.js';

const DIST = fileURLToPath(new URL('../', import.meta.url));
const SETUP_MAIN = join(DIST, 'spool-bootstrap/main.js');
const GATE_MAIN = join(DIST, 'gates/main.js');

type GateStatus = z.infer<typeof GateHealth>;

/** Poll `status` until the named gate satisfies `done`; fails with its last state after `timeoutMs`. */
async function gateStatus(client: TerminalClient, name: string, done: (gate: GateStatus) => boolean, timeoutMs: number): Promise<GateStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: GateStatus | undefined;
  for (;;) {
    last = (await client.call('status')).gates.find((g) => g.name === name);
    if (last && done(last)) return last;
    if (Date.now() > deadline) throw new Error(`gate ${name} did not reach the expected health in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Run `swm` with a bundle; resolves with what it printed. */
const swm = (home: string, args: string[]): Promise<{ code: number; stdout: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, [SWM_MAIN, ...args], { env: { ...process.env, SWM_HOME: home } }, (error, stdout) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout }),
    );
  });

/** Run swm-setup as a user would, with only the given environment deciding (stdin is not a terminal). */
const runSetup = (env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const { SWM_SPOOL, SWM_HOME, SKYPORT_USER, SKYPORT_USER_ID, SKYPORT_REMOTE_LOCATION, SKYPORT_RECREATE, ...inherited } = process.env;
    execFile(process.execPath, [SETUP_MAIN, '--yes'], { env: { ...inherited, ...env } }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });

/** A spool made by swm-setup, in the shape the harness's core helpers take. */
function existingSpool(spoolDir: string, homeDir: string, dir: string): TestSpool {
  const spool = spoolPaths(spoolDir);
  return { dir, spoolDir, homeDir, spool, home: homePaths(homeDir), config: loadCoreConfig(spool.config), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const listenOn = (port: number): Promise<Server> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });

describe('gate health', function () {
  this.timeout(60_000);

  describe('jobs waiting on an unavailable gate (pure)', () => {
    const reason = 'gate local is not answering (no heartbeat for 6 s)';
    const local: RemoteCapacity = { name: 'local', isDefault: true, maxNodes: 4, defaultFlavor: 'small', flavors: new Set(['small']), unavailable: reason };

    it('stay queued with the gate\'s reason; a job that can never run is still refused', () => {
      const plan = schedule({
        queued: [
          { id: 'a', priority: 0, seq: 1, nodes: 1 },
          { id: 'bad', priority: 0, seq: 2, nodes: 1, flavor: 'huge' },
        ],
        remotes: [local],
        usage: new Map(),
      });
      expect(plan.assignments).to.deep.equal([]);
      expect(plan.waiting).to.deep.equal([{ jobId: 'a', reason }]);
      expect(plan.rejections.map((r) => r.jobId)).to.deep.equal(['bad']);
      expect(place({ nodes: 1 }, [{ ...local, flavors: null }])).to.deep.equal({ unavailable: reason });
    });

    it('show the reason once, and what they said before once the gate is back', () => {
      const reasons = new WaitReasons();
      const details = new Map([
        ['queued', 'queued'],
        ['moved', 'queued'],
      ]);
      const detailsOf = (id: string) => details.get(id) ?? null;
      const apply = (changes: { jobId: string; details: string }[]) => changes.forEach((c) => details.set(c.jobId, c.details));
      const waiting = new Map([
        ['queued', reason],
        ['moved', reason],
      ]);
      apply(reasons.changes(waiting, detailsOf));
      expect([...details.values()]).to.deep.equal([reason, reason]);
      expect(reasons.changes(waiting, detailsOf), 'nothing to rewrite while it lasts').to.deep.equal([]);
      details.set('moved', 'initiate a new partition');
      apply(reasons.changes(new Map(), detailsOf));
      expect(Object.fromEntries(details)).to.deep.equal({ queued: 'queued', moved: 'initiate a new partition' });
      expect(reasons.size).to.equal(0);
    });
  });

  describe('a gate that stops answering', () => {
    let f: CoreFixture;
    before(async () => {
      f = await startFixture();
      await gateStatus(f.admin, 'local', (g) => g.health === 'healthy', 15_000);
      // Healthy is said on the gate's hello; its flavors come a moment later, and without them nothing is placed:
      // frozen in between, the job submitted below would stay queued for want of a catalogue, not of a gate.
      for (const end = Date.now() + 15_000; !((await f.admin.call('flavor.list', { remote: 'local' })) as unknown[]).length; ) {
        if (Date.now() > end) throw new Error('the local gate never listed its flavors');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    });
    after(async () => {
      try {
        process.kill(gatePid(f.spool), 'SIGCONT');
      } catch {
        /* gone */
      }
      await f?.stop();
    });

    it('is shown not answering within seconds of SIGSTOP, jobs waiting on it say why, and all carry on after SIGCONT', async () => {
      const pid = gatePid(f.spool);
      process.kill(pid, 'SIGSTOP');
      const stoppedAt = Date.now();
      // Scheduled before the silence is noticed: its partition request is cut off, and asked again after SIGCONT.
      const asking = await submitJob(f.admin, '#!/bin/sh\necho asked while it froze\n');
      await waitForJob(f.admin, asking, (j) => j.state === 'W', 5_000);
      const stopped = await gateStatus(f.admin, 'local', (g) => g.health !== 'healthy', 15_000);
      const noticedMs = Date.now() - stoppedAt;
      expect(stopped.health).to.equal('not-answering');
      expect(noticedMs, 'noticed within the heartbeat time-out and one interval').to.be.below(GATE_HEARTBEAT.timeoutMs + GATE_HEARTBEAT.intervalMs + 1_000);
      expect(stopped.problem).to.match(/^gate local is not answering \(no heartbeat for \d+ s\)$/);

      const printed = await swm(f.spool.homeDir, ['status']);
      expect(printed.code).to.equal(0);
      expect(printed.stdout).to.match(/local\s+local\s+yes\s+not answering/).and.to.include('gate local is not answering');

      const reason = `gate local is not answering (no heartbeat for ${GATE_HEARTBEAT.timeoutMs / 1000} s)`;
      const inPartitionStep = await waitForJob(f.admin, asking, (j) => j.state_details === reason, 5_000);
      expect(inPartitionStep.state).to.equal('W');
      const id = await submitJob(f.admin, '#!/bin/sh\necho after the pause\n');
      const queued = await waitForJob(f.admin, id, (j) => j.state_details === reason, 5_000);
      expect(queued.state).to.equal('Q');

      process.kill(pid, 'SIGCONT');
      const resumedAt = Date.now();
      const healthy = await gateStatus(f.admin, 'local', (g) => g.health === 'healthy', 15_000);
      expect(Date.now() - resumedAt, 'healthy again within the reconnection backoff').to.be.below(5_000);
      expect(healthy.problem).to.equal(null);
      const ended = await Promise.all([asking, id].map((j) => waitForJob(f.admin, j, isFinal, 30_000)));
      expect(ended.map((j) => `${j.state} ${j.state_details}`)).to.deep.equal(['F finished', 'F finished']);
      expect(gatePid(f.spool), 'a stopped gate is not restarted: it is the same process').to.equal(pid);
    });
  });

  describe('two spools on one machine', () => {
    let root: string;
    const cores: CoreProcess[] = [];
    const terminals: TerminalClient[] = [];
    const spools: TestSpool[] = [];
    before(() => {
      root = mkdtempSync(join(tmpdir(), 'skyport-two-spools-'));
    });
    after(async () => {
      await Promise.all(terminals.map((t) => t.close().catch(() => undefined)));
      await Promise.all(cores.map((c) => c.kill('SIGKILL')));
      spools.forEach(killGates);
      rmSync(root, { recursive: true, force: true });
    });

    it('made by swm-setup with its defaults get distinct ports, and both run a job', async () => {
      // The first in the default place (~/.swm/spool), the second elsewhere, as a second user of the machine would.
      const home = join(root, 'home');
      const first = await runSetup({ HOME: home, SKYPORT_USER: 'alice' });
      expect(first.code, first.stderr).to.equal(0);
      const second = await runSetup({ HOME: home, SWM_SPOOL: join(root, 'b', 'spool'), SWM_HOME: join(root, 'b', 'home'), SKYPORT_USER: 'bob' });
      expect(second.code, second.stderr).to.equal(0);
      spools.push(existingSpool(join(home, '.swm', 'spool'), join(home, '.swm'), root), existingSpool(join(root, 'b', 'spool'), join(root, 'b', 'home'), root));
      const ports = spools.map((s) => [s.config.core.port, ...s.config.gates.map((g) => g.port)]);
      expect(new Set(ports.flat()).size, JSON.stringify(ports)).to.equal(6);
      expect(second.stdout).to.include(`ports           core ${ports[1]![0]}`);

      cores.push(...(await Promise.all(spools.map((spool) => startCoreProcess(spool)))));
      terminals.push(...(await Promise.all(spools.map((spool) => connectTerminal(spool.homeDir)))));
      const jobs = await Promise.all(terminals.map((t, i) => submitJob(t, `#!/bin/sh\necho spool ${i}\n`)));
      const ended = await Promise.all(jobs.map((id, i) => waitForJob(terminals[i]!, id, isFinal, 30_000)));
      expect(ended.map((j) => `${j.state} ${j.state_details}`)).to.deep.equal(['F finished', 'F finished']);
      for (const [i, t] of terminals.entries()) {
        expect((await t.call('job.logs', { id: jobs[i]!, stream: 'stdout' })).data).to.equal(`spool ${i}\n`);
      }
    });

    it('swm-setup skips a port something listens on', async () => {
      const busy = await listenOn(0);
      try {
        const taken = (busy.address() as { port: number }).port;
        const chosen = await chooseSpoolPorts({ corePort: taken - 1, gateCount: 2, claimed: new Set() });
        expect(chosen.core).to.equal(taken - 1);
        expect(chosen.gates).to.not.include(taken);
        expect(chosen.gates[0]).to.be.greaterThan(taken);
      } finally {
        busy.close();
      }
    });
  });

  describe("a core configured with another spool's gate port", () => {
    let a: CoreFixture;
    let b: TestSpool;
    let core: CoreProcess | null = null;
    let terminal: TerminalClient | null = null;
    let port: number;
    before(async () => {
      a = await startFixture();
      await gateStatus(a.admin, 'local', (g) => g.health === 'healthy', 15_000);
      port = a.spool.config.gates.find((g) => g.name === 'local')!.port;
      b = await makeTestSpool({ configure: (config) => (config.gates.find((g) => g.name === 'local')!.port = port) });
    });
    after(async () => {
      await terminal?.close().catch(() => undefined);
      await core?.kill('SIGKILL');
      if (b) killGates(b);
      b?.cleanup();
      await a?.stop();
    });

    it('says the gate on that port belongs to another spool, in status, in its log and to queued jobs', async () => {
      core = await startCoreProcess(b);
      terminal = await connectTerminal(b.homeDir);
      const gate = await gateStatus(terminal, 'local', (g) => g.health === 'other-spool', 10_000);
      expect(gate.problem).to.include(`the gate on port ${port} belongs to another spool`);
      expect(readFileSync(join(b.spool.logsDir, 'core.log'), 'utf8')).to.include(`the gate on port ${port} belongs to another spool`);

      const id = await submitJob(terminal, '#!/bin/sh\necho never\n');
      const waiting = await waitForJob(terminal, id, (j) => j.state_details.includes('belongs to another spool'), 5_000);
      expect(waiting.state).to.equal('Q');

      // Its own managed gate cannot listen there, and says so; the core passes that on.
      const exited = await gateStatus(terminal, 'local', (g) => !!g.problem?.includes('the managed gate exited'), 15_000);
      expect(exited.problem).to.include(`cannot listen on 127.0.0.1:${port}: the port is in use`);
      expect(readFileSync(join(b.spool.logsDir, 'gate-local.out'), 'utf8')).to.include(`swm-gate: cannot listen on 127.0.0.1:${port}: the port is in use`);
    });
  });

  describe('a gate whose spool is removed', () => {
    it('exits by itself, non-zero, saying why', async () => {
      const spool = await makeTestSpool();
      const gate = spawn(process.execPath, [GATE_MAIN, '--kind', 'local', '--name', 'local', '--spool', spool.spoolDir], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      gate.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exit = new Promise<number | null>((resolve) => gate.once('exit', (code) => resolve(code)));
      try {
        const pidfile = join(spool.spool.gateState('local'), 'gate.pid');
        const deadline = Date.now() + 15_000;
        while (!existsSync(pidfile)) {
          if (Date.now() > deadline || gate.exitCode !== null) throw new Error(`the gate did not start: ${stderr}`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        rmSync(spool.dir, { recursive: true, force: true });
        const removedAt = Date.now();
        const code = await exit;
        expect(Date.now() - removedAt).to.be.below(5_000);
        expect(code).to.equal(1);
        expect(stderr).to.include(`swm-gate: the spool ${spool.spoolDir} was removed; exiting`);
        expect(existsSync(spool.dir), 'nothing of the spool is written back').to.equal(false);
      } finally {
        if (gate.exitCode === null) gate.kill('SIGKILL');
        spool.cleanup();
      }
    });
  });
});
