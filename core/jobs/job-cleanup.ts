import { nodeAgent } from '../nodes/node-agent-client.js';
import { shellQuote, type NodeSession } from '../nodes/node-session.js';
import type { JobRecord } from '../store/job-record.js';
import { containerName, killCommand, nodeJobDir } from './node-layout.js';

/**
 * What a job leaves behind on a node before its partition goes to the next job: its runner's process group
 * and container (killCommand), and every process that left that group (`setsid`, `nohup … &`) but still
 * carries the job's SWM_JOB_ID in its environment. Its directory stays (the next job has its own).
 */
export function cleanupCommand(jobId: string, runtime: string | null): string {
  const marker = shellQuote(`SWM_JOB_ID=${jobId}`);
  // One grep over every process's environment (those of other users are unreadable, and skipped).
  return `(${killCommand(jobId, runtime)})
for f in $(grep -lszx ${marker} /proc/[0-9]*/environ); do
  p=\${f#/proc/}; kill -KILL "\${p%/environ}" 2>/dev/null
done
exit 0`;
}

/**
 * Stop a job's processes on a node: through the node's agent (no shell, no process but a container runtime's),
 * else with killCommand or cleanupCommand over an exec channel. The container runtime is called only for a job
 * that runs in a container (`image`): a runtime's kill and rm cost a second of CPU each on a busy node, for
 * nothing when the job was a plain process. `byPeer`: the rank is stopped because another failed; `sweep`: also
 * what left the runner's group (the teardown's cleanup).
 */
export async function stopJobOnNode(
  session: NodeSession,
  job: Pick<JobRecord, 'id' | 'runtime'>,
  o: { image: string | null; byPeer?: boolean; sweep?: boolean },
): Promise<void> {
  const runtime = o.image !== null && (job.runtime === 'podman' || job.runtime === 'docker') ? job.runtime : null;
  const agent = await nodeAgent(session);
  if (agent) {
    const container = runtime ? { runtime, name: containerName(job.id) } : null;
    await agent.request({ op: 'stop', dir: nodeJobDir(job.id), container, byPeer: o.byPeer === true, sweep: o.sweep ? job.id : null });
    return;
  }
  await session.exec(o.sweep ? cleanupCommand(job.id, runtime) : killCommand(job.id, runtime, o.byPeer === true));
}
