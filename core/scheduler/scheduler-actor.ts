import { dispatch, spawn, type Ref } from 'nact';
import type { CoreServices } from '../services.js';
import type { Jobs } from '../jobs/jobs.js';
import type { JobEvent } from '../jobs/job-steps.js';
import { schedule, type RemoteCapacity } from './schedule.js';
import { WaitReasons } from './wait-reasons.js';

type SchedulerMessage = { type: 'run' };

const SAFETY_NET_MS = 5_000;
/** How soon a run follows a move that failed (the job is still queued, or still says what it said). */
const RETRY_MS = 250;
/** Steps in which a job waits on its remote's gate itself: asking for its partition, deleting it. */
const GATE_STEPS: ReadonlySet<string> = new Set(['partition', 'teardown']);

/**
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
  /** Nodes in use as the store says, plus those of the placements in flight. */
  const nodesInUse = (): Map<string, number> => {
    const usage = services.store.nodesInUse();
    for (const holds of inFlight.values()) if (holds) usage.set(holds.remote, (usage.get(holds.remote) ?? 0) + holds.nodes);
    return usage;
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
      };
    });

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
      const usage = nodesInUse();
      const capacity = remotes();
      // Nothing can be placed while every remote is full or has not told us its flavors: skip reading the queue,
      // which would otherwise make a burst of submits quadratic. Unless a gate is unavailable, or was: then the
      // jobs waiting on it are told why (and told again when it is back).
      const explaining = capacity.some((r) => r.unavailable) || reasons.size > 0;
      if (!explaining && !capacity.some((r) => r.flavors !== null && r.maxNodes > (usage.get(r.name) ?? 0))) return state;
      const queued = services.store.queued().filter((q) => !inFlight.has(q.id) && !jobs.isAbandoned(q.id));
      if (!queued.length && !explaining) return state;
      const plan = schedule({ queued, remotes: capacity, usage });
      const notes = explaining ? reasons.changes(waitingOnGates(capacity, plan.waiting), detailsOf, (id) => inFlight.has(id)) : [];
      const nodesOf = new Map(queued.map((q) => [q.id, q.nodes]));
      for (const a of plan.assignments) move(a.jobId, { type: 'scheduled', remote: a.remote, flavor: a.flavor }, { remote: a.remote, nodes: nodesOf.get(a.jobId) ?? 1 });
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
