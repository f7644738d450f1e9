import type { Partition } from '../../../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../../../terminal-protocol/errors.js';
import type { PortSpec } from '../../../terminal-protocol/gate-methods.js';
import { nodeHostKeys, partitionKeys } from '../../nodes/partition-keys.js';
import { gateOf, remoteConfig } from '../../services.js';
import { partitionFailure, partitionRetryDelayMs, type JobEvent } from '../job-steps.js';
import { pause, StepAborted, type StepContext, type StepEffect } from './step-context.js';

const CREATE_TIMEOUT_MS = 30 * 60_000;
const POLL_MS = 2_000;

/**
 * Ask the job's gate for a partition, or find the one already asked for (create is idempotent by name),
 * and wait until it is up. Host keys are pinned as it comes up. A partition that fails for a passing reason
 * (quota, capacity: see partitionFailure) is deleted, and asked for again after a wait that doubles; the job
 * says why meanwhile. Any other failure fails the step.
 */
export const partitionStep: StepEffect = (context) => createPartition(context, partitionRetryDelayMs);

/** The partition step, with the wait before each new attempt given (`partitionRetryDelayMs`; tests shorten it). */
export async function createPartition({ job, services, signal, emit, logger }: StepContext, retryDelayMs: (attempt: number) => number): Promise<JobEvent> {
  const name = job.partitionName!;
  const gate = gateOf(services, job.remote!);
  const remote = remoteConfig(services, job.remote!);
  await gate.whenConnected(5 * 60_000, signal);

  // Subscribe before asking, so that an 'up' arriving before the answer is not missed.
  let latest: Partition | null = null;
  let wake: () => void = () => {};
  const onEvent = (p: Partition) => {
    if (p.name !== name) return;
    latest = p;
    wake();
  };
  gate.on('partition', onEvent);
  const nextEvent = (): Promise<void> =>
    new Promise<void>((resolve) => {
      wake = resolve;
      pause(POLL_MS, signal).then(resolve, resolve);
    });
  /** Deletes a failed partition and waits until the gate says it is gone (its event, or a poll). */
  const deleteAndWait = async (partitionId: string): Promise<void> => {
    const answer = await gate.call('partition.delete', { id: partitionId });
    const until = Date.now() + CREATE_TIMEOUT_MS;
    let status: Partition['status'] = answer.status;
    while (status !== 'deleted') {
      if (signal.aborted) throw new StepAborted('step aborted');
      if (Date.now() > until) throw new RpcError(ErrorCode.Timeout, `failed partition not deleted after ${CREATE_TIMEOUT_MS / 60_000} minutes`);
      await nextEvent();
      const seen: Partition | null = latest;
      latest = null;
      if (seen?.status === 'deleted') return;
      try {
        status = (await gate.call('partition.get', { id: partitionId })).status;
      } catch (error) {
        if (error instanceof RpcError && error.code === ErrorCode.NotFound) return;
        throw error;
      }
    }
  };
  try {
    const injectHostKeys = gate.config.kind !== 'local';
    const hostKeys = injectHostKeys ? nodeHostKeys(services.spool, name, job.directives.nodes) : null;
    const requestPartition = async (): Promise<string> => {
      const keys = partitionKeys(services.spool, name);
      const image = job.directives.cloudImage ?? remote.defaultCloudImage;
      const ports: PortSpec[] = job.directives.ports;
      latest = null; // what was said of an earlier attempt
      const created = await gate.call('partition.create', {
        name,
        jobId: job.id,
        owner: job.owner,
        flavor: job.flavor!,
        image,
        nodeCount: job.directives.nodes,
        ports,
        sshPublicKey: keys.publicKey,
        ...(hostKeys ? { hostKeys: hostKeys.privateKeys } : {}),
        ...(job.directives.containerImage ? { containerImages: [job.directives.containerImage] } : {}),
        tags: { 'skyport-job': job.id, 'skyport-owner': job.owner },
      });
      emit({ type: 'partition-requested', partitionId: created.id });
      logger.info({ partition: name, partitionId: created.id }, 'partition requested');
      return created.id;
    };
    let id = job.partitionId ?? (await requestPartition());
    let deadline = Date.now() + CREATE_TIMEOUT_MS;
    let attempt = 0;
    for (;;) {
      if (signal.aborted) throw new StepAborted('step aborted');
      const current: Partition = latest ?? (await gate.call('partition.get', { id }));
      latest = null;
      if (current.status === 'up') {
        const nodes = services.nodes.pin(current, hostKeys?.fingerprints);
        return {
          type: 'partition-up',
          nodeNames: nodes.map((n) => n.name),
          nodeIps: nodes.map((n) => n.publicIp ?? n.privateIp ?? ''),
        };
      }
      if (current.status === 'failed') {
        const failure = partitionFailure(current.error);
        if (!failure.retry) throw new Error(`partition creation failed: ${failure.reason}`);
        const delayMs = retryDelayMs(attempt++);
        logger.info({ partition: name, reason: failure.reason, retryInMs: delayMs }, 'partition failed for a passing reason; deleting it, then asking again');
        emit({ type: 'progress', details: `${failure.reason} (deleting the partition, then trying again)` });
        await deleteAndWait(id);
        emit({ type: 'partition-retry', reason: `${failure.reason} (trying again in ${Math.round(delayMs / 1000)} s)` });
        await pause(delayMs, signal);
        id = await requestPartition();
        deadline = Date.now() + CREATE_TIMEOUT_MS;
        continue;
      }
      if (current.status === 'deleting' || current.status === 'deleted') throw new Error('partition was deleted while being created');
      if (Date.now() > deadline) throw new RpcError(ErrorCode.Timeout, `partition not up after ${CREATE_TIMEOUT_MS / 60_000} minutes`);
      await nextEvent();
    }
  } finally {
    gate.off('partition', onEvent);
  }
}
