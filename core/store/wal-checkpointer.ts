import { Worker } from 'node:worker_threads';

/** What a checkpoint did: frames in the WAL, and how many of them are now in the database file. */
export interface CheckpointResult {
  log: number;
  checkpointed: number;
}

/** How long stop() waits for the worker to close its connection. */
const CLOSE_WAIT_MS = 5_000;
/** The least time between two checkpoints the commits ask for. */
const EVERY_MS = 100;

/**
 * Checkpoints of the store's WAL in a worker thread, so that the commits on the event loop only append to the WAL
 * and fsync it (what makes them durable), and never also copy pages into the database file and fsync that (what
 * SQLite's automatic checkpoint does inside the commit that crosses 1,000 pages: a commit of tens of ms more). The
 * store turns the automatic checkpoint off while this runs, and back on if the worker fails.
 *
 *   commit (event loop) ──► WAL ──► checkpoint (worker, PASSIVE: beside the commits, never blocking them) ──► db file
 *
 * SQLite starts the WAL over only when a write begins after a checkpoint that copied every frame; under a steady
 * stream of commits the worker's checkpoints never quite catch up, so when the WAL has grown past a bound the store
 * finishes one on its own connection, between two commits: it copies only the frames the worker had not reached.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (r: CheckpointResult) => void; reject: (e: Error) => void }>();
  private inFlight = false;
  private lastAt = 0;
  private stopped = false;
  /** Set to 1 by the worker once its connection is closed. */
  private readonly closed = new Int32Array(new SharedArrayBuffer(4));

  /**
   * @param checkpointed told what each checkpoint did (the store finishes one that commits outran: see below)
   * @param failed called once if the worker cannot go on (the store then checkpoints by itself again)
   */
  constructor(path: string, checkpointed: (result: CheckpointResult) => void, failed: (error: Error) => void) {
    this.worker = new Worker(new URL('./wal-checkpoint-worker.js', import.meta.url), { workerData: { path, closed: this.closed } });
    this.worker.unref();
    this.worker.on('message', (m: { id: number; error?: string } & CheckpointResult) => {
      const waiter = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      this.inFlight = false;
      if (m.error) return waiter?.reject(new Error(m.error));
      const result = { log: m.log, checkpointed: m.checkpointed };
      checkpointed(result);
      waiter?.resolve(result);
    });
    const fail = (error: Error) => {
      if (this.stopped) return;
      this.stopped = true;
      for (const w of this.waiting.values()) w.reject(error);
      this.waiting.clear();
      failed(error);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the WAL checkpoint worker exited with ${code}`)));
  }

  /** A commit was made: checkpoint soon (one at a time, at most every EVERY_MS). */
  committed(): void {
    if (this.stopped || this.inFlight || performance.now() - this.lastAt < EVERY_MS) return;
    this.checkpoint().catch(() => {
      /* a failed checkpoint leaves the frames in the WAL for the next one */
    });
  }

  /** Checkpoint now (after the one in flight, if any). */
  checkpoint(): Promise<CheckpointResult> {
    if (this.stopped) return Promise.reject(new Error('the WAL checkpointer is stopped'));
    this.inFlight = true;
    this.lastAt = performance.now();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id });
    });
  }

  /**
   * Close the worker's connection, waiting (at most CLOSE_WAIT_MS: a checkpoint in progress finishes first) so that
   * the store's own close comes last: SQLite then checkpoints what is left and removes the WAL, as without a worker.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.worker.postMessage('close');
    Atomics.wait(this.closed, 0, 0, CLOSE_WAIT_MS);
  }
}
