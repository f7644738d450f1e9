import type { SchedulingConfig } from '../../spool-bootstrap/config.js';
import type { Limits, SchedulingLimits } from './quotas.js';
import type { SchedulingPolicy } from './snapshot.js';

/**
 * The site's scheduling configuration (config.json `scheduling`) as the pure scheduler's policy. Pure: the
 * configuration is validated at start (spool-bootstrap/config.ts); this only changes its shape.
 */

const limitsOf = (l: { maxRunningNodes?: number | null; maxQueuedJobs?: number | null } | undefined): Limits | undefined =>
  l === undefined ? undefined : { maxRunningNodes: l.maxRunningNodes, maxQueuedJobs: l.maxQueuedJobs };

/** Per-user and per-account limits, or undefined when none is set (the scheduler then counts nothing). */
export function schedulingLimits(config: SchedulingConfig): SchedulingLimits | undefined {
  const { user, users, account, accounts } = config.limits;
  const set = (l: Limits | undefined): boolean => l !== undefined && (l.maxRunningNodes != null || l.maxQueuedJobs != null);
  const userMap = new Map(Object.entries(users).map(([k, v]) => [k, limitsOf(v)!]));
  const accountMap = new Map(Object.entries(accounts).map(([k, v]) => [k, limitsOf(v)!]));
  if (!set(limitsOf(user)) && !set(limitsOf(account)) && userMap.size === 0 && accountMap.size === 0) return undefined;
  return { user: limitsOf(user), users: userMap, account: limitsOf(account), accounts: accountMap };
}

/** The policy part of a snapshot. */
export function schedulingPolicy(config: SchedulingConfig): SchedulingPolicy {
  return {
    weights: config.weights,
    limits: schedulingLimits(config),
    backfill: config.backfill,
    backfillOverheadSec: config.backfillOverheadSec,
  };
}
