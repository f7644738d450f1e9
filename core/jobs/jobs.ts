import { dispatch, stop, type Ref } from 'nact';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { spawnJobActor, type JobMessage } from './job-actor.js';
import type { JobEvent } from './job-steps.js';

/** How long a caller waits at most for a job actor's answer: no message to an actor waits without a limit. */
export const SEND_TIMEOUT_MS = 10_000;

type Answer = (result: JobRecord | Error) => void;

/** An event handed to an actor and not answered yet: handed on to the next incarnation if this one stops. */
interface Delivery {
  event: JobEvent;
  answer: Answer;
}

interface ActorEntry {
  ref: Ref<JobMessage>;
  waiting: Set<Delivery>;
}

/**
 * The `jobs` branch of the supervision tree: one job actor per job that is not done, respawned from the
 * store when the core starts. Terminals, the scheduler and the reaper reach job actors only through here.
 *
 * Every `send` is answered, within its time limit: with the committed job, with the error the actor met
 * (a crash included), or with Timeout. An event still waiting when its actor stops is handed to the next
 * incarnation (or answered from the store). A job whose actor exceeds its restart intensity is given up: it
 * ends E with the reason, stored if the store takes it, and known here as ended until the core restarts if not.
 */
export class Jobs {
  private readonly actors = new Map<string, ActorEntry>();
  /** Jobs given up whose ending is not stored (yet): their ending as this core knows it. */
  private readonly abandoned = new Map<string, JobRecord>();

  constructor(
    private readonly parent: Ref<unknown>,
    private readonly services: CoreServices,
  ) {}

  /**
   * Respawn every job that was in the middle of a step, each resuming it. Jobs waiting in the queue (or for
   * their inputs) get an actor only when something happens to them: a burst of submissions costs no actors.
   */
  resumeAll(): number {
    const active = this.services.store.active().filter((job) => job.step !== 'queue' && job.step !== 'inputs');
    for (const job of active) this.spawn(job);
    return active.length;
  }

  /** Start the actor of a job that was just committed to the store. */
  spawn(job: JobRecord, evenIfDone = false): void {
    if (this.actors.has(job.id) || (job.step === 'done' && !evenIfDone)) return;
    const entry = { waiting: new Set<Delivery>() } as ActorEntry;
    entry.ref = spawnJobActor(this.parent, job, this.services, {
      settled: (settled) => this.settled(settled),
      gaveUp: (last, reason) => this.abandon(entry, last, reason),
      stopped: () => this.stopped(entry, job.id),
    });
    this.actors.set(job.id, entry);
    dispatch(entry.ref, { type: 'resume' });
  }

  isActive(id: string): boolean {
    return this.actors.has(id);
  }

  /** Whether the job was given up and its ending could not be stored (the scheduler leaves it alone). */
  isAbandoned(id: string): boolean {
    return this.abandoned.has(id);
  }

  /**
   * Deliver an event to a job; resolves with the job once the change is committed, rejects with the actor's
   * error, or with Timeout after `timeoutMs`.
   */
  send(id: string, event: JobEvent, timeoutMs = SEND_TIMEOUT_MS): Promise<JobRecord> {
    return new Promise((resolve, reject) => {
      let answered = false;
      const answer: Answer = (result) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      const timer = setTimeout(() => answer(new RpcError(ErrorCode.Timeout, `job ${id} did not answer ${event.type} within ${timeoutMs / 1000} s`)), timeoutMs);
      this.deliver(id, event, answer);
    });
  }

  private deliver(id: string, event: JobEvent, answer: Answer): void {
    let entry = this.actors.get(id);
    if (!entry) {
      // Queued and finished jobs have no actor; the first event for them starts one (requeue revives a finished job).
      let job: JobRecord | null;
      try {
        job = this.abandoned.get(id) ?? this.services.store.get(id);
      } catch (error) {
        return answer(error as Error);
      }
      if (!job) return answer(new RpcError(ErrorCode.NotFound, `job ${id} not found`));
      if (job.step === 'done' && event.type !== 'requeue') {
        if (event.type === 'cancel') return answer(new RpcError(ErrorCode.Conflict, `job ${id} already ended (${job.state})`));
        return answer(job);
      }
      try {
        this.spawn(job, true);
      } catch (error) {
        // The core is stopping: its supervision tree takes no new actors.
        return answer(new RpcError(ErrorCode.Unavailable, `job ${id}: ${(error as Error).message}`));
      }
      this.abandoned.delete(id);
      entry = this.actors.get(id)!;
    }
    const target = entry;
    const delivery: Delivery = {
      event,
      answer: (result) => {
        target.waiting.delete(delivery);
        answer(result);
      },
    };
    target.waiting.add(delivery);
    dispatch(target.ref, { type: 'event', event, reply: delivery.answer });
  }

  private settled(job: JobRecord): void {
    if (job.step === 'done') {
      const entry = this.actors.get(job.id);
      this.actors.delete(job.id);
      if (entry) setImmediate(() => stop(entry.ref));
    }
    this.services.kickScheduler();
  }

  /** An actor stopped: what it had not answered goes to its successor, or is answered from the store. */
  private stopped(entry: ActorEntry, id: string): void {
    if (this.actors.get(id) === entry) this.actors.delete(id);
    const waiting = [...entry.waiting];
    entry.waiting.clear();
    for (const delivery of waiting) this.deliver(id, delivery.event, delivery.answer);
  }

  /** The job's actor kept crashing: the job ends E with the reason, stored if the store takes it. */
  private abandon(entry: ActorEntry, job: JobRecord, reason: string): void {
    if (this.actors.get(job.id) === entry) this.actors.delete(job.id);
    const ended: JobRecord = { ...job, step: 'done', state: 'E', stateDetails: reason, endTime: new Date().toISOString() };
    this.abandoned.set(job.id, ended);
    const logger = this.services.logger.child({ job: job.id });
    logger.error({ reason }, 'job given up: its actor kept failing');
    // Published once stored, like every change; or once the store has refused it, as this core's truth.
    const publish = () => {
      this.services.bus.publish(ended);
      this.services.kickScheduler();
    };
    Promise.resolve()
      .then(() => this.services.store.save(ended))
      .then(
        () => {
          if (this.abandoned.get(job.id) === ended) this.abandoned.delete(job.id);
          publish();
        },
        (error: Error) => {
          logger.error({ err: error?.message }, 'cannot store the end of a job given up: it stays ended until the core restarts');
          publish();
        },
      );
  }

  get size(): number {
    return this.actors.size;
  }
}
