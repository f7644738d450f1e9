import { closeSync, existsSync, openSync, readSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { nodeJobDir } from './node-layout.js';
import { readRemoteChunk } from './steps/sftp-transfer.js';
import { outputsDir } from './steps/stage-out.js';

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
  const name = stream === 'stdout' ? (job.directives.stdout ?? 'stdout.log') : (job.directives.stderr ?? 'stderr.log');
  const local = join(outputsDir(services.spool.job(job.id)), name);
  const onNode = job.step === 'run' || (job.step === 'stage-out' && !existsSync(local));
  let chunk: Buffer | null = null;
  if (onNode && job.partitionName) {
    const session = await services.nodes.current(job.partitionName);
    if (session) chunk = await readRemoteChunk(await session.sftp(), `${nodeJobDir(job.id)}/${name}`, offset, limit).catch(() => null);
  } else chunk = readLocalChunk(local, offset, limit);
  const data = chunk ?? Buffer.alloc(0);
  const final = job.step === 'done' && data.length < limit;
  return { data: data.toString('utf8'), offset: offset + data.length, final };
}
