import { expect } from 'chai';
import { createCa, issueCertificate } from '../spool-bootstrap/pki.js';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { ErrorCode } from '../terminal-protocol/errors.js';
import { closeCodeOf, connectAs, issueFromSpool, openRawSocket, spoolCaPem, type ClientBundle } from './harness/certs.js';
import { startFixture, type CoreFixture } from './harness/core.js';

const DAY = 86_400_000;

/** The connect() promise rejects: the core refused the certificate before any call could be made. */
async function expectRefused(fixture: CoreFixture, bundle: ClientBundle): Promise<void> {
  let client: TerminalClient | null = null;
  try {
    client = await connectAs(fixture.core.port, bundle);
  } catch (error) {
    expect((error as { code?: number }).code).to.equal(ErrorCode.Unavailable);
    return;
  } finally {
    await client?.close();
  }
  expect.fail('the core accepted the connection');
}

/** A user issued through the admin's terminal, as `swm admin user add` does. */
async function addUser(fixture: CoreFixture, name: string): Promise<ClientBundle> {
  const issued = await fixture.admin.call('admin.user.add', { name });
  expect(issued.role).to.equal('user');
  return issued;
}

describe('terminal port TLS admission (real swm-core)', function () {
  this.timeout(30_000);
  let fixture: CoreFixture;

  before(async () => {
    fixture = await startFixture();
  });
  after(async () => {
    await fixture?.stop();
  });

  it('admits the spool admin (the control case)', async () => {
    const hello = await fixture.admin.call('hello');
    expect(hello).to.include({ user: 'admin', role: 'admin' });
  });

  it('refuses a connection with no client certificate', async () => {
    let error: Error | null = null;
    try {
      const socket = await openRawSocket(fixture.core.port, { caPem: spoolCaPem(fixture.spool) });
      socket.terminate();
    } catch (e) {
      error = e as Error;
    }
    expect(error, 'a WebSocket opened without a client certificate').to.be.instanceOf(Error);
  });

  it('refuses a certificate from another CA, even with the admin role and name', async () => {
    const otherCa = createCa('another authority');
    const forged = issueCertificate(otherCa, { role: 'admin', name: 'admin' });
    await expectRefused(fixture, { certPem: forged.certPem, keyPem: forged.keyPem, caPem: spoolCaPem(fixture.spool) });
  });

  it('refuses an expired certificate issued by the spool CA', async () => {
    const expired = issueFromSpool(fixture.spool, {
      role: 'admin',
      name: 'admin',
      notBefore: new Date(Date.now() - 30 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    await expectRefused(fixture, expired);
  });

  it('refuses a certificate that is not valid yet', async () => {
    const early = issueFromSpool(fixture.spool, {
      role: 'user',
      name: 'early',
      notBefore: new Date(Date.now() + DAY),
      notAfter: new Date(Date.now() + 30 * DAY),
    });
    await expectRefused(fixture, early);
  });

  it('refuses a revoked certificate at the handshake', async () => {
    const dave = await addUser(fixture, 'dave');
    const client = await connectAs(fixture.core.port, dave);
    expect((await client.call('hello')).user).to.equal('dave');
    await client.close();

    const revoked = await fixture.admin.call('admin.user.revoke', { name: 'dave' });
    expect(revoked.serials).to.have.length(1);
    await expectRefused(fixture, dave);
  });

  it("closes a revoked user's connection that is already open", async () => {
    const carol = await addUser(fixture, 'carol');
    const client = await connectAs(fixture.core.port, carol);
    try {
      expect((await client.call('hello')).user).to.equal('carol');
      const disconnected = new Promise<number>((resolve) => client.once('disconnected', (code: number) => resolve(code)));
      await fixture.admin.call('admin.user.revoke', { name: 'carol' });
      await disconnected;
      expect(client.connected).to.equal(false);
      let error: { code?: number } | null = null;
      await client.call('hello').catch((e: { code?: number }) => (error = e));
      expect(error, 'a call on the closed connection').to.have.property('code', ErrorCode.Unavailable);
    } finally {
      await client.close();
    }
    // Other people's connections are untouched.
    expect((await fixture.admin.call('hello')).user).to.equal('admin');
  });

  for (const role of ['core', 'gate'] as const) {
    it(`closes a ${role} certificate's WebSocket on the terminal port with 4003`, async () => {
      const server = issueFromSpool(fixture.spool, { role, name: role === 'core' ? 'core' : 'local', sans: ['localhost'] });
      const socket = await openRawSocket(fixture.core.port, server);
      const code = await closeCodeOf(socket, 5_000).finally(() => socket.terminate());
      expect(code).to.equal(4003);
    });
  }

  it('keeps serving its admin after every refusal', async () => {
    expect(fixture.core.child.exitCode).to.equal(null);
    expect((await fixture.admin.call('hello')).user).to.equal('admin');
  });
});
