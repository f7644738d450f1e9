import { ErrorCode, RpcError } from './errors.js';
import { FrameType, StreamFrameError, decodeFrame, resetFrame, type StreamFrame } from './stream-frames.js';

/**
 * Flow control of the bulk streams of one connection (frames in stream-frames.ts). Two levels of
 * backpressure: per stream, the receiver's CREDIT frames bound what a sender may have in flight to its
 * window; per connection, the mux counts the bytes handed to the socket and not yet written, and senders
 * wait while they exceed `maxQueuedBytes`. Neither side ever holds more than a window per stream.
 */

/** Default windows: files want a deep pipe, forwarded connections a fair share of one socket. */
export const FILE_STREAM_WINDOW = 8 * 1024 * 1024;
export const FORWARD_STREAM_WINDOW = 4 * 1024 * 1024;

/** What a stream needs of the connection: send binary messages (with a callback once written) and hear them. */
export interface FrameTransport {
  sendBinary(data: Buffer, callback?: (error?: Error) => void): void;
}

/** One end of a stream, fed the frames addressed to it. */
export interface StreamEndpoint {
  onFrame(frame: StreamFrame): void;
  /** The connection closed: the stream cannot go on. */
  onClosed(error: RpcError): void;
}

/**
 * The streams of one WebSocket connection: routes incoming frames to their stream's endpoint and sends
 * frames with connection-level backpressure (the bytes handed to the socket and not yet written are
 * counted; senders wait while they exceed `maxQueuedBytes`). Control frames are never held back.
 */
export class StreamMux {
  private readonly endpoints = new Map<number, StreamEndpoint>();
  /** Frames of streams not attached yet (see `holdUnknown`), with when the first arrived. */
  private readonly held = new Map<number, { frames: StreamFrame[]; bytes: number; since: number }>();
  private heldBytes = 0;
  /** Recently ended streams: their late frames are dropped, not held. */
  private readonly ended = new Set<number>();
  private queued = 0;
  private waiters: Array<() => void> = [];
  private nextId = 1;
  private closedWith: RpcError | null = null;

  constructor(
    private readonly transport: FrameTransport,
    private readonly options: {
      maxQueuedBytes?: number;
      /**
       * Keep frames of a stream not attached yet, for when it is (the terminal's side: the core may send
       * the first frames of a stream right behind the RPC answer that names it, before the caller attached).
       */
      holdUnknown?: boolean;
      onViolation?: (error: StreamFrameError) => void;
    } = {},
  ) {}

