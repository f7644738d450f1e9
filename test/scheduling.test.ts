import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TerminalClient } from '../terminal-protocol/client.js';
import type { Job } from '../terminal-protocol/job.js';
import { isFinal, startFixture, SWM_MAIN, waitForJob, type CoreFixture } from './harness/core.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the real `swm` with the fixture's admin bundle. */
function swm(f: CoreFixture, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SWM_MAIN, ...args], { env: { ...process.env, SWM_HOME: f.spool.homeDir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every event of the jobs given, as they are committed (one subscription each). */
async function watch(client: TerminalClient, ids: readonly string[], onEvent: (job: Job) => void): Promise<() => void> {
  const wanted = new Set(ids);
  const listener = (name: string, job: Job) => {
    if (name === 'job.event' && wanted.has(job.id)) onEvent(job);
  };
  client.on('notification', listener);
  for (const id of ids) onEvent(await client.call('job.subscribe', { id, logs: false }));
  return () => client.off('notification', listener);
}

const submit = async (f: CoreFixture, script: string): Promise<string> => (await f.admin.call('job.submit', { script })).id;
const ended = (f: CoreFixture, id: string, timeoutMs = 30_000): Promise<Job> => waitForJob(f.admin, id, isFinal, timeoutMs);

describe('scheduling a team\'s work, end to end on the local gate', function () {
  this.timeout(120_000);
  let f: CoreFixture;

  before(async () => {
    f = await startFixture({
      configure: (config) => {
        // Partitions kept a little while: an array's next task reuses its predecessor's (the test runs faster).
        for (const remote of config.remotes) Object.assign(remote, { maxNodes: 8, idleTimeoutSec: 5 });
      },
    });
  });
  after(async () => {
    await f?.stop();
  });

  it('runs an array of 20 tasks with %4: never more than 4 at once, each with its SWM_ARRAY_TASK_ID, all finished', async () => {
    const { id: arrayId, tasks } = await f.admin.call('job.submit', { script: '#!/bin/sh\n#SWM array 0-19%4\n#SWM name sweep\nsleep 1\necho "task $SWM_ARRAY_TASK_ID of $SWM_ARRAY_JOB_ID"\n' });
    expect(tasks).to.have.length(20);
    expect(tasks).not.to.include(arrayId);
    const states = new Map<string, Job['state']>();
    let most = 0;
    let limited: Promise<Run> | null = null;
    const done = new Promise<void>((resolve) => {
      void watch(f.admin, tasks!, (job) => {
        states.set(job.id, job.state);
        const holding = [...states.values()].filter((s) => s === 'W' || s === 'T' || s === 'R').length;
        most = Math.max(most, holding);
        // While tasks run, the others say why they wait (once the scheduler has said it).
        if (job.state === 'R' && !limited) limited = swm(f, ['jobs', '--expand']);
        if (states.size === tasks!.length && [...states.values()].every((s) => ['F', 'E', 'C'].includes(s))) resolve();
      });
    });
    await done;
    expect(most, 'tasks holding nodes at once').to.be.at.most(4).and.at.least(2);
    expect([...states.values()].every((s) => s === 'F'), JSON.stringify([...states.values()])).to.equal(true);
    const job = await f.admin.call('job.get', { id: tasks![7]! });
    expect(job).to.include({ array_id: arrayId, array_index: 7 });
    const out = await f.admin.call('job.logs', { id: tasks![7]!, stream: 'stdout' });
    expect(out.data).to.equal(`task 7 of ${arrayId}\n`);
    const folded = await swm(f, ['jobs']);
    expect(folded.stdout).to.match(new RegExp(`${arrayId.slice(0, 8)}\\S*\\s+sweep\\[\\]\\s+F\\s.*20 tasks: 20 F`));
    const during = await limited!;
    expect(during.stdout).to.include('(ArrayTaskLimit)');
  });

  it('cancels a whole array by its id, and one task by its own', async () => {
    const blocker = await submit(f, '#!/bin/sh\nsleep 60\n');
    const { id: arrayId, tasks } = await f.admin.call('job.submit', { script: `#!/bin/sh\n#SWM array 1-3\n#SWM depends afterok:${blocker}\necho x\n` });
    const one = await swm(f, ['cancel', tasks![0]!]);
    expect(one.code, one.stderr).to.equal(0);
    expect((await ended(f, tasks![0]!)).state).to.equal('C');
    expect((await f.admin.call('job.get', { id: tasks![1]! })).state).to.equal('Q');
    const all = await swm(f, ['cancel', arrayId.slice(0, 8)]);
    expect(all.code, all.stderr).to.equal(0);
    for (const id of tasks!.slice(1)) expect((await ended(f, id)).state).to.equal('C');
    await f.admin.call('job.cancel', { id: blocker });
  });

  it('runs a dependency chain in order, each waiting with reason Dependency meanwhile', async () => {
    const a = await submit(f, '#!/bin/sh\nsleep 2\necho a\n');
    const b = await submit(f, `#!/bin/sh\n#SWM depends afterok:${a}\necho b\n`);
    const c = await submit(f, `#!/bin/sh\n#SWM depends afterok:${b}\necho c\n`);
    const waiting = await waitForJob(f.admin, c, (j) => j.reason === 'Dependency', 10_000);
    expect(waiting.state_details).to.include(`afterok:${b}`);
    const [ja, jb, jc] = [await ended(f, a), await ended(f, b), await ended(f, c)];
    for (const j of [ja, jb, jc]) expect(j.state).to.equal('F');
    expect(Date.parse(jb.start_time!)).to.be.at.least(Date.parse(ja.end_time!));
    expect(Date.parse(jc.start_time!)).to.be.at.least(Date.parse(jb.end_time!));
  });

  it('ends a job that depends on a failed one with reason DependencyNeverSatisfied', async () => {
    const failing = await submit(f, '#!/bin/sh\nexit 3\n');
    const after = await submit(f, `#!/bin/sh\n#SWM depends afterok:${failing}\necho never\n`);
    const rescue = await submit(f, `#!/bin/sh\n#SWM depends afternotok:${failing}\necho rescue\n`);
    expect((await ended(f, failing)).state).to.equal('E');
    const never = await ended(f, after);
    expect(never).to.include({ state: 'E', reason: 'DependencyNeverSatisfied', start_time: null });
    expect(never.state_details).to.include(`afterok:${failing} ended failed`);
    expect((await ended(f, rescue)).state).to.equal('F');
  });

  it('takes short ids and names in swm submit --depends, and refuses a dependency on no such job', async () => {
    const first = await submit(f, '#!/bin/sh\n#SWM name first-of-two\necho 1\n');
    const run = await swm(f, ['submit', '--wrap', 'echo 2', '--depends', 'afterany:first-of-two']);
    expect(run.code, run.stderr).to.equal(0);
    const second = run.stdout.trim();
    expect((await f.admin.call('job.get', { id: second })).depends).to.deep.equal([`afterany:${first}`]);
    expect((await ended(f, second)).state).to.equal('F');
    const refused = await f.admin.call('job.submit', { script: '#!/bin/sh\n#SWM depends afterok:00000000-0000-4000-8000-000000000000\necho x\n' }).catch((e: Error) => e);
    expect((refused as Error).message).to.include('no such job');
  });

  it('runs the script in its #SWM workdir, made inside the job directory', async () => {
    const id = await submit(f, '#!/bin/sh\n#SWM workdir run/a\necho "$PWD" > here.txt\necho "$PWD"\n');
    expect((await ended(f, id)).state).to.equal('F');
    expect((await f.admin.call('job.logs', { id, stream: 'stdout' })).data.trim()).to.match(/\/run\/a$/);
    const escape = await f.admin.call('job.submit', { script: '#!/bin/sh\n#SWM workdir ../elsewhere\necho x\n' }).catch((e: Error) => e);
    expect((escape as Error).message).to.include('inside the job directory');
  });

  it('keeps an attempt\'s results aside when the job is requeued; swm jobs --since leaves out jobs ended before', async () => {
    const id = await submit(f, '#!/bin/sh\necho "attempt at $(date +%s%N)"\n');
    const first = await ended(f, id);
    await f.admin.call('job.requeue', { id });
    const second = await waitForJob(f.admin, id, (j) => isFinal(j) && j.attempts === 1, 30_000);
    expect(second.state).to.equal('F');
    const kept = readFileSync(join(f.spool.spoolDir, 'jobs', id, 'attempts', '1', 'outputs', 'stdout.log'), 'utf8');
    expect(kept).to.match(/^attempt at \d+\n$/);
    expect((await f.admin.call('job.logs', { id, stream: 'stdout' })).data).to.not.equal(kept);
    expect(JSON.parse(readFileSync(join(f.spool.spoolDir, 'jobs', id, 'attempts', '1', 'attempt.json'), 'utf8'))).to.include({ state: 'F', startTime: first.start_time });
    const later = new Date(Date.now() + 60_000).toISOString();
    expect((await f.admin.call('job.list', { since: later })).jobs.map((j) => j.id)).to.not.include(id);
    expect((await f.admin.call('job.list', { since: first.submit_time })).jobs.map((j) => j.id)).to.include(id);
  });

  it('ends a job stopped at its time limit E with reason TimeLimit; swm wait --exit-code exits 193', async () => {
    const id = await submit(f, '#!/bin/sh\n#SWM duration 00:00:02\nsleep 60\n');
    const job = await ended(f, id);
    expect(job).to.include({ state: 'E', reason: 'TimeLimit' });
    const waited = await swm(f, ['wait', '--exit-code', id]);
    expect(waited.code).to.equal(193);
    const shown = await swm(f, ['show', id]);
    expect(shown.stdout).to.match(/reason\s+TimeLimit/).and.to.match(/STEP\s+DETAILS/).and.to.include('teardown');
  });
});

describe('cost and budgets, end to end on the local gate', function () {
  this.timeout(90_000);
  let f: CoreFixture;
  /** One local.small node costs 1 USD a second: the figures are easy to check. */
  const PER_SECOND = 1;

  before(async () => {
    f = await startFixture({
      configure: (config) => {
        const local = config.gates.find((g) => g.name === 'local')!;
        local.options = { ...local.options, flavors: [{ name: 'local.small', cpus: 1, memMiB: 1024, diskMiB: 10240, gpus: 0, pricePerHour: PER_SECOND * 3600 }] };
        config.scheduling.budgets = { period: 'month', currency: 'USD', user: null, users: { admin: 4 }, account: null, accounts: {}, hardLimitPercent: 100 };
      },
    });
  });
  after(async () => {
    await f?.stop();
  });

  /** Until no partition holds nodes any more (no terminal event tells of a partition's deletion). */
  const partitionsGone = async (): Promise<void> => {
    for (let i = 0; i < 200; i++) {
      const live = (await f.admin.call('partition.list', { all: true })).filter((p) => p.state !== 'deleted');
      if (!live.length) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('partitions still up');
  };

  it('refuses #SWM gpus on a flavor without GPUs at submit', async () => {
    // Once the gate has said what its flavors offer (before, the scheduler refuses the job instead).
    for (let i = 0; i < 100 && !(await f.admin.call('flavor.list')).length; i++) await new Promise((r) => setTimeout(r, 100));
    const refused = await f.admin.call('job.submit', { script: '#!/bin/sh\n#SWM gpus 1\necho x\n' }).catch((e: Error) => e);
    expect((refused as Error).message).to.include('has no GPUs');
  });

  it('stops a running job past the hard limit with reason Budget, holds the next one, and swm cost sums the jobs\' figures', async () => {
    const spender = await submit(f, '#!/bin/sh\nsleep 60\n');
    const stopped = await ended(f, spender, 40_000);
    expect(stopped).to.include({ state: 'E', reason: 'Budget' });
    expect(stopped.state_details).to.include('user admin');
    const held = await submit(f, '#!/bin/sh\necho held\n');
    const waiting = await waitForJob(f.admin, held, (j) => j.reason === 'Budget', 10_000);
    expect(waiting.state).to.equal('Q');
    const listed = (await f.admin.call('job.list', { all: true })).jobs.find((j) => j.id === held)!;
    expect(listed.state_details).to.match(/^Budget \(user admin: [\d.]+\/4\.00 USD this month\)$/);
    await f.admin.call('job.cancel', { id: held });
    await partitionsGone();
    const charged = (await f.admin.call('job.get', { id: spender })).cost_amount!;
    expect(charged).to.be.at.least(4);
    const report = await swm(f, ['cost', '--json']);
    expect(report.code, report.stderr).to.equal(0);
    const { total, groups } = JSON.parse(report.stdout) as { total: number; groups: { key: string; cost: number; jobs: number }[] };
    const jobs = (await f.admin.call('job.list', { all: true })).jobs;
    const sum = jobs.reduce((n, j) => n + (j.cost_amount ?? 0), 0);
    expect(total).to.be.closeTo(sum, 1e-9);
    expect(groups).to.deep.equal([{ key: 'admin', cost: total, jobs: jobs.filter((j) => j.cost_amount != null).length }]);
    const wide = await swm(f, ['jobs', '--wide']);
    expect(wide.stdout).to.match(/COST/).and.to.include(`${charged.toFixed(2)} USD`);
  });
});
