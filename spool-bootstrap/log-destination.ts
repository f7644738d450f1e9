import { closeSync, fstatSync, ftruncateSync, openSync, statSync, writeSync } from 'node:fs';
import { isDiskFull } from './disk-full.js';

/** Lines waiting for the next write, at most: a burst beyond this within one turn of the event loop is dropped. */
const MAX_PENDING_BYTES = 4 * 1024 * 1024;
/** pino's number for `warn`, for the line that reports dropped lines. */
const WARN_LEVEL = 40;

/** Destinations with lines not yet written: whatever is pending is written once more as the process exits. */
const pendingAtExit = new Set<LogDestination>();
process.once('exit', () => {
  for (const destination of pendingAtExit) destination.flushSync();
});

export type LogTarget = { path: string } | { fd: number };

/**
 * Where a logger's JSON lines go (a file, or stderr): a pino destination that never blocks and never throws.
 *
 * Lines are gathered during one turn of the event loop and written with one write at the next. A write the
 * system refuses (a full disk, a closed pipe, anything else) drops those lines and counts them; the next
 * turn's lines are tried again, so writing resumes by itself as soon as there is room, starting with a line
 * that says how many were lost. A write cut short by a full disk is cut back to the last whole line, so the
 * file stays valid JSON lines. Nothing is ever retried in a loop: pino's own file destination (sonic-boom)
 * retries its final synchronous flush for ever on ENOSPC, which froze the daemon on a full disk.
 */
export class LogDestination {
  private fd: number | null = null;
  private pending: string[] = [];
  private pendingBytes = 0;
  private scheduled = false;
  private dropped = 0;
  /** Dropped lines not yet reported in the log itself. */
  private unreported = 0;
  private lastError: string | null = null;
  /** A torn line could not be cut back: the next write starts with a line break, so that its first line stays whole. */
  private torn = false;

  constructor(
    private readonly target: LogTarget,
    /** The logger's name, for the line reporting dropped lines. */
    private readonly name: string,
  ) {
    if ('fd' in target) this.fd = target.fd;
    else {
      this.open();
      // A log that cannot be opened for want of space is waited for; any other reason is a setup error.
      if (this.fd === null && !isDiskFull({ code: this.lastError })) throw new Error(`cannot open the log ${target.path}: ${this.lastError}`);
    }
  }

  /** Lines dropped since the start, for `swm status`. */
  get droppedLines(): number {
    return this.dropped;
  }

  /** pino's stream interface: one call per line. */
  write(line: string): boolean {
    if (this.pendingBytes + line.length > MAX_PENDING_BYTES) {
      this.drop(1);
      return true;
    }
    this.pending.push(line);
    this.pendingBytes += line.length;
    pendingAtExit.add(this);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flushSync());
    }
    return true;
  }

  /** pino's `logger.flush(cb)`: the lines are written (or dropped) before `cb` runs. */
  flush(cb?: (error?: Error) => void): void {
    this.flushSync();
    cb?.();
  }

  /** Write what is pending with one attempt; on failure it is dropped and counted. Never waits, never throws. */
  flushSync(): void {
    this.scheduled = false;
    pendingAtExit.delete(this);
    const lines = this.pending;
    if (!lines.length) return;
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.ready()) return this.drop(lines.length);

    const report = this.unreported;
    const text = (this.torn ? '\n' : '') + (report ? this.droppedReport(report) : '') + lines.join('');
    const data = Buffer.from(text);
    let written = 0;
    try {
      while (written < data.length) {
        const n = writeSync(this.fd!, data, written, data.length - written);
        if (n <= 0) throw Object.assign(new Error('nothing written'), { code: 'ENOSPC' });
        written += n;
      }
    } catch (error) {
      this.failed(error, written);
      return this.drop(lines.length);
    }
    this.unreported -= report;
    this.lastError = null;
    this.torn = false;
  }

  end(): void {
    this.flushSync();
    if ('path' in this.target && this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private drop(lines: number): void {
    this.dropped += lines;
    this.unreported += lines;
  }

  private failed(error: unknown, written: number): void {
    this.lastError = (error as NodeJS.ErrnoException)?.code ?? String(error);
    if (written > 0 && 'path' in this.target && this.fd !== null) {
      // A torn line would make the file unreadable as JSON lines: cut the part of this write that landed.
      try {
        ftruncateSync(this.fd, Math.max(0, fstatSync(this.fd).size - written));
      } catch {
        this.torn = true;
      }
    }
  }

  /**
   * Whether there is a descriptor to write to. A file is (re)opened when it was never opened, or when after a
   * failure its path no longer leads to it: an operator freeing space by deleting the log must get a new file,
   * or the space of the deleted one would stay held by this process.
   */
  private ready(): boolean {
    if (!('path' in this.target)) return this.fd !== null;
    if (this.fd !== null && this.lastError !== null && !this.samePathAndDescriptor()) {
      try {
        closeSync(this.fd);
      } catch {
        /* already unusable */
      }
      this.fd = null;
    }
    if (this.fd === null) this.open();
    return this.fd !== null;
  }

  private samePathAndDescriptor(): boolean {
    try {
      return statSync((this.target as { path: string }).path).ino === fstatSync(this.fd!).ino;
    } catch {
      return false;
    }
  }

  private open(): void {
    try {
      this.fd = openSync((this.target as { path: string }).path, 'a', 0o600);
    } catch (error) {
      this.fd = null;
      this.lastError = (error as NodeJS.ErrnoException)?.code ?? String(error);
    }
  }

  private droppedReport(lines: number): string {
    const reason = this.lastError ? ` (${this.lastError})` : '';
    return (
      JSON.stringify({
        level: WARN_LEVEL,
        time: Date.now(),
        pid: process.pid,
        name: this.name,
        droppedLines: lines,
        msg: `${lines} log lines were dropped: the log could not be written${reason}`,
      }) + '\n'
    );
  }
}
