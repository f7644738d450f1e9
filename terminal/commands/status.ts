import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { formatDuration, printResult, renderPairs, renderTable, yesNo, type Column } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show the core you are connected to, who you are, its gates and job counts')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('$ swm status', '$ swm status --json | jq .jobs'))
    .action(async (opts: { json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core, bundle) => {
        const [hello, status] = await Promise.all([core.call('hello'), core.call('status')]);
        printResult(!!opts.json, { ...status, user: hello.user, role: hello.role, coreUrl: bundle.coreUrl }, () => {
          const gateColumns: Column<(typeof status.gates)[number]>[] = [
            { header: 'GATE', value: (g) => g.name },
            { header: 'KIND', value: (g) => g.kind },
            { header: 'MANAGED', value: (g) => yesNo(g.managed) },
            { header: 'HEALTH', value: (g) => [g.health.replace('-', ' '), g.crashLoop ? 'crash loop' : ''].filter(Boolean).join(', ') },
            { header: 'RESTARTS', value: (g) => String(g.restarts), align: 'right' },
            { header: 'PROBLEM', value: (g) => g.problem ?? g.lastError ?? '-' },
          ];
          const counts = Object.entries(status.jobs)
            .filter(([, n]) => n > 0)
            .map(([state, n]) => `${state} ${n}`)
            .join('  ');
          return (
            renderPairs([
              ['core', `${status.coreId} at ${bundle.coreUrl}`],
              ['version', status.version],
              ['up', formatDuration(status.uptimeSec)],
              ['you', `${hello.user} (${hello.role})`],
              ['jobs', counts || 'none'],
              // Lines the core could not log (a full disk) since it started.
              ...(status.droppedLogLines ? [['log', `${status.droppedLogLines} lines dropped (the spool's disk was full or unwritable)`] as [string, string]] : []),
            ]) + (status.gates.length ? `\n${renderTable(gateColumns, status.gates)}` : '\nno gates\n')
          );
        });
      });
    });
}
