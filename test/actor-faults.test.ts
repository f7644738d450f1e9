import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { armDeadline, MAX_TIMER_MS, type TimerClock } from '../core/supervision/deadline-timer.js';
import { JOB_ACTOR_RESTARTS } from '../core/jobs/jobs.js';
import { deadlineOf } from '../core/jobs/job-steps.js';
import { stepEffects } from '../core/jobs/steps/index.js';
import type { StepEffect } from '../core/jobs/steps/step-context.js';
import type { JobRecord } from '../core/store/job-record.js';
import { ErrorCode } from '../terminal-protocol/errors.js';
import type { Job } from '../terminal-protocol/job.js';
import { isFinal, startCoreProcess, waitForJob } from './harness/core.js';
import { startInProcessCore, type InProcessCore } from './harness/core-in-process.js';
import { rejection } from './harness/rpc.js';
import { freePort, makeTestSpool, unreachableGates, type TestSpool } from './harness/spool.js';
import { submitJob } from './harness/submit.js';

const DAY_MS = 86_400_000;

/** A clock whose time moves only when the test says so. */
function fakeClock(start = 1_000_000): TimerClock & { advance: (ms: number) => void; delays: number[] } {
  let now = start;
  let nextId = 0;
  const timers = new Map<number, { due: number; callback: () => void }>();
  const delays: number[] = [];
  return {
    delays,
    now: () => now,
    setTimeout: (callback, ms) => {
      delays.push(ms);
      timers.set(++nextId, { due: now + ms, callback });
      return nextId;
    },
    clearTimeout: (handle) => void timers.delete(handle as number),
    advance(ms: number) {
      const end = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.due <= end).sort((a, b) => a[1].due - b[1].due)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].due;
        due[1].callback();
      }
      now = end;
    },
  };
}

describe('deadline timer (armDeadline)', () => {
  it('waits out a 25-day deadline in steps a timer can hold, and fires once, on time', () => {
    const clock = fakeClock();
    let fired = 0;
    armDeadline(clock.now() + 25 * DAY_MS, () => fired++, clock);
    expect(Math.max(...clock.delays)).to.be.at.most(MAX_TIMER_MS);
    clock.advance(MAX_TIMER_MS);
    expect(fired, 'fired after one overflowing step').to.equal(0);
    clock.advance(25 * DAY_MS - MAX_TIMER_MS - 1);
    expect(fired, 'fired a millisecond early').to.equal(0);
    clock.advance(1);
    expect(fired).to.equal(1);
    clock.advance(365 * DAY_MS);
    expect(fired).to.equal(1);
    expect(clock.delays.every((d) => d >= 0 && d <= MAX_TIMER_MS)).to.equal(true);
  });

  it('honours the longest duration a script may ask for (a year)', () => {
    const clock = fakeClock();
    let firedAt: number | null = null;
    const due = clock.now() + 365 * DAY_MS;
    armDeadline(due, () => (firedAt = clock.now()), clock);
    clock.advance(365 * DAY_MS - 1);
    expect(firedAt).to.equal(null);
    clock.advance(1);
    expect(firedAt).to.equal(due);
  });

  it('fires at once for a deadline already past, and never once cancelled', () => {
    const clock = fakeClock();
    let late = 0;
    armDeadline(clock.now() - 5_000, () => late++, clock);
    clock.advance(0);
    expect(late).to.equal(1);
    let cancelled = 0;
    const timer = armDeadline(clock.now() + 30 * DAY_MS, () => cancelled++, clock);
    clock.advance(MAX_TIMER_MS + 10);
    timer.cancel();
    clock.advance(60 * DAY_MS);
    expect(cancelled).to.equal(0);
  });
});

