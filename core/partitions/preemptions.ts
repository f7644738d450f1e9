import type { Partition } from '../../terminal-protocol/common.js';
import type { Jobs } from '../jobs/jobs.js';
import type { CoreServices } from '../services.js';

/** The prefix a gate gives the error of a partition whose spot node the cloud took back. */
export const PREEMPTED = 'Preempted:';

/** What a preempted job says while it waits again: "Preempted (2): Azure evicted the Spot VM of node 1". Pure. */
export const preemptedDetails = (count: number, error: string): string => `Preempted (${count}): ${error.slice(PREEMPTED.length).trim()}`;

/**
 * Jobs on spot nodes the cloud took back. The gate reports the partition failed with a reason starting
 * `Preempted:`; the partition itself is then lost and deleted as any other (partitions.ts). The job that held
 * it is queued again with reason Preempted and its count, up to `limits.maxPreemptions` times; after that its
 * run fails as on any lost node, unless the job asked `#SWM spot fallback`: then it is queued once more, and the
 * scheduler gives it on-demand nodes (scheduler/spot.ts).
 */
export class Preemptions {
  private readonly onGateEvent = (seen: Partition) => this.seen(seen);

  constructor(
    private readonly services: CoreServices,
    private readonly jobs: Jobs,
  ) {}

  start(): void {
    for (const gate of this.services.gates.values()) gate.on('partition', this.onGateEvent);
  }

  stop(): void {
    for (const gate of this.services.gates.values()) gate.off('partition', this.onGateEvent);
  }

  private seen(seen: Partition): void {
    if (seen.status !== 'failed' || !seen.error?.startsWith(PREEMPTED)) return;
    const p = this.services.partitions.get(seen.name);
    if (!p?.jobId || p.state !== 'busy') return;
    const job = this.services.store.get(p.jobId);
    if (!job || job.step === 'done') return;
    const preempted = job.attempts + 1;
    const { maxPreemptions } = this.services.config.limits;
    const fallback = preempted > maxPreemptions && job.directives.spot !== false && job.directives.spot?.fallback === true;
    if (preempted > maxPreemptions && !fallback) {
      this.services.logger.warn({ job: job.id, partition: p.name, attempts: job.attempts }, 'job preempted again: not queued again (limits.maxPreemptions)');
      return;
    }
    this.services.logger.info({ job: job.id, partition: p.name, reason: seen.error, onDemand: fallback }, 'job preempted: queued again');
    const details = preemptedDetails(preempted, seen.error) + (fallback ? '; on on-demand nodes from now on (spot fallback)' : '');
    this.jobs.send(job.id, { type: 'requeue', details }).then(
      () => this.services.kickScheduler(),
      (error: Error) => this.services.logger.warn({ job: job.id, err: error.message }, 'cannot queue a preempted job again'),
    );
  }
}
