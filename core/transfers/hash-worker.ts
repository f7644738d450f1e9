import { Worker } from 'node:worker_threads';
import { FRAME_HEADER_BYTES, type RunningHash } from '../../terminal-protocol/streams.js';

/**
 * SHA-256 of streamed files in a worker thread (one per core, made by the composition root, stopped with it). Hashing costs about as much CPU as receiving the bytes
 * (TLS, WebSocket framing, disk); done on the core's event loop it would halve the rate of a transfer
 * on a machine with a second core idle. Each hash is fed in order by messages; the worker keeps one
 * running hash per id. A prefix already on disk (a resumed upload, a download from an offset) is read and
 * hashed by the worker itself.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const hashes = new Map();
const of = (id) => { let h = hashes.get(id); if (!h) hashes.set(id, (h = createHash('sha256'))); return h; };
parentPort.on('message', (m) => {
  try {
    if (m.type === 'update') of(m.id).update(new Uint8Array(m.data, m.offset, m.length));
    else if (m.type === 'prefix') {
      const h = of(m.id);
      if (m.length > 0) {
        const fd = openSync(m.path, 'r');
        try {
          const buffer = Buffer.allocUnsafe(Math.min(4 << 20, m.length));
          for (let at = 0; at < m.length; ) {
            const n = readSync(fd, buffer, 0, Math.min(buffer.length, m.length - at), at);
            if (n === 0) throw new Error('file shrank: ' + at + ' of ' + m.length + ' bytes left');
            h.update(buffer.subarray(0, n));
            at += n;
          }
        } finally { closeSync(fd); }
      }
    } else if (m.type === 'digest') {
      const h = of(m.id);
      hashes.delete(m.id);
      parentPort.postMessage({ id: m.id, hex: h.digest('hex') });
    } else if (m.type === 'drop') hashes.delete(m.id);
  } catch (error) {
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, error: String(error && error.message || error) });
  }
});
`;

type Waiter = { resolve: (hex: string) => void; reject: (error: Error) => void };

export class HashWorker {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiter>();
  /** Hashes whose prefix failed: their digest rejects. */
  private readonly failed = new Map<number, string>();

  private theWorker(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.unref();
    w.on('message', (m: { id: number; hex?: string; error?: string }) => {
      const waiter = this.waiting.get(m.id);
      if (m.error !== undefined && !waiter) {
        this.failed.set(m.id, m.error);
        return;
      }
      this.waiting.delete(m.id);
      if (m.error !== undefined) waiter?.reject(new Error(m.error));
      else waiter?.resolve(m.hex!);
    });
    w.on('error', (error) => {
      for (const waiter of this.waiting.values()) waiter.reject(error);
      this.waiting.clear();
      this.worker = null;
    });
    w.on('exit', () => {
      if (this.worker === w) this.worker = null;
    });
    this.worker = w;
    return w;
  }

  /**
   * A RunningHash computed by the worker, starting with the first `prefixBytes` bytes of the file at
   * `path` (read by the worker). Each update copies its bytes once, to hand them over.
   */
  hash(prefix?: { path: string; bytes: number }): RunningHash & { drop(): void } {
    const id = this.nextId++;
    const w = this.theWorker();
    if (prefix && prefix.bytes > 0) w.postMessage({ type: 'prefix', id, path: prefix.path, length: prefix.bytes });
    let done = false;
    return {
      update: (data) => {
        // The payload of a binary frame in memory of its own (a WebSocket message assembled from several
        // reads: exactly header + payload) is handed over as it is. Anything else may share its memory with
        // other frames, and is copied.
        const own = data.byteOffset === FRAME_HEADER_BYTES && data.buffer.byteLength === FRAME_HEADER_BYTES + data.length && data.buffer instanceof ArrayBuffer;
        const memory = own ? (data.buffer as ArrayBuffer) : new Uint8Array(data).buffer;
        const offset = own ? data.byteOffset : 0;
        w.postMessage({ type: 'update', id, data: memory, offset, length: data.length }, [memory]);
      },
      hex: () => {
        done = true;
        const error = this.failed.get(id);
        if (error) {
          this.failed.delete(id);
          return Promise.reject(new Error(error));
        }
        return new Promise((resolve, reject) => {
          this.waiting.set(id, { resolve, reject });
          w.postMessage({ type: 'digest', id });
        });
      },
      drop: () => {
        if (!done) w.postMessage({ type: 'drop', id });
        done = true;
      },
    };
  }

  /** Stop the worker; hashes not answered yet are refused. */
  async stop(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    for (const waiter of this.waiting.values()) waiter.reject(new Error('the core is stopping'));
    this.waiting.clear();
    await w?.terminate();
  }
}
