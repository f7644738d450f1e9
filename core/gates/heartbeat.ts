import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';

export interface HeartbeatOptions {
  /** How often to ask. */
  intervalMs: number;
  /** A silence this long declares the peer dead. */
  timeoutMs: number;
  /** A cheap call to the peer; it must give up by itself after `timeoutMs`. */
  ping: (timeoutMs: number) => Promise<unknown>;
  /** Called once per connection when the peer has been silent for `timeoutMs` (with the silence measured). */
  onSilent: (silentMs: number) => void;
}

/** A rejection the peer itself sent back: the peer is alive, it just did not like the question. */
const isAnswer = (error: unknown): boolean =>
  error instanceof RpcError && error.code !== ErrorCode.Timeout && error.code !== ErrorCode.Unavailable;

/**
 * Liveness of one connection, found by asking. A stopped process (SIGSTOP, a hung event loop, a frozen VM)
 * keeps its sockets open, so nothing on the wire says it is gone: only a question that gets no answer does.
 * Every `intervalMs` one ping goes out unless one is still pending; any answer proves the peer alive; a peer
 * silent for `timeoutMs` is reported once, and the owner of the connection drops it.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private lastAnswerAt = 0;
  private lastPingAt = 0;
  private pending = false;
  /** How long the last answered ping took (ms), or null before any. */
  roundTripMs: number | null = null;
  /** Each start() opens a new round; answers to pings of an older round are ignored. */
  private round = 0;

  constructor(private readonly options: HeartbeatOptions) {}

  /** Begin watching a connection that has just been opened (its handshake counts as an answer). */
  start(): void {
    this.stop();
    const round = ++this.round;
    this.lastAnswerAt = Date.now();
    this.lastPingAt = Date.now();
    // Checking twice per interval bounds how late a silence is noticed to half an interval.
    this.timer = setInterval(() => this.check(round), Math.max(50, Math.floor(this.options.intervalMs / 2)));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.pending = false;
    this.round++;
  }

  private check(round: number): void {
    const now = Date.now();
    if (now - this.lastAnswerAt >= this.options.timeoutMs) {
      const silent = now - this.lastAnswerAt;
      this.stop();
      this.options.onSilent(silent);
      return;
    }
    if (this.pending || now - this.lastPingAt < this.options.intervalMs) return;
    this.pending = true;
    this.lastPingAt = now;
    const answered = () => {
      if (round !== this.round) return;
      this.pending = false;
      this.lastAnswerAt = Date.now();
      this.roundTripMs = this.lastAnswerAt - now;
    };
    this.options.ping(this.options.timeoutMs).then(answered, (error: unknown) => {
      if (isAnswer(error)) answered();
      else if (round === this.round) this.pending = false;
    });
  }
}
