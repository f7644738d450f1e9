/**
 * Faults a test injects into the fake cloud:
 * - `throttle`: answer 429 with `Retry-After` (seconds) instead of handling the request;
 * - `server-error`: answer 500 instead of handling the request;
 * - `fail-operation`: accept a PUT or DELETE, then end its long-running operation Failed with `code`/`message`;
 * - `hang-operation`: accept it and leave its operation InProgress forever;
 * - `reject`: answer at once with `status` (default 409) and ARM's error `code`/`message` (e.g. SkuNotAvailable).
 * A fault matches a method (any when absent) and a path (a RegExp, or a case-insensitive substring),
 * and fires `times` times (default 1; `Infinity` for always).
 */
export type FaultKind = 'throttle' | 'server-error' | 'fail-operation' | 'hang-operation' | 'reject';

export interface FaultSpec {
  kind: FaultKind;
  path: string | RegExp;
  method?: string;
  times?: number;
  retryAfterSec?: number;
  code?: string;
  message?: string;
  status?: number;
}

export class Fault {
  hits = 0;
  constructor(readonly spec: FaultSpec) {}

  get exhausted(): boolean {
    return this.hits >= (this.spec.times ?? 1);
  }

  matches(method: string, path: string): boolean {
    if (this.exhausted) return false;
    if (this.spec.method && this.spec.method.toUpperCase() !== method.toUpperCase()) return false;
    const p = this.spec.path;
    return typeof p === 'string' ? path.toLowerCase().includes(p.toLowerCase()) : p.test(path);
  }
}

const responseKinds: ReadonlySet<FaultKind> = new Set(['throttle', 'server-error', 'reject']);

export class Faults {
  private faults: Fault[] = [];

  inject(spec: FaultSpec): Fault {
    const fault = new Fault(spec);
    this.faults.push(fault);
    return fault;
  }

  clear(): void {
    this.faults = [];
  }

  /** A fault that replaces the response to this request, consumed. */
  takeResponseFault(method: string, path: string): Fault | undefined {
    return this.take(method, path, (k) => responseKinds.has(k));
  }

  /** A fault that decides how this request's long-running operation ends, consumed. */
  takeOperationFault(method: string, path: string): Fault | undefined {
    return this.take(method, path, (k) => !responseKinds.has(k));
  }

  private take(method: string, path: string, kind: (k: FaultKind) => boolean): Fault | undefined {
    const fault = this.faults.find((f) => kind(f.spec.kind) && f.matches(method, path));
    if (fault) fault.hits++;
    return fault;
  }
}
