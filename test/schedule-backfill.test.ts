import { expect } from 'chai';
import { backfill, expectedEndMs, reservationFor } from '../core/scheduler/backfill.js';
import { schedule, type IdlePartition, type QueuedJob, type RemoteCapacity, type RunningJob, type SchedulingPolicy, type Snapshot } from '../core/scheduler/schedule.js';

const S = 1000;
const NOW = 1_000_000;
const remote = (maxNodes: number): RemoteCapacity => ({ name: 'local', isDefault: true, maxNodes, defaultFlavor: 'small', flavors: new Set(['small']) });
let seq = 0;
const job = (id: string, nodes: number, durationSec: number | null, options: Partial<QueuedJob> = {}): QueuedJob => ({
  id,
  priority: 0,
  seq: ++seq,
  nodes,
  owner: 'alice',
  durationSec,
  ...options,
});
const run = (jobId: string, nodes: number, endsInSec: number | null): RunningJob => ({ jobId, remote: 'local', nodes, endsAtMs: endsInSec === null ? null : NOW + endsInSec * S, owner: 'bob' });
const snapshot = (maxNodes: number, queued: QueuedJob[], running: RunningJob[], policy?: SchedulingPolicy): Snapshot => ({
  queued,
  remotes: [remote(maxNodes)],
  usage: new Map([['local', running.reduce((n, r) => n + r.nodes, 0)]]),
  nowMs: NOW,
  running,
  policy,
});
const assigned = (s: Snapshot): string[] => schedule(s).assignments.map((a) => a.jobId);

