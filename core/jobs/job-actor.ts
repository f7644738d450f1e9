import { dispatch, spawn, type Ref } from 'nact';
import type { Logger } from 'pino';
import { RpcError } from '../../terminal-protocol/errors.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { deadlineOf, transition, type JobEvent } from './job-steps.js';
import { stepEffects } from './steps/index.js';
import { StepAborted } from './steps/step-context.js';

export type JobMessage =
  /** Perform the recorded step (at spawn, after a restart, after a crash). */
  | { type: 'resume' }
  /** Something happened; `reply` gets the job after the change is committed, or the error. */
  | { type: 'event'; event: JobEvent; reply?: (result: JobRecord | RpcError) => void }
  /** A step's effect finished; ignored if the job has moved on since (`step` is stale). */
  | { type: 'effect-done'; step: string; generation: number; event: JobEvent };

interface JobActorState {
  job: JobRecord;
  generation: number;
  abort: AbortController | null;
  timer: NodeJS.Timeout | null;
}

const MAX_CRASHES = 5;

/**
 * One actor per active job: the lifecycle state machine of DESIGN.md §7. Decisions come from the pure
 * `transition`; this actor persists each new state before acting on it (so recovery is a replay) and runs the
 * step's effect in the background, posting the result back to itself.
 */
let incarnations = 0;

export function spawnJobActor(parent: Ref<unknown>, initial: JobRecord, services: CoreServices, onSettled: (job: JobRecord) => void): Ref<JobMessage> {
  const logger: Logger = services.logger.child({ job: initial.id });
  let crashes = 0;
  // Monotonic across resets, so an effect started before a crash can never pass for a current one.
  let generations = 0;

  const perform = (state: JobActorState, self: Ref<JobMessage>): JobActorState => {
    state.abort?.abort();
    const effect = stepEffects[state.job.step];
    if (!effect) return { ...state, abort: null };
    const abort = new AbortController();
    const generation = ++generations;
    const step = state.job.step;
    const job = state.job;
    const log = logger.child({ step, ...(job.partitionName ? { partition: job.partitionName } : {}) });
    log.debug('step started');
    effect({
      job,
      services,
      logger: log,
      signal: abort.signal,
      emit: (event) => dispatch(self, { type: 'effect-done', step, generation, event }),
    }).then(
      (event) => dispatch(self, { type: 'effect-done', step, generation, event }),
      (error: Error) => {
        if (error instanceof StepAborted || abort.signal.aborted) return;
        log.warn({ err: error.message }, 'step failed');
        dispatch(self, { type: 'effect-done', step, generation, event: { type: 'step-failed', reason: `${step}: ${error.message}` } });
      },
    );
    return { ...state, abort, generation };
  };

  const armTimeLimit = (state: JobActorState, self: Ref<JobMessage>): JobActorState => {
    if (state.timer) clearTimeout(state.timer);
    const deadline = deadlineOf(state.job);
    if (deadline === null) return { ...state, timer: null };
    const timer = setTimeout(() => dispatch(self, { type: 'event', event: { type: 'time-limit' } }), Math.max(0, deadline - Date.now()));
    return { ...state, timer };
  };

  return spawn(
    parent as Ref<never>,
    async (state: JobActorState, message: JobMessage, ctx): Promise<JobActorState> => {
      const self = ctx.self as Ref<JobMessage>;
      if (message.type === 'resume') return armTimeLimit(perform(state, self), self);
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
      services.bus.publish(next);
      if (message.type === 'event') message.reply?.(next);
      if (next.step !== state.job.step || next.state !== state.job.state)
        logger.info({ step: next.step, state: next.state, details: next.stateDetails }, 'job moved');

      let updated: JobActorState = { ...state, job: next };
      if (next.step !== state.job.step) {
        updated = perform(updated, self);
        if (next.step === 'done' || next.step === 'queue') onSettled(next);
      }
      return armTimeLimit(updated, self);
    },
    // A fresh name per incarnation: a finished job's actor may still be stopping when a requeue revives the job.
    `${initial.id}.${++incarnations}`,
    {
      onCrash: (_message: unknown, error: unknown, ctx: { self: unknown; stop: symbol; reset: symbol }) => {
        crashes++;
        logger.error({ err: (error as Error)?.message, crashes }, 'job actor crashed');
        if (crashes > MAX_CRASHES) return ctx.stop;
        // Reset to the durable state and perform the recorded step again.
        setImmediate(() => dispatch(ctx.self as Ref<JobMessage>, { type: 'resume' }));
        return ctx.reset;
      },
      initialStateFunc: () => ({ job: services.store.get(initial.id) ?? initial, generation: 0, abort: null, timer: null }),
    } as never,
  ) as Ref<JobMessage>;
}
