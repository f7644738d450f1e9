import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect as connectTcp } from 'node:net';
import { join } from 'node:path';
import { isDiskFull } from '../spool-bootstrap/disk-full.js';
import type { JobRecord } from '../core/store/job-record.js';
import { JobStore } from '../core/store/job-store.js';
import { queuedJobRecord } from './harness/records.js';
import { GateConnection, type TerminalClient } from '../terminal-protocol/client.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { Job } from '../terminal-protocol/job.js';
import { uploadInputs } from '../terminal/upload.js';
import { adminBundle } from './harness/certs.js';
import { connectTerminal, DIST, startCoreProcess, SWM_MAIN, type CoreProcess } from './harness/core.js';
import { rest } from './harness/rest-client.js';
import { rejection } from './harness/rpc.js';
import { freePort, makeTestSpool, unreachableGates, type TestSpool } from './harness/spool.js';
import { cannotMountTmpfs, Tmpfs } from './harness/tmpfs.js';
import { testKeyPair } from './harness/keys.js';

const GATE_MAIN = join(DIST, 'gates/main.js');

/** A job script of about 512 KiB: a 20 MiB disk is full after a few dozen submits. */
const scriptOf = (i: number): string => `#!/bin/sh\n#SWM name fill-${i}\n# ${'x'.repeat(512 * 1024)}\necho ${i}\n`;

/**
 * Connections that are not TLS: each is refused and logged by the listener (one warning line). Enough of
 * them overflow whatever room is left at the end of the log file's last block, so that lines are dropped.
 */
async function strangers(port: number, count = 50): Promise<void> {
  for (let i = 0; i < count; i++) {
    await new Promise<void>((resolve) => {
      const stranger = connectTcp(port, '127.0.0.1', () => stranger.end('not TLS\r\n'));
      stranger.once('close', () => resolve());
      stranger.once('error', () => undefined);
    });
  }
}

const expectDiskFull = (error: RpcError): void => {
  expect(error.code, error.message).to.equal(ErrorCode.DiskFull);
  expect(error.message).to.match(/disk is full/);
};

/** How long `call` takes to answer, in ms, with its answer. */
async function timed<T>(call: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await call();
  return { ms: performance.now() - started, value };
}

