import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import type { z } from 'zod';
import type { Role } from './common.js';
import { ErrorCode, RpcError } from './errors.js';
import { decodeFrame, describeZodError, type DecodeContext, type Decoded, type Id, type WireError } from './frame-decoder.js';
import { INLINE_FRAME_BYTES, frameThread } from './frame-thread.js';
import type { MethodTable, NotificationTable, ParamsOf, ResultOf } from './method.js';
import { methodTableName } from './method-tables.js';

export { describeZodError };

/** Largest text message accepted; bigger ones get a TooLarge error (the socket stays open). */
export const DEFAULT_MAX_MESSAGE_BYTES = 24 * 1024 * 1024;
/** Frames beyond this close the socket with 1009 before they are buffered whole. */
export const hardFrameLimit = (maxMessageBytes: number): number => maxMessageBytes * 2;

export const SUBPROTOCOL = 'skyport.v1';
export const WS_PATH = '/ws';

/**
 * Frames received and not yet acted on at which the socket stops reading: while one of its frames is decoded
 * off the event loop, a connection sends nothing more in (its sender waits), so it holds one large frame at most.
 */
const MAX_BACKLOG = 1;

interface Pending {
  method: string;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

export type Handler<T extends MethodTable> = <M extends keyof T & string>(
  method: M,
  params: z.output<T[M]['params']>,
) => Promise<z.input<T[M]['result']>> | z.input<T[M]['result']>;

export interface PeerOptions<Served extends MethodTable, Called extends MethodTable, Heard extends NotificationTable> {
  /** Methods this side answers, and the function that answers them. */
  serves?: { methods: Served; handler: Handler<Served>; role: Role };
  /** Methods this side calls on the other. */
  calls?: Called;
  /** Notifications this side accepts from the other (validated on receipt, unknown ones dropped). */
  hears?: Heard;
  maxMessageBytes?: number;
  callTimeoutMs?: number;
  /** Called for every protocol violation by the other side (for logging). */
  onViolation?: (error: RpcError) => void;
}

/**
 * One JSON-RPC 2.0 conversation over one WebSocket, symmetric: either side may call, answer and notify.
 * Every inbound message is validated against its schema before anything acts on it; a bad message gets an
 * error response and changes nothing. Binary frames are handed to `binary` listeners untouched. Frames are
 * acted on in the order they arrived; large text frames of a served table are decoded off the event loop
 * (frame-thread.ts), so that no message, however built, stalls the other connections of this process.
 */
export class RpcPeer<Served extends MethodTable, Called extends MethodTable, Heard extends NotificationTable> extends EventEmitter {
  private nextId = 1;
  private readonly pending = new Map<Id, Pending>();
  private readonly maxMessageBytes: number;
  private readonly callTimeoutMs: number;
  private readonly context: DecodeContext;
  /** The served table's name when its large frames can be decoded by the decoder thread. */
  private readonly offloadTable: string | null;
  /** Frames waiting for an earlier one to be decoded, and the end of that queue. */
  private backlog = 0;
  private inbox: Promise<void> = Promise.resolve();
  closed = false;

  constructor(
    readonly socket: WebSocket,
    private readonly options: PeerOptions<Served, Called, Heard>,
  ) {
    super();
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
    const { serves, hears } = options;
    this.context = { ...(serves ? { serves: { methods: serves.methods, role: serves.role } } : {}), ...(hears ? { hears } : {}) };
    // A peer that only calls (a terminal, the core towards a gate) hears from the side it chose to trust.
    this.offloadTable = serves && !hears ? methodTableName(serves.methods) : null;
    if (this.offloadTable) frameThread.prepare();
    socket.on('message', (data, isBinary) => this.receive(toBuffer(data), isBinary));
    socket.on('close', (code, reason) => this.shutdown(code, reason.toString()));
    socket.on('error', (error) => this.emit('socket-error', error));
  }

  /** Call a method of the other side; resolves with its validated result or rejects with an RpcError. */
  call<M extends keyof Called & string>(
    method: M,
    params?: ParamsOf<Called, M>,
    options: { timeoutMs?: number } = {},
  ): Promise<ResultOf<Called, M>> {
    if (this.closed) return Promise.reject(new RpcError(ErrorCode.Unavailable, 'connection closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.callTimeoutMs;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RpcError(ErrorCode.Timeout, `${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { method, resolve: resolve as (v: unknown) => void, reject, timer });
      this.sendJson({ jsonrpc: '2.0', id, method, params: params ?? {} });
    });
  }

