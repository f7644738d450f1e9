import type { FileHandle } from 'node:fs/promises';
import { ErrorCode, RpcError } from './errors.js';
import type { RunningHash } from './running-hash.js';
import { FRAME_HEADER_BYTES, FrameType, MAX_FRAME_PAYLOAD, allocFrame, encodeFrame, resetError, resetFrame, sealFrame } from './stream-frames.js';
import type { StreamEndpoint, StreamMux } from './stream-mux.js';

export interface FileSendOptions {
  mux: StreamMux;
  stream: number;
  /** The file to send, open for reading. */
  file: FileHandle;
  /** First byte to send (what the receiver already has). */
  from: number;
  /** The file's size: the stream ends there. */
  size: number;
  window: number;
  /**
   * Put the SHA-256 of the whole file in the END frame: this hash, already fed bytes 0..from (the part the
   * receiver has), is fed the rest as it is sent.
   */
  digest?: RunningHash;
  /** The receiver acknowledged bytes up to here (progress). */
  onAcked?: (acked: number) => void;
  signal?: AbortSignal;
  /**
   * For tests: change a DATA frame as a faulty wire would, after the sender has taken its bytes (the
   * digest is of the file, what arrives is not).
   */
  tamper?: (frame: Buffer, offset: number) => void;
}

export interface FileSendResult {
  /** Bytes sent. */
  sentBytes: number;
}

/**
 * Send `file` from `from` to `size` on a stream, within the receiver's window. Resolves when the receiver
 * answers END (it has everything, verified); rejects with the RpcError of a RESET (Integrity when the
 * receiver found the file's SHA-256 wrong), a closed connection or an abort.
 */
export async function sendFile(o: FileSendOptions): Promise<FileSendResult> {
  const { mux, stream, file, size, window } = o;
  let next = o.from;
  let acked = o.from;
  let endSent = false;
  let accepted = false;
  let failure: Error | null = null;
  let sentBytes = 0;
  let wake: (() => void) | null = null;
  const poke = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const hash = o.digest ?? null;
  /** Bytes fed to the hash: each frame's payload once the socket has written it (its memory may move then). */
  let hashed = o.from;

  const endpoint: StreamEndpoint = {
    onFrame: (frame) => {
      switch (frame.type) {
        case FrameType.Credit:
          if (frame.offset > acked && frame.offset <= size) {
            acked = frame.offset;
            o.onAcked?.(acked);
          }
          break;
        case FrameType.End:
          accepted = true;
          break;
        case FrameType.Reset:
          failure = resetError(frame);
          break;
      }
      poke();
    },
    onClosed: (error) => {
      failure = error;
      poke();
    },
  };
  const onAbort = () => {
    failure = new RpcError(ErrorCode.Conflict, 'transfer aborted');
    mux.sendControl(resetFrame(stream, failure as RpcError));
    poke();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  mux.attach(stream, endpoint);
  const room = (at: number) => Math.min(MAX_FRAME_PAYLOAD, size - at, acked + window - at);
  // Frame buffers the socket has written are read into again. A new 1 MiB buffer per frame made V8 collect
  // garbage for its external memory every few dozen frames (a quarter of the sender's CPU, measured), and
  // fresh memory costs page faults on every first touch. (With a digest, a written frame's memory goes to
  // the hash instead.)
  const spare: Buffer[] = [];
  const frameBuffer = (length: number): Buffer => {
    if (length < MAX_FRAME_PAYLOAD) return allocFrame(length);
    return spare.pop() ?? allocFrame(MAX_FRAME_PAYLOAD);
  };
  // One read ahead: the next block comes off the disk (in the thread pool) while this one is sent.
  let ahead: { at: number; length: number; frame: Buffer; read: Promise<{ bytesRead: number }> } | null = null;
  const readBlock = (at: number, length: number) => {
    const frame = frameBuffer(length);
    const read = file.read(frame, FRAME_HEADER_BYTES, length, at);
    read.catch(() => undefined);
    return { at, length, frame, read };
  };
  try {
    while (!accepted && !failure) {
      if (next < size && next < acked + window && mux.writable) {
        const at = next;
        const block = ahead && ahead.at === at && ahead.length <= room(at) ? ahead : readBlock(at, room(at));
        ahead = null;
        const { length, frame } = block;
        const { bytesRead } = await block.read;
        const following = at + length;
        if (following < size && following < acked + window) ahead = readBlock(following, room(following));
        if (bytesRead !== length) {
          failure = new RpcError(ErrorCode.Integrity, `the file shrank while being sent (${at + bytesRead} of ${size} bytes)`);
          mux.sendControl(resetFrame(stream, failure as RpcError));
          break;
        }
        if (failure || accepted) break;
        sealFrame(frame, FrameType.Data, stream, at);
        const wire = o.tamper ? Buffer.from(frame) : frame;
        o.tamper?.(wire, at);
        mux.sendData(wire, () => {
          if (!hash) {
            if (frame.length === FRAME_HEADER_BYTES + MAX_FRAME_PAYLOAD) spare.push(frame);
            return;
          }
          hash.update(frame.subarray(FRAME_HEADER_BYTES));
          hashed += length;
          if (hashed === size) poke();
        });
        sentBytes += length;
        next = following;
        continue;
      }
      if (next >= size && !endSent && (!hash || hashed === size)) {
        const digest = hash ? Buffer.from(await hash.hex(), 'hex') : undefined;
        if (failure || accepted) break;
        mux.sendControl(encodeFrame(FrameType.End, stream, size, digest));
        endSent = true;
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        if (next < size && next < acked + window && !mux.writable) mux.whenWritable().then(poke);
      });
    }
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    mux.detach(stream, endpoint);
  }
  if (failure) throw failure;
  o.onAcked?.(size);
  return { sentBytes };
}
