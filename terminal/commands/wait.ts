import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { ExitCode, exitCodeForJob, jobExitStatusHelp } from '../exit-codes.js';
import { jobEndLine, printJson } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { positiveSeconds } from '../job-arguments.js';
import { JOB_ARGUMENT, resolveJob } from '../job-reference.js';
import { followJob } from '../job-follow.js';

interface WaitOptions {
  timeout?: number;
  exitCode?: boolean;
  json?: boolean;
}

export function registerWait(program: Command): void {
  program
    .command('wait')
    .description("wait until a job ends; print its exit status (or exit with it: --exit-code)")
    .argument('<job>', JOB_ARGUMENT)
    .option('-t, --timeout <sec>', 'give up after SEC seconds (exit 124)', positiveSeconds)
    .option('-x, --exit-code', "exit with the job's exit status instead of printing it")
    .option('--json', 'print the ended job as one JSON document')
    .addHelpText(
      'after',
      `${jobExitStatusHelp}
${examples(
  '$ swm wait 3f2b8c1e',
  '$ status=$(swm wait train) && echo "train ended with $status"',
  '$ swm wait --exit-code "$id" --timeout 600 && swm download "$id"',
)}`,
    )
    .action(async (jobText: string, opts: WaitOptions, command: Command) => {
      await withCore(
        bundleOptionsOf(command),
        async (core) => {
          const id = await resolveJob(core, jobText);
          const job = await followJob(core, id, opts.timeout !== undefined ? { timeoutMs: opts.timeout * 1000 } : {});
          const status = exitCodeForJob(job) ?? ExitCode.Failure;
          if (opts.json) printJson(job);
          else if (opts.exitCode) process.stdout.write(jobEndLine(job));
          else {
            process.stdout.write(`${status}\n`);
            process.stderr.write(jobEndLine(job));
          }
          process.exitCode = opts.exitCode ? status : ExitCode.Ok;
        },
        { reconnect: true },
      );
    });
}