  notify(method: string, params: unknown): void {
    if (!this.closed) this.sendJson({ jsonrpc: '2.0', method, params });
  }

  sendBinary(data: Buffer, callback?: (error?: Error) => void): void {
    this.socket.send(data, { binary: true }, callback);
  }

  /** Bytes queued on the socket and not yet written: the signal for backpressure. */
  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  close(code = 1000, reason = ''): void {
    this.socket.close(code, reason);
  }

  private sendJson(message: unknown): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(JSON.stringify(message));
  }

  private fail(id: Id | null, error: RpcError): void {
    this.options.onViolation?.(error);
    this.sendJson({ jsonrpc: '2.0', id, error: error.toJSON() });
  }

  private receive(data: Buffer, isBinary: boolean): void {
    const offload = !isBinary && this.offloadTable !== null && data.length > INLINE_FRAME_BYTES && data.length <= this.maxMessageBytes;
    if (this.backlog === 0 && !offload) {
      if (isBinary) this.emit('binary', data);
      else this.act(this.decode(data));
      return;
    }
    // Decoding starts now; acting waits for every frame before this one.
    const decoding = isBinary ? null : offload ? frameThread.decode(data, this.offloadTable!, this.options.serves!.role) : Promise.resolve(this.decode(data));
    if (++this.backlog >= MAX_BACKLOG) this.socket.pause();
    this.inbox = this.inbox
      .then(async () => {
        if (decoding) this.act(await decoding);
        else this.emit('binary', data);
      })
      // A listener that throws fails as it would have on the event loop, and the queue goes on.
      .catch((error: unknown) => {
        queueMicrotask(() => {
          throw error;
        });
      })
      .finally(() => {
        if (--this.backlog < MAX_BACKLOG && this.socket.isPaused) this.socket.resume();
      });
  }

  private decode(data: Buffer): Decoded {
    if (data.length > this.maxMessageBytes) {
      const message = `message of ${data.length} bytes exceeds the limit of ${this.maxMessageBytes}`;
      return { kind: 'refused', id: null, error: { code: ErrorCode.TooLarge, message } };
    }
    return decodeFrame(data, this.context);
  }

  private act(decoded: Decoded): void {
    switch (decoded.kind) {
      case 'request':
        void this.answer(decoded.id, decoded.method, decoded.params);
        return;
      case 'notification':
        this.emit('notification', decoded.method, decoded.params);
        return;
      case 'response':
        this.settle(decoded.id, decoded.result, decoded.error);
        return;
      case 'remote-error':
        this.emit('remote-error', rpcError(decoded.error));
        return;
      case 'refused':
        this.fail(decoded.id, rpcError(decoded.error));
        return;
      case 'violation':
        this.options.onViolation?.(rpcError(decoded.error));
        return;
      case 'ignored':
        return;
    }
  }

  /** Run the handler of a call whose method, role and params the decoder has checked. */
  private async answer(id: Id, name: string, params: unknown): Promise<void> {
    const serves = this.options.serves!;
    try {
      const result = await serves.handler(name as keyof Served & string, params as never);
      this.sendJson({ jsonrpc: '2.0', id, result: result ?? null });
    } catch (error) {
      const rpc =
        error instanceof RpcError
          ? error
          : new RpcError(ErrorCode.Internal, `${name} failed: ${(error as Error)?.message ?? String(error)}`);
      if (!(error instanceof RpcError)) this.emit('handler-error', error, name);
      this.sendJson({ jsonrpc: '2.0', id, error: rpc.toJSON() });
    }
  }

  private settle(id: Id, result: unknown, error: WireError | undefined): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if (error) {
      pending.reject(rpcError(error));
      return;
    }
    const spec = this.options.calls?.[pending.method];
    const checked = spec ? spec.result.safeParse(result) : { success: true as const, data: result };
    if (checked.success) pending.resolve(checked.data);
    else pending.reject(new RpcError(ErrorCode.InvalidRequest, `${pending.method}: invalid result: ${describeZodError(checked.error!)}`));
  }

  private shutdown(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new RpcError(ErrorCode.Unavailable, `connection closed (${code}${reason ? `: ${reason}` : ''}) during ${p.method}`));
    }
    this.pending.clear();
    this.emit('close', code, reason);
  }
}

const rpcError = (error: WireError): RpcError => new RpcError(error.code, error.message, error.data);

function toBuffer(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]);
  return Buffer.from(data as ArrayBuffer);
}
