/**
 * The scheduler's decision, as a pure function (the shape of Nomad's scheduler: a snapshot in, a plan out).
 * No I/O: the scheduler actor gathers the snapshot and applies the plan.
 *
 *   queued jobs ──► order (priority desc, submit order) ──► resolve remote & flavor ──► fits quota? ──► plan
 *
 * Policy: FIFO within priority, per remote. A job that does not fit its remote's free nodes blocks the
 * jobs behind it on that remote (no starvation of wide jobs); other remotes are unaffected.
 */

export interface QueuedJob {
  id: string;
  priority: number;
  /** Submission order; lower is older. */
  seq: number;
  nodes: number;
  remote?: string;
  flavor?: string;
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
}

export interface Snapshot {
  queued: QueuedJob[];
  remotes: RemoteCapacity[];
  /** Nodes allocated right now, per remote. */
  usage: ReadonlyMap<string, number>;
}

export interface Plan {
  assignments: { jobId: string; remote: string; flavor: string }[];
  /** Jobs that can never run as asked (unknown remote or flavor, wider than the remote's quota). */
  rejections: { jobId: string; reason: string }[];
  /** Jobs that stay queued because their remote's gate is unavailable, with the gate's reason. */
  waiting: { jobId: string; reason: string }[];
}

export const byPriorityThenAge = (a: QueuedJob, b: QueuedJob): number => b.priority - a.priority || a.seq - b.seq;

export type Placement = { remote: RemoteCapacity; flavor: string } | { reason: string } | { wait: string } | { unavailable: string };

/** Where a job would go, or why it cannot go anywhere (pure; also used to validate a submission). */
export function place(job: Pick<QueuedJob, 'nodes' | 'remote' | 'flavor'>, remotes: RemoteCapacity[]): Placement {
  const remote = job.remote ? remotes.find((r) => r.name === job.remote) : (remotes.find((r) => r.isDefault) ?? remotes[0]);
  if (!remote) return { reason: job.remote ? `unknown remote "${job.remote}" (known: ${remotes.map((r) => r.name).join(', ')})` : 'no remote is configured' };
  const flavor = job.flavor ?? remote.defaultFlavor;
  if (!flavor) return { reason: `remote "${remote.name}" has no default flavor: the job must name one with #SWM flavor` };
  if (remote.flavors === null) return remote.unavailable ? { unavailable: remote.unavailable } : { wait: `waiting for remote "${remote.name}" to report its flavors` };
  if (!remote.flavors.has(flavor))
    return { reason: `unknown flavor "${flavor}" on remote "${remote.name}" (known: ${[...remote.flavors].sort().join(', ') || 'none'})` };
  if (job.nodes > remote.maxNodes) return { reason: `${job.nodes} nodes exceed remote "${remote.name}"'s quota of ${remote.maxNodes}` };
  if (remote.unavailable) return { unavailable: remote.unavailable };
  return { remote, flavor };
}

export function schedule(snapshot: Snapshot): Plan {
  const plan: Plan = { assignments: [], rejections: [], waiting: [] };
  const free = new Map(snapshot.remotes.map((r) => [r.name, r.maxNodes - (snapshot.usage.get(r.name) ?? 0)]));
  const blocked = new Set<string>();
  for (const job of [...snapshot.queued].sort(byPriorityThenAge)) {
    const where = place(job, snapshot.remotes);
    if ('reason' in where) {
      plan.rejections.push({ jobId: job.id, reason: where.reason });
      continue;
    }
    if ('unavailable' in where) {
      plan.waiting.push({ jobId: job.id, reason: where.unavailable });
      continue;
    }
    if ('wait' in where) continue;
    const name = where.remote.name;
    if (blocked.has(name)) continue;
    const available = free.get(name)!;
    if (job.nodes > available) {
      blocked.add(name);
      continue;
    }
    free.set(name, available - job.nodes);
    plan.assignments.push({ jobId: job.id, remote: name, flavor: where.flavor });
  }
  return plan;
}
