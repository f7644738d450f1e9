#!/usr/bin/env node
import { CommanderError } from 'commander';
import { RpcError, errorCodeNames } from '../terminal-protocol/errors.js';
import { CliError, exitCodeForError } from './exit-codes.js';
import { buildProgram, exitCodeForCommander } from './program.js';

/** `swm: <message>` on stderr; the code's name only where the message alone would puzzle. */
function report(error: unknown): void {
  let message: string;
  if (error instanceof CliError) message = error.message;
  else if (error instanceof RpcError) {
    const known = errorCodeNames[error.code];
    message = error.code <= -32600 && error.code >= -32700 && known ? `${error.message} (${known})` : error.message;
  } else message = (error as Error)?.message ?? String(error);
  process.stderr.write(`swm: ${message}\n`);
  if (process.env.SWM_DEBUG && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
}

async function main(): Promise<number> {
  // A reader that stops early (`swm jobs | head -1`) is not an error of ours.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    throw error;
  });
  try {
    await buildProgram().parseAsync(process.argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) return exitCodeForCommander(error.exitCode);
    report(error);
    return exitCodeForError(error);
  }
}

const code = await main();
// Let stdout drain before exiting: a piped `swm jobs --json | head` must get its whole document.
process.stdout.write('', () => process.exit(code));
