import type { TerminalClient } from '../terminal-protocol/client.js';

export type LogStream = 'stdout' | 'stderr';

/** Bytes asked for per job.logs call. */
const READ_BYTES = 1024 * 1024;

export interface ChunkOutcome {
  /** The part not printed yet (null when there is none). */
  fresh: Buffer | null;
  /** The offset printed up to afterwards. */
  next: number;
  /** The chunk starts beyond what was printed: the bytes in between must be read first. */
  gap: boolean;
}

/**
 * Places a chunk of a log (from a job.log notification or a job.logs read) against what was printed so
 * far: repeats are dropped, overlaps trimmed, chunks beyond a gap held back. Offsets count bytes.
 */
export function takeNew(next: number, offset: number, data: Buffer): ChunkOutcome {
  if (offset > next) return { fresh: null, next, gap: true };
  const end = offset + data.length;
  if (end <= next) return { fresh: null, next, gap: false };
  return { fresh: data.subarray(next - offset), next: end, gap: false };
}

/**
 * Where the data of a job.logs answer starts. The request names the offset the data starts at; the
 * answer's `offset` is read as the end of the data (the next offset to ask for) when it says so, else as
 * the start, so either reading of the contract prints each byte once.
 */
export function chunkStart(requested: number, answer: { data: string; offset: number }): number {
  const length = Buffer.byteLength(answer.data, 'utf8');
  return answer.offset === requested + length ? requested : answer.offset;
}

/** Where a log's bytes go: stdout, or anything else that takes them (a buffer for --tail, JSON lines). */
export interface LogSink {
  write(data: Buffer): unknown;
}

/** The last `count` lines of a log's text (a final line without a newline counts as one). */
export function lastLines(text: string, count: number): string {
  if (count <= 0 || text === '') return '';
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  const lines = body.split('\n');
  const kept = lines.slice(Math.max(0, lines.length - count)).join('\n');
  return text.endsWith('\n') ? `${kept}\n` : kept;
}

/** One stream of one job being printed: remembers the offset printed up to. */
export class LogCursor {
  constructor(
    readonly stream: LogStream,
    private readonly out: LogSink,
    /** The offset printed up to (where printing starts). */
    public next = 0,
  ) {}

  /** Prints what is new in a chunk; returns false when the chunk lies beyond a gap (read it instead). */
  accept(offset: number, data: Buffer): boolean {
    const outcome = takeNew(this.next, offset, data);
    if (outcome.fresh) this.out.write(outcome.fresh);
    this.next = outcome.next;
    return !outcome.gap;
  }

  /**
   * Reads and prints with job.logs from `next` until the core has nothing more for now. Returns whether the
   * core said the log is final (the job ended and everything was read).
   */
  async readAvailable(core: TerminalClient, id: string): Promise<boolean> {
    for (;;) {
      const requested = this.next;
      const answer = await core.call('job.logs', { id, stream: this.stream, offset: requested, limit: READ_BYTES });
      const data = Buffer.from(answer.data, 'utf8');
      if (data.length > 0) this.accept(chunkStart(requested, answer), data);
      // Stop at an empty answer; also when nothing new came, rather than asking forever.
      if (data.length === 0 || this.next === requested) return answer.final;
    }
  }
}
