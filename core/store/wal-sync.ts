import { closeSync, fdatasync, fdatasyncSync, openSync } from 'node:fs';

/**
 * Makes the store's commits durable off the event loop. The store's connection commits with synchronous=NORMAL:
 * each commit appends its frames to the WAL file and returns without waiting for the disk; this class then
 * fdatasyncs the WAL file in libuv's thread pool and only then lets the commit's writes be acknowledged. One sync
 * at a time covers every commit made before it started; the commits made meanwhile wait for the next. A commit
 * acknowledged is on disk exactly as with synchronous=FULL (whose fsync ran on the event loop, a fifth of a busy
 * core's time), and the loop goes on gathering and committing the next batch while the disk works.
 *
 * Checkpoints stay safe: SQLite syncs the WAL before copying frames into the database file, and the database file
 * after, whatever this class has or has not synced yet; a WAL restarted from its start holds no frame that is not
 * already in the synced database file.
 */
export class WalSync {
  private fd: number | null = null;
  /** What waits for the sync after the one in flight (commits made since it started). */
  private waiting: Array<() => void> = [];
  private inFlight = false;
  private failed: Error | null = null;
  private closing = false;

  constructor(
    private readonly walPath: string,
    /** A sync failed (the disk lost what it was given): nothing more is acknowledged; the owner must stop. */
    private readonly onFailure: (error: Error) => void,
  ) {}

  /** Run `then` once every commit made so far is on disk. */
  after(then: () => void): void {
    if (this.failed) return;
    this.waiting.push(then);
    if (!this.inFlight) this.start();
  }

  /** Make every commit durable now, on this thread, and run what waits (the store is closing). */
  flushSync(): void {
    if (this.failed || this.waiting.length === 0) return;
    const waiting = this.waiting;
    this.waiting = [];
    try {
      fdatasyncSync(this.open());
    } catch (error) {
      return this.fail(error as Error);
    }
    for (const then of waiting) then();
  }

  /** Close the WAL file (once the sync in flight, if any, is done with it). */
  close(): void {
    this.closing = true;
    if (!this.inFlight && this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private start(): void {
    const batch = this.waiting;
    this.waiting = [];
    let fd: number;
    try {
      fd = this.open();
    } catch (error) {
      return this.fail(error as Error);
    }
    this.inFlight = true;
    fdatasync(fd, (error) => {
      this.inFlight = false;
      if (this.closing) this.close();
      if (error) return this.fail(error);
      for (const then of batch) then();
      if (this.waiting.length) this.start();
    });
  }

  /** The WAL file, opened once: SQLite keeps it (its inode) for as long as the store's connection is open. */
  private open(): number {
    this.fd ??= openSync(this.walPath, 'r');
    return this.fd;
  }

  private fail(error: Error): void {
    if (this.failed) return;
    this.failed = error;
    this.waiting = [];
    this.onFailure(error);
  }
}
