import { InvalidArgumentError } from 'commander';
import { JobState, jobStateNames } from '../terminal-protocol/job.js';
import { usageError } from './exit-codes.js';

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

export function nonNegativeInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number, 0 or more');
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

/**
 * `--since`: a date (`2025-05-01`), a date and time (ISO 8601), or a time ago (`30s`, `90m`, `12h`, `7d`) → ISO time.
 * A date alone is local midnight.
 */
export function parseSince(value: string, now: Date = new Date()): string {
  const text = value.trim();
  const ago = /^(\d+)([smhdw])$/.exec(text);
  if (ago) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }[ago[2] as 's' | 'm' | 'h' | 'd' | 'w'];
    return new Date(now.getTime() - Number(ago[1]) * unit).toISOString();
  }
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  const ms = day ? new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3])).getTime() : Date.parse(text);
  if (!Number.isFinite(ms)) throw new InvalidArgumentError('expected a date (2025-05-01), a date and time (2025-05-01T08:00), or a time ago (30s, 90m, 12h, 7d, 2w)');
  return new Date(ms).toISOString();
}
