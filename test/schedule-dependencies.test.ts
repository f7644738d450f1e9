import { expect } from 'chai';
import { dependencyIds, dependencyOutcome, dependencyState, type Dependency, type DependencyOutcome } from '../core/scheduler/dependencies.js';
import { schedule, type QueuedJob, type RemoteCapacity, type Snapshot } from '../core/scheduler/schedule.js';

const local: RemoteCapacity = { name: 'local', isDefault: true, maxNodes: 8, defaultFlavor: 'small', flavors: new Set(['small']) };
let seq = 0;
const job = (id: string, options: Partial<QueuedJob> = {}): QueuedJob => ({ id, priority: 0, seq: ++seq, nodes: 1, owner: 'alice', ...options });
const after = (kind: Dependency['kind'], ...jobIds: string[]): Dependency[] => [{ kind, jobIds }];
const snapshot = (queued: QueuedJob[], outcomes: Record<string, DependencyOutcome>): Snapshot => ({
  queued,
  remotes: [local],
  usage: new Map(),
  outcomes: new Map(Object.entries(outcomes)),
});

describe('job dependencies', () => {
  it('keeps a job waiting with Dependency while a job it depends on has not ended', () => {
    const plan = schedule(snapshot([job('second', { depends: after('afterok', 'first') })], { first: 'pending' }));
    expect(plan.assignments).to.deep.equal([]);
    expect(plan.rejections).to.deep.equal([]);
    expect(plan.pending).to.deep.equal([{ jobId: 'second', code: 'Dependency', reason: 'Dependency (afterok:first pending)', position: 1 }]);
  });

  it('starts it once the dependency is met', () => {
    const second = job('second', { depends: after('afterok', 'first') });
    expect(schedule(snapshot([second], { first: 'ok' })).assignments.map((a) => a.jobId)).to.deep.equal(['second']);
  });

  it('waits for every job of every clause', () => {
    const depends: Dependency[] = [
      { kind: 'afterok', jobIds: ['a', 'b'] },
      { kind: 'afterany', jobIds: ['c'] },
    ];
    const pendingOn = (outcomes: Record<string, DependencyOutcome>) => schedule(snapshot([job('j', { depends })], outcomes)).pending[0]?.reason ?? 'started';
    expect(pendingOn({ a: 'ok', b: 'pending', c: 'failed' })).to.equal('Dependency (afterok:b pending)');
    expect(pendingOn({ a: 'ok', b: 'ok', c: 'pending' })).to.equal('Dependency (afterany:c pending)');
    expect(pendingOn({ a: 'ok', b: 'ok', c: 'failed' })).to.equal('started');
  });

  it('runs afterany after any end, and afternotok only after a failure', () => {
    expect(dependencyState(after('afterany', 'x'), new Map([['x', 'ok']]))).to.deep.equal({ met: true });
    expect(dependencyState(after('afterany', 'x'), new Map([['x', 'failed']]))).to.deep.equal({ met: true });
    expect(dependencyState(after('afternotok', 'x'), new Map([['x', 'failed']]))).to.deep.equal({ met: true });
    expect(dependencyState(after('afternotok', 'x'), new Map([['x', 'pending']]))).to.deep.equal({ met: false, on: 'afternotok:x' });
  });

  it('rejects a job whose dependency can never be met, saying which and why', () => {
    const queued = [
      job('needs-ok', { depends: after('afterok', 'first') }),
      job('needs-failure', { depends: after('afternotok', 'good') }),
      job('typo', { depends: after('afterany', 'nosuch') }),
    ];
    const plan = schedule(snapshot(queued, { first: 'failed', good: 'ok' }));
    expect(plan.rejections).to.deep.equal([
      { jobId: 'needs-ok', reason: 'DependencyNeverSatisfied (afterok:first ended failed)' },
      { jobId: 'needs-failure', reason: 'DependencyNeverSatisfied (afternotok:good ended ok)' },
      { jobId: 'typo', reason: 'DependencyNeverSatisfied (afterany:nosuch is not a known job)' },
    ]);
    expect(plan.pending).to.deep.equal([]);
  });

  it('rejects at once even when another clause still waits', () => {
    const depends: Dependency[] = [
      { kind: 'afterany', jobIds: ['running'] },
      { kind: 'afterok', jobIds: ['broken'] },
    ];
    const plan = schedule(snapshot([job('j', { depends })], { running: 'pending', broken: 'failed' }));
    expect(plan.rejections.map((r) => r.reason)).to.deep.equal(['DependencyNeverSatisfied (afterok:broken ended failed)']);
  });

  it('treats a job missing from the outcomes as unknown', () => {
    expect(dependencyState(after('afterok', 'x'), undefined)).to.deep.equal({ never: 'afterok:x is not a known job' });
  });

  it('lets a waiting job block nobody', () => {
    const queued = [job('waits', { nodes: 8, priority: 10, depends: after('afterok', 'first') }), job('goes', { nodes: 8 })];
    expect(schedule(snapshot(queued, { first: 'pending' })).assignments.map((a) => a.jobId)).to.deep.equal(['goes']);
  });

  it('maps job states to outcomes, and lists the ids a snapshot must know', () => {
    expect(['Q', 'W', 'T', 'R', 'F', 'E', 'C', null].map((s) => dependencyOutcome(s as never))).to.deep.equal([
      'pending',
      'pending',
      'pending',
      'pending',
      'ok',
      'failed',
      'failed',
      'unknown',
    ]);
    expect([...dependencyIds([job('a', { depends: after('afterok', '1', '2') }), job('b', { depends: after('afterany', '2', '3') }), job('c')])]).to.deep.equal(['1', '2', '3']);
  });
});
