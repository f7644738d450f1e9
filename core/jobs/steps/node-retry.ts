import { ErrorCode, RpcError } from '../../../terminal-protocol/errors.js';
import { HostKeyMismatch } from '../../nodes/node-session.js';
import { pause, StepAborted, type StepEffect } from './step-context.js';

/** How long a node may stay unreachable before the job is ended as "node lost". */
export const NODE_LOST_AFTER_MS = 120_000;
const BACKOFF_MS = [250, 500, 1_000, 2_000, 5_000];

const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);

/** A dropped or refused connection (worth retrying), as opposed to a refusal that must end the job. */
export function isTransient(error: unknown): boolean {
  if (error instanceof HostKeyMismatch || error instanceof StepAborted) return false;
  if (error instanceof RpcError) return error.code === ErrorCode.Unavailable;
  const e = error as NodeJS.ErrnoException & { level?: string };
  if (e?.code && TRANSIENT_CODES.has(e.code)) return true;
  if (e?.level === 'client-socket' || e?.level === 'client-timeout') return true;
  return /not connected|no response from server|timed out while waiting for handshake|connection lost|channel open failure|unable to start subsystem|unexpected sftp session termination|unable to exec/i.test(e?.message ?? '');
}

/**
 * Wrap a step that talks to the head node: a dropped or refused connection (the node rebooting, its gate
 * restarting, the network blinking) closes the session and retries the whole step, which is idempotent,
 * until the node has been unreachable for NODE_LOST_AFTER_MS. A host key mismatch is never retried.
 */
export const retryingOnNodeLoss =
  (effect: StepEffect, lostAfterMs = NODE_LOST_AFTER_MS): StepEffect =>
  async (context) => {
    let since: number | null = null;
    for (let attempt = 0; ; attempt++) {
      try {
        return await effect(context);
      } catch (error) {
        if (!isTransient(error) || context.signal.aborted) throw error;
        since ??= Date.now();
        context.services.nodes.release(context.job.partitionName!);
        if (Date.now() - since > lostAfterMs) throw new Error(`node lost: unreachable for ${Math.round(lostAfterMs / 1000)} s (${(error as Error).message})`);
        context.logger.warn({ err: (error as Error).message, attempt }, 'node unreachable; retrying');
        await pause(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!, context.signal);
      }
    }
  };
