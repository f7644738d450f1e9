/** Sizes as `state_details` shows them: "data uploaded 1.2 GB / 3.4 GB". Pure. */
export const formatBytes = (n: number): string =>
  n >= 1024 ** 3
    ? `${(n / 1024 ** 3).toFixed(1)} GB`
    : n >= 1024 ** 2
      ? `${(n / 1024 ** 2).toFixed(1)} MB`
      : n >= 1024
        ? `${(n / 1024).toFixed(1)} KB`
        : `${n} B`;

/**
 * Reports a transfer's progress at most every `everyMs` (each report is a committed job change that every
 * subscriber hears, so not one per block), and once more at the end.
 */
export class ProgressReporter {
  private done = 0;
  private lastAt = 0;
  private lastText = '';

  constructor(
    private readonly total: number,
    private readonly describe: (done: number, total: number) => string,
    private readonly report: (details: string) => void,
    private readonly everyMs = 500,
  ) {}

  set(done: number): void {
    this.done = done;
    const now = Date.now();
    if (now - this.lastAt >= this.everyMs) this.flush(now);
  }

  add(bytes: number): void {
    this.set(this.done + bytes);
  }

  get value(): number {
    return this.done;
  }

  flush(now = Date.now()): void {
    const text = this.describe(Math.min(this.done, this.total), this.total);
    this.lastAt = now;
    if (text === this.lastText) return;
    this.lastText = text;
    this.report(text);
  }
}
