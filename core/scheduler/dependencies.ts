import type { JobState } from '../../terminal-protocol/job.js';

/**
 * Job dependencies, as Slurm's `--dependency` (every clause must hold, as Slurm's comma):
 *
 *   afterok:<ids>      each ended ok (F)                     never, once one ended otherwise
 *   afternotok:<ids>   each ended not ok (E, C, time limit)  never, once one ended ok
 *   afterany:<ids>     each ended, however                   never only for an unknown job
 *
 * An unknown job (no such id) can never end, so it makes every kind of clause impossible.
 */

export type DependencyKind = 'afterok' | 'afterany' | 'afternotok';

export interface Dependency {
  kind: DependencyKind;
  jobIds: string[];
}

/** Where a job named by a dependency stands: not ended, ended ok, ended otherwise, or no such job. */
export type DependencyOutcome = 'pending' | 'ok' | 'failed' | 'unknown';

export type DependencyState =
  /** Every clause holds (or there are none): the job may start. */
  | { met: true }
  /** Some clause waits on a job that has not ended; `on` names it (`afterok:12`). */
  | { met: false; on: string }
  /** Some clause can never hold; `why` says which and why (`afterok:12 ended failed`). */
  | { never: string };

/** A job's outcome from its state (null: no such job), for the `outcomes` of a snapshot. */
export function dependencyOutcome(state: JobState | null | undefined): DependencyOutcome {
  if (state == null) return 'unknown';
  if (state === 'F') return 'ok';
  if (state === 'E' || state === 'C') return 'failed';
  return 'pending';
}

/** Every job id the queued jobs' dependencies name: those whose outcome a snapshot must carry. */
export function dependencyIds(queued: Iterable<{ depends?: readonly Dependency[] }>): Set<string> {
  const ids = new Set<string>();
  for (const job of queued) for (const clause of job.depends ?? []) for (const id of clause.jobIds) ids.add(id);
  return ids;
}

const impossible = (kind: DependencyKind, outcome: DependencyOutcome): string | null => {
  if (outcome === 'unknown') return 'is not a known job';
  if (kind === 'afterok' && outcome === 'failed') return 'ended failed';
  if (kind === 'afternotok' && outcome === 'ok') return 'ended ok';
  return null;
};

/** Whether a job's dependencies hold, may still hold, or never will; a job absent from `outcomes` is unknown. */
export function dependencyState(depends: readonly Dependency[] | undefined, outcomes: ReadonlyMap<string, DependencyOutcome> | undefined): DependencyState {
  if (!depends?.length) return { met: true };
  const outcomeOf = (id: string): DependencyOutcome => outcomes?.get(id) ?? 'unknown';
  // A clause that can never hold decides, even when another still waits: waiting would be for nothing.
  for (const { kind, jobIds } of depends)
    for (const id of jobIds) {
      const why = impossible(kind, outcomeOf(id));
      if (why) return { never: `${kind}:${id} ${why}` };
    }
  for (const { kind, jobIds } of depends)
    for (const id of jobIds) if (outcomeOf(id) === 'pending') return { met: false, on: `${kind}:${id}` };
  return { met: true };
}
