import type { PartitionNode } from '../../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { PartitionRecord, PartitionState } from './partition-record.js';

/** Everything that can happen to a partition: from the scheduler, its job, its effects, the gate, an admin. */
export type PartitionEvent =
  /** The gate took the create request. */
  | { type: 'asked'; gateId: string }
  | { type: 'up'; gateId: string; nodes: PartitionNode[] }
  /** Creation failed; `retryAtMs` when waiting may cure it (quota, capacity) and a job still wants it. */
  | { type: 'create-failed'; reason: string; retryAtMs: number | null }
  /** The failed partition is gone at the gate; the next attempt is due at `retryAtMs` (the wait starts now). */
  | { type: 'cleared'; retryAtMs: number }
  /** The wait after a passing failure is over: ask again. */
  | { type: 'retry' }
  /** The scheduler gives an idle partition to a job. */
  | { type: 'reserve'; jobId: string; owner: string }
  /** The job it is reserved for starts using it. */
  | { type: 'acquire'; jobId: string; containerImages?: string[] }
  /** The job is done with it: idle for `keepSec`, or deleted at once (0, or not fit for reuse). */
  | { type: 'release'; jobId: string; keepSec: number; reusable: boolean }
  | { type: 'idle-timeout' }
  | { type: 'delete'; reason: string }
  /** The gate says it is gone. */
  | { type: 'gone' }
  /** The gate lost it (deleted or failed behind our back) while it was up. */
  | { type: 'lost'; reason: string }
  | { type: 'step-failed'; reason: string };

export type PartitionEventType = PartitionEvent['type'];
type EventOf<T extends PartitionEventType> = Extract<PartitionEvent, { type: T }>;
type Handler<T extends PartitionEventType> = (p: PartitionRecord, event: EventOf<T>, now: number) => PartitionRecord;

export interface PartitionStateSpec {
  /** Its nodes count against the remote's quota. */
  holdsNodes: boolean;
  on: { [T in PartitionEventType]?: Handler<T> };
  ignores: readonly PartitionEventType[];
}

const conflict = (message: string): RpcError => new RpcError(ErrorCode.Conflict, message);

const deleting = (p: PartitionRecord, reason: string): PartitionRecord => ({ ...p, state: 'deleting', reason, retryAtMs: null });

/** A job that is not the one the partition serves changes nothing (a late or repeated message). */
const forItsJob =
  <T extends 'acquire' | 'release'>(handler: Handler<T>): Handler<T> =>
  (p, event, now) =>
    p.jobId === (event as { jobId: string }).jobId ? handler(p, event, now) : p;

const release: Handler<'release'> = forItsJob((p, event, now) =>
  event.keepSec > 0 && event.reusable
    ? { ...p, state: 'idle', jobId: null, idleSinceMs: now, keepSec: event.keepSec, jobsRun: p.jobsRun + (p.state === 'busy' ? 1 : 0) }
    : deleting({ ...p, jobId: null, jobsRun: p.jobsRun + (p.state === 'busy' ? 1 : 0) }, event.reusable ? 'released with no keep-alive' : 'not fit for reuse'),
);

/** A job giving back a partition that never came up: nobody else wants it. */
const abandon: Handler<'release'> = forItsJob((p) => deleting({ ...p, jobId: null }, 'its job no longer needs it'));

const refuseReserve: Handler<'reserve'> = (p, event) => {
  if (p.jobId === event.jobId) return p;
  throw conflict(`partition ${p.name} is ${p.state}${p.jobId ? ` (job ${p.jobId})` : ''}: it cannot be reserved`);
};

const refuseBusyDelete: Handler<'delete'> = (p) => {
  throw conflict(`partition ${p.name} runs job ${p.jobId}: cancel the job first`);
};

const all: PartitionEventType[] = [
  'asked', 'up', 'create-failed', 'cleared', 'retry', 'reserve', 'acquire', 'release', 'idle-timeout', 'delete', 'gone', 'lost', 'step-failed',
];
const others = (...taken: PartitionEventType[]): PartitionEventType[] => all.filter((t) => !taken.includes(t));

const createFailed: Handler<'create-failed'> = (p, event) => ({ ...p, state: 'failed', reason: event.reason, retryAtMs: p.jobId ? event.retryAtMs : null });
const stepFailed: Handler<'step-failed'> = (p, event) => ({ ...p, state: 'failed', reason: event.reason, retryAtMs: null });
const lost: Handler<'lost'> = (p, event) => deleting(p, event.reason);

/**
 * A partition's lifecycle, declared once, state first; the partition actor persists each change before it
 * runs the new state's effect (partition-effects.ts). A test walks every (state, event) pair.
 */
