import { setMaxListeners } from 'node:events';
import type { Logger } from 'pino';
import type { ArmClients } from './arm-clients.js';
import { azureCodeOf, describeAzureError, failureKindOf, httpStatusOf } from './azure-errors.js';
import { writesIntoFreshGroup, type InGroup } from './fresh-group.js';
import type { Limiter } from './limiter.js';
import type { SharedNetworks } from './shared-network.js';
import { completeOperation, OperationCancelled, OperationFailed, OperationTimeout, type OperationLimits } from './long-running.js';
import { describePlacement, type PartitionPlan, type Placement } from './partition-plan.js';
import { TAG } from './tags.js';

export interface ProvisionContext {
  arm: ArmClients;
  limits: Omit<OperationLimits, 'cancel'>;
  /** Aborted when the partition is deleted during creation or the gate closes. */
  cancel: AbortSignal;
  log: Logger;
  /** The gate's bound on VM creations in flight, shared by every partition. */
  vmSlots: Limiter;
  /** How long after the group's creation a write answered 404 ResourceGroupNotFound is tried again. */
  freshGroupGraceMs: number;
  /** The gate's shared networks, for the partitions that join one. */
  sharedNetworks: SharedNetworks;
}

/** Nodes per step of the poll interval: a partition of 200 nodes polls each operation 20 times less often. */
const NODES_PER_POLL_STEP = 10;

/** Every placement allowed was tried and none had room: the partition's failure, of kind capacity. */
export class NoCapacity extends Error {
  override name = 'NoCapacity';
}

const notFoundIsDone = (error: unknown): Promise<void> => (httpStatusOf((error as Error).cause) === 404 ? Promise.resolve() : Promise.reject(error));

/**
 * Creates a planned partition in the first placement that has room, each resource as soon as what it references
 * exists:
 *
 *   resource group ─┬─ security group ──────────────────────┐
 *                   └─ NAT IP ── NAT gateway ── network ────┴─ VM i (its NIC, the head's public IP)
 *                                                              (every node in parallel, within the gate's VM slots)
 *
 * (the NAT gateway only when some node has no public IP). A partition of one node opening no inbound port joins
 * the core's shared network of the region instead, made once (shared-network.ts): resource group ── VM. Whether
 * the guests are ready (cloud-init's last stage) the core checks over SSH once the partition is up (guest-ready.ts). `plans` are the same partition in each placement allowed,
 * in order of preference (zones, then fallback sizes, then fallback regions). When a node of a placement fails for
 * want of capacity, the placement's VMs are deleted (with their NICs and the head's public IP, by their delete
 * options), and the next placement is tried; in another region the network is first deleted and made there. Any
 * other failure, or the last placement's, stops everything and deletes every VM (none keeps running and billing),
 * and the function returns only when no request is in flight, so a deletion that follows cannot race a creation.
 * Every PUT is idempotent: running it again converges. Returns the placement the partition got.
 */
