import type { CoreServices } from '../services.js';
import type { Jobs } from './jobs.js';

/** How often jobs waiting for their inputs are looked at. */
const CHECK_EVERY_MS = 60_000;

/**
 * Cancels the jobs whose declared inputs have not all arrived within `limits.inputsTimeoutSec` of their
 * submission (an upload abandoned for good), with that reason: they would otherwise wait for ever, holding
 * their partial files in the spool. Looked at when the core starts and then every minute.
 */
export class InputDeadline {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly services: CoreServices,
    private readonly jobs: Jobs,
  ) {}

  start(): void {
    this.check();
    // Every minute; a limit shorter than two minutes is looked at twice per its length.
    const every = Math.max(500, Math.min(CHECK_EVERY_MS, (this.services.config.limits.inputsTimeoutSec * 1000) / 2));
    this.timer = setInterval(() => this.check(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Cancel every job past its inputs' deadline now; returns their ids. */
  check(now = Date.now()): string[] {
    const limitSec = this.services.config.limits.inputsTimeoutSec;
    const expired = this.services.store.awaitingInputsSince(new Date(now - limitSec * 1000).toISOString());
    const hours = limitSec % 3600 === 0 ? `${limitSec / 3600} h` : `${limitSec} s`;
    for (const id of expired)
      this.jobs.send(id, { type: 'inputs-expired', reason: `canceled: its input files did not all arrive within ${hours} of its submission` }).catch((error: Error) =>
        this.services.logger.warn({ job: id, err: error?.message }, 'could not cancel a job whose inputs never arrived'),
      );
    return expired;
  }
}
