/** A change of what a job says it is doing (its state details). */
export interface DetailsChange {
  jobId: string;
  details: string;
}

/**
 * What jobs waiting on an unavailable gate say, and what they said before (said again once the gate is back and
 * the job has not moved on meanwhile). No I/O: the scheduler gathers who waits on what, applies the changes, and
 * keeps one of these for the core's lifetime.
 *
 *   queued job, remote's gate not answering ──► "gate local is not answering (no heartbeat for 6 s)"
 *   gate answers again ──► "queued" (unless the job was scheduled, canceled, ... meanwhile)
 */
export class WaitReasons {
  private readonly shown = new Map<string, { reason: string; before: string }>();

  /** How many jobs show a reason of ours (the scheduler keeps looking at them until the gate is back). */
  get size(): number {
    return this.shown.size;
  }

  /**
   * @param waiting the jobs that wait on an unavailable gate now, with its reason
   * @param detailsOf a job's current state details, or null if it has ended or is gone
   * @param unseen jobs this look left out (a change to them is still on its way): kept as they are
   */
  changes(waiting: ReadonlyMap<string, string>, detailsOf: (jobId: string) => string | null, unseen: (jobId: string) => boolean = () => false): DetailsChange[] {
    const out: DetailsChange[] = [];
    for (const [jobId, reason] of waiting) {
      const current = detailsOf(jobId);
      if (current === null || current === reason) continue;
      const before = this.shown.get(jobId)?.reason === current ? this.shown.get(jobId)!.before : current;
      this.shown.set(jobId, { reason, before });
      out.push({ jobId, details: reason });
    }
    for (const [jobId, { reason, before }] of this.shown) {
      if (waiting.has(jobId) || unseen(jobId)) continue;
      this.shown.delete(jobId);
      // The job moved on by itself (scheduled, canceled, its step ended): its own details stand.
      if (detailsOf(jobId) === reason) out.push({ jobId, details: before });
    }
    return out;
  }
}
