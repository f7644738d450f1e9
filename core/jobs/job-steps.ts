import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { notYetRun, type JobRecord, type JobStep, type Outcome, type Runtime } from '../store/job-record.js';

/** Everything that can happen to a job. Produced by terminals, the scheduler, the step effects and timers. */
export type JobEvent =
  | { type: 'inputs-committed' }
  | { type: 'scheduled'; remote: string; flavor: string }
  | { type: 'unschedulable'; reason: string }
  | { type: 'partition-requested'; partitionId: string }
  | { type: 'partition-up'; nodeNames: string[]; nodeIps: string[] }
  /** The partition failed for a passing reason (quota, capacity) and is gone: the job waits, then asks again. */
  | { type: 'partition-retry'; reason: string }
  | { type: 'connected'; runtime: Runtime }
  | { type: 'staged-in' }
  | { type: 'started' }
  | { type: 'exited'; exitcode: number | null; signal: number | null }
  | { type: 'staged-out' }
  | { type: 'torn-down' }
  | { type: 'step-failed'; reason: string }
  | { type: 'progress'; details: string }
  | { type: 'cancel' }
  | { type: 'time-limit' }
  | { type: 'requeue' };

/** Steps during which the job holds (or may hold) a partition. */
const holdsPartition: ReadonlySet<JobStep> = new Set(['partition', 'connect', 'stage-in', 'run', 'stage-out']);

export const partitionNameOf = (jobId: string): string => `job-${jobId}`;

/**
 * Reasons a gate gives a failed partition when waiting may cure it: not enough quota (`Quota: …`) or no
 * capacity for the size right now (`Capacity: …`). Any other failure ends the job.
 */
const PASSING_FAILURES = ['Quota: ', 'Capacity: '];

/** What a partition's failure means for its job: wait and ask again, or fail with the reason. */
export function partitionFailure(error: string | undefined): { retry: boolean; reason: string } {
  const reason = error ?? 'no reason given';
  return { retry: PASSING_FAILURES.some((p) => reason.startsWith(p)), reason };
}

/** How long a job waits after its `attempt`-th (from 0) passing partition failure: 30 s, doubling, at most 10 min. */
export const partitionRetryDelayMs = (attempt: number): number => Math.min(30_000 * 2 ** Math.max(0, attempt), 10 * 60_000);

const fmtDuration = (s: number): string =>
  [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60].map((n) => String(n).padStart(2, '0')).join(':');

const conflict = (message: string): RpcError => new RpcError(ErrorCode.Conflict, message);

/** A fresh queued job: what `requeue` and a finished teardown with outcome Q both lead to. */
const requeued = (job: JobRecord, details: string): JobRecord => ({
  ...job,
  step: 'queue',
  state: 'Q',
  stateDetails: details,
  ...notYetRun(),
});

const ending = (job: JobRecord, outcome: Outcome): JobRecord => ({
  ...job,
  step: 'teardown',
  outcome,
  stateDetails: `${outcome.details}: deleting partition`,
});

/**
 * The job's lifecycle as a pure function: (job, event, now) → next job. The job actor persists the result
 * and then performs the effect of its step; a restarted core performs the recorded step again.
 * Events that make no sense in the current step are ignored (returned unchanged) when they are late echoes of
 * effects, and refused with Conflict when they come from a user.
 */
