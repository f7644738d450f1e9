import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { JobState } from '../../terminal-protocol/job.js';
import { notYetRun, type JobRecord, type JobStep, type Outcome, type Runtime } from '../store/job-record.js';

/** Everything that can happen to a job. Produced by terminals, the scheduler, the step effects and timers. */
export type JobEvent =
  | { type: 'inputs-committed' }
  /** The job's inputs did not all arrive in time. */
  | { type: 'inputs-expired'; reason: string }
  /** The scheduler placed the job on a partition (reserved for it, or asked for it): idempotent. */
  | { type: 'placed'; remote: string; flavor: string; partition: string }
  /** The scheduler cannot ever run the job as asked; `code` names why when there is a code for it (DependencyNeverSatisfied). */
  | { type: 'unschedulable'; reason: string; code?: string }
  /** The job's partition is up and the job holds it. */
  | { type: 'partition-up'; partitionId: string | null; nodeNames: string[]; nodeIps: string[] }
  | { type: 'connected'; runtime: Runtime }
  | { type: 'staged-in' }
  | { type: 'started' }
  | { type: 'exited'; exitcode: number | null; signal: number | null }
  | { type: 'staged-out' }
  /** The job gave its partition back (to be reused, or deleted): it takes its outcome. */
  | { type: 'released' }
  | { type: 'step-failed'; reason: string }
  /** What the job says it is doing; `reason`, when given, replaces its reason code (a queued job's pending code). */
  | { type: 'progress'; details: string; reason?: string | null }
  | { type: 'cancel' }
  | { type: 'time-limit' }
  /** Its owner's or account's budget is spent past the hard limit: the job is stopped. */
  | { type: 'budget-stop'; details: string }
  /** Queue the job again; `details`: why, when it is not the user's asking (a spot node taken back: Preempted). */
  | { type: 'requeue'; details?: string };

export type JobEventType = JobEvent['type'];
type EventOf<T extends JobEventType> = Extract<JobEvent, { type: T }>;
type Handler<T extends JobEventType> = (job: JobRecord, event: EventOf<T>, at: string, now: Date) => JobRecord;

/** One step of the job's lifecycle: what it shows, what it holds, the events it takes and those it ignores. */
export interface StepSpec {
  /** The state a job shows on entering the step (null: the step sets it, or keeps the one it had). */
  shows: JobState | null;
  /** The job holds (or is about to hold) a partition: its release is owed. */
  holdsPartition: boolean;
  /** The job's declared ports are forwarded. */
  hasForwards: boolean;
  /** The job is not over. */
  active: boolean;
  /** A starting core spawns the job's actor to perform the step again (others wait for an event). */
  resumable: boolean;
  /** The job waits on its remote's gate in this step (a gate's unavailability is its wait reason). */
  waitsOnGate: boolean;
  on: { [T in JobEventType]?: Handler<T> };
  /** Events that are late echoes or make no sense here, and change nothing. */
  ignores: readonly JobEventType[];
}

const fmtDuration = (s: number): string =>
  [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60].map((n) => String(n).padStart(2, '0')).join(':');

const conflict = (message: string): RpcError => new RpcError(ErrorCode.Conflict, message);

/** A fresh queued job: what `requeue` and a release with outcome Q both lead to. */
const requeued = (job: JobRecord, details: string): JobRecord => ({ ...job, step: 'queue', state: 'Q', stateDetails: details, ...notYetRun(), attempts: job.attempts + 1 });

/** Leave for teardown: the outcome is decided now and applied once the partition is released. */
const ending = (job: JobRecord, outcome: Outcome): JobRecord => ({
  ...job,
  step: 'teardown',
  outcome,
  stateDetails: `${outcome.details}: releasing the partition`,
});

const ended = (job: JobRecord, state: Outcome['state'], details: string, at: string, reason: string | null = null): JobRecord => ({
  ...job,
  step: 'done',
  state,
  stateDetails: details,
  endTime: at,
  reason,
});

const progress: Handler<'progress'> = (job, event) => ({ ...job, stateDetails: event.details, ...(event.reason !== undefined ? { reason: event.reason } : {}) });

/** The reason code of a job ended by its time limit (Slurm's TIMEOUT), apart from failures of the job or of the cloud. */
export const TIME_LIMIT = 'TimeLimit';
/** The reason code of a job held or stopped because its owner's or account's budget is spent. */
export const BUDGET = 'Budget';

