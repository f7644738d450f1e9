/**
 * The longest delay a timer holds: setTimeout takes a 32-bit signed delay, and a longer one overflows and fires
 * at once (Node warns and waits 1 ms). A 25-day time limit is past it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** What a deadline timer needs of time; the system's by default, a fake one in tests. */
export interface TimerClock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemClock: TimerClock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** A pending call at a wall-clock time. */
export interface DeadlineTimer {
  /** When it is due (epoch ms). */
  readonly at: number;
  cancel(): void;
}

/**
 * Call `onDue` once at `at` (epoch ms), however far away: a delay longer than a timer holds is waited in steps
 * of at most MAX_TIMER_MS, each step looking at the clock again. A deadline already past is due at once.
 */
export function armDeadline(at: number, onDue: () => void, clock: TimerClock = systemClock): DeadlineTimer {
  let handle: unknown = null;
  let cancelled = false;
  const step = (): void => {
    handle = null;
    if (cancelled) return;
    const left = at - clock.now();
    if (left <= 0) {
      cancelled = true;
      onDue();
      return;
    }
    handle = clock.setTimeout(step, Math.min(left, MAX_TIMER_MS));
  };
  const left = Math.max(0, at - clock.now());
  handle = clock.setTimeout(step, Math.min(left, MAX_TIMER_MS));
  return {
    at,
    cancel: () => {
      cancelled = true;
      if (handle !== null) clock.clearTimeout(handle);
      handle = null;
    },
  };
}
