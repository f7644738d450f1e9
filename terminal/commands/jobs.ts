import type { Command } from 'commander';
import type { Job } from '../../terminal-protocol/job.js';
import { withCore } from '../connect.js';
import { foldArrays, idShortener, jobColumns, note, printJson, renderTable } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { collect, parseJobStates, parseSince, positiveInteger } from '../job-arguments.js';

const DEFAULT_LIMIT = 100;
const PAGE = 1000;

interface JobsOptions {
  all?: boolean;
  state?: string[];
  limit?: number;
  long?: boolean;
  quiet?: boolean;
  json?: boolean;
  expand?: boolean;
  wide?: boolean;
  since?: string;
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
    .option('-r, --expand', "show each task of an array on a line of its own (default: an array's tasks fold into one line)")
    .option('-w, --wide', 'also show each job\'s account and cost')
    .option('--since <when>', 'only jobs not ended, or ended since then: a date (2025-05-01), a date and time, or a time ago (12h, 7d)', (v: string) => parseSince(v))
    .option('--json', 'print one JSON document (an array of jobs; an array\'s tasks each on their own)')
    .addHelpText(
      'after',
      `
States: Q queued, W waiting, T transferring, R running, F finished, E error, C canceled.
NODELIST(REASON) shows a running job's nodes, and why a queued job waits with its place in line
(Slurm's reasons: Priority, Resources, Dependency, ArrayTaskLimit, QuotaUser, QuotaAccount, Budget,
GateUnavailable, WaitingForFlavors), or the code of an end that has one (TimeLimit, Budget,
DependencyNeverSatisfied). An array shows as one line (NAME[]) with its tasks counted per state.
Every command that takes a job accepts the short id shown here (any unique prefix of 4 characters or
more) or the job's name when no other job of yours bears it.
${examples('$ swm jobs', '$ swm jobs --state R,Q', '$ swm jobs --expand --wide', '$ swm jobs --all --since 7d --state F,E', '$ swm jobs --long', '$ swm jobs -q --state R', '$ swm jobs --all --state error --limit 20 --json')}`,
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
            ...(opts.since ? { since: opts.since } : {}),
            limit: Math.min(PAGE, limit - jobs.length),
            ...(before ? { before } : {}),
          });
          jobs.push(...page.jobs);
          more = page.next !== null;
          if (!more || jobs.length >= limit || page.jobs.length === 0) break;
          before = page.next!;
        }
        if (opts.json) return printJson(jobs);
        const rows = opts.expand ? jobs : foldArrays(jobs);
        const shownId = idShortener(rows.map((j) => j.id), !!opts.long);
        if (opts.quiet) return void process.stdout.write(rows.map((j) => `${shownId(j.id)}\n`).join(''));
        if (jobs.length === 0) return note(states.length ? 'no jobs in those states' : 'no jobs');
        process.stdout.write(renderTable(jobColumns(!!opts.all, new Date(), shownId, !!opts.wide), rows));
        if (more && jobs.length >= limit) note(`showing the newest ${jobs.length} jobs; --limit N shows more`);
      });
    });
}
