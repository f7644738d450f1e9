/**
 * `#SWM spot`: the job runs on spot (preemptible) nodes, cheaper, that the cloud may take back.
 *   #SWM spot                 spot nodes at the gate's maximum price
 *   #SWM spot 0.05            spot nodes that may cost at most 0.05 an hour each (the flavor's currency)
 *   #SWM spot fallback        spot, then on-demand when preempted once more than limits.maxPreemptions allows
 *   #SWM spot no              on-demand, even on a remote whose gate makes spot nodes by default
 */
export interface SpotDirective {
  /** The most a node may cost an hour; absent: the gate's maximum. */
  maxPrice?: number;
  /** Preempted once more than `limits.maxPreemptions` allows, run on on-demand nodes rather than end. */
  fallback: boolean;
}

/** Preemptions a job is queued again after, unless configured (limits.maxPreemptions). */
export const DEFAULT_MAX_PREEMPTIONS = 3;

/** What a partition for the job is asked as: spot or not (null: the gate's default), and its maximum price. */
export interface SpotChoice {
  spot: boolean | null;
  maxPrice: number | null;
}

/** Parse the value of `#SWM spot`: the directive, or a reason it is not one. Pure. */
export function parseSpot(value: string): SpotDirective | false | string {
  const words = value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 1 && /^(no|false|off)$/.test(words[0]!)) return false;
  const spot: SpotDirective = { fallback: false };
  for (const word of words) {
    if (/^(yes|true|on)$/.test(word)) continue;
    if (word === 'fallback') spot.fallback = true;
    else if (/^\d+(\.\d+)?$/.test(word) && Number(word) > 0) {
      if (spot.maxPrice !== undefined) return 'a maximum price given twice';
      spot.maxPrice = Number(word);
    } else return `"${word}" is not a maximum price, "fallback" or "no" (e.g. #SWM spot 0.05 fallback)`;
  }
  return spot;
}

/**
 * The partition a job is to be given, by its directive and how often it was preempted (its queueing attempts):
 * a spot job is queued again after each of its first `maxPreemptions` preemptions, and after the next it ends,
 * unless it has `fallback`: then it is queued once more, for on-demand nodes. Pure.
 */
export function spotChoice(directive: SpotDirective | false | undefined | null, preempted: number, maxPreemptions: number): SpotChoice {
  if (directive === false) return { spot: false, maxPrice: null };
  if (!directive) return { spot: null, maxPrice: null };
  if (directive.fallback && preempted > maxPreemptions) return { spot: false, maxPrice: null };
  return { spot: true, maxPrice: directive.maxPrice ?? null };
}

/**
 * What a node of `flavor` costs an hour on spot or on-demand nodes: the spot price where the gate publishes one.
 * A partition at the gate's default (spot null) is priced on-demand: never under what it may cost. Pure.
 */
export function hourlyPrice(flavor: { pricePerHour?: number; spotPrice?: number } | undefined, spot: boolean | null | undefined): number | undefined {
  return spot && flavor?.spotPrice !== undefined ? flavor.spotPrice : flavor?.pricePerHour;
}
