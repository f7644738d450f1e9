import { dispatch, spawn, type Ref } from 'nact';
import type { Logger } from 'pino';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { armDeadline, type DeadlineTimer } from './deadline-timer.js';

/**
 * The restart intensity of a durable actor, as an OTP supervisor states it: a crash resets the actor to its
 * record's durable state and performs that state's effect again, but more than `maxRestarts` crashes within
 * `periodMs` mean the fault is not passing, and the supervisor gives the entity up.
 */
export const RESTART_INTENSITY = { maxRestarts: 5, periodMs: 60_000 };

/** Raised (or thrown by an abort) when the effect of a state is no longer wanted. */
export class EffectAborted extends Error {
  override name = 'EffectAborted';
}

/** Sleep that an abort cuts short (rejecting with EffectAborted, already aborted included). */
export const pause = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new EffectAborted('aborted'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new EffectAborted('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** What the effect of a state gets: an abort, a way to report intermediate events, a logger. */
export interface EffectContext<E> {
  signal: AbortSignal;
  emit: (event: E) => void;
  logger: Logger;
}

/** The effect of a state: resolves with the event that ends the state; a throw becomes `failed(reason)`. */
export type Effect<E> = (context: EffectContext<E>) => Promise<E>;

/**
 * A state machine whose record is durable: the decisions are the pure `transition`, the effects belong to
 * states. Everything the generic actor needs to know of jobs or partitions.
 */
export interface DurableMachine<R, E extends { type: string }> {
  /** The entity's id (logs, the nact name). */
  id: string;
  logger: Logger;
  /** (record, event, now) → next record; returns the same record to ignore, throws an RpcError to refuse. */
  transition(record: R, event: E, now: Date): R;
  /** The state an effect belongs to: a new effect starts when it changes. */
  stateOf(record: R): string;
  effectOf(record: R): Effect<E> | undefined;
  /** When something must happen by itself (a time limit, an idle timeout), and what. */
  deadlineOf(record: R): { at: number; event: E } | null;
  /** What an effect that threw means. */
  failed(state: string, reason: string): E;
  /** The durable record (null: not found). */
  load(): R | null;
  save(record: R): Promise<void>;
  /** Called once a change is committed, before the effect of a new state starts. */
  committed(next: R, previous: R): void;
}

/** What the supervisor hears from one of its actors. */
export interface DurableActorHooks<R> {
  /** The actor crashed more often than its restart intensity allows and stops. */
  gaveUp(record: R, reason: string): void;
  /** The actor has stopped (on purpose, given up, or its parent stopping): it answers nothing more. */
  stopped(): void;
}

export type DurableMessage<R, E> =
  /** Perform the recorded state's effect (at spawn, after a restart, after a crash). */
  | { type: 'resume' }
  /** Something happened; `reply` gets the record once the change is committed, or the error. */
  | { type: 'event'; event: E; reply?: (result: R | Error) => void }
  /** An effect finished; ignored if the entity has moved on since. */
  | { type: 'effect-done'; state: string; generation: number; event: E };

interface ActorState<R> {
  record: R;
  generation: number;
}

let incarnations = 0;

/**
 * One actor per entity (a job, a partition), under `parent`. It persists each new record before acting on it
 * (so that recovery is a replay), runs the state's effect in the background and posts the result to itself.
 *
 * Faults: an effect that throws (even synchronously) becomes `failed`, as the machine says. A crash of the actor
 * itself (a store write that throws) answers the message it was handling with the error, aborts the running
 * effect and resets the actor to the stored record, whose effect is performed again; past its restart intensity
 * the entity is given up.
 */
export function spawnDurableActor<R, E extends { type: string }>(
  parent: Ref<unknown>,
  initial: R,
  machine: DurableMachine<R, E>,
  hooks: DurableActorHooks<R>,
): Ref<DurableMessage<R, E>> {
  const { logger } = machine;
  const crashes: number[] = [];
  // Monotonic across resets, so an effect started before a crash can never pass for a current one.
  let generations = 0;
  // What runs on behalf of the current state; kept outside it so that a crash (which loses the state) stops them.
  let running: AbortController | null = null;
  let timer: DeadlineTimer | null = null;
  let committed: R = initial;

  const stopEffects = (): void => {
    running?.abort();
    running = null;
    timer?.cancel();
    timer = null;
  };

  const perform = (state: ActorState<R>, self: Ref<DurableMessage<R, E>>): ActorState<R> => {
    running?.abort();
    running = null;
    const effect = machine.effectOf(state.record);
    if (!effect) return state;
    const abort = new AbortController();
    running = abort;
    const generation = ++generations;
    const name = machine.stateOf(state.record);
    const log = logger.child({ step: name });
    log.debug('effect started');
    const emit = (event: E) => dispatch(self, { type: 'effect-done', state: name, generation, event });
    // Through a promise, so that an effect throwing before its first await fails like any other error.
    Promise.resolve()
      .then(() => effect({ signal: abort.signal, emit, logger: log }))
      .then(emit, (error: Error) => {
        if (error instanceof EffectAborted || abort.signal.aborted) return;
        log.warn({ err: error?.message }, 'step failed');
        emit(machine.failed(name, `${name}: ${error?.message ?? String(error)}`));
      });
    return { ...state, generation };
  };

  // Re-armed only when the deadline changes; any deadline is honoured, however far.
  const arm = (record: R, self: Ref<DurableMessage<R, E>>): void => {
    const due = machine.deadlineOf(record);
    if (timer && due && timer.at === due.at) return;
    timer?.cancel();
    timer = due === null ? null : armDeadline(due.at, () => dispatch(self, { type: 'event', event: due.event }));
  };

  const stored = (): R => {
    try {
      return machine.load() ?? committed;
    } catch (error) {
      logger.error({ err: (error as Error)?.message }, 'cannot read the record from the store; resuming from the last committed state');
      return committed;
    }
  };

  return spawn(
    parent as Ref<never>,
    async (state: ActorState<R>, message: DurableMessage<R, E>, ctx): Promise<ActorState<R>> => {
      const self = ctx.self as Ref<DurableMessage<R, E>>;
      if (message.type === 'resume') {
        const next = perform(state, self);
        arm(next.record, self);
        return next;
      }
      if (message.type === 'effect-done' && (message.state !== machine.stateOf(state.record) || message.generation !== state.generation)) return state;

      let next: R;
      try {
        next = machine.transition(state.record, message.event, new Date());
      } catch (error) {
        if (message.type === 'event') message.reply?.(error as RpcError);
        return state;
      }
      if (next === state.record) {
        if (message.type === 'event') message.reply?.(next);
        return state;
      }
      await machine.save(next);
      committed = next;
      machine.committed(next, state.record);
      if (message.type === 'event') message.reply?.(next);

      let updated: ActorState<R> = { ...state, record: next };
      if (machine.stateOf(next) !== machine.stateOf(state.record)) updated = perform(updated, self);
      arm(next, self);
      return updated;
    },
    // A fresh name per incarnation: an ended entity's actor may still be stopping when the entity is revived.
    `${machine.id}.${++incarnations}`,
    {
      onCrash: (message: DurableMessage<R, E> | undefined, error: unknown, ctx: { self: unknown; stop: symbol; reset: symbol }) => {
        const reason = (error as Error)?.message ?? String(error);
        stopEffects();
        // The caller waits for an answer that the reset would otherwise swallow: the error itself.
        if (message?.type === 'event') message.reply?.(error instanceof Error ? error : new RpcError(ErrorCode.Internal, `${machine.id}: ${reason}`));
        const now = Date.now();
        crashes.push(now);
        while (crashes.length && crashes[0]! <= now - RESTART_INTENSITY.periodMs) crashes.shift();
        logger.error({ err: reason, crashes: crashes.length }, 'actor crashed');
        if (crashes.length > RESTART_INTENSITY.maxRestarts) {
          const seconds = RESTART_INTENSITY.periodMs / 1000;
          hooks.gaveUp(stored(), `failed ${crashes.length} times within ${seconds} s (last: ${reason})`);
          return ctx.stop;
        }
        // Reset to the durable state and perform its effect again.
        setImmediate(() => dispatch(ctx.self as Ref<DurableMessage<R, E>>, { type: 'resume' }));
        return ctx.reset;
      },
      initialStateFunc: () => ({ record: stored(), generation: 0 }),
      afterStop: () => {
        stopEffects();
        hooks.stopped();
      },
    } as never,
  ) as Ref<DurableMessage<R, E>>;
}
