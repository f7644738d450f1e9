import Database from 'better-sqlite3';
import { expect } from 'chai';
import fs, { mkdtempSync, rmSync, statSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requestedPartition, type PartitionRecord } from '../core/partitions/partition-record.js';
import type { JobRecord } from '../core/store/job-record.js';
import { JobStore } from '../core/store/job-store.js';
import { queuedJobRecord } from './harness/records.js';
import { migrate } from '../core/store/migrations.js';

/** The schema of the cores before job records had columns of their own for what they ask (nodes, time limit, ...). */
const SCHEMA_BEFORE_COLUMNS = 3;

const jobOf = (i: number, script: string, owner = 'alice'): JobRecord => queuedJobRecord(i, script, { owner, submitTime: new Date(1_800_000_000_000 + i).toISOString() });

/** Everything the index answers, in an order of its own (what a scheduler or admission would be given). */
function indexView(store: JobStore) {
  const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
  const { byUser, byAccount } = store.queuedCounts();
  return {
    queued: store.queued().sort(byId),
    holding: store.holding().sort(byId),
    byUser: Object.fromEntries([...byUser].sort()),
    byAccount: Object.fromEntries([...byAccount].sort()),
    partitions: store.partitions().map((p: PartitionRecord) => p.name),
    nodesHeld: Object.fromEntries([...store.nodesHeld()].sort()),
  };
}

