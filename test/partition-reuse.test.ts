import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { GateConnection } from '../terminal-protocol/client.js';
import type { Partition } from '../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { PartitionView } from '../terminal-protocol/terminal-methods.js';
import type { CoreConfig } from '../spool-bootstrap/config.js';
import { connectAs } from './harness/certs.js';
import { gatePid, isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { submitJob } from './harness/submit.js';

/** What the local gate says of its partitions, heard as a core hears it. */
class GateWatch {
  readonly events: Partition[] = [];
  private readonly waiters = new Set<() => void>();
  constructor(readonly connection: GateConnection) {
    connection.onNotification((name, params) => {
      if (name !== 'partition.event') return;
      this.events.push(params as Partition);
      for (const wake of [...this.waiters]) wake();
    });
  }

  static async open(f: CoreFixture): Promise<GateWatch> {
    const local = f.spool.config.gates.find((g) => g.name === 'local')!;
    const { spool } = f.spool;
    const connection = new GateConnection({
      url: `wss://127.0.0.1:${local.port}`,
      credentials: { cert: readFileSync(spool.core.cert), key: readFileSync(spool.core.key), ca: readFileSync(spool.ca.cert) },
    });
    // The managed gate is started by the core and may not listen yet: connect as any client would, retrying.
    for (let attempt = 0; ; attempt++) {
      try {
        await connection.connect();
        return new GateWatch(connection);
      } catch (error) {
        if (attempt > 100) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Resolves with the first event (already heard or to come) that `match` accepts. */
  until(match: (p: Partition) => boolean, timeoutMs = 30_000): Promise<Partition> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(look);
        reject(new Error('no such partition event within the time limit'));
      }, timeoutMs);
      const look = () => {
        const found = this.events.find(match);
        if (!found) return;
        clearTimeout(timer);
        this.waiters.delete(look);
        resolve(found);
      };
      this.waiters.add(look);
      look();
    });
  }

  /** Partitions the gate holds, deleted ones left out. */
  async live(): Promise<Partition[]> {
    return (await this.connection.call('partition.list')).filter((p) => p.status !== 'deleted');
  }
}

const keepAlive = (seconds: number) => (config: CoreConfig) => {
  for (const remote of config.remotes) remote.idleTimeoutSec = seconds;
};

