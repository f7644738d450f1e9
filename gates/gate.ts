import type { Flavor, Image, Partition } from '../terminal-protocol/common.js';
import type { PartitionRequest } from '../terminal-protocol/gate-methods.js';
import type { Logger } from 'pino';
import type { SpoolPaths } from '../spool-bootstrap/paths.js';

/**
 * What every cloud implements (DESIGN.md §8; the shape of SkyPilot's provisioners). The gate server in
 * `gates/server.ts` puts any implementation on the wire; nothing here knows about WebSockets.
 *
 * Contract:
 * - `create` returns as soon as the request is recorded ({status: 'creating'}), and is idempotent by
 *   `request.name`: a second call with the same name returns the existing partition, never a second one.
 *   Progress is reported through `onEvent` (status creating → up, or failed with `error`).
 * - `get` throws RpcError NotFound for a partition it does not know.
 * - `delete` is idempotent: deleting a missing or already deleted partition succeeds. It refuses
 *   (RpcError Forbidden) to delete anything not tagged as created by this gate for this core.
 * - Every resource created is tagged with the job, the partition and the owning core id.
 * - A gate's own state survives its restart: partitions come back (serving, or reported failed).
 */
export interface Gate {
  readonly kind: string;
  create(request: PartitionRequest): Promise<{ id: string; status: 'creating' | 'up' }>;
  get(ref: { id: string } | { name: string }): Promise<Partition>;
  list(): Promise<Partition[]>;
  delete(id: string): Promise<{ id: string; status: 'deleting' | 'deleted' }>;
  /**
   * Make container images available on an up partition's nodes (a partition reused by a job with another
   * image). Absent: the nodes fetch images themselves (a cloud VM pulls).
   */
  prepare?(id: string, containerImages: string[]): Promise<void>;
  /**
   * The core's lease: the partition may live `lifetimeSec` more. Resolves with its expiry, or null where
   * partitions do not expire (absent: the same).
   */
  renewLease?(id: string, lifetimeSec: number): Promise<Date | null>;
  flavors(): Promise<Flavor[]>;
  images(): Promise<Image[]>;
  /** Subscribe to partition status changes. */
  onEvent(listener: (partition: Partition) => void): void;
  /** Stop background work (timers, servers). Node processes of running jobs are not killed. */
  close(): Promise<void>;
}

export interface GateContext {
  /** The gate's name in the core config (`gates[].name`). */
  name: string;
  /** The core this gate serves; every resource is tagged with it. */
  coreId: string;
  /** The spool (the local gate keeps nodes and state under it). */
  spool: SpoolPaths;
  /** `gates[].options` from the config, validated by the gate kind. */
  options: Record<string, unknown>;
  logger: Logger;
}

export type GateFactory = (context: GateContext) => Promise<Gate>;