/** What a job that has not started does with failures, cancels and progress: it ends at once (no partition). */
const endsAtOnce = {
  'step-failed': ((job, event, at) => ended(job, 'E', event.reason, at)) as Handler<'step-failed'>,
  cancel: ((job, _e, at) => ended(job, 'C', 'canceled before it started', at)) as Handler<'cancel'>,
  'budget-stop': ((job, event, at) => ended(job, 'E', event.details, at, BUDGET)) as Handler<'budget-stop'>,
  progress,
};

/** What every step holding a partition does with failures, cancels and requeues: leave through teardown. */
const leavesThroughTeardown = {
  'step-failed': ((job, event) => ending(job, { state: 'E', details: event.reason })) as Handler<'step-failed'>,
  cancel: ((job) => ending(job, { state: 'C', details: 'canceled' })) as Handler<'cancel'>,
  requeue: ((job, event) => ending(job, { state: 'Q', details: event.details ?? 'requeued' })) as Handler<'requeue'>,
  'budget-stop': ((job, event) => ending(job, { state: 'E', details: event.details, reason: BUDGET })) as Handler<'budget-stop'>,
  progress,
};

/** Events that belong to other steps: late echoes of effects, and scheduler decisions already applied. */
const others = (...taken: JobEventType[]): JobEventType[] =>
  (
    [
      'inputs-committed', 'inputs-expired', 'placed', 'unschedulable', 'partition-up', 'connected', 'staged-in', 'started', 'exited',
      'staged-out', 'released', 'step-failed', 'progress', 'cancel', 'time-limit', 'budget-stop', 'requeue',
    ] as JobEventType[]
  ).filter((t) => !taken.includes(t));

const holding = { holdsPartition: true, active: true, resumable: true };

/**
 * The job's lifecycle, declared once, state first (gen_statem style). Every other list of steps (the store's
 * filters, the reaper's, the forwards', the resume filter) is derived from this table, and a test walks every
 * (step, event) pair: each is a transition here, or explicitly ignored.
 */
