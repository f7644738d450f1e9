import { StringDecoder } from 'node:string_decoder';
import { isFinal, type Job } from '../../terminal-protocol/job.js';
import { LogCursor, chunkStart, type LogSink, type LogStream } from '../log-stream.js';
import type { JobLog, JobSubscriptions, JobWatcher } from './job-subscriptions.js';
import type { ReadOnlyCore } from './read-only-core.js';

/** What a browser watching a job's log is sent. `next`: the byte offset of the stream after this text. */
export type LogViewerEvent =
  | { type: 'job'; job: Job }
  | { type: 'log'; stream: LogStream; text: string; next: number }
  | { type: 'end'; job: Job }
  /** `fatal`: the view is over (the job cannot be watched); else it goes on and may recover. */
  | { type: 'problem'; message: string; fatal?: boolean };

const STREAMS: readonly LogStream[] = ['stdout', 'stderr'];
/** How often to look again while the core pushes nothing (a missed push, a core that does not push). */
const SAFETY_POLL_MS = 5000;
/** Bytes asked for per job.logs call. */
const READ_BYTES = 1024 * 1024;

/**
 * LogCursor.readAvailable's loop, on the read-only connection: reads from the cursor's offset until the core
 * has nothing more for now.
 */
async function readAvailable(core: ReadOnlyCore, id: string, cursor: LogCursor): Promise<void> {
  for (;;) {
    const requested = cursor.next;
    const answer = await core.call('job.logs', { id, stream: cursor.stream, offset: requested, limit: READ_BYTES });
    const data = Buffer.from(answer.data, 'utf8');
    if (data.length > 0) cursor.accept(chunkStart(requested, answer), data);
    if (data.length === 0 || cursor.next === requested) return;
  }
}

/** Text for the browser, never a character cut in two; counts the bytes passed on. */
class TextSink implements LogSink {
  private readonly decoder = new StringDecoder('utf8');
  constructor(
    private readonly stream: LogStream,
    public next: number,
    private readonly send: (event: LogViewerEvent) => void,
  ) {}
  write(data: Buffer): void {
    this.next += data.length;
    const text = this.decoder.write(data);
    if (text) this.send({ type: 'log', stream: this.stream, text, next: this.next });
  }
}

/**
 * One browser's view of one job's output: stdout and stderr from the given offsets, as the core pushes it
 * (job.log) with reads (job.logs) for what came before and for any gap, then `end` once the job has ended
 * and its logs are read to the end. Each byte is sent once.
 */
export class JobLogViewer implements JobWatcher {
  private readonly cursors: LogCursor[];
  private finalJob: Job | null = null;
  private pumping = false;
  private pumpAgain = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly core: ReadOnlyCore,
    private readonly subscriptions: JobSubscriptions,
    private readonly id: string,
    from: Partial<Record<LogStream, number>>,
    private readonly send: (event: LogViewerEvent) => void,
  ) {
    this.cursors = STREAMS.map((stream) => {
      const start = from[stream] ?? 0;
      return new LogCursor(stream, new TextSink(stream, start, send), start);
    });
  }

  /** Rejects when the job cannot be watched (no such job of this user's, the core unreachable). */
  async start(): Promise<void> {
    const job = await this.subscriptions.watch(this.id, this);
    if (this.stopped) return;
    this.event(job);
    this.pump();
    this.schedulePoll();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.subscriptions.unwatch(this.id, this);
  }

  event(job: Job): void {
    if (this.stopped || this.finalJob) return;
    this.send({ type: 'job', job });
    if (isFinal(job.state)) {
      this.finalJob = job;
      this.pump();
    }
  }

  log(piece: JobLog): void {
    if (this.stopped) return;
    const cursor = this.cursors.find((c) => c.stream === piece.stream);
    if (cursor && !cursor.accept(piece.offset, Buffer.from(piece.data, 'utf8'))) this.pump();
  }

  reconnected(): void {
    this.pump();
  }

  private schedulePoll(): void {
    this.timer = setTimeout(() => {
      if (this.stopped) return;
      this.core.call('job.get', { id: this.id }).then(
        (job) => this.event(job),
        () => undefined,
      );
      this.pump();
      this.schedulePoll();
    }, SAFETY_POLL_MS);
  }

  /** Reads with job.logs until the core has nothing more; one read loop at a time, rerun when asked meanwhile. */
  private pump(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      try {
        do {
          this.pumpAgain = false;
          const ended = this.finalJob;
          for (const cursor of this.cursors) {
            if (this.stopped) return;
            await readAvailable(this.core, this.id, cursor);
          }
          // The core writes the logs before it reports the final state: a read begun after that saw it all.
          if (ended && !this.stopped) {
            this.send({ type: 'end', job: ended });
            this.stop();
            return;
          }
        } while (this.pumpAgain && !this.stopped);
      } catch (error) {
        // While the connection is down, the reconnection reads again; anything else is worth showing.
        if (this.core.connected && !this.stopped) this.send({ type: 'problem', message: (error as Error).message });
      } finally {
        this.pumping = false;
      }
    })();
  }
}
