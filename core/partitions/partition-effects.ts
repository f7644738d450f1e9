import type { Partition } from '../../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { GateClient } from '../gates/gate-client.js';
import { forgetPartitionKeys, nodeHostKeys, partitionKeys } from '../nodes/partition-keys.js';
import { gateOf } from '../services.js';
import { checkGuests, GuestNotReady } from './guest-check.js';
import { PARTITION_LEASE_SEC } from './partition-leases.js';
import type { CoreServices } from '../services.js';
import { EffectAborted, pause, type Effect } from '../supervision/durable-actor.js';
import type { PartitionRecord, PartitionState } from './partition-record.js';
import { partitionFailure, type PartitionEvent } from './partition-states.js';

const CREATE_TIMEOUT_MS = 30 * 60_000;
const DELETE_BACKOFF_MS = [1_000, 2_000, 5_000, 10_000, 30_000];

/** What the effects need to know besides the record. */
export interface PartitionEffectOptions {
  /** The wait before the `attempt`-th new attempt after a passing failure (partitionRetryDelayMs; tests shorten it). */
  retryDelayMs: (attempt: number) => number;
}

/**
 * Waits for what the gate says of one partition: its `partition.event` notifications, with one `partition.get`
 * at the start and after every reconnection (which is when notifications may have been missed). No polling loop.
 */
