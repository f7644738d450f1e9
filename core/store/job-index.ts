import type { PortSpec } from '../../terminal-protocol/gate-methods.js';
import { stepsWhere } from '../jobs/job-steps.js';
import { PARTITION_STATES } from '../partitions/partition-states.js';
import type { PartitionRecord } from '../partitions/partition-record.js';
import type { Dependency } from '../scheduler/dependencies.js';
import type { SpotDirective } from '../scheduler/spot.js';
import type { Directives } from '../jobs/job-script.js';
import type { JobRecord, JobStep } from './job-record.js';

/** The scheduler's view of a queued job: every directive it decides on, passed through as the job asked. */
export interface QueuedRow {
  id: string;
  owner: string;
  priority: number;
  seq: number;
  nodes: number;
  remote?: string;
  flavor?: string;
  cloudImage: string | null;
  ports: PortSpec[];
  account: string | null;
  durationSec: number;
  array: { id: string; index: number; maxRunning: number | null } | null;
  depends: Dependency[];
  spot?: SpotDirective | false;
  /** Times queued again (preemptions): a spot job with fallback runs on-demand after limits.maxPreemptions. */
  attempts: number;
  /** The pending code stored last (written only when it changes). */
  reason: string | null;
  stateDetails: string;
}

/** The scheduler's view of a job past the queue that holds (or is being given) nodes. */
export interface HoldingRow {
  id: string;
  seq: number;
  owner: string;
  account: string | null;
  remote: string | null;
  nodes: number;
  durationSec: number;
  runStartedMs: number | null;
  arrayId: string | null;
  step: JobStep;
}

/** A job waiting for its inputs: counted against its owner's and account's queued-jobs limits. */
interface AwaitingRow {
  seq: number;
  owner: string;
  account: string | null;
}

/** Jobs in the queue (waiting for inputs, or for the scheduler) per user and per account: admission's count. */
export interface QueuedCounts {
  byUser: ReadonlyMap<string, number>;
  byAccount: ReadonlyMap<string, number>;
}

/**
 * What the index reads of a job: a whole record as committed, or the columns a starting store reads for it (the
 * directives whole, parsed from their JSON, so that every directive the scheduler decides on comes through).
 */
export type IndexedJob = Pick<
  JobRecord,
  'id' | 'owner' | 'priority' | 'step' | 'stateDetails' | 'reason' | 'account' | 'arrayId' | 'arrayIndex' | 'arrayCap' | 'depends' | 'attempts' | 'remote' | 'runStartedMs'
> & { directives: Directives };

const HOLDING: ReadonlySet<JobStep> = new Set(stepsWhere('holdsPartition'));
// Shared by every job that declares none: 100,000 queued jobs need not hold 200,000 empty arrays.
const NO_PORTS: PortSpec[] = [];
const NO_DEPENDENCIES: Dependency[] = [];

/** What the scheduler sees of a job in the queue step. Pure. */
export function queuedRowOf(job: IndexedJob, seq: number): QueuedRow {
  const d = job.directives;
  return {
    id: job.id,
    owner: job.owner,
    priority: job.priority,
    seq,
    nodes: d.nodes,
    remote: d.remote,
    flavor: d.flavor,
    cloudImage: d.cloudImage ?? null,
    ports: d.ports.length ? d.ports : NO_PORTS,
    account: job.account,
    durationSec: d.durationSec ?? 0,
    array: job.arrayId ? { id: job.arrayId, index: job.arrayIndex ?? 0, maxRunning: job.arrayCap } : null,
    depends: job.depends.length ? job.depends : NO_DEPENDENCIES,
    spot: d.spot,
    attempts: job.attempts,
    reason: job.reason,
    stateDetails: job.stateDetails,
  };
}

/** What the scheduler sees of a job that holds (or is being given) a partition. Pure. */
export function holdingRowOf(job: IndexedJob, seq: number): HoldingRow {
  return {
    id: job.id,
    seq,
    owner: job.owner,
    account: job.account,
    remote: job.remote,
    nodes: job.directives.nodes,
    durationSec: job.directives.durationSec ?? 0,
    runStartedMs: job.runStartedMs,
    arrayId: job.arrayId,
    step: job.step,
  };
}

