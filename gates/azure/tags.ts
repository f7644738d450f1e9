import type { PartitionRequest } from '../../terminal-protocol/gate-methods.js';

/** Tag names the gate writes. The first four are its ownership mark: nothing without them is deleted. */
export const TAG = {
  job: 'skyport-job',
  partition: 'skyport-partition',
  core: 'skyport-core',
  owner: 'skyport-owner',
  /** Node count asked for: tells a restarted gate whether every node exists. */
  nodes: 'skyport-nodes',
  /** Why creation failed, kept on the group so that the failure survives a gate restart. */
  error: 'skyport-error',
  /** Every node's guest is ready (cloud-init done, sshd with the pinned key): only then is the partition up. */
  ready: 'skyport-ready',
  node: 'skyport-node',
  role: 'skyport-role',
  hostKey: 'skyport-host-key',
} as const;

/** Azure's limits: 50 tags a resource, values of 256 characters, names without these characters. */
export const TAG_VALUE_MAX = 256;
const MAX_TAGS = 50;
const BAD_TAG_NAME = /[<>%&\\?/]/;

export const tagValue = (value: string): string => (value.length <= TAG_VALUE_MAX ? value : `${value.slice(0, TAG_VALUE_MAX - 1)}…`);

/**
 * The tags of every resource of a partition: the request's own tags where Azure accepts them, then the
 * ownership mark, which a request cannot override.
 */
export function partitionTags(request: PartitionRequest, coreId: string): Record<string, string> {
  const own: Record<string, string> = {
    [TAG.job]: tagValue(request.jobId),
    [TAG.partition]: request.name,
    [TAG.core]: tagValue(coreId),
    [TAG.owner]: tagValue(request.owner),
    [TAG.nodes]: String(request.nodeCount),
  };
  const room = MAX_TAGS - Object.keys(own).length - 3; // the VM tags (node, role, host key)
  const extra = Object.entries(request.tags)
    .filter(([name]) => !name.toLowerCase().startsWith('skyport-') && !BAD_TAG_NAME.test(name) && name.length > 0 && name.length <= 512)
    .slice(0, room)
    .map(([name, value]) => [name, tagValue(value)]);
  return { ...Object.fromEntries(extra), ...own };
}

/** Whether tags mark a resource as this core's partition `partition` (tag names are case-insensitive in Azure). */
export function ownedBy(tags: Record<string, string> | undefined, coreId: string, partition: string): boolean {
  const lower = new Map(Object.entries(tags ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  return lower.get(TAG.core) === tagValue(coreId) && lower.get(TAG.partition) === partition;
}

export const tagOf = (tags: Record<string, string> | undefined, name: string): string | undefined =>
  Object.entries(tags ?? {}).find(([k]) => k.toLowerCase() === name)?.[1];
