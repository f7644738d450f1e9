import { expect } from 'chai';
import { admitSubmission, priorityAllowed } from '../core/scheduler/admission.js';
import { schedule, type QueuedJob, type RemoteCapacity, type RunningJob, type Snapshot } from '../core/scheduler/schedule.js';
import type { SchedulingLimits } from '../core/scheduler/quotas.js';
import { DEFAULT_PRIORITY } from '../core/jobs/job-script.js';

const local: RemoteCapacity = { name: 'local', isDefault: true, maxNodes: 32, defaultFlavor: 'small', flavors: new Set(['small']) };
let seq = 0;
const job = (id: string, owner: string, options: Partial<QueuedJob> = {}): QueuedJob => ({ id, owner, priority: 0, seq: ++seq, nodes: 1, ...options });
const running = (jobId: string, owner: string, nodes: number, options: Partial<RunningJob> = {}): RunningJob => ({ jobId, owner, nodes, remote: 'local', endsAtMs: null, ...options });
const snapshot = (queued: QueuedJob[], runningJobs: RunningJob[], limits?: SchedulingLimits): Snapshot => ({
  queued,
  remotes: [local],
  usage: new Map([['local', runningJobs.reduce((n, r) => n + r.nodes, 0)]]),
  running: runningJobs,
  policy: { limits },
});
const pendingOf = (s: Snapshot) => Object.fromEntries(schedule(s).pending.map((p) => [p.jobId, p.reason]));
const assigned = (s: Snapshot): string[] => schedule(s).assignments.map((a) => a.jobId);

