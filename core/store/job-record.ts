import { randomUUID } from 'node:crypto';
import type { Job, JobState } from '../../terminal-protocol/job.js';
import type { InputFile } from '../../terminal-protocol/terminal-methods.js';
import type { Directives } from '../jobs/job-script.js';
import type { Dependency } from '../scheduler/dependencies.js';

/**
 * The step a job is at (DESIGN.md §7). Each is recorded before it is taken, so that a restarted core
 * resumes a job by performing its recorded step again; every step is idempotent.
 */
export type JobStep =
  | 'inputs' // waiting for the terminal to upload declared inputs
  | 'queue' // waiting for the scheduler
  | 'partition' // asking the gate for a partition and waiting until it is up
  | 'connect' // SSH to the nodes, verify host keys, detect the runtime
  | 'stage-in'
  | 'run'
  | 'stage-out'
  | 'teardown' // delete the partition; then the job takes `outcome`
  | 'done';

/** How a job ends, decided before teardown and applied after it. */
export interface Outcome {
  state: Extract<JobState, 'F' | 'E' | 'C' | 'Q'>;
  details: string;
  /** Why, as a code (`TimeLimit`, `Budget`), when the end has one. */
  reason?: string;
}

export type Runtime = 'podman' | 'docker' | 'process';

export interface JobRecord {
  id: string;
  owner: string;
  name: string;
  state: JobState;
  stateDetails: string;
  step: JobStep;
  script: string;
  directives: Directives;
  inputs: InputFile[];
  priority: number;
  submitTime: string;
  startTime: string | null;
  endTime: string | null;
  exitcode: number | null;
  signal: number | null;
  remote: string | null;
  flavor: string | null;
  nodeNames: string[];
  nodeIps: string[];
  partitionName: string | null;
  partitionId: string | null;
  runtime: Runtime | null;
  outcome: Outcome | null;
  /** When the job's process started (epoch ms), for the time limit. */
  runStartedMs: number | null;
  /** `#SWM account`: whose usage, limits and budget the job counts against. */
  account: string | null;
  /** The array the job is a task of (`#SWM array`): the array's own id, shared by its tasks; null: not a task. */
  arrayId: string | null;
  /** The task's index in its array (its SWM_ARRAY_TASK_ID). */
  arrayIndex: number | null;
  /** Most tasks of its array running at once (`%K`); null: no cap. */
  arrayCap: number | null;
  /** `#SWM depends`: what must have ended, and how, before the job starts. */
  depends: Dependency[];
  /**
   * Why, as a code: while queued, the scheduler's pending code (`Priority`, `Dependency`, ...), stored when it
   * changes; once ended, the code of the end when it has one (`TimeLimit`, `Budget`, `DependencyNeverSatisfied`).
   */
  reason: string | null;
  /** What the job cost (flavor price × nodes × time it held its partition), in `currency`; null: not known yet. */
  cost: number | null;
  /** Requeues so far: attempt N+1 is running (earlier attempts' logs are kept under attempts/N/). */
  attempts: number;
}

/**
 * A new job's (or array's) id: a random UUID as one flat string. Node builds randomUUID() by concatenating its
 * pieces, a rope that V8 keeps as about twenty string nodes (~490 bytes) for as long as the id lives: in the
 * queue's index, the metrics, every map keyed by job. Copied once through a buffer, it is ~60 bytes.
 */
export const newJobId = (): string => Buffer.from(randomUUID(), 'latin1').toString('latin1');

/** What a job holds before it first runs: a new job starts with it, a requeued one goes back to it. */
export const notYetRun = (): Pick<
  JobRecord,
  | 'startTime' | 'endTime' | 'exitcode' | 'signal' | 'remote' | 'flavor' | 'nodeNames' | 'nodeIps'
  | 'partitionName' | 'partitionId' | 'runtime' | 'outcome' | 'runStartedMs' | 'reason'
> => ({
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
});

/** What a job that is not a task of an array, depends on nothing and has no account holds (a new job's defaults). */
export const ownJob = (): Pick<JobRecord, 'account' | 'arrayId' | 'arrayIndex' | 'arrayCap' | 'depends' | 'cost' | 'attempts'> => ({
  account: null,
  arrayId: null,
  arrayIndex: null,
  arrayCap: null,
  depends: [],
  cost: null,
  attempts: 0,
});

/** What the scheduler says of a queued job right now (not stored: it changes with every pass). */
export interface PendingView {
  code: string;
  reason: string;
  position?: number;
}

/** The wire shape (field names of the original Sky Port REST API). */
export function toWireJob(job: JobRecord, pending?: PendingView | null, currency?: string | null): Job {
  const d = job.directives;
  const request = [
    { name: 'node', count: d.nodes },
    ...(d.gpus ? [{ name: 'gpus', count: d.gpus }] : []),
    ...(d.flavor ? [{ name: 'flavor', count: 1 }] : []),
  ];
  const queuedNow = job.step === 'queue';
  // A queued job says why it waits as the scheduler sees it now; a gate's unavailability is said by the job itself.
  const details = queuedNow && pending && pending.code !== 'GateUnavailable' ? pending.reason : job.stateDetails;
  return {
    id: job.id,
    name: job.name,
    owner: job.owner,
    state: job.state,
    state_details: details,
    submit_time: job.submitTime,
    start_time: job.startTime,
    end_time: job.endTime,
    duration: d.durationSec,
    exitcode: job.exitcode,
    signal: job.signal,
    node_names: job.nodeNames,
    node_ips: job.nodeIps,
    remote_id: job.remote,
    flavor_id: job.flavor,
    request,
    resources: job.remote ? [{ name: 'node', count: d.nodes }] : [],
    comment: d.comment ?? '',
    priority: job.priority,
    ports: d.ports.map((p) => `${p.port}/${p.protocol}/${p.direction}`),
    account: job.account,
    array_id: job.arrayId,
    array_index: job.arrayIndex,
    depends: job.depends.map((c) => `${c.kind}:${c.jobIds.join(':')}`),
    reason: queuedNow && pending ? pending.code : job.reason,
    position: queuedNow ? (pending?.position ?? null) : null,
    cost_amount: job.cost,
    cost_currency: currency ?? null,
    attempts: job.attempts,
  };
}
