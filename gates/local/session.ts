import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { spawn as spawnPty, type IPty } from 'node-pty';
import type { Logger } from 'pino';
import type { PseudoTtyInfo, ServerChannel, Session } from 'ssh2';
import type { NodeDirectory } from './node-directory.js';
import { serveSftp } from './sftp-server.js';
import { serveAgent } from '../../node-agent/agent.js';
import { isAgentCommand } from '../../node-agent/launch.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Signal names a client may send (SSH names them without the SIG prefix). Pure. */
export const signalOf = (name: string): NodeJS.Signals | null => {
  const full = `SIG${name.replace(/^SIG/, '')}`;
  return Object.hasOwn(constants.signals, full) ? (full as NodeJS.Signals) : null;
};

/** exit-status, or exit-signal for the signals SSH can name (others as a shell reports them: 128+n). */
function reportExit(channel: ServerChannel, code: number | null, signal: NodeJS.Signals | null): void {
  if (code !== null || signal === null) {
    channel.exit(code ?? 255);
    return;
  }
  try {
    channel.exit(signal, false, '');
  } catch {
    channel.exit(128 + (constants.signals[signal] ?? 0));
  }
}

/**
 * One SSH session on a node: `env` requests, then `exec` (or a plain `shell`) as `/bin/sh` in the node
 * directory, or the `sftp` subsystem. The command runs in a session of its own (setsid), so a process it
 * leaves behind (nohup ... &) outlives this session and the gate; closing the channel only closes the
 * pipes, as sshd does. A `signal` request signals the command's whole process group.
 *
 * After a `pty` request the command runs on a pseudo-terminal instead (`swm exec` into a job): one output
 * stream, the terminal's line discipline (Ctrl-C becomes SIGINT of the foreground job), `window-change`
 * resizes it, and closing the channel hangs it up (SIGHUP), as sshd does for a session with a terminal.
 */
export function serveSession(session: Session, directory: NodeDirectory, baseEnv: NodeJS.ProcessEnv, logger: Logger): void {
  const requested: Record<string, string> = {};
  let child: ChildProcess | IPty | null = null;
  let terminal: PseudoTtyInfo | null = null;

  session.on('env', (accept, reject, info) => {
    if (!ENV_NAME.test(info.key) || info.val.includes('\0')) return reject?.();
    requested[info.key] = info.val;
    accept?.();
  });
  session.on('pty', (accept, reject, info) => {
    if (child) return reject?.();
    terminal = info;
    accept?.();
  });
  session.on('window-change', (accept, reject, info) => {
    if (!terminal) return reject?.();
    terminal = { ...terminal, cols: info.cols, rows: info.rows };
    if (child && 'resize' in child) resize(child, info);
    accept?.();
  });
  session.on('exec', (accept, _reject, info) => {
    // The node agent, served in this process: no process of its own, none per operation either.
    if (!terminal && isAgentCommand(info.command)) return serveAgentOn(accept());
    child = terminal ? runOnTerminal(accept(), ['-c', info.command], terminal) : run(accept(), ['-c', info.command]);
  });
  session.on('shell', (accept) => {
    child = terminal ? runOnTerminal(accept(), [], terminal) : run(accept(), []);
  });
  session.on('signal', (accept, reject, info) => {
    const signal = signalOf(info.name);
    // The group, not just the shell: what the command started (and did not move to a session of its
    // own) is signalled too, even after the shell itself has exited.
    if (!signal || !child?.pid) return reject?.();
    if ('resize' in child) {
      // The program on the terminal (its own session): a Ctrl-C typed there travels as input instead.
      child.kill(signal);
      return accept?.();
    }
    try {
      process.kill(-child.pid, signal);
      accept?.();
    } catch {
      reject?.();
    }
  });
  session.on('sftp', (accept) => serveSftp(accept(), directory, logger));

  const environment = (): NodeJS.ProcessEnv => ({ ...baseEnv, ...requested, HOME: directory.root });

  function runOnTerminal(channel: ServerChannel, args: string[], info: PseudoTtyInfo): IPty | null {
    let command: IPty;
    try {
      command = spawnPty('/bin/sh', args, {
        name: /^[A-Za-z0-9._+-]{1,64}$/.test(info.term) ? info.term : 'xterm',
        cols: Math.max(1, info.cols || 80),
        rows: Math.max(1, info.rows || 24),
        cwd: directory.root,
        env: environment() as Record<string, string>,
        // Bytes, not text: what the program writes reaches the client unchanged.
        encoding: null,
      });
    } catch (error) {
      channel.stderr.write(`cannot run /bin/sh on a terminal: ${(error as Error).message}\n`);
      channel.exit(127);
      channel.end();
      return null;
    }
    // Flow control both ways: a terminal that reads slowly pauses the program, not our memory.
    command.onData((data: string | Buffer) => {
      if (!channel.write(data)) {
        command.pause();
        channel.once('drain', () => command.resume());
      }
    });
    channel.on('data', (data: Buffer) => command.write(data));
    channel.on('error', (error: Error) => logger.debug({ err: error }, 'terminal channel error'));
    let exited = false;
    channel.on('close', () => {
      // A terminal that goes away hangs up its session, as sshd does.
      if (!exited) command.kill('SIGHUP');
    });
    command.onExit(({ exitCode, signal }) => {
      exited = true;
      const name = signal ? (Object.entries(constants.signals).find(([, n]) => n === signal)?.[0] as NodeJS.Signals | undefined) : undefined;
      reportExit(channel, name ? null : exitCode, name ?? null);
      channel.end();
    });
    return command;
  }

  function serveAgentOn(channel: ServerChannel): void {
    channel.on('error', (error: Error) => logger.debug({ err: error }, 'agent channel error'));
    void serveAgent(channel, channel, { home: directory.root, env: environment() }, (message) => logger.warn({ message }, 'node agent: malformed input')).then(() => {
      try {
        channel.exit(0);
        channel.end();
      } catch {
        /* the channel is gone already */
      }
    });
  }

  function resize(command: IPty, info: { cols: number; rows: number }): void {
    try {
      command.resize(Math.max(1, info.cols), Math.max(1, info.rows));
    } catch {
      // The program has just exited: nothing to resize.
    }
  }

  function run(channel: ServerChannel, args: string[]): ChildProcess {
    const command = spawn('/bin/sh', args, {
      cwd: directory.root,
      env: environment(),
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    command.stdout!.pipe(channel, { end: false });
    command.stderr!.pipe(channel.stderr, { end: false });
    channel.pipe(command.stdin!);
    // A command that exits without reading its input: what the client still sends goes nowhere.
    command.stdin!.on('error', () => undefined);
    channel.on('error', (error: Error) => logger.debug({ err: error }, 'exec channel error'));
    channel.on('close', () => {
      // As sshd: the command loses its pipes, nothing more (it is not killed).
      command.stdout!.unpipe(channel);
      command.stderr!.unpipe(channel.stderr);
      command.stdout!.destroy();
      command.stderr!.destroy();
      command.stdin!.destroy();
    });
    command.on('error', (error) => {
      channel.stderr.write(`cannot run /bin/sh: ${error.message}\n`);
      channel.exit(127);
      channel.end();
    });
    command.on('close', (code, signal) => {
      reportExit(channel, code, signal);
      channel.end();
    });
    return command;
  }
}
