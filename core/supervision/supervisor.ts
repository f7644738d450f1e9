import { dispatch, spawn, stop, type Ref } from 'nact';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { spawnDurableActor, type DurableMachine, type DurableMessage } from './durable-actor.js';

/** How long a caller waits at most for an actor's answer: no message to an actor waits without a limit. */
export const SEND_TIMEOUT_MS = 10_000;

type Answer<R> = (result: R | Error) => void;

/** An event handed to an actor and not answered yet: handed on to the next incarnation if this one stops. */
interface Delivery<E, R> {
  event: E;
  answer: Answer<R>;
}

interface Child<R, E> {
  ref: Ref<DurableMessage<R, E>>;
  waiting: Set<Delivery<E, R>>;
}

/** What a supervisor must know of the entities it supervises. */
export interface SupervisorSpec<R, E extends { type: string }> {
  /** The supervisor's name in the tree ('jobs', 'partitions'). */
  name: string;
  idOf(record: R): string;
  machineFor(record: R): DurableMachine<R, E>;
  /** An event for an entity without an actor: the record to start one for, or the answer to give at once. */
  wake(id: string, event: E): { start: R } | { answer: R | Error };
  /** An actor exceeded its restart intensity and stopped. */
  gaveUp(record: R, reason: string): void;
}

/**
 * A branch of the supervision tree (an OTP supervisor, in nact): it owns one durable actor per entity, spawns
 * them, hears of their crashes through their restart intensity, and stops them. Every `send` is answered within
 * its time limit: with the committed record, the error the actor met (a crash included), or Timeout. An event
 * still waiting when its actor stops is handed to the next incarnation (or answered as `wake` says).
 */
export class Supervisor<R, E extends { type: string }> {
  private readonly node: Ref<unknown>;
  private readonly children = new Map<string, Child<R, E>>();

  constructor(
    parent: Ref<unknown>,
    private readonly spec: SupervisorSpec<R, E>,
  ) {
    // The branch itself: an actor that receives nothing, whose children are the entities' actors.
    this.node = spawn(parent as Ref<never>, (state: null) => state, spec.name) as Ref<unknown>;
  }

  /** Start the actor of an entity (no-op if it has one). */
  start(record: R): void {
    const id = this.spec.idOf(record);
    if (this.children.has(id)) return;
    const child = { waiting: new Set() } as Child<R, E>;
    child.ref = spawnDurableActor(this.node, record, this.spec.machineFor(record), {
      gaveUp: (last, reason) => {
        if (this.children.get(id) === child) this.children.delete(id);
        this.spec.gaveUp(last, reason);
      },
      stopped: () => this.stopped(child, id),
    });
    this.children.set(id, child);
    dispatch(child.ref, { type: 'resume' });
  }

  has(id: string): boolean {
    return this.children.has(id);
  }

  get size(): number {
    return this.children.size;
  }

  /** Stop an entity's actor once it has nothing more to do (it answers what it was asked first). */
  retire(id: string): void {
    const child = this.children.get(id);
    if (!child) return;
    this.children.delete(id);
    setImmediate(() => stop(child.ref));
  }

  /** Deliver an event; resolves with the record once the change is committed, rejects with the actor's error or Timeout. */
  send(id: string, event: E, timeoutMs = SEND_TIMEOUT_MS): Promise<R> {
    return new Promise((resolve, reject) => {
      let answered = false;
      const answer: Answer<R> = (result) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      const timer = setTimeout(
        () => answer(new RpcError(ErrorCode.Timeout, `${id} did not answer ${event.type} within ${timeoutMs / 1000} s`)),
        timeoutMs,
      );
      this.deliver(id, event, answer);
    });
  }

  private deliver(id: string, event: E, answer: Answer<R>): void {
    let child = this.children.get(id);
    if (!child) {
      let woken: ReturnType<SupervisorSpec<R, E>['wake']>;
      try {
        woken = this.spec.wake(id, event);
      } catch (error) {
        return answer(error as Error);
      }
      if ('answer' in woken) return answer(woken.answer);
      try {
        this.start(woken.start);
      } catch (error) {
        // The core is stopping: its supervision tree takes no new actors.
        return answer(new RpcError(ErrorCode.Unavailable, `${id}: ${(error as Error).message}`));
      }
      child = this.children.get(id)!;
    }
    const target = child;
    const delivery: Delivery<E, R> = {
      event,
      answer: (result) => {
        target.waiting.delete(delivery);
        answer(result);
      },
    };
    target.waiting.add(delivery);
    dispatch(target.ref, { type: 'event', event, reply: delivery.answer });
  }

  /** An actor stopped: what it had not answered goes to its successor, or is answered as `wake` says. */
  private stopped(child: Child<R, E>, id: string): void {
    if (this.children.get(id) === child) this.children.delete(id);
    const waiting = [...child.waiting];
    child.waiting.clear();
    for (const delivery of waiting) this.deliver(id, delivery.event, delivery.answer);
  }

  /** Stop the branch and every actor in it. */
  stop(): void {
    stop(this.node as never);
  }
}