describe('errors inside the core are contained (in-process swm-core, local gate)', function () {
  this.timeout(60_000);
  let c: InProcessCore;
  let saveFault: (job: JobRecord) => 'throw' | 'hang' | null = () => null;
  const hung: (() => void)[] = [];
  let onHang: (() => void) | null = null;
  /** Resolves when the next write is held back by a 'hang' fault. */
  const nextHang = (): Promise<void> => new Promise((resolve) => (onHang = resolve));
  const saves = new Map<string, number>();

  before(async () => {
    c = await startInProcessCore();
    const store = c.core.services.store;
    const save = store.save.bind(store);
    store.save = (job: JobRecord): Promise<void> => {
      saves.set(job.name, (saves.get(job.name) ?? 0) + 1);
      const fault = saveFault(job);
      if (fault === 'throw') throw new Error(`injected store fault (${job.name} → ${job.step})`);
      if (fault === 'hang')
        return new Promise((resolve, reject) => {
          hung.push(() => save(job).then(resolve, reject));
          onHang?.();
          onHang = null;
        });
      return save(job);
    };
  });
  afterEach(() => {
    saveFault = () => null;
    for (const release of hung.splice(0)) release();
  });
  after(async () => {
    await c?.stop();
  });

  const finished = (id: string, timeoutMs?: number): Promise<Job> => waitForJob(c.admin, id, isFinal, timeoutMs);
  const stored = (id: string): JobRecord => c.core.services.store.get(id)!;
  const partitionsOf = async (id: string) => (await c.admin.call('partition.list')).filter((p) => p.jobId === id);

  it('arms a 25-day time limit and does not fire it: the job runs to its own end', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    const seen: JobRecord[] = [];
    try {
      const id = await submitJob(c.admin, '#!/bin/sh\n#SWM name long-limit\n#SWM duration 25-00:00:00\nsleep 1\necho done\n');
      c.core.services.bus.on(`job:${id}`, (job: JobRecord) => seen.push(job));
      await waitForJob(c.admin, id, (j) => j.state === 'R' && j.state_details === 'running');
      const running = stored(id);
      expect(running.runStartedMs).to.be.a('number');
      expect(deadlineOf(running)).to.equal(running.runStartedMs! + 25 * DAY_MS);

      // An overflowed timer fires after 1 ms; the job sleeps a second and must end by itself.
      const job = await finished(id);
      expect(job.state, job.state_details).to.equal('F');
      expect(job.exitcode).to.equal(0);
      expect(seen.map((j) => j.stateDetails).filter((d) => /time limit/.test(d))).to.deep.equal([]);
      expect(warnings).not.to.include('TimeoutOverflowWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('still ends a job at a short time limit', async () => {
    const id = await submitJob(c.admin, '#!/bin/sh\n#SWM name short-limit\n#SWM duration 1\nexec sleep 60\n');
    const job = await finished(id, 20_000);
    expect(job.state).to.equal('E');
    expect(job.state_details).to.include('time limit exceeded (00:00:01)');
    expect(Date.parse(job.end_time!) - Date.parse(job.start_time!)).to.be.below(10_000);
  });

  describe('a store write that throws or hangs', () => {
    let waiting: string;
    before(async () => {
      // A job waiting for its inputs: nothing else moves it while the test does.
      const content = Buffer.from('x');
      const sha256 = createHash('sha256').update(content).digest('hex');
      waiting = (await c.admin.call('job.submit', { script: '#!/bin/sh\n#SWM name waiting\ncat in.txt\n', inputs: [{ path: 'in.txt', size: 1, sha256 }] })).id;
    });

    it('answers the caller with the error at once, and the actor carries on', async () => {
      saveFault = (job) => (job.id === waiting ? 'throw' : null);
      const started = Date.now();
      const inProcess = await c.core.jobs.send(waiting, { type: 'progress', details: 'first' }).then(
        () => expect.fail('the change was recorded'),
        (e: Error) => e,
      );
      expect(inProcess.message).to.include('injected store fault');
      // Over the wire: a terminal's cancel, answered with the error, not left waiting.
      const error = await rejection(c.admin.call('job.cancel', { id: waiting }));
      expect(Date.now() - started).to.be.below(1_000);
      expect(error.code).to.equal(ErrorCode.Internal);
      expect(error.message).to.include('injected store fault');
      saveFault = () => null;
      expect(stored(waiting).step).to.equal('inputs');
      expect((await c.core.jobs.send(waiting, { type: 'progress', details: 'second' })).stateDetails).to.equal('second');
    });

    it('answers Timeout within the time limit when the write never returns, and recovers once it does', async () => {
      saveFault = (job) => (job.id === waiting ? 'hang' : null);
      const started = Date.now();
      const error = await rejection(c.core.jobs.send(waiting, { type: 'progress', details: 'stuck' }, 300));
      expect(error.code).to.equal(ErrorCode.Timeout);
      expect(Date.now() - started).to.be.within(250, 1_000);

      // Meanwhile other jobs are scheduled and run.
      const other = await submitJob(c.admin, '#!/bin/sh\n#SWM name while-stuck\necho ok\n');
      expect((await finished(other)).state).to.equal('F');

      saveFault = () => null;
      for (const release of hung.splice(0)) release();
      expect((await c.core.jobs.send(waiting, { type: 'progress', details: 'unstuck' })).stateDetails).to.equal('unstuck');
    });

    it('keeps scheduling others while a job being scheduled cannot record its move, then schedules it', async () => {
      saveFault = (job) => (job.name === 'stuck' && job.step === 'partition' ? 'hang' : null);
      const held = nextHang();
      const stuck = await submitJob(c.admin, '#!/bin/sh\n#SWM name stuck\necho late\n');
      await held;
      const others = await Promise.all([1, 2].map((n) => submitJob(c.admin, `#!/bin/sh\n#SWM name other-${n}\necho ${n}\n`)));
      for (const id of others) expect((await finished(id)).state).to.equal('F');
      expect(stored(stuck).step).to.equal('queue');

      saveFault = () => null;
      for (const release of hung.splice(0)) release();
      expect((await finished(stuck)).state).to.equal('F');
    });

    it('retries a move whose write threw once: the job runs to F', async () => {
      let thrown = 0;
      saveFault = (job) => (job.name === 'flaky' && job.step === 'partition' && thrown++ === 0 ? 'throw' : null);
      const flaky = await submitJob(c.admin, '#!/bin/sh\n#SWM name flaky\necho ok\n');
      const job = await finished(flaky);
      expect(job.state, job.state_details).to.equal('F');
      expect(thrown).to.be.greaterThan(1);
    });
  });

  describe('a job whose actor keeps crashing', () => {
    it('is restarted within its intensity, then ends E with the reason, stored; the others run', async () => {
      saveFault = (job) => (job.name === 'doomed' && job.step !== 'done' ? 'throw' : null);
      const doomed = await submitJob(c.admin, '#!/bin/sh\n#SWM name doomed\necho never\n');
      const healthy = await submitJob(c.admin, '#!/bin/sh\n#SWM name healthy\necho fine\n');
      const job = await finished(doomed);
      expect(job.state).to.equal('E');
      expect(job.state_details).to.include(`failed ${JOB_ACTOR_RESTARTS.maxRestarts + 1} times`).and.include('injected store fault');
      // Its first write, then one per restart: the actor was restarted as often as its intensity allows.
      expect(saves.get('doomed')).to.equal(JOB_ACTOR_RESTARTS.maxRestarts + 2);
      expect(stored(doomed)).to.include({ step: 'done', state: 'E' });
      expect((await c.admin.call('job.get', { id: doomed })).state).to.equal('E');
      expect((await finished(healthy)).state).to.equal('F');
      await rejection(c.admin.call('job.cancel', { id: doomed })).then((e) => expect(e.code).to.equal(ErrorCode.Conflict));
    });

    it('ends the job E here even when the store refuses that too, and schedules around it', async () => {
      saveFault = (job) => (job.name === 'unstorable' ? 'throw' : null);
      const id = await submitJob(c.admin, '#!/bin/sh\n#SWM name unstorable\necho never\n');
      const job = await finished(id);
      expect(job.state).to.equal('E');
      expect(job.state_details).to.include('injected store fault');
      expect(c.core.jobs.isAbandoned(id)).to.equal(true);
      expect((await rejection(c.admin.call('job.cancel', { id }))).code).to.equal(ErrorCode.Conflict);
      // The crashes and the refused ending; later runs of the scheduler (for the next job) leave it alone.
      const after = await submitJob(c.admin, '#!/bin/sh\n#SWM name after-unstorable\necho fine\n');
      expect((await finished(after)).state).to.equal('F');
      expect(saves.get('unstorable')).to.equal(JOB_ACTOR_RESTARTS.maxRestarts + 2);
    });

    it('gives up a job that crashes in the middle of its steps, and its partition is reaped', async () => {
      saveFault = (job) => (job.name === 'doomed-run' && job.step === 'run' ? 'throw' : null);
      const id = await submitJob(c.admin, '#!/bin/sh\n#SWM name doomed-run\necho never\n');
      const job = await finished(id);
      expect(job.state).to.equal('E');
      expect(job.state_details).to.include('injected store fault');
      expect(stored(id).step).to.equal('done');
      expect(await partitionsOf(id)).to.have.length(1);
      await c.core.reaper.sweep();
      // Deleted (by the reaper, or by its own actor once the job's end was on disk): the record follows once the
      // gate has said so and that is on disk.
      for (const end = Date.now() + 10_000; (await partitionsOf(id)).length && Date.now() < end; ) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await partitionsOf(id)).to.deep.equal([]);
    });
  });

  describe('a step effect that throws', () => {
    const original = stepEffects['stage-in']!;
    afterEach(() => void (stepEffects['stage-in'] = original));

    it('fails the step, even thrown before any await: the job ends E with the reason and its partition is deleted', async () => {
      const throwing: StepEffect = (context) => {
        if (context.job.name === 'broken-step') throw new Error('injected step fault');
        return original(context);
      };
      stepEffects['stage-in'] = throwing;
      const broken = await submitJob(c.admin, '#!/bin/sh\n#SWM name broken-step\necho never\n');
      const other = await submitJob(c.admin, '#!/bin/sh\n#SWM name beside-broken\necho fine\n');
      const job = await finished(broken);
      expect(job.state).to.equal('E');
      expect(job.state_details).to.include('stage-in: injected step fault');
      expect(await partitionsOf(broken)).to.deep.equal([]);
      expect((await finished(other)).state).to.equal('F');
    });
  });
});