export const STEPS: { readonly [S in JobStep]: StepSpec } = {
  inputs: {
    shows: 'Q',
    holdsPartition: false,
    hasForwards: false,
    active: true,
    resumable: false,
    waitsOnGate: false,
    on: {
      'inputs-committed': (job) => ({ ...job, step: 'queue', state: 'Q', stateDetails: 'queued' }),
      'inputs-expired': (job, event, at) => ended(job, 'C', event.reason, at),
      requeue: (job) => {
        throw conflict(`job ${job.id} is still waiting for its input files`);
      },
      ...endsAtOnce,
    },
    ignores: others('inputs-committed', 'inputs-expired', 'step-failed', 'cancel', 'budget-stop', 'requeue', 'progress'),
  },
  queue: {
    shows: 'Q',
    holdsPartition: false,
    hasForwards: false,
    active: true,
    resumable: false,
    waitsOnGate: false,
    on: {
      placed: (job, event) => ({
        ...job,
        step: 'partition',
        state: 'W',
        stateDetails: `initiate a new partition: ${event.partition}`,
        remote: event.remote,
        flavor: event.flavor,
        partitionName: event.partition,
        reason: null,
      }),
      unschedulable: (job, event, at) => ended(job, 'E', event.reason, at, event.code ?? null),
      requeue: (job) => job,
      ...endsAtOnce,
    },
    ignores: others('placed', 'unschedulable', 'step-failed', 'cancel', 'budget-stop', 'requeue', 'progress'),
  },
  partition: {
    shows: 'W',
    ...holding,
    hasForwards: false,
    waitsOnGate: true,
    on: {
      'partition-up': (job, event) => ({
        ...job,
        step: 'connect',
        stateDetails: 'partition spawned: waiting for ssh provisioning port',
        partitionId: event.partitionId,
        nodeNames: event.nodeNames,
        nodeIps: event.nodeIps,
      }),
      ...leavesThroughTeardown,
    },
    ignores: others('partition-up', 'step-failed', 'cancel', 'budget-stop', 'requeue', 'progress'),
  },
  connect: {
    shows: 'W',
    ...holding,
    hasForwards: false,
    waitsOnGate: false,
    on: {
      connected: (job, event) => ({ ...job, step: 'stage-in', state: 'T', stateDetails: 'sky port connected: uploading data', runtime: event.runtime }),
      ...leavesThroughTeardown,
    },
    ignores: others('connected', 'step-failed', 'cancel', 'budget-stop', 'requeue', 'progress'),
  },
  'stage-in': {
    shows: 'T',
    ...holding,
    hasForwards: true,
    waitsOnGate: false,
    on: {
      'staged-in': (job) => ({ ...job, step: 'run', state: 'R', stateDetails: 'data uploaded: starting the job' }),
      ...leavesThroughTeardown,
    },
    ignores: others('staged-in', 'step-failed', 'cancel', 'budget-stop', 'requeue', 'progress'),
  },
  run: {
    shows: 'R',
    ...holding,
    hasForwards: true,
    waitsOnGate: false,
    on: {
      started: (job, _e, at, now) => (job.runStartedMs !== null ? job : { ...job, stateDetails: 'running', startTime: at, runStartedMs: now.getTime() }),
      exited: (job, event) => {
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
      },
      'time-limit': (job) =>
        ending(job, { state: 'E', details: `${TIME_LIMIT}: time limit exceeded (${fmtDuration(job.directives.durationSec)})`, reason: TIME_LIMIT }),
      ...leavesThroughTeardown,
    },
    ignores: others('started', 'exited', 'time-limit', 'step-failed', 'cancel', 'budget-stop', 'requeue', 'progress'),
  },
  'stage-out': {
    shows: 'T',
    ...holding,
    hasForwards: false,
    waitsOnGate: false,
    on: {
      'staged-out': (job) => ending(job, job.outcome ?? { state: 'F', details: 'finished' }),
      ...leavesThroughTeardown,
    },
    ignores: others('staged-out', 'step-failed', 'cancel', 'budget-stop', 'requeue', 'progress'),
  },
  teardown: {
    shows: null,
    ...holding,
    hasForwards: false,
    waitsOnGate: true,
    on: {
      released: (job, _e, at) => {
        const outcome = job.outcome ?? { state: 'E', details: 'ended without an outcome' };
        return outcome.state === 'Q' ? requeued(job, outcome.details) : ended(job, outcome.state, outcome.details, at, outcome.reason ?? null);
      },
      // A requeue asked before the release completes can still be canceled; anything else ends as decided.
      cancel: (job) => (job.outcome?.state === 'Q' ? { ...job, outcome: { state: 'C', details: 'canceled' } } : job),
      requeue: (job, event) => ({ ...job, outcome: { state: 'Q', details: event.details ?? 'requeued' } }),
      progress,
    },
    // The release retries until it succeeds: a failure changes nothing.
    ignores: others('released', 'cancel', 'requeue', 'progress'),
  },
  done: {
    shows: null,
    holdsPartition: false,
    hasForwards: false,
    active: false,
    resumable: false,
    waitsOnGate: false,
    on: {
      cancel: (job) => {
        throw conflict(`job ${job.id} already ended (${job.state})`);
      },
      requeue: (job, event) => requeued(job, event.details ?? 'requeued'),
    },
    ignores: others('cancel', 'requeue'),
  },
};

export const JOB_STEPS = Object.keys(STEPS) as JobStep[];

/** The steps with a property, from the table. */
export const stepsWhere = (property: 'holdsPartition' | 'hasForwards' | 'active' | 'resumable' | 'waitsOnGate'): JobStep[] =>
  JOB_STEPS.filter((s) => STEPS[s][property]);

/**
 * The job's lifecycle as a pure function: (job, event, now) → next job. The job actor persists the result and
 * then performs the effect of its step; a restarted core performs the recorded step again. An event the step
 * ignores returns the job unchanged; one refused (a user's cancel of an ended job) throws Conflict.
 */
export function transition(job: JobRecord, event: JobEvent, now: Date): JobRecord {
  const handler = STEPS[job.step].on[event.type] as Handler<typeof event.type> | undefined;
  return handler ? handler(job, event as never, now.toISOString(), now) : job;
}

/** The time-limit deadline of a running job (epoch ms), or null. */
export const deadlineOf = (job: JobRecord): number | null =>
  job.step === 'run' && job.runStartedMs !== null && job.directives.durationSec > 0
    ? job.runStartedMs + job.directives.durationSec * 1000
    : null;
