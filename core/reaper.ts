import type { CoreServices } from './services.js';
import type { JobStep } from './store/job-record.js';

/** Steps in which a job may own a partition; a partition whose job is in none of them is an orphan. */
const OWNING: ReadonlySet<JobStep> = new Set(['partition', 'connect', 'stage-in', 'run', 'stage-out', 'teardown']);
/** A partition this young may belong to a job whose move to `partition` is still being committed. */
const GRACE_MS = 60_000;

/**
 * Finds partitions that no live job owns and deletes them: at start, and periodically. This is what makes
 * "a partition created is always deleted" hold even across lost state, crashes between two lines, or a
 * gate that created something after its caller gave up.
 */
export class Reaper {
  private timer: NodeJS.Timeout | null = null;
  private readonly firstSeen = new Map<string, number>();

  constructor(private readonly services: CoreServices) {}

  start(): void {
    const everyMs = this.services.config.reaper.intervalSec * 1000;
    this.timer = setInterval(() => void this.sweep(), everyMs);
    this.timer.unref();
    for (const gate of this.services.gates.values()) gate.on('ready', () => void this.sweep());
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** One pass over every connected gate; returns the names of the partitions it deleted. */
  async sweep(): Promise<string[]> {
    const deleted: string[] = [];
    const now = Date.now();
    for (const gate of this.services.gates.values()) {
      if (!gate.connected) continue;
      let partitions;
      try {
        partitions = await gate.call('partition.list');
      } catch (error) {
        this.services.logger.warn({ gate: gate.name, err: (error as Error).message }, 'reaper: cannot list partitions');
        continue;
      }
      for (const p of partitions) {
        if (p.status === 'deleted' || p.status === 'deleting') continue;
        const job = p.jobId ? this.services.store.get(p.jobId) : null;
        if (job && OWNING.has(job.step) && job.partitionName === p.name) {
          this.firstSeen.delete(p.id);
          continue;
        }
        // A job that is queued may be a moment away from recording its partition: give it a grace period.
        const seen = this.firstSeen.get(p.id) ?? now;
        this.firstSeen.set(p.id, seen);
        if (job && job.step === 'queue' && now - seen < GRACE_MS) continue;
        try {
          await gate.call('partition.delete', { id: p.id });
          this.firstSeen.delete(p.id);
          deleted.push(p.name);
          this.services.logger.warn({ gate: gate.name, partition: p.name, job: p.jobId }, 'reaper: deleted orphaned partition');
        } catch (error) {
          this.services.logger.error({ gate: gate.name, partition: p.name, err: (error as Error).message }, 'reaper: delete failed');
        }
      }
    }
    return deleted;
  }
}
