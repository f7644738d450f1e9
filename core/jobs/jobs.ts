import { dispatch, stop, type Ref } from 'nact';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { spawnJobActor, type JobMessage } from './job-actor.js';
import type { JobEvent } from './job-steps.js';

/**
 * The `jobs` branch of the supervision tree: one job actor per job that is not done, respawned from the
 * store when the core starts. Terminals, the scheduler and the reaper reach job actors only through here.
 */
export class Jobs {
  private readonly actors = new Map<string, Ref<JobMessage>>();

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
    const ref = spawnJobActor(this.parent, job, this.services, (settled) => this.settled(settled));
    this.actors.set(job.id, ref);
    dispatch(ref, { type: 'resume' });
  }

  isActive(id: string): boolean {
    return this.actors.has(id);
  }

  /** Deliver an event to a job; resolves with the job once the change is committed. */
  send(id: string, event: JobEvent): Promise<JobRecord> {
    let ref = this.actors.get(id);
    if (!ref) {
      // Queued and finished jobs have no actor; the first event for them starts one (requeue revives a finished job).
      const job = this.services.store.get(id);
      if (!job) return Promise.reject(new RpcError(ErrorCode.NotFound, `job ${id} not found`));
      if (job.step === 'done' && event.type !== 'requeue') {
        if (event.type === 'cancel') return Promise.reject(new RpcError(ErrorCode.Conflict, `job ${id} already ended (${job.state})`));
        return Promise.resolve(job);
      }
      this.spawn(job, true);
      ref = this.actors.get(id)!;
    }
    return new Promise((resolve, reject) =>
      dispatch(ref, { type: 'event', event, reply: (r) => (r instanceof Error ? reject(r) : resolve(r)) }),
    );
  }

  private settled(job: JobRecord): void {
    if (job.step === 'done') {
      const ref = this.actors.get(job.id);
      this.actors.delete(job.id);
      if (ref) setImmediate(() => stop(ref));
    }
    this.services.kickScheduler();
  }

  get size(): number {
    return this.actors.size;
  }
}
