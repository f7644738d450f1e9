import { realpathSync } from 'node:fs';
import type { Command } from 'commander';
import { SHELLS, completionScript, type Shell } from '../completion.js';
import { usageError } from '../exit-codes.js';
import { examples } from '../global-options.js';

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script (commands, options, job ids) for bash or zsh')
    .argument('<shell>', `the shell: ${SHELLS.join(' or ')}`)
    .addHelpText(
      'after',
      `
Job arguments complete with the short ids of your jobs (swm jobs --quiet), so completing asks the core.
${examples(
  '$ swm completion bash > ~/.local/share/bash-completion/completions/swm',
  '$ source <(swm completion bash)                  # now, in this shell only',
  '$ swm completion zsh > "${fpath[1]}/_swm"        # zsh: then restart it',
)}`,
    )
    .action((shell: string) => {
      if (!(SHELLS as readonly string[]).includes(shell)) throw usageError(`no completion for "${shell}": use ${SHELLS.join(' or ')}`);
      const entry = realpathSync(process.argv[1]!);
      process.stdout.write(completionScript(shell as Shell, program, [process.execPath, entry]));
    });
}
