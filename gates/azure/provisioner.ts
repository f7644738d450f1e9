import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import type { ArmClients } from './arm-clients.js';
import { describeAzureError, httpStatusOf } from './azure-errors.js';
import { GUEST_READY_COMMAND } from './guest-ready.js';
import type { Limiter } from './limiter.js';
import { completeOperation, OperationCancelled, OperationFailed, OperationTimeout, type OperationLimits } from './long-running.js';
import type { PartitionPlan } from './partition-plan.js';
import { TAG } from './tags.js';

export interface ProvisionContext {
  arm: ArmClients;
  limits: Omit<OperationLimits, 'cancel'>;
  /** Aborted when the partition is deleted during creation or the gate closes. */
  cancel: AbortSignal;
  log: Logger;
  /** The gate's bound on VM (and NIC) creations in flight, shared by every partition. */
  vmSlots: Limiter;
  /** How long after the group's creation a write answered 404 ResourceGroupNotFound is tried again. */
  freshGroupGraceMs: number;
  /** Limit of each node's guest-readiness check. */
  guestReadyTimeoutMs: number;
}

/** Nodes per step of the poll interval: a partition of 200 nodes polls each operation 8 times less often. */
const NODES_PER_POLL_STEP = 25;
const FRESH_GROUP_RETRY_MAX_MS = 5_000;

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new OperationCancelled('abandoned'));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new OperationCancelled('abandoned'));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

/** ARM's answer, for a while after it created a group, to writes into it (its replicas have not all seen it). */
const isFreshGroupMiss = (error: unknown): boolean => {
  const cause = error instanceof OperationFailed ? error.cause : error;
  if (httpStatusOf(cause) !== 404) return false;
  const code = (cause as { code?: unknown }).code;
  return code === 'ResourceGroupNotFound' || (cause instanceof Error && cause.message.includes('ResourceGroupNotFound'));
};

/**
 * Creates a planned partition, each resource as soon as what it references exists:
 *
 *   resource group ─┬─ security group ─────────────────────┐
 *                   ├─ NAT IP ── NAT gateway ── network ───┼─ NIC i ── VM i ── guest ready i   (every node in parallel)
 *                   └─ public IP ──────────────────────────┘  (head NIC only)
 *
 * (the NAT gateway only when some node has no public IP). A node is created when the gate has a free VM
 * slot; a partition is done when every node's guest is ready, and the group is tagged so. The first failure
 * stops the rest and deletes the partition's VMs (none keeps running and billing), and the function returns
 * only when no request is in flight, so a deletion that follows cannot race a creation. Every PUT is
 * idempotent: running it again converges.
 */
