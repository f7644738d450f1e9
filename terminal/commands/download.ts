import { resolve } from 'node:path';
import type { Command } from 'commander';
import { displayPath, withCore } from '../connect.js';
import { downloadJobFiles } from '../download.js';
import { CliError, ExitCode } from '../exit-codes.js';
import { formatBytes, printResult } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { selectByGlobs } from '../../terminal-protocol/path-patterns.js';
import { JOB_ARGUMENT, resolveJob } from '../job-reference.js';
import { progressWanted } from '../progress.js';

export function registerDownload(program: Command): void {
  program
    .command('download')
    .description("copy a job's files (outputs, logs, script, inputs) to this machine")
    .argument('<job>', JOB_ARGUMENT)
    .argument('[patterns...]', 'only files whose path matches one of these globs (default: all)')
    .option('-t, --to <dir>', 'where to put them (default: ./<job id>)')
    .option('--json', 'print one JSON document listing the files written')
    .addHelpText(
      'after',
      `
Paths are relative to the job's directory and kept under --to. In patterns, * and ? stay within one
path segment, ** spans directories, and a pattern naming a directory takes everything below it.
Quote patterns so that your shell does not expand them. An interrupted download continues where it
stopped when run again.
${examples(
  '$ swm download 3f2b8c1e',
  '$ swm download "$id" --to results/ \'*.csv\' stdout.log',
  '$ swm download "$id" \'out/**/*.png\'',
)}`,
    )
    .action(async (idText: string, patterns: string[], opts: { to?: string; json?: boolean }, command: Command) => {
      await withCore(bundleOptionsOf(command), async (core) => {
        const id = await resolveJob(core, idText);
        const to = resolve(opts.to ?? id);
        const { files } = await core.call('job.files', { id });
        const { selected, unmatched } = selectByGlobs(files, patterns);
        if (unmatched.length > 0)
          throw new CliError(`no file of job ${id} matches ${unmatched.map((p) => `"${p}"`).join(', ')}`, ExitCode.NotFound);
        if (selected.length === 0) throw new CliError(`job ${id} has no files yet`, ExitCode.NotFound);
        const written = await downloadJobFiles(core, id, selected, to, { progress: progressWanted(!!opts.json) });
        const bytes = written.reduce((n, f) => n + f.size, 0);
        printResult(
          !!opts.json,
          { id, to, files: written },
          () => `downloaded ${written.length} file${written.length === 1 ? '' : 's'} (${formatBytes(bytes)}) to ${displayPath(to)}\n`,
        );
      });
    });
}
