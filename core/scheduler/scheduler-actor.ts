import { dispatch, spawn, type Ref } from 'nact';
import type { CoreServices } from '../services.js';
import type { Jobs } from '../jobs/jobs.js';
import { schedule, type RemoteCapacity } from './schedule.js';

type SchedulerMessage = { type: 'run' };

const SAFETY_NET_MS = 5_000;

/**
 * Runs the pure `schedule` on every submit, completion and gate (re)connection, never on a slow timer alone
 * (a periodic run only catches what no event announced). Kicks that arrive while a run is pending coalesce.
 * A run finishes only when every assigned job has committed its move, so two runs never assign one job twice.
 */
export function spawnScheduler(parent: Ref<unknown>, services: CoreServices, jobs: Jobs): { kick: () => void; stop: () => void } {
  let pending = false;
  const logger = services.logger.child({ actor: 'scheduler' });

  const remotes = (): RemoteCapacity[] =>
    services.config.remotes.map((r) => {
      const flavors = services.gates.get(r.gate)?.flavors;
      return {
        name: r.name,
        isDefault: r.default,
        maxNodes: r.maxNodes,
        defaultFlavor: r.defaultFlavor,
        flavors: flavors ? new Set(flavors.map((f) => f.name)) : null,
      };
    });

  const ref = spawn(
    parent as Ref<never>,
    async (state: null, _message: SchedulerMessage) => {
      pending = false;
      const usage = services.store.nodesInUse();
      const capacity = remotes();
      // Nothing can be placed while every remote is full or has not told us its flavors: skip reading the queue,
      // which would otherwise make a burst of submits quadratic.
      if (!capacity.some((r) => r.flavors !== null && r.maxNodes > (usage.get(r.name) ?? 0))) return state;
      const queued = services.store.queued();
      if (!queued.length) return state;
      const plan = schedule({ queued, remotes: capacity, usage });
      const moves = [
        ...plan.assignments.map((a) => jobs.send(a.jobId, { type: 'scheduled', remote: a.remote, flavor: a.flavor })),
        ...plan.rejections.map((r) => jobs.send(r.jobId, { type: 'unschedulable', reason: r.reason })),
      ];
      const results = await Promise.allSettled(moves);
      for (const r of results) if (r.status === 'rejected') logger.warn({ err: (r.reason as Error).message }, 'could not apply a scheduling decision');
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
  return { kick, stop: () => clearInterval(timer) };
}
