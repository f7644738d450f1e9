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
import { isForeignAuthority, isUnanswered, withoutUrl, type GateHealthState } from './gate-health.js';
import { Heartbeat } from './heartbeat.js';

/**
 * A gate that has not answered for `timeoutMs` is unhealthy: its connection is dropped and made again. The
 * same span is the grace a gate that is merely down (restarting) gets before jobs are told it is unavailable.
 */
export const GATE_HEARTBEAT = { intervalMs: 2_000, timeoutMs: 6_000 };
/**
 * Reconnection backoff: short, so that a gate that comes back (SIGCONT, a restart) is used again within seconds;
 * slower when the port is served by the wrong gate, which each attempt would fill the other gate's log about.
 */
const RETRY_MS = { first: 250, max: 2_000, misdirected: 10_000 };
/** How long a call may take, reconnections included, unless the caller says otherwise. */
const CALL_TIMEOUT_MS = 60_000;

/**
 * The core's side of one gate: a connection that reconnects with backoff and is watched by a heartbeat, calls
 * with time-outs, the gate's flavors and images cached on every (re)connection, and partition events fanned out
 * to job actors. Emits `partition` (Partition), `ready` (after each connection's catalogue refresh), `down`, and
 * `health` (the new `unavailable` reason, or null) whenever whether jobs can be sent to it changes.
 */
