import Database from 'better-sqlite3';
import { expect } from 'chai';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { connectTerminal, startFixture, type CoreFixture } from './harness/core.js';
import { freePort, unreachableGates } from './harness/spool.js';

const JOBS = 50;
const TERMINALS = 5;

/** A script unique to job `i`, so a mix-up between jobs shows. */
const scriptOf = (i: number): string => `#!/bin/sh\n#SWM name durable-${i}\n#SWM comment token-${i}-${'z'.repeat(i)}\necho ${i}\n`;

describe('durability of acknowledged submissions (real swm-core, kill -9)', function () {
  this.timeout(30_000);
  let fixture: CoreFixture;
  const acknowledged = new Map<string, number>();

  before(async () => {
    fixture = await startFixture({ configure: unreachableGates(await freePort()) });
  });
  after(async () => {
    await fixture?.stop();
  });

  it(`acknowledges ${JOBS} concurrent submissions from ${TERMINALS} terminals, each with its own id`, async () => {
    const terminals: TerminalClient[] = await Promise.all(
      Array.from({ length: TERMINALS }, () => connectTerminal(fixture.spool.homeDir, fixture.core.port)),
    );
    try {
      const answers = await Promise.all(
        Array.from({ length: JOBS }, (_, i) => terminals[i % TERMINALS]!.call('job.submit', { script: scriptOf(i) }).then((a) => [a.id, i] as const)),
      );
      for (const [id, i] of answers) acknowledged.set(id, i);
    } finally {
      await Promise.all(terminals.map((t) => t.close()));
    }
    expect(acknowledged.size).to.equal(JOBS);
  });

  it('has every acknowledged job, queued and with its script, after kill -9 and a restart', async () => {
    const killed = fixture.core.child;
    await fixture.restart('SIGKILL');
    expect(killed.signalCode, 'the first core died of SIGKILL, with no chance to flush').to.equal('SIGKILL');
    expect(fixture.core.child.pid).not.to.equal(killed.pid);

    const listed = await fixture.admin.call('job.list', { all: true, limit: 1000 });
    expect(listed.jobs.map((j) => j.id).sort()).to.deep.equal([...acknowledged.keys()].sort());
    for (const [id, i] of acknowledged) {
      const job = await fixture.admin.call('job.get', { id });
      expect(job, id).to.include({ state: 'Q', owner: 'admin', name: `durable-${i}` });
      expect(job.comment).to.equal(`token-${i}-${'z'.repeat(i)}`);
    }

    // The script itself is not on the wire: read it from the store (the core keeps running; WAL allows readers).
    const db = new Database(fixture.spool.spool.db, { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT id, state, script FROM jobs').all() as { id: string; state: string; script: string }[];
      expect(rows).to.have.length(JOBS);
      for (const row of rows) {
        expect(acknowledged.has(row.id), row.id).to.equal(true);
        expect(row.state).to.equal('Q');
        expect(row.script).to.equal(scriptOf(acknowledged.get(row.id)!));
      }
    } finally {
      db.close();
    }
  });

  it('accepts new work on the restarted core', async () => {
    const { id } = await fixture.admin.call('job.submit', { script: scriptOf(JOBS) });
    expect(acknowledged.has(id)).to.equal(false);
    expect(await fixture.admin.call('job.get', { id })).to.include({ state: 'Q' });
  });
});