function watchGate(gate: GateClient, name: string, signal: AbortSignal): { next: () => Promise<Partition | null>; close: () => void } {
  const seen: (Partition | null)[] = [];
  let wake: (() => void) | null = null;
  const push = (p: Partition | null) => {
    seen.push(p);
    wake?.();
  };
  const reconcile = () => {
    gate.call('partition.get', { name }).then(push, (error: Error) => {
      if (error instanceof RpcError && error.code === ErrorCode.NotFound) push(null);
    });
  };
  const onEvent = (p: Partition) => {
    if (p.name === name) push(p);
  };
  gate.on('partition', onEvent);
  gate.on('ready', reconcile);
  if (gate.connected) reconcile();
  return {
    next: () =>
      new Promise<Partition | null>((resolve, reject) => {
        const take = () => {
          wake = null;
          signal.removeEventListener('abort', onAbort);
          resolve(seen.shift()!);
        };
        const onAbort = () => {
          wake = null;
          reject(new EffectAborted('aborted'));
        };
        if (seen.length) return take();
        if (signal.aborted) return onAbort();
        wake = take;
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    close: () => {
      gate.off('partition', onEvent);
      gate.off('ready', reconcile);
    },
  };
}

/** Ask the gate for the partition (create is idempotent by name: asking again finds the one asked for). */
const requestAtGate =
  (p: PartitionRecord, services: CoreServices): Effect<PartitionEvent> =>
  async ({ signal, logger }) => {
    const gate = gateOf(services, p.remote);
    await gate.whenConnected(5 * 60_000, signal);
    const keys = partitionKeys(services.spool, p.name);
    const hostKeys = gate.config.kind !== 'local' ? nodeHostKeys(services.spool, p.name, p.nodeCount) : null;
    let id: string;
    try {
      const created = await gate.call('partition.create', {
        name: p.name,
        jobId: p.jobId ?? '',
        owner: p.owner ?? '',
        flavor: p.flavor,
        image: p.cloudImage,
        nodeCount: p.nodeCount,
        ports: p.ports,
        sshPublicKey: keys.publicKey,
        ...(hostKeys ? { hostKeys: hostKeys.privateKeys } : {}),
        ...(p.containerImages.length ? { containerImages: p.containerImages } : {}),
        ...(p.spot != null ? { spot: p.spot } : {}),
        ...(p.spot && p.maxPrice != null ? { maxPrice: p.maxPrice } : {}),
        tags: {
          'skyport-partition': p.name,
          ...(p.owner ? { 'skyport-owner': p.owner } : {}),
          ...(p.jobId ? { 'skyport-job': p.jobId } : {}),
          // One lease: renewed while the partition is up (partition-leases.ts), so that a dead core leaves nothing billing.
          'skyport-lifetime-sec': String(PARTITION_LEASE_SEC),
        },
      });
      id = created.id;
    } catch (error) {
      // Asked before, by an earlier incarnation: it exists.
      if (!(error instanceof RpcError && error.code === ErrorCode.Conflict)) throw error;
      id = (await gate.call('partition.get', { name: p.name })).id;
    }
    logger.info({ partition: p.name, gateId: id }, 'partition requested');
    return { type: 'asked', gateId: id };
  };

/** Wait for the gate to say the partition is up (pinning its nodes' host keys) or failed. */
const awaitUp =
  (p: PartitionRecord, services: CoreServices, options: PartitionEffectOptions): Effect<PartitionEvent> =>
  async ({ signal, logger }) => {
    const gate = gateOf(services, p.remote);
    const watch = watchGate(gate, p.name, signal);
    const timeout = setTimeout(() => watch.close(), CREATE_TIMEOUT_MS);
    const deadline = Date.now() + CREATE_TIMEOUT_MS;
    try {
      for (;;) {
        if (Date.now() > deadline) throw new RpcError(ErrorCode.Timeout, `partition not up after ${CREATE_TIMEOUT_MS / 60_000} minutes`);
        const seen = await watch.next();
        if (seen === null || seen.status === 'deleted' || seen.status === 'deleting')
          return { type: 'create-failed', reason: 'the partition was deleted while being created', retryAtMs: null };
        if (seen.status === 'up') {
          const fingerprints = gate.config.kind !== 'local' ? nodeHostKeys(services.spool, p.name, p.nodeCount).fingerprints : undefined;
          const nodes = services.nodes.pin(seen, fingerprints);
          if (seen.guestCheck) {
            // Nodes the cloud says are running may still be booting (cloud-init's last stage): not up until they are done.
            clearTimeout(timeout);
            const failed = await guestsFailure(gate, p.name, seen.guestCheck, services, signal);
            if (failed) return failed;
            logger.info({ partition: p.name, nodes: nodes.length }, 'every node of the partition is ready');
          }
          return { type: 'up', gateId: seen.id, nodes };
        }
        if (seen.status === 'failed') {
          const failure = partitionFailure(seen.error);
          // Marked for another attempt; its time is set once the failed partition is gone (the wait starts then).
          return { type: 'create-failed', reason: failure.reason, retryAtMs: failure.retry ? Date.now() : null };
        }
      }
    } finally {
      clearTimeout(timeout);
      watch.close();
    }
  };

/**
 * The guest check of an up partition's nodes (guest-check.ts): null when every node is ready, else the failure of
 * the partition's creation. Stopped by what the gate says of the partition meanwhile (a node lost, a deletion).
 */
async function guestsFailure(
  gate: GateClient,
  name: string,
  check: NonNullable<Partition['guestCheck']>,
  services: CoreServices,
  signal: AbortSignal,
): Promise<PartitionEvent | null> {
  const news = new AbortController();
  let said: Partition | null = null;
  const onEvent = (q: Partition): void => {
    if (q.name !== name || q.status === 'up' || q.status === 'creating') return;
    said = q;
    news.abort();
  };
  gate.on('partition', onEvent);
  try {
    await checkGuests(services.nodes, name, check, AbortSignal.any([signal, news.signal]));
    return null;
  } catch (error) {
    if (signal.aborted) throw error;
    const gone = said as Partition | null;
    if (gone) {
      const failure = gone.status === 'failed' ? partitionFailure(gone.error) : { reason: 'the partition was deleted while being created', retry: false };
      return { type: 'create-failed', reason: failure.reason, retryAtMs: failure.retry ? Date.now() : null };
    }
    if (error instanceof GuestNotReady) return { type: 'create-failed', reason: error.message, retryAtMs: null };
    throw error;
  } finally {
    gate.off('partition', onEvent);
  }
}

/** Delete at the gate until it says the partition is gone (retrying for as long as it takes). */
async function deleteAtGate(p: PartitionRecord, services: CoreServices, signal: AbortSignal, progress: (reason: string) => void): Promise<void> {
  const gate = gateOf(services, p.remote);
  for (let attempt = 0; ; attempt++) {
    let watch: ReturnType<typeof watchGate> | null = null;
    try {
      await gate.whenConnected(60_000, signal);
      let answer: { status: string };
      try {
        const id = p.gateId ?? (await gate.call('partition.get', { name: p.name })).id;
        answer = await gate.call('partition.delete', { id });
      } catch (error) {
        if (error instanceof RpcError && error.code === ErrorCode.NotFound) return; // never created, or gone already
        throw error;
      }
      if (answer.status === 'deleted') return;
      // Watched from here: what the gate said before the delete was taken is not about the deletion.
      watch = watchGate(gate, p.name, signal);
      for (;;) {
        const seen = await watch.next();
        if (seen === null || seen.status === 'deleted') return;
        if (seen.status === 'failed') throw new Error(`deletion failed: ${seen.error ?? 'no reason given'}`);
      }
    } catch (error) {
      if (error instanceof EffectAborted) throw error;
      const delay = DELETE_BACKOFF_MS[Math.min(attempt, DELETE_BACKOFF_MS.length - 1)]!;
      services.logger.warn({ partition: p.name, attempt, err: (error as Error).message, retryInMs: delay }, 'partition deletion failed; retrying');
      progress(`deleting (retrying: ${(error as Error).message})`);
      await pause(delay, signal);
    } finally {
      watch?.close();
    }
  }
}

/** After the gate has deleted it: the core forgets its sessions and keys. */
function forget(p: PartitionRecord, services: CoreServices): void {
  services.nodes.release(p.name);
  forgetPartitionKeys(services.spool, p.name);
}

/** The effect of each state that has one; ready, busy and idle wait for others (idle: for its timeout too). */
export function partitionEffect(
  p: PartitionRecord,
  services: CoreServices,
  options: PartitionEffectOptions,
): Effect<PartitionEvent> | undefined {
  const effects: Partial<Record<PartitionState, Effect<PartitionEvent>>> = {
    requested: requestAtGate(p, services),
    creating: awaitUp(p, services, options),
    failed: async ({ signal, logger }) => {
      await deleteAtGate(p, services, signal, () => {});
      if (p.retryAtMs === null || !p.jobId) {
        forget(p, services);
        return { type: 'gone' };
      }
      const retryAtMs = Date.now() + options.retryDelayMs(p.attempts);
      logger.info({ partition: p.name, reason: p.reason, retryAt: new Date(retryAtMs).toISOString() }, 'partition failed for a passing reason; asking again after a wait');
      return { type: 'cleared', retryAtMs };
    },
    retrying: async ({ signal }) => {
      await pause(Math.max(0, (p.retryAtMs ?? Date.now()) - Date.now()), signal);
      return { type: 'retry' };
    },
    deleting: async ({ signal, logger }) => {
      await deleteAtGate(p, services, signal, () => {});
      forget(p, services);
      logger.info({ partition: p.name, reason: p.reason }, 'partition deleted');
      return { type: 'gone' };
    },
  };
  return effects[p.state];
}
