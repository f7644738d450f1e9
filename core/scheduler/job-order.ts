import { fairShareFactors, type RecentUsage } from './fair-share.js';
import type { QueuedJob } from './snapshot.js';

/**
 * The order jobs are considered in, Slurm multifactor style:
 *
 *   effective = weights.priority × priority + weights.fairShare × fairShareFactor
 *
 * then the older first (lower seq), then the lower array index. Priorities are whole numbers and the factor lies
 * in (0, 1], so two jobs' fair-share terms differ by less than weights.fairShare: as long as weights.fairShare <
 * weights.priority, explicit priority always wins and fair share orders jobs of equal priority. A site that wants
 * fair share to outweigh small priority differences raises weights.fairShare past weights.priority (Slurm's
 * PriorityWeightFairshare against its own priority weights).
 */

export interface OrderWeights {
  priority: number;
  fairShare: number;
}

/** Explicit priority dominates (one step of priority is worth 10 × the whole fair-share range). */
export const DEFAULT_ORDER_WEIGHTS: Readonly<OrderWeights> = { priority: 1000, fairShare: 100 };

/** A job's place in the order, and the terms it came from. */
export interface RankedJob<J extends QueuedJob = QueuedJob> {
  job: J;
  /** The job's fair-share factor, in (0, 1]. */
  fairShare: number;
  effective: number;
}

/** The combination of explicit priority and fair share a job is ordered by. */
export function effectivePriority(priority: number, fairShare: number, weights: Readonly<OrderWeights> = DEFAULT_ORDER_WEIGHTS): number {
  return weights.priority * priority + weights.fairShare * fairShare;
}

/** Explicit priority descending, then submission order: the order without fair share. */
export const byPriorityThenAge = (a: QueuedJob, b: QueuedJob): number => b.priority - a.priority || a.seq - b.seq;

const byEffectiveOrder = (a: RankedJob, b: RankedJob): number =>
  b.effective - a.effective || a.job.seq - b.job.seq || (a.job.array?.index ?? 0) - (b.job.array?.index ?? 0);

/** The queue in effective order (highest first), without touching the caller's array. */
export function rankQueue<J extends QueuedJob>(queued: readonly J[], usage?: RecentUsage, weights?: Partial<OrderWeights>): RankedJob<J>[] {
  const w = { priority: weights?.priority ?? DEFAULT_ORDER_WEIGHTS.priority, fairShare: weights?.fairShare ?? DEFAULT_ORDER_WEIGHTS.fairShare };
  const factor = fairShareFactors(usage, queued);
  return queued
    .map((job) => {
      const fairShare = factor(job.owner, job.account);
      return { job, fairShare, effective: effectivePriority(job.priority, fairShare, w) };
    })
    .sort(byEffectiveOrder);
}

/**
 * The first `depth` jobs of each remote's line in effective order, in no particular order (`schedule` orders
 * them): what a pass decides on when the queue is long, as Slurm's default_queue_depth. A job further back can
 * neither start nor block anyone this pass, unless the jobs ahead of it are held by something of their own
 * (dependencies, limits) in their thousands. Pure; allocates a score per job, not an object.
 */
export function headOfQueue<J extends QueuedJob>(
  queued: readonly J[],
  remoteOf: (job: J) => string,
  depth: number,
  usage?: RecentUsage,
  weights?: Partial<OrderWeights>,
): J[] {
  if (queued.length <= depth) return [...queued];
  const w = { priority: weights?.priority ?? DEFAULT_ORDER_WEIGHTS.priority, fairShare: weights?.fairShare ?? DEFAULT_ORDER_WEIGHTS.fairShare };
  const factor = fairShareFactors(usage, queued);
  const effective = new Float64Array(queued.length);
  const lines = new Map<string, number[]>();
  queued.forEach((job, i) => {
    effective[i] = effectivePriority(job.priority, factor(job.owner, job.account), w);
    const remote = remoteOf(job);
    const line = lines.get(remote);
    if (line) line.push(i);
    else lines.set(remote, [i]);
  });
  const head: J[] = [];
  for (const line of lines.values()) {
    if (line.length > depth)
      line.sort((a, b) => effective[b]! - effective[a]! || queued[a]!.seq - queued[b]!.seq || (queued[a]!.array?.index ?? 0) - (queued[b]!.array?.index ?? 0));
    for (const i of line.slice(0, depth)) head.push(queued[i]!);
  }
  return head;
}
