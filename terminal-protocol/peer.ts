import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import type { Role } from './common.js';
import { ErrorCode, RpcError } from './errors.js';
import type { MethodTable, NotificationTable, ParamsOf, ResultOf } from './method.js';

/** Largest text message accepted; bigger ones get a TooLarge error (the socket stays open). */
export const DEFAULT_MAX_MESSAGE_BYTES = 24 * 1024 * 1024;
/** Frames beyond this close the socket with 1009 before they are buffered whole. */
export const hardFrameLimit = (maxMessageBytes: number): number => maxMessageBytes * 2;

export const SUBPROTOCOL = 'skyport.v1';
export const WS_PATH = '/ws';

type Id = string | number;
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

const Envelope = z.object({
  jsonrpc: z.literal('2.0'),
  id: z.union([z.string().max(128), z.number().int()]).nullable().optional(),
  method: z.string().max(128).optional(),
  params: z.unknown().optional(),
  result: z.unknown().optional(),
  error: z.object({ code: z.number().int(), message: z.string(), data: z.unknown().optional() }).optional(),
});

export const describeZodError = (error: z.ZodError): string =>
  error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(params)'}: ${i.message}`).join('; ');

/**
 * One JSON-RPC 2.0 conversation over one WebSocket, symmetric: either side may call, answer and notify.
 * Every inbound message is validated against its schema before anything acts on it; a bad message gets an
 * error response and changes nothing. Binary frames are handed to `binary` listeners untouched.
 */
export class RpcPeer<Served extends MethodTable, Called extends MethodTable, Heard extends NotificationTable> extends EventEmitter {
  private nextId = 1;
  private readonly pending = new Map<Id, Pending>();
  private readonly maxMessageBytes: number;
  private readonly callTimeoutMs: number;
  closed = false;

  constructor(
    readonly socket: WebSocket,
    private readonly options: PeerOptions<Served, Called, Heard>,
  ) {
    super();
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
    socket.on('message', (data, isBinary) => {
      if (isBinary) this.emit('binary', toBuffer(data));
      else void this.receive(toBuffer(data));
    });
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

  private async receive(data: Buffer): Promise<void> {
    if (data.length > this.maxMessageBytes) {
      this.fail(null, new RpcError(ErrorCode.TooLarge, `message of ${data.length} bytes exceeds the limit of ${this.maxMessageBytes}`));
      return;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(data.toString('utf8'));
    } catch (error) {
      this.fail(null, new RpcError(ErrorCode.ParseError, `malformed JSON: ${(error as Error).message}`));
      return;
    }
    const parsed = Envelope.safeParse(raw);
    if (!parsed.success) {
      const id = typeof raw === 'object' && raw && 'id' in raw && (typeof raw.id === 'string' || typeof raw.id === 'number') ? raw.id : null;
      this.fail(id, new RpcError(ErrorCode.InvalidRequest, `not a JSON-RPC 2.0 message: ${describeZodError(parsed.error)}`));
      return;
    }
    const message = parsed.data;
    if (message.method !== undefined) {
      if (message.id === undefined || message.id === null) this.hearNotification(message.method, message.params);
      else await this.answer(message.id, message.method, message.params);
    } else if (message.id !== undefined && message.id !== null) {
      this.settle(message.id, message.result, message.error);
    } else if (message.error) {
      this.emit('remote-error', new RpcError(message.error.code, message.error.message, message.error.data));
    } else {
      this.fail(null, new RpcError(ErrorCode.InvalidRequest, 'message has neither method nor id'));
    }
  }

  private async answer(id: Id, name: string, params: unknown): Promise<void> {
    const serves = this.options.serves;
    const spec = serves && Object.hasOwn(serves.methods, name) ? serves.methods[name] : undefined;
    if (!serves || !spec) {
      this.fail(id, new RpcError(ErrorCode.MethodNotFound, `unknown method "${name}"`));
      return;
    }
    if (!spec.roles.includes(serves.role)) {
      this.fail(id, new RpcError(ErrorCode.Forbidden, `role "${serves.role}" may not call ${name}`));
      return;
    }
    const checked = spec.params.safeParse(params);
    if (!checked.success) {
      this.fail(id, new RpcError(ErrorCode.InvalidParams, `${name}: ${describeZodError(checked.error)}`));
      return;
    }
    try {
      const result = await serves.handler(name as keyof Served & string, checked.data as never);
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

  private settle(id: Id, result: unknown, error: { code: number; message: string; data?: unknown } | undefined): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if (error) {
      pending.reject(new RpcError(error.code, error.message, error.data));
      return;
    }
    const spec = this.options.calls?.[pending.method];
    const checked = spec ? spec.result.safeParse(result) : { success: true as const, data: result };
    if (checked.success) pending.resolve(checked.data);
    else pending.reject(new RpcError(ErrorCode.InvalidRequest, `${pending.method}: invalid result: ${describeZodError(checked.error!)}`));
  }

  private hearNotification(name: string, params: unknown): void {
    const hears = this.options.hears;
    const schema = hears && Object.hasOwn(hears, name) ? hears[name] : undefined;
    if (!schema) return; // notifications are fire-and-forget: unknown ones are ignored, per JSON-RPC
    const checked = schema.safeParse(params);
    if (checked.success) this.emit('notification', name, checked.data);
    else this.options.onViolation?.(new RpcError(ErrorCode.InvalidParams, `${name}: ${describeZodError(checked.error)}`));
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

function toBuffer(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]);
  return Buffer.from(data as ArrayBuffer);
}
