import type { Partition } from '../../../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../../../terminal-protocol/errors.js';
import type { PortSpec } from '../../../terminal-protocol/gate-methods.js';
import { nodeHostKeys, partitionKeys } from '../../nodes/partition-keys.js';
import { gateOf, remoteConfig } from '../../services.js';
import { pause, StepAborted, type StepEffect } from './step-context.js';

const CREATE_TIMEOUT_MS = 30 * 60_000;
const POLL_MS = 2_000;

/**
 * Ask the job's gate for a partition, or find the one already asked for (create is idempotent by name),
 * and wait until it is up. Host keys are pinned as it comes up.
 */
export const partitionStep: StepEffect = async ({ job, services, signal, emit, logger }) => {
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
  try {
    const injectHostKeys = gate.config.kind !== 'local';
    const hostKeys = injectHostKeys ? nodeHostKeys(services.spool, name, job.directives.nodes) : null;
    let id = job.partitionId;
    if (!id) {
      const keys = partitionKeys(services.spool, name);
      const image = job.directives.cloudImage ?? remote.defaultCloudImage;
      const ports: PortSpec[] = job.directives.ports;
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
      id = created.id;
      emit({ type: 'partition-requested', partitionId: id });
      logger.info({ partition: name, partitionId: id }, 'partition requested');
    }
    const deadline = Date.now() + CREATE_TIMEOUT_MS;
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
      if (current.status === 'failed') throw new Error(`partition creation failed: ${current.error ?? 'no reason given'}`);
      if (current.status === 'deleting' || current.status === 'deleted') throw new Error('partition was deleted while being created');
      if (Date.now() > deadline) throw new RpcError(ErrorCode.Timeout, `partition not up after ${CREATE_TIMEOUT_MS / 60_000} minutes`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        pause(POLL_MS, signal).then(resolve, resolve);
      });
    }
  } finally {
    gate.off('partition', onEvent);
  }
};
