import type { PartitionShape } from '../partitions/partition-record.js';
import type { PortSpec } from '../../terminal-protocol/gate-methods.js';
import type { Budgets } from './budgets.js';
import type { Dependency, DependencyOutcome } from './dependencies.js';
import type { RecentUsage } from './fair-share.js';
import type { OrderWeights } from './job-order.js';
import type { PendingCode } from './pending-reasons.js';
import type { SchedulingLimits } from './quotas.js';
import type { SpotDirective } from './spot.js';

/**
 * What the scheduler is given (a snapshot) and what it decides (a plan): plain data, no behaviour. Every field
 * added after the first version is optional, and its absence means "no such policy": no fair share, no limits,
 * no dependencies, no budgets, no backfill.
 */

/** A job of one array (`#SWM array 0-19%4`): each task is a queued job of its own. */
export interface ArrayTask {
  /** The array's job id, shared by its tasks. */
  id: string;
  index: number;
  /** Most tasks of the array running at once; null: no cap. */
  maxRunning: number | null;
}

export interface QueuedJob {
  id: string;
  priority: number;
  /** Submission order; lower is older. */
  seq: number;
  nodes: number;
  remote?: string;
  flavor?: string;
  /** Who submitted it (a partition is reused only by its owner's jobs, unless the remote shares). */
  owner?: string;
  cloudImage?: string | null;
  ports?: PortSpec[];
  /** `#SWM account`: the group its usage, limits and budget count against; absent/null: none. */
  account?: string | null;
  /** Time limit in seconds; null, absent or 0: none (such a job never backfills). */
  durationSec?: number | null;
  array?: ArrayTask | null;
  /** Every clause must be met before the job may start. */
  depends?: Dependency[];
  /** `#SWM spot`; absent: the gate's default. */
  spot?: SpotDirective | false;
  /** Times it was queued again (preempted): with the spot fallback, on-demand after policy.maxPreemptions. */
  attempts?: number;
}

/**
 * A job past the queue that holds (or is being given) nodes: placed, staging, running, staging out. The
 * scheduler counts them against limits and array caps, and backfill reads when their nodes come back.
 */
export interface RunningJob {
  jobId: string;
  remote: string;
  nodes: number;
  /** When its nodes are expected back (start + time limit); null: unknown (no time limit, not started). */
  endsAtMs: number | null;
  owner?: string;
  account?: string | null;
  /** The array it is a task of, if any. */
  arrayId?: string | null;
}

/** A partition up and idle (or a warm pool's spare), that a job may be placed on. */
export interface IdlePartition extends PartitionShape {
  name: string;
  owner: string | null;
  pool: boolean;
  idleSinceMs: number;
}

export interface WarmPool {
  flavor: string;
  nodes: number;
  cloudImage: string | null;
  /** Spares kept ready. */
  count: number;
}

export interface RemoteCapacity {
  name: string;
  isDefault: boolean;
  maxNodes: number;
  defaultFlavor: string | null;
  /** Flavor names the remote's gate offers, or null while the gate has not told us (gate unreachable). */
  flavors: ReadonlySet<string> | null;
  /** Why the remote's gate cannot take work now (not answering, another spool's), or null/absent when it can. */
  unavailable?: string | null;
  /** Partitions may be reused by jobs of other owners. */
  sharing?: boolean;
  /** Cloud image of jobs that name none. */
  defaultCloudImage?: string | null;
  pool?: WarmPool | null;
  /** Most idle partitions kept at once (the oldest beyond are deleted); null: no limit. */
  maxIdle?: number | null;
}

/** The site's scheduling policy (configuration): each part optional, with the defaults its file states. */
export interface SchedulingPolicy {
  /** How explicit priority and fair share combine (job-order.ts); default DEFAULT_ORDER_WEIGHTS. */
  weights?: Partial<OrderWeights>;
  /** Per-user and per-account limits (quotas.ts); absent: none. */
  limits?: SchedulingLimits;
  /** Start lower jobs in the holes ahead of a reservation (backfill.ts); default true. */
  backfill?: boolean;
  /** Seconds a job holds its nodes beyond its time limit (partition setup, stage-in and out); default 0. */
  backfillOverheadSec?: number;
  /** Preemptions after which a spot job with `fallback` runs on on-demand nodes (config limits.maxPreemptions); default 3. */
  maxPreemptions?: number;
}

export interface Snapshot {
  queued: QueuedJob[];
  remotes: RemoteCapacity[];
  /** Nodes allocated right now, per remote (every partition not deleted, idle ones included). */
  usage: ReadonlyMap<string, number>;
  /** Partitions a job may be placed on. */
  idle?: IdlePartition[];
  /** Pool partitions asked for and not up yet, per remote. */
  poolPending?: ReadonlyMap<string, number>;
  /** The time of the snapshot (epoch ms); without it, no reservation is computed and nothing backfills. */
  nowMs?: number;
  /** Jobs past the queue holding nodes; without it, limits count only this plan and nothing backfills. */
  running?: RunningJob[];
  /** Decayed node-seconds per user and account (fair-share.ts); absent: everyone equal. */
  recentUsage?: RecentUsage;
  /** How each job named in a queued job's `depends` stands; a job absent from the map is `unknown`. */
  outcomes?: ReadonlyMap<string, DependencyOutcome>;
  /** Spending this period against budgets (budgets.ts); absent: no budgets. */
  budgets?: Budgets;
  policy?: SchedulingPolicy;
}

export interface Assignment {
  jobId: string;
  remote: string;
  flavor: string;
  /** The idle partition the job goes on; absent: a new partition is made for it. */
  reuse?: string;
  shape: PartitionShape;
}

/** Why a queued job was not started by this plan (Slurm's NODELIST(REASON)). */
export interface PendingJob {
  jobId: string;
  code: PendingCode;
  /** The code and what it is about, e.g. `Resources (remote local: 32/32 nodes in use)`. */
  reason: string;
  /** 1-based place among the jobs still queued on its remote, in effective order (1: next in line). */
  position?: number;
}

/** When the first job a remote cannot fit is expected to start (EASY backfill keeps it from being delayed). */
export interface Reservation {
  jobId: string;
  remote: string;
  startMs: number;
}

export interface Plan {
  assignments: Assignment[];
  /** Idle partitions to delete: to make room for a job that needs their nodes, or beyond the remote's maxIdle. */
  evictions: { name: string; reason: string }[];
  /** Warm pool partitions to make. */
  poolCreates: { remote: string; shape: PartitionShape }[];
  /** Jobs that can never run as asked (unknown remote or flavor, wider than the remote's quota, a dependency never met). */
  rejections: { jobId: string; reason: string }[];
  /** Jobs that stay queued because their remote's gate is unavailable, with the gate's reason (also in `pending`). */
  waiting: { jobId: string; reason: string }[];
  /** Every queued job neither assigned nor rejected, in effective order, with why. */
  pending: PendingJob[];
  /** The reservation of each remote whose first job in line does not fit, when its start can be computed. */
  reservations: Reservation[];
}
