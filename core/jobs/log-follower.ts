import { isUtf8 } from 'node:buffer';
import type { Logger } from 'pino';
import type { ClientChannel } from 'ssh2';
import { nodeAgent, type NodeAgent } from '../nodes/node-agent-client.js';
import { shellQuote, type NodeSession } from '../nodes/node-session.js';
import type { CoreServices } from '../services.js';
import type { JobRecord } from '../store/job-record.js';
import { logFileName, wholeCharacters } from './job-logs.js';
import { nodeJobDir } from './node-layout.js';

export type LogStreamName = 'stdout' | 'stderr';

/** What a `job.log` notification carries: `data` are the bytes of the log from `offset` on (whole UTF-8 characters). */
export interface LogPush {
  id: string;
  stream: LogStreamName;
  offset: number;
  data: string;
}

/**
 * Someone following a job's logs (a terminal session). `push` must not queue without bound: a subscriber
 * that cannot take a piece now drops it, and its terminal reads the gap with job.logs (offsets say where).
 */
export interface LogSubscriber {
  push(log: LogPush): void;
}

/**
 * A subscriber that sends pushes with `send` while `queued()` (bytes waiting on its socket) is at most
 * `maxQueued`, and drops them otherwise. What it dropped is announced once the socket has room again, by an
 * empty push at the end of the dropped bytes, so its terminal reads them even if the job writes nothing more.
 */
export function droppingSubscriber(send: (log: LogPush) => void, queued: () => number, maxQueued: number): LogSubscriber & { close(): void } {
  const dropped = new Map<string, LogPush>();
  let timer: NodeJS.Timeout | null = null;
  const flush = () => {
    timer = null;
    if (queued() > maxQueued) return void (timer = setTimeout(flush, 250));
    for (const marker of dropped.values()) send(marker);
    dropped.clear();
  };
  return {
    push(log) {
      const key = `${log.id}/${log.stream}`;
      if (!dropped.has(key) && queued() <= maxQueued) return send(log);
      const end = log.offset + Buffer.byteLength(log.data, 'utf8');
      dropped.set(key, { id: log.id, stream: log.stream, offset: Math.max(end, dropped.get(key)?.offset ?? 0), data: '' });
      timer ??= setTimeout(flush, 250);
    },
    close() {
      if (timer) clearTimeout(timer);
      timer = null;
      dropped.clear();
    },
  };
}

/** Bytes one job's tail may deliver per second; beyond that it is stopped and started again from the end. */
const MAX_BYTES_PER_SECOND = 2 * 1024 * 1024;
/** How long a tail that delivered too much rests before it starts again (terminals catch up with job.logs). */
const COOL_DOWN_MS = 1000;
/** Delays before starting a tail again after it ended on its own (connection lost, node busy...). */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;
/** What arrives on stderr before the header on stdout is held; more than this and the tail starts again. */
const MAX_EARLY_BYTES = 256 * 1024;

/** A job's log file on its node, relative to the node user's home. */
const logPath = (job: JobRecord, stream: LogStreamName): string => `${nodeJobDir(job.id)}/${logFileName(job, stream)}`;

/**
 * The node-side program (for a node without the agent): prints the current sizes of stdout and stderr ("<out> <err>\n"), then follows both
 * files from exactly there, stdout's on the channel's stdout and stderr's on the channel's stderr. GNU tail
 * follows by inotify (polling every 0.1 s where it cannot; other tails keep their default), but only a file
 * that exists when it starts: each tail waits for its file (the runner creates it as the job starts). It runs until
 * the channel closes: `cat` then sees the end of its input and kills both tails, so nothing is left behind
 * when the core stops following, closes the connection or dies.
 */
export function tailCommand(job: JobRecord): string {
  const file = (stream: LogStreamName) => shellQuote(logPath(job, stream));
  const out = file('stdout');
  const err = file('stderr');
  return `exec 3>&2 2>/dev/null
S='-s 0.1'; tail -s 0.1 -c 1 /dev/null >/dev/null || S=
o=$(wc -c < ${out}) || o=0
e=$(wc -c < ${err}) || e=0
echo $o $e
(while [ ! -e ${out} ]; do sleep 0.1; done; exec tail -c +$((o+1)) $S -F -- ${out}) & a=$!
(while [ ! -e ${err} ]; do sleep 0.1; done; exec tail -c +$((e+1)) $S -F -- ${err} >&3) & b=$!
exec 3>&-
cat >/dev/null
kill $a $b`;
}

/** Following that runs, as the tail can end it. */
interface TailSource {
  close(): void;
}

