import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { withCore } from '../connect.js';
import { formatCost, printResult, renderTable } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { parseSince } from '../job-arguments.js';

interface CostOptions {
  user?: string;
  since?: string;
  by?: 'user' | 'account' | 'remote';
  json?: boolean;
}

const GROUPINGS = ['user', 'account', 'remote'] as const;

export function registerCost(program: Command): void {
  program
    .command('cost')
    .description('what jobs cost: flavor price × nodes × the time their partition was held, summed')
    .option('-u, --user <name>', "admins: this user's jobs only (default: everyone's; a user sees their own)")
    .option('--since <when>', 'jobs not ended, or ended since then: a date (2025-05-01), a date and time, or a time ago (12h, 7d)', (v: string) => parseSince(v))
    .option('--by <what>', 'sum by user, account or remote (default: user)', (v: string) => {
      if (!(GROUPINGS as readonly string[]).includes(v)) throw new InvalidArgumentError(`expected one of ${GROUPINGS.join(', ')}`);
      return v;
    })
    .option('--json', 'print one JSON document')
    .addHelpText(
      'after',
      `
A job's cost is charged from the moment its partition is ready until it is deleted; a partition kept
for reuse is charged to the jobs that use it, its idle time to its owner. swm show and swm jobs --wide
show each job's own cost.
${examples('$ swm cost', '$ swm cost --since 2025-05-01 --by account', '$ swm cost --user alice --since 7d   # admins', '$ swm cost --by remote --json')}`,
    )
    .action(async (opts: CostOptions, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const report = await core.call('cost.report', {
          ...(opts.user !== undefined ? { user: opts.user } : {}),
          ...(opts.since !== undefined ? { since: opts.since } : {}),
          ...(opts.by !== undefined ? { by: opts.by } : {}),
        });
        printResult(!!opts.json, report, () => {
          type Row = { key: string; cost: number; jobs: number };
          const rows: Row[] = [...report.groups, { key: 'total', cost: report.total, jobs: report.jobs }];
          return renderTable(
            [
              { header: (opts.by ?? 'user').toUpperCase(), value: (r: Row) => r.key },
              { header: 'JOBS', value: (r: Row) => String(r.jobs), align: 'right' },
              { header: 'COST', value: (r: Row) => formatCost(r.cost, report.currency), align: 'right' },
            ],
            rows,
          );
        });
      });
    });
}
