import type { Command } from 'commander';
import type { Remote } from '../../terminal-protocol/common.js';
import { withCore } from '../connect.js';
import { note, printJson, renderTable, yesNo, type Column } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

const columns: Column<Remote>[] = [
  { header: 'NAME', value: (r) => r.name },
  { header: 'KIND', value: (r) => r.kind },
  { header: 'GATE', value: (r) => r.gate },
  { header: 'LOCATION', value: (r) => r.location ?? '-' },
  { header: 'DEFAULT', value: (r) => yesNo(r.default) },
  { header: 'MAX NODES', value: (r) => String(r.maxNodes), align: 'right' },
  { header: 'FLAVOR', value: (r) => r.defaultFlavor ?? '-' },
  { header: 'IMAGE', value: (r) => r.defaultImage ?? '-' },
];

export function registerRemotes(program: Command): void {
  program
    .command('remotes')
    .description('list the clouds (remotes) jobs can run on')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('$ swm remotes'))
    .action(async (opts: { json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const remotes = await core.call('remote.list');
        if (opts.json) return printJson(remotes);
        if (remotes.length === 0) return note('no remotes configured');
        process.stdout.write(renderTable(columns, remotes));
      });
    });
}
