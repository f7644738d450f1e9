import { expect } from 'chai';
import { withPositions } from '../core/scheduler/pending-reasons.js';
import { schedule, type QueuedJob, type RemoteCapacity, type Snapshot } from '../core/scheduler/schedule.js';

const remote = (name: string, options: Partial<RemoteCapacity> = {}): RemoteCapacity => ({ name, isDefault: false, maxNodes: 32, defaultFlavor: 'small', flavors: new Set(['small']), ...options });
let seq = 0;
const job = (id: string, options: Partial<QueuedJob> = {}): QueuedJob => ({ id, priority: 0, seq: ++seq, nodes: 1, owner: 'alice', ...options });
const reasons = (s: Snapshot) => schedule(s).pending.map((p) => [p.jobId, p.reason, p.position]);

describe('pending reasons and positions', () => {
  const local = remote('local', { isDefault: true });

  it('says Resources for the first job that does not fit, and Priority for those behind it, numbered in order', () => {
    const s: Snapshot = { queued: [job('wide', { nodes: 4, priority: 1 }), job('a'), job('b', { priority: -1 })], remotes: [local], usage: new Map([['local', 32]]) };
    expect(reasons(s)).to.deep.equal([
      ['wide', 'Resources (remote local: 32/32 nodes in use)', 1],
      ['a', 'Priority (job wide is ahead on remote local)', 2],
      ['b', 'Priority (job wide is ahead on remote local)', 3],
    ]);
  });

  it('counts the nodes this plan gives in what is in use', () => {
    const s: Snapshot = { queued: [job('first', { nodes: 30 }), job('second', { nodes: 4 })], remotes: [local], usage: new Map() };
    expect(reasons(s)).to.deep.equal([['second', 'Resources (remote local: 30/32 nodes in use)', 1]]);
  });

  it('numbers each remote on its own, leaving out jobs started or rejected', () => {
    const azure = remote('azure', { maxNodes: 2 });
    const s: Snapshot = {
      queued: [job('l-runs'), job('a-runs', { remote: 'azure', nodes: 2 }), job('bad', { remote: 'mars' }), job('a-waits', { remote: 'azure' }), job('l-wide', { nodes: 32 }), job('a-last', { remote: 'azure' })],
      remotes: [local, azure],
      usage: new Map(),
    };
    expect(schedule(s).pending.map((p) => [p.jobId, p.code, p.position])).to.deep.equal([
      ['a-waits', 'Resources', 1],
      ['l-wide', 'Resources', 1],
      ['a-last', 'Priority', 2],
    ]);
  });

  it('gives every queued job exactly one outcome: assigned, rejected or pending', () => {
    const gone = remote('gone', { flavors: null, unavailable: 'gate gone is not answering (no heartbeat for 6 s)' });
    const silent = remote('silent', { flavors: null });
    const queued = [
      job('runs'),
      job('wide', { nodes: 40 }),
      job('dep', { depends: [{ kind: 'afterok', jobIds: ['x'] }] }),
      job('gate', { remote: 'gone' }),
      job('flavors', { remote: 'silent' }),
      job('broke', { owner: 'bob' }),
      job('quota', { owner: 'carol', nodes: 3 }),
      job('array', { array: { id: 'arr', index: 1, maxRunning: 1 } }),
      job('blocker', { nodes: 31 }),
      job('behind'),
    ];
    const plan = schedule({
      queued,
      remotes: [local, gone, silent],
      usage: new Map([['local', 1]]),
      outcomes: new Map([['x', 'pending']]),
      budgets: { period: 'month', currency: 'USD', byUser: new Map([['bob', { spent: 5, limit: 1 }]]) },
      policy: { limits: { users: new Map([['carol', { maxRunningNodes: 2 }]]) } },
      running: [{ jobId: 'arr_0', remote: 'local', nodes: 1, endsAtMs: null, arrayId: 'arr' }],
    });
    expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['runs']);
    expect(plan.rejections.map((r) => r.jobId)).to.deep.equal(['wide']);
    expect(plan.pending.map((p) => [p.jobId, p.code])).to.deep.equal([
      ['dep', 'Dependency'],
      ['gate', 'GateUnavailable'],
      ['flavors', 'WaitingForFlavors'],
      ['broke', 'Budget'],
      ['quota', 'QuotaUser'],
      ['array', 'ArrayTaskLimit'],
      ['blocker', 'Resources'],
      ['behind', 'Priority'],
    ]);
    const seen = [...plan.assignments.map((a) => a.jobId), ...plan.rejections.map((r) => r.jobId), ...plan.pending.map((p) => p.jobId)];
    expect(seen.sort()).to.deep.equal(queued.map((q) => q.id).sort());
  });

  it('keeps listing gate waits in `waiting`, and lists them in `pending` too', () => {
    const down = remote('local', { isDefault: true, flavors: null, unavailable: 'gate local is not answering' });
    const plan = schedule({ queued: [job('a')], remotes: [down], usage: new Map() });
    expect(plan.waiting).to.deep.equal([{ jobId: 'a', reason: 'gate local is not answering' }]);
    expect(plan.pending).to.deep.equal([{ jobId: 'a', code: 'GateUnavailable', reason: 'GateUnavailable (gate local is not answering)', position: 1 }]);
  });

  it('orders positions by effective priority, fair share included', () => {
    const s: Snapshot = {
      queued: [job('heavy', { owner: 'alice' }), job('light', { owner: 'bob' })],
      remotes: [local],
      usage: new Map([['local', 32]]),
      recentUsage: { byUser: new Map([['alice', 1000]]), byAccount: new Map() },
    };
    expect(schedule(s).pending.map((p) => [p.jobId, p.position])).to.deep.equal([
      ['light', 1],
      ['heavy', 2],
    ]);
  });

  it('withPositions numbers per remote and skips jobs of no remote', () => {
    const entry = (jobId: string, remote: string | null) => ({ jobId, code: 'Priority' as const, reason: 'Priority', remote });
    expect(withPositions([entry('a', 'x'), entry('b', null), entry('c', 'x'), entry('d', 'y')]).map((p) => [p.jobId, p.position])).to.deep.equal([
      ['a', 1],
      ['b', undefined],
      ['c', 2],
      ['d', 1],
    ]);
  });
});
