import { isFinal, jobStateNames, type Job, type JobState } from '../terminal-protocol/job.js';
import { usageError } from './exit-codes.js';

/** Which jobs a command acting on many (`swm cancel --state Q --name train`) takes: all criteria must hold. */
export interface JobFilter {
  /** Only jobs in these states (none: any state not final). */
  states: readonly JobState[];
  /** Only jobs of exactly this name. */
  name?: string;
  /** Only jobs of this owner (admins). */
  owner?: string;
}

/** The states a filter of jobs still to be acted on may name: a job that ended cannot be canceled. */
export function checkActiveStates(states: readonly JobState[]): void {
  const ended = states.filter(isFinal);
  if (ended.length) throw usageError(`jobs in state ${ended.map((s) => `${s} (${jobStateNames[s]})`).join(', ')} have ended: there is nothing to cancel`);
}

/** The jobs of `jobs` a filter selects, in their order; jobs that ended are never selected. Pure. */
export function selectJobs(jobs: readonly Job[], filter: JobFilter): Job[] {
  return jobs.filter(
    (j) =>
      !isFinal(j.state) &&
      (filter.states.length === 0 || filter.states.includes(j.state)) &&
      (filter.name === undefined || j.name === filter.name) &&
      (filter.owner === undefined || j.owner === filter.owner),
  );
}