export async function provisionPartition(plan: PartitionPlan, ctx: ProvisionContext): Promise<void> {
  const { arm, log } = ctx;
  const stop = new AbortController();
  const cancel = AbortSignal.any([ctx.cancel, stop.signal]);
  // Every node's operations (and its wait for a VM slot) listen to it: a large partition is no leak.
  setMaxListeners(0, cancel, stop.signal, ctx.cancel);
  const limits: OperationLimits = { ...ctx.limits, cancel };
  const nodeLimits: OperationLimits = { ...limits, pollIntervalMs: ctx.limits.pollIntervalMs * Math.max(1, Math.ceil(plan.nodes.length / NODES_PER_POLL_STEP)) };
  const { group } = plan;

  try {
    // Not ready until every guest is: a group without the tag (made before readiness was checked) is judged by its VMs.
    await arm.resources.resourceGroups.createOrUpdate(group, { location: plan.location, tags: { ...plan.tags, [TAG.ready]: 'false' } }, { abortSignal: cancel });
  } catch (error) {
    if (ctx.cancel.aborted) throw new OperationCancelled(`resource group ${group} abandoned`);
    throw new OperationFailed(`resource group ${group}: ${describeAzureError(error)}`, { cause: error });
  }
  const groupCreatedAt = Date.now();
  log.debug({ group }, 'resource group ready');

  /** A write into the group, tried again while ARM may still answer that the new group does not exist. */
  const inGroup = async <T>(what: string, l: OperationLimits, begin: Parameters<typeof completeOperation<T>>[2]): Promise<T> => {
    let delay = Math.max(1, Math.min(ctx.limits.pollIntervalMs, 1000));
    for (;;) {
      try {
        return await completeOperation(what, l, begin);
      } catch (error) {
        if (!isFreshGroupMiss(error) || Date.now() + delay > groupCreatedAt + ctx.freshGroupGraceMs) throw error;
        log.debug({ what, retryInMs: delay }, 'resource group not visible yet; trying again');
        await sleep(delay, l.cancel);
        delay = Math.min(delay * 2, FRESH_GROUP_RETRY_MAX_MS);
      }
    }
  };

  const { securityGroup: nsg, network: vnet, publicIp: pip, outbound } = plan;
  const securityGroup = inGroup(`network security group ${nsg.name}`, limits, (o) => arm.network.networkSecurityGroups.beginCreateOrUpdate(group, nsg.name, nsg.body, o));
  const natIp = outbound
    ? inGroup(`public IP ${outbound.publicIp.name}`, limits, (o) => arm.network.publicIPAddresses.beginCreateOrUpdate(group, outbound.publicIp.name, outbound.publicIp.body, o))
    : null;
  const natGateway = outbound
    ? natIp!.then(() => inGroup(`NAT gateway ${outbound.natGateway.name}`, limits, (o) => arm.network.natGateways.beginCreateOrUpdate(group, outbound.natGateway.name, outbound.natGateway.body, o)))
    : null;
  const network = (natGateway ?? Promise.resolve()).then(() =>
    inGroup(`virtual network ${vnet.name}`, limits, (o) => arm.network.virtualNetworks.beginCreateOrUpdate(group, vnet.name, vnet.body, o)),
  );
  const publicIp = inGroup(`public IP ${pip.name}`, limits, (o) => arm.network.publicIPAddresses.beginCreateOrUpdate(group, pip.name, pip.body, o));
  const shared = Promise.all([securityGroup, network]);

  const nodes = plan.nodes.map(async (node) => {
    await shared;
    if (node.role === 'head') await publicIp;
    await ctx.vmSlots.run(cancel, async () => {
      await inGroup(`network interface ${node.nicName}`, nodeLimits, (o) => arm.network.networkInterfaces.beginCreateOrUpdate(group, node.nicName, node.nic, o));
      await inGroup(`virtual machine ${node.vmName}`, nodeLimits, (o) => arm.compute.virtualMachines.createOrUpdate(group, node.vmName, node.vm, o));
    }).catch((error: unknown) => {
      // A turn given up while waiting for a slot rejects with the signal's reason.
      const ours = error instanceof OperationFailed || error instanceof OperationTimeout || error instanceof OperationCancelled;
      throw cancel.aborted && !ours ? new OperationCancelled(`virtual machine ${node.vmName} abandoned`) : error;
    });
    log.debug({ node: node.vmName }, 'node created; waiting for its guest');
    await inGroup(`guest readiness of virtual machine ${node.vmName} (cloud-init's final stage, sshd with the pinned host key)`, { ...nodeLimits, timeoutMs: ctx.guestReadyTimeoutMs }, (o) =>
      arm.compute.virtualMachineRunCommands.createOrUpdate(group, node.vmName, GUEST_READY_COMMAND, node.readiness, o),
    );
    log.debug({ node: node.vmName }, 'node ready');
  });

  const steps: Promise<unknown>[] = [securityGroup, network, publicIp, ...(natIp ? [natIp] : []), ...(natGateway ? [natGateway] : []), ...nodes];
  // The first failure aborts the others; then wait until every step has stopped.
  for (const step of steps) step.catch(() => stop.abort());
  const results = await Promise.allSettled(steps);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
  if (!failures.length) {
    try {
      await arm.resources.resourceGroups.createOrUpdate(group, { location: plan.location, tags: { ...plan.tags, [TAG.ready]: 'true' } }, { abortSignal: ctx.cancel });
    } catch (error) {
      if (ctx.cancel.aborted) throw new OperationCancelled(`resource group ${group} abandoned`);
      throw new OperationFailed(`resource group ${group}: ${describeAzureError(error)}`, { cause: error });
    }
    return;
  }
  // The root cause, not the operations it cancelled.
  const cause = failures.find((e) => !(e instanceof OperationCancelled)) ?? failures[0]!;
  if (!ctx.cancel.aborted) await deleteVirtualMachines(plan, ctx);
  throw cause;
}

/**
 * After a failure, no VM of the partition keeps running (and billing) while the failure is reported and the
 * partition waits for its deletion: every VM it may have made is force-deleted (no graceful shutdown; with
 * its NIC and disk, by their delete options); one that does not exist is already what is wanted.
 */
async function deleteVirtualMachines(plan: PartitionPlan, ctx: ProvisionContext): Promise<void> {
  const limits: OperationLimits = { ...ctx.limits, cancel: ctx.cancel };
  const results = await Promise.allSettled(
    plan.nodes.map((node) =>
      completeOperation(`deletion of virtual machine ${node.vmName}`, limits, (o) => ctx.arm.compute.virtualMachines.delete(plan.group, node.vmName, { ...o, forceDeletion: true })).catch((error: unknown) =>
        httpStatusOf((error as Error).cause) === 404 ? undefined : Promise.reject(error),
      ),
    ),
  );
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length) ctx.log.warn({ errors: failed.slice(0, 3).map((r) => (r.reason as Error).message) }, 'could not delete every VM of a failed partition; its deletion will');
  else ctx.log.info({ group: plan.group }, 'VMs of the failed partition deleted');
}
