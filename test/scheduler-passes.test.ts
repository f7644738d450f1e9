import { expect } from 'chai';
import { headOfQueue } from '../core/scheduler/job-order.js';
import type { QueuedJob } from '../core/scheduler/snapshot.js';
import { PASS_MIN_GAP_MS, PASS_SHARE, PassPacer, passDelayMs } from '../core/scheduler/pass-pacing.js';
import { isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { startInProcessCore, type InProcessCore } from './harness/core-in-process.js';
import { submitJob } from './harness/submit.js';
import { freePort, unreachableGates } from './harness/spool.js';

describe('scheduling passes', function () {
  this.timeout(60_000);

  describe('pacing (pure)', () => {
    it('runs at once after a quiet spell, at least PASS_MIN_GAP_MS apart, and keeps long passes to PASS_SHARE of the time', () => {
      expect(passDelayMs(0.5, 1_000)).to.equal(0);
      expect(passDelayMs(0.5, 0)).to.equal(PASS_MIN_GAP_MS);
      expect(passDelayMs(0.5, 4)).to.equal(PASS_MIN_GAP_MS - 4);
      // A 100 ms pass over a large queue is followed by 400 ms of everything else.
      expect(passDelayMs(100, 0)).to.be.closeTo((100 * (1 - PASS_SHARE)) / PASS_SHARE, 1e-9);
      expect(passDelayMs(100, 150)).to.be.closeTo(250, 1e-9);
    });
  });

  describe('the head of a long queue (pure)', () => {
    const job = (id: string, seq: number, remote: string, priority = 0): QueuedJob => ({ id, seq, priority, nodes: 1, remote });
    const ids = (jobs: QueuedJob[]) => jobs.map((j) => j.id).sort();

    it("takes the first jobs of each remote's line in effective order, the late high-priority ones included", () => {
      const queue = [job('a1', 1, 'a'), job('b1', 2, 'b'), job('a2', 3, 'a'), job('a3', 4, 'a'), job('b2', 5, 'b'), job('a-urgent', 6, 'a', 5), job('b3', 7, 'b')];
      expect(ids(headOfQueue(queue, (j) => j.remote!, 2))).to.deep.equal(['a-urgent', 'a1', 'b1', 'b2']);
    });

    it('orders equal priorities by fair share: the user who used less comes first', () => {
      const queue = [{ ...job('heavy', 1, 'a'), owner: 'heavy' }, { ...job('light', 2, 'a'), owner: 'light' }];
      const usage = { byUser: new Map([['heavy', 1_000]]), byAccount: new Map() };
      expect(ids(headOfQueue(queue, () => 'a', 1, usage))).to.deep.equal(['light']);
    });

    it('gives a short queue back whole', () => {
      const queue = [job('a1', 1, 'a'), job('b1', 2, 'b')];
      expect(ids(headOfQueue(queue, (j) => j.remote!, 10))).to.deep.equal(['a1', 'b1']);
    });
  });

  describe('the pacer', () => {
    it('serves every kick made before a pass with that one pass, and kicks during a pass with one more after it', async () => {
      let started = 0;
      let onStart: () => void = () => {};
      const pacer = new PassPacer(() => {
        started++;
        onStart();
      });
      const nextStart = () => new Promise<void>((resolve) => (onStart = resolve));
      try {
        let first = nextStart();
        for (let i = 0; i < 1_000; i++) pacer.kick();
        await first;
        expect(started).to.equal(1);
        for (let i = 0; i < 100; i++) pacer.kick(); // while the pass runs
        const second = nextStart();
        pacer.ended(0.2);
        await second;
        expect(started).to.equal(2);
        pacer.ended(0.2);
        first = nextStart();
        pacer.kick();
        await first;
        expect(started).to.equal(3);
      } finally {
        pacer.stop();
      }
    });
  });

  describe('in a core', () => {
    let f: InProcessCore;
    before(async () => {
      f = await startInProcessCore({ configure: unreachableGates(await freePort()) });
    });
    after(async () => {
      await f?.stop();
    });

    const passes = async (): Promise<number> => {
      const metric = f.core.services.metrics.registry.getSingleMetric('swm_scheduler_passes_total')!;
      return (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);
    };

    it('coalesces a burst of 1,000 submissions (each one a kick) into passes at least 10 ms apart, far fewer than submissions', async () => {
      const SUBMISSIONS = 1_000;
      const IN_FLIGHT = 32;
      const before = await passes();
      let left = SUBMISSIONS;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: IN_FLIGHT }, async () => {
          while (left > 0) {
            left--;
            await f.admin.call('job.submit', { script: '#!/bin/sh\ntrue\n', name: 'burst' });
          }
        }),
      );
      const wallMs = performance.now() - started;
      const made = (await passes()) - before;
      expect(made).to.be.greaterThan(0);
      expect(made, `${made} passes in ${wallMs.toFixed(0)} ms`).to.be.at.most(Math.ceil(wallMs / PASS_MIN_GAP_MS) + 2);
      expect(made).to.be.below(SUBMISSIONS / 10);
    });

    it('keeps no actor for a queued job: its pending reason and its cancel wake one, which goes once it is done', async () => {
      const small = await startInProcessCore({ configure: (config) => void (config.remotes.find((r) => r.name === 'local')!.maxNodes = 1) });
      try {
        const blocker = await submitJob(small.admin, '#!/bin/sh\nsleep 120\n');
        await waitForJob(small.admin, blocker, (j) => j.state === 'R', 30_000);
        const waiting = await submitJob(small.admin, '#!/bin/sh\ntrue\n');
        // The scheduler stores why it waits (the remote's one node is taken): an event to the job, through an actor.
        expect((await waitForJob(small.admin, waiting, (j) => j.reason === 'Resources', 30_000)).state).to.equal('Q');
        await new Promise((resolve) => setImmediate(resolve));
        expect(small.core.jobs.size, 'actors: the running job only').to.equal(1);
        await small.admin.call('job.cancel', { id: waiting });
        expect((await waitForJob(small.admin, waiting, isFinal)).state).to.equal('C');
        await small.admin.call('job.cancel', { id: blocker });
        await waitForJob(small.admin, blocker, isFinal, 30_000);
        await new Promise((resolve) => setImmediate(resolve));
        expect(small.core.jobs.size, 'no actor once every job is done').to.equal(0);
      } finally {
        await small.stop();
      }
    });
  });

  describe('after a restart', () => {
    let f: CoreFixture;
    before(async () => {
      f = await startFixture({
        configure: (config) => {
          config.remotes.find((r) => r.name === 'local')!.maxNodes = 1;
        },
      });
    });
    after(async () => {
      await f?.stop();
    });

    it('places the jobs queued before a kill -9 from the queue the new core rebuilt from its store', async () => {
      const blocker = await submitJob(f.admin, '#!/bin/sh\nsleep 120\n');
      await waitForJob(f.admin, blocker, (j) => j.state === 'R', 30_000);
      const queued = [];
      for (let i = 0; i < 3; i++) queued.push(await submitJob(f.admin, `#!/bin/sh\necho ${i}\n`));
      await f.restart('SIGKILL');
      expect((await f.admin.call('job.get', { id: queued[2]! })).state).to.equal('Q');
      await f.admin.call('job.cancel', { id: blocker });
      for (const id of queued) expect((await waitForJob(f.admin, id, isFinal, 60_000)).state).to.equal('F');
    });
  });
});
