import type { Partition } from '../../../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../../../terminal-protocol/errors.js';
import { forgetPartitionKeys } from '../../nodes/partition-keys.js';
import { gateOf } from '../../services.js';
import { killCommand } from '../node-layout.js';
import { downloadResults } from './stage-out.js';
import { pause, type StepEffect } from './step-context.js';

const BACKOFF_MS = [1_000, 2_000, 5_000, 10_000, 30_000];

/**
 * Always runs last, whatever happened: stop the job's process if it may still run (cancel, time limit),
 * keep what it wrote, then delete the partition through the gate and confirm it is gone. Retries until it
 * succeeds: a partition created is always deleted. Not abortable.
 */
export const teardownStep: StepEffect = async (context) => {
  const { job, services, logger } = context;
  const name = job.partitionName;
  if (!name) return { type: 'torn-down' };
  const stoppedEarly = job.runStartedMs !== null && job.exitcode === null;
  if (stoppedEarly) {
    try {
      const session = await services.nodes.head(name);
      await session.exec(killCommand(job.id, job.runtime));
      await downloadResults({ ...context, signal: new AbortController().signal }, true);
    } catch (error) {
      logger.warn({ partition: name, err: (error as Error).message }, 'could not stop the job or keep its logs before teardown');
    }
  }
  services.nodes.release(name);
  const gate = gateOf(services, job.remote!);
  for (let attempt = 0; ; attempt++) {
    try {
      await gate.whenConnected(60_000);
      await deletePartition(gate, job.partitionId, name);
      forgetPartitionKeys(services.spool, name);
      logger.info({ partition: name }, 'partition deleted');
      return { type: 'torn-down' };
    } catch (error) {
      const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!;
      logger.warn({ partition: name, attempt, err: (error as Error).message, retryInMs: delay }, 'partition deletion failed; retrying');
      context.emit({ type: 'progress', details: `deleting partition (retrying: ${(error as Error).message})` });
      await pause(delay);
    }
  }
};

async function deletePartition(gate: ReturnType<typeof gateOf>, id: string | null, name: string): Promise<void> {
  let partition: Partition;
  try {
    partition = await gate.call('partition.get', id ? { id } : { name });
  } catch (error) {
    if (error instanceof RpcError && error.code === ErrorCode.NotFound) return; // never created, or gone already
    throw error;
  }
  if (partition.status === 'deleted') return;
  const gone = waitUntilGone(gate, partition.id, name);
  const answer = await gate.call('partition.delete', { id: partition.id });
  if (answer.status !== 'deleted') await gone;
  else gone.catch(() => {});
}

/** Resolve when the gate says the partition is deleted (event or poll). */
function waitUntilGone(gate: ReturnType<typeof gateOf>, id: string, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let timer: NodeJS.Timeout;
    const finish = (error?: Error) => {
      clearTimeout(timer);
      gate.off('partition', onEvent);
      if (error) reject(error);
      else resolve();
    };
    const onEvent = (p: Partition) => {
      if (p.name === name && p.status === 'deleted') finish();
      if (p.name === name && p.status === 'failed') finish(new Error(`deletion failed: ${p.error ?? 'no reason given'}`));
    };
    const poll = async () => {
      try {
        const p = await gate.call('partition.get', { id });
        if (p.status === 'deleted') return finish();
      } catch (error) {
        if (error instanceof RpcError && error.code === ErrorCode.NotFound) return finish();
      }
      if (Date.now() - started > 30 * 60_000) return finish(new Error('partition still not deleted after 30 minutes'));
      timer = setTimeout(poll, 2_000);
    };
    gate.on('partition', onEvent);
    timer = setTimeout(poll, 200);
  });
}
