import type { Command } from 'commander';
import type { Job } from '../../terminal-protocol/job.js';
import { withCore } from '../connect.js';
import { idShortener, jobColumns, note, printJson, renderTable } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { collect, parseJobStates, positiveInteger } from '../job-arguments.js';

const DEFAULT_LIMIT = 100;
const PAGE = 1000;

interface JobsOptions {
  all?: boolean;
  state?: string[];
  limit?: number;
  long?: boolean;
  quiet?: boolean;
  json?: boolean;
}

export function registerJobs(program: Command): void {
  program
    .command('jobs')
    .description('list your jobs, newest first')
    .option('-a, --all', "everyone's jobs (admins only)")
    .option('-s, --state <states>', 'only jobs in these states: letters or names, comma separated (repeatable)', collect)
    .option('-l, --limit <n>', `at most N jobs (default ${DEFAULT_LIMIT})`, positiveInteger)
    .option('--long', 'show whole job ids (default: the shortest prefix, 8 characters or more, that tells them apart)')
    .option('-q, --quiet', 'print only the ids, one per line (short unless --long)')
    .option('--json', 'print one JSON document (an array of jobs)')
    .addHelpText(
      'after',
      `
States: Q queued, W waiting, T transferring, R running, F finished, E error, C canceled.
Every command that takes a job accepts the short id shown here (any unique prefix of 4 characters or
more) or the job's name when no other job of yours bears it.
${examples('$ swm jobs', '$ swm jobs --state R,Q', '$ swm jobs --long', '$ swm jobs -q --state R', '$ swm jobs --all --state error --limit 20 --json')}`,
    )
    .action(async (opts: JobsOptions, command: Command) => {
      const states = parseJobStates(opts.state ?? []);
      const limit = opts.limit ?? DEFAULT_LIMIT;
      await withCore(bundleOptionsOf(command), async (core) => {
        const jobs: Job[] = [];
        let before: string | undefined;
        let more = false;
        for (;;) {
          const page = await core.call('job.list', {
            ...(opts.all ? { all: true } : {}),
            ...(states.length ? { states } : {}),
            limit: Math.min(PAGE, limit - jobs.length),
            ...(before ? { before } : {}),
          });
          jobs.push(...page.jobs);
          more = page.next !== null;
          if (!more || jobs.length >= limit || page.jobs.length === 0) break;
          before = page.next!;
        }
        if (opts.json) return printJson(jobs);
        const shownId = idShortener(jobs.map((j) => j.id), !!opts.long);
        if (opts.quiet) return void process.stdout.write(jobs.map((j) => `${shownId(j.id)}\n`).join(''));
        if (jobs.length === 0) return note(states.length ? 'no jobs in those states' : 'no jobs');
        process.stdout.write(renderTable(jobColumns(!!opts.all, new Date(), shownId), jobs));
        if (more && jobs.length >= limit) note(`showing the newest ${jobs.length} jobs; --limit N shows more`);
      });
    });
}
