import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { GateConfig } from '../../spool-bootstrap/config.js';
import type { SpoolPaths } from '../../spool-bootstrap/paths.js';

const GATE_MAIN = fileURLToPath(new URL('../../gates/main.js', import.meta.url));

/** Restart policy: exponential backoff up to a ceiling; this many restarts in the window is a crash loop. */
const BACKOFF_MS = [500, 1_000, 2_000, 5_000, 10_000, 30_000];
const CRASH_LOOP = { restarts: 5, windowMs: 60_000 };

/** How much of the gate's output is searched for the reason it gave when it exited. */
const EXIT_REASON_WINDOW = 16 * 1024;
/** swm-gate's last word on stderr before exiting with a failure. */
const EXIT_REASON = /^swm-gate: (.+)$/;

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
  /** Why the gate last exited, in its own words (e.g. its port is taken), or null if it said nothing. */
  lastExit: string | null = null;
  private recent: number[] = [];
  /** Where the current launch's output starts in the gate's output file. */
  private outputFrom = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    readonly config: GateConfig,
    private readonly spool: SpoolPaths,
    private readonly logger: Logger,
  ) {}

  /** Restarted this often within the window: a crash loop, until the gate stays up long enough. */
  get crashLoop(): boolean {
    const now = Date.now();
    return this.recent.filter((t) => now - t < CRASH_LOOP.windowMs).length >= CRASH_LOOP.restarts;
  }

  private get outputFile(): string {
    return join(this.spool.logsDir, `gate-${this.config.name}.out`);
  }

  private get pidfile(): string {
    return join(this.spool.gateState(this.config.name), 'gate.pid');
  }

  /** The live gate of this spool: listening (gate.pid), or still restoring its partitions (gate.starting). */
  private recordedPid(): number | null {
    for (const file of [this.pidfile, join(this.spool.gateState(this.config.name), 'gate.starting')]) {
      if (!existsSync(file)) continue;
      try {
        const { pid } = JSON.parse(readFileSync(file, 'utf8')) as { pid: number };
        if (alive(pid)) return pid;
      } catch {
        // a file being replaced: look at the next
      }
    }
    return null;
  }

  start(): void {
    const adopted = this.recordedPid();
    if (adopted) {
      this.pid = adopted;
      // What it wrote before we met it is not about the run we watch.
      this.outputFrom = existsSync(this.outputFile) ? statSync(this.outputFile).size : 0;
      this.logger.info({ gate: this.config.name, pid: adopted }, 'adopted running gate');
    } else this.launch();
    this.watch();
  }

  private launch(): void {
    mkdirSync(this.spool.logsDir, { recursive: true, mode: 0o700 });
    const out = openSync(this.outputFile, 'a', 0o600);
    this.outputFrom = fstatSync(out).size;
    const child = spawn(process.execPath, [GATE_MAIN, '--kind', this.config.kind, '--name', this.config.name, '--spool', this.spool.root], {
      detached: true,
      stdio: ['ignore', out, out],
      env: process.env,
    });
    child.unref();
    closeSync(out);
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
    const delay = BACKOFF_MS[Math.min(this.recent.length - 1, BACKOFF_MS.length - 1)]!;
    this.pid = null;
    this.restarts++;
    this.lastExit = this.exitReason();
    const crashLoop = this.crashLoop;
    const log = crashLoop ? this.logger.error.bind(this.logger) : this.logger.warn.bind(this.logger);
    log(
      { gate: this.config.name, restarts: this.restarts, delayMs: delay, crashLoop, reason: this.lastExit },
      `managed gate exited${this.lastExit ? `: ${this.lastExit}` : ''}; restarting`,
    );
    setTimeout(() => {
      if (!this.stopped) this.launch();
    }, delay).unref();
  }

  /** The last `swm-gate: ...` line the exited launch wrote (an adopted gate's output is not ours to read). */
  private exitReason(): string | null {
    let fd: number | null = null;
    try {
      fd = openSync(this.outputFile, 'r');
      const size = fstatSync(fd).size;
      const from = Math.max(this.outputFrom, size - EXIT_REASON_WINDOW);
      if (size <= from) return null;
      const buffer = Buffer.alloc(size - from);
      readSync(fd, buffer, 0, buffer.length, from);
      const lines = buffer.toString('utf8').split('\n').reverse();
      for (const line of lines) {
        const m = EXIT_REASON.exec(line.trim());
        if (m) return m[1]!;
      }
      return null;
    } catch {
      return null;
    } finally {
      if (fd !== null) closeSync(fd);
    }
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
