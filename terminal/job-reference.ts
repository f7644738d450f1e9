import type { TerminalClient } from '../terminal-protocol/client.js';
import type { Job } from '../terminal-protocol/job.js';
import { CliError, ExitCode, usageError } from './exit-codes.js';
import { formatTime, shortIdLength } from './format.js';

/**
 * How people name a job on the command line: its full id, a unique prefix of it (at least
 * MIN_PREFIX characters, as git and docker take), or its name where no other job of theirs bears it.
 * Matching is pure (matchJobs); JobResolver asks the core for the candidates (job.list) once per command.
 */

export const MIN_PREFIX = 4;
const FULL_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ID_CHARACTERS = /^[0-9a-f-]+$/;

/** A full job id as typed (any case), else null. */
export function fullJobId(text: string): string | null {
  const id = text.trim().toLowerCase();
  return FULL_ID.test(id) ? id : null;
}

export type JobMatch = { kind: 'one'; job: Job } | { kind: 'none' } | { kind: 'many'; jobs: Job[] } | { kind: 'too-short' };

/** The jobs `text` names among `jobs`: those whose id starts with it, and those named exactly so. */
export function matchJobs(jobs: readonly Job[], text: string): JobMatch {
  const wanted = text.trim();
  const prefix = wanted.toLowerCase();
  const byPrefix = ID_CHARACTERS.test(prefix) && prefix.length >= MIN_PREFIX;
  const found = jobs.filter((j) => (byPrefix && j.id.startsWith(prefix)) || j.name === wanted);
  if (found.length === 1) return { kind: 'one', job: found[0]! };
  if (found.length > 1) return { kind: 'many', jobs: found };
  if (ID_CHARACTERS.test(prefix) && prefix.length < MIN_PREFIX) return { kind: 'too-short' };
  return { kind: 'none' };
}

/** The message for a reference that names several jobs: every candidate, one per line, newest first. */
export function ambiguityMessage(text: string, jobs: readonly Job[]): string {
  const length = shortIdLength(jobs.map((j) => j.id));
  const lines = jobs.map((j) => `  ${j.id.slice(0, length)}  ${j.state}  ${formatTime(j.submit_time)}  ${j.name}${j.owner ? `  (${j.owner})` : ''}`);
  return `"${text}" names ${jobs.length} jobs; give more characters of the id, or the full id:\n${lines.join('\n')}`;
}

const PAGE = 1000;

/** Fetches the caller's jobs (admins: then everyone's) at most once, and resolves references against them. */
export class JobResolver {
  private own: Promise<Job[]> | null = null;
  private everyone: Promise<Job[]> | null = null;

  constructor(private readonly core: TerminalClient) {}

  /** Every job of the caller (`all`: every job an admin may see; a user's own otherwise), newest first. */
  async list(all = false): Promise<Job[]> {
    const cached = all ? this.everyone : this.own;
    if (cached) return cached;
    const fetched = this.fetch(all);
    if (all) this.everyone = fetched;
    else this.own = fetched;
    return fetched;
  }

  private async fetch(all: boolean): Promise<Job[]> {
    const jobs: Job[] = [];
    let before: string | undefined;
    for (;;) {
      const page = await this.core.call('job.list', { ...(all ? { all: true } : {}), limit: PAGE, ...(before ? { before } : {}) });
      jobs.push(...page.jobs);
      if (page.next === null || page.jobs.length === 0) return jobs;
      before = page.next;
    }
  }

  /**
   * The array a reference names (`swm submit` printed its id: the id, or a unique prefix of it, 4 characters or
   * more), with its tasks in index order; null when it names no array (it may name a job).
   */
  async array(text: string): Promise<{ id: string; tasks: Job[] } | null> {
    const prefix = text.trim().toLowerCase();
    if (!ID_CHARACTERS.test(prefix) || prefix.length < MIN_PREFIX) return null;
    for (const all of [false, true]) {
      const jobs = await this.list(all);
      const ids = new Set(jobs.filter((j) => j.array_id?.startsWith(prefix)).map((j) => j.array_id!));
      if (ids.size > 1) throw usageError(`"${text}" names ${ids.size} arrays; give more characters of the id:\n${[...ids].map((id) => `  ${id}`).join('\n')}`);
      const [id] = ids;
      if (id) return { id, tasks: jobs.filter((j) => j.array_id === id).sort((a, b) => (a.array_index ?? 0) - (b.array_index ?? 0)) };
    }
    return null;
  }

  /** A dependency's job: a job's id (resolved as resolve() does) or an array's. */
  async jobOrArray(text: string): Promise<string> {
    return (await this.array(text))?.id ?? this.resolve(text);
  }

  /**
   * The full id a reference names. Your own jobs first; an admin's reference that names none of theirs is
   * looked up among everyone's. A full id is taken as it is (the core answers for it).
   */
  async resolve(text: string): Promise<string> {
    const full = fullJobId(text);
    if (full) return full;
    if (text.trim() === '') throw usageError('an empty job id');
    let match = matchJobs(await this.list(false), text);
    if (match.kind === 'none') match = matchJobs(await this.list(true), text);
    switch (match.kind) {
      case 'one':
        return match.job.id;
      case 'many':
        throw usageError(ambiguityMessage(text, match.jobs));
      case 'too-short':
        throw usageError(`"${text}" is too short to name a job: give at least ${MIN_PREFIX} characters of its id, or its name`);
      case 'none':
        throw new CliError(`no job of yours has an id starting with "${text}" or is named "${text}" (swm jobs lists them)`, ExitCode.NotFound);
    }
  }
}

/** One reference, resolved with a resolver of its own (commands that take one job). */
export const resolveJob = (core: TerminalClient, text: string): Promise<string> => new JobResolver(core).resolve(text);

/** How commands describe a job argument in their --help. */
export const JOB_ARGUMENT = 'the job: its id, a unique prefix of it (4 characters or more), or its name';

/**
 * `swm submit --depends`: the clauses with every job named as the user likes (short id, name, an array's id)
 * turned into full ids, as the core takes them: `afterok:3f2b:train` → `afterok:<id>:<id>`.
 */
export async function resolveDependencies(resolver: JobResolver, text: string): Promise<string> {
  const clauses: string[] = [];
  for (const clause of text.split(',').map((c) => c.trim()).filter(Boolean)) {
    const [kind, ...refs] = clause.split(':');
    if (!refs.length) throw usageError(`--depends ${clause}: write KIND:JOB[:JOB...] (KIND afterok, afterany or afternotok)`);
    const ids: string[] = [];
    for (const ref of refs) ids.push(await resolver.jobOrArray(ref));
    clauses.push([kind!.trim(), ...ids].join(':'));
  }
  if (!clauses.length) throw usageError('--depends needs KIND:JOB[:JOB...]');
  return clauses.join(',');
}
