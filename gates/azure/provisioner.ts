import type { Logger } from 'pino';
import type { ArmClients } from './arm-clients.js';
import { describeAzureError } from './azure-errors.js';
import { completeOperation, OperationCancelled, OperationFailed, type OperationLimits } from './long-running.js';
import type { PartitionPlan } from './partition-plan.js';

export interface ProvisionContext {
  arm: ArmClients;
  limits: Omit<OperationLimits, 'cancel'>;
  /** Aborted when the partition is deleted during creation or the gate closes. */
  cancel: AbortSignal;
  log: Logger;
}

/**
 * Creates a planned partition, each resource as soon as what it references exists:
 *
 *   resource group ─┬─ security group ─┐
 *                   ├─ network ────────┼─ NIC i ── VM i     (every node in parallel)
 *                   └─ public IP ──────┘  (head NIC only)
 *
 * The first failure stops the rest, and the function returns only when no request is in flight, so a
 * deletion that follows cannot race a creation. Every PUT is idempotent: running it again converges.
 */
export async function provisionPartition(plan: PartitionPlan, ctx: ProvisionContext): Promise<void> {
  const { arm, log } = ctx;
  const stop = new AbortController();
  const cancel = AbortSignal.any([ctx.cancel, stop.signal]);
  const limits: OperationLimits = { ...ctx.limits, cancel };
  const { group } = plan;

  try {
    await arm.resources.resourceGroups.createOrUpdate(group, { location: plan.location, tags: plan.tags }, { abortSignal: cancel });
  } catch (error) {
    if (ctx.cancel.aborted) throw new OperationCancelled(`resource group ${group} abandoned`);
    throw new OperationFailed(`resource group ${group}: ${describeAzureError(error)}`, { cause: error });
  }
  log.debug({ group }, 'resource group ready');

  const { securityGroup: nsg, network: vnet, publicIp: pip } = plan;
  const securityGroup = completeOperation(`network security group ${nsg.name}`, limits, (o) =>
    arm.network.networkSecurityGroups.beginCreateOrUpdate(group, nsg.name, nsg.body, o),
  );
  const network = completeOperation(`virtual network ${vnet.name}`, limits, (o) => arm.network.virtualNetworks.beginCreateOrUpdate(group, vnet.name, vnet.body, o));
  const publicIp = completeOperation(`public IP ${pip.name}`, limits, (o) => arm.network.publicIPAddresses.beginCreateOrUpdate(group, pip.name, pip.body, o));
  const shared = Promise.all([securityGroup, network]);

  const nodes = plan.nodes.map(async (node) => {
    await shared;
    if (node.role === 'head') await publicIp;
    await completeOperation(`network interface ${node.nicName}`, limits, (o) =>
      arm.network.networkInterfaces.beginCreateOrUpdate(group, node.nicName, node.nic, o),
    );
    await completeOperation(`virtual machine ${node.vmName}`, limits, (o) => arm.compute.virtualMachines.createOrUpdate(group, node.vmName, node.vm, o));
    log.debug({ node: node.vmName }, 'node created');
  });

  const steps = [securityGroup, network, publicIp, ...nodes];
  // The first failure aborts the others; then wait until every step has stopped.
  for (const step of steps) step.catch(() => stop.abort());
  const results = await Promise.allSettled(steps);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
  if (!failures.length) return;
  // The root cause, not the operations it cancelled.
  throw failures.find((e) => !(e instanceof OperationCancelled)) ?? failures[0]!;
}
