import { fits, type PartitionShape } from '../partitions/partition-record.js';
import { DEFAULT_MAX_PREEMPTIONS, spotChoice } from './spot.js';
import { backfill, expectedEndMs, reservationFor, type Shadow } from './backfill.js';
import { budgetExhausted } from './budgets.js';
import { dependencyState } from './dependencies.js';
import { rankQueue } from './job-order.js';
import { dependencyNeverSatisfied, pendingReason, resourcesDetail, withPositions, type PendingCode } from './pending-reasons.js';
import { RunningTally } from './quotas.js';
import type { Assignment, IdlePartition, PendingJob, Plan, QueuedJob, RemoteCapacity, RunningJob, Snapshot } from './snapshot.js';

export type { ArrayTask, Assignment, IdlePartition, PendingJob, Plan, QueuedJob, RemoteCapacity, Reservation, RunningJob, SchedulingPolicy, Snapshot, WarmPool } from './snapshot.js';
export { byPriorityThenAge } from './job-order.js';

/**
 * The scheduler's decision, as a pure function (the shape of Nomad's scheduler: a snapshot in, a plan out).
 * No I/O: the scheduler actor gathers the snapshot and applies the plan. Each policy lives in a file of its own;
 * this one composes them.
 *
 *   queued jobs ──► effective order: w·priority + w·fair share, then age             job-order.ts, fair-share.ts
 *     │ each job, best first:
 *     ├─ unknown remote or flavor, wider than the remote ─────────────────────────► rejections
 *     ├─ a dependency that can never be met ──────────────────────────────────────► rejections   dependencies.ts
 *     ├─ a dependency not met yet, gate unavailable (+ waiting), flavors unknown ─► pending
 *     ├─ budget spent, array cap, user or account node limit ─────────────────────► pending      budgets.ts, quotas.ts
 *     ├─ a job ahead on its remote waits: starts only if it cannot delay that job,
 *     │  else ─────────────────────────────────────────────────────────────────────► pending     backfill.ts
 *     ├─ an idle partition that fits? reuse it ───────────────────────────────────► assignments
 *     ├─ fits the remote's free nodes? a new partition ───────────────────────────► assignments
 *     └─ else: idle partitions to delete for it (evictions), its reservation,
 *        and the remote blocked for the jobs behind it ───────────────────────────► pending, reservations
 *   then: idle partitions beyond maxIdle deleted, warm pools topped up ──► plan
 *   pending jobs get their position on their remote ──────────────────────────────  pending-reasons.ts
 *
 * Policy: by effective priority, per remote. A job that does not fit its remote's free nodes blocks the jobs
 * behind it on that remote (no starvation of wide jobs); other remotes are unaffected. With a time (nowMs) and the
 * running jobs, a job behind it may still start if it cannot delay it (EASY backfill). A job held by a limit,
 * a budget or a dependency blocks nobody. Idle partitions count against the quota until they are deleted: a job
 * that needs their nodes has them deleted.
 */

export type Placement = { remote: RemoteCapacity; flavor: string } | { reason: string } | { wait: string } | { unavailable: string };

/** The remote a job goes to: the one it names, else the default one, else the first; undefined if none. */
export function resolveRemote(job: Pick<QueuedJob, 'remote'>, remotes: RemoteCapacity[]): RemoteCapacity | undefined {
  return job.remote ? remotes.find((r) => r.name === job.remote) : (remotes.find((r) => r.isDefault) ?? remotes[0]);
}

