/**
 * ARM's request throttling, as a token bucket per subscription and kind of request (since 2024 ARM throttles
 * per region with buckets: writes 200 then 10 a second, reads 250 then 25, deletes 200 then 10). A request
 * takes a token; with none left it is answered 429 with `Retry-After` (seconds until the next token). Every
 * answer says what is left in `x-ms-ratelimit-remaining-subscription-<kind>`.
 */
export interface BucketSpec {
  burst: number;
  perSecond: number;
}

export interface ThrottlingSpec {
  reads?: BucketSpec;
  writes?: BucketSpec;
  deletes?: BucketSpec;
  /**
   * Also send `retry-after-ms` with the exact wait (ARM sends whole seconds only): for tests that scale the
   * rates up to run in less time, where a whole second would be most of the test.
   */
  retryAfterMs?: boolean;
}

export type RequestKind = 'reads' | 'writes' | 'deletes';

/** ARM's published defaults. */
export const ARM_BUCKETS: Record<RequestKind, BucketSpec> = {
  reads: { burst: 250, perSecond: 25 },
  writes: { burst: 200, perSecond: 10 },
  deletes: { burst: 200, perSecond: 10 },
};

class Bucket {
  private tokens: number;
  private last = Date.now();
  /** `perSecond` of simulated time, refilled `scale()` times faster in real time. */
  constructor(
    readonly spec: BucketSpec,
    private readonly scale: () => number,
  ) {
    this.tokens = spec.burst;
  }

  /** Takes a token: what remains, or the wait (ms) until one is there. */
  take(): { ok: true; remaining: number } | { ok: false; waitMs: number } {
    const now = Date.now();
    this.tokens = Math.min(this.spec.burst, this.tokens + ((now - this.last) / 1000) * this.spec.perSecond * this.scale());
    this.last = now;
    if (this.tokens < 1) return { ok: false, waitMs: Math.ceil(((1 - this.tokens) / (this.spec.perSecond * this.scale())) * 1000) };
    this.tokens -= 1;
    return { ok: true, remaining: Math.floor(this.tokens) };
  }
}

export const kindOf = (method: string): RequestKind => (method === 'GET' || method === 'HEAD' ? 'reads' : method === 'DELETE' ? 'deletes' : 'writes');

export class Throttling {
  private readonly buckets = new Map<RequestKind, Bucket>();
  /** 429s answered, per kind. */
  readonly throttled: Record<RequestKind, number> = { reads: 0, writes: 0, deletes: 0 };

  /** `scale`: the fake's time scale (buckets refill that many times faster; waits are that much shorter). */
  constructor(
    private readonly spec: ThrottlingSpec,
    private readonly scale: () => number = () => 1,
  ) {
    for (const kind of ['reads', 'writes', 'deletes'] as const) {
      const bucket = spec[kind];
      if (bucket) this.buckets.set(kind, new Bucket(bucket, scale));
    }
  }

  /** Headers of the answer, or of the 429 when `throttled` is set. */
  admit(method: string): { throttled: boolean; headers: Record<string, string> } {
    const kind = kindOf(method);
    const bucket = this.buckets.get(kind);
    if (!bucket) return { throttled: false, headers: {} };
    const header = `x-ms-ratelimit-remaining-subscription-${kind}`;
    const taken = bucket.take();
    if (taken.ok) return { throttled: false, headers: { [header]: String(taken.remaining) } };
    this.throttled[kind]++;
    return {
      throttled: true,
      headers: {
        [header]: '0',
        'Retry-After': String(Math.max(1, Math.ceil(taken.waitMs / 1000))),
        ...(this.spec.retryAfterMs || this.scale() !== 1 ? { 'retry-after-ms': String(taken.waitMs) } : {}),
      },
    };
  }
}
