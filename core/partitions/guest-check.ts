import type { Partition } from '../../terminal-protocol/common.js';
import { isTransient } from '../jobs/steps/node-retry.js';
import type { NodePool } from '../nodes/node-pool.js';
import { pause } from '../supervision/durable-actor.js';

/** Waits between attempts to reach a node that does not answer yet (sshd starting, or moving to its port). */
const BACKOFF_MS = [250, 500, 1_000, 2_000];

/** The reason a node will not be ready, as the partition's failure. */
export class GuestNotReady extends Error {
  override name = 'GuestNotReady';
}

/**
 * Runs the gate's guest check (Partition.guestCheck) on every node of an up partition, in parallel, over the
 * core's own SSH sessions: each connection checks the host key the core pinned, so a node is ready only when it
 * answers as itself, on its configured port, and the command says its guest is done. A node that does not answer
 * yet (refused, reset: sshd starting or moving) is tried again until the time limit; a wrong host key, a command
 * that fails (cloud-init failed) or the time limit end the check with a GuestNotReady naming the node.
 */
export async function checkGuests(nodes: NodePool, partition: string, check: NonNullable<Partition['guestCheck']>, signal: AbortSignal): Promise<void> {
  // A timer of our own, not AbortSignal.timeout(): a timeout signal held only by an AbortSignal.any() can be
  // garbage collected before it fires (nodejs/node#57736), and the check would then wait for ever.
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), check.timeoutSec * 1000);
  const limit = AbortSignal.any([signal, deadline.signal]);
  const count = Math.max(1, nodes.pinned(partition)?.length ?? 0);
  let last = '';
  const checkNode = async (rank: number): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      try {
        const session = await nodes.node(partition, rank, limit);
        const result = await session.exec(check.command, { signal: limit });
        if (result.code === 0) return;
        const output = `${result.stdout}${result.stderr}`.trim().split('\n').slice(-20).join('\n');
        throw new GuestNotReady(`node ${session.node.name} is not ready: ${output || `its check exited ${result.code ?? result.signal}`}`);
      } catch (error) {
        if (signal.aborted) throw error;
        if (limit.aborted)
          throw new GuestNotReady(`node ${nodes.ranked(partition)[rank]?.name ?? rank} was not ready within ${check.timeoutSec} s (cloud-init's last stage, or sshd with the pinned host key)${last ? `: ${last}` : ''}`);
        if (!isTransient(error)) throw error instanceof GuestNotReady ? error : new GuestNotReady((error as Error).message);
        last = (error as Error).message;
        // A failed opening or a dropped session is not kept: the next attempt connects anew (or, past the limit, ends).
        await pause(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!, limit).catch(() => undefined);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: count }, (_, rank) => checkNode(rank)));
  } finally {
    clearTimeout(timer);
  }
}