/** Where a job would go, or why it cannot go anywhere (pure; also used to validate a submission). */
export function place(job: Pick<QueuedJob, 'nodes' | 'remote' | 'flavor'>, remotes: RemoteCapacity[]): Placement {
  const remote = resolveRemote(job, remotes);
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

/** Decide what to start, delete, make and reject, and why every other queued job waits. Pure. */
export function schedule(snapshot: Snapshot): Plan {
  const plan: Plan = { assignments: [], evictions: [], poolCreates: [], rejections: [], waiting: [], pending: [], reservations: [] };
  const policy = snapshot.policy ?? {};
  const free = new Map(snapshot.remotes.map((r) => [r.name, r.maxNodes - (snapshot.usage.get(r.name) ?? 0)]));
  /** Remotes whose first job in line does not fit: that job, and its reservation while it can be computed. */
  const blocked = new Map<string, { jobId: string; shadow: Shadow | null }>();
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
  const { nowMs, running } = snapshot;
  const backfilling = policy.backfill !== false;
  const tally = new RunningTally(running);
  /** Jobs this plan starts, as running jobs: their nodes come back for a reservation like the others'. */
  const started: RunningJob[] = [];
  const start = (job: QueuedJob, assignment: Assignment): void => {
    plan.assignments.push(assignment);
    tally.start(job);
    const endsAtMs = nowMs === undefined ? null : expectedEndMs(nowMs, job.durationSec, policy.backfillOverheadSec);
    started.push({ jobId: job.id, remote: assignment.remote, nodes: job.nodes, endsAtMs, owner: job.owner, account: job.account, arrayId: job.array?.id });
  };
  const pending: (Omit<PendingJob, 'position'> & { remote: string | null })[] = [];
  const hold = (job: QueuedJob, remote: string, code: PendingCode, detail?: string): void => {
    pending.push({ jobId: job.id, code, reason: pendingReason(code, detail), remote });
  };
  /** Priority, behind the job that blocks the remote: one wording per remote, shared by every job behind it. */
  const behind = new Map<string, string>();
  const holdBehind = (job: QueuedJob, remote: string, aheadId: string): void => {
    let reason = behind.get(remote);
    if (reason === undefined) behind.set(remote, (reason = pendingReason('Priority', `job ${aheadId} is ahead on remote ${remote}`)));
    pending.push({ jobId: job.id, code: 'Priority', reason, remote });
  };
  for (const { job } of rankQueue(snapshot.queued, snapshot.recentUsage, policy.weights)) {
    const where = place(job, snapshot.remotes);
    if ('reason' in where) {
      plan.rejections.push({ jobId: job.id, reason: where.reason });
      continue;
    }
    const deps = dependencyState(job.depends, snapshot.outcomes);
    if ('never' in deps) {
      plan.rejections.push({ jobId: job.id, reason: dependencyNeverSatisfied(deps.never) });
      continue;
    }
    const name = 'remote' in where ? where.remote.name : resolveRemote(job, snapshot.remotes)!.name;
    if (!deps.met) {
      hold(job, name, 'Dependency', `${deps.on} pending`);
      continue;
    }
    if ('unavailable' in where) {
      plan.waiting.push({ jobId: job.id, reason: where.unavailable });
      hold(job, name, 'GateUnavailable', where.unavailable);
      continue;
    }
    if ('wait' in where) {
      hold(job, name, 'WaitingForFlavors', `remote ${name}`);
      continue;
    }
    const spent = budgetExhausted(job.owner, job.account, snapshot.budgets);
    if (spent) {
      hold(job, name, 'Budget', spent);
      continue;
    }
    const limited = tally.arrayHold(job) ?? tally.quotaHold(job, policy.limits);
    if (limited) {
      hold(job, name, limited.code, limited.detail);
      continue;
    }
    // Behind a job that waits, with fewer free nodes than it needs and no idle partition on the remote: it waits
    // too (what the checks below would say, without building what it would be given: a queue of 100,000 is mostly this).
    const blocker = blocked.get(name);
    if (blocker && job.nodes > free.get(name)! && !idle.some((p) => p.remote === name)) {
      holdBehind(job, name, blocker.jobId);
      continue;
    }
    const shape: PartitionShape = {
      remote: name,
      flavor: where.flavor,
      nodeCount: job.nodes,
      cloudImage: job.cloudImage ?? where.remote.defaultCloudImage ?? null,
      ports: job.ports ?? [],
      ...spotChoice(job.spot, job.attempts ?? 0, policy.maxPreemptions ?? DEFAULT_MAX_PREEMPTIONS),
    };
    // The owner's own idle partitions first (warm caches, files the owner may expect), then a pool's spares.
    const reusable = idle
      .filter((p) => fits(p, shape, job.owner ?? '', where.remote.sharing ?? false))
      .sort((a, b) => Number(a.owner === null) - Number(b.owner === null) || b.idleSinceMs - a.idleSinceMs)[0];
    const available = free.get(name)!;
    const ahead = blocked.get(name);
    if (ahead) {
      const fitsNow = reusable !== undefined || job.nodes <= available;
      const left =
        backfilling && ahead.shadow && fitsNow && nowMs !== undefined
          ? backfill(ahead.shadow, { nodes: job.nodes, endsAtMs: expectedEndMs(nowMs, job.durationSec, policy.backfillOverheadSec), reusesIdle: reusable !== undefined })
          : null;
      if (!left) {
        holdBehind(job, name, ahead.jobId);
        continue;
      }
      ahead.shadow = left;
    }
    if (reusable) {
      take(reusable.name);
      start(job, { jobId: job.id, remote: name, flavor: where.flavor, reuse: reusable.name, shape });
      continue;
    }
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
      const evicting = room >= job.nodes ? room - available : 0;
      if (evicting) for (const p of victims) evict(p, `making room for job ${job.id}`);
      const shadow =
        nowMs !== undefined && running !== undefined
          ? reservationFor(job.id, name, job.nodes, {
              nowMs,
              free: available,
              idle: idle.filter((p) => p.remote === name).reduce((n, p) => n + p.nodeCount, 0),
              evicting,
              running: [...running, ...started].filter((r) => r.remote === name),
            })
          : null;
      if (shadow) plan.reservations.push({ jobId: job.id, remote: name, startMs: shadow.startMs });
      blocked.set(name, { jobId: job.id, shadow });
      hold(job, name, 'Resources', resourcesDetail(name, where.remote.maxNodes - available, where.remote.maxNodes));
      continue;
    }
    free.set(name, available - job.nodes);
    start(job, { jobId: job.id, remote: name, flavor: where.flavor, shape });
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
  plan.pending = withPositions(pending);
  return plan;
}