export const PARTITION_STATES: { readonly [S in PartitionState]: PartitionStateSpec } = {
  requested: {
    holdsNodes: true,
    on: {
      asked: (p, event) => ({ ...p, state: 'creating', gateId: event.gateId }),
      'create-failed': createFailed,
      'step-failed': stepFailed,
      reserve: refuseReserve,
      release: abandon,
      delete: (p, event) => deleting(p, event.reason),
    },
    ignores: others('asked', 'create-failed', 'step-failed', 'reserve', 'release', 'delete'),
  },
  creating: {
    holdsNodes: true,
    on: {
      up: (p, event, now) => ({
        ...p,
        state: p.jobId ? 'ready' : 'idle',
        gateId: event.gateId,
        nodes: event.nodes,
        upMs: now,
        reason: null,
        ...(p.jobId ? {} : { idleSinceMs: now }),
      }),
      'create-failed': createFailed,
      'step-failed': stepFailed,
      reserve: refuseReserve,
      release: abandon,
      delete: (p, event) => deleting(p, event.reason),
    },
    ignores: others('up', 'create-failed', 'step-failed', 'reserve', 'release', 'delete'),
  },
  failed: {
    holdsNodes: true,
    on: {
      // Deleted at the gate: wait, then ask again (a passing failure), or done with (any other).
      cleared: (p, event) => (p.retryAtMs !== null && p.jobId ? { ...p, state: 'retrying', gateId: null, retryAtMs: event.retryAtMs } : p),
      gone: (p, _e, now) => ({ ...p, state: 'deleted', deletedMs: now }),
      reserve: refuseReserve,
      // Its job gave up on it: no more attempts, only the deletion.
      release: abandon,
      delete: (p, event) => deleting(p, event.reason),
    },
    ignores: others('cleared', 'gone', 'reserve', 'release', 'delete'),
  },
  retrying: {
    // Nothing at the gate, but the nodes are the job's as soon as the wait is over.
    holdsNodes: true,
    on: {
      retry: (p) => ({ ...p, state: 'requested', attempts: p.attempts + 1, retryAtMs: null }),
      reserve: refuseReserve,
      release: abandon,
      delete: (p, event) => deleting(p, event.reason),
    },
    ignores: others('retry', 'reserve', 'release', 'delete'),
  },
  ready: {
    holdsNodes: true,
    on: {
      acquire: forItsJob((p, event) => ({ ...p, state: 'busy', containerImages: [...new Set([...p.containerImages, ...(event.containerImages ?? [])])] })),
      reserve: refuseReserve,
      release,
      delete: (p, event) => deleting({ ...p, jobId: null }, event.reason),
      lost,
    },
    ignores: others('acquire', 'reserve', 'release', 'delete', 'lost'),
  },
  busy: {
    holdsNodes: true,
    on: {
      acquire: (p) => p,
      reserve: refuseReserve,
      release,
      delete: refuseBusyDelete,
      lost,
    },
    ignores: others('acquire', 'reserve', 'release', 'delete', 'lost'),
  },
  idle: {
    holdsNodes: true,
    on: {
      reserve: (p, event) => ({ ...p, state: 'ready', jobId: event.jobId, owner: p.owner ?? event.owner, idleSinceMs: null }),
      'idle-timeout': (p) => deleting(p, 'idle timeout'),
      delete: (p, event) => deleting(p, event.reason),
      lost,
    },
    ignores: others('reserve', 'idle-timeout', 'delete', 'lost'),
  },
  deleting: {
    holdsNodes: true,
    on: {
      gone: (p, _e, now) => ({ ...p, state: 'deleted', deletedMs: now }),
      reserve: refuseReserve,
    },
    ignores: others('gone', 'reserve'),
  },
  deleted: {
    holdsNodes: false,
    on: {
      reserve: (p) => {
        throw conflict(`partition ${p.name} is deleted`);
      },
      delete: (p) => p,
    },
    ignores: others('reserve', 'delete'),
  },
};

export const PARTITION_STATE_NAMES = Object.keys(PARTITION_STATES) as PartitionState[];
export const PARTITION_EVENT_TYPES = all;

export function partitionTransition(p: PartitionRecord, event: PartitionEvent, now: Date): PartitionRecord {
  const handler = PARTITION_STATES[p.state].on[event.type] as Handler<typeof event.type> | undefined;
  return handler ? handler(p, event as never, now.getTime()) : p;
}

/** When an idle partition's keep-alive ends (epoch ms), or null. */
export const idleDeadlineOf = (p: PartitionRecord): number | null =>
  p.state === 'idle' && p.idleSinceMs !== null && !isPoolSpare(p) ? p.idleSinceMs + p.keepSec * 1000 : null;

/** A warm pool's partition no job has used yet: it waits for one (the pool's size bounds them), with no timeout. */
export const isPoolSpare = (p: PartitionRecord): boolean => p.pool && p.owner === null;

/**
 * Reasons a gate gives a failed partition when waiting may cure it: not enough quota (`Quota: …`) or no
 * capacity for the size right now (`Capacity: …`). Any other failure ends the job.
 */
const PASSING_FAILURES = ['Quota: ', 'Capacity: '];

/** What a partition's failure means: wait and ask again, or fail with the reason. */
export function partitionFailure(error: string | undefined): { retry: boolean; reason: string } {
  const reason = error ?? 'no reason given';
  return { retry: PASSING_FAILURES.some((p) => reason.startsWith(p)), reason };
}

/** How long to wait after the `attempt`-th (from 0) passing failure: 30 s, doubling, at most 10 min. */
export const partitionRetryDelayMs = (attempt: number): number => Math.min(30_000 * 2 ** Math.max(0, attempt), 10 * 60_000);
