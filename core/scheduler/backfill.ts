import type { RunningJob } from './snapshot.js';

/**
 * EASY backfill (as Slurm's sched/backfill, in its simplest form): the first job in line that a remote cannot
 * fit gets a reservation, the earliest time enough nodes come back (its "shadow time"), and a job behind it may
 * start now only if it cannot delay that start:
 *
 *   nodes at time t = free now + idle partitions' nodes + nodes of running jobs ended by t
 *   reservation     = the earliest end time t at which that reaches the job's nodes
 *   spare           = nodes at the reservation − the job's nodes
 *
 *   a later job may start now if it fits what is free now and
 *     (it ends by the reservation) or (its nodes ≤ spare, which it then uses up)
 *
 * Unknown ends are never counted: a running job without a time limit never gives its nodes back, as far as the
 * reservation knows, and if the job needs them there is no reservation and nothing starts past it. A job without
 * a time limit never backfills. Only the first blocked job of a remote is protected (EASY, not conservative
 * backfill); the others wait their turn.
 *
 * When idle partitions are being deleted for the reserved job, it starts as soon as they are gone: the reservation
 * is now, its nodes are the free ones plus those being deleted, and the idle partitions left are not its own, so
 * a job reusing one of them delays nothing.
 */

/** EASY's shadow: when the reserved job starts, and the nodes left over then. */
export interface Shadow {
  jobId: string;
  remote: string;
  startMs: number;
  spare: number;
  /** Whether idle partitions' nodes are counted in the reservation (a job reusing one uses the reserved job's nodes). */
  countsIdle: boolean;
}

/** The nodes of one remote around a job it cannot fit now. */
export interface RemoteNodes {
  nowMs: number;
  /** Nodes held by no partition, after what this plan already gave. */
  free: number;
  /** Nodes of idle partitions nobody has taken yet (those being deleted excluded). */
  idle: number;
  /** Nodes of idle partitions being deleted for this job. */
  evicting: number;
  /** Jobs holding nodes on this remote. */
  running: readonly RunningJob[];
}

/** The reservation of a job needing `nodes` on a remote it does not fit now, or null if no end in sight frees them. */
export function reservationFor(jobId: string, remote: string, nodes: number, at: RemoteNodes): Shadow | null {
  if (at.free + at.evicting >= nodes) return { jobId, remote, startMs: at.nowMs, spare: at.free + at.evicting - nodes, countsIdle: false };
  const ends = at.running.filter((r) => r.endsAtMs !== null).sort((a, b) => a.endsAtMs! - b.endsAtMs!);
  let available = at.free + at.idle;
  for (let i = 0; i < ends.length; i++) {
    available += ends[i]!.nodes;
    // Jobs ending at the same moment all give their nodes back then.
    if (ends[i + 1]?.endsAtMs === ends[i]!.endsAtMs) continue;
    if (available >= nodes) return { jobId, remote, startMs: Math.max(at.nowMs, ends[i]!.endsAtMs!), spare: available - nodes, countsIdle: true };
  }
  return null;
}

/** When a job starting now is expected to give its nodes back, or null if it has no time limit. */
export function expectedEndMs(nowMs: number, durationSec: number | null | undefined, overheadSec = 0): number | null {
  return durationSec != null && durationSec > 0 ? nowMs + (durationSec + Math.max(0, overheadSec)) * 1000 : null;
}

/**
 * Whether a job that fits now may start ahead of the reservation: the shadow it leaves (spare used up when it runs
 * past the reservation), or null if it would delay the reserved job.
 * @param reusesIdle it goes on an idle partition rather than new nodes
 */
export function backfill(shadow: Shadow, job: { nodes: number; endsAtMs: number | null; reusesIdle: boolean }): Shadow | null {
  if (job.endsAtMs === null) return null;
  if (job.reusesIdle && !shadow.countsIdle) return shadow;
  if (job.endsAtMs <= shadow.startMs) return shadow;
  return job.nodes <= shadow.spare ? { ...shadow, spare: shadow.spare - job.nodes } : null;
}
