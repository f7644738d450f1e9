import type { Command } from 'commander';
import type { Flavor } from '../../terminal-protocol/common.js';
import { withCore } from '../connect.js';
import { formatBytes, note, printJson, renderTable, type Column } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

const MiB = 1024 * 1024;
const money = (amount: number | undefined, f: Flavor): string => (amount === undefined ? '-' : `${amount.toFixed(4)} ${f.currency ?? ''}`.trim());

/** Every flavor's columns; SPOT/NODE-HOUR only when some flavor is sold as spot (a cloud's). */
const columnsFor = (flavors: readonly Flavor[]): Column<Flavor>[] =>
  flavors.some((f) => f.spotPrice !== undefined) ? [...columns, { header: 'SPOT/NODE-HOUR', value: (f) => money(f.spotPrice, f), align: 'right' }] : columns;

const columns: Column<Flavor>[] = [
  { header: 'REMOTE', value: (f) => f.remote },
  { header: 'FLAVOR', value: (f) => f.name },
  { header: 'CPUS', value: (f) => String(f.cpus), align: 'right' },
  { header: 'GPUS', value: (f) => String(f.gpus), align: 'right' },
  { header: 'MEMORY', value: (f) => formatBytes(f.memMiB * MiB), align: 'right' },
  { header: 'DISK', value: (f) => formatBytes(f.diskMiB * MiB), align: 'right' },
  { header: 'PRICE/NODE-HOUR', value: (f) => money(f.pricePerHour, f), align: 'right' },
];

/** The flavors as `swm flavors` prints them. Pure. */
export const flavorTable = (flavors: readonly Flavor[]): string => renderTable(columnsFor(flavors), flavors);

export function registerFlavors(program: Command): void {
  program
    .command('flavors')
    .description('list machine flavors (sizes) and their prices (on-demand, and spot where sold); #SWM flavor picks one')
    .option('-r, --remote <name>', 'only this remote')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('$ swm flavors', '$ swm flavors --remote local'))
    .action(async (opts: { remote?: string; json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const flavors = await core.call('flavor.list', opts.remote ? { remote: opts.remote } : {});
        if (opts.json) return printJson(flavors);
        if (flavors.length === 0) return note(opts.remote ? `remote ${opts.remote} offers no flavors` : 'no flavors');
        process.stdout.write(flavorTable(flavors));
      });
    });
}
