import { Duplex } from 'node:stream';
import { ErrorCode, RpcError } from './errors.js';
import { FORWARD_STREAM_WINDOW, type StreamEndpoint, type StreamMux } from './stream-mux.js';
import { FRAME_HEADER_BYTES, FrameType, MAX_FRAME_PAYLOAD, allocFrame, encodeFrame, payloadIntact, resetError, resetFrame, sealFrame, type StreamFrame } from './stream-frames.js';

/**
 * One forwarded TCP connection as a Node Duplex over the mux. Writing sends DATA frames within the peer's
 * window; the peer's END ends the readable side (a TCP half-close); destroy() sends RESET. Credit is
 * returned as the reader consumes, so a slow TCP socket on either side holds the other back.
 */
export class MuxStream extends Duplex {
  private sent = 0;
  private peerConsumed = 0;
  private received = 0;
  private credited = 0;
  private creditWaiter: (() => void) | null = null;
  private resetByPeer = false;
  private readonly endpoint: StreamEndpoint;

  constructor(
    private readonly mux: StreamMux,
    readonly id: number,
    private readonly window = FORWARD_STREAM_WINDOW,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024, writableHighWaterMark: 256 * 1024 });
    this.endpoint = {
      onFrame: (frame) => this.onFrame(frame),
      onClosed: (error) => this.destroy(error),
    };
    mux.attach(id, this.endpoint);
  }

  private onFrame(frame: StreamFrame): void {
    switch (frame.type) {
      case FrameType.Data:
        if (frame.offset !== this.received || !payloadIntact(frame) || this.received + frame.payload.length > this.credited + this.window) {
          this.fail(new RpcError(ErrorCode.Integrity, `stream ${this.id}: DATA frame out of order, corrupt or beyond the window`));
          return;
        }
        this.received += frame.payload.length;
        // The payload is a view of the WebSocket message, which nothing else writes to: no copy.
        this.push(frame.payload);
        return;
      case FrameType.Credit:
        if (frame.offset > this.peerConsumed) this.peerConsumed = Math.min(frame.offset, this.sent);
        this.creditWaiter?.();
        return;
      case FrameType.End:
        this.push(null);
        return;
      case FrameType.Reset:
        this.resetByPeer = true;
        this.destroy(resetError(frame));
        return;
      default:
        return;
    }
  }

  private fail(error: RpcError): void {
    this.destroy(error);
  }

  override _read(): void {
    // The reader wants more: what was pushed is (nearly) consumed. Credit in quarters of the window: the
    // sender still has three quarters to go on meanwhile, and a sender that waits for credit has sent a
    // whole window, so the threshold is always reached.
    if (this.received - this.credited >= this.window / 4) {
      this.credited = this.received;
      this.mux.sendControl(encodeFrame(FrameType.Credit, this.id, this.credited));
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.sendChunk(chunk).then(() => callback(), callback);
  }

  /** Several chunks waiting (the peer's window or the socket held them back): one frame for all of them. */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.sendChunk(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk))).then(() => callback(), callback);
  }

  private async sendChunk(chunk: Buffer): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      if (this.destroyed) throw new RpcError(ErrorCode.Unavailable, `stream ${this.id} closed`);
      const room = this.peerConsumed + this.window - this.sent;
      if (room <= 0) {
        await new Promise<void>((resolve) => (this.creditWaiter = resolve));
        this.creditWaiter = null;
        continue;
      }
      if (!this.mux.writable) await this.mux.whenWritable();
      const n = Math.min(chunk.length - at, room, MAX_FRAME_PAYLOAD);
      const frame = allocFrame(n);
      chunk.copy(frame, FRAME_HEADER_BYTES, at, at + n);
      this.mux.sendData(sealFrame(frame, FrameType.Data, this.id, this.sent));
      this.sent += n;
      at += n;
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.mux.sendControl(encodeFrame(FrameType.End, this.id, this.sent));
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.creditWaiter?.();
    const finishedCleanly = !error && this.writableFinished && this.readableEnded;
    if (!finishedCleanly && !this.resetByPeer) {
      const reason = error instanceof RpcError ? error : new RpcError(ErrorCode.Unavailable, error?.message ?? 'connection closed');
      this.mux.sendControl(resetFrame(this.id, reason));
    }
    this.mux.detach(this.id, this.endpoint);
    callback(error);
  }
}
