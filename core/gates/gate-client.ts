import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { GateConfig } from '../../spool-bootstrap/config.js';
import type { SpoolPaths } from '../../spool-bootstrap/paths.js';
import { GateConnection } from '../../terminal-protocol/client.js';
import type { Flavor, Image, Partition } from '../../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { GateMethods } from '../../terminal-protocol/gate-methods.js';
import type { ParamsOf, ResultOf } from '../../terminal-protocol/method.js';

/**
 * The core's side of one gate: a connection that reconnects with backoff, calls with time-outs, the gate's
 * flavors and images cached on every (re)connection, and partition events fanned out to job actors.
 * Emits `partition` (Partition), `ready` (after each connection's catalogue refresh), `down`.
 */
export class GateClient extends EventEmitter {
  private readonly connection: GateConnection;
  flavors: Flavor[] | null = null;
  images: Image[] = [];
  lastError: string | null = null;

  constructor(
    readonly config: GateConfig,
    spool: SpoolPaths,
    private readonly logger: Logger,
  ) {
    super();
    this.setMaxListeners(0);
    this.connection = new GateConnection({
      url: `wss://${config.host}:${config.port}`,
      credentials: {
        cert: readFileSync(spool.core.cert),
        key: readFileSync(spool.core.key),
        ca: readFileSync(spool.ca.cert),
      },
      reconnect: true,
      maxBackoffMs: 5_000,
      callTimeoutMs: 60_000,
    });
    this.connection.on('connected', () => void this.refresh());
    this.connection.on('disconnected', (code: number, reason: string) => {
      this.logger.warn({ gate: config.name, code, reason }, 'gate connection lost');
      this.emit('down');
    });
    this.connection.onNotification((name, params) => {
      if (name === 'partition.event') this.emit('partition', params as Partition);
    });
  }

  get name(): string {
    return this.config.name;
  }

  get connected(): boolean {
    return this.connection.connected;
  }

  /** Connect, retrying in the background until the gate answers. */
  start(): void {
    this.connection.connect().catch((error: Error) => {
      this.lastError = error.message;
      this.logger.debug({ gate: this.name, err: error.message }, 'gate not reachable yet');
      setTimeout(() => this.start(), 500).unref();
    });
  }

  /** Resolve once connected (or reject after `timeoutMs`). */
  whenConnected(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.off('ready', onReady);
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve();
      };
      const onReady = () => done();
      const onAbort = () => done(new RpcError(ErrorCode.Conflict, 'aborted'));
      const timer = setTimeout(
        () => done(new RpcError(ErrorCode.Unavailable, `gate "${this.name}" unreachable for ${Math.round(timeoutMs / 1000)} s${this.lastError ? `: ${this.lastError}` : ''}`)),
        timeoutMs,
      );
      this.on('ready', onReady);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async call<M extends keyof GateMethods & string>(method: M, params?: ParamsOf<GateMethods, M>, timeoutMs?: number): Promise<ResultOf<GateMethods, M>> {
    return this.connection.call(method, params, timeoutMs ? { timeoutMs } : undefined);
  }

  async refresh(): Promise<void> {
    try {
      const [flavors, images] = await Promise.all([this.call('flavor.list'), this.call('image.list')]);
      this.flavors = flavors;
      this.images = images;
      this.lastError = null;
      this.logger.info({ gate: this.name, flavors: flavors.length, images: images.length }, 'gate connected');
      this.emit('ready');
    } catch (error) {
      this.lastError = (error as Error).message;
      this.logger.warn({ gate: this.name, err: this.lastError }, 'gate catalogue refresh failed');
      if (this.connected) this.emit('ready');
    }
  }

  close(): Promise<void> {
    return this.connection.close();
  }
}
