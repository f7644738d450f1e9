import { expect } from 'chai';
import { parseJobScript } from '../core/jobs/job-script.js';
import { deadlineOf, JOB_STEPS, STEPS, transition, type JobEvent, type JobEventType } from '../core/jobs/job-steps.js';
import { partitionFailure, partitionRetryDelayMs } from '../core/partitions/partition-states.js';
import { ownJob, type JobRecord, type JobStep } from '../core/store/job-record.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';

const ID = '6f1c2b7e-8d4a-4c1e-9b2f-0a1b2c3d4e5f';
const PARTITION = `job-${ID}`;
const T0 = new Date('2025-01-01T00:00:00.000Z');
const at = (seconds: number): Date => new Date(T0.getTime() + seconds * 1000);

/** A freshly submitted job, queued, as job.submit stores it. */
function queuedJob(script = '#!/bin/sh\n#SWM duration 01:00:00\necho hi\n'): JobRecord {
  const { directives } = parseJobScript(script);
  return {
    id: ID,
    owner: 'alice',
    name: 'job',
    state: 'Q',
    stateDetails: 'queued',
    step: 'queue',
    script,
    directives,
    inputs: [],
    priority: 0,
    submitTime: T0.toISOString(),
    startTime: null,
    endTime: null,
    exitcode: null,
    signal: null,
    remote: null,
    flavor: null,
    nodeNames: [],
    nodeIps: [],
    partitionName: null,
    partitionId: null,
    runtime: null,
    outcome: null,
    runStartedMs: null,
    reason: null,
    ...ownJob(),
  };
}

/** The events of a job that runs to its exit, in order, each with the step it leads to. */
const toExit: [JobEvent, JobStep][] = [
  [{ type: 'placed', remote: 'local', flavor: 'local.small', partition: PARTITION }, 'partition'],
  [{ type: 'progress', details: 'partition has not been created yet' }, 'partition'],
  [{ type: 'partition-up', partitionId: 'p-1', nodeNames: ['node-0'], nodeIps: ['127.0.0.1'] }, 'connect'],
  [{ type: 'connected', runtime: 'podman' }, 'stage-in'],
  [{ type: 'staged-in' }, 'run'],
  [{ type: 'started' }, 'run'],
];

/** Apply events in order, one second apart. */
const apply = (job: JobRecord, events: JobEvent[], from = 1): JobRecord =>
  events.reduce((j, event, i) => transition(j, event, at(from + i)), job);

const HAPPY_PATH: JobEvent[] = [
  ...toExit.map(([event]) => event),
  { type: 'exited', exitcode: 0, signal: null },
  { type: 'staged-out' },
  { type: 'released' },
];

/** The job as it is at the end of `step` on the happy path (all its events applied, at T0 + 1 s). */
function jobAt(step: JobStep): JobRecord {
  let job = queuedJob();
  if (step === 'queue') return job;
  if (step === 'inputs') return { ...job, step: 'inputs', stateDetails: 'waiting for input files' };
  let found: JobRecord | null = null;
  for (const event of HAPPY_PATH) {
    job = transition(job, event, at(1));
    if (job.step === step) found = job;
  }
  if (!found) throw new Error(`no path to ${step}`);
  return found;
}

const ACTIVE: JobStep[] = ['partition', 'connect', 'stage-in', 'run', 'stage-out'];
const ALL: JobStep[] = ['inputs', 'queue', ...ACTIVE, 'teardown', 'done'];

function conflictOf(fn: () => unknown): RpcError {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(RpcError);
    return error as RpcError;
  }
  expect.fail('no error');
}

