import type { Job, JobState } from '../../terminal-protocol/job.js';

/**
 * Queue depth and throughput over the last hour, from the jobs' own time stamps (submit, start, end): a
 * snapshot of jobs in, figures out, no I/O. A job is queued from its submission until it starts running
 * (or ends without having run); it counts towards throughput in the minute it ends.
 */

export interface ActivityPoint {
  /** End of the bucket (ISO time). */
  at: string;
  /** Jobs queued (submitted, not running yet) at that moment. */
  queued: number;
  /** Jobs that ended during the bucket (finished, failed or canceled). */
  ended: number;
}

export interface Activity {
  windowSec: number;
  bucketSec: number;
  /** Oldest first; the last one ends now. */
  points: ActivityPoint[];
  /** Jobs waiting to run right now. */
  queuedNow: number;
  /** Over the whole window. */
  submitted: number;
  started: number;
  ended: number;
  endedByState: Partial<Record<JobState, number>>;
}

export const ACTIVITY_WINDOW_MS = 3_600_000;
export const ACTIVITY_BUCKET_MS = 60_000;

const time = (iso: string | null): number | null => {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
};

/** When a job stops waiting: it starts running, or it ends without having run (canceled, failed). */
const leftQueue = (job: Job): number | null => time(job.start_time) ?? time(job.end_time);

export function jobActivity(jobs: readonly Job[], now: number, windowMs = ACTIVITY_WINDOW_MS, bucketMs = ACTIVITY_BUCKET_MS): Activity {
  const count = Math.max(1, Math.round(windowMs / bucketMs));
  const from = now - count * bucketMs;
  const queuedAt = (t: number): number =>
    jobs.filter((j) => {
      const submitted = time(j.submit_time);
      const left = leftQueue(j);
      return submitted !== null && submitted <= t && (left === null || left > t);
    }).length;
  const endedPerBucket = new Array<number>(count).fill(0);
  const endedByState: Partial<Record<JobState, number>> = {};
  let submitted = 0;
  let started = 0;
  let ended = 0;
  for (const job of jobs) {
    const s = time(job.submit_time);
    if (s !== null && s > from && s <= now) submitted++;
    const r = time(job.start_time);
    if (r !== null && r > from && r <= now) started++;
    const e = time(job.end_time);
    if (e === null || e <= from || e > now) continue;
    ended++;
    endedByState[job.state] = (endedByState[job.state] ?? 0) + 1;
    endedPerBucket[Math.min(count - 1, Math.floor((e - from - 1) / bucketMs))]!++;
  }
  const points = endedPerBucket.map((endedHere, i) => {
    const at = from + (i + 1) * bucketMs;
    return { at: new Date(at).toISOString(), queued: queuedAt(at), ended: endedHere };
  });
  return { windowSec: windowMs / 1000, bucketSec: bucketMs / 1000, points, queuedNow: queuedAt(now), submitted, started, ended, endedByState };
}
