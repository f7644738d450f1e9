import { expect } from 'chai';
import { byPriorityThenAge, place, schedule, type IdlePartition, type QueuedJob, type RemoteCapacity, type Snapshot } from '../core/scheduler/schedule.js';

const remote = (name: string, options: Partial<Omit<RemoteCapacity, 'name'>> = {}): RemoteCapacity => ({
  name,
  isDefault: false,
  maxNodes: 8,
  defaultFlavor: 'small',
  flavors: new Set(['small', 'large']),
  ...options,
});

let seq = 0;
/** A queued job; each new one is younger than the last unless `seq` says otherwise. */
const job = (id: string, options: Partial<Omit<QueuedJob, 'id'>> = {}): QueuedJob => ({ id, priority: 0, seq: ++seq, nodes: 1, ...options });

const snapshot = (queued: QueuedJob[], remotes: RemoteCapacity[], usage: Record<string, number> = {}): Snapshot => ({
  queued,
  remotes,
  usage: new Map(Object.entries(usage)),
});

const brief = ({ jobId, remote, flavor }: { jobId: string; remote: string; flavor: string }) => ({ jobId, remote, flavor });

const assigned = (s: Snapshot): string[] => schedule(s).assignments.map((a) => a.jobId);

describe('scheduler (pure schedule function)', () => {
  const local = remote('local', { isDefault: true });
  const azure = remote('azure', { defaultFlavor: 'Standard_B2s', flavors: new Set(['Standard_B2s', 'Standard_NC6']), maxNodes: 4 });

  describe('order', () => {
    it('assigns higher priority first, then older first within a priority', () => {
      const queued = [
        job('low-old', { priority: -1 }),
        job('mid-old'),
        job('high-old', { priority: 5 }),
        job('mid-young'),
        job('high-younger', { priority: 5 }),
      ];
      expect(assigned(snapshot(queued, [local]))).to.deep.equal(['high-old', 'high-younger', 'mid-old', 'mid-young', 'low-old']);
    });

    it('does not depend on the order the snapshot lists the jobs in', () => {
      const queued = [job('a', { seq: 3 }), job('b', { seq: 1 }), job('c', { seq: 2, priority: 1 })];
      expect(assigned(snapshot(queued, [local]))).to.deep.equal(['c', 'b', 'a']);
      expect(assigned(snapshot([...queued].reverse(), [local]))).to.deep.equal(['c', 'b', 'a']);
    });

    it("does not reorder the caller's array", () => {
      const queued = [job('young', { seq: 20 }), job('old', { seq: 10 })];
      schedule(snapshot(queued, [local]));
      expect(queued.map((j) => j.id)).to.deep.equal(['young', 'old']);
    });

    it('byPriorityThenAge sorts priority descending, then seq ascending', () => {
      const sorted = [job('x', { priority: 0, seq: 2 }), job('y', { priority: 1, seq: 9 }), job('z', { priority: 0, seq: 1 })].sort(byPriorityThenAge);
      expect(sorted.map((j) => j.id)).to.deep.equal(['y', 'z', 'x']);
    });
  });

  describe('per-remote quota', () => {
    it('assigns no more nodes than the remote has free, counting the nodes already in use', () => {
      const small = remote('local', { isDefault: true, maxNodes: 4 });
      const queued = [job('a', { nodes: 2 }), job('b', { nodes: 1 }), job('c', { nodes: 1 })];
      expect(assigned(snapshot(queued, [small], { local: 1 }))).to.deep.equal(['a', 'b']);
      expect(assigned(snapshot(queued, [small], { local: 4 }))).to.deep.equal([]);
      expect(assigned(snapshot(queued, [small]))).to.deep.equal(['a', 'b', 'c']);
    });

    it('lets a wide job that does not fit yet block the narrower jobs behind it on the same remote', () => {
      const small = remote('local', { isDefault: true, maxNodes: 4 });
      const queued = [job('wide', { nodes: 3 }), job('narrow', { nodes: 1 })];
      const plan = schedule(snapshot(queued, [small], { local: 2 }));
      expect(plan.assignments).to.deep.equal([]);
      expect(plan.rejections, 'the wide job waits; it is not rejected').to.deep.equal([]);
    });

    it('does not let jobs ahead of the blocking job lose their place', () => {
      const small = remote('local', { isDefault: true, maxNodes: 4 });
      const queued = [job('first', { nodes: 1 }), job('wide', { nodes: 4 }), job('narrow', { nodes: 1 })];
      expect(assigned(snapshot(queued, [small]))).to.deep.equal(['first']);
    });

    it('does not let a blocked remote hold back jobs on another remote', () => {
      const small = remote('local', { isDefault: true, maxNodes: 4 });
      const queued = [job('wide', { nodes: 4 }), job('narrow'), job('elsewhere', { remote: 'azure', nodes: 2 })];
      const plan = schedule(snapshot(queued, [small, azure], { local: 1 }));
      expect(plan.assignments.map(brief)).to.deep.equal([{ jobId: 'elsewhere', remote: 'azure', flavor: 'Standard_B2s' }]);
    });

    it('fills each remote within its own quota', () => {
      const queued = [job('l1', { nodes: 8 }), job('a1', { remote: 'azure', nodes: 3 }), job('a2', { remote: 'azure', nodes: 2 }), job('l2')];
      const plan = schedule(snapshot(queued, [local, azure]));
      expect(plan.assignments.map((a) => `${a.jobId}@${a.remote}`)).to.deep.equal(['l1@local', 'a1@azure']);
    });
  });

  describe('rejections', () => {
    it('rejects an unknown remote, naming it and the known ones', () => {
      const plan = schedule(snapshot([job('j', { remote: 'mars' })], [local, azure]));
      expect(plan.assignments).to.deep.equal([]);
      expect(plan.rejections).to.have.length(1);
      expect(plan.rejections[0]!.jobId).to.equal('j');
      expect(plan.rejections[0]!.reason).to.include('mars').and.to.include('local').and.to.include('azure');
    });

    it('rejects an unknown flavor, naming it, the remote and the flavors it has', () => {
      const [rejection] = schedule(snapshot([job('j', { flavor: 'huge' })], [local])).rejections;
      expect(rejection!.reason).to.include('huge').and.to.include('local').and.to.include('small').and.to.include('large');
    });

    it("rejects a job wider than its remote's whole quota, naming the quota", () => {
      const [rejection] = schedule(snapshot([job('j', { remote: 'azure', nodes: 5 })], [local, azure])).rejections;
      expect(rejection!.reason).to.include('5').and.to.include('azure').and.to.include('4');
    });

    it('rejects a job that names no flavor on a remote without a default flavor', () => {
      const bare = remote('bare', { isDefault: true, defaultFlavor: null });
      const [rejection] = schedule(snapshot([job('j')], [bare])).rejections;
      expect(rejection!.reason).to.include('flavor');
    });

    it('rejects every job when no remote is configured', () => {
      const plan = schedule(snapshot([job('j')], []));
      expect(plan.rejections.map((r) => r.jobId)).to.deep.equal(['j']);
    });

    it('lets a rejected job block nothing behind it', () => {
      const queued = [job('bad', { flavor: 'huge' }), job('wide-bad', { nodes: 9 }), job('good')];
      const plan = schedule(snapshot(queued, [local]));
      expect(plan.rejections.map((r) => r.jobId)).to.deep.equal(['bad', 'wide-bad']);
      expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['good']);
    });
  });

  describe('remotes whose flavors are not known yet', () => {
    const silent = remote('local', { isDefault: true, flavors: null });

    it('keeps the job waiting: neither assigned nor rejected', () => {
      const plan = schedule(snapshot([job('j'), job('k', { flavor: 'anything' })], [silent]));
      const { pending, ...rest } = plan;
      expect(rest).to.deep.equal({ assignments: [], evictions: [], poolCreates: [], rejections: [], waiting: [], reservations: [] });
      expect(pending.map((p) => [p.jobId, p.code, p.position])).to.deep.equal([
        ['j', 'WaitingForFlavors', 1],
        ['k', 'WaitingForFlavors', 2],
      ]);
    });

    it('says why in place()', () => {
      const where = place({ nodes: 1 }, [silent]);
      expect(where).to.have.property('wait').that.includes('local');
    });

    it('still assigns jobs on remotes whose flavors are known', () => {
      const plan = schedule(snapshot([job('waits'), job('goes', { remote: 'azure' })], [silent, azure]));
      expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['goes']);
      expect(plan.rejections).to.deep.equal([]);
    });
  });

  describe('defaults', () => {
    it("sends a job that names no remote to the default remote, with that remote's default flavor", () => {
      const plan = schedule(snapshot([job('j')], [azure, local]));
      expect(plan.assignments.map(brief)).to.deep.equal([{ jobId: 'j', remote: 'local', flavor: 'small' }]);
    });

    it('uses the first remote when none is marked default', () => {
      const plan = schedule(snapshot([job('j')], [azure, remote('other')]));
      expect(plan.assignments.map(brief)).to.deep.equal([{ jobId: 'j', remote: 'azure', flavor: 'Standard_B2s' }]);
    });

    it('keeps the flavor a job names', () => {
      const plan = schedule(snapshot([job('j', { remote: 'azure', flavor: 'Standard_NC6' })], [local, azure]));
      expect(plan.assignments.map(brief)).to.deep.equal([{ jobId: 'j', remote: 'azure', flavor: 'Standard_NC6' }]);
    });

    it('place() returns the remote and flavor a submission would get', () => {
      const where = place({ nodes: 2 }, [azure, local]);
      expect(where).to.have.property('flavor', 'small');
      expect((where as { remote: RemoteCapacity }).remote.name).to.equal('local');
    });
  });

  describe('partitions: reuse, eviction, warm pools', () => {
    const local = remote('local', { isDefault: true, maxNodes: 4 });
    const idle = (name: string, options: Partial<IdlePartition> = {}): IdlePartition => ({
      name,
      remote: 'local',
      flavor: 'small',
      nodeCount: 1,
      cloudImage: null,
      ports: [],
      owner: 'alice',
      pool: false,
      idleSinceMs: 1000,
      ...options,
    });
    const withIdle = (queued: QueuedJob[], idlePartitions: IdlePartition[], remotes = [local], usage: Record<string, number> = {}): Snapshot => ({
      ...snapshot(queued, remotes, usage),
      idle: idlePartitions,
    });

    it("puts a job on its owner's idle partition that fits, once, and makes new partitions for the rest", () => {
      const plan = schedule(withIdle([job('a', { owner: 'alice' }), job('b', { owner: 'alice' })], [idle('p1')], [local], { local: 1 }));
      expect(plan.assignments.map((a) => [a.jobId, a.reuse ?? 'new'])).to.deep.equal([
        ['a', 'p1'],
        ['b', 'new'],
      ]);
    });

    it("does not give one owner's partition to another, unless the remote shares", () => {
      const queued = [job('bob-job', { owner: 'bob' })];
      expect(schedule(withIdle(queued, [idle('p1')], [local], { local: 1 })).assignments[0]!.reuse).to.equal(undefined);
      const sharing = remote('local', { isDefault: true, maxNodes: 4, sharing: true });
      expect(schedule(withIdle(queued, [idle('p1')], [sharing], { local: 1 })).assignments[0]!.reuse).to.equal('p1');
    });

    it('needs the same flavor, node count, cloud image and ports', () => {
      const base = { owner: 'alice' };
      const cases: [Partial<QueuedJob>, string][] = [
        [{ flavor: 'large' }, 'flavor'],
        [{ nodes: 2 }, 'nodes'],
        [{ cloudImage: 'ubuntu-24.04' }, 'cloud image'],
        [{ ports: [{ port: 8888, protocol: 'tcp', direction: 'in' }] }, 'ports'],
      ];
      for (const [options, what] of cases) {
        const plan = schedule(withIdle([job('j', { ...base, ...options })], [idle('p1')], [local], { local: 1 }));
        expect(plan.assignments[0]?.reuse, what).to.equal(undefined);
      }
    });

    it('needs the same spot choice and maximum price; a spot job with fallback asks for on-demand nodes once preempted past the limit', () => {
      const base = { owner: 'alice' };
      const cases: [Partial<QueuedJob>, Partial<IdlePartition>, string | undefined][] = [
        [{ spot: { fallback: false } }, {}, undefined],
        [{}, { spot: true }, undefined],
        [{ spot: false }, { spot: null }, undefined],
        [{ spot: { maxPrice: 0.05, fallback: false } }, { spot: true, maxPrice: 0.1 }, undefined],
        [{ spot: { maxPrice: 0.05, fallback: false } }, { spot: true, maxPrice: 0.05 }, 'p1'],
        [{ spot: false }, { spot: false }, 'p1'],
        [{ spot: { fallback: true }, attempts: 3 }, { spot: true }, 'p1'],
        [{ spot: { fallback: true }, attempts: 4 }, { spot: true }, undefined],
        [{ spot: { fallback: true }, attempts: 4 }, { spot: false }, 'p1'],
      ];
      for (const [options, partition, reuse] of cases) {
        const plan = schedule({ ...withIdle([job('j', { ...base, ...options })], [idle('p1', partition)], [local], { local: 1 }), policy: { maxPreemptions: 3 } });
        expect(plan.assignments[0]?.reuse, JSON.stringify([options, partition])).to.equal(reuse);
      }
      const fresh = schedule({ ...snapshot([job('k', { spot: { maxPrice: 0.2, fallback: true }, attempts: 1 })], [local]), policy: { maxPreemptions: 1 } });
      expect(fresh.assignments[0]!.shape).to.include({ spot: true, maxPrice: 0.2 });
      const fallen = schedule({ ...snapshot([job('k', { spot: { maxPrice: 0.2, fallback: true }, attempts: 2 })], [local]), policy: { maxPreemptions: 1 } });
      expect(fallen.assignments[0]!.shape).to.include({ spot: false, maxPrice: null });
    });

    it("takes a pool's spare for anyone, after the owner's own partitions", () => {
      const plan = schedule(withIdle([job('a', { owner: 'alice' }), job('c', { owner: 'carol' })], [idle('spare', { owner: null, pool: true }), idle('own')], [local], { local: 2 }));
      expect(plan.assignments.map((a) => [a.jobId, a.reuse])).to.deep.equal([
        ['a', 'own'],
        ['c', 'spare'],
      ]);
    });

    it('deletes the oldest idle partitions a job needs the nodes of, and the job waits for them', () => {
      const full = [idle('old', { idleSinceMs: 1, owner: 'bob' }), idle('newer', { idleSinceMs: 2, owner: 'bob' }), idle('newest', { idleSinceMs: 3, owner: 'bob' })];
      const plan = schedule(withIdle([job('wide', { owner: 'alice', nodes: 2 })], full, [local], { local: 4 }));
      expect(plan.assignments).to.deep.equal([]);
      expect(plan.evictions.map((e) => e.name)).to.deep.equal(['old', 'newer']);
      expect(plan.evictions[0]!.reason).to.include('wide');
    });

    it('keeps no more idle partitions than maxIdle (the oldest go)', () => {
      const capped = remote('local', { isDefault: true, maxNodes: 8, maxIdle: 1 });
      const plan = schedule(withIdle([], [idle('a', { idleSinceMs: 1 }), idle('b', { idleSinceMs: 2 })], [capped], { local: 2 }));
      expect(plan.evictions.map((e) => e.name)).to.deep.equal(['a']);
    });

    it('tops a warm pool up with what queued jobs leave free, counting spares and those on their way', () => {
      const pooled = remote('local', { isDefault: true, maxNodes: 4, pool: { flavor: 'small', nodes: 1, count: 3, cloudImage: null } });
      const plan = schedule({ ...withIdle([job('j', { owner: 'alice' })], [idle('spare', { owner: null, pool: true, flavor: 'large' })], [pooled], { local: 1 }), poolPending: new Map([['local', 1]]) });
      expect(plan.assignments.map((a) => a.reuse ?? 'new')).to.deep.equal(['new']);
      // 3 wanted, 1 spare idle, 1 on its way: 1 more, and there is room for it (4 - 1 used - 1 for j).
      expect(plan.poolCreates).to.have.length(1);
      expect(plan.poolCreates[0]!.shape).to.include({ flavor: 'small', nodeCount: 1 });
      const full = schedule({ ...withIdle([], [], [pooled], { local: 4 }) });
      expect(full.poolCreates, 'no room').to.deep.equal([]);
    });
  });
});
