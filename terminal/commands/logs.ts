import type { Command } from 'commander';
import { withCore } from '../connect.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { parseJobId } from '../job-arguments.js';
import { followJob } from '../job-follow.js';
import { LogCursor, type LogStream } from '../log-stream.js';

export function registerLogs(program: Command): void {
  program
    .command('logs')
    .description("print a job's output (stdout, or stderr with --stderr)")
    .argument('<id>', 'job id (the full UUID)')
    .option('-e, --stderr', 'the standard error stream instead of standard output')
    .option('-f, --follow', 'keep printing as the job writes, until it ends')
    .addHelpText(
      'after',
      examples('$ swm logs 3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b', '$ swm logs -f "$id"', '$ swm logs --stderr "$id" > errors.txt'),
    )
    .action(async (idText: string, opts: { stderr?: boolean; follow?: boolean }, command: Command) => {
      const id = parseJobId(idText);
      const stream: LogStream = opts.stderr ? 'stderr' : 'stdout';
      await withCore(
        bundleOptionsOf(command),
        async (core) => {
          if (opts.follow) await followJob(core, id, { streams: { [stream]: process.stdout } });
          else await new LogCursor(stream, process.stdout).readAvailable(core, id);
        },
        { reconnect: !!opts.follow },
      );
    });
}
