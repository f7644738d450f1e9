import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerAdminUserAdd } from './commands/admin-user-add.js';
import { registerAdminUserRevoke } from './commands/admin-user-revoke.js';
import { registerCancel } from './commands/cancel.js';
import { registerCost } from './commands/cost.js';
import { registerCompletion } from './commands/completion.js';
import { registerDashboard } from './commands/dashboard.js';
import { registerDownload } from './commands/download.js';
import { registerExec } from './commands/exec.js';
import { registerFlavors } from './commands/flavors.js';
import { registerForward } from './commands/forward.js';
import { registerImages } from './commands/images.js';
import { registerJobs } from './commands/jobs.js';
import { registerLogs } from './commands/logs.js';
import { registerNodes } from './commands/nodes.js';
import { registerPartitions } from './commands/partitions.js';
import { registerRemotes } from './commands/remotes.js';
import { registerRequeue } from './commands/requeue.js';
import { registerShow } from './commands/show.js';
import { registerStatus } from './commands/status.js';
import { registerSubmit } from './commands/submit.js';
import { registerWait } from './commands/wait.js';
import { ExitCode } from './exit-codes.js';
import { examples } from './global-options.js';

function packageVersion(): string {
  try {
    const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return manifest.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * The `swm` command tree. Commander is told not to exit by itself: main.ts maps its errors to exit code 2
 * and prints everything as `swm: <message>`. Settings made here are inherited by the subcommands, which
 * is why they are set before any command is added.
 */
export function buildProgram(): Command {
  const program = new Command('swm');
  program
    .description('Sky Port terminal: run containerised jobs on cloud machines')
    .version(packageVersion(), '-V, --version')
    .option('--home <dir>', 'your certificate bundle (default: $SWM_HOME, else ~/.swm)')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`swm: ${text.replace(/^error: /, '')}`) })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      `
The core's address comes from the bundle's config.json; SWM_CORE_URL=wss://HOST:PORT overrides it.
A job is named by its id, a unique prefix of it (4 characters or more, as swm jobs shows) or its name.
Exit codes: 0 success, 1 error, 2 usage error, 3 not found, 4 permission denied, 5 core unreachable.
swm wait prints the job's exit status and exits 0; swm wait --exit-code and swm submit --wait exit
with the job's status instead (see swm wait --help).
${examples('$ swm submit job.sh --input data/ --wait', '$ swm jobs --state R', '$ swm logs --tail 20 train', '$ source <(swm completion bash)', '$ swm help logs')}`,
    );

  registerStatus(program);
  registerSubmit(program);
  registerJobs(program);
  registerShow(program);
  registerLogs(program);
  registerWait(program);
  registerCancel(program);
  registerRequeue(program);
  registerCost(program);
  registerDownload(program);
  registerForward(program);
  registerExec(program);
  registerRemotes(program);
  registerFlavors(program);
  registerImages(program);
  registerPartitions(program);
  registerNodes(program);
  registerDashboard(program);

  const admin = program
    .command('admin')
    .description('administration (admin certificates only)')
    .addHelpText('after', examples('$ swm admin user add alice --out ./alice-bundle'));
  const user = admin
    .command('user')
    .description('issue and revoke user certificates')
    .addHelpText('after', examples('$ swm admin user add alice --out ./alice-bundle', '$ swm admin user revoke alice'));
  registerAdminUserAdd(user);
  registerAdminUserRevoke(user);
  registerCompletion(program);
  return program;
}

/** Commander's own exits: help and version are successes, anything else is a usage error. */
export const exitCodeForCommander = (exitCode: number): number => (exitCode === 0 ? ExitCode.Ok : ExitCode.Usage);
