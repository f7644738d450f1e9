import { readFileSync, statSync, type Stats } from 'node:fs';
import type { SpoolPaths } from '../spool-bootstrap/paths.js';

/** How often a gate looks whether its spool is still there: a stat of one file. */
export const SPOOL_CHECK_MS = 1_000;

const gone = (error: unknown): boolean => ['ENOENT', 'ENOTDIR'].includes((error as NodeJS.ErrnoException).code ?? '');

/**
 * Calls `onGone` once when the spool a gate serves is removed, or replaced by another spool (a new certificate
 * authority in its place): a gate outlives its core on purpose, so nothing else would ever stop it. The spool's
 * CA certificate stands for the spool, because it is what makes the gate's certificate valid. Polls, because
 * fs.watch does not report the removal of the watched directory itself everywhere.
 * Returns a function that stops watching.
 */
export function watchSpool(spool: SpoolPaths, onGone: (reason: string) => void, intervalMs = SPOOL_CHECK_MS): () => void {
  let known: Stats = statSync(spool.ca.cert);
  let authority = readFileSync(spool.ca.cert, 'utf8');
  const timer = setInterval(() => {
    let now: Stats;
    try {
      now = statSync(spool.ca.cert);
    } catch (error) {
      // Anything but "not there" (EACCES, EIO) may pass; the next look decides.
      if (!gone(error)) return;
      clearInterval(timer);
      onGone(`the spool ${spool.root} was removed`);
      return;
    }
    if (now.ino === known.ino && now.dev === known.dev && now.mtimeMs === known.mtimeMs) return;
    try {
      const current = readFileSync(spool.ca.cert, 'utf8');
      if (current === authority) {
        known = now;
        return;
      }
      authority = current;
    } catch {
      return;
    }
    clearInterval(timer);
    onGone(`the spool ${spool.root} was recreated with a new certificate authority`);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
