/**
 * Fair share, after Slurm's multifactor priority plugin (priority/multifactor, classic fair-share algorithm:
 * https://slurm.schedmd.com/priority_multifactor.html and https://slurm.schedmd.com/classic_fair_share.html).
 *
 * Usage is node-seconds (nodes × seconds held), decayed so that usage `halfLifeSec` old counts half
 * (Slurm's PriorityDecayHalfLife, 7 days by default there and here):
 *
 *   decayed = nodeSeconds × 2^(−age / halfLife)
 *
 * The factor of one level (users, or accounts) is Slurm's
 *
 *   F = 2^(−U / S)      U = the party's decayed usage / everyone's at that level (normalized usage, 0..1)
 *                       S = the party's normalized share: 1 / (number of parties), all shares being equal
 *
 * so F = 1 for no recent usage, 0.5 for a party that used exactly its share, less for more. A job's fair-share
 * factor is its owner's F times its account's F (jobs without an account form one account): a heavy account
 * lowers all its users, a heavy user lowers only their own jobs. The parties counted are those with usage and
 * those with jobs queued.
 */

export interface UsageRecord {
  user: string;
  account?: string | null;
  nodeSeconds: number;
  /** When the usage ended (a running job's usage so far: now). */
  endedAtMs: number;
}

/** Decayed node-seconds per user and per account (the account of jobs without one is NO_ACCOUNT). */
export interface RecentUsage {
  byUser: ReadonlyMap<string, number>;
  byAccount: ReadonlyMap<string, number>;
}

/** Running totals, decayed to `atMs`. */
export interface UsageTotals extends RecentUsage {
  atMs: number;
}

/** Slurm's default PriorityDecayHalfLife. */
export const DEFAULT_HALF_LIFE_SEC = 7 * 86_400;

/** The account key of jobs and usage that name no account: they share one. */
export const NO_ACCOUNT = '';

/** The key an account is counted under. */
export const accountKey = (account: string | null | undefined): string => account ?? NO_ACCOUNT;

/**
 * How much usage `elapsedMs` old still counts: 2^(−elapsed / halfLife). A future time counts in full; a half-life
 * of 0 (or Infinity) turns decay off, as PriorityDecayHalfLife=0 does in Slurm.
 */
export function decayFactor(elapsedMs: number, halfLifeSec: number): number {
  if (elapsedMs <= 0 || !(halfLifeSec > 0) || halfLifeSec === Infinity) return 1;
  return 2 ** (-elapsedMs / (halfLifeSec * 1000));
}

const add = (map: Map<string, number>, key: string, value: number): void => {
  map.set(key, (map.get(key) ?? 0) + value);
};

/** Each user's and account's usage records, decayed to `nowMs` and summed. */
export function decayedUsage(records: Iterable<UsageRecord>, nowMs: number, halfLifeSec: number = DEFAULT_HALF_LIFE_SEC): RecentUsage {
  return advanceUsage(null, nowMs, halfLifeSec, records);
}

/**
 * Running totals decayed from their time to `nowMs`, with new records added (each decayed from its own end), so
 * that usage can be kept as a few numbers instead of re-read: a(t2) = a(t1) × 2^(−(t2 − t1) / halfLife) + new.
 * Pure: returns new totals.
 */
export function advanceUsage(totals: UsageTotals | null, nowMs: number, halfLifeSec: number = DEFAULT_HALF_LIFE_SEC, records: Iterable<UsageRecord> = []): UsageTotals {
  const byUser = new Map<string, number>();
  const byAccount = new Map<string, number>();
  if (totals) {
    const kept = decayFactor(nowMs - totals.atMs, halfLifeSec);
    for (const [user, value] of totals.byUser) add(byUser, user, value * kept);
    for (const [account, value] of totals.byAccount) add(byAccount, account, value * kept);
  }
  for (const r of records) {
    if (!(r.nodeSeconds > 0)) continue;
    const value = r.nodeSeconds * decayFactor(nowMs - r.endedAtMs, halfLifeSec);
    add(byUser, r.user, value);
    add(byAccount, accountKey(r.account), value);
  }
  return { byUser, byAccount, atMs: nowMs };
}

/** One level's F = 2^(−U/S) for each party, given every party at the level. */
function levelFactor(usage: ReadonlyMap<string, number>, parties: ReadonlySet<string>): (party: string) => number {
  let total = 0;
  for (const value of usage.values()) if (value > 0) total += value;
  if (total <= 0 || parties.size === 0) return () => 1;
  const share = 1 / parties.size;
  return (party) => 2 ** (-(Math.max(0, usage.get(party) ?? 0) / total) / share);
}

/**
 * The fair-share factor, in (0, 1], of a job by its owner and account: F(user) × F(account), as above. Without
 * usage, 1 for everyone (the order is then explicit priority and age alone).
 */
export function fairShareFactors(
  usage: RecentUsage | undefined,
  jobs: Iterable<{ owner?: string; account?: string | null }>,
): (owner: string | undefined, account: string | null | undefined) => number {
  if (!usage) return () => 1;
  const users = new Set(usage.byUser.keys());
  const accounts = new Set(usage.byAccount.keys());
  for (const job of jobs) {
    users.add(job.owner ?? '');
    accounts.add(accountKey(job.account));
  }
  const user = levelFactor(usage.byUser, users);
  const account = levelFactor(usage.byAccount, accounts);
  return (owner, acct) => user(owner ?? '') * account(accountKey(acct));
}
