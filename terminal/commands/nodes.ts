import type { Command } from 'commander';
import type { PartitionView } from '../../terminal-protocol/terminal-methods.js';
import { withCore } from '../connect.js';
import { idShortener, note, printJson, renderTable, type Column } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';

/** One node of a partition, as `swm nodes` lists it. */
export interface NodeRow {
  node: string;
  partition: string;
  remote: string;
  role: string;
  state: string;
  owner: string | null;
  job: string | null;
  flavor: string;
  address: string | null;
  privateAddress: string | null;
  sshPort: number;
}

/** The nodes of the partitions listed, head first within each. Pure. */
export const nodeRows = (partitions: readonly PartitionView[]): NodeRow[] =>
  partitions.flatMap((p) =>
    [...p.nodes]
      .sort((a, b) => Number(b.role === 'head') - Number(a.role === 'head'))
      .map((n) => ({
        node: n.name,
        partition: p.name,
        remote: p.remote,
        role: n.role,
        state: p.state,
        owner: p.owner,
        job: p.jobId,
        flavor: p.flavor,
        address: n.publicIp,
        privateAddress: n.privateIp,
        sshPort: n.sshPort,
      })),
  );

const columns = (shownId: (id: string) => string, showOwner: boolean): Column<NodeRow>[] => [
  { header: 'NODE', value: (n) => n.node },
  { header: 'PARTITION', value: (n) => n.partition },
  { header: 'ROLE', value: (n) => n.role },
  { header: 'STATE', value: (n) => n.state },
  ...(showOwner ? [{ header: 'OWNER', value: (n: NodeRow) => n.owner ?? '-' }] : []),
  { header: 'JOB', value: (n) => (n.job ? shownId(n.job) : '-') },
  { header: 'FLAVOR', value: (n) => n.flavor },
  { header: 'ADDRESS', value: (n) => n.address ?? '-' },
  { header: 'PRIVATE', value: (n) => n.privateAddress ?? '-' },
];

export function registerNodes(program: Command): void {
  program
    .command('nodes')
    .description("list the nodes of your partitions: role, partition state, the job on it, addresses (admins: everyone's)")
    .option('--long', 'show whole job ids')
    .option('--json', 'print one JSON document')
    .addHelpText('after', examples('$ swm nodes', '$ swm nodes --json'))
    .action(async (opts: { long?: boolean; json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const rows = nodeRows(await core.call('partition.list'));
        if (opts.json) return printJson(rows);
        if (rows.length === 0) return note('no nodes: no partition is up');
        const shownId = idShortener(rows.flatMap((n) => (n.job ? [n.job] : [])), !!opts.long);
        process.stdout.write(renderTable(columns(shownId, new Set(rows.map((n) => n.owner)).size > 1), rows));
      });
    });
}
