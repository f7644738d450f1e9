import { dispatch, spawn, type Ref } from 'nact';
import type { CoreServices } from '../services.js';
import type { Jobs } from '../jobs/jobs.js';
import { stepsWhere, type JobEvent } from '../jobs/job-steps.js';
import { isPoolSpare } from '../partitions/partition-states.js';
import { requestedPartition, type PartitionRecord, type PartitionShape } from '../partitions/partition-record.js';
import type { PendingView } from '../store/job-record.js';
import type { QueuedRow } from '../store/job-store.js';
import { dependencyIds, dependencyOutcome, type DependencyOutcome } from './dependencies.js';
import { decayedUsage, type RecentUsage } from './fair-share.js';
import { headOfQueue } from './job-order.js';
import { resolveRemote, schedule, type Assignment, type IdlePartition, type PendingJob, type RemoteCapacity, type RunningJob, type Snapshot } from './schedule.js';
import { PassPacer } from './pass-pacing.js';
import { schedulingPolicy } from './scheduling-policy.js';
import { WaitReasons } from './wait-reasons.js';
import type { Budgets } from './budgets.js';
import { pastHardLimit, spendingNow } from './spending.js';

type SchedulerMessage = { type: 'run' };

const SAFETY_NET_MS = 5_000;
/** How soon a run follows a move that failed (the job is still queued, or still says what it said). */
const RETRY_MS = 250;
/** Steps in which a job waits on its remote's gate itself: asking for its partition, deleting it. */
const GATE_STEPS: ReadonlySet<string> = new Set(stepsWhere('waitsOnGate'));
/** Steps in which a job holds the partition it names. */
const HOLDING: ReadonlySet<string> = new Set(stepsWhere('holdsPartition'));
/** How long a partition reserved for a job that does not hold it is left alone (its move may be in flight). */
const RESERVATION_GRACE_MS = 15_000;
/**
 * While no remote has room, a run that could place nothing still says why jobs wait, at most this often: reading
 * the queue on every submit of a burst would make the burst quadratic.
 */
const EXPLAIN_EVERY_MS = 1_000;
/**
 * The most jobs of each remote's line a pass decides on (Slurm's default_queue_depth): a pass over the first
 * 10,000 takes a few ms; over 100,000, about ten times as long and as much memory. Jobs further back say
 * "queued" (and their last stored reason) until they come within it.
 */
const QUEUE_DEPTH = 10_000;
/** How long the recent usage of fair share is reused before it is read again. */
const USAGE_TTL_MS = 5_000;
/** Usage older than this many half-lives counts less than 0.1 %: it is not read. */
const USAGE_HALF_LIVES = 10;
/** How far back usage is read when it never decays (halfLifeSec 0). */
const UNDECAYED_LOOKBACK_MS = 30 * 86_400_000;

/** The outcome of a job named by a dependency: a job's own, or an array's (every task's together). */
export function outcomeOf(state: Parameters<typeof dependencyOutcome>[0], tasks?: readonly Parameters<typeof dependencyOutcome>[0][]): DependencyOutcome {
  if (!tasks) return dependencyOutcome(state);
  const outcomes = tasks.map((t) => dependencyOutcome(t));
  if (outcomes.includes('pending')) return 'pending';
  return outcomes.every((o) => o === 'ok') ? 'ok' : 'failed';
}

/**
 * Places queued jobs on partitions: an idle one that fits (reserved for the job), or a new one (recorded,
 * reserved, then asked of the gate by its own actor); deletes idle partitions whose nodes a job needs; tops up
 * warm pools. Each placement is two idempotent messages, the partition's first, then the job's `placed`; a
 * message lost (a crash between the two) is repaired by a later pass, which finds the reservation and sends
 * `placed` again, or releases a reservation whose job went elsewhere.
 *
 * Runs the pure `schedule` after submits, completions and gate (re)connections, never on a slow timer alone
 * (a periodic run only catches what no event announced). Kicks are coalesced and paced (pass-pacing.ts): one pass
 * serves every kick made before it, and passes take at most a fifth of the event loop however large the queue.
 * The snapshot is read from memory: the store's index of what is committed (store/job-index.ts), never a scan.
 * A run does not wait for the jobs it moves: a job whose move is in flight (answered, at the latest, within the
 * time limit of every send to a job) is left out of later runs until it answers, and the nodes it is being given
 * count as used, so two runs never assign one job twice, and a slow or failing job never holds up the others.
 * A move that fails is tried again shortly: a job whose actor keeps failing is given up by jobs.ts.
 */
