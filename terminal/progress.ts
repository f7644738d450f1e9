import cliProgress from 'cli-progress';
import { formatBytes, formatDuration } from './format.js';

/**
 * A transfer progress bar on stderr (bytes, files, rate, ETA) for people watching a terminal. Scripts get
 * silence: no bar with `--json` or when stderr is not a TTY.
 */
export interface TransferProgress {
  advance(bytes: number): void;
  /** One more file is complete. */
  fileDone(): void;
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
  /** Files complete and in all (absent: bytes only). */
  files?: { done: number; total: number };
}

/** The text after the bar: "12.0 MiB / 40.0 MiB  3/12 files  8.0 MiB/s  ETA 4s". */
export function progressText(f: ProgressFigures): string {
  const moved = f.value - f.startValue;
  const rate = f.elapsedMs > 0 ? (moved * 1000) / f.elapsedMs : 0;
  const left = f.total - f.value;
  const eta = left <= 0 ? '0s' : rate > 0 ? formatDuration(left / rate) : '?';
  const files = f.files ? `  ${f.files.done}/${f.files.total} file${f.files.total === 1 ? '' : 's'}` : '';
  return `${formatBytes(f.value)} / ${formatBytes(f.total)}${files}  ${formatBytes(rate)}/s  ETA ${eta}`;
}

const silent: TransferProgress = { advance: () => undefined, fileDone: () => undefined, finish: () => undefined };

export function startProgress(options: {
  enabled: boolean;
  label: string;
  total: number;
  startValue?: number;
  /** Files in all, and those complete before the transfer started. */
  files?: { total: number; done?: number };
}): TransferProgress {
  if (!options.enabled || options.total <= 0) return silent;
  const startValue = options.startValue ?? 0;
  const files = options.files ? { total: options.files.total, done: options.files.done ?? 0 } : undefined;
  const startedAt = Date.now();
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    hideCursor: true,
    barsize: 30,
    fps: 8,
    format: (opts, params) =>
      `${options.label} ${cliProgress.Format.BarFormat(params.progress, opts)} ${Math.floor(params.progress * 100)}%  ` +
      progressText({ label: options.label, value: params.value, total: params.total, startValue, elapsedMs: Date.now() - startedAt, files }),
  });
  bar.start(options.total, startValue);
  let done = false;
  return {
    advance: (bytes) => bar.increment(bytes),
    fileDone: () => {
      if (!files) return;
      files.done++;
      bar.increment(0);
    },
    finish: () => {
      if (done) return;
      done = true;
      bar.stop();
    },
  };
}
