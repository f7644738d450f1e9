import type { Logger } from 'pino';
import { httpStatusOf } from './azure-errors.js';
import { completeOperation, OperationCancelled, OperationFailed, type OperationLimits } from './long-running.js';

const FRESH_GROUP_RETRY_MAX_MS = 5_000;

/** ARM's answer, for a while after it created a group, to writes into it (its replicas have not all seen it). */
export const isFreshGroupMiss = (error: unknown): boolean => {
  const cause = error instanceof OperationFailed ? error.cause : error;
  if (httpStatusOf(cause) !== 404) return false;
  const code = (cause as { code?: unknown }).code;
  return code === 'ResourceGroupNotFound' || (cause instanceof Error && cause.message.includes('ResourceGroupNotFound'));
};

export const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new OperationCancelled('abandoned'));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new OperationCancelled('abandoned'));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

export type InGroup = <T>(what: string, l: OperationLimits, begin: Parameters<typeof completeOperation<T>>[2]) => Promise<T>;

/**
 * Writes into a resource group created at `createdAt`: each a long-running operation, tried again while ARM may
 * still answer that the new group does not exist (404 ResourceGroupNotFound), for at most `graceMs` after it.
 */
export function writesIntoFreshGroup(createdAt: number, graceMs: number, log: Logger): InGroup {
  return async (what, l, begin) => {
    let delay = Math.max(1, Math.min(l.pollIntervalMs, 1000));
    for (;;) {
      try {
        return await completeOperation(what, l, begin);
      } catch (error) {
        if (!isFreshGroupMiss(error) || Date.now() + delay > createdAt + graceMs) throw error;
        log.debug({ what, retryInMs: delay }, 'resource group not visible yet; trying again');
        await sleep(delay, l.cancel);
        delay = Math.min(delay * 2, FRESH_GROUP_RETRY_MAX_MS);
      }
    }
  };
}
