import { ErrorCode, RpcError } from '../../../terminal-protocol/errors.js';
import { keepAliveSec } from '../../partitions/keep-alive.js';
import type { PartitionRecord } from '../../partitions/partition-record.js';
import { revokeDirectForwards } from '../../forwarding/direct-forwards.js';
import type { CoreServices } from '../../services.js';
import { stopJobOnNode } from '../job-cleanup.js';
import { jobImage } from './connect.js';
import { downloadResults } from './stage-out.js';
import { pause, type StepEffect } from './step-context.js';

const BACKOFF_MS = [1_000, 2_000, 5_000, 10_000, 30_000];

/**
 * Always runs last, whatever happened: stop what the job left running on its nodes (keeping what it wrote if it
 * was stopped early), then give the partition back: idle for the next compatible job, or deleted (keep-alive 0,
 * or a partition the cleanup could not reach). A partition being deleted is waited for, so that a job ends
 * once nothing of it is left. Retries until the partition takes the release. Not abortable.
 */
export const teardownStep: StepEffect = async (context) => {
  const { job, services, logger } = context;
  const name = job.partitionName;
  if (!name) return { type: 'released' };
  const partition = services.partitions.get(name);
  let reusable = false;
  if (partition?.state === 'busy' && partition.jobId === job.id) {
    try {
      // Every node the script ran on (all of them with `run-on all`).
      const ranks = job.directives.runOn === 'all' ? Math.max(1, services.nodes.ranked(name).length) : 1;
      await Promise.all(Array.from({ length: ranks }, async (_, rank) => stopJobOnNode(await services.nodes.node(name, rank), job, { image: jobImage(job, services.config), sweep: true })));
      // The keys of `swm forward`'s direct path end with the job (a reused partition's next job never inherits them).
      if (job.directives.ports.some((p) => p.direction === 'in')) await revokeDirectForwards(await services.nodes.head(name), job.id);
      const stoppedEarly = job.runStartedMs !== null && job.exitcode === null;
      if (stoppedEarly) await downloadResults({ ...context, signal: new AbortController().signal }, true);
      reusable = job.runtime !== null;
    } catch (error) {
      logger.warn({ partition: name, err: (error as Error).message }, 'could not clean up after the job: its partition is deleted rather than reused');
    }
  }
  const remote = services.config.remotes.find((r) => r.name === (partition?.remote ?? job.remote));
  const kind = services.config.gates.find((g) => g.name === remote?.gate)?.kind;
  const keepSec = remote ? keepAliveSec(job.directives.keepPartitionSec, remote, kind) : 0;
  for (let attempt = 0; ; attempt++) {
    try {
      const after = await services.partitions.send(name, { type: 'release', jobId: job.id, keepSec, reusable });
      if (after.state === 'deleting' || (after.state === 'failed' && after.jobId === null)) {
        context.emit({ type: 'progress', details: `${job.outcome?.details ?? 'ended'}: deleting partition ${name}` });
        await deleted(services, name);
      }
      logger.info({ partition: name, state: after.state === 'idle' ? 'idle' : 'deleted', keepSec }, 'partition released');
      return { type: 'released' };
    } catch (error) {
      if (error instanceof RpcError && error.code === ErrorCode.NotFound) return { type: 'released' };
      const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!;
      logger.warn({ partition: name, attempt, err: (error as Error).message, retryInMs: delay }, 'partition release failed; retrying');
      await pause(delay);
    }
  }
};

/** Resolves once the partition is deleted (its own event). */
function deleted(services: CoreServices, name: string): Promise<void> {
  return new Promise((resolve) => {
    const topic = `partition:${name}`;
    const look = (p: PartitionRecord | null) => {
      if (p && p.state !== 'deleted') return;
      services.partitions.bus.off(topic, look);
      resolve();
    };
    services.partitions.bus.on(topic, look);
    look(services.partitions.get(name));
  });
}
