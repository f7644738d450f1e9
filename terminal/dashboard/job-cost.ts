import type { Flavor } from '../../terminal-protocol/common.js';
import type { Job } from '../../terminal-protocol/job.js';

/**
 * What a job has cost: the core's own figure (its partition's charges) once it has one, else an estimate as
 * the core prices partitions: its flavor's price per node-hour × its nodes × the time it has run (start to
 * end, or to now), which leaves out the time its partition spent being created and idle.
 */
export interface JobCost {
  amount: number;
  currency: string;
}

export function estimateJobCost(job: Job, flavors: readonly Flavor[], now: number): JobCost | null {
  if (job.cost_amount != null && job.cost_amount > 0) return { amount: job.cost_amount, currency: job.cost_currency ?? 'USD' };
  if (!job.start_time || !job.flavor_id) return null;
  const flavor = flavors.find((f) => f.name === job.flavor_id && (job.remote_id === null || f.remote === job.remote_id));
  if (flavor?.pricePerHour === undefined) return null;
  const start = Date.parse(job.start_time);
  const end = job.end_time ? Date.parse(job.end_time) : now;
  if (Number.isNaN(start) || Number.isNaN(end)) return null;
  const nodes = job.node_names.length || 1;
  const hours = Math.max(0, end - start) / 3_600_000;
  return { amount: Math.round(flavor.pricePerHour * nodes * hours * 10_000) / 10_000, currency: flavor.currency ?? 'USD' };
}
