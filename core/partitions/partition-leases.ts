import type { CoreServices } from '../services.js';
import { gateOf } from '../services.js';
import type { PartitionRecord } from './partition-record.js';

/**
 * How long a partition may live without this core renewing it: a cloud gate tags it with an expiry this far
 * ahead (plus its margin), its nodes power themselves off then, and the gate deletes it once past it. A core
 * that dies (or loses its spool) thus leaves nothing billing for longer than this.
 */
export const PARTITION_LEASE_SEC = 4 * 3600;
/** How often the leases of partitions that are up are renewed (the gate writes only when half is used up). */
export const LEASE_RENEW_MS = 10 * 60 * 1000;

/** The partitions whose lease this core keeps: up on their gate, created by it (a gate id). Pure. */
export const leased = (partitions: readonly PartitionRecord[]): PartitionRecord[] =>
  partitions.filter((p) => p.gateId !== null && (p.state === 'ready' || p.state === 'busy' || p.state === 'idle'));

/**
 * The core's side of cost safety (gates/azure/README.md): partitions are asked for with a lifetime of one lease
 * (the `skyport-lifetime-sec` tag) and renewed while they are up, every LEASE_RENEW_MS. A gate whose partitions
 * do not expire (the local gate) answers null; a gate that does not know the method yet is left alone.
 */
export class PartitionLeases {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly services: CoreServices,
    private readonly everyMs = LEASE_RENEW_MS,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.renewAll(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Renew every lease now; resolves once every gate has answered (or failed). */
  async renewAll(): Promise<void> {
    await Promise.all(
      leased(this.services.partitions.list()).map(async (p) => {
        const gate = gateOf(this.services, p.remote);
        if (!gate?.healthy) return;
        try {
          await gate.call('partition.extend', { id: p.gateId!, lifetimeSec: PARTITION_LEASE_SEC });
        } catch (error) {
          this.services.logger.warn({ partition: p.name, err: (error as Error).message }, 'cannot renew the lease of a partition');
        }
      }),
    );
  }
}
