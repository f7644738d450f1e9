import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { listenMtls } from '../spool-bootstrap/listener.js';
import { createCa, identityOf, issueCertificate, normalizeSerial, type CertifiedKey } from '../spool-bootstrap/pki.js';
import { Revocations } from '../spool-bootstrap/revocations.js';
import { makeTestSpool, type TestSpool } from './harness/spool.js';

const DAY = 86_400_000;

/** One HTTPS request with a client certificate; the status code, or the error that ended the connection. */
const requestWith = (port: number, caPem: string, client: CertifiedKey): Promise<number | Error> =>
  new Promise((done) => {
    const req = request(
      { host: '127.0.0.1', port, servername: 'localhost', path: '/', ca: caPem, cert: client.certPem, key: client.keyPem, agent: false },
      (response) => {
        response.resume();
        done(response.statusCode ?? 0);
      },
    );
    req.on('error', done);
    req.end();
  });

describe('pki', function () {
  this.timeout(30_000);
  let ca: CertifiedKey;
  before(() => {
    ca = createCa('test authority');
  });

  it('creates a self-signed CA that may only sign certificates', () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.ca).to.equal(true);
    expect(cert.checkIssued(cert)).to.equal(true);
    expect(cert.verify(cert.publicKey)).to.equal(true);
    const usage = forge.pki.certificateFromPem(ca.certPem).getExtension('keyUsage') as { keyCertSign?: boolean; digitalSignature?: boolean };
    expect(usage.keyCertSign).to.equal(true);
    expect(usage.digitalSignature ?? false).to.equal(false);
    expect(identityOf(cert), 'a CA speaks for no role').to.equal(null);
  });

  describe('identityOf', () => {
    it('reads role (OU), name (CN) and serial from an X509Certificate', () => {
      const issued = issueCertificate(ca, { role: 'user', name: 'alice' });
      const cert = new X509Certificate(issued.certPem);
      expect(cert.subject).to.include('OU=user').and.to.include('CN=alice');
      expect(identityOf(cert)).to.deep.equal({ role: 'user', name: 'alice', serial: normalizeSerial(issued.serial) });
    });

    it('reads the object form of a TLS peer certificate, normalising its serial', () => {
      expect(identityOf({ subject: { CN: 'local', OU: 'gate', O: 'Sky Port' }, serialNumber: '00AB12' })).to.deep.equal({ role: 'gate', name: 'local', serial: 'ab12' });
    });

    it('refuses certificates without a known role or without a name', () => {
      expect(identityOf({ subject: { CN: 'mallory', OU: 'root' }, serialNumber: '01' })).to.equal(null);
      expect(identityOf({ subject: { CN: 'mallory' }, serialNumber: '01' })).to.equal(null);
      expect(identityOf({ subject: { OU: 'admin' }, serialNumber: '01' })).to.equal(null);
      expect(identityOf({ subject: 'CN=mallory\nO=Sky Port', serialNumber: '01' })).to.equal(null);
    });
  });

  describe('serials', () => {
    it('normalises case and leading zeros so every source of a serial compares equal', () => {
      expect(normalizeSerial('000ABCdef')).to.equal('abcdef');
      expect(normalizeSerial('abcdef')).to.equal('abcdef');
      const issued = issueCertificate(ca, { role: 'admin', name: 'root-admin' });
      // node:crypto prints serials in upper case; the registry and revocations use the normalised form.
      const fromX509 = new X509Certificate(issued.certPem).serialNumber;
      expect(normalizeSerial(fromX509)).to.equal(normalizeSerial(issued.serial));
    });

    it('gives every certificate a positive serial of its own', () => {
      const serials = Array.from({ length: 5 }, () => issueCertificate(ca, { role: 'user', name: 'u' }).serial);
      expect(new Set(serials).size).to.equal(5);
      for (const serial of serials) expect(parseInt(serial[0]!, 16)).to.be.below(8);
    });

    it('matches a revoked serial whatever its spelling', () => {
      const dir = mkdtempSync(join(tmpdir(), 'skyport-pki-'));
      try {
        const revocations = new Revocations(join(dir, 'revoked.json'));
        revocations.revoke(['00AbC123']);
        expect(revocations.isRevoked('abc123')).to.equal(true);
        expect(revocations.isRevoked('0000ABC123')).to.equal(true);
        expect(revocations.isRevoked('abc124')).to.equal(false);
        expect(new Revocations(join(dir, 'revoked.json')).isRevoked('ABC123'), 'persisted').to.equal(true);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('validity', () => {
    let test: TestSpool;
    before(async () => {
      test = await makeTestSpool();
    });
    after(() => test?.cleanup());

    it('issues certificates with the requested validity window', () => {
      const notBefore = new Date(Date.now() - 10 * DAY);
      const notAfter = new Date(Date.now() - DAY);
      const expired = new X509Certificate(issueCertificate(ca, { role: 'user', name: 'old', notBefore, notAfter }).certPem);
      expect(Date.parse(expired.validTo)).to.be.closeTo(notAfter.getTime(), 1000);
      expect(Date.parse(expired.validFrom)).to.be.closeTo(notBefore.getTime(), 1000);
      const fresh = new X509Certificate(issueCertificate(ca, { role: 'user', name: 'new', validityDays: 30 }).certPem);
      expect(Date.parse(fresh.validTo)).to.be.closeTo(Date.now() + 30 * DAY, 120_000);
    });

    it('makes an expired certificate that the mTLS listener refuses, while a valid one is admitted', async () => {
      const spoolCa = { certPem: readFileSync(test.spool.ca.cert, 'utf8'), keyPem: readFileSync(test.spool.ca.key, 'utf8') };
      const listener = await listenMtls({
        caCertPath: test.spool.ca.cert,
        server: test.spool.core,
        host: '127.0.0.1',
        port: 0,
        revocations: new Revocations(test.spool.revoked),
        maxMessageBytes: 1024 * 1024,
        onSocket: (socket) => socket.close(),
      });
      try {
        const valid = issueCertificate(spoolCa, { role: 'user', name: 'valid' });
        const expired = issueCertificate(spoolCa, { role: 'user', name: 'expired', notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
        const future = issueCertificate(spoolCa, { role: 'user', name: 'future', notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 10 * DAY) });
        expect(await requestWith(listener.port, spoolCa.certPem, valid)).to.equal(404);
        expect(await requestWith(listener.port, spoolCa.certPem, expired)).to.be.instanceOf(Error);
        expect(await requestWith(listener.port, spoolCa.certPem, future)).to.be.instanceOf(Error);
        const foreign = issueCertificate(ca, { role: 'admin', name: 'intruder' });
        expect(await requestWith(listener.port, spoolCa.certPem, foreign)).to.be.instanceOf(Error);
      } finally {
        await listener.close();
      }
    });
  });
});
