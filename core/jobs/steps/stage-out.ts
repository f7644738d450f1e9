import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { nodeJobDir } from '../node-layout.js';
import { getFile, inParallel, PARALLEL_FILES, statRemote } from './sftp-transfer.js';
import type { StepContext, StepEffect } from './step-context.js';

/** Where a job's results land in the spool: what `swm download` hands out. */
export const outputsDir = (jobDir: string): string => join(jobDir, 'outputs');

/** Download stdout, stderr and the declared output files into the spool's job directory. */
export async function downloadResults({ job, services, signal }: Pick<StepContext, 'job' | 'services' | 'signal'>, logsOnly = false): Promise<string[]> {
  const session = await services.nodes.head(job.partitionName!, signal);
  const sftp = await session.sftp();
  const d = job.directives;
  const wanted = [d.stdout ?? 'stdout.log', d.stderr ?? 'stderr.log', ...(logsOnly ? [] : d.outputFiles)];
  const out = outputsDir(services.spool.job(job.id));
  const remoteDir = nodeJobDir(job.id);
  const missing: string[] = [];
  await inParallel([...new Set(wanted)], PARALLEL_FILES, async (path) => {
    const remote = `${remoteDir}/${path}`;
    const stat = await statRemote(sftp, remote);
    if (!stat || stat.isDirectory) {
      missing.push(path);
      return;
    }
    const local = join(out, path);
    mkdirSync(dirname(local), { recursive: true, mode: 0o700 });
    await getFile(sftp, remote, local);
  });
  return missing;
}

export const stageOutStep: StepEffect = async (context) => {
  const missing = await downloadResults(context);
  if (missing.length) context.emit({ type: 'progress', details: `output files not found: ${missing.join(', ')}` });
  return { type: 'staged-out' };
};