const add = (counts: Map<string, number>, key: string, by: number): void => {
  const n = (counts.get(key) ?? 0) + by;
  if (n) counts.set(key, n);
  else counts.delete(key);
};

/**
 * The jobs and partitions the scheduler and admission decide on, in memory (as Nomad's state store feeds its
 * schedulers): the queue, the jobs holding nodes, the queued-jobs counts per user and account, the partitions
 * not deleted and the nodes they hold per remote. The store applies each write here once it is committed (never
 * before: what is seen here is on disk), and rebuilds it from the database when it opens. No I/O: a done job
 * coming back (a requeue) is given its submission order by the store.
 */
export class JobIndex {
  private readonly queue = new Map<string, QueuedRow>();
  private readonly holds = new Map<string, HoldingRow>();
  private readonly awaiting = new Map<string, AwaitingRow>();
  private readonly byUser = new Map<string, number>();
  private readonly byAccount = new Map<string, number>();
  private readonly live = new Map<string, PartitionRecord>();
  private readonly held = new Map<string, number>();
  /** Bumped by every change the scheduler would see. */
  private changes = 0;

  /** @param seqOf the submission order of a job not in the index (a done job requeued) */
  constructor(private readonly seqOf: (id: string) => number) {}

  /** Apply a job's committed record; `seq` when known (an insert's), else the index's or the store's. */
  job(job: IndexedJob, seq?: number): void {
    const order = seq ?? this.queue.get(job.id)?.seq ?? this.holds.get(job.id)?.seq ?? this.awaiting.get(job.id)?.seq;
    this.forget(job.id);
    if (job.step === 'done') return;
    const s = order ?? this.seqOf(job.id);
    if (job.step === 'queue') this.queue.set(job.id, queuedRowOf(job, s));
    else if (job.step === 'inputs') this.awaiting.set(job.id, { seq: s, owner: job.owner, account: job.account });
    else if (HOLDING.has(job.step)) this.holds.set(job.id, holdingRowOf(job, s));
    if (job.step === 'queue' || job.step === 'inputs') this.count(job.owner, job.account, 1);
    this.changes++;
  }

  /** Apply a partition's committed record. */
  partition(partition: PartitionRecord): void {
    const before = this.live.get(partition.name);
    if (before && PARTITION_STATES[before.state].holdsNodes) add(this.held, before.remote, -before.nodeCount);
    if (partition.state === 'deleted') this.live.delete(partition.name);
    else this.live.set(partition.name, partition);
    if (partition.state !== 'deleted' && PARTITION_STATES[partition.state].holdsNodes) add(this.held, partition.remote, partition.nodeCount);
    this.changes++;
  }

  /** The queued jobs (step queue), in no particular order: the scheduler orders them. */
  queued(): QueuedRow[] {
    return [...this.queue.values()];
  }

  get queuedSize(): number {
    return this.queue.size;
  }

  /** A queued job's row, if it is queued. */
  queuedJob(id: string): QueuedRow | undefined {
    return this.queue.get(id);
  }

  holding(): HoldingRow[] {
    return [...this.holds.values()];
  }

  queuedCounts(): QueuedCounts {
    return { byUser: this.byUser, byAccount: this.byAccount };
  }

  /** Partitions not deleted, in the order they were first recorded. */
  partitions(): PartitionRecord[] {
    return [...this.live.values()];
  }

  /** Nodes held per remote by partitions not deleted (idle ones included). */
  nodesHeld(): ReadonlyMap<string, number> {
    return this.held;
  }

  /** A number that changes whenever anything here does (a pass over an unchanged index decides nothing new). */
  get version(): number {
    return this.changes;
  }

  /** Jobs not done that the index knows of. */
  get activeSize(): number {
    return this.queue.size + this.holds.size + this.awaiting.size;
  }

  private forget(id: string): void {
    const queued = this.queue.get(id) ?? this.awaiting.get(id);
    if (queued) this.count(queued.owner, queued.account, -1);
    this.queue.delete(id);
    this.awaiting.delete(id);
    this.holds.delete(id);
  }

  private count(owner: string, account: string | null, by: number): void {
    add(this.byUser, owner, by);
    if (account) add(this.byAccount, account, by);
  }
}
