import type { Command } from 'commander';
import type { Image } from '../../terminal-protocol/common.js';
import { withCore } from '../connect.js';
import { note, printJson, renderTable, type Column } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

const columns: Column<Image>[] = [
  { header: 'REMOTE', value: (i) => i.remote },
  { header: 'KIND', value: (i) => i.kind },
  { header: 'NAME', value: (i) => i.name },
  { header: 'ID', value: (i) => i.id },
  { header: 'COMMENT', value: (i) => i.comment ?? '' },
];

export function registerImages(program: Command): void {
  program
    .command('images')
    .description('list cloud and container images; #SWM cloud-image / container-image pick one')
    .option('-r, --remote <name>', 'only this remote')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('$ swm images', '$ swm images --remote azure --json'))
    .action(async (opts: { remote?: string; json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const images = await core.call('image.list', opts.remote ? { remote: opts.remote } : {});
        if (opts.json) return printJson(images);
        if (images.length === 0) return note(opts.remote ? `remote ${opts.remote} offers no images` : 'no images');
        process.stdout.write(renderTable(columns, images));
      });
    });
}
