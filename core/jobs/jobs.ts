import type { Ref } from 'nact';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { Supervisor } from '../supervision/supervisor.js';
import { jobMachine } from './job-actor.js';
import { stepsWhere, type JobEvent } from './job-steps.js';

export { SEND_TIMEOUT_MS } from '../supervision/supervisor.js';
/** The restart intensity of job actors (the supervision tree's, as every durable actor's). */
export { RESTART_INTENSITY as JOB_ACTOR_RESTARTS } from '../supervision/durable-actor.js';

const RESUMABLE = new Set(stepsWhere('resumable'));

/**
 * The `jobs` branch of the supervision tree: one job actor per job that is in the middle of a step, respawned
 * from the store when the core starts. Terminals, the scheduler and the reaper reach job actors only through
 * here. Queued and finished jobs have no actor: the first event for one starts it (a requeue revives a
 * finished job). A job whose actor exceeds its restart intensity is given up: it ends E with the reason,
 * stored if the store takes it, and known here as ended until the core restarts if not.
 */
export class Jobs {
  private readonly supervisor: Supervisor<JobRecord, JobEvent>;
  /** Jobs given up whose ending is not stored (yet): their ending as this core knows it. */
  private readonly abandoned = new Map<string, JobRecord>();

  constructor(
    parent: Ref<unknown>,
    private readonly services: CoreServices,
  ) {
    this.supervisor = new Supervisor(parent, {
      name: 'jobs',
      idOf: (job) => job.id,
      machineFor: (job) => jobMachine(job, services, (committed, moved) => this.committed(committed, moved)),
      wake: (id, event) => {
        const job = this.abandoned.get(id) ?? this.services.store.get(id);
        if (!job) return { answer: new RpcError(ErrorCode.NotFound, `job ${id} not found`) };
        if (job.step === 'done' && event.type !== 'requeue')
          return { answer: event.type === 'cancel' ? new RpcError(ErrorCode.Conflict, `job ${id} already ended (${job.state})`) : job };
        this.abandoned.delete(id);
        return { start: job };
      },
      gaveUp: (job, reason) => this.abandon(job, reason),
    });
  }

  /** Respawn every job that was in the middle of a step, each performing it again. */
  resumeAll(): number {
    const active = this.services.store.active([...RESUMABLE]);
    for (const job of active) this.supervisor.start(job);
    return active.length;
  }

  isActive(id: string): boolean {
    return this.supervisor.has(id);
  }

  /** Whether the job was given up and its ending could not be stored (the scheduler leaves it alone). */
  isAbandoned(id: string): boolean {
    return this.abandoned.has(id);
  }

  /** Deliver an event; resolves with the job once the change is committed, rejects with the actor's error or Timeout. */
  send(id: string, event: JobEvent, timeoutMs?: number): Promise<JobRecord> {
    return this.supervisor.send(id, event, timeoutMs);
  }

  get size(): number {
    return this.supervisor.size;
  }

  stop(): void {
    this.supervisor.stop();
  }

  /**
   * A job's change was committed; `moved`: into the queue or its end (the scheduler has something new to place).
   * An actor lives while its job has work in a step (the resumable ones); a job waiting in the queue or for its
   * inputs is a record, woken by its next event (a placement, a pending reason): 100,000 queued jobs hold no actor.
   */
  private committed(job: JobRecord, moved: boolean): void {
    if (!RESUMABLE.has(job.step)) this.supervisor.retire(job.id);
    if (moved) this.services.kickScheduler();
  }

  /** The job's actor kept crashing: the job ends E with the reason, stored if the store takes it. */
  private abandon(job: JobRecord, reason: string): void {
    const ended: JobRecord = { ...job, step: 'done', state: 'E', stateDetails: `internal error: the job ${reason}`, endTime: new Date().toISOString() };
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
}
