import { Worker } from 'node:worker_threads';
import type { Role } from './common.js';
import { ErrorCode } from './errors.js';
import type { Decoded } from './frame-decoder.js';
import type { FrameJob } from './frame-worker.js';

/**
 * Frames up to this size are decoded on the event loop: whatever their shape, that costs at most a few
 * milliseconds. Larger ones go to the decoder thread.
 */
export const INLINE_FRAME_BYTES = 16 * 1024;

/**
 * The thread that decodes large frames (frame-worker.ts), started with the first one. A frame that would
 * take seconds to parse or validate (10 MB of nesting, 100 000 bad elements) then costs the event loop a
 * copy of its bytes, and the other connections are served meanwhile. One thread per process, shared by
 * every connection: their number does not grow with the connections, and a crash (a frame that exhausts
 * its memory) fails only the frames in flight; the next frame starts a new thread.
 */
class FrameThread {
  private worker: Worker | null = null;
  private nextSeq = 1;
  private readonly waiting = new Map<number, (decoded: Decoded) => void>();

  decode(frame: Uint8Array, table: string, role: Role): Promise<Decoded> {
    const worker = this.worker ?? this.start();
    const seq = this.nextSeq++;
    // A copy the thread owns: the socket's buffers stay ours, and the copy moves without a second one.
    const copy = new Uint8Array(frame);
    return new Promise((resolve) => {
      this.waiting.set(seq, resolve);
      worker.postMessage({ seq, frame: copy, table, role } satisfies FrameJob, [copy.buffer]);
    });
  }

  private start(): Worker {
    const worker = new Worker(new URL('./frame-worker.js', import.meta.url));
    // Never what keeps a process alive: it only ever works for a connection that does.
    worker.unref();
    worker.on('message', ({ seq, decoded }: { seq: number; decoded: Decoded }) => {
      const resolve = this.waiting.get(seq);
      this.waiting.delete(seq);
      resolve?.(decoded);
    });
    const lost = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = null;
      for (const resolve of this.waiting.values()) {
        resolve({ kind: 'refused', id: null, error: { code: ErrorCode.Internal, message: `the message could not be decoded (${why})` } });
      }
      this.waiting.clear();
    };
    worker.on('error', (error) => lost(error.message));
    worker.on('exit', (code) => lost(`decoder thread exited with ${code}`));
    this.worker = worker;
    return worker;
  }
}

export const frameThread = new FrameThread();
