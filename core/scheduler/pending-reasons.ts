import type { PendingJob } from './snapshot.js';

/**
 * Why a queued job is not running (Slurm's NODELIST(REASON)): a code, and what it is about in parentheses.
 *
 *   Dependency        a job it depends on has not ended                 Dependency (afterok:12 pending)
 *   GateUnavailable   its remote's gate cannot take work                GateUnavailable (gate local is not answering)
 *   WaitingForFlavors its remote's gate has not said what it offers     WaitingForFlavors (remote local)
 *   Budget            its owner or account spent this period's budget   Budget (user alice: 12.30/10.00 USD this month)
 *   ArrayTaskLimit    its array runs as many tasks as it may            ArrayTaskLimit (array 7: 4 of 4 tasks running)
 *   QuotaUser         its owner runs as many nodes as they may          QuotaUser (user alice: 8 of 8 nodes running, ...)
 *   QuotaAccount      its account runs as many nodes as it may          QuotaAccount (account physics: ...)
 *   Priority          a job ahead of it on its remote waits first       Priority (job 17 is ahead on remote local)
 *   Resources         it is first in line and its nodes are not free    Resources (remote local: 32/32 nodes in use)
 *
 * Checked in that order: the first that applies is the one shown. A job never met by its dependencies is not
 * pending but rejected: DependencyNeverSatisfied (afterok:12 ended failed).
 */
export type PendingCode =
  | 'Dependency'
  | 'GateUnavailable'
  | 'WaitingForFlavors'
  | 'Budget'
  | 'ArrayTaskLimit'
  | 'QuotaUser'
  | 'QuotaAccount'
  | 'Priority'
  | 'Resources';

/** A pending reason's text: the code, then what it is about. */
export const pendingReason = (code: PendingCode, detail?: string): string => (detail ? `${code} (${detail})` : code);

/** The rejection of a job whose dependencies can never be met. */
export const dependencyNeverSatisfied = (why: string): string => `DependencyNeverSatisfied (${why})`;

/** The detail of `Resources`: the remote's nodes in use out of its quota. */
export const resourcesDetail = (remote: string, inUse: number, maxNodes: number): string => `remote ${remote}: ${inUse}/${maxNodes} nodes in use`;

/**
 * Give each pending job its 1-based position among the pending jobs of its remote, in the order given (the
 * effective order); jobs whose remote is not known get none.
 */
export function withPositions(pending: readonly (Omit<PendingJob, 'position'> & { remote: string | null })[]): PendingJob[] {
  const next = new Map<string, number>();
  // Built field by field: a rest-and-spread copy per job costs more than the whole plan on a queue of 100,000.
  return pending.map((p) => {
    if (p.remote === null) return { jobId: p.jobId, code: p.code, reason: p.reason };
    const position = (next.get(p.remote) ?? 0) + 1;
    next.set(p.remote, position);
    return { jobId: p.jobId, code: p.code, reason: p.reason, position };
  });
}
