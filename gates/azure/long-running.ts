import { AsyncLocalStorage } from 'node:async_hooks';
import type { PipelinePolicy } from '@azure/core-rest-pipeline';
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

/**
 * The pollers of both SDK generations: core-lro 2 (`isDone()`, `getResult()`, resolved by the AutoRest clients'
 * `begin…`) and core-lro 3 (`isDone` and `result` as getters, `submitted()`, returned directly by the compute client).
 */
interface Poller<T> {
  poll(options?: { abortSignal?: AbortSignal }): Promise<unknown>;
  isDone: boolean | (() => boolean);
  submitted?: () => Promise<void>;
  pollUntilDone(options?: { abortSignal?: AbortSignal }): Promise<T>;
}

export interface OperationOptions {
  abortSignal: AbortSignal;
  updateIntervalInMs: number;
}

/** What the last answer of an operation in progress asked: how long to wait before polling it again. */
interface Pacing {
  retryAfterMs: number | undefined;
}

const pacing = new AsyncLocalStorage<Pacing>();

/** Retry-After of an answer, in ms: `retry-after-ms` / `x-ms-retry-after-ms`, else `Retry-After` (seconds or a date). */
export function retryAfterMsOf(header: (name: string) => string | undefined): number | undefined {
  for (const name of ['retry-after-ms', 'x-ms-retry-after-ms']) {
    const ms = Number(header(name));
    if (header(name) !== undefined && Number.isFinite(ms) && ms >= 0) return ms;
  }
  const value = header('retry-after');
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/**
 * Records the Retry-After of every final answer (after the SDK's retries) for the operation being polled in
 * this async context: the pollers keep it to themselves, and take it *instead of* the interval asked for, which
 * would let a short Retry-After undo the slower polling of a large partition.
 */
export function retryAfterRecorder(): PipelinePolicy {
  return {
    name: 'skyportRetryAfterRecorder',
    async sendRequest(request, next) {
      const response = await next(request);
      const store = pacing.getStore();
      if (store) store.retryAfterMs = retryAfterMsOf((name) => response.headers.get(name));
      return response;
    },
  };
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

const isDone = <T>(poller: Poller<T>): boolean => (typeof poller.isDone === 'function' ? poller.isDone() : poller.isDone);

/**
 * Starts a long-running operation and waits for its end, within the time limit. `begin` is an SDK call: the
 * AutoRest clients resolve to a poller, the newer compute client returns one directly (and that poller is itself
 * awaitable, which would wait without the time limit; so it is never awaited). The gate polls it itself: every
 * `pollIntervalMs` or what Azure's Retry-After asks, whichever is longer, so that neither a short Retry-After
 * defeats the slower polling of a large partition nor the gate polls before Azure says it is worth it.
 */
export async function completeOperation<T>(
  what: string,
  limits: OperationLimits,
  begin: (options: OperationOptions) => Poller<T> | Promise<Poller<T>>,
): Promise<T> {
  const timeout = AbortSignal.timeout(limits.timeoutMs);
  const abortSignal = AbortSignal.any([limits.cancel, timeout]);
  const state: Pacing = { retryAfterMs: undefined };
  try {
    return await pacing.run(state, async () => {
      const started = begin({ abortSignal, updateIntervalInMs: limits.pollIntervalMs });
      const poller = 'pollUntilDone' in started ? started : await started;
      if (poller.submitted) await poller.submitted();
      while (!isDone(poller)) {
        await sleep(Math.max(limits.pollIntervalMs, state.retryAfterMs ?? 0), abortSignal);
        state.retryAfterMs = undefined;
        await poller.poll({ abortSignal });
      }
      // Done: no request; the result, or the error of a failed or canceled operation.
      return await poller.pollUntilDone({ abortSignal });
    });
  } catch (error) {
    if (limits.cancel.aborted) throw new OperationCancelled(`${what} abandoned`);
    if (timeout.aborted) throw new OperationTimeout(`${what} did not finish within ${Math.round(limits.timeoutMs / 100) / 10}s`);
    throw new OperationFailed(`${what}: ${describeAzureError(error)}`, { cause: error });
  }
}