describe('partitions reused by the next compatible job', function () {
  this.timeout(120_000);
  let f: CoreFixture;
  let gate: GateWatch;
  let alice: TerminalClient;
  let bob: TerminalClient;
  let aliceBundle: Parameters<typeof connectAs>[1];

  before(async () => {
    f = await startFixture({ configure: keepAlive(600) });
    gate = await GateWatch.open(f);
    aliceBundle = await f.admin.call('admin.user.add', { name: 'alice' });
    alice = await connectAs(f.core.port, aliceBundle);
    bob = await connectAs(f.core.port, await f.admin.call('admin.user.add', { name: 'bob' }));
  });
  after(async () => {
    await alice?.close();
    await bob?.close();
    await gate?.connection.close();
    await f?.stop();
  });

  const run = async (client: TerminalClient, script: string) => {
    const id = await submitJob(client, script);
    return waitForJob(client, id, isFinal, 60_000);
  };
  const partitionOf = (nodeNames: string[]): string => nodeNames[0]!.replace(/-\d+$/, '');
  const listed = async (name: string): Promise<PartitionView | undefined> => (await f.admin.call('partition.list')).find((p) => p.name === name);
  /** How many times the gate brought the partition up: once per creation. */
  const creations = (name: string): number => gate.events.filter((e) => e.name === name && e.status === 'up').length;

  let aliceFirst: string;

  it("runs an owner's second job on the partition of the first, which waits idle in between", async () => {
    const first = await run(alice, '#!/bin/sh\necho one\n');
    expect(first.state).to.equal('F');
    aliceFirst = partitionOf(first.node_names);
    const idle = await listed(aliceFirst);
    expect(idle).to.include({ state: 'idle', owner: 'alice', jobsRun: 1, jobId: null, keepSec: 600 });

    const second = await run(alice, '#!/bin/sh\necho two\n');
    expect(second.state).to.equal('F');
    expect(partitionOf(second.node_names), 'the same partition').to.equal(aliceFirst);
    expect(await listed(aliceFirst)).to.include({ state: 'idle', jobsRun: 2 });
    expect((await alice.call('job.logs', { id: second.id, stream: 'stdout' })).data).to.equal('two\n');
    expect(creations(aliceFirst), 'asked of the gate once').to.equal(1);
  });

  it("gives another owner's job a partition of its own", async () => {
    const job = await run(bob, '#!/bin/sh\necho bob\n');
    expect(job.state).to.equal('F');
    const own = partitionOf(job.node_names);
    expect(own).to.not.equal(aliceFirst);
    expect(await listed(own)).to.include({ owner: 'bob', state: 'idle', jobsRun: 1 });
    // Each sees only their own.
    expect((await bob.call('partition.list')).map((p) => p.name)).to.deep.equal([own]);
    expect((await alice.call('partition.list')).map((p) => p.name)).to.deep.equal([aliceFirst]);
  });

  it('starts each job clean on a reused partition: its own directory, no processes, files or ports of the one before', async () => {
    const leaver = await run(
      alice,
      [
        '#!/bin/sh',
        'echo secret > left-behind.txt',
        // A process that leaves the job's process group, holding a port.
        `setsid nohup node -e "require('net').createServer().listen(47123, '127.0.0.1'); setInterval(() => {}, 1000)" > /dev/null 2>&1 &`,
        'setsid nohup sleep 600 > /dev/null 2>&1 &',
        'for i in $(seq 1 50); do node -e "require(\'net\').connect(47123, \'127.0.0.1\').on(\'connect\', () => process.exit(0)).on(\'error\', () => process.exit(1))" && break; sleep 0.1; done',
        'echo ready',
      ].join('\n'),
    );
    expect(leaver.state).to.equal('F');
    expect(partitionOf(leaver.node_names)).to.equal(aliceFirst);
    const next = await run(
      alice,
      [
        '#!/bin/sh',
        'ls',
        'test -e left-behind.txt && echo "FOUND the earlier job\'s file in my directory"',
        'pgrep -u "$(id -u)" -f "sleep 600" >/dev/null && echo "FOUND a leftover process"',
        `node -e "require('net').createServer().listen(47123, '127.0.0.1', () => process.exit(0)).on('error', () => { console.log('FOUND the port taken'); process.exit(0); })"`,
        'echo checked',
      ].join('\n'),
    );
    expect(next.state).to.equal('F');
    expect(partitionOf(next.node_names), 'still the same partition').to.equal(aliceFirst);
    const out = (await alice.call('job.logs', { id: next.id, stream: 'stdout' })).data;
    expect(out).to.not.include('FOUND');
    expect(out).to.include('checked');
  });

  it('deletes a partition at once for a job that asks `keep-partition 0`, before the job ends', async () => {
    const job = await run(bob, '#!/bin/sh\n#SWM keep-partition 0\n#SWM nodes 2\necho gone\n');
    expect(job.state).to.equal('F');
    const name = partitionOf(job.node_names);
    expect(await listed(name)).to.equal(undefined);
    expect((await gate.live()).map((p) => p.name)).to.not.include(name);
  });

  it('deletes a partition idle past its keep-alive', async () => {
    const job = await run(bob, '#!/bin/sh\n#SWM keep-partition 1\n#SWM nodes 3\necho brief\n');
    const name = partitionOf(job.node_names);
    await gate.until((p) => p.name === name && p.status === 'deleted');
    await waitUntil(async () => (await listed(name)) === undefined);
  });

  it("lets the owner (or an admin) delete an idle partition, and no one else", async () => {
    const job = await run(bob, '#!/bin/sh\n#SWM nodes 2\necho x\n');
    const name = partitionOf(job.node_names);
    const refused = await alice.call('partition.delete', { name }).then(
      () => null,
      (e: RpcError) => e,
    );
    expect(refused?.code).to.equal(ErrorCode.NotFound);
    expect((await bob.call('partition.delete', { name })).state).to.equal('deleting');
    await gate.until((p) => p.name === name && p.status === 'deleted');
  });

  describe('kill -9 of the core', () => {
    const liveNames = async () => (await gate.live()).map((p) => p.name).sort();
    const recorded = async () => (await f.admin.call('partition.list')).map((p) => p.name).sort();

    it('while a partition is idle: it is still known and reused afterwards', async () => {
      await f.restart('SIGKILL');
      await alice.close().catch(() => {});
      alice = await connectAs(f.core.port, aliceBundle);
      expect(await listed(aliceFirst)).to.include({ state: 'idle' });
      const job = await run(alice, '#!/bin/sh\necho after\n');
      expect(partitionOf(job.node_names)).to.equal(aliceFirst);
      expect(creations(aliceFirst)).to.equal(1);
    });

    it('an idle partition its gate lost while the core was down is known lost at the restart, and not reused', async () => {
      const job = await run(alice, '#!/bin/sh\n#SWM nodes 2\necho x\n');
      const name = partitionOf(job.node_names);
      expect(await listed(name)).to.include({ state: 'idle' });
      await f.core.kill('SIGKILL');
      const atGate = (await gate.live()).find((p) => p.name === name)!;
      await gate.connection.call('partition.delete', { id: atGate.id });
      await f.restart('SIGKILL');
      await alice.close().catch(() => {});
      alice = await connectAs(f.core.port, aliceBundle);
      await waitUntil(async () => (await listed(name)) === undefined);
      const next = await run(alice, '#!/bin/sh\n#SWM nodes 2\necho y\n');
      expect(next.state).to.equal('F');
      expect(partitionOf(next.node_names)).to.not.equal(name);
    });

    it('while a partition is busy: the job ends F on it, which then goes idle', async () => {
      const id = await submitJob(alice, '#!/bin/sh\nsleep 2\necho done\n');
      await waitForJob(alice, id, (j) => j.state === 'R');
      await f.restart('SIGKILL');
      await alice.close().catch(() => {});
      alice = await connectAs(f.core.port, aliceBundle);
      const job = await waitForJob(alice, id, isFinal, 60_000);
      expect(job.state).to.equal('F');
      expect(partitionOf(job.node_names)).to.equal(aliceFirst);
      expect(await listed(aliceFirst)).to.include({ state: 'idle' });
      expect(creations(aliceFirst)).to.equal(1);
    });

    it('while a partition is being created: asked of the gate once, and the job runs on it', async () => {
      const frozen = gatePid(f.spool);
      process.kill(frozen, 'SIGSTOP');
      let id: string;
      try {
        id = await submitJob(f.admin, '#!/bin/sh\necho created\n');
        await waitForJob(f.admin, id, (j) => j.state === 'W');
        await f.restart('SIGKILL');
      } finally {
        process.kill(frozen, 'SIGCONT');
      }
      const job = await waitForJob(f.admin, id, isFinal, 60_000);
      expect(job.state).to.equal('F');
      const name = partitionOf(job.node_names);
      expect(name).to.equal(`job-${id}`);
      const atGate = (await gate.connection.call('partition.list')).filter((p) => p.name.startsWith(`job-${id}`));
      expect(atGate, 'one partition for the job').to.have.length(1);
      expect(await recorded()).to.deep.equal(await liveNames());
    });

    it('while a partition is being deleted: it is deleted after the restart, and nothing is lost track of', async () => {
      const job = await run(f.admin, '#!/bin/sh\n#SWM nodes 2\necho soon deleted\n');
      const name = partitionOf(job.node_names);
      const frozen = gatePid(f.spool);
      process.kill(frozen, 'SIGSTOP');
      try {
        expect((await f.admin.call('partition.delete', { name })).state).to.equal('deleting');
        await f.restart('SIGKILL');
        expect((await listed(name))?.state).to.equal('deleting');
      } finally {
        process.kill(frozen, 'SIGCONT');
      }
      await gate.until((p) => p.name === name && p.status === 'deleted');
      await waitUntil(async () => (await listed(name)) === undefined);
      expect(await recorded()).to.deep.equal(await liveNames());
    });
  });

  describe('a core stopped', () => {
    it('deletes its idle partitions (SIGTERM, Ctrl-C): nobody could be placed on them meanwhile', async () => {
      // The core was restarted by the tests before: a terminal of the current one.
      await alice.close().catch(() => {});
      alice = await connectAs(f.core.port, aliceBundle);
      const job = await run(alice, '#!/bin/sh\necho last\n');
      const name = partitionOf(job.node_names);
      expect(await listed(name)).to.include({ state: 'idle' });
      await f.restart('SIGTERM');
      await gate.until((p) => p.name === name && p.status === 'deleted');
      await alice.close().catch(() => {});
      alice = await connectAs(f.core.port, aliceBundle);
      await waitUntil(async () => (await listed(name)) === undefined);
      expect((await gate.live()).map((p) => p.name)).to.not.include(name);
    });
  });
});

