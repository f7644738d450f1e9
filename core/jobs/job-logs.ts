import { closeSync, existsSync, openSync, readSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { LOG_CLOCK_FILE, LOG_CLOCK_SEC, MAX_CLOCK_BYTES, nodeJobDir } from './node-layout.js';
import { readRemoteChunk } from './steps/sftp-transfer.js';
import { logClockPath, outputsDir } from './steps/stage-out.js';

const readLocalChunk = (path: string, offset: number, length: number): Buffer | null => {
  if (!existsSync(path)) return null;
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const n = Math.max(0, Math.min(length, size - offset));
    const buffer = Buffer.alloc(n);
    if (n) readSync(fd, buffer, 0, n, offset);
    return buffer;
  } finally {
    closeSync(fd);
  }
};

/** The file of a job's stdout or stderr, relative to its directory. */
export const logFileName = (job: JobRecord, stream: 'stdout' | 'stderr'): string =>
  stream === 'stdout' ? (job.directives.stdout ?? 'stdout.log') : (job.directives.stderr ?? 'stderr.log');

/**
 * The longest start of `data` that ends on a whole UTF-8 character: a character cut in two at the end (by a
 * read's limit, or not yet all written) is left for the next piece, so that the text sent re-encodes to the
 * same bytes and offsets counted in bytes stay exact.
 */
export function wholeCharacters(data: Buffer): Buffer {
  const end = data.length;
  for (let i = end - 1; i >= Math.max(0, end - 4); i--) {
    const byte = data[i]!;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back for its lead
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return i + length > end ? data.subarray(0, i) : data;
  }
  return data;
}

/**
 * A chunk of a job's stdout or stderr: from its node while the job runs, from the spool once downloaded.
 * `final` means nothing more will ever be appended.
 */
export async function readJobLog(
  services: CoreServices,
  job: JobRecord,
  stream: 'stdout' | 'stderr',
  offset: number,
  limit: number,
): Promise<{ data: string; offset: number; final: boolean }> {
  const name = logFileName(job, stream);
  const local = join(outputsDir(services.spool.job(job.id)), name);
  const onNode = job.step === 'run' || (job.step === 'stage-out' && !existsSync(local));
  let chunk: Buffer | null = null;
  if (onNode && job.partitionName) {
    const session = await services.nodes.current(job.partitionName);
    if (session) chunk = await readRemoteChunk(await session.sftp(), `${nodeJobDir(job.id)}/${name}`, offset, limit).catch(() => null);
  } else chunk = readLocalChunk(local, offset, limit);
  const read = chunk ?? Buffer.alloc(0);
  const final = job.step === 'done' && read.length < limit;
  // A character cut at the end waits for the next read, unless nothing more will ever come (or the limit is
  // smaller than one character).
  const whole = wholeCharacters(read);
  const data = final || (whole.length === 0 && read.length === limit) ? read : whole;
  return { data: data.toString('utf8'), offset: offset + data.length, final };
}

/**
 * The offset from which a log holds what was written at or after `sinceMs`, from the log clock's lines
 * ("<epoch seconds> <stdout bytes> <stderr bytes>", in time order): the size at the last line before
 * `sinceMs` (what follows it was written after that line's moment, so nothing written since is left out).
 * Pure.
 */
export function clockOffset(clock: string, stream: 'stdout' | 'stderr', sinceMs: number): number {
  let offset = 0;
  for (const line of clock.split('\n')) {
    const [time, out, err] = line.trim().split(/\s+/).map(Number);
    if (time === undefined || !Number.isFinite(time) || time * 1000 > sinceMs) break;
    const size = stream === 'stdout' ? out : err;
    if (size !== undefined && Number.isFinite(size)) offset = size;
  }
  return offset;
}

/** job.log.position: where the output a job wrote since a moment starts (see clockOffset). */
export async function logPosition(
  services: CoreServices,
  job: JobRecord,
  stream: 'stdout' | 'stderr',
  sinceMs: number,
): Promise<{ offset: number; precisionSec: number | null }> {
  const local = logClockPath(services.spool.job(job.id));
  let clock: Buffer | null = null;
  if (job.step === 'run' || (job.step === 'stage-out' && !existsSync(local))) {
    const session = job.partitionName ? await services.nodes.current(job.partitionName) : null;
    if (session) clock = await readRemoteChunk(await session.sftp(), `${nodeJobDir(job.id)}/${LOG_CLOCK_FILE}`, 0, MAX_CLOCK_BYTES).catch(() => null);
  } else clock = readLocalChunk(local, 0, MAX_CLOCK_BYTES);
  if (!clock) return { offset: 0, precisionSec: null };
  return { offset: clockOffset(clock.toString('utf8'), stream, sinceMs), precisionSec: LOG_CLOCK_SEC };
}
