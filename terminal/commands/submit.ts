import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { ResultOf } from '../../terminal-protocol/method.js';
import { MAX_SCRIPT_BYTES, type TerminalMethods } from '../../terminal-protocol/terminal-methods.js';
import { withCore } from '../connect.js';
import { CliError, exitCodeForJob, jobExitStatusHelp, usageError } from '../exit-codes.js';
import { formatBytes, formatState, jobEndLine, note, printJson } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { collect } from '../job-arguments.js';
import { followJob } from '../job-follow.js';
import { readInputFilesDirective, scriptNamesItself } from '../input-files.js';
import { collectInputs, hashInputs } from '../local-inputs.js';
import { progressWanted, startProgress } from '../progress.js';
import { applyOverrides, wrapCommand, type OverriddenScript } from '../script-overrides.js';
import { submitJob } from '../submit-job.js';
import { JobResolver, resolveDependencies } from '../job-reference.js';

interface SubmitOptions {
  name?: string;
  input?: string[];
  wait?: boolean;
  dryRun?: boolean;
  json?: boolean;
  wrap?: string;
  nodes?: string;
  flavor?: string;
  remote?: string;
  image?: string;
  duration?: string;
  array?: string;
  depends?: string;
  env?: string[];
  outputFiles?: string[];
}

const tooLarge = (what: string, bytes: number): CliError =>
  new CliError(`${what} is ${formatBytes(bytes)}; the limit is ${formatBytes(MAX_SCRIPT_BYTES)}`);

async function readScriptFile(path: string): Promise<string> {
  const info = await stat(path).catch(() => null);
  if (!info || !info.isFile()) throw new CliError(`no job script at ${path}`);
  if (info.size > MAX_SCRIPT_BYTES) throw tooLarge(`job script ${path}`, info.size);
  return readFile(path, 'utf8');
}

