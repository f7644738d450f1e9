import type { Runtime } from '../../store/job-record.js';
import type { StepEffect } from './step-context.js';

const DETECT = 'if command -v podman >/dev/null 2>&1; then echo podman; elif command -v docker >/dev/null 2>&1; then echo docker; else echo process; fi';

/** The container image a job runs in: its own, else its remote's default, else none (a plain process). */
export const imageOf = (containerImage: string | undefined, remoteDefault: string | null): string | null =>
  containerImage ?? remoteDefault ?? null;

/** SSH to the head node (host key checked against the pinned one) and detect its container runtime. */
export const connectStep: StepEffect = async ({ job, services, signal, emit }) => {
  emit({ type: 'progress', details: 'start secured tunnel' });
  const session = await services.nodes.head(job.partitionName!, signal);
  const runtime = (await session.run(DETECT, signal)).trim() as Runtime;
  const remote = services.config.remotes.find((r) => r.name === job.remote);
  const image = imageOf(job.directives.containerImage, remote?.defaultImage ?? null);
  if (image && runtime === 'process')
    throw new Error(`node ${session.node.name} has no container runtime (podman or docker) to run image ${image}`);
  return { type: 'connected', runtime };
};
