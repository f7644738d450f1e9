import type { Command } from 'commander';

/**
 * Shell completion scripts for bash and zsh, written from the command tree itself so that a new command
 * or option completes without anyone editing a script. Pure: the tree and how to run swm in, text out.
 * Job arguments complete with the ids `swm jobs --quiet` prints (short ids, which every command takes).
 */

export const SHELLS = ['bash', 'zsh'] as const;
export type Shell = (typeof SHELLS)[number];

interface CommandEntry {
  /** Words from `swm` to the command: '' for swm itself, 'admin user add'. */
  path: string;
  subcommands: string[];
  options: string[];
  takesJob: boolean;
}

/** Arguments that name jobs (see job-reference.ts); their values complete with job ids. */
const JOB_ARGUMENTS = new Set(['job', 'jobs']);

function entries(command: Command, path: string[] = []): CommandEntry[] {
  const visible = command.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  const options = command.options.flatMap((o) => [o.long, o.short].filter((f): f is string => !!f));
  const entry: CommandEntry = {
    path: path.join(' '),
    subcommands: visible.map((c) => c.name()),
    options: [...new Set([...options, '--help'])],
    takesJob: command.registeredArguments.some((a) => JOB_ARGUMENTS.has(a.name())),
  };
  return [entry, ...visible.flatMap((c) => entries(c, [...path, c.name()]))];
}

const shellQuote = (word: string): string => `'${word.replace(/'/g, `'\\''`)}'`;

/** The helper functions both shells share: plain `case` statements, valid in bash and in zsh. */
function tables(list: readonly CommandEntry[], swm: readonly string[]): string {
  const cases = (pick: (e: CommandEntry) => string[]) =>
    list
      .filter((e) => pick(e).length > 0)
      .map((e) => `    ${shellQuote(e.path)}) echo ${shellQuote(pick(e).join(' '))} ;;`)
      .join('\n');
  const jobTaking = list.filter((e) => e.takesJob).map((e) => shellQuote(e.path));
  return `_swm_self() { ${swm.map(shellQuote).join(' ')} "$@"; }
_swm_subcommands() {
  case "$1" in
${cases((e) => e.subcommands)}
  esac
}
_swm_options() {
  case "$1" in
${cases((e) => e.options)}
  esac
}
_swm_takes_job() {
  case "$1" in
    ${jobTaking.length ? jobTaking.join('|') : "''"}) return 0 ;;
  esac
  return 1
}`;
}

const bash = (list: readonly CommandEntry[], swm: readonly string[]): string => `# swm completion for bash. Load it with: source <(swm completion bash)
${tables(list, swm)}
_swm() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmdpath="" word i subs
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    [[ $word == -* ]] && continue
    subs=" $(_swm_subcommands "$cmdpath") "
    [[ $subs == *" $word "* ]] && cmdpath="\${cmdpath:+$cmdpath }$word"
  done
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_swm_options "$cmdpath")" -- "$cur"))
    return
  fi
  subs="$(_swm_subcommands "$cmdpath")"
  if [[ -n $subs ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  elif _swm_takes_job "$cmdpath"; then
    COMPREPLY=($(compgen -W "$(_swm_self jobs --quiet 2>/dev/null)" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o default -F _swm swm
`;

const zsh = (list: readonly CommandEntry[], swm: readonly string[]): string => `#compdef swm
# swm completion for zsh. Load it with: source <(swm completion zsh)
# (or save it as _swm in a directory of $fpath).
${tables(list, swm)}
_swm() {
  local cmdpath="" word cur="\${words[CURRENT]}"
  local -a subs
  for word in "\${(@)words[2,CURRENT-1]}"; do
    [[ $word == -* ]] && continue
    subs=(\${=$(_swm_subcommands "$cmdpath")})
    (( \${subs[(Ie)$word]} )) && cmdpath="\${cmdpath:+$cmdpath }$word"
  done
  if [[ $cur == -* ]]; then
    compadd -- \${=$(_swm_options "$cmdpath")}
    return
  fi
  subs=(\${=$(_swm_subcommands "$cmdpath")})
  if (( \${#subs} )); then
    compadd -- $subs
  elif _swm_takes_job "$cmdpath"; then
    compadd -- \${(f)"$(_swm_self jobs --quiet 2>/dev/null)"}
  else
    _files
  fi
}
if (( $+functions[compdef] )); then compdef _swm swm; fi
`;

/**
 * The completion script for `shell`. `swm` is how the script runs swm to list job ids: the node binary
 * and this program's entry point, so that completion works whether swm is installed, linked or an alias.
 */
export function completionScript(shell: Shell, program: Command, swm: readonly string[]): string {
  const list = entries(program);
  return shell === 'bash' ? bash(list, swm) : zsh(list, swm);
}
