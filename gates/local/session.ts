import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { Logger } from 'pino';
import type { ServerChannel, Session } from 'ssh2';
import type { NodeDirectory } from './node-directory.js';
import { serveSftp } from './sftp-server.js';

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
 */
export function serveSession(session: Session, directory: NodeDirectory, baseEnv: NodeJS.ProcessEnv, logger: Logger): void {
  const requested: Record<string, string> = {};
  let child: ChildProcess | null = null;

  session.on('env', (accept, reject, info) => {
    if (!ENV_NAME.test(info.key) || info.val.includes('\0')) return reject?.();
    requested[info.key] = info.val;
    accept?.();
  });
  session.on('pty', (_accept, reject) => reject?.());
  session.on('exec', (accept, _reject, info) => {
    child = run(accept(), ['-c', info.command]);
  });
  session.on('shell', (accept) => {
    child = run(accept(), []);
  });
  session.on('signal', (accept, reject, info) => {
    const signal = signalOf(info.name);
    // The group, not just the shell: what the command started (and did not move to a session of its
    // own) is signalled too, even after the shell itself has exited.
    if (!signal || !child?.pid) return reject?.();
    try {
      process.kill(-child.pid, signal);
      accept?.();
    } catch {
      reject?.();
    }
  });
  session.on('sftp', (accept) => serveSftp(accept(), directory, logger));

  function run(channel: ServerChannel, args: string[]): ChildProcess {
    const command = spawn('/bin/sh', args, {
      cwd: directory.root,
      env: { ...baseEnv, ...requested, HOME: directory.root },
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
