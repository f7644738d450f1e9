import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';

export type OperationStatus = 'InProgress' | 'Succeeded' | 'Failed' | 'Canceled';

/** A long-running operation, as its Azure-AsyncOperation URL reports it. */
export interface ArmOperation {
  id: string;
  kind: 'put' | 'delete';
  /** The resource (or resource group) the operation works on. */
  target: string;
  status: OperationStatus;
  startTime: string;
  endTime?: string;
  error?: { code: string; message: string };
  /** performance.now() when the operation ended, for tests that check what ran in parallel. */
  endedAt?: number;
}

export interface OperationOutcome {
  delayMs: number;
  /** End Failed with this error instead of Succeeded. */
  failWith?: { code: string; message: string };
  /** Never end. */
  hang?: boolean;
}

/** Operations in flight and done. Each ends after its delay, then runs its effect on the fake's state. */
export class Operations {
  private readonly operations = new Map<string, ArmOperation>();
  private readonly timers = new Set<NodeJS.Timeout>();

  start(kind: ArmOperation['kind'], target: string, outcome: OperationOutcome, onEnd: (op: ArmOperation) => void): ArmOperation {
    const op: ArmOperation = { id: randomUUID(), kind, target, status: 'InProgress', startTime: new Date().toISOString() };
    this.operations.set(op.id, op);
    if (!outcome.hang) {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (op.status !== 'InProgress') return;
        this.end(op, outcome.failWith ? 'Failed' : 'Succeeded', outcome.failWith);
        onEnd(op);
      }, outcome.delayMs);
      this.timers.add(timer);
    }
    return op;
  }

  get(id: string): ArmOperation | undefined {
    return this.operations.get(id);
  }

  all(): ArmOperation[] {
    return [...this.operations.values()];
  }

  /** Cancels what still runs on resources under `prefix` (their resource group is gone). */
  cancelUnder(prefix: string): void {
    const p = prefix.toLowerCase();
    for (const op of this.operations.values())
      if (op.status === 'InProgress' && op.target.toLowerCase().startsWith(p)) this.end(op, 'Canceled');
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private end(op: ArmOperation, status: OperationStatus, error?: ArmOperation['error']): void {
    op.status = status;
    op.endTime = new Date().toISOString();
    op.endedAt = performance.now();
    if (error) op.error = error;
  }
}
