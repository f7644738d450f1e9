import { expect } from 'chai';
import { budgetExhausted, periodStartMs, type Budgets } from '../core/scheduler/budgets.js';
import { schedule, type QueuedJob, type RemoteCapacity, type Snapshot } from '../core/scheduler/schedule.js';

const local: RemoteCapacity = { name: 'local', isDefault: true, maxNodes: 8, defaultFlavor: 'small', flavors: new Set(['small']) };
let seq = 0;
const job = (id: string, owner: string, options: Partial<QueuedJob> = {}): QueuedJob => ({ id, owner, priority: 0, seq: ++seq, nodes: 1, ...options });
const snapshot = (queued: QueuedJob[], budgets: Budgets): Snapshot => ({ queued, remotes: [local], usage: new Map(), budgets });
const utc = (iso: string): number => Date.parse(iso);

describe('budgets', () => {
  describe('periods (UTC)', () => {
    // 2024-03-14 is a Thursday.
    const now = utc('2024-03-14T15:30:12.345Z');

    it('start at midnight, on Monday, on the first of the month', () => {
      expect(new Date(periodStartMs(now, 'day')).toISOString()).to.equal('2024-03-14T00:00:00.000Z');
      expect(new Date(periodStartMs(now, 'week')).toISOString()).to.equal('2024-03-11T00:00:00.000Z');
      expect(new Date(periodStartMs(now, 'month')).toISOString()).to.equal('2024-03-01T00:00:00.000Z');
    });

    it('put a Sunday in the week that began the Monday before, and a Monday in its own', () => {
      expect(new Date(periodStartMs(utc('2024-03-17T23:59:59Z'), 'week')).toISOString()).to.equal('2024-03-11T00:00:00.000Z');
      expect(new Date(periodStartMs(utc('2024-03-18T00:00:00Z'), 'week')).toISOString()).to.equal('2024-03-18T00:00:00.000Z');
    });

    it('cross year and leap-day boundaries', () => {
      expect(new Date(periodStartMs(utc('2025-01-01T00:30:00Z'), 'week')).toISOString()).to.equal('2024-12-30T00:00:00.000Z');
      expect(new Date(periodStartMs(utc('2024-02-29T12:00:00Z'), 'month')).toISOString()).to.equal('2024-02-01T00:00:00.000Z');
    });
  });

  describe('holding jobs', () => {
    const budgets: Budgets = {
      period: 'month',
      currency: 'USD',
      byUser: new Map([
        ['alice', { spent: 12.3, limit: 10 }],
        ['bob', { spent: 9.99, limit: 10 }],
        ['carol', { spent: 10, limit: 10 }],
      ]),
      byAccount: new Map([['physics', { spent: 501, limit: 500 }]]),
    };

    it("does not start a job whose owner spent their budget, and says so with the figures", () => {
      const plan = schedule(snapshot([job('a', 'alice', { priority: 5 }), job('b', 'bob')], budgets));
      expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['b']);
      expect(plan.pending).to.deep.equal([{ jobId: 'a', code: 'Budget', reason: 'Budget (user alice: 12.30/10.00 USD this month)', position: 1 }]);
    });

    it('holds at the limit exactly', () => {
      expect(budgetExhausted('carol', null, budgets)).to.equal('user carol: 10.00/10.00 USD this month');
    });

    it("holds a job whose account spent its budget, whoever's it is", () => {
      expect(budgetExhausted('bob', 'physics', budgets)).to.equal('account physics: 501.00/500.00 USD this month');
      const plan = schedule(snapshot([job('p', 'bob', { account: 'physics' }), job('q', 'bob', { account: 'chemistry' })], budgets));
      expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['q']);
      expect(plan.pending[0]!.code).to.equal('Budget');
    });

    it('names the period in words', () => {
      expect(budgetExhausted('alice', null, { ...budgets, period: 'day' })).to.match(/USD today$/);
      expect(budgetExhausted('alice', null, { ...budgets, period: 'week', currency: 'EUR' })).to.match(/EUR this week$/);
    });

    it('lets users without a budget, and everyone when there are no budgets, run', () => {
      expect(budgetExhausted('dave', null, budgets)).to.equal(null);
      expect(budgetExhausted('alice', null, undefined)).to.equal(null);
    });

    it('lets a held job block nobody behind it', () => {
      const plan = schedule(snapshot([job('wide', 'alice', { nodes: 8, priority: 9 }), job('next', 'dave', { nodes: 8 })], budgets));
      expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['next']);
    });
  });
});
