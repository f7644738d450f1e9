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
  /** The gate (its name in the core's configuration) that made it: the one that reconciles it. */
  gate: 'skyport-gate',
  /** When it was asked for (ISO 8601, UTC). */
  created: 'skyport-created',
  /** When it expires (ISO 8601, UTC): its nodes power off then, and any gate of its core deletes it once past it. */
  expires: 'skyport-expires',
  /** `spot` for Spot VMs (the cloud may evict them), else `regular`. */
  priority: 'skyport-priority',
  /** Where its VMs are: `<location>[/zone <n>] <size>` (after a capacity fallback, not necessarily the request's). */
  placement: 'skyport-placement',
} as const;

/** What a partition's tags say beyond the request: who made it, when, until when, on what terms. */
export interface PartitionMarks {
  gate: string;
  createdAt: Date;
  expiresAt: Date;
  spot: boolean;
}

/** Azure's limits: 50 tags a resource, values of 256 characters, names without these characters. */
export const TAG_VALUE_MAX = 256;
const MAX_TAGS = 50;
const BAD_TAG_NAME = /[<>%&\\?/]/;

export const tagValue = (value: string): string => (value.length <= TAG_VALUE_MAX ? value : `${value.slice(0, TAG_VALUE_MAX - 1)}…`);

/**
 * The tags of every resource of a partition: the request's own tags where Azure accepts them, then the
 * ownership mark, which a request cannot override.
 */
export function partitionTags(request: PartitionRequest, coreId: string, marks: PartitionMarks): Record<string, string> {
  const own: Record<string, string> = {
    [TAG.job]: tagValue(request.jobId),
    [TAG.partition]: request.name,
    [TAG.core]: tagValue(coreId),
    [TAG.owner]: tagValue(request.owner),
    [TAG.nodes]: String(request.nodeCount),
    [TAG.gate]: tagValue(marks.gate),
    [TAG.created]: marks.createdAt.toISOString(),
    [TAG.expires]: marks.expiresAt.toISOString(),
    [TAG.priority]: marks.spot ? 'spot' : 'regular',
  };
  const room = MAX_TAGS - Object.keys(own).length - 5; // the VM tags (node, role, host key) and the group's (ready, error, placement)
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

/** A partition's expiry from its tags (a group made before expiries were tagged has none: null). */
export function expiryOf(tags: Record<string, string> | undefined): Date | null {
  const value = tagOf(tags, TAG.expires);
  const at = value === undefined ? NaN : Date.parse(value);
  return Number.isFinite(at) ? new Date(at) : null;
}

/** When a partition was asked for, from its tags, or null. */
export function createdOf(tags: Record<string, string> | undefined): Date | null {
  const value = tagOf(tags, TAG.created);
  const at = value === undefined ? NaN : Date.parse(value);
  return Number.isFinite(at) ? new Date(at) : null;
}

/**
 * How long a partition may live: the request's `skyport-lifetime-sec` tag (the job's duration, when the core
 * sends it) within the remote's maximum, plus the margin.
 */
export function lifetimeSecOf(request: PartitionRequest, maxLifetimeSec: number, marginSec: number): number {
  const asked = Number(Object.entries(request.tags).find(([k]) => k.toLowerCase() === 'skyport-lifetime-sec')?.[1]);
  const lifetime = Number.isFinite(asked) && asked > 0 ? Math.min(asked, maxLifetimeSec) : maxLifetimeSec;
  return lifetime + marginSec;
}
