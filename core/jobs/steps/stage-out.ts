import { join } from 'node:path';
import { fetchOutputs, selectOutputs } from '../../transfers/stage-outputs.js';
import { ProgressReporter, formatBytes } from '../../transfers/transfer-progress.js';
import { writeFile } from 'node:fs/promises';
import { LOG_CLOCK_FILE, MAX_CLOCK_BYTES, nodeJobDir, ranksDir } from '../node-layout.js';
import { nodeAgent } from '../../nodes/node-agent-client.js';
import { readRemoteChunk } from './sftp-transfer.js';
import type { StepContext, StepEffect } from './step-context.js';

/** Where a job's results land in the spool: what `swm download` hands out. */
export const outputsDir = (jobDir: string): string => join(jobDir, 'outputs');
/** Downloads in progress, outside the results until they are complete and verified. */
export const stagingDir = (jobDir: string): string => join(jobDir, 'staging');

/**
 * Download stdout, stderr and the declared output files (names, directories, patterns) into the spool's job
 * directory, each verified against the node before it joins the results. Returns the entries that matched
 * nothing, and those refused (a symbolic link leading out of the job directory), as readable notes.
 */
/** Where an ended job's log clock is kept in its spool directory. */
export const logClockPath = (jobDir: string): string => join(jobDir, 'logclock');

export async function downloadResults(
  { job, services, signal, emit }: Pick<StepContext, 'job' | 'services' | 'signal'> & Partial<Pick<StepContext, 'emit'>>,
  logsOnly = false,
): Promise<string[]> {
  const session = await services.nodes.head(job.partitionName!, signal);
  const sftp = await session.sftp();
  const d = job.directives;
  // With `run-on all`, the other ranks' logs, gathered on the head in ranks/<rank>/, come with the results.
  const ranks = !logsOnly && d.runOn === 'all' ? [ranksDir] : [];
  const wanted = [...new Set([d.stdout ?? 'stdout.log', d.stderr ?? 'stderr.log', ...(logsOnly ? [] : d.outputFiles), ...ranks])];
  const remoteDir = nodeJobDir(job.id);
  const jobDir = services.spool.job(job.id);
  const selection = await selectOutputs(sftp, remoteDir, wanted);
  const total = selection.files.reduce((n, f) => n + f.size, 0);
  const progress = emit && !logsOnly
    ? new ProgressReporter(total, (done, all) => `downloading results ${formatBytes(done)} / ${formatBytes(all)}`, (details) => emit({ type: 'progress', details }))
    : null;
  await fetchOutputs(session, remoteDir, selection.files, outputsDir(jobDir), stagingDir(jobDir), {
    signal,
    onBytes: (n) => {
      progress?.add(n);
      services.metrics.transferred('stage-out', n);
    },
  });
  // The log clock comes along (swm logs --since, once the job has ended); a job without one has none to keep.
  // Through the node's agent where it runs one (one round trip); by SFTP else, or for a clock over the bound (its start).
  const agent = await nodeAgent(session);
  const bySftp = () => readRemoteChunk(sftp, `${remoteDir}/${LOG_CLOCK_FILE}`, 0, MAX_CLOCK_BYTES).catch(() => null);
  const clock = agent
    ? await agent.readFile(`${remoteDir}/${LOG_CLOCK_FILE}`, MAX_CLOCK_BYTES, signal).then(
        (r) => r.data,
        (error: unknown) => ((error as { code?: string }).code === 'EFBIG' ? bySftp() : null),
      )
    : await bySftp();
  if (clock) await writeFile(logClockPath(jobDir), clock);
  return [...selection.missing, ...selection.refused.map((path) => `${path} (a symbolic link leading outside the job directory: refused)`)];
}

export const stageOutStep: StepEffect = async (context) => {
  const missing = await downloadResults(context);
  if (missing.length) context.emit({ type: 'progress', details: `output files not found: ${missing.join(', ')}` });
  return { type: 'staged-out' };
};
