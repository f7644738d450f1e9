import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GateConnection } from '../terminal-protocol/client.js';
import type { Partition } from '../terminal-protocol/common.js';
import { gatePid, isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { submitJob } from './harness/submit.js';
import { testKeyPair } from './harness/keys.js';

describe('the reaper and managed gates', function () {
  this.timeout(60_000);
  let f: CoreFixture;
  let gate: GateConnection;

  before(async () => {
    f = await startFixture({ configure: (config) => (config.reaper.intervalSec = 1) });
    const local = f.spool.config.gates.find((g) => g.name === 'local')!;
    const { spool } = f.spool;
    gate = new GateConnection({
      url: `wss://127.0.0.1:${local.port}`,
      credentials: { cert: readFileSync(spool.core.cert), key: readFileSync(spool.core.key), ca: readFileSync(spool.ca.cert) },
    });
    // The managed gate is started by the core and may not listen yet: connect as any client would, retrying.
    for (let attempt = 0; ; attempt++) {
      try {
        await gate.connect();
        break;
      } catch (error) {
        if (attempt > 100) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
  after(async () => {
    await gate?.close();
    await f?.stop();
  });

  const orphan = async (): Promise<{ name: string; deleted: Promise<Partition> }> => {
    const name = `job-${randomUUID()}`;
    const deleted = new Promise<Partition>((resolve) =>
      gate.onNotification((n, p) => {
        const partition = p as Partition;
        if (n === 'partition.event' && partition.name === name && partition.status === 'deleted') resolve(partition);
      }),
    );
    await gate.call('partition.create', {
      name,
      jobId: name.slice(4),
      owner: 'nobody',
      flavor: 'local.small',
      image: null,
      nodeCount: 1,
      ports: [],
      sshPublicKey: testKeyPair().public,
      tags: {},
    });
    return { name, deleted };
  };

  it('deletes a partition that no job owns', async () => {
    // The reaper may delete it before any look of ours: its deletion event is what tells.
    const { name, deleted } = await orphan();
    expect((await deleted).status).to.equal('deleted');
    expect((await gate.call('partition.list')).map((p) => p.name)).to.not.include(name);
  });

  it('leaves the partition of a running job alone', async () => {
    const id = await submitJob(f.admin, '#!/bin/sh\nsleep 3\n');
    await waitForJob(f.admin, id, (j) => j.state === 'R');
    // Two sweeps pass while the job runs (interval 1 s); an orphan made now is reaped, the job's partition is not.
    const { deleted } = await orphan();
    await deleted;
    expect((await gate.call('partition.list')).map((p) => p.name)).to.include(`job-${id}`);
    expect((await waitForJob(f.admin, id, isFinal)).state).to.equal('F');
  });

  it('a restarted core adopts the running managed gate instead of starting another', async () => {
    const before = gatePid(f.spool);
    await f.restart('SIGKILL');
    const id = await submitJob(f.admin, '#!/bin/sh\necho adopted\n');
    expect((await waitForJob(f.admin, id, isFinal)).state).to.equal('F');
    expect(gatePid(f.spool)).to.equal(before);
    process.kill(before, 0);
  });
});