export class GateClient extends EventEmitter {
  private readonly connection: GateConnection;
  private readonly heartbeat: Heartbeat;
  flavors: Flavor[] | null = null;
  images: Image[] = [];
  /** The last error met talking to the gate, in its own words. */
  lastError: string | null = null;
  health: GateHealthState = 'connecting';
  /** Why the gate is not healthy (the one-line diagnosis shown in status and given to waiting jobs). */
  private diagnosis: string | null = null;
  /** When the gate stopped being healthy (or when this client started). */
  private troubleSince = Date.now();
  private lastAnswerAt: number | null = null;
  private everHealthy = false;
  private reported: string | null = null;
  private connecting = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;

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
      // Reconnection is ours (connect()), so that every attempt's failure is diagnosed.
      reconnect: false,
      connectTimeoutMs: GATE_HEARTBEAT.timeoutMs,
      callTimeoutMs: CALL_TIMEOUT_MS,
    });
    this.heartbeat = new Heartbeat({
      ...GATE_HEARTBEAT,
      ping: (timeoutMs) =>
        this.connection.call('gate.hello', undefined, { timeoutMs }).then(() => {
          this.lastAnswerAt = Date.now();
        }),
      onSilent: () => this.notAnswering(),
    });
    this.connection.on('connected', () => {
      this.failures = 0;
      this.lastAnswerAt = Date.now();
      this.heartbeat.start();
      void this.refresh();
    });
    this.connection.on('disconnected', (code: number, reason: string) => {
      this.heartbeat.stop();
      this.logger.warn({ gate: config.name, code, reason }, 'gate connection lost');
      if (this.health === 'healthy' || this.health === 'connecting') {
        this.become('unreachable', `gate ${this.name} closed the connection (${code}${reason ? `: ${reason}` : ''})`);
      }
      this.emit('down');
      this.retryLater();
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

  get healthy(): boolean {
    return this.health === 'healthy';
  }

  /** Why the gate is not healthy, with the silence measured now; null when it is. */
  get problem(): string | null {
    if (this.health === 'healthy') return null;
    if (this.health === 'not-answering' && this.lastAnswerAt !== null) return this.silence(Date.now() - this.lastAnswerAt);
    return this.diagnosis;
  }

  /** How long the gate took to answer its last heartbeat (ms), or null before any answer. */
  get roundTripMs(): number | null {
    return this.connected ? this.heartbeat.roundTripMs : null;
  }

  /** Seconds since the gate last answered (a heartbeat, a handshake), or null if it never has. */
  get silentSec(): number | null {
    return this.lastAnswerAt === null ? null : Math.round((Date.now() - this.lastAnswerAt) / 1000);
  }

  /**
   * Why jobs cannot be sent to this gate now, or null. A diagnosis (not answering, another spool's gate) counts at
   * once; a gate that served and went down counts after the heartbeat's time-out, the time a managed gate takes to
   * restart; a gate never reached (not configured yet, like a new spool's azure gate) does not: jobs simply queue.
   * The text does not change while the trouble lasts, so a job shows it without being rewritten every second.
   */
  get unavailable(): string | null {
    if (this.health === 'healthy' || this.health === 'connecting') return null;
    if (this.health === 'unreachable') {
      return this.everHealthy && Date.now() - this.troubleSince >= GATE_HEARTBEAT.timeoutMs ? this.diagnosis : null;
    }
    return this.diagnosis;
  }

  /** Connect, retrying in the background until the gate answers. */
  start(): void {
    this.closed = false;
    this.connect();
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
      const timer = setTimeout(() => {
        const why = this.problem ?? this.lastError;
        done(new RpcError(ErrorCode.Unavailable, `gate "${this.name}" unreachable for ${Math.round(timeoutMs / 1000)} s${why ? `: ${why}` : ''}`));
      }, timeoutMs);
      this.on('ready', onReady);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Call a gate method within `timeoutMs`, reconnections included: a call cut off by a lost connection (the
   * heartbeat dropping a stopped gate, a gate restarting) is asked again once the gate is back, which is safe
   * because every gate method is idempotent (gates/gate.ts). A call that fails anyway says why the gate is not
   * serving ("gate local is not answering ..."), not "connection closed".
   */
  async call<M extends keyof GateMethods & string>(method: M, params?: ParamsOf<GateMethods, M>, timeoutMs = CALL_TIMEOUT_MS): Promise<ResultOf<GateMethods, M>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.connection.call(method, params, { timeoutMs: Math.max(1, deadline - Date.now()) });
      } catch (error) {
        const lost = error instanceof RpcError && error.code === ErrorCode.Unavailable && !this.connected;
        const remaining = deadline - Date.now();
        if (!lost || remaining <= 0 || this.closed) throw this.explained(method, error);
        try {
          await this.whenConnected(remaining);
        } catch {
          throw this.explained(method, error);
        }
      }
    }
  }

  private explained(method: string, error: unknown): unknown {
    const why = this.problem;
    if (why && error instanceof RpcError && (error.code === ErrorCode.Unavailable || error.code === ErrorCode.Timeout)) {
      return new RpcError(ErrorCode.Unavailable, `${method}: ${why}`);
    }
    return error;
  }

  /** Check who answers on the gate's port and cache its catalogue; one per connection, so no retries across them. */
  async refresh(): Promise<void> {
    try {
      const hello = await this.connection.call('gate.hello');
      if (hello.name !== this.name || hello.kind !== this.config.kind) {
        this.become('wrong-gate', `port ${this.config.port} is served by gate "${hello.name}" (${hello.kind}), not by gate "${this.name}" (${this.config.kind})`);
        void this.connection.close();
        return;
      }
      this.become('healthy', null);
      const [flavors, images] = await Promise.all([this.connection.call('flavor.list'), this.connection.call('image.list')]);
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
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.heartbeat.stop();
    return this.connection.close();
  }

  private connect(): void {
    if (this.closed || this.connecting || this.connected) return;
    this.connecting = true;
    this.connection.connect().then(
      () => {
        this.connecting = false;
      },
      (error: Error) => {
        this.connecting = false;
        this.failures++;
        this.connectFailed(error.message);
        this.retryLater();
      },
    );
  }

  private retryLater(): void {
    if (this.closed || this.retryTimer) return;
    const misdirected = this.health === 'other-spool' || this.health === 'wrong-gate';
    const delay = misdirected ? RETRY_MS.misdirected : Math.min(RETRY_MS.max, RETRY_MS.first * 2 ** Math.max(0, this.failures - 1));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
    this.retryTimer.unref();
  }

  private connectFailed(message: string): void {
    this.lastError = message;
    if (isForeignAuthority(message)) {
      this.become('other-spool', `the gate on port ${this.config.port} belongs to another spool (${withoutUrl(message)})`);
    } else if (this.health === 'not-answering' && isUnanswered(message)) {
      // Still silent: the process on the port accepts connections (the kernel does) but never completes a handshake.
      this.report();
    } else {
      this.become('unreachable', `gate ${this.name} on port ${this.config.port} is unreachable (${withoutUrl(message)})`);
    }
  }

  /** The reason jobs get names the time-out crossed, so that it reads the same however late the check ran. */
  private notAnswering(): void {
    this.become('not-answering', this.silence(GATE_HEARTBEAT.timeoutMs));
    // A stopped gate never completes a close handshake; the connection is dropped and made again.
    void this.connection.close();
  }

  private silence(ms: number): string {
    return `gate ${this.name} is not answering (no heartbeat for ${Math.floor(ms / 1000)} s)`;
  }

  private become(health: GateHealthState, diagnosis: string | null): void {
    const previous = this.health;
    if (health !== previous) {
      if (previous === 'healthy') this.troubleSince = Date.now();
      if (health === 'healthy') this.everHealthy = true;
      this.health = health;
      this.diagnosis = diagnosis;
      this.log(previous);
    } else if (health !== 'not-answering') {
      this.diagnosis = diagnosis;
    }
    this.report();
  }

  private log(previous: GateHealthState): void {
    const entry = { gate: this.name, port: this.config.port, health: this.health, was: previous, problem: this.diagnosis };
    if (this.health === 'healthy') {
      if (previous !== 'connecting') this.logger.info(entry, 'gate healthy again');
    } else if (this.health === 'other-spool') {
      this.logger.error({ ...entry, hint: `give gate "${this.name}" a port no other spool uses (gates[].port in config.json)` }, this.diagnosis!);
    } else if (this.health === 'wrong-gate') {
      this.logger.error(entry, this.diagnosis!);
    } else if (this.health === 'not-answering') {
      this.logger.warn(entry, this.diagnosis!);
    } else if (previous !== 'connecting') {
      this.logger.warn(entry, 'gate unreachable');
    } else {
      this.logger.debug(entry, 'gate not reachable yet');
    }
  }

  /** Tell listeners (the scheduler) when whether jobs can be sent here changes. */
  private report(): void {
    const reason = this.unavailable;
    if (reason === this.reported) return;
    this.reported = reason;
    this.emit('health', reason);
  }
}
