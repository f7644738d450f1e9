import { expect } from 'chai';
import { advanceUsage, decayedUsage, decayFactor, DEFAULT_HALF_LIFE_SEC, fairShareFactors, type RecentUsage } from '../core/scheduler/fair-share.js';
import { DEFAULT_ORDER_WEIGHTS, effectivePriority, rankQueue } from '../core/scheduler/job-order.js';
import { schedule, type QueuedJob, type RemoteCapacity, type Snapshot } from '../core/scheduler/schedule.js';

const HOUR_MS = 3_600_000;
const local: RemoteCapacity = { name: 'local', isDefault: true, maxNodes: 8, defaultFlavor: 'small', flavors: new Set(['small']) };
let seq = 0;
const job = (id: string, owner: string, options: Partial<QueuedJob> = {}): QueuedJob => ({ id, owner, priority: 0, seq: ++seq, nodes: 1, ...options });
const usage = (byUser: Record<string, number>, byAccount: Record<string, number> = {}): RecentUsage => ({
  byUser: new Map(Object.entries(byUser)),
  byAccount: new Map(Object.entries(byAccount)),
});
const order = (queued: QueuedJob[], recentUsage?: RecentUsage, extra: Partial<Snapshot> = {}): string[] =>
  schedule({ queued, remotes: [local], usage: new Map(), recentUsage, ...extra }).assignments.map((a) => a.jobId);

