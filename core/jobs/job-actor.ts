import { dispatch, spawn, type Ref } from 'nact';
import type { Logger } from 'pino';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { armDeadline, type DeadlineTimer } from './deadline-timer.js';
import { deadlineOf, transition, type JobEvent } from './job-steps.js';
import { stepEffects } from './steps/index.js';
import { StepAborted } from './steps/step-context.js';

export type JobMessage =
  /** Perform the recorded step (at spawn, after a restart, after a crash). */
  | { type: 'resume' }
  /**
   * Something happened; `reply` gets the job after the change is committed, or the error: the RpcError of a
   * refused event, or whatever made the actor crash (a store write's error, as the store threw it).
   */
  | { type: 'event'; event: JobEvent; reply?: (result: JobRecord | Error) => void }
  /** A step's effect finished; ignored if the job has moved on since (`step` is stale). */
  | { type: 'effect-done'; step: string; generation: number; event: JobEvent };

interface JobActorState {
  job: JobRecord;
  generation: number;
}

/**
 * The restart intensity of a job actor, as an OTP supervisor states it: a crash resets the actor to the job's
 * durable state and performs its step again, but more than `maxRestarts` crashes within `periodMs` mean the
 * fault is not passing, and the job is given up (it ends E with the reason).
 */
export const JOB_ACTOR_RESTARTS = { maxRestarts: 5, periodMs: 60_000 };

/** What the supervisor of job actors (jobs.ts) hears from one. */
export interface JobActorHooks {
  /** The job reached `queue` or `done`. */
  settled(job: JobRecord): void;
  /** The actor crashed more often than its restart intensity allows and stops; the job must end with `reason`. */
  gaveUp(job: JobRecord, reason: string): void;
  /** The actor has stopped (settled, given up or the core stopping): it will answer nothing more. */
  stopped(): void;
}

/**
 * One actor per active job: the lifecycle state machine of DESIGN.md §7. Decisions come from the pure
 * `transition`; this actor persists each new state before acting on it (so recovery is a replay) and runs the
 * step's effect in the background, posting the result back to itself.
 *
 * Faults: an effect that throws (even synchronously) fails its step, as `transition` says. A crash of the actor
 * itself (a store write that throws) answers the message it was handling with the error, aborts the running
 * effect and resets the actor to the stored job, whose step is performed again; past its restart intensity the
 * job is given up.
 */
let incarnations = 0;