export async function provisionPartition(plans: PartitionPlan[], ctx: ProvisionContext): Promise<Placement> {
  const { arm, log } = ctx;
  const first = plans[0];
  if (!first) throw new NoCapacity('no placement is allowed for this size (not offered, or cannot boot the image, in any allowed region)');
  const { group } = first;
  setMaxListeners(0, ctx.cancel);
  const limits: OperationLimits = { ...ctx.limits, cancel: ctx.cancel };

  try {
    // Not ready until every VM is: a group without the tag (made before it was written) is judged by its VMs.
    await arm.resources.resourceGroups.createOrUpdate(group, { location: first.groupLocation, tags: { ...first.tags, [TAG.ready]: 'false' } }, { abortSignal: ctx.cancel });
  } catch (error) {
    if (ctx.cancel.aborted) throw new OperationCancelled(`resource group ${group} abandoned`);
    throw new OperationFailed(`resource group ${group}: ${describeAzureError(error)}`, { cause: error });
  }
  const groupCreatedAt = Date.now();
  log.debug({ group }, 'resource group ready');

  /** A write into the group, tried again while ARM may still answer that the new group does not exist. */
  const inGroup = writesIntoFreshGroup(groupCreatedAt, ctx.freshGroupGraceMs, log);

  const tried: { placement: Placement; code: string }[] = [];
  let network: { location: string; plan: PartitionPlan; done: Promise<void> } | null = null;
  for (const [i, plan] of plans.entries()) {
    const where = describePlacement(plan.placement);
    if (network && network.location !== plan.placement.location) {
      log.info({ from: network.location, to: plan.placement.location }, 'moving the partition to another region: deleting its network first');
      await deleteNetwork(network.plan, ctx);
      network = null;
    }
    if (!network) network = { location: plan.placement.location, plan, done: createNetwork(plan, limits, inGroup, ctx) };
    try {
      await createNodes(plan, network.done, ctx, inGroup);
    } catch (error) {
      const cancelled = ctx.cancel.aborted;
      if (!cancelled) await deleteVirtualMachines(plan, ctx);
      if (cancelled) throw error;
      const capacity = failureKindOf(error) === 'capacity';
      if (!capacity) throw error;
      tried.push({ placement: plan.placement, code: azureCodeOf(error) ?? 'no capacity' });
      const next = plans[i + 1];
      if (next) {
        log.warn({ placement: where, next: describePlacement(next.placement), error: (error as Error).message }, 'no capacity for the partition there; trying the next placement');
        continue;
      }
      if (tried.length === 1) throw error;
      log.warn({ tried: tried.map((t) => `${describePlacement(t.placement)}: ${t.code}`) }, 'no placement allowed had capacity');
      throw new NoCapacity(`no capacity in any of the ${tried.length} placements allowed: ${summarize(tried)}`, { cause: error });
    }
    try {
      await arm.resources.resourceGroups.createOrUpdate(
        group,
        { location: plan.groupLocation, tags: { ...plan.tags, [TAG.ready]: 'true', [TAG.placement]: where } },
        { abortSignal: ctx.cancel },
      );
    } catch (error) {
      if (ctx.cancel.aborted) throw new OperationCancelled(`resource group ${group} abandoned`);
      throw new OperationFailed(`resource group ${group}: ${describeAzureError(error)}`, { cause: error });
    }
    if (i > 0) log.info({ placement: where, tried }, 'partition placed after a capacity fallback');
    return plan.placement;
  }
  throw new NoCapacity('unreachable');
}

/**
 * The placements tried, short (the reason is kept in a tag of 256 characters): per region, its zones, sizes and
 * Azure's codes, e.g. `eastus (zones 1, 2) Standard_D2s_v5, Standard_D2ds_v5: ZonalAllocationFailed`.
 */
function summarize(tried: { placement: Placement; code: string }[]): string {
  const regions = [...new Set(tried.map((t) => t.placement.location))];
  return regions
    .map((location) => {
      const here = tried.filter((t) => t.placement.location === location);
      const zones = [...new Set(here.map((t) => t.placement.zone).filter((z): z is string => z !== null))];
      const sizes = [...new Set(here.map((t) => t.placement.size))];
      const codes = [...new Set(here.map((t) => t.code))];
      return `${location}${zones.length ? ` (zone${zones.length > 1 ? 's' : ''} ${zones.join(', ')})` : ''} ${sizes.join(', ')}: ${codes.join(', ')}`;
    })
    .join('; ');
}

/**
 * The partition's network in its placement's region: security group, and NAT IP → NAT gateway → virtual network;
 * or the core's shared network there, made once (shared-network.ts).
 */
function createNetwork(plan: PartitionPlan, limits: OperationLimits, inGroup: InGroup, ctx: ProvisionContext): Promise<void> {
  const { arm } = ctx;
  if (plan.network.kind === 'shared') return ctx.sharedNetworks.ensure(plan.network.shared, limits);
  const { network: vnet, securityGroup: nsg, outbound } = plan.network;
  const { group } = plan;
  return (async () => {
    const securityGroup = inGroup(`network security group ${nsg.name}`, limits, (o) => arm.network.networkSecurityGroups.beginCreateOrUpdate(group, nsg.name, nsg.body, o));
    const natGateway = outbound
      ? inGroup(`public IP ${outbound.publicIp.name}`, limits, (o) => arm.network.publicIPAddresses.beginCreateOrUpdate(group, outbound.publicIp.name, outbound.publicIp.body, o)).then(() =>
          inGroup(`NAT gateway ${outbound.natGateway.name}`, limits, (o) => arm.network.natGateways.beginCreateOrUpdate(group, outbound.natGateway.name, outbound.natGateway.body, o)),
        )
      : Promise.resolve();
    const network = natGateway.then(() => inGroup(`virtual network ${vnet.name}`, limits, (o) => arm.network.virtualNetworks.beginCreateOrUpdate(group, vnet.name, vnet.body, o)));
    // Both settled before either failure is reported: nothing of the network is left in flight.
    const [a, b] = await Promise.allSettled([securityGroup, network]);
    for (const r of [a, b]) if (r.status === 'rejected') throw r.reason;
  })();
}