/** `swm submit -`: the script is whatever arrives on stdin. */
async function readScriptStdin(): Promise<string> {
  if (process.stdin.isTTY) note('reading the job script from stdin (end it with Ctrl-D)');
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    bytes += (chunk as Buffer).length;
    if (bytes > MAX_SCRIPT_BYTES) throw tooLarge('the job script on stdin', bytes);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The script and the name it goes by when neither it nor --name names the job. */
async function readScript(path: string | undefined, wrap: string | undefined, inputs: readonly string[]): Promise<{ script: string; fallbackName: string }> {
  if (wrap !== undefined && path !== undefined) throw usageError('give a script or --wrap COMMAND, not both');
  if (wrap !== undefined) {
    if (wrap.trim() === '') throw usageError('--wrap needs a command');
    return { script: wrapCommand(wrap), fallbackName: 'wrap' };
  }
  if (path === undefined)
    throw usageError(
      `which job script? give its path, - to read it from stdin, or --wrap COMMAND${inputs.length ? ' (--input takes every path up to the next option: put the script first, or end the paths with --)' : ''}`,
    );
  if (path === '-') return { script: await readScriptStdin(), fallbackName: 'stdin' };
  return { script: await readScriptFile(path), fallbackName: basename(path) };
}

/** The core names the script's line in a refusal; a line the overrides added is named by its flag instead. */
function blameFlag(error: unknown, overridden: OverriddenScript): unknown {
  if (!(error instanceof RpcError) || error.code !== ErrorCode.InvalidScript) return error;
  const line = (error.data as { line?: unknown } | undefined)?.line ?? Number(/^line (\d+):/.exec(error.message)?.[1]);
  const flag = typeof line === 'number' ? overridden.flagOfLine.get(line) : undefined;
  return flag ? usageError(`${flag}: ${error.message.replace(/^line \d+: /, '')}`) : error;
}

type Plan = ResultOf<TerminalMethods, 'job.plan'>;

/** What --dry-run prints: the job as the core reads it, what the scheduler would do now, and its price. Pure. */
export function dryRunText(plan: Plan): string {
  const what = `${plan.tasks > 1 ? `${plan.tasks} tasks of ` : ''}${plan.nodes} node${plan.nodes === 1 ? '' : 's'}${plan.flavor ? ` of ${plan.flavor}` : ''}${plan.remote ? ` on remote ${plan.remote}` : ''}`;
  const lines = [`valid: ${what}`];
  for (const warning of plan.warnings) lines.push(`warning: ${warning}`);
  if (plan.starts) lines.push(`would start now, on ${plan.reuse ? `idle partition ${plan.reuse}` : 'a new partition'}`);
  else if (plan.never) lines.push(`would never run: ${plan.reason}`);
  else if (plan.reason) lines.push(`would wait: ${plan.reason}${plan.position ? ` (#${plan.position} in line)` : ''}`);
  if (plan.pricePerHour !== null)
    lines.push(`price: ${[plan.pricePerHour.toFixed(4), plan.currency].filter(Boolean).join(' ')} per hour${plan.tasks > 1 ? ' per task' : ''}`);
  lines.push('nothing was submitted (--dry-run)');
  return `${lines.join('\n')}\n`;
}

export function registerSubmit(program: Command): void {
  program
    .command('submit')
    .description('submit a job script, uploading its input files; prints the job id')
    .argument('[script]', 'the job script (its #SWM lines say what it needs); - reads it from stdin')
    .option('-n, --name <name>', "job name (default: the script's #SWM name, else its file name)")
    .option('-i, --input <paths...>', 'input files or directories, paths relative to here (one flag takes several)')
    .option('--wrap <command>', 'run this shell command as the job (a script of one line, run by /bin/sh)')
    .option('-N, --nodes <n>', 'number of nodes (overrides #SWM nodes)')
    .option('--flavor <flavor>', 'node size, see swm flavors (overrides #SWM flavor)')
    .option('--remote <remote>', 'where to run, see swm remotes (overrides #SWM remote)')
    .option('--image <image>', 'container image (overrides #SWM container-image)')
    .option('--duration <time>', 'time limit, HH:MM:SS or D-HH:MM:SS (overrides #SWM duration)')
    .option('-a, --array <spec>', 'a job array: one task per index, e.g. 0-99%10 (at most 10 running at once) or 1,3,5-7 (overrides #SWM array)')
    .option('-d, --depends <deps>', 'start only after other jobs: afterok:JOB[:JOB...], afterany:..., afternotok:... (comma separated; JOB: id, short id, name or array id; adds to #SWM depends)')
    .option('--env <name=value>', 'an environment variable of the job (repeatable; adds to #SWM env)', collect)
    .option('--output-files <files>', 'files to bring back, space or comma separated (repeatable; overrides #SWM output-files)', collect)
    .option('-w, --wait', 'wait for the job to end, printing its output; exit with its exit status')
    .option('--dry-run', 'check the script and say what the scheduler would do with it now, and its price; submit nothing')
    .option('--json', 'print one JSON document (no progress bar, no output streaming)')
    .addHelpText(
      'after',
      `
Input files come from --input and from the script's "#SWM input-files" lines. Directories are sent
with their whole tree; every file keeps its path relative to the current directory, which is the
path the job sees. --input takes every path up to the next option: put the script first, or end the
paths with --. If an upload is interrupted, running the same command again resumes it.

Flags override the script's directives as sbatch flags override #SBATCH lines; the stored script
shows them as directives after its own, whose overridden lines become comments (##SWM).
${jobExitStatusHelp}
${examples(
  '$ swm submit job.sh',
  '$ swm submit job.sh --input data.csv images/ --wait',
  '$ swm submit job.sh --nodes 2 --flavor local.small --duration 00:30:00',
  '$ swm submit job.sh --image docker.io/library/python:3.12 --env EPOCHS=10 --env LR=0.1',
  '$ swm submit job.sh --remote local --name nightly --output-files model.bin,metrics.json',
  '$ swm submit sweep.sh --array 0-99%10        # 100 tasks, $SWM_ARRAY_TASK_ID 0..99, 10 at once',
  '$ swm submit report.sh --depends afterok:3f2b8c1e:train',
  '$ swm submit --wrap "python train.py" --input train.py --wait',
  '$ generate-job | swm submit - --name generated',
  '$ id=$(swm submit job.sh) && swm wait --exit-code "$id"',
  '$ swm submit job.sh --nodes 4 --dry-run          # valid? would it start now, where, at what price?',
)}`,
    )
    .action(async (scriptPath: string | undefined, opts: SubmitOptions, command: Command) => {
      const json = !!opts.json;
      const progress = progressWanted(json);
      const { script: original, fallbackName } = await readScript(scriptPath, opts.wrap, opts.input ?? []);
      const flags = {
        nodes: opts.nodes,
        flavor: opts.flavor,
        remote: opts.remote,
        image: opts.image,
        duration: opts.duration,
        array: opts.array,
        env: opts.env,
        outputFiles: opts.outputFiles,
      };
      // Checked before connecting; --depends is added once its jobs are resolved (the core takes full ids).
      let overridden = applyOverrides(original, { ...flags, ...(opts.depends !== undefined ? { depends: opts.depends } : {}) });
      let script = overridden.script;
      const name = opts.name ?? (scriptNamesItself(script) ? undefined : fallbackName);
      const sources = await collectInputs([...(opts.input ?? []), ...readInputFilesDirective(script)], process.cwd());
      const totalBytes = sources.reduce((n, s) => n + s.size, 0);
      const hashing = startProgress({ enabled: progress, label: 'checksum', total: totalBytes });
      const inputs = await hashInputs(sources, (n) => hashing.advance(n)).finally(() => hashing.finish());

      await withCore(
        bundleOptionsOf(command),
        async (core, bundle) => {
          if (opts.depends !== undefined) {
            overridden = applyOverrides(original, { ...flags, depends: await resolveDependencies(new JobResolver(core), opts.depends) });
            script = overridden.script;
          }
          if (opts.dryRun) {
            const plan = await core
              .call('job.plan', { script, ...(name ? { name } : {}), ...(inputs.length ? { inputs: inputs.map(({ path, size, sha256 }) => ({ path, size, sha256 })) } : {}) })
              .catch((error: unknown) => {
                throw blameFlag(error, overridden);
              });
            if (json) printJson(plan);
            else process.stdout.write(dryRunText(plan));
            if (plan.never) process.exitCode = 1;
            return;
          }
          const submitted = await submitJob(core, bundle, { script, name, inputs, progress, announce: !json }).catch((error: unknown) => {
            throw blameFlag(error, overridden);
          });
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
          if (submitted.tasks) {
            // An array: every task to its end; the exit status is the first task's that did not finish.
            if (!json) note(`submitted array ${submitted.id} (${submitted.tasks.length} tasks); waiting for them to end`);
            const ended = [];
            for (const task of submitted.tasks) ended.push(await followJob(core, task, {}));
            if (json) printJson({ ...summary, tasks: ended });
            else for (const job of ended) process.stderr.write(jobEndLine(job));
            process.exitCode = ended.map((job) => exitCodeForJob(job) ?? 1).find((code) => code !== 0) ?? 0;
            return;
          }
          if (!json) note(`submitted job ${submitted.id}; waiting for it to end`);
          const job = await followJob(
            core,
            submitted.id,
            json ? {} : { streams: { stdout: process.stdout, stderr: process.stderr }, onPhase: (seen) => note(`${formatState(seen.state)}: ${seen.state_details}`) },
          );
          if (json) printJson({ ...summary, job });
          process.exitCode = exitCodeForJob(job) ?? 1;
        },
        { reconnect: !!opts.wait },
      );
    });
}
