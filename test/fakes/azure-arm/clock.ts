/**
 * The fake's time. Every duration the fake is configured with (operation delays, the guest-ready delay,
 * group propagation, throttling refills, Retry-After) is in simulated time; with `scale` > 1 the fake runs
 * that many times faster than the wall clock, so a benchmark can play minutes of Azure in seconds and
 * report simulated figures (wall time × scale). Absolute times (an expiry tag, a node's shutdown timer) are
 * wall-clock times and are not scaled.
 */
export class FakeClock {
  private current: number;

  constructor(scale = 1) {
    this.current = FakeClock.check(scale);
  }

  get scale(): number {
    return this.current;
  }

  /** Changes the scale for what starts from now on (a benchmark measures a step on the real clock). */
  set scale(scale: number) {
    this.current = FakeClock.check(scale);
  }

  private static check(scale: number): number {
    if (!(scale > 0) || !Number.isFinite(scale)) throw new Error(`time scale must be a positive number, not ${scale}`);
    return scale;
  }

  /** Real milliseconds for `simulatedMs` of simulated time. */
  real(simulatedMs: number): number {
    return simulatedMs / this.scale;
  }

  /**
   * Azure's `Retry-After` (whole seconds) for a wait of `simulatedSec`; with a scaled clock, also
   * `retry-after-ms` with the exact real wait (a whole second would be most of a scaled run).
   */
  retryAfter(simulatedSec: number): Record<string, string> {
    const realMs = this.real(simulatedSec * 1000);
    const headers: Record<string, string> = { 'Retry-After': String(Math.max(this.scale === 1 ? 0 : 1, Math.ceil(realMs / 1000))) };
    if (this.scale !== 1) headers['retry-after-ms'] = String(Math.max(1, Math.round(realMs)));
    return headers;
  }
}