describe('backfill (EASY)', () => {
  // 10 nodes: 6 come back in 100 s, 2 in 1000 s; 2 are free. The wide job needs 8: reserved for 100 s from now.
  const busy = [run('r6', 6, 100), run('r2', 2, 1000)];
  const wide = () => job('wide', 8, 3600, { priority: 1 });

  it('reserves the first job in line that does not fit, at the earliest time enough nodes come back', () => {
    const plan = schedule(snapshot(10, [wide()], busy));
    expect(plan.reservations).to.deep.equal([{ jobId: 'wide', remote: 'local', startMs: NOW + 100 * S }]);
    expect(plan.pending).to.deep.equal([{ jobId: 'wide', code: 'Resources', reason: 'Resources (remote local: 8/10 nodes in use)', position: 1 }]);
  });

  it('starts a short job in the hole before the reservation', () => {
    expect(assigned(snapshot(10, [wide(), job('short', 2, 60)], busy))).to.deep.equal(['short']);
    expect(assigned(snapshot(10, [wide(), job('exact', 2, 100)], busy)), 'ending at the reservation is in time').to.deep.equal(['exact']);
  });

  it('does not start a job whose time limit would delay the reservation', () => {
    const plan = schedule(snapshot(10, [wide(), job('long', 2, 500)], busy));
    expect(plan.assignments).to.deep.equal([]);
    expect(plan.pending.map((p) => [p.jobId, p.reason])).to.deep.equal([
      ['wide', 'Resources (remote local: 8/10 nodes in use)'],
      ['long', 'Priority (job wide is ahead on remote local)'],
    ]);
  });

  it('never backfills a job without a time limit', () => {
    expect(assigned(snapshot(10, [wide(), job('untimed', 1, null), job('zero', 1, 0)], busy))).to.deep.equal([]);
  });

  it('starts a long job in the nodes left over at the reservation, once', () => {
    // The wide job needs 7 of the 8 back in 100 s: one node is spare, for one long job only.
    const plan = schedule(snapshot(10, [job('wide7', 7, 3600, { priority: 1 }), job('long-a', 1, 5000), job('long-b', 1, 5000)], busy));
    expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['long-a']);
    expect(plan.pending.find((p) => p.jobId === 'long-b')!.code).to.equal('Priority');
  });

  it('only starts jobs that fit the nodes free now', () => {
    expect(assigned(snapshot(10, [wide(), job('three', 3, 10)], busy))).to.deep.equal([]);
  });

  it('adds the configured overhead to a candidate’s time limit', () => {
    expect(assigned(snapshot(10, [wide(), job('short', 2, 60)], busy, { backfillOverheadSec: 30 }))).to.deep.equal(['short']);
    expect(assigned(snapshot(10, [wide(), job('short', 2, 60)], busy, { backfillOverheadSec: 60 }))).to.deep.equal([]);
  });

  it('makes no reservation, and backfills nothing, when the nodes it needs are held by jobs of unknown end', () => {
    const plan = schedule(snapshot(10, [wide(), job('short', 1, 1)], [run('r6', 6, null), run('r2', 2, 1000)]));
    expect(plan.reservations).to.deep.equal([]);
    expect(plan.assignments).to.deep.equal([]);
  });

  it('still reserves when only jobs it does not need have an unknown end', () => {
    const plan = schedule(snapshot(10, [job('wide7', 7, 3600, { priority: 1 }), job('short', 1, 10)], [run('r6', 6, 100), run('r2', 2, null)]));
    expect(plan.reservations.map((r) => r.startMs)).to.deep.equal([NOW + 100 * S]);
    expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['short']);
  });

  it('keeps blocking the whole remote without a time or the running jobs, or with backfill turned off', () => {
    const queued = [wide(), job('short', 2, 60)];
    const { nowMs: _n, running: _r, ...untimed } = snapshot(10, queued, busy);
    expect(assigned(untimed)).to.deep.equal([]);
    expect(schedule(untimed).reservations).to.deep.equal([]);
    const off = schedule(snapshot(10, queued, busy, { backfill: false }));
    expect(off.assignments).to.deep.equal([]);
    expect(off.reservations, 'the reservation is still reported').to.have.length(1);
  });

  it('protects only the first blocked job of a remote', () => {
    // wide waits for 100 s; wider behind it would need 1000 s; short fits before wide's reservation: it goes.
    const plan = schedule(snapshot(10, [wide(), job('wider', 10, 60), job('short', 2, 60)], busy));
    expect(plan.reservations.map((r) => r.jobId)).to.deep.equal(['wide']);
    expect(plan.assignments.map((a) => a.jobId)).to.deep.equal(['short']);
  });

  describe('with idle partitions', () => {
    const idle = (name: string, nodeCount: number, owner = 'alice'): IdlePartition => ({ name, remote: 'local', flavor: 'small', nodeCount, cloudImage: null, ports: [], owner, pool: false, idleSinceMs: 1 });

    it('reserves now while idle partitions are deleted for the job; a job reusing another idle one goes, a new one only into spare nodes', () => {
      // 9 nodes: 4 running, idle: old (3 nodes, carol's), mine (1 node, alice's), 1 free. The wide job (4) has "old" deleted.
      const base: Snapshot = {
        ...snapshot(9, [job('wide4', 4, 600, { priority: 1, owner: 'dave' }), job('reuse', 1, 10_000), job('new', 1, 10)], [run('r', 4, 1000)]),
        usage: new Map([['local', 8]]),
        idle: [idle('old', 3, 'carol'), { ...idle('mine', 1), idleSinceMs: 2 }],
      };
      const plan = schedule(base);
      expect(plan.evictions.map((e) => e.name)).to.deep.equal(['old']);
      expect(plan.reservations).to.deep.equal([{ jobId: 'wide4', remote: 'local', startMs: NOW }]);
      expect(plan.assignments.map((a) => [a.jobId, a.reuse ?? 'new'])).to.deep.equal([['reuse', 'mine']]);
      expect(plan.pending.find((p) => p.jobId === 'new')!.code, 'the free node is the wide job’s').to.equal('Priority');
    });

    it('counts idle partitions as the reserved job’s nodes when it must wait for running jobs', () => {
      // 8 nodes, 0 free, idle 2 (alice's); running 6 back in 100 s. wide8 reserved at 100 s with no spare:
      // reusing the idle partition past the reservation would delay it.
      const base: Snapshot = {
        ...snapshot(8, [job('wide8', 8, 600, { priority: 1, owner: 'dave' }), job('reuse-long', 2, 500)], [run('r', 6, 100)]),
        usage: new Map([['local', 8]]),
        idle: [idle('mine', 2)],
      };
      expect(schedule(base).reservations.map((r) => r.startMs)).to.deep.equal([NOW + 100 * S]);
      expect(schedule(base).assignments).to.deep.equal([]);
      const short = { ...base, queued: [base.queued[0]!, job('reuse-short', 2, 50)] };
      expect(schedule(short).assignments.map((a) => [a.jobId, a.reuse])).to.deep.equal([['reuse-short', 'mine']]);
    });
  });

  describe('the pure pieces', () => {
    it('reservationFor gives all the nodes of jobs ending at the same moment to the reservation', () => {
      const shadow = reservationFor('j', 'local', 3, { nowMs: 0, free: 0, idle: 0, evicting: 0, running: [run('a', 2, 10), run('b', 2, 10)].map((r) => ({ ...r, endsAtMs: 10 })) });
      expect(shadow).to.deep.include({ startMs: 10, spare: 1 });
    });

    it('backfill() uses spare nodes up and refuses what would overrun', () => {
      const shadow = { jobId: 'j', remote: 'local', startMs: 100, spare: 2, countsIdle: true };
      expect(backfill(shadow, { nodes: 5, endsAtMs: 100, reusesIdle: false })).to.equal(shadow);
      expect(backfill(shadow, { nodes: 2, endsAtMs: 101, reusesIdle: false })).to.deep.include({ spare: 0 });
      expect(backfill(shadow, { nodes: 3, endsAtMs: 101, reusesIdle: false })).to.equal(null);
      expect(backfill(shadow, { nodes: 1, endsAtMs: null, reusesIdle: false })).to.equal(null);
      expect(expectedEndMs(0, 10, 5)).to.equal(15_000);
      expect(expectedEndMs(0, 0)).to.equal(null);
    });
  });

  describe('over time (a simulation: the scheduler runs whenever a job ends)', () => {
    interface SimJob {
      id: string;
      nodes: number;
      /** The time limit the scheduler knows (null: none). */
      limitSec: number | null;
      /** How long it really runs (at most its limit). */
      runSec: number;
      priority?: number;
    }
    interface Outcome {
      starts: Map<string, number>;
      /** The first reservation each job got. */
      reserved: Map<string, number>;
    }

    function simulate(jobs: SimJob[], maxNodes: number, policy: SchedulingPolicy = {}): Outcome {
      let now = 0;
      let queue = jobs.map((j, i): QueuedJob => ({ id: j.id, priority: j.priority ?? 0, seq: i, nodes: j.nodes, owner: 'u', durationSec: j.limitSec }));
      const byId = new Map(jobs.map((j) => [j.id, j]));
      let active: { job: SimJob; startMs: number }[] = [];
      const starts = new Map<string, number>();
      const reserved = new Map<string, number>();
      for (let step = 0; queue.length && step < 1000; step++) {
        const running = active.map(({ job, startMs }): RunningJob => ({ jobId: job.id, remote: 'local', nodes: job.nodes, endsAtMs: job.limitSec === null ? null : startMs + job.limitSec * S }));
        const plan = schedule({ queued: queue, remotes: [remote(maxNodes)], usage: new Map([['local', running.reduce((n, r) => n + r.nodes, 0)]]), nowMs: now, running, policy });
        for (const r of plan.reservations) if (!reserved.has(r.jobId)) reserved.set(r.jobId, r.startMs);
        for (const a of plan.assignments) {
          active.push({ job: byId.get(a.jobId)!, startMs: now });
          starts.set(a.jobId, now);
        }
        expect(active.reduce((n, a) => n + a.job.nodes, 0), `nodes in use at ${now}`).to.be.at.most(maxNodes);
        queue = queue.filter((q) => !starts.has(q.id));
        if (!active.length) break;
        now = Math.min(...active.map((a) => a.startMs + a.job.runSec * S));
        active = active.filter((a) => a.startMs + a.job.runSec * S > now);
      }
      expect(queue, 'every job started').to.deep.equal([]);
      return { starts, reserved };
    }

    it('fills the holes and starts the reserved job exactly when it would have started without backfill', () => {
      const jobs: SimJob[] = [
        { id: 'A', nodes: 6, limitSec: 100, runSec: 100 },
        { id: 'wide', nodes: 8, limitSec: 50, runSec: 50 },
        { id: 'C', nodes: 2, limitSec: 60, runSec: 60 },
        { id: 'D', nodes: 2, limitSec: 200, runSec: 200 },
        { id: 'E', nodes: 1, limitSec: null, runSec: 10 },
        { id: 'F', nodes: 2, limitSec: 40, runSec: 40 },
      ];
      const without = simulate(jobs, 8, { backfill: false });
      const withIt = simulate(jobs, 8);
      const at = (o: Outcome) => Object.fromEntries([...o.starts].map(([id, ms]) => [id, ms / S]));
      expect(at(without)).to.deep.equal({ A: 0, wide: 100, C: 150, D: 150, E: 150, F: 150 });
      // C fits the 2 free nodes and ends at 60; F then fits the same hole, ending at 100 exactly.
      expect(at(withIt)).to.deep.equal({ A: 0, C: 0, F: 60, wide: 100, D: 150, E: 150 });
      expect(withIt.reserved.get('wide')).to.equal(100 * S);
    });

    it('never starts a reserved job later than its first reservation, over many random queues', () => {
      let state = 42;
      const random = (): number => {
        // mulberry32: a small seeded generator, so a failure can be replayed.
        state = (state + 0x6d2b79f5) | 0;
        let t = Math.imul(state ^ (state >>> 15), 1 | state);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const pick = (n: number): number => Math.floor(random() * n);
      let reservations = 0;
      let backfilled = 0;
      for (let trial = 0; trial < 200; trial++) {
        const maxNodes = 4 + pick(13);
        const jobs: SimJob[] = Array.from({ length: 5 + pick(20) }, (_, i) => {
          const limitSec = random() < 0.15 ? null : 10 + pick(300);
          return { id: `j${i}`, nodes: 1 + pick(maxNodes), limitSec, runSec: limitSec === null ? 1 + pick(300) : Math.max(1, Math.round(limitSec * (0.3 + 0.7 * random()))), priority: pick(3) };
        });
        const withIt = simulate(jobs, maxNodes);
        for (const [id, startMs] of withIt.reserved) {
          reservations++;
          expect(withIt.starts.get(id)!, `trial ${trial}: ${id}`).to.be.at.most(startMs);
        }
        const without = simulate(jobs, maxNodes, { backfill: false });
        for (const [id, ms] of withIt.starts) if (ms < without.starts.get(id)!) backfilled++;
      }
      expect(reservations, 'the property was exercised').to.be.greaterThan(100);
      expect(backfilled, 'and backfill did start jobs earlier').to.be.greaterThan(100);
    });
  });
});
