import type { Command } from 'commander';
import type { PartitionView } from '../../terminal-protocol/terminal-methods.js';
import { withCore } from '../connect.js';
import { formatDuration, idShortener, note, printJson, printResult, renderTable, type Column } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

const headAddress = (p: PartitionView): string => {
  const head = p.nodes.find((n) => n.role === 'head') ?? p.nodes[0];
  return head ? (head.publicIp ?? head.privateIp ?? '-') : '-';
};

const idle = (p: PartitionView): string =>
  p.idleSec === null ? '-' : p.keepSec === null ? formatDuration(p.idleSec) : `${formatDuration(p.idleSec)}/${formatDuration(p.keepSec)}`;

const cost = (p: PartitionView): string => (p.cost === null ? '-' : `${p.cost.toFixed(p.cost < 1 ? 4 : 2)} ${p.currency ?? ''}`.trim());

const columns = (shownId: (id: string) => string, showOwner: boolean): Column<PartitionView>[] => [
  { header: 'PARTITION', value: (p) => p.name },
  { header: 'REMOTE', value: (p) => p.remote },
  { header: 'STATE', value: (p) => (p.pool && p.owner === null ? `${p.state} (pool)` : p.state) },
  ...(showOwner ? [{ header: 'OWNER', value: (p: PartitionView) => p.owner ?? '-' }] : []),
  { header: 'JOB', value: (p) => (p.jobId ? shownId(p.jobId) : '-') },
  { header: 'RUN', value: (p) => String(p.jobsRun), align: 'right' },
  { header: 'IDLE', value: idle },
  { header: 'FLAVOR', value: (p) => p.flavor },
  { header: 'NODES', value: (p) => String(p.nodes.length), align: 'right' },
  { header: 'HEAD', value: headAddress },
  { header: 'COST', value: cost, align: 'right' },
  { header: 'REASON', value: (p) => p.error ?? '' },
];

export function registerPartitions(program: Command): void {
  program
    .command('partitions')
    .description('list partitions (clusters): state, owner, jobs run on each, idle time and cost (admins: everyone\'s)')
    .option('--all', 'also those deleted in the last hour')
    .option('--long', 'show whole job ids')
    .option('--json', 'print one JSON document')
    .addHelpText(
      'after',
      `
A partition outlives its job: idle, it waits for your next job that fits it (same remote, flavor, node count,
cloud image and ports), then is deleted after its keep-alive (IDLE shows idle/keep-alive). RUN counts the jobs
it ran. ${examples('$ swm partitions', '$ swm partitions --all --long')}`,
    )
    .action(async (opts: { all?: boolean; long?: boolean; json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const partitions = await core.call('partition.list', opts.all ? { all: true } : {});
        if (opts.json) return printJson(partitions);
        if (partitions.length === 0) return note('no partitions');
        const shownId = idShortener(partitions.flatMap((p) => (p.jobId ? [p.jobId] : [])), !!opts.long);
        const owners = new Set(partitions.map((p) => p.owner));
        process.stdout.write(renderTable(columns(shownId, owners.size > 1), partitions));
      });
    });

  const partition = program
    .command('partition')
    .description('act on one partition (see `swm partitions`)')
    .addHelpText('after', examples('$ swm partition delete job-6f1c2b7e-8d4a-4c1e-9b2f-0a1b2c3d4e5f'));
  partition
    .command('delete')
    .description('delete a partition that runs no job (yours; admins: anyone\'s); idle partitions are otherwise deleted after their keep-alive')
    .argument('<name>', 'the partition, as `swm partitions` names it')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('$ swm partition delete job-6f1c2b7e-8d4a-4c1e-9b2f-0a1b2c3d4e5f'))
    .action(async (name: string, opts: { json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const p = await core.call('partition.delete', { name });
        printResult(!!opts.json, p, () => `partition ${p.name}: ${p.state}\n`);
      });
    });
}
