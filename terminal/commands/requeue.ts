import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { jobLine, printResult } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { JOB_ARGUMENT, resolveJob } from '../job-reference.js';

export function registerRequeue(program: Command): void {
  program
    .command('requeue')
    .description('put a job back in the queue, to run it again')
    .argument('<job>', JOB_ARGUMENT)
    .option('--json', 'print the job as one JSON document')
    .addHelpText('after', examples('$ swm requeue 3f2b8c1e', '$ swm requeue train --json'))
    .action(async (idText: string, opts: { json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const id = await resolveJob(core, idText);
        const job = await core.call('job.requeue', { id });
        printResult(!!opts.json, job, () => jobLine(job));
      });
    });
}
