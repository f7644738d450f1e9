import { join, posix } from 'node:path';
import { shellQuote } from '../../nodes/node-session.js';
import { imageOf } from './connect.js';
import { inParallel, PARALLEL_FILES, putFile, writeRemoteFile } from './sftp-transfer.js';
import type { StepEffect } from './step-context.js';
import { nodeJobDir, runnerScript } from '../node-layout.js';
import { throwIfAborted } from './step-context.js';

const formatBytes = (n: number): string =>
  n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(1)} MB` : `${(n / 1024).toFixed(1)} KB`;

/** Upload the job's script, its runner and its inputs to the head node's job directory (idempotent: overwrites). */
export const stageInStep: StepEffect = async ({ job, services, signal, emit }) => {
  const session = await services.nodes.head(job.partitionName!, signal);
  const dir = nodeJobDir(job.id);
  const dirs = new Set([`${dir}/.swm`, ...job.inputs.map((f) => posix.dirname(`${dir}/${f.path}`))]);
  await session.run(`mkdir -p ${[...dirs].map(shellQuote).join(' ')}`, signal);
  const sftp = await session.sftp();
  const remote = services.config.remotes.find((r) => r.name === job.remote);
  const image = imageOf(job.directives.containerImage, remote?.defaultImage ?? null);
  await writeRemoteFile(sftp, `${dir}/.swm/job.sh`, job.script, 0o755);
  await writeRemoteFile(sftp, `${dir}/.swm/run.sh`, runnerScript(job, image), 0o755);
  const total = job.inputs.reduce((sum, f) => sum + f.size, 0);
  let sent = 0;
  const localRoot = join(services.spool.job(job.id), 'inputs');
  await inParallel(job.inputs, PARALLEL_FILES, async (file) => {
    throwIfAborted(signal);
    await putFile(sftp, join(localRoot, file.path), `${dir}/${file.path}`);
    sent += file.size;
    if (job.inputs.length > 1) emit({ type: 'progress', details: `uploading data ${formatBytes(sent)} / ${formatBytes(total)}` });
  });
  return { type: 'staged-in' };
};
