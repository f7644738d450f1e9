/** What the gate needs to know about an error from an Azure SDK call. */

const MAX_MESSAGE = 400;

/** The HTTP status of a failed Azure request (RestError.statusCode), if the error is one. */
export const httpStatusOf = (error: unknown): number | undefined => {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
};

export const isNotFound = (error: unknown): boolean => httpStatusOf(error) === 404;

/**
 * One line for logs, events and the failure tag: Azure's error code and message. Only these two
 * fields are read: a RestError also holds the request (with its Authorization header) and the
 * response, which must never be printed.
 */
export function describeAzureError(error: unknown): string {
  if (!(error instanceof Error)) return String(error).slice(0, MAX_MESSAGE);
  const code = (error as { code?: unknown }).code;
  const text = typeof code === 'string' && code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= MAX_MESSAGE ? line : `${line.slice(0, MAX_MESSAGE - 1)}…`;
}

/** What kind of failure an Azure error is, for what the core does about it. */
export type FailureKind = 'quota' | 'capacity';

/**
 * The reason prefixes that carry the kind to the core (core/jobs/steps/partition.ts): a partition failed
 * with one of these is tried again later, not ended with an error.
 */
export const FAILURE_PREFIX: Record<FailureKind, string> = { quota: 'Quota: ', capacity: 'Capacity: ' };

/** 409 at once: the subscription's vCPU quota (per family and region, or regional total) would be exceeded. */
const QUOTA_CODES = /\b(QuotaExceeded|OperationNotAllowed)\b/;
/**
 * Azure has no room for the size now: `SkuNotAvailable` at once (the size is not offered in the region or zone
 * right now, or is restricted for the subscription), the allocation codes later, as the VM's failed operation.
 */
const CAPACITY_CODES = /\b(SkuNotAvailable|AllocationFailed|ZonalAllocationFailed|OverconstrainedAllocationRequest|OverconstrainedZonalAllocationRequest|AllocationTimedout)\b/;

const codeOf = (error: unknown): string => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
};

/**
 * The kind of a failure, from Azure's error code (on the error or its cause, or quoted in its message).
 * `OperationNotAllowed` is a quota error only when it speaks of quota: Azure uses it for other refusals too.
 */
export function failureKindOf(error: unknown): FailureKind | null {
  const chain: unknown[] = [];
  for (let e: unknown = error; e && chain.length < 4; e = (e as { cause?: unknown }).cause) chain.push(e);
  const text = chain.map((e) => `${codeOf(e)} ${e instanceof Error ? e.message : String(e)}`).join(' ');
  if (CAPACITY_CODES.test(text) || chain.some((e) => e instanceof Error && e.name === 'NoCapacity')) return 'capacity';
  const quota = QUOTA_CODES.exec(text);
  if (quota && (quota[1] === 'QuotaExceeded' || /quota/i.test(text))) return 'quota';
  return null;
}

/** The reason a partition fails with: classified failures start with their prefix. */
export function failureReason(error: unknown, message: string): string {
  const kind = failureKindOf(error);
  return kind ? `${FAILURE_PREFIX[kind]}${message}` : message;
}

/** Azure's error code of a failure (on the error or its causes, or the capacity code its message quotes), or null. */
export function azureCodeOf(error: unknown): string | null {
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = codeOf(e);
    if (/^[A-Z][A-Za-z]+$/.test(code)) return code;
  }
  const chain: string[] = [];
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) chain.push(e instanceof Error ? e.message : String(e));
  return CAPACITY_CODES.exec(chain.join(' '))?.[1] ?? null;
}
