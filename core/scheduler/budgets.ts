/**
 * Budgets: what a user or an account may spend per period (day, week, month; periods start at midnight UTC,
 * weeks on Monday). The core sums what was spent since periodStartMs() and puts it in the snapshot; a job whose
 * owner or account has spent its limit or more is not started until the next period (or a higher limit). Jobs
 * already started run on: a budget stops new work, it does not kill work.
 */

export type BudgetPeriod = 'day' | 'week' | 'month';

/** Spending of one user or account in the current period, in the budget's currency. */
export interface Spending {
  spent: number;
  limit: number;
}

export interface Budgets {
  period: BudgetPeriod;
  /** The currency amounts are in (`USD`), as flavor prices are. */
  currency: string;
  byUser?: ReadonlyMap<string, Spending>;
  byAccount?: ReadonlyMap<string, Spending>;
}

const DAY_MS = 86_400_000;

/** When the period containing `nowMs` began (epoch ms, UTC). */
export function periodStartMs(nowMs: number, period: BudgetPeriod): number {
  const now = new Date(nowMs);
  const midnight = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  switch (period) {
    case 'day':
      return midnight;
    case 'week':
      // getUTCDay: Sunday 0 … Saturday 6; weeks start on Monday (ISO 8601).
      return midnight - ((now.getUTCDay() + 6) % 7) * DAY_MS;
    case 'month':
      return Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  }
}

const PERIOD_WORDS: Record<BudgetPeriod, string> = { day: 'today', week: 'this week', month: 'this month' };

/**
 * Why a job of `owner` (charged to `account`) may not start for lack of budget, e.g. `user alice: 12.30/10.00 USD
 * this month`, or null when both have budget left (or have none set).
 */
export function budgetExhausted(owner: string | undefined, account: string | null | undefined, budgets: Budgets | undefined): string | null {
  if (!budgets) return null;
  const over = (kind: 'user' | 'account', name: string, s: Spending | undefined): string | null =>
    s && s.spent >= s.limit ? `${kind} ${name}: ${s.spent.toFixed(2)}/${s.limit.toFixed(2)} ${budgets.currency} ${PERIOD_WORDS[budgets.period]}` : null;
  return (
    (owner !== undefined ? over('user', owner, budgets.byUser?.get(owner)) : null) ??
    (account ? over('account', account, budgets.byAccount?.get(account)) : null)
  );
}
