import cliProgress from 'cli-progress';
import { formatBytes, formatDuration } from './format.js';

/**
 * A byte-transfer progress bar on stderr (bytes, rate, ETA) for people watching a terminal. Scripts get
 * silence: no bar with `--json` or when stderr is not a TTY.
 */
export interface TransferProgress {
  advance(bytes: number): void;
  /** Ends the bar (leaving its last line on screen); safe to call twice. */
  finish(): void;
}

export const progressWanted = (json: boolean): boolean => !json && process.stderr.isTTY === true;

export interface ProgressFigures {
  label: string;
  value: number;
  total: number;
  /** Bytes already there when the transfer started (a resumed upload): they do not count toward the rate. */
  startValue: number;
  elapsedMs: number;
}

/** The text after the bar: "12.0 MiB / 40.0 MiB  8.0 MiB/s  ETA 4s". */
export function progressText(f: ProgressFigures): string {
  const moved = f.value - f.startValue;
  const rate = f.elapsedMs > 0 ? (moved * 1000) / f.elapsedMs : 0;
  const left = f.total - f.value;
  const eta = left <= 0 ? '0s' : rate > 0 ? formatDuration(left / rate) : '?';
  return `${formatBytes(f.value)} / ${formatBytes(f.total)}  ${formatBytes(rate)}/s  ETA ${eta}`;
}

const silent: TransferProgress = { advance: () => undefined, finish: () => undefined };

export function startProgress(options: { enabled: boolean; label: string; total: number; startValue?: number }): TransferProgress {
  if (!options.enabled || options.total <= 0) return silent;
  const startValue = options.startValue ?? 0;
  const startedAt = Date.now();
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    hideCursor: true,
    barsize: 30,
    fps: 8,
    format: (opts, params) =>
      `${options.label} ${cliProgress.Format.BarFormat(params.progress, opts)} ${Math.floor(params.progress * 100)}%  ` +
      progressText({ label: options.label, value: params.value, total: params.total, startValue, elapsedMs: Date.now() - startedAt }),
  });
  bar.start(options.total, startValue);
  let done = false;
  return {
    advance: (bytes) => bar.increment(bytes),
    finish: () => {
      if (done) return;
      done = true;
      bar.stop();
    },
  };
}
