import { forwardsOf } from '../../forwarding/job-forwards.js';
import { stageInputsToNodes } from '../../transfers/stage-inputs.js';
import { ProgressReporter, formatBytes } from '../../transfers/transfer-progress.js';
import { nodeAgent } from '../../nodes/node-agent-client.js';
import type { NodeSession } from '../../nodes/node-session.js';
import type { NodePort } from '../../forwarding/node-ports.js';
import { hostfileText, jobEnvFile, nodeJobDir, peerAddress, runnerScript, type NodePlacement } from '../node-layout.js';
import { inputsRoot } from '../job-inputs.js';
import { jobImage } from './connect.js';
import { makeRemoteDirs, removeRemote, writeRemoteFile } from './sftp-transfer.js';
import type { StepContext, StepEffect } from './step-context.js';

/**
 * The nodes a job's script runs on, by rank: the head alone, or every node of the partition (`run-on all`).
 * Sessions are opened (host keys checked) as needed.
 */
export async function jobNodes({ job, services, signal }: Pick<StepContext, 'job' | 'services' | 'signal'>): Promise<NodeSession[]> {
  const partition = job.partitionName!;
  return job.directives.runOn === 'all' ? services.nodes.all(partition, signal) : [await services.nodes.head(partition, signal)];
}

/** Every node's address as its peers reach it, rank order (what SWM_NODE_IPS and the hostfile list). */
export function partitionAddresses({ job, services }: Pick<StepContext, 'job' | 'services'>): string[] {
  const ranked = services.nodes.ranked(job.partitionName!);
  if (ranked.length > 0) return ranked.map(peerAddress);
  return job.nodeIps.length > 0 ? job.nodeIps : ['127.0.0.1'];
}

/**
 * Upload the job's inputs, its script, its runner and its hostfile to the job directory of every node it runs
 * on (the head; every node for `run-on all`, each runner with its rank). Idempotent: a repeated stage-in (a
 * dropped connection, a restarted core) continues each file from what the node has, and keeps the node ports
 * chosen the first time. Progress shows in state_details as "data uploaded 1.2 GB / 3.4 GB" (the words the
 * original Sky Port used, which JupyterHub spawners look for), all nodes together.
 */
export const stageInStep: StepEffect = async (context) => {
  const { job, services, signal, emit } = context;
  const sessions = await jobNodes(context);
  const dir = nodeJobDir(job.id);
  const ips = partitionAddresses(context);
  const image = jobImage(job, services.config);
  const agents = await Promise.all(sessions.map((s) => nodeAgent(s)));
  // The agent makes the directory as it writes the runner's files; the head's is needed sooner for its ports (.swm/ports).
  const dirFirst = (rank: number) => !agents[rank] || (rank === 0 && job.directives.ports.length > 0);
  await Promise.all(sessions.map(async (s, rank) => (dirFirst(rank) ? makeRemoteDirs(await s.sftp(), `${dir}/.swm`) : undefined)));
  // A requeued job on a partition it ran on before (kept for reuse): the earlier attempt's run guard and exit code
  // go, or the runner would take that attempt's end for this one's. Stage-in comes before run, so never this one's.
  const stale = job.attempts > 0 ? ['exitcode', 'pid', 'stopped-by-peer', 'started'].map((f) => `.swm/${f}`) : [];
  if (stale.length > 0)
    await Promise.all(
      sessions.map(async (s, rank) => {
        if (agents[rank]) return;
        const sftp = await s.sftp();
        for (const path of stale.slice(0, -1)) await removeRemote(sftp, `${dir}/${path}`);
        await removeRemote(sftp, `${dir}/${stale.at(-1)!}`, true);
      }),
    );
  // Declared ports are the head's (forwards reach the head): the other ranks get none.
  const ports = await forwardsOf(services).prepare(job, sessions[0]!);
  await Promise.all(
    sessions.map(async (session, rank) => {
      const placement: NodePlacement = { rank, ips };
      const rankPorts: readonly NodePort[] = rank === 0 ? ports : [];
      const files = [
        { path: '.swm/job.sh', data: job.script, mode: 0o755 },
        { path: '.swm/hostfile', data: hostfileText(ips), mode: 0o644 },
        { path: '.swm/run.sh', data: runnerScript(job, image, rankPorts, placement), mode: 0o755 },
        { path: '.swm/env', data: jobEnvFile(job, rankPorts, placement), mode: 0o600 },
      ];
      // Through the agent: one round trip for the stale files and the four new ones.
      const agent = agents[rank];
      if (agent) return void (await agent.writeFiles(dir, files, stale));
      const sftp = await session.sftp();
      await Promise.all(files.map((f) => writeRemoteFile(sftp, `${dir}/${f.path}`, f.data, f.mode)));
    }),
  );
  if (job.inputs.length === 0) return { type: 'staged-in' };

  const total = job.inputs.reduce((sum, f) => sum + f.size, 0) * sessions.length;
  const progress = new ProgressReporter(
    total,
    (done, all) => `data uploaded ${formatBytes(done)} / ${formatBytes(all)}`,
    (details) => emit({ type: 'progress', details }),
  );
  const staged = await stageInputsToNodes(sessions, inputsRoot(services.spool.job(job.id)), dir, job.inputs, {
    signal,
    onBytes: (n) => {
      progress.add(n);
      services.metrics.transferred('stage-in', n);
    },
  });
  progress.flush();
  context.logger.info({ ...staged, files: job.inputs.length, nodes: sessions.length }, 'inputs staged in');
  return { type: 'staged-in' };
};
