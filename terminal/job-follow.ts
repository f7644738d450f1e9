import type { TerminalClient } from '../terminal-protocol/client.js';
import { isFinal, type Job } from '../terminal-protocol/job.js';
import type { NotificationOf } from '../terminal-protocol/method.js';
import type { TerminalNotifications } from '../terminal-protocol/terminal-methods.js';
import { CliError, ExitCode } from './exit-codes.js';
import { note } from './format.js';
import { LogCursor, type LogSink, type LogStream } from './log-stream.js';

export interface FollowOptions {
  /** Log streams to print while waiting, and where (none: only wait). */
  streams?: Partial<Record<LogStream, LogSink>>;
  /** Byte offsets to start printing each stream from (default 0: from the beginning). */
  from?: Partial<Record<LogStream, number>>;
  /** Give up after this long (CliError with ExitCode.WaitTimeout). */
  timeoutMs?: number;
  /** How often to ask the core directly while it pushes no output (a core that does not, or not yet). */
  pollMs?: number;
  /** How often once the core pushes output (job.log): only a safety net for what a push missed. */
  safetyPollMs?: number;
  /** Told of each new state the job is seen in (queued, waiting for its partition, transferring, running). */
  onPhase?: (job: Job) => void;
}

const POLL_MS = 3000;
const SAFETY_POLL_MS = 20_000;

type JobLog = NotificationOf<TerminalNotifications, 'job.log'>;

/**
 * Waits for a job to end, printing its logs as they grow. Notifications (job.event, job.log after
 * job.subscribe) drive it: a pushed piece is printed as it arrives, one beyond what was printed makes the
 * gap be read with job.logs first. A periodic job.get + job.logs covers anything missed: every few seconds
 * until the core pushes output, rarely once it does. A lost connection is re-subscribed when the client
 * reconnects. Once the job is final, the logs are read to their end, then the final job is returned.
 */
class JobFollower {
  private readonly cursors: LogCursor[];
  private finalJob: Job | null = null;
  private pumping = false;
  private pumpAgain = false;
  private settled = false;
  private warnedLost = false;
  /** The core pushed output since (re)connecting: polling becomes the rare safety net. */
  private pushed = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly timers: NodeJS.Timeout[] = [];
  private resolve!: (job: Job) => void;
  private reject!: (error: unknown) => void;

  constructor(
    private readonly core: TerminalClient,
    private readonly id: string,
    private readonly options: FollowOptions,
  ) {
    this.cursors = Object.entries(options.streams ?? {}).map(
      ([stream, out]) => new LogCursor(stream as LogStream, out!, options.from?.[stream as LogStream] ?? 0),
    );
  }

  run(): Promise<Job> {
    const done = new Promise<Job>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.core.on('notification', this.onNotification);
    this.core.on('connected', this.onReconnected);
    this.core.on('disconnected', this.onDisconnected);
    if (this.options.timeoutMs !== undefined)
      this.timers.push(setTimeout(() => this.timedOut(), this.options.timeoutMs));
    this.schedulePoll();
    void this.subscribe(true);
    return done.finally(() => this.cleanup());
  }

  private readonly onNotification = (name: string, params: unknown): void => {
    if (name === 'job.event') {
      const job = params as Job;
      if (job.id === this.id) this.observe(job);
    } else if (name === 'job.log') {
      const log = params as JobLog;
      if (log.id !== this.id) return;
      if (!this.pushed) {
        this.pushed = true;
        this.schedulePoll();
      }
      const cursor = this.cursors.find((c) => c.stream === log.stream);
      if (cursor && !cursor.accept(log.offset, Buffer.from(log.data, 'utf8'))) this.pump();
    }
  };

  /** The next safety-net poll: soon while the core pushes nothing, much later once it does. */
  private schedulePoll(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    if (this.settled) return;
    const ms = this.pushed ? (this.options.safetyPollMs ?? SAFETY_POLL_MS) : (this.options.pollMs ?? POLL_MS);
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      void this.refresh().finally(() => {
        if (!this.pollTimer) this.schedulePoll();
      });
    }, ms);
  }

  private readonly onReconnected = (): void => {
    if (this.warnedLost) note('connection to the core restored');
    this.warnedLost = false;
    void this.subscribe(false);
  };

  private readonly onDisconnected = (): void => {
    // Pushes stop with the connection; the core met on reconnecting may not push at all.
    if (this.pushed) {
      this.pushed = false;
      this.schedulePoll();
    }
    if (this.settled || this.warnedLost) return;
    this.warnedLost = true;
    note('lost the connection to the core; reconnecting');
  };

  /** job.subscribe answers with the job as it is now, so a job that already ended is seen at once. */
  private async subscribe(first: boolean): Promise<void> {
    try {
      // A terminal that prints no output does not make the core tail it.
      this.observe(await this.core.call('job.subscribe', { id: this.id, ...(this.cursors.length ? {} : { logs: false }) }));
      this.pump();
    } catch (error) {
      if (first || this.core.connected) this.fail(error);
    }
  }

  private async refresh(): Promise<void> {
    if (this.settled || !this.core.connected) return;
    try {
      this.observe(await this.core.call('job.get', { id: this.id }));
      this.pump();
    } catch (error) {
      if (this.core.connected) this.fail(error);
    }
  }

  private lastState: string | null = null;

  private observe(job: Job): void {
    if (!this.finalJob && job.state !== this.lastState) {
      this.lastState = job.state;
      if (!isFinal(job.state)) this.options.onPhase?.(job);
    }
    if (this.finalJob || !isFinal(job.state)) return;
    this.finalJob = job;
    if (this.cursors.length === 0) this.finish();
    else this.pump();
  }

  /** Reads logs with job.logs until nothing is left; one read loop at a time, rerun if asked meanwhile. */
  private pump(): void {
    if (this.settled || this.cursors.length === 0) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      try {
        do {
          this.pumpAgain = false;
          const endedBefore = this.finalJob !== null;
          for (const cursor of this.cursors) await cursor.readAvailable(this.core, this.id);
          // The core writes the logs before it reports the final state: a read begun after that saw it all.
          if (endedBefore) return this.finish();
        } while (this.pumpAgain && !this.settled);
      } catch (error) {
        if (this.core.connected) this.fail(error);
      } finally {
        this.pumping = false;
      }
    })();
  }

  private finish(): void {
    if (this.settled || !this.finalJob) return;
    this.settled = true;
    this.resolve(this.finalJob);
  }

  private fail(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(error);
  }

  private timedOut(): void {
    const seconds = Math.round((this.options.timeoutMs ?? 0) / 1000);
    this.fail(new CliError(`job ${this.id} did not end within ${seconds}s`, ExitCode.WaitTimeout));
  }

  private cleanup(): void {
    this.settled = true;
    for (const t of this.timers) clearTimeout(t);
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
    this.core.off('notification', this.onNotification);
    this.core.off('connected', this.onReconnected);
    this.core.off('disconnected', this.onDisconnected);
    if (this.core.connected) this.core.call('job.unsubscribe', { id: this.id }, { timeoutMs: 2000 }).catch(() => undefined);
  }
}

/** Waits until the job is final, printing the chosen log streams meanwhile; returns the final job. */
export function followJob(core: TerminalClient, id: string, options: FollowOptions = {}): Promise<Job> {
  return new JobFollower(core, id, options).run();
}