describe('a warm pool', function () {
  this.timeout(120_000);
  let f: CoreFixture;
  let gate: GateWatch;

  before(async () => {
    f = await startFixture({
      configure: (config) => {
        keepAlive(600)(config);
        config.remotes[0]!.pool = { flavor: 'local.small', nodes: 1, count: 1, cloudImage: null };
      },
    });
    gate = await GateWatch.open(f);
  });
  after(async () => {
    await gate?.connection.close();
    await f?.stop();
  });

  it('keeps a partition ready ahead of jobs, gives it to the first job that fits, and makes another', async () => {
    const spare = await gate.until((p) => p.name.startsWith('pool-') && p.status === 'up');
    const listedSpare = () => f.admin.call('partition.list').then((all) => all.find((p) => p.name === spare.name));
    await waitUntil(async () => (await listedSpare())?.state === 'idle');
    expect(await listedSpare()).to.include({ pool: true, owner: null, state: 'idle' });
    const id = await submitJob(f.admin, '#!/bin/sh\n#SWM flavor local.small\necho pooled\n');
    const job = await waitForJob(f.admin, id, isFinal, 60_000);
    expect(job.state).to.equal('F');
    expect(job.node_names[0]!.startsWith(spare.name)).to.equal(true);
    const next = await gate.until((p) => p.name.startsWith('pool-') && p.name !== spare.name && p.status === 'up');
    const after = await f.admin.call('partition.list');
    expect(after.find((p) => p.name === spare.name)).to.include({ owner: 'admin', jobsRun: 1 });
    expect(after.find((p) => p.name === next.name)).to.include({ owner: null, pool: true });
  });
});

/** Checks `condition` on every turn of a short poll, for state the core publishes no event of to terminals. */
async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error('condition not met within the time limit');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