export function transition(job: JobRecord, event: JobEvent, now: Date): JobRecord {
  const at = now.toISOString();
  const { step } = job;
  switch (event.type) {
    case 'inputs-committed':
      if (step !== 'inputs') return job;
      return { ...job, step: 'queue', state: 'Q', stateDetails: 'queued' };

    case 'scheduled':
      if (step !== 'queue') return job;
      return {
        ...job,
        step: 'partition',
        state: 'W',
        stateDetails: 'initiate a new partition',
        remote: event.remote,
        flavor: event.flavor,
        partitionName: partitionNameOf(job.id),
      };

    case 'unschedulable':
      if (step !== 'queue') return job;
      return { ...job, step: 'done', state: 'E', stateDetails: event.reason, endTime: at };

    case 'partition-requested':
      if (step !== 'partition') return job;
      return { ...job, partitionId: event.partitionId, stateDetails: 'partition has not been created yet' };

    case 'partition-up':
      if (step !== 'partition') return job;
      return {
        ...job,
        step: 'connect',
        stateDetails: 'partition spawned: waiting for ssh provisioning port',
        nodeNames: event.nodeNames,
        nodeIps: event.nodeIps,
      };

    case 'partition-retry':
      if (step !== 'partition') return job;
      return { ...job, partitionId: null, stateDetails: event.reason };

    case 'connected':
      if (step !== 'connect') return job;
      return { ...job, step: 'stage-in', state: 'T', stateDetails: 'sky port connected: uploading data', runtime: event.runtime };

    case 'staged-in':
      if (step !== 'stage-in') return job;
      return { ...job, step: 'run', state: 'R', stateDetails: 'data uploaded: starting the job' };

    case 'started':
      if (step !== 'run' || job.runStartedMs !== null) return job;
      return { ...job, stateDetails: 'running', startTime: at, runStartedMs: now.getTime() };

    case 'exited': {
      if (step !== 'run') return job;
      const ok = event.exitcode === 0 && event.signal === null;
      const details = event.signal !== null ? `killed by signal ${event.signal}` : `exit code ${event.exitcode}`;
      return {
        ...job,
        step: 'stage-out',
        state: 'T',
        stateDetails: `job ended with ${details}: downloading results`,
        exitcode: event.exitcode,
        signal: event.signal,
        outcome: ok ? { state: 'F', details: 'finished' } : { state: 'E', details: `job ended with ${details}` },
      };
    }

    case 'staged-out':
      if (step !== 'stage-out') return job;
      return ending(job, job.outcome ?? { state: 'F', details: 'finished' });

    case 'torn-down': {
      if (step !== 'teardown') return job;
      const outcome = job.outcome ?? { state: 'E', details: 'ended without an outcome' };
      if (outcome.state === 'Q') return requeued(job, 'requeued');
      return { ...job, step: 'done', state: outcome.state, stateDetails: outcome.details, endTime: at };
    }

    case 'step-failed':
      if (holdsPartition.has(step)) return ending(job, { state: 'E', details: event.reason });
      if (step === 'queue' || step === 'inputs') return { ...job, step: 'done', state: 'E', stateDetails: event.reason, endTime: at };
      return job; // teardown keeps retrying; done stays done

    case 'progress':
      if (step === 'done') return job;
      return { ...job, stateDetails: event.details };

    case 'cancel':
      if (step === 'done') throw conflict(`job ${job.id} already ended (${job.state})`);
      if (step === 'inputs' || step === 'queue')
        return { ...job, step: 'done', state: 'C', stateDetails: 'canceled before it started', endTime: at };
      if (step === 'teardown') return job.outcome?.state === 'Q' ? { ...job, outcome: { state: 'C', details: 'canceled' } } : job;
      return ending(job, { state: 'C', details: 'canceled' });

    case 'time-limit':
      if (step !== 'run') return job;
      return ending(job, { state: 'E', details: `time limit exceeded (${fmtDuration(job.directives.durationSec)})` });

    case 'requeue':
      if (step === 'inputs') throw conflict(`job ${job.id} is still waiting for its input files`);
      if (step === 'queue') return job;
      if (step === 'done') return requeued(job, 'requeued');
      if (step === 'teardown') return { ...job, outcome: { state: 'Q', details: 'requeued' } };
      return ending(job, { state: 'Q', details: 'requeued' });
  }
}

/** The time-limit deadline of a running job (epoch ms), or null. */
export const deadlineOf = (job: JobRecord): number | null =>
  job.step === 'run' && job.runStartedMs !== null && job.directives.durationSec > 0
    ? job.runStartedMs + job.directives.durationSec * 1000
    : null;
