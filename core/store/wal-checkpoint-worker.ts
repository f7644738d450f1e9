import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * The worker side of wal-checkpointer.ts: a connection of its own to the store, which copies committed WAL frames
 * into the database file when asked (PASSIVE: never waits for, nor blocks, the core's commits).
 */
const { path, closed } = workerData as { path: string; closed: Int32Array };
const db = new Database(path);
db.pragma('busy_timeout = 5000');
// A checkpoint copies frames from the WAL to the database file without the page cache: it needs none of the
// 16 MiB better-sqlite3 gives each connection, which would only hold memory.
db.pragma('cache_size = -256');
parentPort!.on('message', (message: { id: number } | 'close') => {
  if (message === 'close') {
    db.close();
    // The store waits for this before closing its own connection, so that its close is the last and SQLite
    // checkpoints and removes the WAL as it did before there was a worker.
    Atomics.store(closed, 0, 1);
    Atomics.notify(closed, 0);
    parentPort!.close();
    return;
  }
  try {
    const [result] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    parentPort!.postMessage({ id: message.id, ...result });
  } catch (error) {
    parentPort!.postMessage({ id: message.id, error: (error as Error).message });
  }
});
