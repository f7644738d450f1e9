import type { QueuedJob, RunningJob } from './snapshot.js';

/**
 * How much one party may hold at once: a user, an account (Slurm's MaxNodesPerUser/GrpNodes, MaxSubmitJobs),
 * and an array's tasks (`%N`). Running nodes are counted across remotes, from the jobs past the queue plus those
 * this plan starts; a job the limit holds waits (QuotaUser, QuotaAccount, ArrayTaskLimit) without blocking anyone
 * behind it. The queued-jobs limit is checked at submit (admission.ts).
 */

export interface Limits {
  /** Most nodes held at once by running jobs; null/absent: no limit. */
  maxRunningNodes?: number | null;
  /** Most jobs in the queue at once (checked at submit); null/absent: no limit. */
  maxQueuedJobs?: number | null;
}

export interface SchedulingLimits {
  /** Limits of every user… */
  user?: Limits;
  /** …unless overridden, key by key, here (null: no limit for that user). */
  users?: ReadonlyMap<string, Limits>;
  /** Limits of every account (jobs without an account have none)… */
  account?: Limits;
  /** …unless overridden here. */
  accounts?: ReadonlyMap<string, Limits>;
}

/** Each key of the override that is set (null included) replaces the default's. */
const overridden = (base: Limits | undefined, override: Limits | undefined): Limits => ({
  maxRunningNodes: override?.maxRunningNodes !== undefined ? override.maxRunningNodes : base?.maxRunningNodes,
  maxQueuedJobs: override?.maxQueuedJobs !== undefined ? override.maxQueuedJobs : base?.maxQueuedJobs,
});

/** The limits that apply to one user. */
export const userLimits = (limits: SchedulingLimits | undefined, user: string): Limits => overridden(limits?.user, limits?.users?.get(user));

/** The limits that apply to one account. */
export const accountLimits = (limits: SchedulingLimits | undefined, account: string): Limits => overridden(limits?.account, limits?.accounts?.get(account));

/** A hold: its pending code and what it is about. */
export interface Hold {
  code: 'QuotaUser' | 'QuotaAccount' | 'ArrayTaskLimit';
  detail: string;
}

const add = (map: Map<string, number>, key: string, value: number): void => {
  map.set(key, (map.get(key) ?? 0) + value);
};

/**
 * Nodes each user and account holds and tasks each array runs: what is running, plus what the plan being made
 * has started (start()).
 */
export class RunningTally {
  private readonly userNodes = new Map<string, number>();
  private readonly accountNodes = new Map<string, number>();
  private readonly arrayTasks = new Map<string, number>();

  constructor(running: Iterable<RunningJob> = []) {
    for (const r of running) this.count(r.owner, r.account, r.nodes, r.arrayId);
  }

  private count(owner: string | undefined, account: string | null | undefined, nodes: number, arrayId: string | null | undefined): void {
    if (owner !== undefined) add(this.userNodes, owner, nodes);
    if (account) add(this.accountNodes, account, nodes);
    if (arrayId) add(this.arrayTasks, arrayId, 1);
  }

  /** Count a job this plan starts. */
  start(job: QueuedJob): void {
    this.count(job.owner, job.account, job.nodes, job.array?.id);
  }

  /** Why the job's array cap holds it, or null. */
  arrayHold(job: QueuedJob): Hold | null {
    const array = job.array;
    if (!array || array.maxRunning == null) return null;
    const running = this.arrayTasks.get(array.id) ?? 0;
    return running >= array.maxRunning ? { code: 'ArrayTaskLimit', detail: `array ${array.id}: ${running} of ${array.maxRunning} tasks running` } : null;
  }

  /** Why its owner's or account's running-nodes limit holds the job, or null. */
  quotaHold(job: QueuedJob, limits: SchedulingLimits | undefined): Hold | null {
    if (!limits) return null;
    const over = (code: Hold['code'], who: string, held: number, max: number | null | undefined): Hold | null =>
      max != null && held + job.nodes > max ? { code, detail: `${who}: ${held} of ${max} nodes running, the job needs ${job.nodes}` } : null;
    const owner = job.owner;
    const byUser = owner !== undefined ? over('QuotaUser', `user ${owner}`, this.userNodes.get(owner) ?? 0, userLimits(limits, owner).maxRunningNodes) : null;
    if (byUser) return byUser;
    const account = job.account;
    return account ? over('QuotaAccount', `account ${account}`, this.accountNodes.get(account) ?? 0, accountLimits(limits, account).maxRunningNodes) : null;
  }
}
