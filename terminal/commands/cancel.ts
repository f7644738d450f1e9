import type { Command } from 'commander';
import { isFinal, type Job } from '../../terminal-protocol/job.js';
import { withCore } from '../connect.js';
import { CliError, ExitCode, exitCodeForError, usageError } from '../exit-codes.js';
import { jobLine, note, printJson } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { collect, parseJobStates } from '../job-arguments.js';
import { JobResolver } from '../job-reference.js';
import { checkActiveStates, selectJobs } from '../job-selection.js';
import { forEachConcurrently } from '../work-pool.js';

/** Cancels sent at once by a command canceling many jobs. */
const CANCELS_IN_FLIGHT = 8;

interface CancelOptions {
  state?: string[];
  name?: string;
  all?: boolean;
  user?: string;
  json?: boolean;
}

export function registerCancel(program: Command): void {
  program
    .command('cancel')
    .description('cancel jobs (named, or chosen by state, name or owner); their cloud resources are torn down')
    .argument('[jobs...]', "jobs: ids, unique id prefixes (4 characters or more) or names; an array's id cancels all its tasks")
    .option('-s, --state <states>', 'every job of yours in these states: letters or names, comma separated (repeatable)', collect)
    .option('-n, --name <name>', 'every job of yours with this name')
    .option('-a, --all', 'every job of yours that has not ended')
    .option('-u, --user <name>', 'admins: the jobs of this user (with --state, --name or alone)')
    .option('--json', 'print the canceled jobs as one JSON document (one job named: that job; else an array)')
    .addHelpText(
      'after',
      `
Give jobs, or choose them with --state, --name, --all or --user (criteria add up); jobs that already
ended are left alone. An array's id (as swm submit printed it) cancels every task of it not ended;
a task's own id cancels that task alone. Every chosen job is canceled even when one fails; the exit code is then that of
the first failure.
${examples(
  '$ swm cancel 3f2b8c1e',
  '$ swm cancel 3f2b8c1e 9a0d train',
  '$ swm cancel 7c41e0aa          # an array: all its tasks',
  '$ swm cancel --state Q,W',
  '$ swm cancel --name sweep --json',
  '$ swm cancel --all',
  '$ swm cancel --user alice --state R   # admins',
)}`,
    )
    .action(async (jobTexts: string[], opts: CancelOptions, command: Command) => {
      const states = parseJobStates(opts.state ?? []);
      checkActiveStates(states);
      const filtered = states.length > 0 || opts.name !== undefined || !!opts.all || opts.user !== undefined;
      if (jobTexts.length > 0 && filtered) throw usageError('give jobs, or choose them with --state, --name, --all or --user, not both');
      if (jobTexts.length === 0 && !filtered) throw usageError('which jobs? give their ids or names, or use --state, --name, --all or --user');

      await withCore(bundleOptionsOf(command), async (core) => {
        const resolver = new JobResolver(core);
        let ids: string[];
        if (jobTexts.length > 0) {
          ids = [];
          for (const text of jobTexts) {
            const array = await resolver.array(text);
            if (array) ids.push(...array.tasks.filter((t) => !isFinal(t.state)).map((t) => t.id));
            else ids.push(await resolver.resolve(text));
          }
          ids = [...new Set(ids)];
          if (ids.length === 0) {
            note('every task of that array has ended: nothing canceled');
            if (opts.json) printJson([]);
            return;
          }
        } else {
          if (opts.user !== undefined) {
            const me = await core.call('hello');
            if (me.role !== 'admin') throw new CliError('--user is for admins: you may cancel only your own jobs', ExitCode.Forbidden);
          }
          const candidates = await resolver.list(opts.user !== undefined);
          ids = selectJobs(candidates, { states, name: opts.name, owner: opts.user }).map((j) => j.id);
          if (ids.length === 0) {
            note('no job matches: nothing canceled');
            if (opts.json) printJson([]);
            return;
          }
        }

        if (jobTexts.length === 1 && ids.length === 1) {
          const job = await core.call('job.cancel', { id: ids[0]! });
          if (opts.json) printJson(job);
          else process.stdout.write(jobLine(job));
          return;
        }
        // Many jobs: a few cancels in flight at once, each reported as it is answered; one failing stops none.
        const canceled: (Job | null)[] = ids.map(() => null);
        let failure: unknown = null;
        await forEachConcurrently([...ids.keys()], CANCELS_IN_FLIGHT, async (i) => {
          try {
            canceled[i] = await core.call('job.cancel', { id: ids[i]! });
            if (!opts.json) process.stdout.write(jobLine(canceled[i]!));
          } catch (error) {
            failure ??= error;
            note(`cannot cancel job ${ids[i]}: ${(error as Error).message}`);
          }
        });
        if (opts.json) printJson(canceled.filter((j): j is Job => j !== null));
        if (failure) process.exitCode = exitCodeForError(failure);
      });
    });
}
