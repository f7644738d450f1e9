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
 * Bytes handed to the thread and not decoded yet, over all connections. Each connection waits for its own
 * frame before reading more (peer.ts), so this bounds what many connections sending large frames at once
 * make the process hold; past it a frame is refused as Unavailable, to be sent again later.
 */
const MAX_QUEUED_BYTES = 256 * 1024 * 1024;

/**
 * Move the frame's memory to the thread rather than copy it, when the frame is the whole of its memory: ws
 * hands each large message over in a buffer of its own and keeps no reference to it, and the caller gives
 * the frame up. A frame that shares its memory (a small one cut from a socket read) is copied.
 */
function handOver(worker: Worker, job: FrameJob): void {
  const { frame } = job;
  if (frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength) {
    try {
      worker.postMessage(job, [frame.buffer as ArrayBuffer]);
      return;
    } catch {
      // memory Node will not let go of (its buffer pool): copied below
    }
  }
  const copy = new Uint8Array(frame);
  worker.postMessage({ ...job, frame: copy }, [copy.buffer]);
}

const refusal = (code: number, message: string): Decoded => ({ kind: 'refused', id: null, error: { code, message } });

/**
 * The thread that decodes large frames (frame-worker.ts), started with the first connection that may send
 * them. A frame that would take seconds to parse or validate (300 000 distinct keys, 100 000 bad elements)
 * then costs the event loop next to nothing, and the other connections are served meanwhile. One thread
 * per process, shared by every connection: their number does not grow with the connections, and a crash (a
 * frame that exhausts its memory) fails only the frames in flight; the next frame starts a new thread.
 */
class FrameThread {
  private worker: Worker | null = null;
  private nextSeq = 1;
  private readonly waiting = new Map<number, { resolve: (decoded: Decoded) => void; bytes: number }>();
  private queuedBytes = 0;

  /** Start the thread ahead of the first large frame (its start costs that frame nothing then). */
  prepare(): void {
    if (!this.worker) this.start();
  }

  /** Decode `frame`, which the caller gives up (its memory may move to the thread). */
  decode(frame: Uint8Array, table: string, role: Role): Promise<Decoded> {
    if (this.queuedBytes + frame.length > MAX_QUEUED_BYTES) {
      return Promise.resolve(refusal(ErrorCode.Unavailable, 'too many large messages are waiting to be read; send it again later'));
    }
    const worker = this.worker ?? this.start();
    const seq = this.nextSeq++;
    this.queuedBytes += frame.length;
    return new Promise((resolve) => {
      this.waiting.set(seq, { resolve, bytes: frame.length });
      handOver(worker, { seq, frame, table, role });
    });
  }

  private settle(seq: number, decoded: Decoded): void {
    const waiting = this.waiting.get(seq);
    if (!waiting) return;
    this.waiting.delete(seq);
    this.queuedBytes -= waiting.bytes;
    waiting.resolve(decoded);
  }

  private start(): Worker {
    // A frame that would need more memory than this ends the thread (and fails), not the process.
    const worker = new Worker(new URL('./frame-worker.js', import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: 1024 } });
    // Never what keeps a process alive: it only ever works for a connection that does.
    worker.unref();
    worker.on('message', ({ seq, decoded }: { seq: number; decoded: Decoded }) => this.settle(seq, decoded));
    const lost = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = null;
      for (const seq of [...this.waiting.keys()]) this.settle(seq, refusal(ErrorCode.Internal, `the message could not be decoded (${why})`));
    };
    worker.on('error', (error) => lost(error.message));
    worker.on('exit', (code) => lost(`decoder thread exited with ${code}`));
    this.worker = worker;
    return worker;
  }
}

export const frameThread = new FrameThread();
