import type { PartitionRecord } from '../../partitions/partition-record.js';
import { gateOf } from '../../services.js';
import type { JobEvent } from '../job-steps.js';
import { StepAborted, type StepContext, type StepEffect } from './step-context.js';

/**
 * Wait, on the partition's own events, until the partition the scheduler placed the job on is up, then take
 * it (ready → busy). A partition that fails for a passing reason is asked for again by its own actor; the job
 * says why it waits meanwhile. Any other failure, or a partition no longer reserved for this job, fails the step.
 * A reused partition gets the job's container image first if its nodes do not have it.
 */
export const partitionStep: StepEffect = (context) =>
  new Promise<JobEvent>((resolve, reject) => {
    const { job, services, signal, emit } = context;
    const name = job.partitionName!;
    const topic = `partition:${name}`;
    let said = '';
    let taking = false;
    const say = (details: string) => {
      if (details !== said) emit({ type: 'progress', details });
      said = details;
    };
    const finish = (result: JobEvent | Error) => {
      services.partitions.bus.off(topic, look);
      signal.removeEventListener('abort', onAbort);
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const onAbort = () => finish(new StepAborted('step aborted'));
    const look = (p: PartitionRecord | null) => {
      if (taking) return;
      if (!p) return finish(new Error(`partition ${name} is not known`));
      if (p.jobId !== job.id && p.state !== 'deleted' && p.state !== 'deleting')
        return finish(new Error(`partition ${name} is no longer reserved for this job (${p.state})`));
      switch (p.state) {
        case 'requested':
        case 'creating':
          return say(p.attempts ? `partition has not been created yet (attempt ${p.attempts + 1})` : 'partition has not been created yet');
        case 'failed':
          if (p.retryAtMs !== null) return say(`${p.reason} (deleting the partition, then trying again)`);
          return finish(new Error(`partition creation failed: ${p.reason ?? 'no reason given'}`));
        case 'retrying':
          return say(`${p.reason} (trying again in ${Math.max(0, Math.round(((p.retryAtMs ?? Date.now()) - Date.now()) / 1000))} s)`);
        case 'deleting':
        case 'deleted':
          return finish(new Error(`partition ${name} was deleted${p.reason ? ` (${p.reason})` : ''}`));
        case 'ready':
        case 'busy':
          taking = true;
          take(context, p).then(finish, finish);
          return;
        case 'idle':
          return; // reserved in the next event
      }
    };
    services.partitions.bus.on(topic, look);
    signal.addEventListener('abort', onAbort, { once: true });
    look(services.partitions.get(name));
  });

/** Make the job's container image available on a reused partition, take the partition, and report its nodes. */
async function take({ job, services, signal }: StepContext, p: PartitionRecord): Promise<JobEvent> {
  const image = job.directives.containerImage;
  const images = image && !p.containerImages.includes(image) ? [image] : [];
  if (images.length && p.jobsRun > 0) {
    const gate = gateOf(services, p.remote);
    await gate.whenConnected(5 * 60_000, signal);
    await gate.call('partition.prepare', { id: p.gateId ?? p.name, containerImages: images });
  }
  const held = await services.partitions.send(p.name, { type: 'acquire', jobId: job.id, containerImages: images });
  if (held.state !== 'busy' || held.jobId !== job.id) throw new Error(`partition ${p.name} could not be taken (${held.state})`);
  const nodes = services.nodes.pinned(p.name) ?? held.nodes;
  return {
    type: 'partition-up',
    partitionId: held.gateId,
    nodeNames: nodes.map((n) => n.name),
    nodeIps: nodes.map((n) => n.publicIp ?? n.privateIp ?? ''),
  };
}
