import { InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { JobState, jobStateNames } from '../terminal-protocol/job.js';
import { usageError } from './exit-codes.js';

const Uuid = z.uuid();

/** A job id as typed by the user: full UUIDs only, so that a command never acts on the wrong job. */
export function parseJobId(text: string): string {
  const id = text.trim().toLowerCase();
  if (Uuid.safeParse(id).success) return id;
  if (/^[0-9a-f-]{1,35}$/.test(id))
    throw usageError(`"${text}" is not a full job id: give all 36 characters (swm jobs lists them)`);
  throw usageError(`"${text}" is not a job id: a job id is a UUID such as 3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b`);
}

const stateByWord = new Map<string, JobState>(
  JobState.options.flatMap((s) => [
    [s.toLowerCase(), s],
    [jobStateNames[s], s],
  ]),
);

/** `--state R,Q --state finished` → ['R', 'Q', 'F']: letters or names, comma separated or repeated. */
export function parseJobStates(values: readonly string[]): JobState[] {
  const states = new Set<JobState>();
  for (const word of values.flatMap((v) => v.split(',')).map((w) => w.trim().toLowerCase())) {
    if (!word) continue;
    const state = stateByWord.get(word);
    if (!state) {
      const known = JobState.options.map((s) => `${s} (${jobStateNames[s]})`).join(', ');
      throw usageError(`unknown job state "${word}": use one of ${known}`);
    }
    states.add(state);
  }
  return [...states];
}

/** Commander argument parsers: they throw InvalidArgumentError so commander names the option. */
export function positiveInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number above 0');
  return n;
}

export function positiveSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number of seconds above 0');
  return n;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
