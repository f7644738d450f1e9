import { dispatch, spawn, type Ref } from 'nact';
import type { CoreServices } from '../services.js';
import type { Jobs } from '../jobs/jobs.js';
import { stepsWhere, type JobEvent } from '../jobs/job-steps.js';
import { PARTITION_STATES, isPoolSpare } from '../partitions/partition-states.js';
import { requestedPartition, type PartitionRecord, type PartitionShape } from '../partitions/partition-record.js';
import { schedule, type Assignment, type IdlePartition, type RemoteCapacity } from './schedule.js';
import { WaitReasons } from './wait-reasons.js';

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
 * Places queued jobs on partitions: an idle one that fits (reserved for the job), or a new one (recorded,
 * reserved, then asked of the gate by its own actor); deletes idle partitions whose nodes a job needs; tops up
 * warm pools. Each placement is two idempotent messages, the partition's first, then the job's `placed`; a
 * message lost (a crash between the two) is repaired by a later pass, which finds the reservation and sends
 * `placed` again, or releases a reservation whose job went elsewhere.
 *
 * Runs the pure `schedule` on every submit, completion and gate (re)connection, never on a slow timer alone
 * (a periodic run only catches what no event announced). Kicks that arrive while a run is pending coalesce.
 * A run does not wait for the jobs it moves: a job whose move is in flight (answered, at the latest, within the
 * time limit of every send to a job) is left out of later runs until it answers, and the nodes it is being given
 * count as used, so two runs never assign one job twice, and a slow or failing job never holds up the others.
 * A move that fails is tried again shortly: a job whose actor keeps failing is given up by jobs.ts.
 */
export function spawnScheduler(parent: Ref<unknown>, services: CoreServices, jobs: Jobs): { kick: () => void; stop: () => void } {
  let pending = false;
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
      () => inFlight.delete(jobId),
      (error: Error) => {
        inFlight.delete(jobId);
        logger.warn({ job: jobId, event: event.type, err: error?.message }, 'could not apply a scheduling decision; trying again');
        retryLater();
      },
    );
  };
  /** Nodes held by partitions not deleted (idle ones included), plus those of new placements in flight. */
  const nodesInUse = (partitions: PartitionRecord[]): Map<string, number> => {
    const usage = new Map<string, number>();
    const add = (remote: string, nodes: number) => usage.set(remote, (usage.get(remote) ?? 0) + nodes);
    for (const p of partitions) if (PARTITION_STATES[p.state].holdsNodes) add(p.remote, p.nodeCount);
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
      else inFlight.delete(a.jobId);
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
    for (const job of services.store.active()) {
      const reason = job.remote && GATE_STEPS.has(job.step) ? unavailable.get(job.remote) : undefined;
      if (reason && !inFlight.has(job.id)) waiting.set(job.id, reason);
    }
    return waiting;
  };
  const detailsOf = (id: string): string | null => {
    const job = services.store.get(id);
    return job && job.step !== 'done' ? job.stateDetails : null;
  };

  const ref = spawn(
    parent as Ref<never>,
    async (state: null, _message: SchedulerMessage) => {
      pending = false;
      const partitions = services.partitions.list();
      repair(partitions);
      const usage = nodesInUse(partitions);
      const capacity = remotes();
      const idle = idleOf(partitions);
      // Nothing can be placed while every remote is full (with no idle partition) or has not told us its flavors:
      // skip reading the queue, which would otherwise make a burst of submits quadratic. Unless a gate is
      // unavailable, or was: then the jobs waiting on it are told why (and told again when it is back).
      const explaining = capacity.some((r) => r.unavailable) || reasons.size > 0;
      const room = capacity.some((r) => r.flavors !== null && (r.maxNodes > (usage.get(r.name) ?? 0) || idle.some((p) => p.remote === r.name)));
      const pools = capacity.some((r) => r.pool && r.pool.count > 0) || capacity.some((r) => r.maxIdle != null);
      if (!explaining && !room && !pools) return state;
      const queued = services.store.queued().filter((q) => !inFlight.has(q.id) && !jobs.isAbandoned(q.id));
      if (!queued.length && !explaining && !pools) return state;
      const plan = schedule({ queued, remotes: capacity, usage, idle, poolPending: poolPendingOf(partitions) });
      const notes = explaining ? reasons.changes(waitingOnGates(capacity, plan.waiting), detailsOf, (id) => inFlight.has(id)) : [];
      const queuedById = new Map(queued.map((q) => [q.id, q]));
      for (const a of plan.assignments) {
        const job = services.store.get(a.jobId);
        if (job) place(a, queuedById.get(a.jobId)?.owner ?? job.owner, job.directives.containerImage);
      }
      for (const e of plan.evictions) void partitionMove(e.name, () => services.partitions.send(e.name, { type: 'delete', reason: e.reason }));
      for (const c of plan.poolCreates) createPoolPartition(c.remote, c.shape);
      for (const r of plan.rejections) move(r.jobId, { type: 'unschedulable', reason: r.reason });
      for (const n of notes) move(n.jobId, { type: 'progress', details: n.details });
      if (plan.assignments.length) logger.debug({ assigned: plan.assignments.length, queued: queued.length }, 'scheduled');
      return state;
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

  const kick = () => {
    if (pending) return;
    pending = true;
    dispatch(ref, { type: 'run' });
  };
  const timer = setInterval(kick, SAFETY_NET_MS);
  timer.unref();
  // A gate becoming unavailable (or available again) changes what waiting jobs should say.
  for (const gate of services.gates.values()) gate.on('health', kick);
  return {
    kick,
    stop: () => {
      clearInterval(timer);
      if (retry) clearTimeout(retry);
    },
  };
}
