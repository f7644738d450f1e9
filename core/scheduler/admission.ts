import type { Role } from '../../terminal-protocol/common.js';
import { DEFAULT_PRIORITY } from '../jobs/job-script.js';
import { accountLimits, userLimits, type SchedulingLimits } from './quotas.js';

/**
 * Checks made when a job is submitted, before it is recorded: what the scheduler cannot fix by waiting (a job
 * wider than its owner may ever run, a queue already full, a priority the caller may not ask for). Pure; the
 * submit handler turns a reason into an error.
 */

/** What admission needs to know of a submission. */
export interface Submission {
  owner: string;
  account?: string | null;
  /** Nodes of each job (each task of an array). */
  nodes: number;
  /** Jobs the submission adds to the queue (an array's task count); default 1. */
  jobs?: number;
}

/** Jobs in the queue now (submitted, not yet placed), per user and per account. */
export interface QueuedCounts {
  byUser: ReadonlyMap<string, number>;
  byAccount: ReadonlyMap<string, number>;
}

/** Why the submission may not be queued, or null when it may. */
export function admitSubmission(submission: Submission, queued: QueuedCounts, limits: SchedulingLimits | undefined): string | null {
  const { owner, account, nodes } = submission;
  const adding = submission.jobs ?? 1;
  const parties: [string, number | undefined, ReturnType<typeof userLimits>][] = [[`user ${owner}`, queued.byUser.get(owner), userLimits(limits, owner)]];
  if (account) parties.push([`account ${account}`, queued.byAccount.get(account), accountLimits(limits, account)]);
  for (const [who, count, own] of parties) {
    if (own.maxRunningNodes != null && nodes > own.maxRunningNodes)
      return `${nodes} nodes exceed the ${own.maxRunningNodes} nodes ${who} may run at once`;
    const now = count ?? 0;
    if (own.maxQueuedJobs != null && now + adding > own.maxQueuedJobs)
      return `${who} has ${now} jobs queued; ${adding === 1 ? 'one more' : `${adding} more`} would exceed the limit of ${own.maxQueuedJobs}`;
  }
  return null;
}

/** Whether a caller of `role` may ask for `priority`: above DEFAULT_PRIORITY is for admins only. */
export function priorityAllowed(priority: number, role: Role): boolean {
  return priority <= DEFAULT_PRIORITY || role === 'admin';
}
