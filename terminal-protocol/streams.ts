import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { crc32 } from 'node:zlib';
import { ErrorCode, RpcError } from './errors.js';

/**
 * Bulk streams on the terminal's WebSocket (DESIGN.md §6). File uploads, file downloads and port-forward
 * connections travel as binary WebSocket frames beside the JSON-RPC text frames of the same socket. A stream
 * is opened by an RPC method whose answer names its id (job.input.open, job.file.open, job.forward.open);
 * ids are allocated by the core, so both sides agree without negotiation. Each frame:
 *
 *   byte 0   u8   version (1)
 *        1   u8   type: DATA 0, CREDIT 1, END 2, RESET 3, REWIND 4
 *        2   u16  flags: 1 = UNCHECKED (no CRC: the CRC field is 0); other bits 0
 *        4   u32  stream id
 *        8   u64  offset
 *       16   u32  CRC-32 of the payload (0 when there is none)
 *       20   ...  payload
 *
 * - DATA    bytes of the stream at `offset` (at most MAX_FRAME_PAYLOAD of them). File streams always carry
 *           a CRC; forwarded connections may not (UNCHECKED): their bytes are TCP payload the two ends check
 *           themselves if they care, and TLS already guards the wire.
 * - CREDIT  the receiver has consumed the stream up to `offset`; the sender may have at most `window` bytes
 *           (announced by the open method) past that point in flight. This is the backpressure: a slow disk
 *           or socket on the receiving side stops the sender, and neither side ever holds more than a window.
 * - END     the sender has sent everything up to `offset`. On file streams the receiver answers END too,
 *           once everything is written and verified: that END is the acceptance. A download's END carries
 *           the 32-byte SHA-256 of the whole file.
 * - RESET   the stream is aborted; payload: UTF-8 JSON {code, message} with an ErrorCode.
 * - REWIND  a DATA frame failed its CRC: resend from `offset` (frames already in flight after it are dropped).
 *
 * Offsets are absolute positions in the stream, so a resumed upload simply starts at a later offset.
 */

export const STREAM_FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 20;
/** Largest DATA payload: big enough that per-frame costs vanish, small enough to keep memory flat. */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;
/** Default windows: files want a deep pipe, forwarded connections a fair share of one socket. */
export const FILE_STREAM_WINDOW = 8 * 1024 * 1024;
export const FORWARD_STREAM_WINDOW = 4 * 1024 * 1024;
/** Disk writes a file receiver keeps going at once. */
const WRITES_IN_FLIGHT = 4;
/** CRC failures tolerated on one stream before it is given up as broken. */
const MAX_REWINDS = 16;

export const FrameType = { Data: 0, Credit: 1, End: 2, Reset: 3, Rewind: 4 } as const;
/** Frame flags (bits of the u16 after the type). */
export const FrameFlag = { Unchecked: 1 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export interface StreamFrame {
  type: FrameType;
  stream: number;
  offset: number;
  payload: Buffer;
  /** The CRC-32 the frame carries (DATA only is checked, by `crcMatches`). */
  crc: number;
  flags: number;
}

/** A malformed binary frame: the other side does not speak this protocol. */
export class StreamFrameError extends Error {
  override name = 'StreamFrameError';
}

const EMPTY = Buffer.alloc(0);

function writeHeader(frame: Buffer, type: FrameType, stream: number, offset: number, crc: number, flags = 0): void {
  frame.writeUInt8(STREAM_FRAME_VERSION, 0);
  frame.writeUInt8(type, 1);
  frame.writeUInt16BE(flags, 2);
  frame.writeUInt32BE(stream >>> 0, 4);
  frame.writeUInt32BE(Math.floor(offset / 0x1_0000_0000), 8);
  frame.writeUInt32BE(offset % 0x1_0000_0000, 12);
  frame.writeUInt32BE(crc >>> 0, 16);
}

/** A frame buffer whose payload (bytes FRAME_HEADER_BYTES..) the caller fills in place, then `sealFrame`s. */
export const allocFrame = (payloadBytes: number): Buffer => Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes);

/** Writes the header (and the payload's CRC, unless `unchecked`) of a frame made by allocFrame. */
export function sealFrame(frame: Buffer, type: FrameType, stream: number, offset: number, unchecked = false): Buffer {
  const payload = frame.subarray(FRAME_HEADER_BYTES);
  if (unchecked) writeHeader(frame, type, stream, offset, 0, FrameFlag.Unchecked);
  else writeHeader(frame, type, stream, offset, payload.length ? crc32(payload) : 0);
  return frame;
}

