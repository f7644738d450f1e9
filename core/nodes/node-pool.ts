import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SpoolPaths } from '../../spool-bootstrap/paths.js';
import { writeFileAtomic } from '../../spool-bootstrap/files.js';
import type { Partition, PartitionNode } from '../../terminal-protocol/common.js';
import { partitionKeys } from './partition-keys.js';
import { NodeSession } from './node-session.js';

/** The nodes of a partition by rank: the head first (rank 0), then the others in the gate's order. Pure. */
export function byRank<T extends { role?: string }>(nodes: readonly T[]): T[] {
  const head = Math.max(0, nodes.findIndex((n) => n.role === 'head'));
  return nodes.length === 0 ? [] : [nodes[head]!, ...nodes.filter((_, i) => i !== head)];
}

/**
 * SSH sessions to the nodes of live partitions, one per node, opened on first use and reused by every step of
 * its job and by log reads. Nodes are named by rank (0: the head; see byRank). Host keys are pinned in the
 * spool when the partition comes up; later gate reports cannot change them, and every node's key is checked.
 */
export class NodePool {
  /** Per partition, the session (or its opening) of each rank. */
  private readonly sessions = new Map<string, Map<number, Promise<NodeSession>>>();

  constructor(
    private readonly spool: SpoolPaths,
    /** Whether the nodes of a partition are worked through the node agent (its remote's `nodeAgent`). */
    private readonly agentAllowed: (partition: string) => boolean = () => true,
  ) {}

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

  /** The pinned nodes of a partition in rank order (head first); empty when none are pinned. */
  ranked(partition: string): PartitionNode[] {
    return byRank(this.pinned(partition) ?? []);
  }

  /** The session to a partition's head node (rank 0), opened on first use. */
  head(partition: string, signal?: AbortSignal): Promise<NodeSession> {
    return this.node(partition, 0, signal);
  }

  /** The session to the node of rank `rank` (0: the head), opened on first use, its host key checked. */
  node(partition: string, rank: number, signal?: AbortSignal): Promise<NodeSession> {
    const existing = this.sessions.get(partition)?.get(rank);
    if (existing) {
      return existing.then(
        (s) => (s.isOpen ? s : this.open(partition, rank, signal)),
        () => this.open(partition, rank, signal),
      );
    }
    return this.open(partition, rank, signal);
  }

  /** Sessions to every node of the partition, in rank order; rejects if any node cannot be reached. */
  all(partition: string, signal?: AbortSignal): Promise<NodeSession[]> {
    const count = Math.max(1, this.pinned(partition)?.length ?? 0);
    return Promise.all(Array.from({ length: count }, (_, rank) => this.node(partition, rank, signal)));
  }

  /** The open session to the head node, if any, without connecting. */
  async current(partition: string): Promise<NodeSession | null> {
    const existing = this.sessions.get(partition)?.get(0);
    if (!existing) return null;
    try {
      const s = await existing;
      return s.isOpen ? s : null;
    } catch {
      return null;
    }
  }

  private open(partition: string, rank: number, signal?: AbortSignal): Promise<NodeSession> {
    const nodes = this.pinned(partition);
    const node = nodes ? byRank(nodes)[rank] : undefined;
    const opening = node
      ? this.connect(partition, rank, node, signal)
      : Promise.reject(new Error(nodes ? `partition ${partition} has no node of rank ${rank}` : `partition ${partition} has no pinned nodes`));
    let sessions = this.sessions.get(partition);
    if (!sessions) this.sessions.set(partition, (sessions = new Map()));
    sessions.set(rank, opening);
    opening.catch(() => {
      const current = this.sessions.get(partition);
      if (current?.get(rank) === opening) {
        current.delete(rank);
        if (current.size === 0) this.sessions.delete(partition);
      }
    });
    return opening;
  }

  /**
   * A node with a public address is reached there; one without (an Azure compute node: only the head has a
   * public IP) through the head, over a channel to its private address (as `ssh -J head`). Its host key is
   * checked all the same.
   */
  private async connect(partition: string, rank: number, node: PartitionNode, signal?: AbortSignal): Promise<NodeSession> {
    const session = await this.reach(partition, rank, node, signal);
    session.agentAllowed = this.agentAllowed(partition);
    return session;
  }

  private async reach(partition: string, rank: number, node: PartitionNode, signal?: AbortSignal): Promise<NodeSession> {
    const key = partitionKeys(this.spool, partition).privateKey;
    if (rank === 0 || node.publicIp || !node.privateIp) return NodeSession.connect(node, key, { signal });
    const head = await this.head(partition, signal);
    const via = await head.forwardOut(node.privateIp, node.sshPort);
    return NodeSession.connect(node, key, { signal, via }).catch((error: unknown) => {
      via.destroy();
      throw error;
    });
  }

  /** Close every session to the partition's nodes. */
  release(partition: string): void {
    const sessions = this.sessions.get(partition);
    this.sessions.delete(partition);
    for (const existing of sessions?.values() ?? []) existing.then((s) => s.close(), () => {});
  }

  closeAll(): void {
    for (const name of [...this.sessions.keys()]) this.release(name);
  }
}
