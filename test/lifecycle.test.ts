import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { Job } from '../terminal-protocol/job.js';
import { gatePid, isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { readJobFile, submitJob } from './harness/submit.js';
import { testKeyPair } from './harness/keys.js';

/** A process that exists and is not a zombie (this machine's init may not reap orphans). */
const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe('job lifecycle on the local gate (plain processes)', function () {
  this.timeout(60_000);
  let f: CoreFixture;
  let scratch: string;

  before(async () => {
    f = await startFixture();
    scratch = mkdtempSync(join(tmpdir(), 'skyport-lifecycle-'));
    // Jobs run as node accounts of their own: the drop box they report their pids in must be open to them.
    chmodSync(scratch, 0o1777);
  });
  after(async () => {
    await f?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  const partitions = () => f.admin.call('partition.list');
  const finished = (id: string, timeoutMs?: number) => waitForJob(f.admin, id, isFinal, timeoutMs);

  it('runs a job to F, streams its stdout and tears its partition down', async () => {
    const id = await submitJob(f.admin, '#!/bin/sh\n#SWM name hello\necho "hello from $SWM_JOB_ID"\necho oops >&2\n');
    const job = await finished(id);
    expect(job.state).to.equal('F');
    expect(job.exitcode).to.equal(0);
    expect(job.node_names).to.have.length(1);
    expect(job.start_time).to.be.a('string');
    expect(job.end_time).to.be.a('string');
    const stdout = await f.admin.call('job.logs', { id, stream: 'stdout' });
    expect(stdout.data).to.equal(`hello from ${id}\n`);
    expect(stdout.final).to.equal(true);
    expect((await f.admin.call('job.logs', { id, stream: 'stderr' })).data).to.equal('oops\n');
    expect(await partitions()).to.deep.equal([]);
  });

  it('round-trips input and output files byte for byte', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const small = Buffer.from('line one\nline two\n');
    const script = [
      '#!/bin/sh',
      '#SWM input-files data.bin dir/small.txt',
      '#SWM output-files copy.bin out/lines.txt',
      'cp data.bin copy.bin',
      'mkdir -p out && wc -l < dir/small.txt > out/lines.txt',
    ].join('\n');
    const id = await submitJob(f.admin, script, [
      { path: 'data.bin', content: data },
      { path: 'dir/small.txt', content: small },
    ]);
    expect((await finished(id)).state).to.equal('F');
    expect((await readJobFile(f.admin, id, 'copy.bin')).equals(data)).to.equal(true);
    expect((await readJobFile(f.admin, id, 'out/lines.txt')).toString().trim()).to.equal('2');
    const files = (await f.admin.call('job.files', { id })).files.map((x) => x.path);
    expect(files).to.include.members(['copy.bin', 'out/lines.txt', 'stdout.log', 'stderr.log']);
  });

  it('ends E with the exit code of a job that exits 3', async () => {
    const id = await submitJob(f.admin, '#!/bin/sh\necho failing\nexit 3\n');
    const job = await finished(id);
    expect(job.state).to.equal('E');
    expect(job.exitcode).to.equal(3);
    expect(job.state_details).to.contain('exit code 3');
    expect(await partitions()).to.deep.equal([]);
  });

  it('refuses an input whose content does not match its declared hash, and keeps the job waiting', async () => {
    const { id } = await f.admin.call('job.submit', {
      script: '#!/bin/sh\ncat in.txt\n',
      inputs: [{ path: 'in.txt', size: 3, sha256: '0'.repeat(64) }],
    });
    await f.admin.call('job.input.write', { id, path: 'in.txt', offset: 0, data: Buffer.from('abc').toString('base64') });
    const error = await f.admin.call('job.input.commit', { id }).catch((e: RpcError) => e);
    expect(error).to.be.instanceOf(RpcError);
    expect((error as RpcError).code).to.equal(ErrorCode.Integrity);
    expect((await f.admin.call('job.get', { id })).state_details).to.equal('waiting for input files');
    await f.admin.call('job.cancel', { id });
  });

  it('refuses an unknown remote or flavor at submit', async () => {
    for (const directive of ['#SWM remote nowhere', '#SWM flavor local.huge']) {
      const error = await f.admin.call('job.submit', { script: `#!/bin/sh\n${directive}\ntrue\n` }).catch((e: RpcError) => e);
      expect((error as RpcError).code, directive).to.equal(ErrorCode.Unschedulable);
      expect((error as RpcError).message).to.match(/unknown (remote|flavor)/);
    }
  });

  it('cancels a running job: its process is killed, it ends C, its partition is gone', async () => {
    const pidFile = join(scratch, 'running.pid');
    const id = await submitJob(f.admin, `#!/bin/sh\necho $$ > ${pidFile}\nexec sleep 60\n`);
    await waitForJob(f.admin, id, (j) => j.state === 'R' && j.state_details === 'running');
    await waitForFile(pidFile);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(alive(pid)).to.equal(true);
    const canceled = await f.admin.call('job.cancel', { id });
    expect(canceled.state_details).to.contain('canceled');
    const job = await finished(id);
    expect(job.state).to.equal('C');
    expect(alive(pid)).to.equal(false);
    expect(await partitions()).to.deep.equal([]);
  });

  it('cancels a job while its partition is being created (gate frozen) and still deletes the partition', async () => {
    const gate = gatePid(f.spool);
    process.kill(gate, 'SIGSTOP');
    let id: string;
    try {
      id = await submitJob(f.admin, '#!/bin/sh\nsleep 30\n');
      const waiting = await waitForJob(f.admin, id, (j) => j.state === 'W');
      expect(waiting.state).to.equal('W');
      const canceled = await f.admin.call('job.cancel', { id });
      expect(canceled.state).to.equal('W');
      expect(canceled.state_details).to.contain('canceled: releasing the partition');
    } finally {
      process.kill(gate, 'SIGCONT');
    }
    const job = await finished(id);
    expect(job.state).to.equal('C');
    expect(await partitions()).to.deep.equal([]);
  });

  it('cancels a job while it transfers its inputs', async () => {
    const gate = gatePid(f.spool);
    const big = Buffer.alloc(8 * 1024 * 1024, 7);
    const id = await submitJob(f.admin, '#!/bin/sh\n#SWM input-files big.bin\nsleep 30\n', [{ path: 'big.bin', content: big }]);
    // Freeze the node (its SSH server lives in the gate) as soon as the transfer starts, so the cancel lands in T.
    await waitForJob(f.admin, id, (j) => j.state === 'T' || isFinal(j));
    process.kill(gate, 'SIGSTOP');
    let canceled: Job;
    try {
      canceled = await f.admin.call('job.cancel', { id });
    } finally {
      process.kill(gate, 'SIGCONT');
    }
    expect(canceled.state).to.equal('T');
    const job = await finished(id);
    expect(job.state).to.equal('C');
    expect(await partitions()).to.deep.equal([]);
  });

  it('stops a job that exceeds its duration: E, process gone, partition gone', async () => {
    const pidFile = join(scratch, 'slow.pid');
    const id = await submitJob(f.admin, `#!/bin/sh\n#SWM duration 00:00:02\necho $$ > ${pidFile}\nexec sleep 60\n`);
    const job = await finished(id, 20_000);
    expect(job.state).to.equal('E');
    expect(job.state_details).to.contain('time limit exceeded (00:00:02)');
    expect(alive(Number(readFileSync(pidFile, 'utf8')))).to.equal(false);
    expect(await partitions()).to.deep.equal([]);
  });

  it('requeues a finished job and runs it again', async () => {
    const counter = join(scratch, 'requeue.count');
    const id = await submitJob(f.admin, `#!/bin/sh\necho run >> ${counter}\n`);
    expect((await finished(id)).state).to.equal('F');
    const requeued = await f.admin.call('job.requeue', { id });
    expect(requeued.state).to.equal('Q');
    expect(requeued.exitcode).to.equal(null);
    await waitForJob(f.admin, id, (j) => j.state === 'F' && j.end_time !== null);
    expect(readFileSync(counter, 'utf8')).to.equal('run\nrun\n');
  });
});

describe('job lifecycle across crashes', function () {
  this.timeout(90_000);
  let f: CoreFixture;
  let scratch: string;

  beforeEach(async () => {
    f = await startFixture();
    scratch = mkdtempSync(join(tmpdir(), 'skyport-crash-'));
    chmodSync(scratch, 0o1777);
  });
  afterEach(async () => {
    await f?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('kill -9 of the core while a job runs: the job, started by the node agent, is re-attached by the new core\'s agent (not restarted) and ends F', async () => {
    const runs = join(scratch, 'runs');
    const release = join(scratch, 'release');
    const id = await submitJob(
      f.admin,
      `#!/bin/sh\n#SWM output-files result.txt\necho run >> ${runs}\nwhile [ ! -e ${release} ]; do sleep 0.1; done\necho done > result.txt\n`,
    );
    await waitForJob(f.admin, id, (j) => j.state === 'R' && j.state_details === 'running');
    const coreLog = () => readFileSync(join(f.spool.spoolDir, 'logs', 'core.log'), 'utf8');
    expect(coreLog()).to.match(/runner started through the node agent/);
    await f.restart('SIGKILL');
    writeFileSync(release, '');
    const job = await waitForJob(f.admin, id, isFinal);
    expect(job.state).to.equal('F');
    // The new core's agent found the runner the first one's had started, and waited for it.
    expect(coreLog(), coreLog().split('\n').slice(-40).join('\n')).to.match(/re-attached through the node agent/);
    expect(readFileSync(runs, 'utf8')).to.equal('run\n');
    expect((await readJobFile(f.admin, id, 'result.txt')).toString()).to.equal('done\n');
    expect(await f.admin.call('partition.list')).to.deep.equal([]);
  });

  it('kill -9 of the core during stage-out: results still arrive whole, nothing leaked', async () => {
    const size = 64 * 1024 * 1024;
    const id = await submitJob(f.admin, `#!/bin/sh\n#SWM output-files big.bin\nhead -c ${size} /dev/zero > big.bin\n`);
    await waitForJob(f.admin, id, (j) => j.state === 'T' && j.state_details.includes('downloading results'));
    await f.restart('SIGKILL');
    const job = await waitForJob(f.admin, id, isFinal);
    expect(job.state).to.equal('F');
    const listed = (await f.admin.call('job.files', { id })).files.find((x) => x.path === 'big.bin');
    expect(listed?.size).to.equal(size);
    expect(await f.admin.call('partition.list')).to.deep.equal([]);
  });

  it('kill -9 of the gate: the core reconnects, the managed gate is restarted, the job carries on', async () => {
    const release = join(scratch, 'release-gate');
    const id = await submitJob(f.admin, `#!/bin/sh\nwhile [ ! -e ${release} ]; do sleep 0.1; done\necho survived\n`);
    await waitForJob(f.admin, id, (j) => j.state === 'R' && j.state_details === 'running');
    const before = gatePid(f.spool);
    process.kill(before, 'SIGKILL');
    writeFileSync(release, '');
    const job = await waitForJob(f.admin, id, isFinal, 60_000);
    expect(job.state).to.equal('F');
    expect((await f.admin.call('job.logs', { id, stream: 'stdout' })).data).to.equal('survived\n');
    expect(gatePid(f.spool)).to.not.equal(before);
    const status = await f.admin.call('status');
    expect(status.gates.find((g) => g.name === 'local')?.restarts).to.be.greaterThan(0);
    expect(await f.admin.call('partition.list')).to.deep.equal([]);
  });

  it('refuses a node whose host key changed: the job ends E and its partition is deleted', async () => {
    const id = await submitJob(f.admin, '#!/bin/sh\nsleep 20\n');
    const running = await waitForJob(f.admin, id, (j) => j.state === 'R' && j.state_details === 'running');
    // The node is swapped for an impostor behind the core's back: new host key, same address.
    await f.core.kill('SIGKILL');
    const gate = gatePid(f.spool);
    process.kill(gate, 'SIGKILL');
    const partition = `job-${id}`;
    const keyFile = join(f.spool.spoolDir, 'gates', 'local', 'host-keys', partition, `${running.node_names[0]}.key`);
    expect(existsSync(keyFile)).to.equal(true);
    writeFileSync(keyFile, testKeyPair().private);
    await f.restart('SIGKILL');
    const job = await waitForJob(f.admin, id, isFinal, 60_000);
    expect(job.state).to.equal('E');
    expect(job.state_details).to.match(/host key/);
    expect(await f.admin.call('partition.list')).to.deep.equal([]);
  });
});

/** Wait for a file a job writes (the job runs on this machine: its file appears through the file system). */
async function waitForFile(path: string, timeoutMs = 10_000): Promise<void> {
  const { watch } = await import('node:fs');
  const { dirname, basename } = await import('node:path');
  if (existsSync(path) && readFileSync(path, 'utf8').trim()) return;
  await new Promise<void>((resolve, reject) => {
    const watcher = watch(dirname(path), (_event, name) => {
      if (name === basename(path) && existsSync(path) && readFileSync(path, 'utf8').trim()) {
        watcher.close();
        clearTimeout(timer);
        resolve();
      }
    });
    const timer = setTimeout(() => {
      watcher.close();
      reject(new Error(`${path} did not appear`));
    }, timeoutMs);
    if (existsSync(path) && readFileSync(path, 'utf8').trim()) {
      watcher.close();
      clearTimeout(timer);
      resolve();
    }
  });
}
