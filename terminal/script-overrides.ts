import { usageError } from './exit-codes.js';

/**
 * `swm submit` flags that override a script's `#SWM` directives, as sbatch flags override `#SBATCH`
 * lines. The core reads directives from the script alone, so the terminal writes the overrides into it:
 * the script's own lines for an overridden directive are turned into comments (`##SWM ...`, the line
 * count unchanged, so the core's "line N" still points into the user's script) and the flags' directives
 * are appended after them. `--env` adds to the script's variables (a flag's value wins for the same name).
 */
export interface DirectiveOverrides {
  nodes?: string;
  flavor?: string;
  remote?: string;
  image?: string;
  duration?: string;
  /** `--array SPEC`: the job is an array of tasks (replaces #SWM array). */
  array?: string;
  /** `--depends CLAUSES` with full ids (the terminal resolves short ids first); adds to #SWM depends. */
  depends?: string;
  env?: readonly string[];
  outputFiles?: readonly string[];
}

export interface OverriddenScript {
  script: string;
  /** Line number (1-based) of each appended directive → the flag it came from, to name it in errors. */
  flagOfLine: Map<number, string>;
}

/** Each single-valued override: its flag, and the directive it replaces. */
const REPLACING: readonly { field: Exclude<keyof DirectiveOverrides, 'env' | 'outputFiles' | 'depends'>; flag: string; directive: string }[] = [
  { field: 'nodes', flag: '--nodes', directive: 'nodes' },
  { field: 'flavor', flag: '--flavor', directive: 'flavor' },
  { field: 'remote', flag: '--remote', directive: 'remote' },
  { field: 'image', flag: '--image', directive: 'container-image' },
  { field: 'duration', flag: '--duration', directive: 'duration' },
  { field: 'array', flag: '--array', directive: 'array' },
];

const ENV_ENTRY = /^[A-Za-z_][A-Za-z0-9_]*=/;
const directiveKey = (line: string): string | null => /^#SWM\s+(\S+)/i.exec(line.replace(/\r$/, ''))?.[1]?.toLowerCase() ?? null;

/** A value becomes one directive line: a line break in it would smuggle in lines of its own. */
function oneLine(flag: string, value: string): string {
  if (/[\r\n\0]/.test(value)) throw usageError(`${flag}: the value may not contain a line break`);
  const trimmed = value.trim();
  if (trimmed === '') throw usageError(`${flag} needs a value`);
  return trimmed;
}

export function applyOverrides(script: string, overrides: DirectiveOverrides): OverriddenScript {
  const added: { flag: string; line: string }[] = [];
  const replaced = new Set<string>();
  for (const { field, flag, directive } of REPLACING) {
    const value = overrides[field];
    if (value === undefined) continue;
    replaced.add(directive);
    added.push({ flag: `${flag} ${value}`, line: `#SWM ${directive} ${oneLine(flag, value)}` });
  }
  if (overrides.outputFiles !== undefined) {
    replaced.add('output-files');
    const files = overrides.outputFiles.map((f) => oneLine('--output-files', f)).join(' ');
    added.push({ flag: `--output-files ${overrides.outputFiles.join(' ')}`, line: `#SWM output-files ${files}`.trimEnd() });
  }
  if (overrides.depends !== undefined) added.push({ flag: `--depends ${overrides.depends}`, line: `#SWM depends ${oneLine('--depends', overrides.depends)}` });
  for (const entry of overrides.env ?? []) {
    const value = oneLine('--env', entry);
    if (!ENV_ENTRY.test(value)) throw usageError(`--env ${entry}: expected NAME=VALUE (NAME: letters, digits, _; not starting with a digit)`);
    added.push({ flag: `--env ${entry}`, line: `#SWM env ${value}` });
  }
  const flagOfLine = new Map<number, string>();
  if (added.length === 0) return { script, flagOfLine };

  const lines = script.split('\n').map((line) => (replaced.has(directiveKey(line) ?? '') ? `#${line}` : line));
  if (lines[lines.length - 1] === '') lines.pop();
  lines.push('# directives from the swm submit command line');
  for (const { flag, line } of added) {
    lines.push(line);
    flagOfLine.set(lines.length, flag);
  }
  return { script: `${lines.join('\n')}\n`, flagOfLine };
}

/** The script `swm submit --wrap CMD` runs: the command, by /bin/sh. */
export const wrapCommand = (command: string): string => `#!/bin/sh\n${command}\n`;