const STREAMS: readonly LogStreamName[] = ['stdout', 'stderr'];

/**
 * One running job's stdout and stderr followed on its head node: by the node's agent (its `follow`: no process on
 * the node), else by one `tail` per stream on one SSH channel. Each piece is handed to `emit` with its exact byte
 * offset. Started again after the agent or the channel is lost, and after a rest when the job writes faster than
 * terminals should be sent; stopped by `stop()`.
 */
class JobLogTail {
  private stopped = false;
  private source: TailSource | null = null;
  private timer: NodeJS.Timeout | null = null;
  private retryMs = RETRY_MIN_MS;
  /** Per stream: the offset of the next byte to arrive, and the start of a character cut in two. */
  private next: Record<LogStreamName, number> | null = null;
  private held: Record<LogStreamName, Buffer> = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  private windowStart = 0;
  private windowBytes = 0;

  constructor(
    private readonly services: CoreServices,
    readonly job: JobRecord,
    private readonly emit: (log: LogPush) => void,
    private readonly log: Logger,
  ) {
    void this.open();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.close();
  }

  private close(): void {
    const source = this.source;
    this.source = null;
    source?.close();
  }

  private later(ms: number): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.open();
    }, ms);
    this.timer.unref?.();
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    let session: NodeSession;
    let agent: NodeAgent | null;
    try {
      // No abort signal: the session is the job's own, shared with its run step.
      session = await this.services.nodes.head(this.job.partitionName!);
      agent = await nodeAgent(session);
    } catch (error) {
      this.log.debug({ err: (error as Error).message }, 'cannot follow the logs yet');
      this.retry();
      return;
    }
    if (this.stopped) return;
    this.next = null;
    this.held = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
    if (agent) this.followByAgent(agent);
    else await this.followByTail(session);
  }

  /** Following starts at these sizes: told at once, so a terminal that has not read that far reads the gap now. */
  private startAt(sizes: Record<LogStreamName, number>): void {
    this.next = sizes;
    // The job wrote while the tail rested or was being started again: the terminal reads that with job.logs rather
    // than at its next push or poll.
    for (const stream of STREAMS) if (sizes[stream] > 0) this.emit({ id: this.job.id, stream, offset: sizes[stream], data: '' });
  }

  private followByAgent(agent: NodeAgent): void {
    const source: TailSource = { close: () => follow.stop() };
    const follow = agent.follow(
      STREAMS.map((stream) => logPath(this.job, stream)),
      (offsets) => {
        if (this.source === source) this.startAt({ stdout: offsets[0] ?? 0, stderr: offsets[1] ?? 0 });
      },
      (stream, _offset, data) => {
        if (this.source === source && this.next && STREAMS[stream]) this.deliver(STREAMS[stream], data);
      },
    );
    this.source = source;
    const ended = () => {
      if (this.source !== source) return;
      this.source = null;
      this.retry();
    };
    follow.ended.then(ended, (error: Error) => {
      this.log.debug({ err: error.message }, 'the agent stopped following the logs');
      ended();
    });
  }

  private async followByTail(session: NodeSession): Promise<void> {
    let channel: ClientChannel;
    try {
      channel = await session.openExec(tailCommand(this.job));
    } catch (error) {
      this.log.debug({ err: (error as Error).message }, 'cannot follow the logs yet');
      this.retry();
      return;
    }
    if (this.stopped) {
      channel.close();
      return;
    }
    const source: TailSource = { close: () => channel.close() };
    this.source = source;
    let header = Buffer.alloc(0);
    let early: Buffer[] = [];
    let earlyBytes = 0;
    channel.on('data', (chunk: Buffer) => {
      if (this.source !== source) return;
      if (this.next) return this.deliver('stdout', chunk);
      header = Buffer.concat([header, chunk]);
      const newline = header.indexOf(0x0a);
      if (newline < 0) {
        if (header.length > 64) this.restart('no header');
        return;
      }
      const sizes = header.subarray(0, newline).toString('latin1').trim().split(/\s+/).map(Number);
      if (sizes.length !== 2 || !sizes.every((n) => Number.isSafeInteger(n) && n >= 0)) return this.restart('bad header');
      this.startAt({ stdout: sizes[0]!, stderr: sizes[1]! });
      const rest = header.subarray(newline + 1);
      if (rest.length) this.deliver('stdout', rest);
      for (const piece of early) this.deliver('stderr', piece);
      early = [];
    });
    channel.stderr.on('data', (chunk: Buffer) => {
      if (this.source !== source) return;
      if (this.next) return this.deliver('stderr', chunk);
      early.push(chunk);
      earlyBytes += chunk.length;
      if (earlyBytes > MAX_EARLY_BYTES) this.restart('stderr ahead of the header');
    });
    channel.on('error', () => undefined);
    channel.on('close', () => {
      if (this.source !== source) return;
      this.source = null;
      this.retry();
    });
  }

  private retry(): void {
    const delay = this.retryMs;
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    this.later(delay);
  }

  private restart(reason: string, ms = RETRY_MIN_MS): void {
    this.log.debug({ reason }, 'log tail restarted');
    this.close();
    this.later(ms);
  }

  /** Places a piece of a stream at its offset; keeps back a character cut at its end until the rest comes. */
  private deliver(stream: LogStreamName, chunk: Buffer): void {
    const next = this.next!;
    const pending = this.held[stream].length ? Buffer.concat([this.held[stream], chunk]) : chunk;
    const whole = wholeCharacters(pending);
    this.held[stream] = Buffer.from(pending.subarray(whole.length));
    if (whole.length === 0) return;
    const offset = next[stream];
    next[stream] = offset + whole.length;
    this.retryMs = RETRY_MIN_MS;
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.windowBytes = 0;
    }
    this.windowBytes += whole.length;
    if (this.windowBytes > MAX_BYTES_PER_SECOND) {
      // Terminals read what they miss with job.logs; following resumes from the end after a rest.
      this.restart('writing faster than followed logs are sent', COOL_DOWN_MS);
      return;
    }
    // Not text: not pushed (a push must re-encode to the same bytes for its offsets to hold); job.logs has it.
    if (!isUtf8(whole)) return;
    this.emit({ id: this.job.id, stream, offset, data: whole.toString('utf8') });
  }
}

