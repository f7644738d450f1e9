import { hourlyPrice } from '../scheduler/spot.js';
import type { CoreServices } from '../services.js';
import { chargeOf, type OpenCharge } from '../store/job-store.js';
import type { PartitionRecord } from './partition-record.js';

/**
 * What partitions cost, charged to jobs: flavor price per node-hour × nodes × the time from the partition being
 * up to its deletion. The time is charged to the job it was made or reserved for, until the next job takes it
 * (a reused partition's cost is split by use) or it is deleted (its idle time is charged to the owner's job that
 * left it idle). One charge runs per partition; it is stored (partition_charges) and moves with the partition's
 * committed changes, so a restarted core charges on where it stopped. A pool's spare is charged to nobody until
 * a job takes it.
 *
 *   up (for job A) ──► charge A ──► reserved for job B: A's closed, B's opened ──► deleted: B's closed
 */
export class PartitionCharges {
  constructor(private readonly services: CoreServices) {}

  /** A partition's change was committed: open, pass on, or close its charge. */
  moved(next: PartitionRecord, previous: PartitionRecord, nowMs = Date.now()): void {
    const store = this.services.store;
    if (next.state === 'deleted' && previous.state !== 'deleted') {
      if (store.openCharge(next.name)) store.moveCharge(next.name, next.deletedMs ?? nowMs, null);
      return;
    }
    if (!next.jobId || (next.state !== 'ready' && next.state !== 'busy') || next.upMs === null) return;
    const open = store.openCharge(next.name);
    if (open?.jobId === next.jobId) return;
    // A fresh partition is charged from when it came up; a reused one from when its new job took it.
    const fromMs = open ? nowMs : next.upMs;
    store.moveCharge(next.name, fromMs, { partition: next.name, jobId: next.jobId, fromMs, pricePerHour: this.priceOf(next), nodes: next.nodeCount });
  }

  /** Close the charges of partitions deleted while no core heard it (a crash between the two writes). */
  repair(): void {
    const store = this.services.store;
    for (const c of store.openCharges()) {
      const p = store.partition(c.partition);
      if (!p || p.state === 'deleted') store.moveCharge(c.partition, p?.deletedMs ?? Date.now(), null);
    }
  }

  /** What the charges running now add to each job's stored cost, by job. */
  running(nowMs = Date.now()): Map<string, number> {
    const out = new Map<string, number>();
    for (const c of this.services.store.openCharges()) out.set(c.jobId, (out.get(c.jobId) ?? 0) + chargeOf(c, nowMs));
    return out;
  }

  /** A job's cost so far: what its closed charges added, plus its running ones; null when it was never charged. */
  costOf(jobId: string, stored: number | null, nowMs = Date.now()): number | null {
    const open = this.services.store.openCharges().filter((c: OpenCharge) => c.jobId === jobId);
    if (!open.length) return stored;
    return (stored ?? 0) + open.reduce((sum, c) => sum + chargeOf(c, nowMs), 0);
  }

  /** The flavor's price per node-hour as its gate reports it, spot or on-demand (0 when the cloud publishes none). */
  private priceOf(p: PartitionRecord): number {
    const remote = this.services.config.remotes.find((r) => r.name === p.remote);
    const flavor = remote ? this.services.gates.get(remote.gate)?.flavors?.find((f) => f.name === p.flavor) : undefined;
    return hourlyPrice(flavor, p.spot) ?? 0;
  }
}