describe('job steps (pure transition function)', () => {
  describe('the happy path', () => {
    it('goes Q → W (partition) → W (connect) → T (stage-in) → R (run) → T (stage-out) → F after teardown', () => {
      let job = queuedJob();
      const seen: string[] = [`${job.state}:${job.step}`];
      HAPPY_PATH.forEach((event, i) => {
        const next = transition(job, event, at(i + 1));
        if (next.step !== job.step) seen.push(`${next.state}:${next.step}`);
        job = next;
      });
      expect(seen).to.deep.equal(['Q:queue', 'W:partition', 'W:connect', 'T:stage-in', 'R:run', 'T:stage-out', 'T:teardown', 'F:done']);
      expect(job).to.include({ exitcode: 0, signal: null, remote: 'local', flavor: 'local.small', partitionName: PARTITION, partitionId: 'p-1', runtime: 'podman' });
      expect(job.nodeNames).to.deep.equal(['node-0']);
      expect(job.nodeIps).to.deep.equal(['127.0.0.1']);
      expect(job.startTime).to.equal(at(6).toISOString());
      expect(job.endTime).to.equal(at(9).toISOString());
      expect(job.stateDetails).to.equal('finished');
    });

    it('uses the state_details words the original spawner progress bar expects', () => {
      const details: string[] = [];
      let job = queuedJob();
      for (const [event] of toExit.slice(0, 5)) {
        job = transition(job, event, at(1));
        details.push(job.stateDetails.toLowerCase());
      }
      expect(details[0]).to.match(/^initiate a new partition/);
      expect(details[1]).to.match(/^partition has not been created yet/);
      expect(details[2]).to.match(/^partition spawned/);
      expect(details[3]).to.match(/^sky port connected/);
      expect(details[4]).to.match(/^data uploaded/);
    });

    it('never changes the job it is given', () => {
      const job = queuedJob();
      const copy = structuredClone(job);
      transition(job, { type: 'placed', remote: 'local', flavor: 'local.small', partition: PARTITION }, at(1));
      transition(job, { type: 'cancel' }, at(1));
      expect(job).to.deep.equal(copy);
    });

    it('moves a job waiting for inputs to the queue once they are committed', () => {
      const job = transition(jobAt('inputs'), { type: 'inputs-committed' }, at(1));
      expect(job).to.include({ step: 'queue', state: 'Q', stateDetails: 'queued' });
    });
  });

  describe('failures', () => {
    it('ends with E and the exit code after teardown when the job exits with 3', () => {
      let job = apply(queuedJob(), [...toExit.map(([e]) => e), { type: 'exited', exitcode: 3, signal: null }]);
      expect(job).to.include({ step: 'stage-out', state: 'T', exitcode: 3 });
      job = transition(job, { type: 'staged-out' }, at(20));
      expect(job).to.include({ step: 'teardown', exitcode: 3 });
      expect(job.state, 'not final before the partition is gone').not.to.equal('E');
      job = transition(job, { type: 'released' }, at(21));
      expect(job).to.include({ step: 'done', state: 'E', exitcode: 3 });
      expect(job.stateDetails).to.include('exit code 3');
    });

    it('ends with E naming the signal when the job is killed', () => {
      const job = apply(queuedJob(), [...toExit.map(([e]) => e), { type: 'exited', exitcode: null, signal: 9 }, { type: 'staged-out' }, { type: 'released' }]);
      expect(job).to.include({ state: 'E', signal: 9, exitcode: null });
      expect(job.stateDetails).to.include('signal 9');
    });

    for (const step of ACTIVE) {
      it(`tears the partition down and ends with E when the ${step} step fails`, () => {
        const failed = transition(jobAt(step), { type: 'step-failed', reason: 'node lost' }, at(30));
        expect(failed.step).to.equal('teardown');
        expect(failed.outcome).to.deep.equal({ state: 'E', details: 'node lost' });
        const done = transition(failed, { type: 'released' }, at(31));
        expect(done).to.include({ step: 'done', state: 'E', stateDetails: 'node lost' });
      });
    }

    it('ends a queued job that cannot be scheduled with E, without teardown', () => {
      const job = transition(queuedJob(), { type: 'unschedulable', reason: 'unknown flavor "x"' }, at(1));
      expect(job).to.include({ step: 'done', state: 'E', stateDetails: 'unknown flavor "x"', endTime: at(1).toISOString() });
    });

    it('keeps retrying a failed teardown (the job stays in teardown)', () => {
      const tearing = transition(jobAt('run'), { type: 'cancel' }, at(1));
      expect(transition(tearing, { type: 'step-failed', reason: 'gate down' }, at(2))).to.equal(tearing);
    });
  });

  describe('cancel', () => {
    for (const step of ['inputs', 'queue'] as const) {
      it(`cancels at once from ${step}, with no teardown`, () => {
        const job = transition(jobAt(step), { type: 'cancel' }, at(5));
        expect(job).to.include({ step: 'done', state: 'C', endTime: at(5).toISOString() });
      });
    }

    for (const step of ACTIVE) {
      it(`tears the partition down first when cancelled during ${step}, then ends with C`, () => {
        const before = jobAt(step);
        const tearing = transition(before, { type: 'cancel' }, at(5));
        expect(tearing.step).to.equal('teardown');
        expect(tearing.state, 'the visible state does not jump to C before teardown').to.equal(before.state);
        expect(tearing.outcome).to.deep.equal({ state: 'C', details: 'canceled' });
        expect(tearing.partitionName).to.equal(PARTITION);
        const done = transition(tearing, { type: 'released' }, at(6));
        expect(done).to.include({ step: 'done', state: 'C', endTime: at(6).toISOString() });
      });
    }

    it('keeps the outcome of a job already in teardown (an exit code is not overwritten by cancel)', () => {
      const tearing = apply(queuedJob(), [...toExit.map(([e]) => e), { type: 'exited', exitcode: 3, signal: null }, { type: 'staged-out' }]);
      expect(transition(tearing, { type: 'cancel' }, at(30))).to.equal(tearing);
    });

    it('turns a pending requeue into a cancel during teardown', () => {
      const requeueing = transition(jobAt('run'), { type: 'requeue' }, at(5));
      const canceled = transition(requeueing, { type: 'cancel' }, at(6));
      expect(canceled.outcome?.state).to.equal('C');
      expect(transition(canceled, { type: 'released' }, at(7))).to.include({ step: 'done', state: 'C' });
    });

    it('refuses to cancel a job that already ended, with Conflict', () => {
      for (const ended of [jobAt('done'), transition(queuedJob(), { type: 'cancel' }, at(1))]) {
        const error = conflictOf(() => transition(ended, { type: 'cancel' }, at(2)));
        expect(error.code).to.equal(ErrorCode.Conflict);
        expect(error.message).to.include(ID);
      }
    });
  });

  describe('time limit', () => {
    it('ends a running job with E "time limit exceeded" after teardown', () => {
      const tearing = transition(jobAt('run'), { type: 'time-limit' }, at(3600));
      expect(tearing.step).to.equal('teardown');
      expect(tearing.outcome?.state).to.equal('E');
      const done = transition(tearing, { type: 'released' }, at(3601));
      expect(done.state).to.equal('E');
      expect(done.stateDetails).to.include('time limit exceeded').and.to.include('01:00:00');
    });

    it('is an outcome of its own: E with reason TimeLimit, no exit code, apart from failures', () => {
      const done = apply(jobAt('run'), [{ type: 'time-limit' }, { type: 'released' }]);
      expect(done).to.include({ state: 'E', reason: 'TimeLimit', exitcode: null, signal: null });
      const failed = apply(jobAt('run'), [{ type: 'step-failed', reason: 'node lost' }, { type: 'released' }]);
      expect(failed).to.include({ state: 'E', reason: null });
    });

    for (const step of ALL.filter((s) => s !== 'run')) {
      it(`is ignored in ${step}`, () => {
        const job = jobAt(step);
        expect(transition(job, { type: 'time-limit' }, at(99))).to.equal(job);
      });
    }
  });

  describe('reasons', () => {
    it('a queued job takes its pending code from progress, and drops it once placed', () => {
      const waiting = transition(queuedJob(), { type: 'progress', details: 'Priority (job x is ahead on remote local)', reason: 'Priority' }, at(1));
      expect(waiting).to.include({ step: 'queue', reason: 'Priority', stateDetails: 'Priority (job x is ahead on remote local)' });
      expect(transition(waiting, toExit[0]![0], at(2)).reason).to.equal(null);
    });

    it('a dependency never met ends the job E with its code', () => {
      const done = transition(queuedJob(), { type: 'unschedulable', reason: 'DependencyNeverSatisfied (afterok:x ended failed)', code: 'DependencyNeverSatisfied' }, at(1));
      expect(done).to.include({ step: 'done', state: 'E', reason: 'DependencyNeverSatisfied' });
    });

    it('a budget stop ends a running job E with reason Budget, through teardown', () => {
      const done = apply(jobAt('run'), [{ type: 'budget-stop', details: 'Budget (user alice: 10.00/10.00 USD this month)' }, { type: 'released' }]);
      expect(done).to.include({ state: 'E', reason: 'Budget' });
    });

    it('a requeue counts the attempt', () => {
      const done = apply(jobAt('run'), [{ type: 'requeue' }, { type: 'released' }]);
      expect(done).to.include({ step: 'queue', attempts: 1, reason: null });
    });
  });

  describe('requeue', () => {
    it('puts an ended job back in the queue with its run cleared', () => {
      const ended = jobAt('done');
      const job = transition(ended, { type: 'requeue' }, at(50));
      expect(job).to.include({
        step: 'queue',
        state: 'Q',
        remote: null,
        flavor: null,
        partitionName: null,
        partitionId: null,
        runtime: null,
        outcome: null,
        exitcode: null,
        startTime: null,
        endTime: null,
        runStartedMs: null,
      });
      expect(job.nodeNames).to.deep.equal([]);
      expect(job).to.include({ id: ID, owner: 'alice', script: ended.script, submitTime: ended.submitTime });
    });

    for (const step of ACTIVE) {
      it(`tears the partition down first when requeued during ${step}, then queues the job again`, () => {
        const tearing = transition(jobAt(step), { type: 'requeue' }, at(5));
        expect(tearing.step).to.equal('teardown');
        expect(tearing.outcome?.state).to.equal('Q');
        const queued = transition(tearing, { type: 'released' }, at(6));
        expect(queued).to.include({ step: 'queue', state: 'Q', partitionName: null, remote: null, endTime: null });
      });
    }

    it('leaves a queued job as it is', () => {
      const job = queuedJob();
      expect(transition(job, { type: 'requeue' }, at(1))).to.equal(job);
    });

    it('makes a job in teardown come back to the queue afterwards', () => {
      const canceled = transition(jobAt('run'), { type: 'cancel' }, at(1));
      const requeued = transition(canceled, { type: 'requeue' }, at(2));
      expect(transition(requeued, { type: 'released' }, at(3))).to.include({ step: 'queue', state: 'Q' });
    });

    it('refuses a job still waiting for its inputs, with Conflict', () => {
      expect(conflictOf(() => transition(jobAt('inputs'), { type: 'requeue' }, at(1))).code).to.equal(ErrorCode.Conflict);
    });
  });

  describe('stale events', () => {
    const stale: [JobStep, JobEvent][] = [
      ['stage-in', { type: 'exited', exitcode: 0, signal: null }],
      ['queue', { type: 'partition-up', partitionId: 'p', nodeNames: ['n'], nodeIps: ['1.2.3.4'] }],
      ['run', { type: 'placed', remote: 'azure', flavor: 'big', partition: 'other' }],
      ['partition', { type: 'placed', remote: 'local', flavor: 'local.small', partition: PARTITION }],
      ['run', { type: 'connected', runtime: 'docker' }],
      ['stage-out', { type: 'staged-in' }],
      ['connect', { type: 'staged-out' }],
      ['run', { type: 'released' }],
      ['done', { type: 'released' }],
      ['done', { type: 'exited', exitcode: 1, signal: null }],
      ['done', { type: 'progress', details: 'late' }],
      ['done', { type: 'step-failed', reason: 'late' }],
      ['partition', { type: 'unschedulable', reason: 'late' }],
      ['queue', { type: 'inputs-committed' }],
      ['queue', { type: 'started' }],
    ];
    for (const [step, event] of stale) {
      it(`ignores '${event.type}' in ${step}`, () => {
        const job = jobAt(step);
        expect(transition(job, event, at(99))).to.equal(job);
      });
    }

    it("ignores a second 'started' (the start time is the first)", () => {
      const running = jobAt('run');
      expect(running.startTime).to.equal(at(1).toISOString());
      expect(transition(running, { type: 'started' }, at(20))).to.equal(running);
    });

    it('records progress details in an active step', () => {
      expect(transition(jobAt('stage-in'), { type: 'progress', details: 'uploaded 10 of 20 MiB' }, at(1)).stateDetails).to.equal('uploaded 10 of 20 MiB');
    });
  });

  describe('a partition failing for a passing reason (quota, capacity)', () => {
    it('tells waiting from failing by the reason the gate gives', () => {
      expect(partitionFailure('Quota: Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota.')).to.deep.equal({
        retry: true,
        reason: 'Quota: Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota.',
      });
      expect(partitionFailure('Capacity: virtual machine p-1: AllocationFailed: Allocation failed.').retry).to.equal(true);
      expect(partitionFailure('virtual machine p-0: InvalidParameter: The admin user name is not allowed.').retry).to.equal(false);
      expect(partitionFailure('no quota: words in the middle do not count').retry).to.equal(false);
      expect(partitionFailure(undefined)).to.deep.equal({ retry: false, reason: 'no reason given' });
    });

    it('waits 30 s, then twice as long each time, never more than 10 minutes', () => {
      expect([0, 1, 2, 3, 4, 5, 10].map(partitionRetryDelayMs)).to.deep.equal([30_000, 60_000, 120_000, 240_000, 480_000, 600_000, 600_000]);
    });
  });

  describe('deadlineOf', () => {
    it('is the run start plus the duration for a running job with a time limit', () => {
      const entered = transition(jobAt('stage-in'), { type: 'staged-in' }, at(99));
      const running = transition(entered, { type: 'started' }, at(100));
      expect(deadlineOf(running)).to.equal(at(100).getTime() + 3600 * 1000);
    });

    it('is null before the process started, without a time limit, and outside run', () => {
      const notStarted = transition(jobAt('stage-in'), { type: 'staged-in' }, at(1));
      expect(notStarted.step).to.equal('run');
      expect(deadlineOf(notStarted)).to.equal(null);

      const unlimited = apply(queuedJob('#!/bin/sh\necho hi\n'), toExit.map(([e]) => e));
      expect(unlimited.runStartedMs).not.to.equal(null);
      expect(deadlineOf(unlimited)).to.equal(null);

      const stagingOut = transition(jobAt('run'), { type: 'exited', exitcode: 0, signal: null }, at(1));
      expect(stagingOut.runStartedMs).not.to.equal(null);
      expect(deadlineOf(stagingOut)).to.equal(null);
      expect(deadlineOf(queuedJob())).to.equal(null);
    });
  });

  describe('the step table', () => {
    const EVENTS: JobEvent[] = [
      { type: 'inputs-committed' },
      { type: 'inputs-expired', reason: 'r' },
      { type: 'placed', remote: 'local', flavor: 'local.small', partition: 'job-x' },
      { type: 'unschedulable', reason: 'r' },
      { type: 'partition-up', partitionId: 'p', nodeNames: ['n'], nodeIps: ['127.0.0.1'] },
      { type: 'connected', runtime: 'process' },
      { type: 'staged-in' },
      { type: 'started' },
      { type: 'exited', exitcode: 0, signal: null },
      { type: 'staged-out' },
      { type: 'released' },
      { type: 'step-failed', reason: 'r' },
      { type: 'progress', details: 'd' },
      { type: 'cancel' },
      { type: 'time-limit' },
      { type: 'budget-stop', details: 'Budget (user alice: 10.00/10.00 USD this month)' },
      { type: 'requeue' },
    ];

    it('knows every event type (the list above is complete)', () => {
      const declared = new Set<JobEventType>(JOB_STEPS.flatMap((s) => [...(Object.keys(STEPS[s].on) as JobEventType[]), ...STEPS[s].ignores]));
      expect([...declared].sort()).to.deep.equal(EVENTS.map((e) => e.type).sort());
    });

    for (const step of JOB_STEPS) {
      it(`${step}: every event is either a declared transition or explicitly ignored, never both`, () => {
        const spec = STEPS[step];
        for (const event of EVENTS) {
          const handled = event.type in spec.on;
          const ignored = spec.ignores.includes(event.type);
          expect(handled !== ignored, `${step} × ${event.type}: handled ${handled}, ignored ${ignored}`).to.equal(true);
          const job = jobAt(step);
          let next: JobRecord | RpcError;
          try {
            next = transition(job, event, at(99));
          } catch (error) {
            expect(handled, `${step} × ${event.type} refused but not declared`).to.equal(true);
            expect((error as RpcError).code).to.equal(ErrorCode.Conflict);
            continue;
          }
          if (ignored) expect(next, `${step} × ${event.type} is ignored: the job is unchanged`).to.equal(job);
          // A step entered shows the state the table says it shows.
          const shows = STEPS[next.step].shows;
          if (next.step !== step && shows) expect(next.state, `${step} × ${event.type} → ${next.step}`).to.equal(shows);
        }
      });
    }
  });
});
