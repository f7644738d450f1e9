import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { describeJob, printResult, renderPairs } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { JOB_ARGUMENT, resolveJob } from '../job-reference.js';

export function registerShow(program: Command): void {
  program
    .command('show')
    .description('show every detail of one job')
    .argument('<job>', JOB_ARGUMENT)
    .option('--json', 'print the job as one JSON document (the fields of the Sky Port REST API)')
    .addHelpText('after', examples('$ swm show 3f2b8c1e', '$ swm show train', '$ swm show "$id" --json | jq -r .state'))
    .action(async (idText: string, opts: { json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const id = await resolveJob(core, idText);
        const job = await core.call('job.get', { id });
        printResult(!!opts.json, job, () => renderPairs(describeJob(job)));
      });
    });
}
