import type { Command } from 'commander';
import type { Partition } from '../../terminal-protocol/common.js';
import { withCore } from '../connect.js';
import { idShortener, note, printJson, renderTable, type Column } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

type RemotePartition = Partition & { remote: string };

const headAddress = (p: Partition): string => {
  const head = p.nodes.find((n) => n.role === 'head') ?? p.nodes[0];
  return head ? (head.publicIp ?? head.privateIp ?? '-') : '-';
};

const columns = (shownId: (id: string) => string): Column<RemotePartition>[] => [
  { header: 'REMOTE', value: (p) => p.remote },
  { header: 'PARTITION', value: (p) => p.name },
  { header: 'STATUS', value: (p) => p.status },
  { header: 'JOB', value: (p) => (p.jobId ? shownId(p.jobId) : '-') },
  { header: 'NODES', value: (p) => String(p.nodes.length), align: 'right' },
  { header: 'HEAD', value: headAddress },
  { header: 'ERROR', value: (p) => p.error ?? '' },
];

export function registerPartitions(program: Command): void {
  program
    .command('partitions')
    .description('list the clusters (partitions) that exist in the clouds for jobs (admins: all)')
    .option('--long', 'show whole job ids')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('$ swm partitions', '$ swm partitions --long'))
    .action(async (opts: { long?: boolean; json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const partitions = await core.call('partition.list');
        if (opts.json) return printJson(partitions);
        if (partitions.length === 0) return note('no partitions');
        const shownId = idShortener(partitions.flatMap((p) => (p.jobId ? [p.jobId] : [])), !!opts.long);
        process.stdout.write(renderTable(columns(shownId), partitions));
      });
    });
}
