import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { jobLine, printResult } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { parseJobId } from '../job-arguments.js';

export function registerRequeue(program: Command): void {
  program
    .command('requeue')
    .description('put a job back in the queue, to run it again')
    .argument('<id>', 'job id (the full UUID)')
    .option('--json', 'print the job as one JSON document')
    .addHelpText('after', examples('$ swm requeue 3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b'))
    .action(async (idText: string, opts: { json?: boolean }, command: Command) => {
      const id = parseJobId(idText);
      await withCore(bundleOptionsOf(command), async (core) => {
        const job = await core.call('job.requeue', { id });
        printResult(!!opts.json, job, () => jobLine(job));
      });
    });
}
