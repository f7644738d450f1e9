import type { Partition, PartitionNode } from '../../terminal-protocol/common.js';
import { partitionOfGroup } from './naming.js';
import type { ObservedPartition } from './partition-reader.js';
import { tagOf, TAG } from './tags.js';

export interface ViewContext {
  /** This gate is creating the partition right now. */
  creating: boolean;
  /** This gate is deleting the partition right now. */
  deleting: boolean;
  /** A failure this gate saw that Azure does not hold (e.g. the failure tag could not be written). */
  failure?: string;
  sshUser: string;
  sshPort: number;
  /** What the core runs on each node before it takes an up partition (guest-ready.ts). */
  guestCheck: NonNullable<Partition['guestCheck']>;
}

const same = (a: string | undefined, b: string | undefined): boolean => !!a && !!b && a.toLowerCase() === b.toLowerCase();
const inProgress = (state: string | undefined): boolean => state !== undefined && state !== 'Succeeded' && state !== 'Failed';

/**
 * A partition as the core sees it, derived from Azure's resources alone (plus what this gate is doing
 * right now), so that a restarted gate reports the same. Status precedence: failed > deleting >
 * creating > up. A partition is up only once its group is tagged ready (every VM created; groups made before
 * the tag existed carry none), and comes with the guest check the core runs on its nodes before taking it. One
 * with fewer VMs than asked for, or still tagged not ready, that nobody is creating, was interrupted (the gate
 * stopped mid-creation): it is failed, and deleting it cleans up.
 */
export function partitionView(observed: ObservedPartition, ctx: ViewContext): Partition {
  const { group, vms, nics, publicIps } = observed;
  const name = tagOf(group.tags, TAG.partition) ?? partitionOfGroup(group.name) ?? group.name;
  const expected = Number(tagOf(group.tags, TAG.nodes) ?? '1');

  const nodes: PartitionNode[] = [...vms]
    .sort((a, b) => Number(tagOf(a.tags, TAG.node) ?? 0) - Number(tagOf(b.tags, TAG.node) ?? 0))
    .map((vm) => {
      // A VM lists the NICs it made in networkInterfaces; a NIC names its VM too.
      const nic = nics.find((n) => vm.nicIds.some((id) => same(id, n.id))) ?? nics.find((n) => same(n.virtualMachineId, vm.id));
      const publicIp = nic?.publicIpId ? publicIps.find((p) => same(p.id, nic.publicIpId)) : undefined;
      return {
        name: vm.name,
        role: tagOf(vm.tags, TAG.role) === 'head' ? 'head' : 'compute',
        publicIp: publicIp?.ipAddress ?? null,
        privateIp: nic?.privateIp ?? null,
        sshPort: ctx.sshPort,
        sshUser: ctx.sshUser,
        hostKeyFingerprint: tagOf(vm.tags, TAG.hostKey) ?? null,
      };
    });

  const resources = [...vms.map((v) => ({ kind: 'virtual machine', ...v })), ...nics.map((n) => ({ kind: 'network interface', ...n })), ...publicIps.map((p) => ({ kind: 'public IP', ...p }))];
  const failedResource = resources.find((r) => r.provisioningState === 'Failed');
  const error = tagOf(group.tags, TAG.error) ?? ctx.failure ?? (failedResource ? `${failedResource.kind} ${failedResource.name} failed to provision` : undefined);

  let status: Partition['status'];
  if (error !== undefined) status = 'failed';
  else if (ctx.deleting || group.provisioningState === 'Deleting') status = 'deleting';
  else if (ctx.creating) status = 'creating';
  else if (vms.length < expected) status = 'failed';
  else if (resources.some((r) => inProgress(r.provisioningState))) status = 'creating';
  else if (tagOf(group.tags, TAG.ready) === 'false') status = 'failed';
  else status = 'up';

  const interrupted = status === 'failed' && error === undefined;
  const wasUp = tagOf(group.tags, TAG.ready) === 'true';
  const why =
    vms.length < expected
      ? wasUp
        ? lostNodesReason(group.tags, missingNodes(vms, expected))
        : `creation stopped with ${vms.length} of ${expected} nodes (the gate was restarted); delete the partition`
      : 'creation stopped before every node was created (the gate was restarted); delete the partition';
  return {
    id: name,
    name,
    status,
    jobId: tagOf(group.tags, TAG.job) ?? null,
    nodes,
    ...(error !== undefined ? { error } : interrupted ? { error: why } : {}),
    ...(status === 'up' ? { guestCheck: ctx.guestCheck } : {}),
  };
}

/** The VM names of the nodes an up partition no longer has. */
function missingNodes(vms: ObservedPartition['vms'], expected: number): number[] {
  const present = new Set(vms.map((vm) => Number(tagOf(vm.tags, TAG.node) ?? -1)));
  return Array.from({ length: expected }, (_, i) => i).filter((i) => !present.has(i));
}

/**
 * Why an up partition lost nodes: Azure evicted them (Spot: the reason starts with `Preempted: `, which the core
 * takes as a preemption to requeue after), or they were deleted behind the gate's back.
 */
export function lostNodesReason(tags: Record<string, string>, nodes: number[]): string {
  const list = nodes.map((i) => `node ${i}`).join(', ');
  const placement = tagOf(tags, TAG.placement);
  return tagOf(tags, TAG.priority) === 'spot'
    ? `${PREEMPTED}Azure evicted the Spot VM of ${list}${placement ? ` (${placement})` : ''}`
    : `${list} ${nodes.length === 1 ? 'is' : 'are'} gone (deleted outside Sky Port)`;
}

/** The reason prefix of a partition that lost Spot nodes to an eviction. */
export const PREEMPTED = 'Preempted: ';
