import { isLive } from './partitions/partition-record.js';
import type { CoreServices } from './services.js';

/** How long the records of deleted partitions are kept (`swm partitions --all` shows the last hour's). */
const PARTITION_HISTORY_MS = 7 * 24 * 3600_000;

/**
 * Finds partitions a gate holds that the core does not account for, and deletes them: at start, on every
 * gate (re)connection, and periodically. The core records every partition (core/partitions/) before it asks a
 * gate for it and keeps the record until the gate has deleted it, so a partition at a gate with no live record
 * here is an orphan: one created by a gate after its caller gave up, or whose record was lost. This is what
 * makes "a partition created is always deleted" hold even across lost state and crashes between two lines.
 */
export class Reaper {
  private timer: NodeJS.Timeout | null = null;

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
    this.forgetOldHistory();
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
        const record = this.services.store.partition(p.name);
        if (record && isLive(record)) continue;
        try {
          await gate.call('partition.delete', { id: p.id });
          deleted.push(p.name);
          this.services.logger.warn({ gate: gate.name, partition: p.name, job: p.jobId }, 'reaper: deleted orphaned partition');
        } catch (error) {
          this.services.logger.error({ gate: gate.name, partition: p.name, err: (error as Error).message }, 'reaper: delete failed');
        }
      }
    }
    return deleted;
  }

  /** Records of partitions deleted more than a week ago go (a burst of cold jobs leaves one per job). */
  private forgetOldHistory(): void {
    try {
      const forgotten = this.services.store.purgeDeletedPartitions(Date.now() - PARTITION_HISTORY_MS);
      if (forgotten) this.services.logger.info({ forgotten }, 'reaper: forgot the records of partitions deleted over a week ago');
    } catch (error) {
      this.services.logger.warn({ err: (error as Error).message }, 'reaper: cannot forget old partition records');
    }
  }
}
