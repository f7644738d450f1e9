import { constants } from 'node:os';
import type { Command } from 'commander';
import type { TerminalClient } from '../../terminal-protocol/client.js';
import { MuxStream, streamsOf } from '../../terminal-protocol/streams.js';
import { withCore } from '../connect.js';
import { CliError, ExitCode } from '../exit-codes.js';
import { note } from '../format.js';
import { bundleOptionsOf, examples } from '../global-options.js';
import { JOB_ARGUMENT, resolveJob } from '../job-reference.js';

interface ExecOptions {
  node?: string;
  tty?: boolean;
}

interface ExecExit {
  code: number | null;
  signal: string | null;
}

/** The status a shell would report for a remote command's end: its code, 128+N for signal N, 255 unknown. Pure. */
export function execExitStatus(exit: ExecExit): number {
  if (exit.code !== null) return exit.code;
  const number = exit.signal ? constants.signals[`SIG${exit.signal}` as NodeJS.Signals] : undefined;
  return number ? 128 + number : ExitCode.ExecFailure;
}

/** Whether to ask for a pseudo-terminal: -t/-T decide; else an interactive shell on a terminal gets one. Pure. */
export const wantsTerminal = (tty: boolean | undefined, command: readonly string[], interactive: boolean): boolean => tty ?? (command.length === 0 && interactive);

/** Resolves once a stream has delivered everything (its END), or is gone. */
const drained = (stream: MuxStream): Promise<void> =>
  new Promise((resolve) => {
    if (stream.readableEnded || stream.destroyed) return resolve();
    stream.once('end', () => resolve());
    stream.once('close', () => resolve());
  });

async function execInJob(core: TerminalClient, id: string, command: string[], node: number | undefined, tty: boolean): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  // The exit notification may come before the call's answer is read: keep every one until the id is known.
  const exits = new Map<number, ExecExit>();
  let onExit: ((exit: ExecExit) => void) | null = null;
  let execId: number | null = null;
  core.on('notification', (name: string, params: { exec: number } & ExecExit) => {
    if (name !== 'job.exec.exit') return;
    if (params.exec === execId) onExit?.(params);
    else exits.set(params.exec, params);
  });
  const opened = await core.call('job.exec.open', {
    id,
    ...(node !== undefined ? { node } : {}),
    ...(command.length > 0 ? { command } : {}),
    ...(tty ? { pty: { cols: stdout.columns || 80, rows: stdout.rows || 24, term: process.env.TERM && /^[A-Za-z0-9._+-]{1,64}$/.test(process.env.TERM) ? process.env.TERM : 'xterm' } } : {}),
  });
  execId = opened.exec;
  const exited = new Promise<ExecExit>((resolve) => {
    const early = exits.get(opened.exec);
    if (early) return resolve(early);
    onExit = resolve;
  });
  const mux = streamsOf(core);
  const io = new MuxStream(mux, opened.stream, opened.window);
  const errors = opened.stderr === null ? null : new MuxStream(mux, opened.stderr, opened.window);
  errors?.end(); // Nothing to send on stderr's stream: only the core writes there.
  io.pipe(stdout, { end: false });
  errors?.pipe(process.stderr, { end: false });
  io.on('error', () => undefined);
  errors?.on('error', () => undefined);

  const raw = tty && stdin.isTTY;
  if (raw) stdin.setRawMode(true);
  stdin.pipe(io);
  const cleanups: Array<() => void> = [];
  if (tty) {
    const onResize = () => void core.call('job.exec.resize', { exec: opened.exec, cols: stdout.columns || 80, rows: stdout.rows || 24 }).catch(() => undefined);
    stdout.on('resize', onResize);
    cleanups.push(() => stdout.off('resize', onResize));
  } else {
    // Without a terminal, Ctrl-C is a signal here: pass it on (INT, then KILL if it is pressed again).
    let presses = 0;
    const onSignal = (local: NodeJS.Signals) => {
      presses++;
      const signal = local === 'SIGTERM' ? 'TERM' : presses > 1 ? 'KILL' : 'INT';
      void core.call('job.exec.signal', { exec: opened.exec, signal }).catch(() => undefined);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    cleanups.push(() => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });
  }
  const lost = new Promise<never>((_, reject) =>
    core.once('disconnected', () => reject(new CliError('lost the connection to the core: the command may still be running', ExitCode.ExecFailure))),
  );
  try {
    const [exit] = await Promise.race([Promise.all([exited, drained(io), errors ? drained(errors) : Promise.resolve()]), lost]);
    return execExitStatus(exit);
  } finally {
    for (const cleanup of cleanups) cleanup();
    if (raw) stdin.setRawMode(false);
    stdin.unpipe(io);
    stdin.pause();
    io.destroy();
    errors?.destroy();
  }
}

export function registerExec(program: Command): void {
  program
    .command('exec')
    .description('run a command, or an interactive shell, inside a running job (its container, or its environment)')
    .argument('<job>', JOB_ARGUMENT)
    .argument('[command...]', 'the program and its arguments (after "--" when they have options); none: a shell')
    .option('-n, --node <rank>', "which of the job's nodes (0: the head)", '0')
    .option('-t, --tty', 'allocate a pseudo-terminal even for a command (full-screen programs: top, vim)')
    .option('-T, --no-tty', 'never allocate a pseudo-terminal, even for a shell')
    .addHelpText(
      'after',
      `
The command runs in the job's container when it has one (podman exec), else in the job's directory with the
job's variables ($SWM_JOB_ID, its #SWM env, $SWM_PORT_<port>, ...). Everything travels over your connection
to the core, as swm's other commands do: no SSH key or port of the node is needed.

A shell (no command, on a terminal) gets a pseudo-terminal: window size changes and Ctrl-C reach it. Without
one, Ctrl-C sends SIGINT to the command (a second press, SIGKILL). Stdin is passed through either way.

Exit status: the command's own (128+N when signal N killed it), as ssh does; 255 when swm exec itself failed
(the core unreachable, no such job, the job not running), with "swm: <message>" on stderr; 2 for a
wrong command line, as every swm command.
${examples('$ swm exec train', '$ swm exec train -- nvidia-smi', '$ swm exec train --node 1 -- ls -la /job', '$ tar -cf - data | swm exec train -- tar -xf - -C /job')}`,
    )
    .action(async (jobText: string, command: string[], opts: ExecOptions, self: Command) => {
      const node = Number(opts.node ?? '0');
      if (!/^\d+$/.test(opts.node ?? '0')) throw new CliError(`--node "${opts.node}" is not a node rank (0, 1, ...)`, ExitCode.Usage);
      const tty = wantsTerminal(opts.tty, command, Boolean(process.stdin.isTTY && process.stdout.isTTY));
      if (tty && !process.stdin.isTTY) note('stdin is not a terminal: the pseudo-terminal gets it as typed input');
      try {
        process.exitCode = await withCore(bundleOptionsOf(self), async (core) => execInJob(core, await resolveJob(core, jobText), command, node === 0 ? undefined : node, tty));
      } catch (error) {
        // Every failure of swm exec itself is 255, so that it cannot be read as the command's own status.
        if (error instanceof CliError && error.exitCode === ExitCode.Usage) throw error;
        throw new CliError(error instanceof Error ? error.message : String(error), ExitCode.ExecFailure);
      }
    });
}
