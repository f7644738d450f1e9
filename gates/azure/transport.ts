import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { PipelinePolicy, PipelineRetryOptions, TlsSettings } from '@azure/core-rest-pipeline';
import { retryAfterRecorder } from './long-running.js';
import type { AzureGateOptions } from './options.js';

/** A policy added to an SDK pipeline (the shape of the clients' `additionalPolicies`). */
export interface AdditionalPolicy {
  policy: PipelinePolicy;
  position: 'perCall' | 'perRetry';
}

/** The settings every HTTP pipeline of the gate shares: ARM clients, the credential, the prices API. */
export interface TransportSettings {
  retryOptions: PipelineRetryOptions;
  tlsOptions?: TlsSettings;
  additionalPolicies: AdditionalPolicy[];
}

const RETRY_AFTER_HEADERS = ['retry-after-ms', 'x-ms-retry-after-ms', 'retry-after'];

/**
 * The SDK's retry policy honours Retry-After on 429 and 503 whatever its size. A throttled
 * subscription can answer with minutes; the gate waits at most `maxRetryDelayMs` before it tries
 * again (the retry count still bounds the whole), so a partition is never stuck behind one header.
 * It runs once per attempt, before the retry policy reads the response.
 */
export function retryAfterBound(maxRetryDelayMs: number): PipelinePolicy {
  return {
    name: 'skyportRetryAfterBound',
    async sendRequest(request, next) {
      const response = await next(request);
      if (response.status !== 429 && response.status !== 503) return response;
      for (const header of RETRY_AFTER_HEADERS) {
        const value = response.headers.get(header);
        if (value === undefined) continue;
        const asNumber = Number(value);
        const ms = header === 'retry-after' ? (Number.isFinite(asNumber) ? asNumber * 1000 : Date.parse(value) - Date.now()) : asNumber;
        if (Number.isFinite(ms) && ms > maxRetryDelayMs) {
          response.headers.delete(header);
          response.headers.set('retry-after-ms', String(maxRetryDelayMs));
        }
      }
      return response;
    },
  };
}

export function transportSettings(options: AzureGateOptions): TransportSettings {
  const { maxRetries, retryDelayMs, maxRetryDelayMs } = options.retry;
  const settings: TransportSettings = {
    retryOptions: { maxRetries, retryDelayInMs: retryDelayMs, maxRetryDelayInMs: maxRetryDelayMs },
    additionalPolicies: [
      { policy: retryAfterBound(maxRetryDelayMs), position: 'perRetry' },
      // Outside the retries: the Retry-After of the answer the SDK keeps, which paces the next poll.
      { policy: retryAfterRecorder(), position: 'perCall' },
    ],
  };
  // Extra authorities are added to the public ones (Node's `ca` option would replace them).
  if (options.caCertPath) settings.tlsOptions = { ca: [...rootCertificates, readFileSync(options.caCertPath, 'utf8')] };
  return settings;
}
