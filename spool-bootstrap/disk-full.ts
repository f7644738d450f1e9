import { statfsSync } from 'node:fs';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';

/** Codes that mean "no room left": errno values of file writes, and SQLite's answer to a write that found none. */
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

/**
 * Below this many free bytes a file system counts as full when it answers a write with a vague error:
 * SQLite reports a shared-memory file it could not grow as SQLITE_IOERR_SHMSIZE, not SQLITE_FULL.
 */
const NEARLY_FULL_BYTES = 1024 * 1024;

/** Bytes an unprivileged writer may still use on the file system holding `path`; null when it cannot be told. */
export function freeBytes(path: string): number | null {
  try {
    const s = statfsSync(path);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

/** Size in bytes of the file system holding `path`; null when it cannot be told. */
export function fileSystemBytes(path: string): number | null {
  try {
    const s = statfsSync(path);
    return s.blocks * s.bsize;
  } catch {
    return null;
  }
}

/**
 * Whether `error` means that the disk was full. With `path`, an I/O error of SQLite (SQLITE_IOERR_*) counts
 * too when the file system holding `path` has (almost) no room left, since SQLite names some of those
 * failures after the operation rather than after the lack of space.
 */
export function isDiskFull(error: unknown, path?: string): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  if (NO_SPACE.has(code)) return true;
  if (path === undefined || !code.startsWith('SQLITE_IOERR')) return false;
  const free = freeBytes(path);
  return free !== null && free < NEARLY_FULL_BYTES;
}

/** A write refused before it was tried, for want of room; it carries the code the system would have answered. */
export class DiskFullError extends Error {
  readonly code = 'ENOSPC';
  constructor(message: string) {
    super(message);
    this.name = 'DiskFullError';
  }
}

/** The wire's answer to a submit or an upload that could not be stored (REST: 507). */
export const spoolDiskFull = (detail = 'nothing was stored'): RpcError =>
  new RpcError(ErrorCode.DiskFull, `the spool's disk is full: ${detail}; retry once space is freed`);

/** What to throw at the wire for `error`: the disk-full refusal when it is one, else `error` itself. */
export const refusalIfDiskFull = (error: unknown, detail?: string): unknown => (isDiskFull(error) ? spoolDiskFull(detail) : error);
