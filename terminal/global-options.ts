import type { Command } from 'commander';
import type { BundleOptions } from './connect.js';

/** Options every command accepts (declared on the program, read from any subcommand). */
export interface GlobalOptions {
  home?: string;
}

export const bundleOptionsOf = (command: Command): BundleOptions => ({ home: command.optsWithGlobals<GlobalOptions>().home });

/** The example block every command's --help ends with. */
export const examples = (...lines: string[]): string => `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
