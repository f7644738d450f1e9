/**
 * When scheduling passes run. Every submit, completion, partition change and gate event kicks the scheduler; a
 * pass serves every kick made before it starts (coalesced: one pass per burst, never one per submit), and the
 * next pass waits at least PASS_MIN_GAP_MS, and longer after a long pass, so that the scheduler takes at most
 * PASS_SHARE of the event loop however large the queue (Slurm's batch_sched_delay and sched_min_interval, the
 * second scaled by what a pass costs here).
 *
 *   kick ─► pass due? ── yes ─► (served by it)
 *             │ no
 *             ▼
 *   wait passDelayMs(last pass's duration, time since it ended) ─► pass ─► kicks meanwhile? ─► again
 */

/** The shortest time between two passes: what gathers a burst of submits into one pass. */
export const PASS_MIN_GAP_MS = 10;
/** The most of the event loop's time scheduling passes take, back to back. */
export const PASS_SHARE = 0.2;

/** How long to wait before the next pass, given the last one's duration and the time since it ended. Pure. */
export function passDelayMs(lastPassMs: number, sinceLastPassEndedMs: number): number {
  const gap = Math.max(PASS_MIN_GAP_MS, (lastPassMs * (1 - PASS_SHARE)) / PASS_SHARE);
  return Math.max(0, gap - sinceLastPassEndedMs);
}

/**
 * Turns kicks into paced passes: `start` is called to begin a pass, and the pass reports its end with `ended`.
 * At most one pass is due or running at a time; kicks while one runs make one more after it.
 */
export class PassPacer {
  private due: NodeJS.Timeout | null = null;
  private running = false;
  private kickedWhileRunning = false;
  private lastPassMs = 0;
  private lastEndedAt = Number.NEGATIVE_INFINITY;
  private stopped = false;

  constructor(private readonly start: () => void) {}

  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.kickedWhileRunning = true;
      return;
    }
    if (this.due) return;
    this.due = setTimeout(() => {
      this.due = null;
      this.running = true;
      this.start();
    }, passDelayMs(this.lastPassMs, performance.now() - this.lastEndedAt));
    this.due.unref();
  }

  /** The pass that `start` began is over (it took `ms` of the event loop). */
  ended(ms: number): void {
    this.running = false;
    this.lastPassMs = ms;
    this.lastEndedAt = performance.now();
    if (this.kickedWhileRunning) {
      this.kickedWhileRunning = false;
      this.kick();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.due) clearTimeout(this.due);
    this.due = null;
  }
}