describe('scheduler limits', () => {
  describe('per-user and per-account running nodes', () => {
    const limits: SchedulingLimits = { user: { maxRunningNodes: 4 } };

    it("holds a job with QuotaUser while another user's job runs", () => {
      const s = snapshot([job('alice-2', 'alice', { nodes: 2, priority: 5 }), job('bob-1', 'bob', { nodes: 2 })], [running('alice-0', 'alice', 3)], limits);
      expect(assigned(s)).to.deep.equal(['bob-1']);
      const [pending] = schedule(s).pending;
      expect(pending).to.include({ jobId: 'alice-2', code: 'QuotaUser' });
      expect(pending!.reason).to.equal('QuotaUser (user alice: 3 of 4 nodes running, the job needs 2)');
    });

    it('counts the jobs this plan starts', () => {
      const s = snapshot([job('a1', 'alice', { nodes: 2 }), job('a2', 'alice', { nodes: 2 }), job('a3', 'alice', { nodes: 1 }), job('b1', 'bob', { nodes: 4 })], [], limits);
      expect(assigned(s)).to.deep.equal(['a1', 'a2', 'b1']);
      expect(pendingOf(s)).to.have.keys('a3');
    });

    it('counts running nodes on every remote, and lets a job that fits the limit through', () => {
      const s = snapshot([job('a', 'alice', { nodes: 1 })], [running('elsewhere', 'alice', 3, { remote: 'azure' })], limits);
      expect(assigned(s)).to.deep.equal(['a']);
    });

    it('overrides the limit per user, null lifting it', () => {
      const perUser: SchedulingLimits = { user: { maxRunningNodes: 1 }, users: new Map([['root', { maxRunningNodes: null }], ['carol', { maxRunningNodes: 3 }]]) };
      const s = snapshot([job('r', 'root', { nodes: 10 }), job('c', 'carol', { nodes: 3 }), job('d', 'dave', { nodes: 2 })], [], perUser);
      expect(assigned(s)).to.deep.equal(['r', 'c']);
      expect(pendingOf(s).d).to.match(/^QuotaUser/);
    });

    it('holds a job with QuotaAccount when its account runs its limit, whoever submitted it', () => {
      const perAccount: SchedulingLimits = { account: { maxRunningNodes: 4 } };
      const s = snapshot(
        [job('a', 'alice', { account: 'physics', nodes: 2 }), job('b', 'bob', { account: 'chemistry', nodes: 2 }), job('n', 'nick', { nodes: 20 })],
        [running('x', 'erin', 3, { account: 'physics' })],
        perAccount,
      );
      expect(assigned(s)).to.deep.equal(['b', 'n']);
      expect(pendingOf(s).a).to.equal('QuotaAccount (account physics: 3 of 4 nodes running, the job needs 2)');
    });

    it('lets a held job block nobody behind it', () => {
      const s = snapshot([job('held', 'alice', { nodes: 8, priority: 9 }), job('next', 'bob', { nodes: 8 })], [], { users: new Map([['alice', { maxRunningNodes: 4 }]]) });
      expect(assigned(s)).to.deep.equal(['next']);
    });

    it('changes nothing without limits', () => {
      const s = snapshot([job('a', 'alice', { nodes: 16 }), job('b', 'alice', { nodes: 16 })], []);
      expect(assigned(s)).to.deep.equal(['a', 'b']);
    });
  });

  describe('job arrays with a concurrency cap', () => {
    const tasks = (count: number, maxRunning: number | null): QueuedJob[] =>
      Array.from({ length: count }, (_, index) => job(`arr_${index}`, 'alice', { seq: 100, array: { id: 'arr', index, maxRunning } }));

    it('starts at most maxRunning tasks, counting those running, and says ArrayTaskLimit for the rest', () => {
      const queued = tasks(20, 4).slice(1);
      const plan = schedule(snapshot(queued, [running('arr_0', 'alice', 1, { arrayId: 'arr' })]));
      expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['arr_1', 'arr_2', 'arr_3']);
      expect(plan.pending).to.have.length(16);
      for (const p of plan.pending) expect(p.code).to.equal('ArrayTaskLimit');
      expect(plan.pending[0]!.reason).to.equal('ArrayTaskLimit (array arr: 4 of 4 tasks running)');
    });

    it('never has more than the cap running through a whole run of the array', () => {
      let queued = tasks(20, 4);
      let active: RunningJob[] = [];
      const started: string[] = [];
      for (let round = 0; queued.length && round < 50; round++) {
        const plan = schedule(snapshot(queued, active));
        for (const a of plan.assignments) active.push(running(a.jobId, 'alice', 1, { arrayId: 'arr' }));
        expect(active.length, `round ${round}`).to.be.at.most(4);
        started.push(...plan.assignments.map((a) => a.jobId));
        queued = queued.filter((q) => !plan.assignments.some((a) => a.jobId === q.id));
        active = active.slice(2); // two tasks end between runs
      }
      expect(started, 'every task, in index order').to.deep.equal(tasks(20, 4).map((t) => t.id));
    });

    it('does not cap an array without maxRunning, nor other arrays', () => {
      const queued = [...tasks(6, null), job('other_0', 'bob', { array: { id: 'other', index: 0, maxRunning: 1 } })];
      expect(assigned(snapshot(queued, [running('x', 'carol', 1, { arrayId: 'arr' })]))).to.have.length(7);
    });
  });

  describe('admission at submit', () => {
    const none = { byUser: new Map<string, number>(), byAccount: new Map<string, number>() };

    it('admits anything without limits', () => {
      expect(admitSubmission({ owner: 'alice', nodes: 100, jobs: 1000 }, none, undefined)).to.equal(null);
    });

    it("refuses a job beyond its owner's or account's queued-jobs limit", () => {
      const limits: SchedulingLimits = { user: { maxQueuedJobs: 10 }, account: { maxQueuedJobs: 12 } };
      const queued = { byUser: new Map([['alice', 10], ['bob', 3]]), byAccount: new Map([['physics', 11]]) };
      expect(admitSubmission({ owner: 'alice', nodes: 1 }, queued, limits)).to.equal('user alice has 10 jobs queued; one more would exceed the limit of 10');
      expect(admitSubmission({ owner: 'bob', nodes: 1 }, queued, limits)).to.equal(null);
      expect(admitSubmission({ owner: 'bob', account: 'physics', nodes: 1 }, queued, limits)).to.equal(null);
      expect(admitSubmission({ owner: 'bob', account: 'physics', nodes: 1, jobs: 2 }, queued, limits)).to.include('account physics').and.include('2 more');
    });

    it('counts every task of an array', () => {
      const limits: SchedulingLimits = { user: { maxQueuedJobs: 10 } };
      expect(admitSubmission({ owner: 'alice', nodes: 1, jobs: 10 }, none, limits)).to.equal(null);
      expect(admitSubmission({ owner: 'alice', nodes: 1, jobs: 11 }, none, limits)).to.include('11 more');
    });

    it('refuses a job wider than its owner may ever run', () => {
      const limits: SchedulingLimits = { user: { maxRunningNodes: 4 } };
      expect(admitSubmission({ owner: 'alice', nodes: 5 }, none, limits)).to.equal('5 nodes exceed the 4 nodes user alice may run at once');
    });
  });

  describe('priorities above the default', () => {
    it('are for admins only', () => {
      expect(DEFAULT_PRIORITY).to.equal(0);
      expect(priorityAllowed(DEFAULT_PRIORITY, 'user')).to.equal(true);
      expect(priorityAllowed(-100, 'user')).to.equal(true);
      expect(priorityAllowed(1, 'user')).to.equal(false);
      expect(priorityAllowed(1000, 'admin')).to.equal(true);
      expect(priorityAllowed(1, 'monitor')).to.equal(false);
    });
  });
});