  /** A fresh stream id (the core allocates every id of its connection). */
  allocate(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_ffff ? 1 : this.nextId + 1;
    return id;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  get streamCount(): number {
    return this.endpoints.size;
  }

  attach(id: number, endpoint: StreamEndpoint): void {
    if (this.closedWith) {
      const error = this.closedWith;
      queueMicrotask(() => endpoint.onClosed(error));
      return;
    }
    this.endpoints.get(id)?.onClosed(new RpcError(ErrorCode.Conflict, `stream ${id} was replaced`));
    this.endpoints.set(id, endpoint);
    this.ended.delete(id);
    const held = this.held.get(id);
    if (held) {
      this.held.delete(id);
      this.heldBytes -= held.bytes;
      for (const frame of held.frames) if (this.endpoints.get(id) === endpoint) endpoint.onFrame(frame);
    }
  }

  detach(id: number, endpoint?: StreamEndpoint): void {
    if (endpoint && this.endpoints.get(id) !== endpoint) return;
    if (!this.endpoints.delete(id)) return;
    this.ended.add(id);
    if (this.ended.size > 4096) this.ended.delete(this.ended.values().next().value!);
  }

  /** A binary message from the other side. */
  receive(data: Buffer): void {
    let frame: StreamFrame;
    try {
      frame = decodeFrame(data);
    } catch (error) {
      this.options.onViolation?.(error as StreamFrameError);
      return;
    }
    const endpoint = this.endpoints.get(frame.stream);
    if (endpoint) {
      endpoint.onFrame(frame);
      return;
    }
    if (this.options.holdUnknown && !this.ended.has(frame.stream)) {
      this.hold(frame);
      return;
    }
    // Frames of a stream that ended here are late echoes. A DATA frame still gets a RESET so that a sender
    // that did not hear of the end stops.
    if (frame.type === FrameType.Data) this.sendControl(resetFrame(frame.stream, new RpcError(ErrorCode.NotFound, `no stream ${frame.stream}`)));
  }

  private hold(frame: StreamFrame): void {
    const now = Date.now();
    // Streams nobody attached within a while were abandoned by their caller: drop them.
    for (const [id, held] of this.held) {
      if (now - held.since < 30_000 && this.heldBytes + frame.payload.length <= 64 * 1024 * 1024) break;
      this.held.delete(id);
      this.heldBytes -= held.bytes;
      this.sendControl(resetFrame(id, new RpcError(ErrorCode.Timeout, `stream ${id} was never taken up`)));
    }
    let held = this.held.get(frame.stream);
    if (!held) {
      held = { frames: [], bytes: 0, since: now };
      this.held.set(frame.stream, held);
    }
    held.frames.push(frame);
    held.bytes += frame.payload.length;
    this.heldBytes += frame.payload.length;
  }

  /** True while the socket's queue is short enough to add data. */
  get writable(): boolean {
    return this.queued < (this.options.maxQueuedBytes ?? 8 * 1024 * 1024);
  }

  /** Resolves when `writable` (at once if it is). */
  whenWritable(): Promise<void> {
    if (this.writable || this.closedWith) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Send a DATA frame (counted against the queue). `written` runs once the socket has taken the frame's
   * bytes (in the order frames were sent), after which the frame's memory is the caller's again.
   */
  sendData(frame: Buffer, written?: () => void): void {
    if (this.closedWith) return;
    const size = frame.length;
    this.queued += size;
    try {
      this.transport.sendBinary(frame, () => {
        this.written(size);
        written?.();
      });
    } catch {
      this.written(size);
    }
  }

  /** Send a small control frame (CREDIT, END, RESET, REWIND). */
  sendControl(frame: Buffer): void {
    if (this.closedWith) return;
    try {
      this.transport.sendBinary(frame);
    } catch {
      // the connection is going away; its close tells every stream
    }
  }

  /** The connection ended: every stream fails with `error`. */
  close(error: RpcError = new RpcError(ErrorCode.Unavailable, 'connection closed')): void {
    if (this.closedWith) return;
    this.closedWith = error;
    const endpoints = [...this.endpoints.values()];
    this.endpoints.clear();
    this.held.clear();
    this.heldBytes = 0;
    for (const endpoint of endpoints) endpoint.onClosed(error);
    this.queued = 0;
    this.wake();
  }

  private written(size: number): void {
    this.queued -= size;
    if (this.writable) this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** Anything that carries binary messages and says when it is gone: a TerminalClient, an RpcPeer. */
interface BinaryConnection extends FrameTransport {
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
}

const muxes = new WeakMap<object, StreamMux>();

/**
 * The stream multiplexer of a connection, made on first use. A client that reconnects gets a fresh one
 * for its new socket: streams do not survive their connection (uploads and downloads resume by offset).
 */
export function streamsOf(connection: BinaryConnection): StreamMux {
  const existing = muxes.get(connection);
  if (existing && !existing.closed) return existing;
  const mux = new StreamMux(connection, { holdUnknown: true });
  const onBinary = (data: Buffer) => mux.receive(data);
  const onGone = () => {
    connection.off('binary', onBinary);
    connection.off('disconnected', onGone);
    connection.off('close', onGone);
    mux.close();
  };
  connection.on('binary', onBinary);
  connection.on('disconnected', onGone);
  connection.on('close', onGone);
  muxes.set(connection, mux);
  return mux;
}
