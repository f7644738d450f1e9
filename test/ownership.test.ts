import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeBundle } from '../spool-bootstrap/users.js';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { ErrorCode } from '../terminal-protocol/errors.js';
import { connectAs } from './harness/certs.js';
import { connectTerminal, startFixture, type CoreFixture } from './harness/core.js';
import { rejection } from './harness/rpc.js';
import { freePort, unreachableGates } from './harness/spool.js';

const SCRIPT = '#!/bin/sh\n#SWM name alice-private\n#SWM comment only alice may see this\necho secret\n';

describe('job ownership (real swm-core)', function () {
  this.timeout(30_000);
  let fixture: CoreFixture;
  let alice: TerminalClient;
  let bob: TerminalClient;
  let bobHome: string;
  let jobId: string;

  before(async () => {
    fixture = await startFixture({ configure: unreachableGates(await freePort()) });
    const aliceBundle = await fixture.admin.call('admin.user.add', { name: 'alice' });
    alice = await connectAs(fixture.core.port, aliceBundle);
    // Bob uses his bundle the way `swm` does: written out as a $SWM_HOME directory.
    bobHome = mkdtempSync(join(tmpdir(), 'skyport-bob-'));
    writeBundle(bobHome, await fixture.admin.call('admin.user.add', { name: 'bob' }));
    bob = await connectTerminal(bobHome, fixture.core.port);
    jobId = (await alice.call('job.submit', { script: SCRIPT })).id;
  });
  after(async () => {
    await alice?.close();
    await bob?.close();
    await fixture?.stop();
    if (bobHome) rmSync(bobHome, { recursive: true, force: true });
  });

  it('lets the owner see her queued job', async () => {
    expect((await alice.call('hello')).role).to.equal('user');
    const job = await alice.call('job.get', { id: jobId });
    expect(job).to.include({ id: jobId, owner: 'alice', state: 'Q', name: 'alice-private' });
    expect((await alice.call('job.list')).jobs.map((j) => j.id)).to.deep.equal([jobId]);
  });

  const foreignCalls: [string, (client: TerminalClient, id: string) => Promise<unknown>][] = [
    ['job.get', (c, id) => c.call('job.get', { id })],
    ['job.cancel', (c, id) => c.call('job.cancel', { id })],
    ['job.requeue', (c, id) => c.call('job.requeue', { id })],
    ['job.logs', (c, id) => c.call('job.logs', { id, stream: 'stdout' })],
    ['job.files', (c, id) => c.call('job.files', { id })],
    ['job.file.read', (c, id) => c.call('job.file.read', { id, path: 'stdout.log', offset: 0, length: 16 })],
    ['job.subscribe', (c, id) => c.call('job.subscribe', { id })],
    ['job.input.status', (c, id) => c.call('job.input.status', { id })],
  ];
  for (const [method, call] of foreignCalls) {
    it(`answers another user's ${method} with NotFound, exactly as for an id that does not exist`, async () => {
      const foreign = await rejection(call(bob, jobId));
      const missingId = randomUUID();
      const missing = await rejection(call(bob, missingId));
      expect(foreign.code).to.equal(ErrorCode.NotFound);
      expect(missing.code).to.equal(ErrorCode.NotFound);
      expect(foreign.message.replace(jobId, '<id>')).to.equal(missing.message.replace(missingId, '<id>'));
      expect(foreign.data).to.deep.equal(missing.data);
    });
  }

  it("leaves the job untouched by the other user's attempts", async () => {
    expect(await alice.call('job.get', { id: jobId })).to.include({ state: 'Q', owner: 'alice' });
  });

  it("does not list someone else's job, even when a user asks for all", async () => {
    await bob.call('job.submit', { script: '#!/bin/sh\n#SWM name bobs\ntrue\n' });
    for (const params of [undefined, { all: true }, { states: ['Q' as const] }]) {
      const ids = (await bob.call('job.list', params)).jobs.map((j) => j.id);
      expect(ids).to.have.length(1);
      expect(ids).not.to.include(jobId);
    }
    expect((await alice.call('job.list', { all: true })).jobs.map((j) => j.id)).to.deep.equal([jobId]);
  });

  it("shows an admin everyone's jobs only when asked for all", async () => {
    expect((await fixture.admin.call('job.list')).jobs.map((j) => j.id)).not.to.include(jobId);
    const all = await fixture.admin.call('job.list', { all: true });
    expect(all.jobs.map((j) => j.owner).sort()).to.deep.equal(['alice', 'bob']);
    expect(await fixture.admin.call('job.get', { id: jobId })).to.include({ owner: 'alice', name: 'alice-private' });
  });

  it("lets an admin issued through the protocol see and cancel a user's job", async () => {
    const eve = await connectAs(fixture.core.port, await fixture.admin.call('admin.user.add', { name: 'eve', admin: true }));
    try {
      expect((await eve.call('hello')).role).to.equal('admin');
      expect((await eve.call('job.list', { all: true })).jobs.map((j) => j.id)).to.include(jobId);
      const canceled = await eve.call('job.cancel', { id: jobId });
      expect(canceled).to.include({ id: jobId, state: 'C' });
    } finally {
      await eve.close();
    }
    expect(await alice.call('job.get', { id: jobId })).to.include({ state: 'C' });
  });

  it('lets the owner requeue her own job', async () => {
    expect(await alice.call('job.requeue', { id: jobId })).to.include({ state: 'Q' });
  });

  it('forbids users the admin methods, and issues nothing for them', async () => {
    const add = await rejection(bob.call('admin.user.add', { name: 'mallory', admin: true }));
    expect(add.code).to.equal(ErrorCode.Forbidden);
    const revoke = await rejection(bob.call('admin.user.revoke', { name: 'alice' }));
    expect(revoke.code).to.equal(ErrorCode.Forbidden);
    const issued = readFileSync(fixture.spool.spool.issued, 'utf8');
    expect(issued).not.to.include('mallory');
    expect((await alice.call('hello')).user, 'alice was not revoked').to.equal('alice');
  });
});
