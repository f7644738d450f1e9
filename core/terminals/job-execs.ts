import type { Logger } from 'pino';
import type { ClientChannel } from 'ssh2';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { FORWARD_STREAM_WINDOW, MuxStream, type StreamMux } from '../../terminal-protocol/streams.js';
import type { ParamsOf, ResultOf } from '../../terminal-protocol/method.js';
import type { TerminalMethods } from '../../terminal-protocol/terminal-methods.js';
import { randomBytes } from 'node:crypto';
import { execCommand, execSignalCommand, type ExecPlace } from '../jobs/node-layout.js';
import type { NodeSession } from '../nodes/node-session.js';
import { jobImage } from '../jobs/steps/connect.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';

type P<M extends keyof TerminalMethods> = ParamsOf<TerminalMethods, M>;
type R<M extends keyof TerminalMethods> = ResultOf<TerminalMethods, M>;

/** Commands one terminal connection may run in jobs at once. */
const MAX_EXECS = 32;

interface RunningExec {
  job: JobRecord;
  image: string | null;
  place: ExecPlace;
  session: NodeSession;
  channel: ClientChannel;
}

/**
 * `swm exec`: commands run inside running jobs for one terminal connection (as `nomad alloc exec`, `srun
 * --jobid --pty`). Each is an SSH channel to one of the job's nodes, its stdin and stdout carried as one
 * binary stream of the terminal's socket and its stderr as another (none on a pseudo-terminal, which has one
 * output); when it ends, the `job.exec.exit` notification follows the last byte of its output. The terminal
 * going away closes them: a pseudo-terminal is hung up (SIGHUP), as sshd does.
 */
export class JobExecs {
  private readonly running = new Map<number, RunningExec>();

  constructor(
    private readonly mux: StreamMux,
    private readonly services: CoreServices,
    private readonly notifyExit: (exit: { exec: number; code: number | null; signal: string | null }) => void,
    private readonly logger: Logger,
  ) {}

  async open(job: JobRecord, params: P<'job.exec.open'>): Promise<R<'job.exec.open'>> {
    if (job.step !== 'run' || !job.partitionName)
      throw new RpcError(ErrorCode.Conflict, `job ${job.id} is not running (state ${job.state}): there is nothing to run a command in`);
    if (this.running.size >= MAX_EXECS) throw new RpcError(ErrorCode.Unavailable, `too many commands running on this connection (${MAX_EXECS})`);
    const rank = params.node ?? 0;
    const nodes = this.services.nodes.ranked(job.partitionName);
    if (rank >= Math.max(1, nodes.length))
      throw new RpcError(ErrorCode.NotFound, `job ${job.id} has ${nodes.length} node${nodes.length === 1 ? '' : 's'} (ranks 0-${nodes.length - 1}): no node ${rank}`);
    const session = await this.services.nodes.node(job.partitionName, rank);
    const image = jobImage(job, this.services.config);
    const tty = params.pty !== undefined;
    const place: ExecPlace = { tty, runsHere: rank === 0 || job.directives.runOn === 'all', term: params.pty?.term, token: randomBytes(12).toString('base64url') };
    const command = execCommand(job, image, params.command ?? [], place);
    let channel: ClientChannel;
    try {
      channel = await session.openExec(command, tty ? { pty: { cols: params.pty!.cols, rows: params.pty!.rows, term: params.pty!.term ?? 'xterm' } } : {});
    } catch (error) {
      throw new RpcError(ErrorCode.Unavailable, `cannot start a command on node ${rank} of job ${job.id}: ${(error as Error).message}`);
    }
    const out = new MuxStream(this.mux, this.mux.allocate(), FORWARD_STREAM_WINDOW);
    const err = tty ? null : new MuxStream(this.mux, this.mux.allocate(), FORWARD_STREAM_WINDOW);
    const exec = out.id;
    this.running.set(exec, { job, image, place, session, channel });
    this.logger.info({ job: job.id, node: rank, tty, exec }, 'exec started');

    let code: number | null = null;
    let signal: string | null = null;
    channel.on('exit', (c: number | null, s?: string) => {
      code = c;
      // ssh2 names it SIGTERM; the protocol, as SSH itself, TERM.
      signal = s ? s.replace(/^SIG/, '') : null;
    });
    // Output first, then the exit status: the notification follows the END of each output stream.
    const outputDone = Promise.all([finished(out), err ? finished(err) : Promise.resolve()]);
    channel.pipe(out);
    if (err) channel.stderr.pipe(err);
    out.pipe(channel);
    // The terminal gave up on the command (Ctrl-C of a non-terminal exec, its connection lost): stop it.
    out.once('close', () => channel.close());
    out.on('error', () => undefined);
    err?.on('error', () => undefined);
    channel.on('error', (error: Error) => this.logger.debug({ job: job.id, err: error.message }, 'exec channel error'));
    channel.once('close', () => {
      void outputDone.then(() => {
        this.running.delete(exec);
        this.logger.info({ job: job.id, exec, code, signal }, 'exec ended');
        this.notifyExit({ exec, code: code === null && signal === null ? 255 : code, signal });
      });
    });
    return { exec, stream: out.id, stderr: err?.id ?? null, window: FORWARD_STREAM_WINDOW };
  }

  resize(params: P<'job.exec.resize'>): R<'job.exec.resize'> {
    const exec = this.find(params.exec);
    if (!exec.place.tty) throw new RpcError(ErrorCode.Conflict, `command ${params.exec} has no terminal to resize`);
    exec.channel.setWindow(params.rows, params.cols, 0, 0);
    return { ok: true };
  }

  /**
   * Signal the command's process group through a command of its own on the node: an SSH `signal` request is
   * not enough, as some servers (the local gate's among them) ignore it once the command's stdin has ended.
   */
  async signal(params: P<'job.exec.signal'>): Promise<R<'job.exec.signal'>> {
    const { job, image, place, session } = this.find(params.exec);
    const result = await session.exec(execSignalCommand(job, image, place, params.signal));
    if (result.code !== 0) throw new RpcError(ErrorCode.Conflict, `command ${params.exec} could not be signalled (it may have ended): ${result.stderr.trim()}`);
    return { ok: true };
  }

  /** The terminal disconnected: every command it runs loses its channel. */
  close(): void {
    for (const { channel } of this.running.values()) channel.close();
    this.running.clear();
  }

  private find(exec: number): RunningExec {
    const running = this.running.get(exec);
    if (!running) throw new RpcError(ErrorCode.NotFound, `no command ${exec} runs on this connection`);
    return running;
  }
}

/** Resolves once a stream has written everything (or can write nothing more). */
const finished = (stream: MuxStream): Promise<void> =>
  new Promise((resolve) => {
    if (stream.writableFinished || stream.destroyed) return resolve();
    stream.once('finish', () => resolve());
    stream.once('close', () => resolve());
  });
