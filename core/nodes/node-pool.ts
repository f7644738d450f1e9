import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SpoolPaths } from '../../spool-bootstrap/paths.js';
import { writeFileAtomic } from '../../spool-bootstrap/files.js';
import type { Partition, PartitionNode } from '../../terminal-protocol/common.js';
import { partitionKeys } from './partition-keys.js';
import { NodeSession } from './node-session.js';

/**
 * SSH sessions to the head nodes of live partitions, one per partition, reused by every step of its job and
 * by log reads. Host keys are pinned in the spool when the partition comes up; later gate reports cannot
 * change them.
 */
export class NodePool {
  private readonly sessions = new Map<string, Promise<NodeSession>>();

  constructor(private readonly spool: SpoolPaths) {}

  private pinnedPath(partition: string): string {
    return join(this.spool.partition(partition), 'pinned-nodes.json');
  }

  /** Record the nodes (with their host key fingerprints) of a partition that just came up. */
  pin(partition: Partition, fingerprints?: string[]): PartitionNode[] {
    const nodes = partition.nodes.map((n, i) => ({ ...n, hostKeyFingerprint: fingerprints?.[i] ?? n.hostKeyFingerprint }));
    writeFileAtomic(this.pinnedPath(partition.name), JSON.stringify(nodes), 0o600);
    return nodes;
  }

  pinned(partition: string): PartitionNode[] | null {
    const path = this.pinnedPath(partition);
    return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as PartitionNode[]) : null;
  }

  /** The session to a partition's head node, opened on first use. */
  head(partition: string, signal?: AbortSignal): Promise<NodeSession> {
    const existing = this.sessions.get(partition);
    if (existing) {
      return existing.then(
        (s) => (s.isOpen ? s : this.open(partition, signal)),
        () => this.open(partition, signal),
      );
    }
    return this.open(partition, signal);
  }

  /** The open session, if any, without connecting. */
  async current(partition: string): Promise<NodeSession | null> {
    const existing = this.sessions.get(partition);
    if (!existing) return null;
    try {
      const s = await existing;
      return s.isOpen ? s : null;
    } catch {
      return null;
    }
  }

  private open(partition: string, signal?: AbortSignal): Promise<NodeSession> {
    const nodes = this.pinned(partition);
    const head = nodes?.find((n) => n.role === 'head') ?? nodes?.[0];
    const opening = head
      ? NodeSession.connect(head, partitionKeys(this.spool, partition).privateKey, { signal })
      : Promise.reject(new Error(`partition ${partition} has no pinned nodes`));
    this.sessions.set(partition, opening);
    opening.catch(() => {
      if (this.sessions.get(partition) === opening) this.sessions.delete(partition);
    });
    return opening;
  }

  release(partition: string): void {
    const existing = this.sessions.get(partition);
    this.sessions.delete(partition);
    existing?.then((s) => s.close(), () => {});
  }

  closeAll(): void {
    for (const name of [...this.sessions.keys()]) this.release(name);
  }
}
