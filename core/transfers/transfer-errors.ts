import { shellQuote, type NodeSession } from '../nodes/node-session.js';
import { isTransient } from '../jobs/steps/node-retry.js';
import { formatBytes } from './transfer-progress.js';

/** Bytes free in `dir` on the node (POSIX `df -P`), or null when the node cannot say. */
export async function nodeFreeBytes(session: NodeSession, dir: string): Promise<number | null> {
  try {
    const out = await session.run(`df -Pk ${shellQuote(dir)} | tail -n 1`);
    const fields = out.trim().split(/\s+/);
    const kib = Number(fields[3]);
    return Number.isFinite(kib) ? kib * 1024 : null;
  } catch {
    return null;
  }
}

const mentionsNoSpace = (error: unknown): boolean => /ENOSPC|no space|disk full|quota/i.test((error as Error)?.message ?? '');

/**
 * Turn a failed write to the node into an error a person can act on: a full disk says so (SFTP servers
 * often report it only as "Failure"), a dropped connection stays as it is (the step retries it).
 */
export async function diagnoseNodeWrite(
  session: NodeSession,
  dir: string,
  path: string,
  needed: number,
  error: unknown,
  /** What was being written, for the message (a batch of files names its first one and how many more). */
  what = `input "${path}"`,
): Promise<unknown> {
  if (isTransient(error) || !session.isOpen) return error;
  const message = (error as Error)?.message ?? String(error);
  if (/vanished|changed in the core/.test(message)) return error;
  const free = await nodeFreeBytes(session, dir);
  if (mentionsNoSpace(error) || (free !== null && free < Math.min(needed, 64 * 1024))) {
    return new Error(
      `no space left on node ${session.node.name} for ${what}${free !== null ? ` (${formatBytes(free)} free, ${formatBytes(needed)} needed)` : ''}`,
    );
  }
  return new Error(`writing ${what} to node ${session.node.name} failed: ${message}`);
}

/** A failed write on the core's own disk, worded for `state_details`. */
export function describeLocalWrite(path: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new Error(`no space left on the core's disk for "${path}"`);
  return error instanceof Error ? error : new Error(String(error));
}
