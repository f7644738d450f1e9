import { describeAzureError } from './azure-errors.js';

/** How long one long-running operation may take, how often it is polled, and what cancels it. */
export interface OperationLimits {
  timeoutMs: number;
  pollIntervalMs: number;
  cancel: AbortSignal;
}

/** The operation did not finish within its time limit (it may still finish in Azure). */
export class OperationTimeout extends Error {
  override name = 'OperationTimeout';
}

/** The operation was abandoned because the partition is being deleted or the gate is closing. */
export class OperationCancelled extends Error {
  override name = 'OperationCancelled';
}

/** An Azure operation failed; the message is Azure's. */
export class OperationFailed extends Error {
  override name = 'OperationFailed';
}

interface Poller<T> {
  pollUntilDone(options?: { abortSignal?: AbortSignal }): Promise<T>;
}

export interface OperationOptions {
  abortSignal: AbortSignal;
  updateIntervalInMs: number;
}

/**
 * Starts a long-running operation and waits for its end, within the time limit. `begin` is an SDK
 * call: the AutoRest clients resolve to a poller, the newer compute client returns one directly (and
 * that poller is itself awaitable, which would wait without the time limit; so it is never awaited).
 * Either way, polling honours the interval and Azure's Retry-After, and stops on timeout or cancel.
 */
export async function completeOperation<T>(
  what: string,
  limits: OperationLimits,
  begin: (options: OperationOptions) => Poller<T> | Promise<Poller<T>>,
): Promise<T> {
  const timeout = AbortSignal.timeout(limits.timeoutMs);
  const abortSignal = AbortSignal.any([limits.cancel, timeout]);
  try {
    const started = begin({ abortSignal, updateIntervalInMs: limits.pollIntervalMs });
    const poller = 'pollUntilDone' in started ? started : await started;
    return await poller.pollUntilDone({ abortSignal });
  } catch (error) {
    if (limits.cancel.aborted) throw new OperationCancelled(`${what} abandoned`);
    if (timeout.aborted) throw new OperationTimeout(`${what} did not finish within ${Math.round(limits.timeoutMs / 100) / 10}s`);
    throw new OperationFailed(`${what}: ${describeAzureError(error)}`, { cause: error });
  }
}