/** What swm submit --dry-run reports of the scheduler's decision for a job submitted now. */
export interface SchedulingPreview {
  starts: boolean;
  remote: string | null;
  flavor: string | null;
  /** The idle partition it would reuse (null: a new one). */
  reuse: string | null;
  /** Why it would wait, or never run (`never`). */
  reason: string | null;
  position: number | null;
  never?: boolean;
}

export function spawnScheduler(
  parent: Ref<unknown>,
  services: CoreServices,
  jobs: Jobs,
): { kick: () => void; stop: () => void; pendingOf: (jobId: string) => PendingView | null; preview: (candidate: Omit<QueuedRow, 'seq' | 'reason' | 'stateDetails'>) => SchedulingPreview } {
  /** Whether the pass running now got as far as a plan (for the metrics: a pass with nothing to place skips it). */
  let planned = false;
  const policy = { ...schedulingPolicy(services.config.scheduling), maxPreemptions: services.config.limits.maxPreemptions };
  const halfLifeSec = services.config.scheduling.halfLifeSec;
  /** What the last plan said of each queued job it left waiting (served with the job; never stored as such). */
  let pendingNow = new Map<string, PendingJob>();
  let lastExplainedMs = 0;
  let explainTimer: NodeJS.Timeout | null = null;
  let usage: { atMs: number; value: RecentUsage | undefined } | null = null;
  const budgetConfig = services.config.scheduling.budgets;
  /** Jobs told to stop for their budget (their stop is on its way or done). */
  const budgetStopped = new Set<string>();
  let budgetCheckedMs = 0;
  /** Spending against budgets now; undefined when no budget is configured. */
  const budgetsOf = (nowMs: number, queued: readonly QueuedRow[] = []): Budgets | undefined =>
    budgetConfig
      ? spendingNow(budgetConfig, services.store, services.partitions.charges, nowMs, {
          users: queued.map((q) => q.owner),
          accounts: queued.flatMap((q) => (q.account ? [q.account] : [])),
        })
      : undefined;
  /** Running jobs whose owner or account spent past the hard limit of its budget are stopped (reason Budget). */
  const enforceBudgets = (nowMs: number): void => {
    const percent = budgetConfig?.hardLimitPercent;
    if (percent == null || nowMs - budgetCheckedMs < EXPLAIN_EVERY_MS) return;
    budgetCheckedMs = nowMs;
    const holding = services.store.holding().filter((h) => h.step !== 'teardown' && !budgetStopped.has(h.id));
    if (!holding.length) return;
    const budgets = budgetsOf(nowMs);
    if (!budgets) return;
    for (const h of holding) {
      const why = pastHardLimit(budgets, percent, h.owner, h.account);
      if (!why) continue;
      budgetStopped.add(h.id);
      logger.info({ job: h.id, why }, 'stopping a job past its budget');
      jobs.send(h.id, { type: 'budget-stop', details: why }).catch((error: Error) => {
        budgetStopped.delete(h.id);
        logger.warn({ job: h.id, err: error?.message }, 'could not stop a job past its budget; trying again');
      });
    }
  };
  /** Jobs being placed (their `placed` not committed yet), as running jobs: limits and array caps count them. */
  const placing = new Map<string, RunningJob>();
  const logger = services.logger.child({ actor: 'scheduler' });
  const reasons = new WaitReasons();
  /** Jobs with a move sent and not answered yet, and the nodes those being placed will hold. */
  const inFlight = new Map<string, { remote: string; nodes: number } | null>();
  let retry: NodeJS.Timeout | null = null;
  const retryLater = (): void => {
    if (retry) return;
    retry = setTimeout(() => {
      retry = null;
      kick();
    }, RETRY_MS);
    retry.unref();
  };
  const move = (jobId: string, event: JobEvent, holds: { remote: string; nodes: number } | null = null): void => {
    inFlight.set(jobId, holds);
    jobs.send(jobId, event).then(
      () => {
        inFlight.delete(jobId);
        placing.delete(jobId);
      },
      (error: Error) => {
        inFlight.delete(jobId);
        placing.delete(jobId);
        logger.warn({ job: jobId, event: event.type, err: error?.message }, 'could not apply a scheduling decision; trying again');
        retryLater();
      },
    );
  };
  /** Nodes held by partitions not deleted (idle ones included), plus those of new placements in flight. */
  const nodesInUse = (): Map<string, number> => {
    const usage = new Map(services.store.nodesHeld());
    const add = (remote: string, nodes: number) => usage.set(remote, (usage.get(remote) ?? 0) + nodes);
    for (const holds of inFlight.values()) if (holds) add(holds.remote, holds.nodes);
    return usage;
  };
  /** Partition operations in flight (reservations, creations, evictions), by partition name. */
  const partitionsInFlight = new Set<string>();
  const partitionMove = (name: string, work: () => Promise<unknown>): Promise<boolean> => {
    partitionsInFlight.add(name);
    return work().then(
      () => {
        partitionsInFlight.delete(name);
        return true;
      },
      (error: Error) => {
        partitionsInFlight.delete(name);
        logger.warn({ partition: name, err: error?.message }, 'could not apply a partition decision; trying again');
        retryLater();
        return false;
      },
    );
  };

  /** Place a job: reserve the idle partition, or record a new one for it; then tell the job. */
  const place = (a: Assignment, owner: string, containerImage: string | undefined): void => {
    const holds = a.reuse ? null : { remote: a.remote, nodes: a.shape.nodeCount };
    inFlight.set(a.jobId, holds);
    const name = a.reuse ?? services.partitions.freshName(`job-${a.jobId}`);
    const reserve = a.reuse
      ? () => services.partitions.send(name, { type: 'reserve', jobId: a.jobId, owner })
      : () => services.partitions.create({ ...requestedPartition(name, a.shape, owner, a.jobId, Date.now()), containerImages: containerImage ? [containerImage] : [] });
    void partitionMove(name, reserve).then((reserved) => {
      if (reserved) move(a.jobId, { type: 'placed', remote: a.remote, flavor: a.flavor, partition: name });
      else {
        inFlight.delete(a.jobId);
        placing.delete(a.jobId);
      }
    });
  };

  /**
   * Reservations whose job does not hold them: the job still queued (its `placed` was lost) is told again; a
   * job gone elsewhere (canceled, ended, given up: a busy partition included) releases it, to be deleted.
   */
  const repair = (partitions: PartitionRecord[]): void => {
    const now = Date.now();
    for (const p of partitions) {
      if (!p.jobId || partitionsInFlight.has(p.name) || inFlight.has(p.jobId)) continue;
      if (!['requested', 'creating', 'ready', 'busy', 'failed', 'retrying'].includes(p.state)) continue;
      const job = services.store.get(p.jobId);
      if (job && HOLDING.has(job.step) && job.partitionName === p.name) continue;
      if (now - p.createdMs < RESERVATION_GRACE_MS && job?.step === 'queue' && p.jobsRun === 0 && p.state === 'requested') continue;
      if (job?.step === 'queue') {
        logger.info({ job: job.id, partition: p.name }, 'telling a queued job of the partition reserved for it again');
        move(job.id, { type: 'placed', remote: p.remote, flavor: p.flavor, partition: p.name });
      } else {
        void partitionMove(p.name, () => services.partitions.send(p.name, { type: 'release', jobId: p.jobId!, keepSec: 0, reusable: false }));
      }
    }
  };

  const remotes = (): RemoteCapacity[] =>
    services.config.remotes.map((r) => {
      const gate = services.gates.get(r.gate);
      const flavors = gate?.flavors;
      return {
        name: r.name,
        isDefault: r.default,
        maxNodes: r.maxNodes,
        defaultFlavor: r.defaultFlavor,
        flavors: flavors ? new Set(flavors.map((f) => f.name)) : null,
        unavailable: gate?.unavailable ?? null,
        sharing: r.sharePartitions,
        defaultCloudImage: r.defaultCloudImage,
        maxIdle: r.maxIdle,
        pool: r.pool ? { flavor: r.pool.flavor, nodes: r.pool.nodes, count: r.pool.count, cloudImage: r.pool.cloudImage ?? r.defaultCloudImage } : null,
      };
    });
  const idleOf = (partitions: PartitionRecord[]): IdlePartition[] =>
    partitions
      .filter((p) => p.state === 'idle' && !partitionsInFlight.has(p.name))
      .map((p) => ({ name: p.name, remote: p.remote, flavor: p.flavor, nodeCount: p.nodeCount, cloudImage: p.cloudImage, ports: p.ports, owner: p.owner, pool: p.pool, idleSinceMs: p.idleSinceMs ?? 0 }));
  const poolPendingOf = (partitions: PartitionRecord[]): Map<string, number> => {
    const pending = new Map<string, number>();
    for (const p of partitions) if (isPoolSpare(p) && ['requested', 'creating'].includes(p.state)) pending.set(p.remote, (pending.get(p.remote) ?? 0) + 1);
    for (const remote of poolCreating.values()) pending.set(remote, (pending.get(remote) ?? 0) + 1);
    return pending;
  };
  /** Pool partitions being recorded, by name: their remote. */
  const poolCreating = new Map<string, string>();
  let poolSerial = 0;
  const createPoolPartition = (remote: string, shape: PartitionShape): void => {
    const name = services.partitions.freshName(`pool-${remote}-${Date.now().toString(36)}${++poolSerial}`);
    poolCreating.set(name, remote);
    void partitionMove(name, () => services.partitions.create(requestedPartition(name, shape, null, null, Date.now()))).then(() => poolCreating.delete(name));
  };

  /** Jobs past the queue that wait on an unavailable gate, added to those the plan left queued for that reason. */
  const waitingOnGates = (capacity: RemoteCapacity[], queuedWaits: { jobId: string; reason: string }[]): Map<string, string> => {
    const waiting = new Map(queuedWaits.map((w) => [w.jobId, w.reason]));
    const unavailable = new Map(capacity.filter((r) => r.unavailable).map((r) => [r.name, r.unavailable!]));
    if (!unavailable.size) return waiting;
    for (const job of services.store.holding()) {
      const reason = job.remote && GATE_STEPS.has(job.step) ? unavailable.get(job.remote) : undefined;
      if (reason && !inFlight.has(job.id)) waiting.set(job.id, reason);
    }
    return waiting;
  };
  /** Jobs holding nodes (past the queue, or being placed), with when their nodes are expected back. */
  const runningNow = (nowMs: number): RunningJob[] => {
    const overhead = policy.backfillOverheadSec ?? 0;
    const out: RunningJob[] = [...placing.values()];
    for (const h of services.store.holding()) {
      if (!h.remote || placing.has(h.id)) continue;
      const endsAtMs = h.durationSec > 0 ? (h.runStartedMs ?? nowMs) + (h.durationSec + overhead) * 1000 : null;
      out.push({ jobId: h.id, remote: h.remote, nodes: h.nodes, endsAtMs, owner: h.owner, account: h.account, arrayId: h.arrayId });
    }
    return out;
  };
  /** Decayed node-seconds per user and account, from the jobs that ran recently (read again every few seconds). */
  const recentUsage = (nowMs: number): RecentUsage | undefined => {
    if (usage && nowMs - usage.atMs < USAGE_TTL_MS) return usage.value;
    const lookback = halfLifeSec > 0 ? halfLifeSec * 1000 * USAGE_HALF_LIVES : UNDECAYED_LOOKBACK_MS;
    const records = [];
    for (const r of services.store.usageSince(new Date(nowMs - lookback).toISOString())) {
      if (!r.startTime) continue;
      const endedAtMs = r.endTime ? Date.parse(r.endTime) : nowMs;
      records.push({ user: r.owner, account: r.account, nodeSeconds: (r.nodes * Math.max(0, endedAtMs - Date.parse(r.startTime))) / 1000, endedAtMs });
    }
    const value = records.length ? decayedUsage(records, nowMs, halfLifeSec > 0 ? halfLifeSec : Infinity) : undefined;
    usage = { atMs: nowMs, value };
    return value;
  };
  /** How each job (or array) the queued jobs depend on stands. */
  const outcomesOf = (queued: readonly QueuedRow[]): Map<string, DependencyOutcome> | undefined => {
    const ids = dependencyIds(queued);
    if (!ids.size) return undefined;
    const { byId, byArray } = services.store.statesOf([...ids]);
    const outcomes = new Map<string, DependencyOutcome>();
    for (const id of ids) {
      const tasks = byArray.get(id);
      if (byId.has(id)) outcomes.set(id, outcomeOf(byId.get(id)));
      else if (tasks) outcomes.set(id, outcomeOf(null, tasks));
    }
    return outcomes;
  };
  /**
   * Store each waiting job's pending code when it changes (with its wording at that moment), so that a job's
   * record and its subscribers learn why it waits without a write on every pass. Those waiting on a gate say so
   * through WaitReasons.
   */
  const explain = (plan: PendingJob[], noted: ReadonlySet<string>): void => {
    for (const p of plan) {
      // A gate's state is no job's own reason: shown from memory (pendingOf) and by WaitReasons, never written
      // per job (a burst of submissions while a gate is coming up would write every job twice).
      if (p.code === 'GateUnavailable' || p.code === 'WaitingForFlavors' || noted.has(p.jobId)) continue;
      const row = services.store.queuedJob(p.jobId);
      if (!row || row.reason === p.code) continue;
      // Waiting in line behind others is what a queued job with nothing stored does: 100,000 jobs queued behind one
      // another are not 100,000 writes (what each says, with its place, is served from memory by pendingOf).
      if (row.reason === null && p.code === 'Priority') continue;
      move(p.jobId, { type: 'progress', details: p.reason, reason: p.code });
    }
  };
  const explainLater = (delayMs: number): void => {
    if (explainTimer) return;
    explainTimer = setTimeout(() => {
      explainTimer = null;
      kick();
    }, delayMs);
    explainTimer.unref();
  };

  /** Everything the scheduler decides on, as of now. */
  const snapshotOf = (
    queued: QueuedRow[],
    partitions: PartitionRecord[],
    capacity: RemoteCapacity[],
    usage: Map<string, number>,
    idle: IdlePartition[],
    nowMs: number,
  ): Snapshot => ({
    queued,
    remotes: capacity,
    usage,
    idle,
    poolPending: poolPendingOf(partitions),
    nowMs,
    running: runningNow(nowMs),
    recentUsage: recentUsage(nowMs),
    outcomes: outcomesOf(queued),
    budgets: budgetsOf(nowMs, queued),
    policy,
  });

  /**
   * What the scheduler would do now with a job not submitted (swm submit --dry-run): the same snapshot, the
   * job queued last. Pure in effect: nothing is placed, recorded or told.
   */
  const preview = (candidate: Omit<QueuedRow, 'seq' | 'reason' | 'stateDetails'>): SchedulingPreview => {
    const partitions = services.partitions.list();
    const nowMs = Date.now();
    const queued = services.store.queued().filter((q) => !inFlight.has(q.id));
    const seq = queued.reduce((max, q) => Math.max(max, q.seq), 0) + 1;
    const capacity = remotes();
    const all = headOfQueue([...queued, { ...candidate, seq, reason: null, stateDetails: 'queued' }], (q) => resolveRemote(q, capacity)?.name ?? '', QUEUE_DEPTH, recentUsage(nowMs), policy.weights);
    const plan = schedule(snapshotOf(all, partitions, capacity, nodesInUse(), idleOf(partitions), nowMs));
    const assigned = plan.assignments.find((a) => a.jobId === candidate.id);
    if (assigned) return { starts: true, remote: assigned.remote, flavor: assigned.flavor, reuse: assigned.reuse ?? null, reason: null, position: null };
    const rejected = plan.rejections.find((r) => r.jobId === candidate.id);
    if (rejected) return { starts: false, remote: null, flavor: null, reuse: null, reason: rejected.reason, position: null, never: true };
    const waits = plan.pending.find((p) => p.jobId === candidate.id);
    return { starts: false, remote: null, flavor: null, reuse: null, reason: waits?.reason ?? 'queued', position: waits?.position ?? null };
  };

  const flavorOf = (remote: string, flavor: string) => {
    const r = services.config.remotes.find((x) => x.name === remote);
    return r ? services.gates.get(r.gate)?.flavors?.find((f) => f.name === flavor) : undefined;
  };
  const detailsOf = (id: string): string | null => {
    const job = services.store.get(id);
    return job && job.step !== 'done' ? job.stateDetails : null;
  };

  /** One pass: repair, gather the snapshot, plan, apply (nothing awaited: the event loop is held for its length). */
  const pass = (state: null): null => {
    enforceBudgets(Date.now());
    const partitions = services.partitions.list();
    repair(partitions);
    const usage = nodesInUse();
    const capacity = remotes();
    const idle = idleOf(partitions);
    // Nothing can be placed while every remote is full (with no idle partition) or has not told us its flavors:
    // skip reading the queue, which would otherwise make a burst of submits quadratic. Unless a gate is
    // unavailable, or was: then the jobs waiting on it are told why (and told again when it is back).
    const explaining = capacity.some((r) => r.unavailable) || reasons.size > 0;
    const room = capacity.some((r) => r.flavors !== null && (r.maxNodes > (usage.get(r.name) ?? 0) || idle.some((p) => p.remote === r.name)));
    const pools = capacity.some((r) => r.pool && r.pool.count > 0) || capacity.some((r) => r.maxIdle != null);
    const nowMs = Date.now();
    if (!explaining && !room && !pools) {
      const due = lastExplainedMs + EXPLAIN_EVERY_MS - nowMs;
      if (due > 0) {
        explainLater(due);
        return state;
      }
    }
    lastExplainedMs = nowMs;
    const waiting = services.store.queued().filter((q) => !inFlight.has(q.id) && !jobs.isAbandoned(q.id));
    const queued = headOfQueue(waiting, (q) => resolveRemote(q, capacity)?.name ?? '', QUEUE_DEPTH, recentUsage(nowMs), policy.weights);
    if (!queued.length && !explaining && !pools) {
      pendingNow = new Map();
      return state;
    }
    planned = true;
    const plan = schedule(snapshotOf(queued, partitions, capacity, usage, idle, nowMs));
    const notes = explaining ? reasons.changes(waitingOnGates(capacity, plan.waiting), detailsOf, (id) => inFlight.has(id)) : [];
    pendingNow = new Map();
    for (const p of plan.pending) pendingNow.set(p.jobId, p);
    for (const a of plan.assignments) {
      const job = services.store.get(a.jobId);
      if (!job) continue;
      // GPUs a flavor lacks: refused at submit when the gate had said what it offers, else here.
      const gpus = job.directives.gpus ?? 0;
      const offered = gpus ? flavorOf(a.remote, a.flavor)?.gpus : undefined;
      if (offered !== undefined && offered < gpus) {
        move(a.jobId, { type: 'unschedulable', reason: `#SWM gpus ${gpus}: flavor "${a.flavor}" on remote "${a.remote}" has ${offered === 0 ? 'no GPUs' : `${offered} GPUs`}` });
        continue;
      }
      const q = services.store.queuedJob(a.jobId);
      placing.set(a.jobId, { jobId: a.jobId, remote: a.remote, nodes: a.shape.nodeCount, endsAtMs: null, owner: q?.owner ?? job.owner, account: job.account, arrayId: job.arrayId });
      place(a, q?.owner ?? job.owner, job.directives.containerImage);
    }
    for (const e of plan.evictions) void partitionMove(e.name, () => services.partitions.send(e.name, { type: 'delete', reason: e.reason }));
    for (const c of plan.poolCreates) createPoolPartition(c.remote, c.shape);
    for (const r of plan.rejections)
      move(r.jobId, { type: 'unschedulable', reason: r.reason, ...(r.reason.startsWith('DependencyNeverSatisfied') ? { code: 'DependencyNeverSatisfied' } : {}) });
    for (const n of notes) move(n.jobId, { type: 'progress', details: n.details });
    explain(plan.pending, new Set(notes.map((n) => n.jobId)));
    if (plan.assignments.length) logger.debug({ assigned: plan.assignments.length, queued: queued.length }, 'scheduled');
    return state;
  };
  const pacer = new PassPacer(() => {
    services.metrics?.schedulerPassStarted();
    dispatch(ref, { type: 'run' });
  });
  const ref = spawn(
    parent as Ref<never>,
    async (state: null, _message: SchedulerMessage) => {
      const started = performance.now();
      planned = false;
      try {
        return pass(state);
      } finally {
        const ms = performance.now() - started;
        pacer.ended(ms);
        services.metrics?.schedulerPassEnded(ms / 1000, planned);
      }
    },
    'scheduler',
    {
      initialState: null,
      onCrash: (_m: unknown, error: unknown, ctx: { resume: symbol }) => {
        logger.error({ err: (error as Error)?.message }, 'scheduler crashed; resuming');
        return ctx.resume;
      },
    } as never,
  ) as Ref<SchedulerMessage>;

  const kick = (): void => pacer.kick();
  const timer = setInterval(kick, SAFETY_NET_MS);
  timer.unref();
  // A gate becoming unavailable (or available again) changes what waiting jobs should say.
  for (const gate of services.gates.values()) gate.on('health', kick);
  return {
    kick,
    stop: () => {
      pacer.stop();
      clearInterval(timer);
      if (retry) clearTimeout(retry);
      if (explainTimer) clearTimeout(explainTimer);
    },
    preview,
    pendingOf: (jobId) => {
      const p = pendingNow.get(jobId);
      return p ? { code: p.code, reason: p.reason, ...(p.position !== undefined ? { position: p.position } : {}) } : null;
    },
  };
}
