import type { CoreConfig } from '../../../spool-bootstrap/config.js';
import type { JobRecord, Runtime } from '../../store/job-record.js';
import { linkNode, peerOf } from '../../nodes/inter-node-ssh.js';
import { interNodeKeys } from '../../nodes/partition-keys.js';
import type { StepEffect } from './step-context.js';

const DETECT = 'if command -v podman >/dev/null 2>&1; then echo podman; elif command -v docker >/dev/null 2>&1; then echo docker; else echo process; fi';

/** The container image a job runs in: its own, else its remote's default, else none (a plain process). */
export const imageOf = (containerImage: string | undefined, remoteDefault: string | null): string | null =>
  containerImage ?? remoteDefault ?? null;

/** The image of a job, as imageOf, its remote looked up in the configuration. Pure. */
export const jobImage = (job: Pick<JobRecord, 'directives' | 'remote'>, config: Pick<CoreConfig, 'remotes'>): string | null =>
  imageOf(job.directives.containerImage, config.remotes.find((r) => r.name === job.remote)?.defaultImage ?? null);

/**
 * SSH to every node of the partition (each host key checked against the pinned one), detect the container
 * runtime where the job will run (the head; every node for `run-on all`), and, on a partition of several
 * nodes, let the nodes reach one another over SSH with the partition's inter-node key (core/nodes/inter-node-ssh.ts).
 */
export const connectStep: StepEffect = async ({ job, services, signal, emit }) => {
  emit({ type: 'progress', details: 'start secured tunnel' });
  const partition = job.partitionName!;
  const sessions = await services.nodes.all(partition, signal);
  const head = sessions[0]!;
  const runsOn = job.directives.runOn === 'all' ? sessions : [head];
  const image = jobImage(job, services.config);
  const runtimes = await Promise.all(runsOn.map((s) => s.remember('runtime', async () => (await s.run(DETECT, signal)).trim() as Runtime)));
  runtimes.forEach((runtime, rank) => {
    if (image && runtime === 'process')
      throw new Error(`node ${runsOn[rank]!.node.name} has no container runtime (podman or docker) to run image ${image}`);
  });
  if (sessions.length > 1) {
    emit({ type: 'progress', details: `linking ${sessions.length} nodes` });
    const peers = sessions.map((s) => peerOf(s.node, s.hostKey));
    const keys = interNodeKeys(services.spool, partition);
    await Promise.all(sessions.map((s) => s.remember('peers linked', () => linkNode(s, peers, keys, partition, signal))));
  }
  return { type: 'connected', runtime: runtimes[0]! };
};
