import type { Command } from 'commander';
import type { Flavor } from '../../terminal-protocol/common.js';
import { withCore } from '../connect.js';
import { formatBytes, note, printJson, renderTable, type Column } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

const MiB = 1024 * 1024;
const price = (f: Flavor): string => (f.pricePerHour === undefined ? '-' : `${f.pricePerHour.toFixed(4)} ${f.currency ?? ''}`.trim());

const columns: Column<Flavor>[] = [
  { header: 'REMOTE', value: (f) => f.remote },
  { header: 'FLAVOR', value: (f) => f.name },
  { header: 'CPUS', value: (f) => String(f.cpus), align: 'right' },
  { header: 'GPUS', value: (f) => String(f.gpus), align: 'right' },
  { header: 'MEMORY', value: (f) => formatBytes(f.memMiB * MiB), align: 'right' },
  { header: 'DISK', value: (f) => formatBytes(f.diskMiB * MiB), align: 'right' },
  { header: 'PRICE/NODE-HOUR', value: price, align: 'right' },
];

export function registerFlavors(program: Command): void {
  program
    .command('flavors')
    .description('list machine flavors (sizes) and their prices; #SWM flavor picks one')
    .option('-r, --remote <name>', 'only this remote')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('$ swm flavors', '$ swm flavors --remote local'))
    .action(async (opts: { remote?: string; json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const flavors = await core.call('flavor.list', opts.remote ? { remote: opts.remote } : {});
        if (opts.json) return printJson(flavors);
        if (flavors.length === 0) return note(opts.remote ? `remote ${opts.remote} offers no flavors` : 'no flavors');
        process.stdout.write(renderTable(columns, flavors));
      });
    });
}
