import { ErrorCode, RpcError } from './errors.js';
import type { RunningHash } from './running-hash.js';
import { FrameType, encodeFrame, payloadIntact, resetError, resetFrame, type StreamFrame } from './stream-frames.js';
import type { StreamEndpoint, StreamMux } from './stream-mux.js';

/** Disk writes a file receiver keeps going at once. */
const WRITES_IN_FLIGHT = 4;

/** Where a received file's bytes go. Writes come in order; several may be in flight. */
export interface FileSink {
  write(data: Buffer, offset: number): Promise<void>;
}

export interface FileReceiveOptions {
  mux: StreamMux;
  stream: number;
  sink: FileSink;
  /** The first byte expected (what is already there). */
  from: number;
  size: number;
  window: number;
  /** SHA-256 of bytes 0..from already there, continued with what arrives; the full digest is checked at END. */
  prefix?: RunningHash;
  /** The expected SHA-256 (hex); without it, the one the sender's END carries (if any). */
  expectedSha256?: string;
  /** Bytes written so far (progress). */
  onWritten?: (received: number) => void;
  /** Runs once everything is written and verified, before END tells the sender (close, record, rename). */
  complete?: (sha256: string | null) => Promise<void>;
  /**
   * Runs when the whole file's SHA-256 is not the expected one, before RESET tells the sender: no part of
   * what arrived can be trusted, so the receiver drops it and the next attempt starts from byte 0.
   */
  corrupt?: () => Promise<void>;
  signal?: AbortSignal;
}

export interface FileReceiveResult {
  /** SHA-256 (hex) of the whole file, when a prefix hash was given. */
  sha256: string | null;
}

/**
 * Receive a file stream into `sink`: frames are written in order, credit is returned as bytes reach the
 * sink. At the sender's END the digest is checked and END is answered (acceptance), or RESET with an
 * Integrity error (the sender may send the file again from byte 0).
 */
export function receiveFile(o: FileReceiveOptions): Promise<FileReceiveResult> {
  const { mux, stream, sink, size, window } = o;
  const hash = o.prefix ?? null;
  let expected = o.from;
  let credited = o.from;
  const queue: StreamFrame[] = [];
  let draining = false;
  let settled = false;

  return new Promise<FileReceiveResult>((resolve, reject) => {
    const finish = (error: RpcError | null, result?: FileReceiveResult) => {
      if (settled) return;
      settled = true;
      o.signal?.removeEventListener('abort', onAbort);
      mux.detach(stream, endpoint);
      queue.length = 0;
      if (error) reject(error);
      else resolve(result!);
    };
    const fail = (error: RpcError, tellPeer = true) => {
      if (tellPeer) mux.sendControl(resetFrame(stream, error));
      finish(error);
    };
    const onAbort = () => fail(new RpcError(ErrorCode.Conflict, 'transfer aborted'));

    // Writes of consecutive frames overlap (up to WRITES_IN_FLIGHT); they are committed (hashed, counted,
    // credited) in order as each completes, so a slow disk costs its latency once, not once per frame.
    const writing: { payload: Buffer; length: number; done: Promise<void> }[] = [];
    let written = o.from;
    const commitOldest = async (): Promise<void> => {
      const oldest = writing[0]!;
      await oldest.done;
      writing.shift();
      // Written: nothing here uses the payload again, so the hash may take its memory.
      hash?.update(oldest.payload);
      written += oldest.length;
      o.onWritten?.(written);
      if (written - credited >= window / 4 || written === size) {
        credited = written;
        mux.sendControl(encodeFrame(FrameType.Credit, stream, credited));
      }
    };

    const handle = async (frame: StreamFrame): Promise<void> => {
      if (frame.type === FrameType.Data) {
        if (frame.offset !== expected) throw new RpcError(ErrorCode.Integrity, `stream ${stream}: DATA at ${frame.offset}, expected ${expected}`);
        if (expected + frame.payload.length > size) throw new RpcError(ErrorCode.TooLarge, `stream ${stream}: data past the end (${size} bytes)`);
        if (!payloadIntact(frame)) throw new RpcError(ErrorCode.Integrity, `stream ${stream}: DATA at ${frame.offset} fails its CRC`);
        const length = frame.payload.length;
        const done = sink.write(frame.payload, frame.offset);
        done.catch(() => undefined); // awaited in order by commitOldest
        writing.push({ payload: frame.payload, length, done });
        expected += length;
        while (writing.length >= WRITES_IN_FLIGHT || (writing.length > 0 && queue.length === 0)) await commitOldest();
        return;
      }
      if (frame.type === FrameType.End) {
        if (frame.offset !== size || expected !== size)
          throw new RpcError(ErrorCode.Integrity, `stream ${stream}: sender ended at ${frame.offset} with ${expected} of ${size} bytes received`);
        while (writing.length > 0) await commitOldest();
        const sha256 = hash ? await hash.hex() : null;
        const claimed = o.expectedSha256 ?? (frame.payload.length === 32 ? frame.payload.toString('hex') : null);
        if (sha256 && claimed && sha256 !== claimed) {
          await o.corrupt?.();
          throw new RpcError(ErrorCode.Integrity, `SHA-256 ${sha256} of the received file, expected ${claimed}`);
        }
        await o.complete?.(sha256);
        mux.sendControl(encodeFrame(FrameType.End, stream, size));
        finish(null, { sha256 });
      }
    };

    const drain = async () => {
      if (draining) return;
      draining = true;
      try {
        while (queue.length && !settled) await handle(queue.shift()!);
      } catch (error) {
        fail(error instanceof RpcError ? error : writeFailure(error));
      } finally {
        draining = false;
      }
    };

    const endpoint: StreamEndpoint = {
      onFrame: (frame) => {
        if (settled) return;
        if (frame.type === FrameType.Reset) return fail(resetError(frame), false);
        if (frame.type !== FrameType.Data && frame.type !== FrameType.End) return;
        if (frame.type === FrameType.Data && frame.offset + frame.payload.length > credited + window)
          return fail(new RpcError(ErrorCode.Integrity, `stream ${stream}: the sender overran its window`));
        // The payload is a view into the socket's buffer, which the socket does not reuse: keep it as is.
        queue.push(frame);
        void drain();
      },
      onClosed: (error) => fail(error, false),
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    mux.attach(stream, endpoint);
  });
}

/** A failed write, worded for the person reading it (a full disk is the common case). */
export function writeFailure(error: unknown): RpcError {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new RpcError(ErrorCode.Unavailable, 'no space left on the receiving disk');
  return new RpcError(ErrorCode.Internal, `write failed: ${(error as Error)?.message ?? String(error)}`);
}
