import { forwardsOf } from '../../forwarding/job-forwards.js';
import { stageInputs } from '../../transfers/stage-inputs.js';
import { ProgressReporter, formatBytes } from '../../transfers/transfer-progress.js';
import { nodeJobDir, runnerScript } from '../node-layout.js';
import { inputsRoot } from '../job-inputs.js';
import { imageOf } from './connect.js';
import { writeRemoteFile } from './sftp-transfer.js';
import type { StepEffect } from './step-context.js';

/**
 * Upload the job's inputs, its script and its runner to the head node's job directory. Idempotent: a
 * repeated stage-in (a dropped connection, a restarted core) continues each file from what the node has,
 * and keeps the node ports chosen the first time. Progress shows in state_details as "data uploaded
 * 1.2 GB / 3.4 GB" (the words the original Sky Port used, which JupyterHub spawners look for).
 */
export const stageInStep: StepEffect = async ({ job, services, signal, emit }) => {
  const session = await services.nodes.head(job.partitionName!, signal);
  const dir = nodeJobDir(job.id);
  await session.run(`mkdir -p ${dir}/.swm`, signal);
  const sftp = await session.sftp();
  const remote = services.config.remotes.find((r) => r.name === job.remote);
  const image = imageOf(job.directives.containerImage, remote?.defaultImage ?? null);
  const ports = await forwardsOf(services).prepare(job, session);
  await writeRemoteFile(sftp, `${dir}/.swm/job.sh`, job.script, 0o755);
  await writeRemoteFile(sftp, `${dir}/.swm/run.sh`, runnerScript(job, image, ports), 0o755);
  if (job.inputs.length === 0) return { type: 'staged-in' };

  const total = job.inputs.reduce((sum, f) => sum + f.size, 0);
  const progress = new ProgressReporter(
    total,
    (done, all) => `data uploaded ${formatBytes(done)} / ${formatBytes(all)}`,
    (details) => emit({ type: 'progress', details }),
  );
  await stageInputs(session, inputsRoot(services.spool.job(job.id)), dir, job.inputs, {
    signal,
    onBytes: (n) => progress.add(n),
  });
  progress.flush();
  return { type: 'staged-in' };
};