/** Every node's VM (within the gate's VM slots); the first failure stops the others. */
async function createNodes(plan: PartitionPlan, network: Promise<void>, ctx: ProvisionContext, inGroup: InGroup): Promise<void> {
  const { arm, log } = ctx;
  const stop = new AbortController();
  const cancel = AbortSignal.any([ctx.cancel, stop.signal]);
  // Every node's operations (and its wait for a VM slot) listen to it: a large partition is no leak.
  setMaxListeners(0, cancel, stop.signal);
  const nodeLimits: OperationLimits = {
    ...ctx.limits,
    cancel,
    pollIntervalMs: ctx.limits.pollIntervalMs * Math.max(1, Math.ceil(plan.nodes.length / NODES_PER_POLL_STEP)),
  };
  const { group } = plan;
  const nodes = plan.nodes.map(async (node) => {
    await network;
    await ctx.vmSlots
      .run(cancel, () => inGroup(`virtual machine ${node.vmName}`, nodeLimits, (o) => arm.compute.virtualMachines.createOrUpdate(group, node.vmName, node.vm, o)))
      .catch((error: unknown) => {
        // A turn given up while waiting for a slot rejects with the signal's reason.
        const ours = error instanceof OperationFailed || error instanceof OperationTimeout || error instanceof OperationCancelled;
        throw cancel.aborted && !ours ? new OperationCancelled(`virtual machine ${node.vmName} abandoned`) : error;
      });
    log.debug({ node: node.vmName }, 'node created');
  });
  const steps: Promise<unknown>[] = [network, ...nodes];
  // The first failure aborts the others; then wait until every step has stopped.
  for (const step of steps) step.catch(() => stop.abort());
  const results = await Promise.allSettled(steps);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
  if (!failures.length) return;
  // The root cause, not the operations it cancelled.
  throw failures.find((e) => !(e instanceof OperationCancelled)) ?? failures[0]!;
}

/**
 * No VM of a failed placement keeps running (and billing) while the next is tried or the failure is reported:
 * every VM it may have made is force-deleted (no graceful shutdown), with its NIC, public IP and disk by their
 * delete options; one that does not exist is already what is wanted. Returns when Azure has deleted them.
 */
export async function deleteVirtualMachines(plan: Pick<PartitionPlan, 'group' | 'nodes'>, ctx: Pick<ProvisionContext, 'arm' | 'limits' | 'cancel' | 'log'>): Promise<void> {
  const limits: OperationLimits = { ...ctx.limits, cancel: ctx.cancel };
  const results = await Promise.allSettled(
    plan.nodes.map((node) =>
      completeOperation(`deletion of virtual machine ${node.vmName}`, limits, (o) => ctx.arm.compute.virtualMachines.delete(plan.group, node.vmName, { ...o, forceDeletion: true })).catch(notFoundIsDone),
    ),
  );
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length) ctx.log.warn({ errors: failed.slice(0, 3).map((r) => (r.reason as Error).message) }, 'could not delete every VM of a failed placement; its deletion will');
  else ctx.log.info({ group: plan.group }, 'VMs of the failed placement deleted');
}

/** The network of a placement's region, before the partition moves to another region (its VMs are gone). */
async function deleteNetwork(plan: PartitionPlan, ctx: ProvisionContext): Promise<void> {
  // A shared network is the core's, not the partition's: it stays.
  if (plan.network.kind === 'shared') return;
  const limits: OperationLimits = { ...ctx.limits, cancel: ctx.cancel };
  const { network, securityGroup, outbound } = plan.network;
  const { group } = plan;
  const net = ctx.arm.network;
  const del = (what: string, begin: Parameters<typeof completeOperation<unknown>>[2]): Promise<void> =>
    completeOperation(`deletion of ${what}`, limits, begin).then(() => undefined, notFoundIsDone);
  // The subnet references the NAT gateway, which references its IP: deleted in that order.
  await Promise.all([
    del(`virtual network ${network.name}`, (o) => net.virtualNetworks.beginDelete(group, network.name, o)),
    del(`network security group ${securityGroup.name}`, (o) => net.networkSecurityGroups.beginDelete(group, securityGroup.name, o)),
  ]);
  if (outbound) {
    await del(`NAT gateway ${outbound.natGateway.name}`, (o) => net.natGateways.beginDelete(group, outbound.natGateway.name, o));
    await del(`public IP ${outbound.publicIp.name}`, (o) => net.publicIPAddresses.beginDelete(group, outbound.publicIp.name, o));
  }
}