/** Run the swm CLI with the spool's admin bundle; resolves with its exit code, output and wall time. */
function swm(spool: TestSpool, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SWM_MAIN, ...args], { env: { ...process.env, SWM_HOME: spool.homeDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** Poll `check` every 50 ms until it holds (there is no event for "a log line reached the disk"). */
async function eventually(what: string | (() => string), check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) expect.fail(`${typeof what === 'string' ? what : what()}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const logLines = (path: string): Array<Record<string, unknown>> =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>)
    : [];

describe('the job store on a full disk (a 4 MiB tmpfs)', function () {
  this.timeout(30_000);
  let dir: string | undefined;
  let disk: Tmpfs | undefined;
  let store: JobStore | undefined;
  const jobOf = (i: number, size = 256 * 1024): JobRecord => queuedJobRecord(i, `#!/bin/sh\n# ${'y'.repeat(size)}\necho ${i}\n`);
  /** The outcome of each write, in order: true once committed, false if refused for a full disk. */
  const outcomes = (writes: Promise<void>[]): Promise<boolean[]> =>
    Promise.all(
      writes.map((w) =>
        w.then(
          () => true,
          (error: unknown) => {
            expect(isDiskFull(error), String(error)).to.equal(true);
            return false;
          },
        ),
      ),
    );

  before(function () {
    const reason = cannotMountTmpfs();
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    dir = mkdtempSync(join(tmpdir(), 'skyport-store-'));
    mkdirSync(join(dir, 'db'));
    disk = Tmpfs.mount(join(dir, 'db'), '4m');
  });

  after(() => {
    store?.close();
    disk?.unmount();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses new jobs, still commits changes to accepted ones, and commits again once space is freed', async () => {
    store = new JobStore(join(dir!, 'db', 'swm.sqlite'));
    const committed: JobRecord[] = [];
    let i = 0;
    for (; i < 100; i++) {
      // The first two, changed on the full disk below, are well within what the reserve can save (space-reserve.ts).
      const job = jobOf(i, i < 2 ? 16 * 1024 : undefined);
      const [ok] = await outcomes([store.insert(job)]);
      if (!ok) break;
      committed.push(job);
    }
    expect(i, 'the disk filled up').to.be.lessThan(100);
    disk!.fill(join(dir!, 'db', 'filler'));
    // One group commit holding a new job and a change to an accepted one: the first is refused, the second committed.
    const canceled = { ...committed[0]!, state: 'C' as const, step: 'done' as const, stateDetails: 'canceled while the disk was full' };
    expect(await outcomes([store.insert(jobOf(1000)), store.save(canceled)])).to.deep.equal([false, true]);
    expect(store.get(canceled.id)).to.deep.include({ state: 'C', stateDetails: canceled.stateDetails });
    expect(store.get(jobOf(1000).id)).to.equal(null);
    expect(await outcomes([store.insert(jobOf(1001))])).to.deep.equal([false]);

    rmSync(join(dir!, 'db', 'filler'));
    disk!.resize('16m');
    expect(await outcomes([store.insert(jobOf(2000)), store.save({ ...committed[1]!, stateDetails: 'after' })])).to.deep.equal([true, true]);
    store.close();
    store = new JobStore(join(dir!, 'db', 'swm.sqlite'));
    const ids = store.list({ limit: 1000 }).jobs.map((j) => j.id);
    expect(ids.sort()).to.deep.equal([...committed.map((j) => j.id), jobOf(2000).id].sort());
    expect(store.get(committed[1]!.id)!.stateDetails).to.equal('after');
  });
});

describe('a full disk under the spool (the spool on a 20 MiB tmpfs, real swm-core)', function () {
  this.timeout(60_000);
  let spool: TestSpool | undefined;
  let disk: Tmpfs | undefined;
  let core: CoreProcess | undefined;
  let admin: TerminalClient | undefined;
  const acknowledged = new Set<string>();
  let filler: string;
  let uploadJob: string;
  let victim: string;
  let upload: { path: string; absolute: string; size: number; sha256: string };

  before(async function () {
    const reason = cannotMountTmpfs();
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    spool = await makeTestSpool({ configure: unreachableGates(await freePort()) });
    disk = Tmpfs.moveOnto(spool.spoolDir, '20m');
    filler = join(spool.spoolDir, 'filler');
    core = await startCoreProcess(spool);
    admin = await connectTerminal(spool.homeDir, core.port);
    // A job declared with an input before the disk fills up, to upload once it is full.
    const content = randomBytes(2 * 1024 * 1024);
    const absolute = join(spool.dir, 'data.bin');
    writeFileSync(absolute, content);
    upload = { path: 'data.bin', absolute, size: content.length, sha256: createHash('sha256').update(content).digest('hex') };
    const submitted = await admin.call('job.submit', { script: '#!/bin/sh\ncat data.bin >/dev/null\n', inputs: [{ path: upload.path, size: upload.size, sha256: upload.sha256 }] });
    uploadJob = submitted.id;
    acknowledged.add(uploadJob);
    victim = (await admin.call('job.submit', { script: '#!/bin/sh\n#SWM name victim\ntrue\n' })).id;
    acknowledged.add(victim);
  });

  after(async () => {
    await admin?.close().catch(() => undefined);
    await core?.kill('SIGKILL');
    disk?.unmount();
    spool?.cleanup();
  });

  it('refuses submits with DiskFull once the disk is full, having stored every one it acknowledged', async () => {
    let refused: RpcError | null = null;
    for (let i = 0; i < 200 && !refused; i++) {
      try {
        acknowledged.add((await admin!.call('job.submit', { script: scriptOf(i) })).id);
      } catch (error) {
        refused = error as RpcError;
      }
    }
    expect(refused, 'a submit was refused').to.be.instanceOf(RpcError);
    expectDiskFull(refused!);
    expect(acknowledged.size).to.be.greaterThan(10);
    // Another program takes what is left: the disk is now full to the last block.
    disk!.fill(filler);
    for (let i = 0; i < 3; i++) expectDiskFull(await rejection(admin!.call('job.submit', { script: scriptOf(1000 + i) })));
    const listed = await admin!.call('job.list', { all: true, limit: 1000 });
    expect(listed.jobs.map((j) => j.id).sort()).to.deep.equal([...acknowledged].sort());
  });

  it('answers a REST submit with 507 and the DiskFull code', async () => {
    const r = await rest(core!.port, adminBundle(spool!), '/user/job', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: scriptOf(2000) });
    expect(r.status, r.text).to.equal(507);
    expect(r.json<{ error: { code: number; name: string } }>().error).to.deep.include({ code: ErrorCode.DiskFull, name: 'DiskFull' });
  });

  it('refuses an upload with DiskFull, by stream and by chunk', async () => {
    expectDiskFull(await rejection(uploadInputs(admin!, uploadJob, [upload], { progress: false })));
    const chunk = randomBytes(256 * 1024).toString('base64');
    const { files } = await admin!.call('job.input.status', { id: uploadJob });
    expectDiskFull(await rejection(admin!.call('job.input.write', { id: uploadJob, path: upload.path, offset: files[0]!.received, data: chunk })));
  });

  it('keeps answering status, jobs and show within 1 s, and reports the log lines it could not write', async () => {
    // Refused connections are logged; on a full disk those lines are dropped and counted.
    await eventually('log lines dropped', async () => {
      await strangers(core!.port);
      return ((await admin!.call('status')).droppedLogLines ?? 0) > 0;
    });
    const status = await timed(() => admin!.call('status'));
    expect(status.ms).to.be.lessThan(1000);
    const list = await timed(() => admin!.call('job.list', { all: true, limit: 1000 }));
    expect(list.ms).to.be.lessThan(1000);
    expect(list.value.jobs).to.have.length(acknowledged.size);
    const show = await timed(() => admin!.call('job.get', { id: uploadJob }));
    expect(show.ms).to.be.lessThan(1000);

    // The terminal itself: the core's part is timed above; a process start and a TLS handshake cost what
    // they cost on a loaded machine, so only a hang is ruled out here.
    const cliStatus = await swm(spool!, ['status']);
    expect(cliStatus.code, cliStatus.stderr).to.equal(0);
    expect(cliStatus.stdout).to.match(/log\s+\d+ lines dropped/);
    const cliJobs = await swm(spool!, ['jobs']);
    expect(cliJobs.code, cliJobs.stderr).to.equal(0);
    expect(cliJobs.stdout).to.contain(victim.slice(0, 8));
    for (const run of [cliStatus, cliJobs]) expect(run.ms).to.be.lessThan(10_000);
  });

  it('cancels a job while the disk is full', async () => {
    const canceled = await admin!.call('job.cancel', { id: victim });
    expect(canceled.state).to.equal('C');
    expect((await admin!.call('job.get', { id: victim })).state).to.equal('C');
    // The room kept for accepted jobs is spent: new work is still refused.
    expectDiskFull(await rejection(admin!.call('job.submit', { script: scriptOf(4000) })));
  });

  it('accepts submits and uploads again once space is freed, without a restart, and logs again', async () => {
    const pid = core!.child.pid;
    rmSync(filler);
    disk!.resize('40m');
    const { id } = await admin!.call('job.submit', { script: scriptOf(5000) });
    acknowledged.add(id);
    await uploadInputs(admin!, uploadJob, [upload], { progress: false });
    const committed: Job = await admin!.call('job.input.commit', { id: uploadJob });
    expect(committed.state).to.equal('Q');
    expect(core!.child.pid).to.equal(pid);
    expect(core!.child.exitCode).to.equal(null);
    // Logging resumed by itself: its first line says how many were lost, and the file is whole JSON lines.
    const log = join(spool!.spool.logsDir, 'core.log');
    await eventually('the core logs again', async () => {
      const { id } = await admin!.call('job.submit', { script: scriptOf(6000) });
      acknowledged.add(id);
      await admin!.call('job.cancel', { id });
      return logLines(log).some((line) => typeof line.droppedLines === 'number' && line.droppedLines > 0);
    });
    const listed = await admin!.call('job.list', { all: true, limit: 1000 });
    expect(listed.jobs.map((j) => j.id).sort()).to.deep.equal([...acknowledged].sort());
  });

  it('starts on a disk that filled up while it was down, serves reads, and resumes once space is freed', async () => {
    await admin!.close();
    expect(await core!.kill('SIGTERM')).to.equal(0);
    disk!.fill(filler);
    const started = await timed(() => startCoreProcess(spool!));
    core = started.value;
    admin = await connectTerminal(spool!.homeDir, core.port);
    const listed = await timed(() => admin!.call('job.list', { all: true, limit: 1000 }));
    expect(listed.ms).to.be.lessThan(1000);
    expect(listed.value.jobs.map((j) => j.id).sort()).to.deep.equal([...acknowledged].sort());
    // Its store's journal was removed at the clean stop: this cancel is the first write on the full disk.
    const queued = listed.value.jobs.find((j) => j.state === 'Q' && j.id !== uploadJob)!;
    expect((await admin.call('job.cancel', { id: queued.id })).state).to.equal('C');
    expectDiskFull(await rejection(admin.call('job.submit', { script: scriptOf(7000) })));
    rmSync(filler);
    const { id } = await admin.call('job.submit', { script: scriptOf(7001) });
    expect((await admin.call('job.get', { id })).state).to.equal('Q');
  });

  it('exits with a clear error, not a hang, when even its store cannot be opened on the full disk', async () => {
    await admin!.close();
    expect(await core!.kill('SIGTERM')).to.equal(0);
    // The room the store keeps aside is gone too (another program took it): nothing left to open the store with.
    rmSync(join(spool!.spoolDir, 'db', 'swm.reserve'), { force: true });
    disk!.fill(filler);
    const failure = await startCoreProcess(spool!).then(
      (started) => {
        core = started;
        return expect.fail('swm-core started without any room to open its store');
      },
      (error: Error) => error,
    );
    expect(failure.message).to.match(/exited with 1 before listening/);
    expect(failure.message).to.match(/the spool's disk is full: cannot open the store/);
  });
});

describe('a full disk under the gate state directory (swm-gate on a 4 MiB tmpfs spool)', function () {
  this.timeout(60_000);
  let spool: TestSpool | undefined;
  let disk: Tmpfs | undefined;
  let gate: ChildProcess | undefined;
  let core: GateConnection | undefined;
  let stateDir: string;
  let filler: string;
  const key = testKeyPair();
  const request = (name: string, flavor: string) => ({
    name,
    jobId: `job-${name}`,
    owner: 'admin',
    flavor,
    image: null,
    nodeCount: 1,
    ports: [],
    sshPublicKey: key.public,
    tags: {},
  });

  before(async function () {
    const reason = cannotMountTmpfs();
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    spool = await makeTestSpool();
    disk = Tmpfs.moveOnto(spool.spoolDir, '4m');
    stateDir = spool.spool.gateState('local');
    filler = join(spool.spoolDir, 'filler');
    gate = spawn(process.execPath, [GATE_MAIN, '--kind', 'local', '--name', 'local', '--spool', spool.spoolDir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    gate.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // The gate writes its pidfile once it listens (no other event reaches the test).
    await eventually(() => `the gate's pidfile (stderr: ${stderr})`, () => existsSync(join(stateDir, 'gate.pid')) || gate!.exitCode !== null, 20_000);
    expect(gate.exitCode, stderr).to.equal(null);
    const port = spool.config.gates.find((g) => g.name === 'local')!.port;
    const credentials = { cert: readFileSync(spool.spool.core.cert, 'utf8'), key: readFileSync(spool.spool.core.key, 'utf8'), ca: readFileSync(spool.spool.ca.cert, 'utf8') };
    core = await new GateConnection({ url: `wss://127.0.0.1:${port}`, credentials, connectTimeoutMs: 5_000 }).connect();
  });

  after(async () => {
    await core?.close().catch(() => undefined);
    if (gate && gate.exitCode === null && gate.signalCode === null) {
      const exited = new Promise((resolve) => gate!.once('exit', resolve));
      gate.kill('SIGKILL');
      await exited;
    }
    disk?.unmount();
    spool?.cleanup();
  });

  it('refuses partition.create with DiskFull at once, leaves nothing behind, and keeps answering', async () => {
    const flavor = (await core!.call('flavor.list'))[0]!.name;
    disk!.fill(filler);
    // Strangers' connections are refused and logged: on a full disk, those lines are dropped, not waited for.
    await strangers(spool!.config.gates.find((g) => g.name === 'local')!.port);
    const created = await timed(() => rejection(core!.call('partition.create', request('full', flavor))));
    expectDiskFull(created.value);
    expect(created.ms).to.be.lessThan(1000);
    expect(await core!.call('partition.list')).to.deep.equal([]);
    expect((await core!.call('gate.hello')).kind).to.equal('local');
    expect(readdirSync(stateDir).filter((name) => name.endsWith('.tmp'))).to.deep.equal([]);
    expect(existsSync(join(stateDir, 'host-keys', 'full'))).to.equal(false);
  });

  it('creates and deletes partitions again once space is freed, without a restart', async () => {
    const pid = gate!.pid;
    rmSync(filler);
    const flavor = (await core!.call('flavor.list'))[0]!.name;
    const created = await core!.call('partition.create', request('freed', flavor));
    const saved = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { partitions: Array<{ id: string }> };
    expect(saved.partitions.map((p) => p.id)).to.include(created.id);
    expect(await core!.call('partition.delete', { id: created.id })).to.deep.equal({ id: created.id, status: 'deleted' });
    expect(gate!.pid).to.equal(pid);
    expect(gate!.exitCode).to.equal(null);
    // The gate's log resumed by itself, with the count of what it could not write (written at the gate's next turn).
    const log = join(spool!.spool.logsDir, 'gate-local.log');
    await eventually('the gate logs again', () => logLines(log).some((line) => typeof line.droppedLines === 'number' && line.droppedLines > 0));
  });
});
