import { readFileSync } from 'node:fs';

/** Latency figures of one run, in milliseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** The nearest-rank percentile (p in 0..100) of unsorted samples; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (!samples.length) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(samples: readonly number[]): LatencySummary {
  return {
    count: samples.length,
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    max: samples.length ? Math.max(...samples) : NaN,
  };
}

/** Events per second over a wall-clock span in milliseconds. */
export const ratePerSec = (count: number, wallMs: number): number => (wallMs > 0 ? (count * 1000) / wallMs : NaN);

export const fmtMs = (ms: number): string => (Number.isFinite(ms) ? (ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)) + ' ms' : 'n/a');

export const fmtRate = (perSec: number, unit: string): string => (Number.isFinite(perSec) ? `${perSec.toFixed(perSec < 100 ? 1 : 0)} ${unit}/s` : 'n/a');

export const fmtLatency = (s: LatencySummary): string => `p50 ${fmtMs(s.p50)}  p99 ${fmtMs(s.p99)}  max ${fmtMs(s.max)}  (n=${s.count})`;

/** "ours / theirs" as "3.2x"; the peer's figure may be missing. */
export const fmtRatio = (ours: number, theirs: number | null | undefined): string =>
  theirs && Number.isFinite(theirs) && theirs > 0 && Number.isFinite(ours) ? `${(ours / theirs).toFixed(2)}x` : 'n/a';

/** CPU seconds over a wall-clock span, with the share of one core it amounts to. */
export const fmtCpu = (cpuSec: number | null, wallMs: number): string =>
  cpuSec === null ? 'n/a' : `${cpuSec.toFixed(2)} CPU-s (${((cpuSec * 100000) / wallMs).toFixed(0)}% of one core)`;

export const fmtMiB = (kib: number | null): string => (kib === null ? 'n/a' : `${(kib / 1024).toFixed(1)} MiB`);

/**
 * A process's peak resident set size in KiB (VmHWM of /proc/<pid>/status), or null when the process is
 * gone or the system has no procfs. Read it before the process exits.
 */
export function peakRssKiB(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** A process's resident set size now in KiB (VmRSS of /proc/<pid>/status), or null when unknown. */
export function rssKiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Print aligned "label  value" lines under a heading. */
export function printSection(title: string, rows: [string, string][]): void {
  const width = Math.max(...rows.map(([label]) => label.length));
  process.stdout.write(`\n${title}\n`);
  for (const [label, value] of rows) process.stdout.write(`  ${label.padEnd(width)}  ${value}\n`);
}

/** CPU time (user + system, seconds) a process has used so far, from /proc/<pid>/stat; null when unknown. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SEC;
  } catch {
    return null;
  }
}

/** USER_HZ: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SEC = 100;