describe('the job store', function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'skyport-store-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("migrates an older core's spool: the columns of what jobs ask are filled from their directives, and the index holds its queue", () => {
    const path = join(dir, 'swm.sqlite');
    const old = new Database(path);
    migrate(old, SCHEMA_BEFORE_COLUMNS);
    const insert = old.prepare(
      `INSERT INTO jobs (id, owner, name, state, step, script, directives, priority, submit_time, remote, run_started_ms, updated_ms, account)
       VALUES (@id, @owner, @name, @state, @step, @script, @directives, 0, @submit_time, @remote, @run_started_ms, 1, @account)`,
    );
    const rowOf = (job: JobRecord) => ({
      id: job.id, owner: job.owner, name: job.name, state: job.state, step: job.step, script: job.script, directives: JSON.stringify(job.directives),
      submit_time: job.submitTime, remote: job.remote, run_started_ms: job.runStartedMs, account: job.directives.account ?? null,
    });
    const wide = jobOf(1, '#!/bin/sh\n#SWM nodes 3\n#SWM duration 00:10:00\n#SWM remote azure\n#SWM flavor big\n#SWM gpus 2\n#SWM account physics\ntrue\n');
    const running = { ...jobOf(2, '#!/bin/sh\n#SWM nodes 2\n#SWM duration 00:01:00\ntrue\n', 'bob'), state: 'R' as const, step: 'run' as const, remote: 'local', runStartedMs: 5 };
    const ended = { ...jobOf(3, '#!/bin/sh\ntrue\n'), state: 'F' as const, step: 'done' as const };
    for (const job of [wide, running, ended]) insert.run(rowOf(job));
    old.close();

    const store = new JobStore(path);
    try {
      const db = new Database(path, { readonly: true });
      const columns = db.prepare('SELECT id, nodes, duration_sec, asked_remote, asked_flavor, gpus FROM jobs ORDER BY seq').all();
      db.close();
      expect(columns).to.deep.equal([
        { id: wide.id, nodes: 3, duration_sec: 600, asked_remote: 'azure', asked_flavor: 'big', gpus: 2 },
        { id: running.id, nodes: 2, duration_sec: 60, asked_remote: null, asked_flavor: null, gpus: 0 },
        { id: ended.id, nodes: 1, duration_sec: 0, asked_remote: null, asked_flavor: null, gpus: 0 },
      ]);
      expect(store.queued()).to.have.length(1);
      expect(store.queued()[0]).to.include({ id: wide.id, nodes: 3, remote: 'azure', flavor: 'big', durationSec: 600, account: 'physics', seq: 1 });
      expect(store.holding()).to.deep.equal([
        { id: running.id, seq: 2, owner: 'bob', account: null, remote: 'local', nodes: 2, durationSec: 60, runStartedMs: 5, arrayId: null, step: 'run' },
      ]);
      expect(store.usageSince(new Date(0).toISOString()).map((u) => u.nodes)).to.deep.equal([]);
    } finally {
      store.close();
    }
  });

  it('keeps its index as committed, and a reopened store rebuilds the same one from the database', async () => {
    const path = join(dir, 'swm.sqlite');
    const store = new JobStore(path);
    const jobs = Array.from({ length: 12 }, (_, i) =>
      jobOf(i, `#!/bin/sh\n#SWM nodes ${1 + (i % 3)}\n${i % 4 === 0 ? '#SWM account physics\n' : ''}${i % 5 === 0 ? '#SWM spot 0.05 fallback\n' : ''}true\n`, i % 2 ? 'alice' : 'bob'),
    );
    await Promise.all(jobs.map((j) => store.insert({ ...j, account: j.directives.account ?? null })));
    const stored = (j: JobRecord) => store.get(j.id)!;
    const placed = (j: JobRecord, partition: string): JobRecord => ({ ...stored(j), step: 'partition', state: 'W', remote: 'local', flavor: 'small', partitionName: partition });
    await Promise.all([
      store.save(placed(jobs[0]!, 'p0')),
      store.save({ ...placed(jobs[1]!, 'p1'), step: 'run', state: 'R', runStartedMs: 42 }),
      store.save({ ...stored(jobs[2]!), step: 'done', state: 'C' }),
      store.save({ ...stored(jobs[3]!), step: 'inputs', stateDetails: 'waiting for input files' }),
      store.save({ ...stored(jobs[4]!), reason: 'Dependency', stateDetails: 'Dependency (afterok:x pending)' }),
      store.savePartition({ ...requestedPartition('p0', { remote: 'local', flavor: 'small', nodeCount: 1, cloudImage: null, ports: [] }, 'bob', jobs[0]!.id, 1), state: 'creating' }),
      store.savePartition({ ...requestedPartition('p1', { remote: 'local', flavor: 'small', nodeCount: 2, cloudImage: null, ports: [] }, 'alice', jobs[1]!.id, 1), state: 'busy' }),
      store.savePartition({ ...requestedPartition('gone', { remote: 'local', flavor: 'small', nodeCount: 4, cloudImage: null, ports: [] }, null, null, 1), state: 'deleted' }),
    ]);
    // A finished job requeued keeps its place in line (its submission order), as it would after a restart.
    await store.save({ ...stored(jobs[5]!), step: 'done', state: 'F' });
    await store.save({ ...stored(jobs[5]!), step: 'queue', state: 'Q', attempts: 1 });

    const live = indexView(store);
    expect(live.queued.map((q) => q.id)).to.deep.equal(jobs.filter((_, i) => ![0, 1, 2, 3].includes(i)).map((j) => j.id));
    expect(live.queued.find((q) => q.id === jobs[5]!.id)).to.include({ seq: 6, attempts: 1 });
    expect(live.queued.find((q) => q.id === jobs[10]!.id)!.spot).to.deep.equal({ maxPrice: 0.05, fallback: true });
    expect(live.queued.find((q) => q.id === jobs[4]!.id)).to.include({ reason: 'Dependency' });
    expect(live.holding.map((h) => [h.id, h.step])).to.deep.equal([[jobs[0]!.id, 'partition'], [jobs[1]!.id, 'run']]);
    expect(live.byUser).to.deep.equal({ alice: 5, bob: 4 });
    expect(live.byAccount).to.deep.equal({ physics: 2 });
    expect(live.partitions).to.deep.equal(['p0', 'p1']);
    expect(live.nodesHeld).to.deep.equal({ local: 3 });
    store.close();

    const reopened = new JobStore(path);
    try {
      expect(indexView(reopened)).to.deep.equal(live);
    } finally {
      reopened.close();
    }
  });

  it('copies its WAL into the database file beside the commits (its own worker), and keeps the WAL from growing under a steady stream', async () => {
    const path = join(dir, 'swm.sqlite');
    const store = new JobStore(path);
    try {
      const script = `#!/bin/sh\n# ${'w'.repeat(4000)}\ntrue\n`;
      for (let batch = 0; batch < 60; batch++) await Promise.all(Array.from({ length: 50 }, (_, i) => store.insert(jobOf(batch * 50 + i, script))));
      // 3,000 jobs of 4 KB are ~6,000 pages of WAL (24 MB) written back to back; started over as they came, the file stays far smaller.
      expect(statSync(`${path}-wal`).size).to.be.below(12 * 1024 * 1024);
      const { log, checkpointed } = await store.checkpoint();
      expect(checkpointed).to.equal(log);
      const db = new Database(path, { readonly: true });
      expect((db.prepare('SELECT COUNT(*) AS n FROM jobs').get() as { n: number }).n).to.equal(3000);
      db.close();
    } finally {
      store.close();
    }
  });

  it('acknowledges a write only once the WAL holding it is synced to disk, and indexes it only then', async () => {
    const path = join(dir, 'swm.sqlite');
    const store = new JobStore(path);
    // The disk's answers held back: each fdatasync of the WAL completes only when the test lets it.
    const held: Array<() => void> = [];
    const original = fs.fdatasync;
    fs.fdatasync = ((fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
      expect(fs.readlinkSync(`/proc/self/fd/${fd}`), 'the file synced').to.equal(`${path}-wal`);
      held.push(() => original(fd, callback));
    }) as typeof fs.fdatasync;
    syncBuiltinESMExports();
    try {
      let acknowledged = false;
      const job = jobOf(1, '#!/bin/sh\ntrue\n');
      const inserted = store.insert(job).then(() => (acknowledged = true));
      while (held.length === 0) await new Promise((resolve) => setImmediate(resolve));
      // Committed (the store reads it) but not on disk yet: not acknowledged, not in the scheduler's view.
      expect(store.get(job.id)?.id).to.equal(job.id);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(acknowledged, 'acknowledged before the sync').to.equal(false);
      expect(store.queued().map((q) => q.id)).to.deep.equal([]);
      held.shift()!();
      await inserted;
      expect(store.queued().map((q) => q.id)).to.deep.equal([job.id]);
    } finally {
      fs.fdatasync = original;
      syncBuiltinESMExports();
      for (const release of held.splice(0)) release();
      store.close();
    }
  });

  it('applies nothing to its index that a commit refused', async () => {
    const store = new JobStore(join(dir, 'swm.sqlite'));
    try {
      const job = jobOf(1, '#!/bin/sh\ntrue\n');
      await store.insert(job);
      // The same id again: the insert fails on the unique id, and the queue still holds the job once.
      const again = await store.insert({ ...job, owner: 'mallory' }).then(() => 'committed', () => 'refused');
      expect(again).to.equal('refused');
      expect(store.queued().map((q) => [q.id, q.owner])).to.deep.equal([[job.id, 'alice']]);
      expect(Object.fromEntries(store.queuedCounts().byUser)).to.deep.equal({ alice: 1 });
    } finally {
      store.close();
    }
  });
});