export function spawnJobActor(parent: Ref<unknown>, initial: JobRecord, services: CoreServices, hooks: JobActorHooks): Ref<JobMessage> {
  const logger: Logger = services.logger.child({ job: initial.id });
  const crashes: number[] = [];
  // Monotonic across resets, so an effect started before a crash can never pass for a current one.
  let generations = 0;
  // What runs on behalf of the current state; kept outside it so that a crash (which loses the state) stops them.
  let running: AbortController | null = null;
  let timeLimit: DeadlineTimer | null = null;
  // The job as last committed: what a reset starts from when the store cannot be read.
  let committed: JobRecord = initial;

  const stopEffects = (): void => {
    running?.abort();
    running = null;
    timeLimit?.cancel();
    timeLimit = null;
  };

  const perform = (state: JobActorState, self: Ref<JobMessage>): JobActorState => {
    running?.abort();
    running = null;
    const effect = stepEffects[state.job.step];
    if (!effect) return state;
    const abort = new AbortController();
    running = abort;
    const generation = ++generations;
    const step = state.job.step;
    const job = state.job;
    const log = logger.child({ step, ...(job.partitionName ? { partition: job.partitionName } : {}) });
    log.debug('step started');
    const emit = (event: JobEvent) => dispatch(self, { type: 'effect-done', step, generation, event });
    // Through a promise, so that an effect throwing before its first await fails its step like any other error.
    Promise.resolve()
      .then(() => effect({ job, services, logger: log, signal: abort.signal, emit }))
      .then(emit, (error: Error) => {
        if (error instanceof StepAborted || abort.signal.aborted) return;
        log.warn({ err: error?.message }, 'step failed');
        emit({ type: 'step-failed', reason: `${step}: ${error?.message ?? String(error)}` });
      });
    return { ...state, generation };
  };

  // The time limit, re-armed only when the deadline changes; any deadline the parser accepts is honoured.
  const armTimeLimit = (job: JobRecord, self: Ref<JobMessage>): void => {
    const at = deadlineOf(job);
    if (timeLimit && timeLimit.at === at) return;
    timeLimit?.cancel();
    timeLimit = at === null ? null : armDeadline(at, () => dispatch(self, { type: 'event', event: { type: 'time-limit' } }));
  };

  const storedJob = (): JobRecord => {
    try {
      return services.store.get(initial.id) ?? committed;
    } catch (error) {
      logger.error({ err: (error as Error)?.message }, 'cannot read the job from the store; resuming from the last committed state');
      return committed;
    }
  };

  return spawn(
    parent as Ref<never>,
    async (state: JobActorState, message: JobMessage, ctx): Promise<JobActorState> => {
      const self = ctx.self as Ref<JobMessage>;
      if (message.type === 'resume') {
        const next = perform(state, self);
        armTimeLimit(next.job, self);
        return next;
      }
      if (message.type === 'effect-done' && (message.step !== state.job.step || message.generation !== state.generation)) return state;

      let next: JobRecord;
      try {
        next = transition(state.job, message.event, new Date());
      } catch (error) {
        if (message.type === 'event') message.reply?.(error as RpcError);
        return state;
      }
      if (next === state.job) {
        if (message.type === 'event') message.reply?.(next);
        return state;
      }
      await services.store.save(next);
      committed = next;
      services.bus.publish(next);
      if (message.type === 'event') message.reply?.(next);
      if (next.step !== state.job.step || next.state !== state.job.state)
        logger.info({ step: next.step, state: next.state, details: next.stateDetails }, 'job moved');

      let updated: JobActorState = { ...state, job: next };
      if (next.step !== state.job.step) {
        updated = perform(updated, self);
        if (next.step === 'done' || next.step === 'queue') hooks.settled(next);
      }
      armTimeLimit(next, self);
      return updated;
    },
    // A fresh name per incarnation: a finished job's actor may still be stopping when a requeue revives the job.
    `${initial.id}.${++incarnations}`,
    {
      onCrash: (message: JobMessage | undefined, error: unknown, ctx: { self: unknown; stop: symbol; reset: symbol }) => {
        const reason = (error as Error)?.message ?? String(error);
        stopEffects();
        // The caller waits for an answer that the reset would otherwise swallow: the error itself, so that the
        // caller can tell what it was (a full disk, say).
        if (message?.type === 'event') message.reply?.(error instanceof Error ? error : new RpcError(ErrorCode.Internal, `job ${initial.id}: ${reason}`));
        const now = Date.now();
        crashes.push(now);
        while (crashes.length && crashes[0]! <= now - JOB_ACTOR_RESTARTS.periodMs) crashes.shift();
        logger.error({ err: reason, crashes: crashes.length }, 'job actor crashed');
        if (crashes.length > JOB_ACTOR_RESTARTS.maxRestarts) {
          const seconds = JOB_ACTOR_RESTARTS.periodMs / 1000;
          hooks.gaveUp(storedJob(), `internal error: the job failed ${crashes.length} times within ${seconds} s (last: ${reason})`);
          return ctx.stop;
        }
        // Reset to the durable state and perform the recorded step again.
        setImmediate(() => dispatch(ctx.self as Ref<JobMessage>, { type: 'resume' }));
        return ctx.reset;
      },
      initialStateFunc: () => ({ job: storedJob(), generation: 0 }),
      afterStop: () => {
        stopEffects();
        hooks.stopped();
      },
    } as never,
  ) as Ref<JobMessage>;
}
