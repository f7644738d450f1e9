import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { GateConfig } from '../../spool-bootstrap/config.js';
import type { SpoolPaths } from '../../spool-bootstrap/paths.js';

const GATE_MAIN = fileURLToPath(new URL('../../gates/main.js', import.meta.url));

/** Restart policy: exponential backoff up to a ceiling; this many restarts in the window is a crash loop. */
const BACKOFF_MS = [500, 1_000, 2_000, 5_000, 10_000, 30_000];
const CRASH_LOOP = { restarts: 5, windowMs: 60_000 };

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Keeps one managed gate process running, like an OTP supervisor with a backoff. The gate runs detached
 * (its own session), so it outlives a core that is killed; a restarted core finds it by its pidfile and adopts
 * it instead of starting a second one on the same port.
 */
export class GateProcess {
  pid: number | null = null;
  restarts = 0;
  crashLoop = false;
  private recent: number[] = [];
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    readonly config: GateConfig,
    private readonly spool: SpoolPaths,
    private readonly logger: Logger,
  ) {}

  private get pidfile(): string {
    return join(this.spool.gateState(this.config.name), 'gate.pid');
  }

  private recordedPid(): number | null {
    if (!existsSync(this.pidfile)) return null;
    try {
      const { pid } = JSON.parse(readFileSync(this.pidfile, 'utf8')) as { pid: number };
      return alive(pid) ? pid : null;
    } catch {
      return null;
    }
  }

  start(): void {
    const adopted = this.recordedPid();
    if (adopted) {
      this.pid = adopted;
      this.logger.info({ gate: this.config.name, pid: adopted }, 'adopted running gate');
    } else this.launch();
    this.watch();
  }

  private launch(): void {
    mkdirSync(this.spool.logsDir, { recursive: true, mode: 0o700 });
    const out = openSync(join(this.spool.logsDir, `gate-${this.config.name}.out`), 'a', 0o600);
    const child = spawn(process.execPath, [GATE_MAIN, '--kind', this.config.kind, '--name', this.config.name, '--spool', this.spool.root], {
      detached: true,
      stdio: ['ignore', out, out],
      env: process.env,
    });
    child.unref();
    this.pid = child.pid ?? null;
    this.logger.info({ gate: this.config.name, pid: this.pid }, 'started managed gate');
  }

  /** Liveness by polling: an adopted gate is not our child, so there is no exit event to wait for. */
  private watch(): void {
    this.timer = setInterval(() => {
      if (this.stopped || this.pid === null || alive(this.pid)) return;
      // A pidfile newer than our knowledge means another process took over (e.g. a gate restarted by hand).
      const recorded = this.recordedPid();
      if (recorded) {
        this.pid = recorded;
        return;
      }
      this.onExit();
    }, 250);
    this.timer.unref();
  }

  private onExit(): void {
    const now = Date.now();
    this.recent = [...this.recent.filter((t) => now - t < CRASH_LOOP.windowMs), now];
    this.crashLoop = this.recent.length >= CRASH_LOOP.restarts;
    const delay = BACKOFF_MS[Math.min(this.recent.length - 1, BACKOFF_MS.length - 1)]!;
    this.pid = null;
    this.restarts++;
    const log = this.crashLoop ? this.logger.error.bind(this.logger) : this.logger.warn.bind(this.logger);
    log({ gate: this.config.name, restarts: this.restarts, delayMs: delay, crashLoop: this.crashLoop }, 'managed gate exited; restarting');
    setTimeout(() => {
      if (!this.stopped) this.launch();
    }, delay).unref();
  }

  /** Stop watching. The gate itself keeps running unless `terminate` (a clean shutdown of the whole system). */
  stop(terminate = false): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (terminate && this.pid) {
      try {
        process.kill(this.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
  }
}
