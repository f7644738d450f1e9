import type { SchedulingConfig } from '../../spool-bootstrap/config.js';
import type { PartitionCharges } from '../partitions/partition-charges.js';
import type { JobStore } from '../store/job-store.js';
import { periodStartMs, type Budgets, type Spending } from './budgets.js';

type BudgetsConfig = NonNullable<SchedulingConfig['budgets']>;

/** The budget of a user or an account: its own line, else everyone's; null: none. */
const limitOf = (own: Readonly<Record<string, number | null>>, every: number | null, name: string): number | null =>
  Object.prototype.hasOwnProperty.call(own, name) ? own[name]! : every;

/**
 * What each user and account has spent in the current budget period, against its budget: the cost stored with
 * the jobs that ended in the period or have not ended, plus the partition charges running now. Reads the store
 * (the scheduler actor's helper; the decision itself is budgets.ts's, pure). Parties: those named in the
 * configuration, those that spent, and those given (the owners and accounts of queued and running jobs).
 */
export function spendingNow(
  config: BudgetsConfig,
  store: JobStore,
  charges: PartitionCharges,
  nowMs: number,
  parties: { users: Iterable<string>; accounts: Iterable<string> } = { users: [], accounts: [] },
): Budgets {
  const since = new Date(periodStartMs(nowMs, config.period)).toISOString();
  const running = charges.running(nowMs);
  const byUser = new Map<string, number>();
  const byAccount = new Map<string, number>();
  const add = (owner: string, account: string | null, amount: number): void => {
    byUser.set(owner, (byUser.get(owner) ?? 0) + amount);
    if (account) byAccount.set(account, (byAccount.get(account) ?? 0) + amount);
  };
  const seen = new Set<string>();
  for (const r of store.usageSince(since)) {
    seen.add(r.id);
    add(r.owner, r.account, (r.cost ?? 0) + (running.get(r.id) ?? 0));
  }
  for (const [id, amount] of running) {
    if (seen.has(id)) continue;
    const job = store.get(id);
    if (job) add(job.owner, job.account, amount);
  }
  const spending = (names: Iterable<string>, spent: Map<string, number>, own: Readonly<Record<string, number | null>>, every: number | null): Map<string, Spending> => {
    const out = new Map<string, Spending>();
    for (const name of new Set([...names, ...spent.keys(), ...Object.keys(own)])) {
      const limit = limitOf(own, every, name);
      if (limit !== null) out.set(name, { spent: spent.get(name) ?? 0, limit });
    }
    return out;
  };
  return {
    period: config.period,
    currency: config.currency,
    byUser: spending(parties.users, byUser, config.users, config.user),
    byAccount: spending(parties.accounts, byAccount, config.accounts, config.account),
  };
}

/**
 * Why a running job of `owner` (charged to `account`) is to be stopped: its owner's or account's spending has
 * reached `percent` % of its budget. Null: it runs on.
 */
export function pastHardLimit(budgets: Budgets, percent: number, owner: string, account: string | null): string | null {
  const over = (kind: string, name: string, s: Spending | undefined): string | null =>
    s && s.spent >= (s.limit * percent) / 100
      ? `Budget (${kind} ${name}: ${s.spent.toFixed(2)}/${s.limit.toFixed(2)} ${budgets.currency} spent ${budgets.period === 'day' ? 'today' : `this ${budgets.period}`}, past the hard limit of ${percent}%)`
      : null;
  return over('user', owner, budgets.byUser?.get(owner)) ?? (account ? over('account', account, budgets.byAccount?.get(account)) : null);
}
