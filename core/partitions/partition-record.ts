import type { PartitionNode } from '../../terminal-protocol/common.js';
import type { PortSpec } from '../../terminal-protocol/gate-methods.js';

/**
 * A partition's states, each recorded before its effect runs (partition-states.ts declares them):
 *
 *   requested ─► creating ─► ready ─► busy ─► idle ─► deleting ─► deleted
 *        │           │         ▲               │  ▲
 *        └───────────┴─► failed ─► retrying ─► requested (a passing failure: deleted, then asked again after a wait)
 *                                  idle ─► ready: reserved for the next job
 */
export type PartitionState = 'requested' | 'creating' | 'ready' | 'busy' | 'idle' | 'deleting' | 'deleted' | 'failed' | 'retrying';

/** What makes two jobs able to run on one partition (container images may differ). */
export interface PartitionShape {
  remote: string;
  flavor: string;
  nodeCount: number;
  /** The cloud (VM) image, or null for the gate's default. */
  cloudImage: string | null;
  /** Ports opened at creation (security rules, published ports). */
  ports: PortSpec[];
  /** Spot (preemptible) nodes, or on-demand ones; null or absent: the gate's default. */
  spot?: boolean | null;
  /** With spot: the most a node may cost an hour; null or absent: the gate's maximum. */
  maxPrice?: number | null;
}

export interface PartitionRecord extends PartitionShape {
  name: string;
  state: PartitionState;
  /** Whose jobs may run on it; null for a pool partition no job has used yet. */
  owner: string | null;
  /** The job it is reserved for or runs (ready, busy; and while requested/creating/failed for that job). */
  jobId: string | null;
  /** Made ahead by the remote's warm pool. */
  pool: boolean;
  /** The gate's id, once the gate has taken the request. */
  gateId: string | null;
  /** The nodes, once up, with their pinned host keys. */
  nodes: PartitionNode[];
  /** Container images made available on the nodes. */
  containerImages: string[];
  jobsRun: number;
  /** Passing failures (quota, capacity) so far, and when the next attempt starts (epoch ms). */
  attempts: number;
  retryAtMs: number | null;
  /** When it went idle, and for how long it may stay so (seconds). */
  idleSinceMs: number | null;
  keepSec: number;
  /** Why it failed or is being deleted. */
  reason: string | null;
  createdMs: number;
  upMs: number | null;
  deletedMs: number | null;
}

/** The partition states that hold cloud resources (or may: asked for, or still being deleted). */
export const LIVE_STATES: readonly PartitionState[] = ['requested', 'creating', 'ready', 'busy', 'idle', 'deleting', 'failed', 'retrying'];

export const isLive = (p: Pick<PartitionRecord, 'state'>): boolean => p.state !== 'deleted';

const portsKey = (ports: PortSpec[]): string =>
  ports
    .map((p) => `${p.port}/${p.protocol}/${p.direction}`)
    .sort()
    .join(',');

/** Whether a job of `owner` needing `shape` may run on `partition` (sharing: the remote lets owners share). */
export function fits(partition: PartitionShape & Pick<PartitionRecord, 'owner'>, shape: PartitionShape, owner: string, sharing: boolean): boolean {
  return (
    partition.remote === shape.remote &&
    partition.flavor === shape.flavor &&
    partition.nodeCount === shape.nodeCount &&
    partition.cloudImage === shape.cloudImage &&
    portsKey(partition.ports) === portsKey(shape.ports) &&
    // A job that asked for on-demand nodes never lands on spot ones, nor a spot job on nodes it did not price.
    (partition.spot ?? null) === (shape.spot ?? null) &&
    (partition.maxPrice ?? null) === (shape.maxPrice ?? null) &&
    (partition.owner === null || partition.owner === owner || sharing)
  );
}

/** A new record, as the scheduler asks for it. */
export function requestedPartition(name: string, shape: PartitionShape, owner: string | null, jobId: string | null, now: number): PartitionRecord {
  return {
    ...shape,
    name,
    state: 'requested',
    owner,
    jobId,
    pool: jobId === null,
    gateId: null,
    nodes: [],
    containerImages: [],
    jobsRun: 0,
    attempts: 0,
    retryAtMs: null,
    idleSinceMs: null,
    keepSec: 0,
    reason: null,
    createdMs: now,
    upMs: null,
    deletedMs: null,
  };
}
