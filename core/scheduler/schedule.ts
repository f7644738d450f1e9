import { fits, type PartitionShape } from '../partitions/partition-record.js';
import type { PortSpec } from '../../terminal-protocol/gate-methods.js';

/**
 * The scheduler's decision, as a pure function (the shape of Nomad's scheduler: a snapshot in, a plan out).
 * No I/O: the scheduler actor gathers the snapshot and applies the plan.
 *
 *   queued jobs ──► order (priority desc, submit order) ──► resolve remote & flavor
 *       ──► an idle partition that fits? reuse it ──► else fits quota? a new partition
 *       ──► else idle partitions of others to delete to make room ──► warm pools topped up ──► plan
 *
 * Policy: FIFO within priority, per remote. A job that does not fit its remote's free nodes blocks the
 * jobs behind it on that remote (no starvation of wide jobs); other remotes are unaffected. Idle partitions
 * count against the quota until they are deleted: a job that needs their nodes has them deleted.
 */

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

export interface Snapshot {
  queued: QueuedJob[];
  remotes: RemoteCapacity[];
  /** Nodes allocated right now, per remote (every partition not deleted, idle ones included). */
  usage: ReadonlyMap<string, number>;
  /** Partitions a job may be placed on. */
  idle?: IdlePartition[];
  /** Pool partitions asked for and not up yet, per remote. */
  poolPending?: ReadonlyMap<string, number>;
}

export interface Assignment {
  jobId: string;
  remote: string;
  flavor: string;
  /** The idle partition the job goes on; absent: a new partition is made for it. */
  reuse?: string;
  shape: PartitionShape;
}

export interface Plan {
  assignments: Assignment[];
  /** Idle partitions to delete: to make room for a job that needs their nodes, or beyond the remote's maxIdle. */
  evictions: { name: string; reason: string }[];
  /** Warm pool partitions to make. */
  poolCreates: { remote: string; shape: PartitionShape }[];
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

const oldestFirst = (a: IdlePartition, b: IdlePartition): number => a.idleSinceMs - b.idleSinceMs;

export function schedule(snapshot: Snapshot): Plan {
  const plan: Plan = { assignments: [], evictions: [], poolCreates: [], rejections: [], waiting: [] };
  const free = new Map(snapshot.remotes.map((r) => [r.name, r.maxNodes - (snapshot.usage.get(r.name) ?? 0)]));
  const blocked = new Set<string>();
  /** Idle partitions not given to a job nor deleted by this plan. */
  const idle = [...(snapshot.idle ?? [])].sort(oldestFirst);
  const take = (name: string): void => {
    idle.splice(
      idle.findIndex((p) => p.name === name),
      1,
    );
  };
  const evict = (p: IdlePartition, reason: string): void => {
    take(p.name);
    plan.evictions.push({ name: p.name, reason });
  };
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
    const shape: PartitionShape = {
      remote: name,
      flavor: where.flavor,
      nodeCount: job.nodes,
      cloudImage: job.cloudImage ?? where.remote.defaultCloudImage ?? null,
      ports: job.ports ?? [],
    };
    // The owner's own idle partitions first (warm caches, files the owner may expect), then a pool's spares.
    const reusable = idle
      .filter((p) => fits(p, shape, job.owner ?? '', where.remote.sharing ?? false))
      .sort((a, b) => Number(a.owner === null) - Number(b.owner === null) || b.idleSinceMs - a.idleSinceMs)[0];
    if (reusable) {
      take(reusable.name);
      plan.assignments.push({ jobId: job.id, remote: name, flavor: where.flavor, reuse: reusable.name, shape });
      continue;
    }
    const available = free.get(name)!;
    if (job.nodes > available) {
      // Idle partitions hold nodes nobody uses: delete as many (oldest first) as the job needs, and let it wait.
      const victims: IdlePartition[] = [];
      let room = available;
      for (const p of idle) {
        if (room >= job.nodes) break;
        if (p.remote !== name) continue;
        victims.push(p);
        room += p.nodeCount;
      }
      if (room >= job.nodes) for (const p of victims) evict(p, `making room for job ${job.id}`);
      blocked.add(name);
      continue;
    }
    free.set(name, available - job.nodes);
    plan.assignments.push({ jobId: job.id, remote: name, flavor: where.flavor, shape });
  }
  for (const remote of snapshot.remotes) {
    const ownIdle = idle.filter((p) => p.remote === remote.name);
    // Beyond the remote's limit of idle partitions, the oldest go (a pool's spares are the pool's business).
    if (remote.maxIdle != null) {
      const used = ownIdle.filter((p) => !(p.pool && p.owner === null));
      for (const p of used.slice(0, Math.max(0, used.length - remote.maxIdle))) evict(p, `more than ${remote.maxIdle} idle partitions`);
    }
    // Warm pools are topped up with what queued jobs leave free.
    const pool = remote.pool;
    if (!pool || blocked.has(remote.name) || remote.unavailable || remote.flavors === null) continue;
    const spares = ownIdle.filter((p) => p.pool && p.owner === null).length + (snapshot.poolPending?.get(remote.name) ?? 0);
    let available = free.get(remote.name)!;
    for (let n = spares; n < pool.count && available >= pool.nodes; n++) {
      available -= pool.nodes;
      plan.poolCreates.push({ remote: remote.name, shape: { remote: remote.name, flavor: pool.flavor, nodeCount: pool.nodes, cloudImage: pool.cloudImage, ports: [] } });
    }
    free.set(remote.name, available);
  }
  return plan;
}