describe('the last resort (real swm-core process)', function () {
  this.timeout(30_000);
  let scratch: string;
  let spool: TestSpool;
  before(async () => {
    // One spool for both: the second start is also a restart after a crash.
    spool = await makeTestSpool({ configure: unreachableGates(await freePort()) });
    scratch = mkdtempSync(join(tmpdir(), 'skyport-fault-'));
    // Loaded into the core with --require: on SIGUSR2 it throws or rejects where nothing handles it.
    writeFileSync(
      join(scratch, 'fault.cjs'),
      `process.on('SIGUSR2', () => {
  if (process.env.SWM_TEST_FAULT === 'throw') setImmediate(() => { throw new Error('injected fault: thrown'); });
  else Promise.reject(new Error('injected fault: rejected'));
});\n`,
    );
  });
  after(() => {
    spool?.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  for (const [kind, what] of [
    ['throw', 'uncaught exception'],
    ['reject', 'unhandled rejection'],
  ] as const) {
    it(`logs an ${what} and exits non-zero`, async () => {
      const core = await startCoreProcess(spool, { NODE_OPTIONS: `--require ${join(scratch, 'fault.cjs')}`, SWM_TEST_FAULT: kind });
      const exited = new Promise<number | null>((resolve) => core.child.once('exit', (code) => resolve(code)));
      core.child.kill('SIGUSR2');
      expect(await exited).to.equal(70);
      expect(core.output()).to.include(`swm-core: ${what}, exiting`).and.include('injected fault');
      const log = readFileSync(join(spool.spool.logsDir, 'core.log'), 'utf8');
      const fatal = log.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { level: number; msg: string; err?: { message: string } });
      expect(fatal.filter((l) => l.level === 60).map((l) => [l.msg, l.err?.message])).to.deep.include([`${what}: exiting`, `injected fault: ${kind === 'throw' ? 'thrown' : 'rejected'}`]);
    });
  }
});
