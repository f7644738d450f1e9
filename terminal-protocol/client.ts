import { EventEmitter } from 'node:events';
import { WebSocket } from 'ws';
import { ErrorCode, RpcError } from './errors.js';
import type { MethodTable, NotificationOf, NotificationTable, ParamsOf, ResultOf } from './method.js';
import { DEFAULT_MAX_MESSAGE_BYTES, RpcPeer, SUBPROTOCOL, WS_PATH, hardFrameLimit } from './peer.js';
import { gateMethods, gateNotifications, type GateMethods, type GateNotifications } from './gate-methods.js';
import {
  terminalMethods,
  terminalNotifications,
  type TerminalMethods,
  type TerminalNotifications,
} from './terminal-methods.js';

export interface Credentials {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
}

export interface ClientOptions {
  /** `wss://host:port` (the `/ws` path is added when missing). */
  url: string;
  credentials: Credentials;
  /** Reconnect with exponential backoff after a lost connection (not after close()). */
  reconnect?: boolean;
  maxBackoffMs?: number;
  callTimeoutMs?: number;
  connectTimeoutMs?: number;
  maxMessageBytes?: number;
}

type NotificationListener<H extends NotificationTable> = <N extends keyof H & string>(name: N, params: NotificationOf<H, N>) => void;

/**
 * A client of a Sky Port RPC endpoint over mutual TLS. Emits `connected`, `disconnected`, `notification`,
 * and `binary`. With `reconnect`, a lost connection is re-established with backoff and `connected` fires
 * again (callers re-subscribe there).
 */
export class RpcClient<Called extends MethodTable, Heard extends NotificationTable> extends EventEmitter {
  private peer: RpcPeer<MethodTable, Called, Heard> | null = null;
  private closing = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly options: ClientOptions,
    private readonly calls: Called,
    private readonly hears: Heard,
  ) {
    super();
  }

  get connected(): boolean {
    return this.peer !== null && !this.peer.closed;
  }

  get url(): string {
    const u = new URL(this.options.url);
    if (u.pathname === '/' || u.pathname === '') u.pathname = WS_PATH;
    return u.toString();
  }

  /** Open the connection; rejects if the first attempt fails (reconnection only covers later losses). */
  async connect(): Promise<this> {
    this.closing = false;
    await this.open();
    return this;
  }

  call<M extends keyof Called & string>(method: M, params?: ParamsOf<Called, M>, options?: { timeoutMs?: number }): Promise<ResultOf<Called, M>> {
    if (!this.peer || this.peer.closed) return Promise.reject(new RpcError(ErrorCode.Unavailable, `not connected to ${this.url}`));
    return this.peer.call(method, params, options);
  }

  onNotification(listener: NotificationListener<Heard>): this {
    return this.on('notification', listener);
  }

  sendBinary(data: Buffer, callback?: (error?: Error) => void): void {
    if (!this.peer) throw new RpcError(ErrorCode.Unavailable, 'not connected');
    this.peer.sendBinary(data, callback);
  }

  get bufferedAmount(): number {
    return this.peer?.bufferedAmount ?? 0;
  }

  close(): Promise<void> {
    this.closing = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const peer = this.peer;
    if (!peer || peer.closed) return Promise.resolve();
    return new Promise((resolve) => {
      peer.once('close', () => resolve());
      peer.close(1000, 'client closing');
      setTimeout(() => {
        peer.socket.terminate();
        resolve();
      }, 1000).unref();
    });
  }

  private open(): Promise<void> {
    const { credentials } = this.options;
    const maxMessageBytes = this.options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url, SUBPROTOCOL, {
        cert: credentials.cert,
        key: credentials.key,
        ca: credentials.ca,
        rejectUnauthorized: true,
        maxPayload: hardFrameLimit(maxMessageBytes),
        handshakeTimeout: this.options.connectTimeoutMs ?? 10_000,
        perMessageDeflate: false,
        // An all-zero mask makes ws skip masking (and the server unmasking) every byte. Masking guards
        // plain-text proxies against cache poisoning; inside TLS it only costs: a quarter of the bulk
        // stream throughput (terminal-protocol/streams.ts) without a native bufferutil.
        generateMask: (mask: Buffer) => mask.fill(0),
      });
      let opened = false;
      socket.once('open', () => {
        opened = true;
        this.attempt = 0;
        const peer = new RpcPeer<MethodTable, Called, Heard>(socket, {
          calls: this.calls,
          hears: this.hears,
          maxMessageBytes,
          callTimeoutMs: this.options.callTimeoutMs,
        });
        this.peer = peer;
        peer.on('notification', (name: string, params: unknown) => this.emit('notification', name, params));
        peer.on('binary', (data: Buffer) => this.emit('binary', data));
        peer.on('close', (code: number, reason: string) => this.lost(code, reason));
        this.emit('connected');
        resolve();
      });
      socket.once('error', (error) => {
        if (!opened) {
          socket.terminate();
          reject(new RpcError(ErrorCode.Unavailable, `cannot connect to ${this.url}: ${error.message}`));
        }
      });
      socket.once('unexpected-response', (_req, res) => {
        socket.terminate();
        reject(new RpcError(ErrorCode.Unavailable, `cannot connect to ${this.url}: HTTP ${res.statusCode}`));
      });
    });
  }

  private lost(code: number, reason: string): void {
    this.peer = null;
    this.emit('disconnected', code, reason);
    if (this.closing || !this.options.reconnect) return;
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    const max = this.options.maxBackoffMs ?? 10_000;
    const delay = Math.min(max, 100 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.closing) return;
      this.open().catch(() => this.scheduleRetry());
    }, delay);
    this.retryTimer.unref?.();
  }
}

/** The client terminals use to talk to swm-core. */
export class TerminalClient extends RpcClient<TerminalMethods, TerminalNotifications> {
  constructor(options: ClientOptions) {
    super(options, terminalMethods, terminalNotifications);
  }
}

/** The client swm-core uses to talk to a gate. */
export class GateConnection extends RpcClient<GateMethods, GateNotifications> {
  constructor(options: ClientOptions) {
    super(options, gateMethods, gateNotifications);
  }
}
