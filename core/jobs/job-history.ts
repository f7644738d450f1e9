import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { outputsDir } from './steps/stage-out.js';

/**
 * A job's history in the spool: the results of earlier attempts kept across requeues, and the purge of old jobs'
 * files once the configured retention has passed (the records, cost included, stay in the store).
 *
 *   jobs/<id>/outputs/                 the current attempt's results (stdout.log, stderr.log, output files)
 *   jobs/<id>/attempts/<n>/outputs/    attempt n's, moved aside when the job was requeued
 *   jobs/<id>/attempts/<n>/attempt.json   its figures: when it started and ended, how, where
 */
export const attemptsDir = (jobDir: string): string => join(jobDir, 'attempts');

/** The job was requeued (attempt `previous.attempts + 1` is over): keep its results and figures aside. */
export function keepAttempt(services: CoreServices, previous: JobRecord): void {
  const jobDir = services.spool.job(previous.id);
  const dir = join(attemptsDir(jobDir), String(previous.attempts + 1));
  mkdirSync(dir, { recursive: true });
  if (existsSync(outputsDir(jobDir))) renameSync(outputsDir(jobDir), join(dir, 'outputs'));
  const { state, stateDetails, startTime, endTime, exitcode, signal, remote, flavor, nodeNames, reason } = previous;
  writeFileSync(join(dir, 'attempt.json'), `${JSON.stringify({ attempt: previous.attempts + 1, state, stateDetails, reason, startTime, endTime, exitcode, signal, remote, flavor, nodeNames }, null, 2)}\n`);
}

const DAY_MS = 86_400_000;
/** How often the spool is looked through for jobs past their retention. */
const PURGE_EVERY_MS = 3_600_000;

/** Deletes the files of jobs ended more than `history.retentionDays` ago, at start and hourly. */
export class JobRetention {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly services: CoreServices) {}

  start(): void {
    if (this.services.config.history.retentionDays === null) return;
    this.purge();
    this.timer = setInterval(() => this.purge(), PURGE_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Delete the spool files of every job ended before the retention's cutoff; returns their ids. */
  purge(nowMs = Date.now()): string[] {
    const days = this.services.config.history.retentionDays;
    if (days === null) return [];
    const cutoff = nowMs - days * DAY_MS;
    let names: string[];
    try {
      names = readdirSync(this.services.spool.jobsDir);
    } catch {
      return [];
    }
    const purged: string[] = [];
    for (const id of names) {
      const job = this.services.store.get(id);
      if (!job || job.step !== 'done' || !job.endTime || Date.parse(job.endTime) >= cutoff) continue;
      rmSync(this.services.spool.job(id), { recursive: true, force: true });
      purged.push(id);
    }
    if (purged.length) this.services.logger.info({ jobs: purged.length, retentionDays: days }, 'purged the files of old jobs');
    return purged;
  }
}
