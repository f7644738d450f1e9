import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { MAX_SCRIPT_BYTES } from '../../terminal-protocol/terminal-methods.js';
import { withCore } from '../connect.js';
import { CliError, exitCodeForJob, jobExitStatusHelp } from '../exit-codes.js';
import { formatBytes, note, printJson } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { collect } from '../job-arguments.js';
import { followJob } from '../job-follow.js';
import { readInputFilesDirective, scriptNamesItself } from '../input-files.js';
import { collectInputs, hashInputs } from '../local-inputs.js';
import { progressWanted, startProgress } from '../progress.js';
import { submitJob } from '../submit-job.js';

interface SubmitOptions {
  name?: string;
  input?: string[];
  wait?: boolean;
  json?: boolean;
}

async function readScript(path: string): Promise<string> {
  const info = await stat(path).catch(() => null);
  if (!info || !info.isFile()) throw new CliError(`no job script at ${path}`);
  if (info.size > MAX_SCRIPT_BYTES)
    throw new CliError(`job script ${path} is ${formatBytes(info.size)}; the limit is ${formatBytes(MAX_SCRIPT_BYTES)}`);
  return readFile(path, 'utf8');
}

export function registerSubmit(program: Command): void {
  program
    .command('submit')
    .description('submit a job script, uploading its input files; prints the job id')
    .argument('<script>', 'the job script (its #SWM lines say what it needs)')
    .option('-n, --name <name>', 'job name (default: the script\'s #SWM name, else its file name)')
    .option('-i, --input <path>', 'an input file or directory, path relative to here (repeatable)', collect)
    .option('-w, --wait', 'wait for the job to end, printing its output; exit with its exit code')
    .option('--json', 'print one JSON document (no progress bar, no output streaming)')
    .addHelpText(
      'after',
      `
Input files come from --input and from the script's "#SWM input-files" lines. Directories are sent
with their whole tree; every file keeps its path relative to the current directory, which is the
path the job sees. If an upload is interrupted, running the same command again resumes it.
${jobExitStatusHelp}
${examples('$ swm submit job.sh', '$ swm submit job.sh --input data.csv --input images/ --wait', '$ id=$(swm submit job.sh) && swm wait "$id"')}`,
    )
    .action(async (scriptPath: string, opts: SubmitOptions, command: Command) => {
      const json = !!opts.json;
      const progress = progressWanted(json);
      const script = await readScript(scriptPath);
      const name = opts.name ?? (scriptNamesItself(script) ? undefined : basename(scriptPath));
      const sources = await collectInputs([...(opts.input ?? []), ...readInputFilesDirective(script)], process.cwd());
      const totalBytes = sources.reduce((n, s) => n + s.size, 0);
      const hashing = startProgress({ enabled: progress, label: 'checksum', total: totalBytes });
      const inputs = await hashInputs(sources, (n) => hashing.advance(n)).finally(() => hashing.finish());

      await withCore(
        bundleOptionsOf(command),
        async (core, bundle) => {
          const submitted = await submitJob(core, bundle, { script, name, inputs, progress });
          for (const warning of submitted.warnings) note(`warning: ${warning}`);
          const summary = {
            id: submitted.id,
            warnings: submitted.warnings,
            resumed: submitted.resumed,
            inputs: inputs.map(({ path, size, sha256 }) => ({ path, size, sha256 })),
            uploadedBytes: submitted.upload?.sent ?? 0,
          };
          if (!opts.wait) {
            if (json) printJson(summary);
            else process.stdout.write(`${submitted.id}\n`);
            return;
          }
          if (!json) note(`submitted job ${submitted.id}; waiting for it to end`);
          const job = await followJob(core, submitted.id, json ? {} : { streams: { stdout: process.stdout, stderr: process.stderr } });
          if (json) printJson({ ...summary, job });
          process.exitCode = exitCodeForJob(job) ?? 1;
        },
        { reconnect: !!opts.wait },
      );
    });
}
