import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import type { Role } from './common.js';
import { ErrorCode } from './errors.js';
import { decodeFrame, type Decoded } from './frame-decoder.js';
import { methodTables } from './method-tables.js';

/** One frame to decode, as frame-thread.ts sends it. */
export interface FrameJob {
  seq: number;
  frame: Uint8Array;
  table: string;
  role: Role;
}

/**
 * A lower scheduling priority for this thread alone, so that on a busy machine the event loop gets a core
 * first. Not the lowest: under load that starves the thread, and a large job script waits seconds to be
 * read. Linux names the thread in /proc/thread-self and applies a thread id's priority to that thread only;
 * elsewhere the thread keeps the process's priority.
 */
const DECODER_NICENESS = 10;

function yieldToTheEventLoop(): void {
  try {
    setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), DECODER_NICENESS);
  } catch {
    // not Linux: nothing to do
  }
}

yieldToTheEventLoop();

/** The decoder thread: whatever a frame costs to parse and check, it costs here and not on the event loop. */
parentPort!.on('message', ({ seq, frame, table, role }: FrameJob) => {
  let decoded: Decoded;
  try {
    decoded = decodeFrame(frame, { serves: { methods: methodTables[table]!, role } });
  } catch (error) {
    decoded = { kind: 'refused', id: null, error: { code: ErrorCode.Internal, message: `cannot decode the message: ${(error as Error).message}` } };
  }
  try {
    parentPort!.postMessage({ seq, decoded });
  } catch (error) {
    // A schema's output that cannot be cloned is our bug, not the caller's: say so rather than lose the frame.
    const id = decoded.kind === 'request' ? decoded.id : null;
    const message = `cannot hand the message over: ${(error as Error).message}`;
    parentPort!.postMessage({ seq, decoded: { kind: 'refused', id, error: { code: ErrorCode.Internal, message } } });
  }
});
