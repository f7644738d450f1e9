import type { GateConfig, RemoteConfig } from '../../spool-bootstrap/config.js';

/**
 * How long a partition stays idle after its job when the remote does not say:
 * - local: 60 s. A local node costs an OS account and a few processes, and is made again in a fraction of a
 *   second; a minute catches the next job of a burst or of an edit-submit loop (where reuse saves the node,
 *   the connection and the image copy) and gives the machine back soon after.
 * - clouds (azure): 300 s. A VM takes minutes to create and bills by the second: five idle minutes of a small VM
 *   cost cents and save the next job those minutes (the idle time dstack and SkyPilot users commonly pick).
 */
export const DEFAULT_IDLE_TIMEOUT_SEC: Record<string, number> = { local: 60, azure: 300 };
const FALLBACK_IDLE_TIMEOUT_SEC = 300;

/** The keep-alive of a partition a job releases: the job's wish, else the remote's, bounded by the remote's maximum. */
export function keepAliveSec(requested: number | undefined | null, remote: RemoteConfig, gateKind: GateConfig['kind'] | undefined): number {
  const base = requested ?? remote.idleTimeoutSec ?? DEFAULT_IDLE_TIMEOUT_SEC[gateKind ?? ''] ?? FALLBACK_IDLE_TIMEOUT_SEC;
  return Math.min(base, remote.maxIdleTimeoutSec);
}