describe('fair share (Slurm multifactor)', () => {
  describe('decay', () => {
    it('halves usage every half-life', () => {
      expect(decayFactor(HOUR_MS, 3600)).to.equal(0.5);
      expect(decayFactor(2 * HOUR_MS, 3600)).to.equal(0.25);
      expect(decayFactor(0, 3600)).to.equal(1);
    });

    it('counts usage from the future in full, and does not decay with a half-life of 0 (as PriorityDecayHalfLife=0)', () => {
      expect(decayFactor(-HOUR_MS, 3600)).to.equal(1);
      expect(decayFactor(10 * HOUR_MS, 0)).to.equal(1);
    });

    it('decays each record from its own end, per user and per account', () => {
      const now = 100 * HOUR_MS;
      const recent = decayedUsage(
        [
          { user: 'alice', account: 'physics', nodeSeconds: 1000, endedAtMs: now - HOUR_MS },
          { user: 'alice', account: 'physics', nodeSeconds: 1000, endedAtMs: now },
          { user: 'bob', nodeSeconds: 400, endedAtMs: now - 2 * HOUR_MS },
        ],
        now,
        3600,
      );
      expect(Object.fromEntries(recent.byUser)).to.deep.equal({ alice: 1500, bob: 100 });
      expect(Object.fromEntries(recent.byAccount)).to.deep.equal({ physics: 1500, '': 100 });
    });

    it('keeps a running total: advancing by one half-life halves it, and two steps equal one', () => {
      const start = advanceUsage(null, 0, 3600, [{ user: 'alice', account: 'physics', nodeSeconds: 800, endedAtMs: 0 }]);
      const later = advanceUsage(start, HOUR_MS, 3600);
      expect(later.byUser.get('alice')).to.equal(400);
      expect(later.byAccount.get('physics')).to.equal(400);
      expect(later.atMs).to.equal(HOUR_MS);
      const record = { user: 'bob', nodeSeconds: 100, endedAtMs: HOUR_MS / 2 };
      const twoSteps = advanceUsage(advanceUsage(start, HOUR_MS, 3600, [record]), 3 * HOUR_MS, 3600);
      const oneStep = advanceUsage(start, 3 * HOUR_MS, 3600, [record]);
      expect(twoSteps.byUser.get('alice')).to.be.closeTo(oneStep.byUser.get('alice')!, 1e-9);
      expect(twoSteps.byUser.get('bob')).to.be.closeTo(oneStep.byUser.get('bob')!, 1e-9);
      expect(oneStep.byUser.get('alice')).to.equal(100);
    });

    it("uses Slurm's default half-life of 7 days", () => {
      expect(DEFAULT_HALF_LIFE_SEC).to.equal(7 * 86_400);
      expect(decayedUsage([{ user: 'a', nodeSeconds: 10, endedAtMs: 0 }], 7 * 86_400_000).byUser.get('a')).to.equal(5);
    });
  });

  describe('factor 2^(−U/S)', () => {
    it('is 1 for everyone without usage', () => {
      const factor = fairShareFactors(undefined, [{ owner: 'alice' }]);
      expect(factor('alice', null)).to.equal(1);
      expect(fairShareFactors(usage({}), [{ owner: 'alice' }])('alice', null)).to.equal(1);
    });

    it("follows Slurm's formula with equal shares, per user times per account", () => {
      // Two users: alice used everything (U = 1, S = 1/2 → 2^-2), bob nothing (→ 1). Same for their accounts.
      const factor = fairShareFactors(usage({ alice: 100 }, { physics: 100 }), [
        { owner: 'alice', account: 'physics' },
        { owner: 'bob', account: 'chemistry' },
      ]);
      expect(factor('alice', 'physics')).to.equal(0.25 * 0.25);
      expect(factor('bob', 'chemistry')).to.equal(1);
      expect(factor('bob', 'physics')).to.equal(0.25);
    });

    it('gives 0.5 to a user who used exactly their share', () => {
      const factor = fairShareFactors(usage({ alice: 50, bob: 50 }), [{ owner: 'alice' }, { owner: 'bob' }]);
      // Each used half with a share of half; no usage is recorded per account, so that level counts 1.
      expect(factor('alice', undefined)).to.equal(0.5);
      // With it: both are in the one account "none", which used all of its share (the whole machine).
      expect(fairShareFactors(usage({ alice: 50, bob: 50 }, { '': 100 }), [{ owner: 'alice' }])('alice', undefined)).to.equal(0.5 * 0.5);
    });
  });

  describe('effective order', () => {
    it("puts a heavy user's job after a light user's of the same priority, even an older one", () => {
      const queued = [job('heavy-old', 'alice'), job('light-young', 'bob')];
      expect(order(queued)).to.deep.equal(['heavy-old', 'light-young']);
      expect(order(queued, usage({ alice: 10_000, bob: 10 }))).to.deep.equal(['light-young', 'heavy-old']);
    });

    it('keeps explicit priority first: fair share only orders jobs of equal priority', () => {
      const queued = [job('heavy-urgent', 'alice', { priority: 1 }), job('light', 'bob'), job('heavy', 'alice')];
      expect(order(queued, usage({ alice: 1e12, bob: 0 }))).to.deep.equal(['heavy-urgent', 'light', 'heavy']);
    });

    it('groups by account: the users of a heavy account go after those of a light one', () => {
      // Neither carol nor dave used anything themselves; erin, in carol's account, used a lot.
      const queued = [job('carol-job', 'carol', { account: 'physics' }), job('dave-job', 'dave', { account: 'chemistry' })];
      const recent = usage({ erin: 5000 }, { physics: 5000 });
      expect(order(queued, recent)).to.deep.equal(['dave-job', 'carol-job']);
    });

    it('lets a site weigh fair share above one step of priority', () => {
      const queued = [job('heavy-urgent', 'alice', { priority: 1 }), job('light', 'bob')];
      const recent = usage({ alice: 1000, bob: 0 });
      expect(order(queued, recent, { policy: { weights: { fairShare: 5000 } } })).to.deep.equal(['light', 'heavy-urgent']);
    });

    it('combines the terms as weights.priority × priority + weights.fairShare × factor', () => {
      expect(effectivePriority(2, 0.5, { priority: 1000, fairShare: 100 })).to.equal(2050);
      const [first] = rankQueue([job('x', 'alice', { priority: 3 })], usage({ alice: 1, bob: 1 }));
      expect(first!.effective).to.equal(DEFAULT_ORDER_WEIGHTS.priority * 3 + DEFAULT_ORDER_WEIGHTS.fairShare * first!.fairShare);
    });

    it('never lets fair share overturn a priority difference under the default weights, however lopsided the usage', () => {
      for (const heavy of [1, 1e3, 1e9, 1e300]) {
        const ranked = rankQueue([job('low', 'light', { priority: -1 }), job('high', 'heavy')], usage({ heavy, light: 0, third: 0 }));
        expect(ranked.map((r) => r.job.id), `usage ${heavy}`).to.deep.equal(['high', 'low']);
      }
    });

    it('keeps array tasks of one submission in index order', () => {
      const queued = [2, 0, 1].map((index) => job(`t${index}`, 'alice', { seq: 500, array: { id: 'arr', index, maxRunning: null } }));
      expect(order(queued)).to.deep.equal(['t0', 't1', 't2']);
    });
  });
});
