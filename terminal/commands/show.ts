import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { describeJob, printResult, renderPairs } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { parseJobId } from '../job-arguments.js';

export function registerShow(program: Command): void {
  program
    .command('show')
    .description('show every detail of one job')
    .argument('<id>', 'job id (the full UUID)')
    .option('--json', 'print the job as one JSON document (the fields of the Sky Port REST API)')
    .addHelpText('after', examples('$ swm show 3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b', '$ swm show "$id" --json | jq -r .state'))
    .action(async (idText: string, opts: { json?: boolean }, command: Command) => {
      const id = parseJobId(idText);
      await withCore(bundleOptionsOf(command), async (core) => {
        const job = await core.call('job.get', { id });
        printResult(!!opts.json, job, () => renderPairs(describeJob(job)));
      });
    });
}