/** A job some terminals follow: its subscribers, and its tail while it runs. */
class FollowedJob {
  readonly subscribers = new Set<LogSubscriber>();
  private tail: JobLogTail | null = null;
  private readonly onJob = (job: JobRecord) => this.update(job);

  constructor(
    private readonly services: CoreServices,
    private readonly id: string,
    private readonly log: Logger,
  ) {
    services.bus.on(`job:${id}`, this.onJob);
  }

  /** Tails the job's logs exactly while it is at step `run` on a partition. */
  update(job: JobRecord | null | undefined): void {
    const wanted = !!job && job.step === 'run' && !!job.partitionName;
    if (this.tail && (!wanted || this.tail.job.partitionName !== job!.partitionName)) {
      this.tail.stop();
      this.tail = null;
    }
    if (wanted && !this.tail) this.tail = new JobLogTail(this.services, job!, (log) => this.push(log), this.log);
  }

  private push(log: LogPush): void {
    for (const subscriber of this.subscribers) {
      try {
        subscriber.push(log);
      } catch (error) {
        this.log.debug({ err: (error as Error).message }, 'a log subscriber failed');
      }
    }
  }

  close(): void {
    this.services.bus.off(`job:${this.id}`, this.onJob);
    this.tail?.stop();
    this.tail = null;
  }
}

/**
 * Pushes the output of running jobs to the terminals that follow them (`job.log` notifications): one tail
 * per job and stream, shared by every subscriber, started when the first subscribes (or when the job starts
 * running) and stopped when the last leaves or the job leaves `run`. Nothing is buffered for a subscriber:
 * pieces it cannot take are dropped, and the terminal reads them with job.logs (the offsets show the gap).
 */
export class LogFollowers {
  private readonly followed = new Map<string, FollowedJob>();
  private closed = false;
  private readonly log: Logger;

  constructor(private readonly services: CoreServices) {
    this.log = services.logger.child({ component: 'log-follower' });
  }

  /** Follow a job's logs; returns the function that stops following (idempotent). */
  follow(jobId: string, subscriber: LogSubscriber): () => void {
    if (this.closed) return () => undefined;
    let job = this.followed.get(jobId);
    if (!job) {
      job = new FollowedJob(this.services, jobId, this.log.child({ job: jobId }));
      this.followed.set(jobId, job);
    }
    job.subscribers.add(subscriber);
    job.update(this.services.store.get(jobId));
    const followed = job;
    return () => {
      if (!followed.subscribers.delete(subscriber) || followed.subscribers.size > 0) return;
      followed.close();
      if (this.followed.get(jobId) === followed) this.followed.delete(jobId);
    };
  }

  /** How many jobs are followed now (for tests and status). */
  get size(): number {
    return this.followed.size;
  }

  close(): void {
    this.closed = true;
    for (const job of this.followed.values()) job.close();
    this.followed.clear();
  }
}
