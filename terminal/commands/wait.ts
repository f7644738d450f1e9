import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { exitCodeForJob, jobExitStatusHelp } from '../exit-codes.js';
import { jobEndLine, printResult } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { parseJobId, positiveSeconds } from '../job-arguments.js';
import { followJob } from '../job-follow.js';

export function registerWait(program: Command): void {
  program
    .command('wait')
    .description("wait until a job ends; exit with the job's exit code")
    .argument('<id>', 'job id (the full UUID)')
    .option('-t, --timeout <sec>', 'give up after SEC seconds (exit 124)', positiveSeconds)
    .option('--json', 'print the ended job as one JSON document')
    .addHelpText(
      'after',
      `${jobExitStatusHelp}
${examples('$ swm wait 3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b', '$ swm wait "$id" --timeout 600 && swm download "$id"')}`,
    )
    .action(async (idText: string, opts: { timeout?: number; json?: boolean }, command: Command) => {
      const id = parseJobId(idText);
      await withCore(
        bundleOptionsOf(command),
        async (core) => {
          const job = await followJob(core, id, opts.timeout !== undefined ? { timeoutMs: opts.timeout * 1000 } : {});
          printResult(!!opts.json, job, () => jobEndLine(job));
          process.exitCode = exitCodeForJob(job) ?? 1;
        },
        { reconnect: true },
      );
    });
}