export function encodeFrame(type: FrameType, stream: number, offset: number, payload: Buffer = EMPTY): Buffer {
  const frame = allocFrame(payload.length);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return sealFrame(frame, type, stream, offset);
}

/** Parses a binary WebSocket message; throws StreamFrameError on anything malformed. The payload is a view, not a copy. */
export function decodeFrame(data: Buffer): StreamFrame {
  if (data.length < FRAME_HEADER_BYTES) throw new StreamFrameError(`binary frame of ${data.length} bytes is shorter than its header`);
  const version = data.readUInt8(0);
  if (version !== STREAM_FRAME_VERSION) throw new StreamFrameError(`binary frame version ${version} is not ${STREAM_FRAME_VERSION}`);
  const type = data.readUInt8(1);
  if (type > FrameType.Rewind) throw new StreamFrameError(`binary frame type ${type} is unknown`);
  const offset = data.readUInt32BE(8) * 0x1_0000_0000 + data.readUInt32BE(12);
  if (!Number.isSafeInteger(offset)) throw new StreamFrameError('binary frame offset is out of range');
  const payload = data.subarray(FRAME_HEADER_BYTES);
  if (type === FrameType.Data && payload.length > MAX_FRAME_PAYLOAD)
    throw new StreamFrameError(`DATA frame of ${payload.length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
  return { type: type as FrameType, stream: data.readUInt32BE(4), offset, payload, crc: data.readUInt32BE(16), flags: data.readUInt16BE(2) };
}

/** Whether a frame's payload is what was sent: its CRC matches, or it was sent without one. */
export const crcMatches = (frame: StreamFrame): boolean =>
  (frame.flags & FrameFlag.Unchecked) !== 0 || (frame.payload.length ? crc32(frame.payload) : 0) === frame.crc;

/** Whether a frame carries a CRC (file streams refuse frames that do not). */
export const isChecked = (frame: StreamFrame): boolean => (frame.flags & FrameFlag.Unchecked) === 0;

export const resetFrame = (stream: number, error: RpcError): Buffer =>
  encodeFrame(FrameType.Reset, stream, 0, Buffer.from(JSON.stringify({ code: error.code, message: error.message })));

/** The error a RESET frame carries. */
export function resetError(frame: StreamFrame): RpcError {
  try {
    const { code, message } = JSON.parse(frame.payload.toString('utf8')) as { code?: unknown; message?: unknown };
    if (typeof code === 'number' && typeof message === 'string') return new RpcError(code, message);
  } catch {
    // fall through
  }
  return new RpcError(ErrorCode.Internal, 'stream reset by the other side');
}

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

  /** Send a DATA frame (counted against the queue). */
  sendData(frame: Buffer): void {
    if (this.closedWith) return;
    const size = frame.length;
    this.queued += size;
    try {
      this.transport.sendBinary(frame, () => this.written(size));
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

/**
 * Gather the writes made to a TCP socket in one turn of the event loop into one system call. SSH
 * implementations write every SSH packet (32 KiB at most) on its own, and a burst of forwarded data
 * arrives as many small chunks: without this, bulk transfers spend much of their CPU in write(2). Call it
 * after connect(), which puts the prototype's write back.
 */
export function coalesceWrites<S extends Socket>(socket: S): S {
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  let corked = false;
  socket.write = ((...args: unknown[]) => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(() => {
        corked = false;
        socket.uncork();
      });
    }
    return write(...args);
  }) as S['write'];
  return socket;
}

// ---------------------------------------------------------------------------------------------------------
// Byte streams (port forwarding): a Duplex per stream, credit-based in both directions.

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
        if (frame.offset !== this.received || !crcMatches(frame) || this.received + frame.payload.length > this.credited + this.window) {
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
      this.mux.sendData(sealFrame(frame, FrameType.Data, this.id, this.sent, true));
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

/**
 * Join two byte streams both ways, keeping half-closes (one side's end ends the other's writing, as TCP
 * does). A side that fails, or closes before its end (an abort), takes the other down with it; otherwise
 * each closes on its own once both directions are done. `onClosed` runs once, when both have closed.
 */
export function spliceStreams(a: Duplex, b: Duplex, onClosed?: () => void): void {
  let closed = 0;
  const watch = (x: Duplex, y: Duplex) => {
    x.on('error', (error: Error) => y.destroy(error));
    x.once('close', () => {
      if (!x.readableEnded && !y.destroyed) y.destroy();
      if (++closed === 2) onClosed?.();
    });
  };
  watch(a, b);
  watch(b, a);
  a.pipe(b);
  b.pipe(a);
}

// ---------------------------------------------------------------------------------------------------------
// File streams (uploads and downloads): a sender that reads a file and a receiver that writes one.

/**
 * A SHA-256 fed in order, that may live elsewhere (the core hashes in a worker thread, off the path that
 * moves the bytes). `hex` resolves with the digest of everything fed; the hash is used up then.
 */
export interface RunningHash {
  /** Feed bytes; the caller will not use `data` again (its memory may be handed to another thread). */
  update(data: Buffer): void;
  hex(): Promise<string>;
}

/** A RunningHash on this thread. */
export const localHash = (hash: Hash = createHash('sha256')): RunningHash => ({
  update: (data) => void hash.update(data),
  hex: async () => hash.digest('hex'),
});

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
  /** For tests: change a DATA frame after it is sealed, before it is sent (to prove corruption is caught). */
  tamper?: (frame: Buffer, offset: number) => void;
}

export interface FileSendResult {
  /** Bytes sent, re-sent ones included. */
  sentBytes: number;
  /** How many times the receiver asked for bytes again (a CRC failure). */
  rewinds: number;
}

/** SHA-256 of the first `length` bytes of an open file, streamed. */
export async function hashFilePrefix(file: FileHandle, length: number, hash: Hash = createHash('sha256')): Promise<Hash> {
  const buffer = Buffer.allocUnsafe(Math.min(4 * 1024 * 1024, Math.max(length, 1)));
  for (let at = 0; at < length; ) {
    const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, length - at), at);
    if (bytesRead === 0) throw new RpcError(ErrorCode.Integrity, `file shrank: ${at} of ${length} bytes left`);
    hash.update(buffer.subarray(0, bytesRead));
    at += bytesRead;
  }
  return hash;
}

/**
 * Send `file` from `from` to `size` on a stream, within the receiver's window, re-sending from where it
 * asks after a failed CRC. Resolves when the receiver answers END (it has everything, verified); rejects
 * with the RpcError of a RESET, a closed connection or an abort.
 */
export async function sendFile(o: FileSendOptions): Promise<FileSendResult> {
  const { mux, stream, file, size, window } = o;
  let next = o.from;
  let acked = o.from;
  let endSent = false;
  let accepted = false;
  let failure: Error | null = null;
  let rewinds = 0;
  let sentBytes = 0;
  let digest: Buffer | null = null;
  let wake: (() => void) | null = null;
  const poke = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const hash = o.digest ?? null;
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
        case FrameType.Rewind:
          if (++rewinds > MAX_REWINDS) failure = new RpcError(ErrorCode.Integrity, `stream ${stream}: too many corrupt frames`);
          else if (frame.offset >= acked && frame.offset <= next) {
            next = frame.offset;
            endSent = false;
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
  // One read ahead: the next block comes off the disk (in the thread pool) while this one is sealed and sent.
  let ahead: { at: number; length: number; frame: Buffer; read: Promise<{ bytesRead: number }> } | null = null;
  const readBlock = (at: number, length: number) => {
    const frame = allocFrame(length);
    const read = file.read(frame, FRAME_HEADER_BYTES, length, at);
    read.catch(() => undefined);
    return { at, length, frame, read };
  };
  try {
    while (!accepted && !failure) {
      if (next < size && next < acked + window && mux.writable) {
        const at = next;
        const wanted = Math.min(MAX_FRAME_PAYLOAD, size - at, acked + window - at);
        const block = ahead && ahead.at === at && ahead.length <= wanted ? ahead : readBlock(at, wanted);
        ahead = null;
        const { length, frame } = block;
        const { bytesRead } = await block.read;
        const following = at + length;
        if (following < size && following < acked + window) ahead = readBlock(following, Math.min(MAX_FRAME_PAYLOAD, size - following, acked + window - following));
        if (bytesRead !== length) {
          failure = new RpcError(ErrorCode.Integrity, `the file shrank while being sent (${at + bytesRead} of ${size} bytes)`);
          mux.sendControl(resetFrame(stream, failure as RpcError));
          break;
        }
        if (failure || accepted) break;
        if (next !== at) continue; // a REWIND arrived during the read: this block is not the one wanted now
        if (hash && hashed === at) {
          // A copy: the frame itself is still to be sent, and the hash may take what it is given.
          hash.update(Buffer.from(frame.subarray(FRAME_HEADER_BYTES)));
          hashed += length;
        }
        sealFrame(frame, FrameType.Data, stream, at);
        o.tamper?.(frame, at);
        mux.sendData(frame);
        sentBytes += length;
        next = at + length;
        continue;
      }
      if (next >= size && !endSent) {
        if (hash && hashed === size && !digest) digest = Buffer.from(await hash.hex(), 'hex');
        if (failure || accepted) break;
        mux.sendControl(encodeFrame(FrameType.End, stream, size, digest ?? EMPTY));
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
  return { sentBytes, rewinds };
}

/** Where a received file's bytes go. Writes come in order, one at a time. */
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
  signal?: AbortSignal;
}

export interface FileReceiveResult {
  /** SHA-256 (hex) of the whole file, when a prefix hash was given. */
  sha256: string | null;
}

/**
 * Receive a file stream into `sink`: frames are written in order, a frame failing its CRC is asked for
 * again (REWIND), credit is returned as bytes reach the sink. At the sender's END the digest is checked and
 * END is answered (acceptance), or RESET with an Integrity error.
 */
export function receiveFile(o: FileReceiveOptions): Promise<FileReceiveResult> {
  const { mux, stream, sink, size, window } = o;
  const hash = o.prefix ?? null;
  let expected = o.from;
  let credited = o.from;
  let rewindingFrom: number | null = null;
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
        if (rewindingFrom !== null) {
          if (frame.offset !== rewindingFrom) return; // in flight before the sender heard REWIND
          rewindingFrom = null;
        }
        if (frame.offset !== expected) throw new RpcError(ErrorCode.Integrity, `stream ${stream}: DATA at ${frame.offset}, expected ${expected}`);
        if (expected + frame.payload.length > size) throw new RpcError(ErrorCode.TooLarge, `stream ${stream}: data past the end (${size} bytes)`);
        if (!isChecked(frame)) throw new RpcError(ErrorCode.Integrity, `stream ${stream}: a file's frames must carry a CRC`);
        if (!crcMatches(frame)) {
          rewindingFrom = expected;
          mux.sendControl(encodeFrame(FrameType.Rewind, stream, expected));
          return;
        }
        const length = frame.payload.length;
        const done = sink.write(frame.payload, frame.offset);
        done.catch(() => undefined); // awaited in order by commitOldest
        writing.push({ payload: frame.payload, length, done });
        expected += length;
        while (writing.length >= WRITES_IN_FLIGHT || (writing.length > 0 && queue.length === 0)) await commitOldest();
        return;
      }
      if (frame.type === FrameType.End) {
        if (expected < size || rewindingFrom !== null) return; // the resent bytes (and another END) follow
        if (frame.offset !== size) throw new RpcError(ErrorCode.Integrity, `stream ${stream}: sender ended at ${frame.offset}, expected ${size}`);
        while (writing.length > 0) await commitOldest();
        const sha256 = hash ? await hash.hex() : null;
        const claimed = o.expectedSha256 ?? (frame.payload.length === 32 ? frame.payload.toString('hex') : null);
        if (sha256 && claimed && sha256 !== claimed) throw new RpcError(ErrorCode.Integrity, `SHA-256 ${sha256} of the received file, expected ${claimed}`);
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
        if (frame.type === FrameType.Data && frame.offset + frame.payload.length > credited + window && rewindingFrom === null)
          return fail(new RpcError(ErrorCode.Integrity, `stream ${stream}: the sender overran its window`));
        // The payload is a view into the socket's buffer, which the socket does not reuse: keep it as is.
        queue.push(frame);
        void drain();
      },
      onClosed: (error) => fail(error, false),
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    mux.attach(stream, endpoint);
    if (size === o.from) {
      // Nothing to receive; the sender's END (with its digest) still settles the stream.
    }
  });
}

/** A failed write, worded for the person reading it (a full disk is the common case). */
export function writeFailure(error: unknown): RpcError {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new RpcError(ErrorCode.Unavailable, 'no space left on the receiving disk');
  return new RpcError(ErrorCode.Internal, `write failed: ${(error as Error)?.message ?? String(error)}`);
}
