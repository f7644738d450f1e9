import { expect } from 'chai';

/** What every remote gets about partitions when the configuration says nothing (the gate kind's keep-alive). */
const PARTITION_DEFAULTS = { idleTimeoutSec: null, maxIdleTimeoutSec: 3600, nodeAgent: true, sharePartitions: false, maxIdle: null, pool: null };
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import forge from 'node-forge';
import { loadCoreConfig } from '../spool-bootstrap/config.js';
import { readIssued } from '../spool-bootstrap/issued.js';
import { listenMtls, type MtlsListener } from '../spool-bootstrap/listener.js';
import { homePaths, spoolPaths, type SpoolPaths } from '../spool-bootstrap/paths.js';
import { createCa, identityOf, issueCertificate } from '../spool-bootstrap/pki.js';
import { answersFromEnv, askForMissing, defaultAnswers, mergeAnswers } from '../spool-bootstrap/prompt.js';
import { Revocations } from '../spool-bootstrap/revocations.js';
import { SpoolExistsError, createSpool, type CreatedSpool } from '../spool-bootstrap/setup.js';
import { issueUserBundle, revokeUser, serialsOf, writeBundle } from '../spool-bootstrap/users.js';
import { freePort, makeTestSpool, type TestSpool } from './harness/spool.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const setupMain = join(repoRoot, 'dist', 'spool-bootstrap', 'main.js');

const modeOf = (path: string): number => statSync(path).mode & 0o777;
const tempDir = (): string => mkdtempSync(join(tmpdir(), 'skyport-setup-'));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run swm-setup as a real child process (stdin is not a terminal, so it asks nothing). */
const runSetup = (args: string[], env: Record<string, string>): Promise<Run> =>
  new Promise((done) => {
    const { SWM_SPOOL, SWM_HOME, SKYPORT_USER, SKYPORT_USER_ID, SKYPORT_REMOTE_LOCATION, SKYPORT_RECREATE, ...inherited } = process.env;
    execFile(process.execPath, [setupMain, ...args], { env: { ...inherited, ...env } }, (error, stdout, stderr) => {
      done({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });

const forgeCert = (pem: string) => forge.pki.certificateFromPem(pem);

interface KeyUsage {
  digitalSignature?: boolean;
  keyEncipherment?: boolean;
  keyCertSign?: boolean;
}
interface ExtKeyUsage {
  serverAuth?: boolean;
  clientAuth?: boolean;
}

/** One HTTPS request to the listener with a bundle's certificate; resolves the status or the error. */
const requestWith = (port: number, bundle: { cert: string; key: string; ca: string }): Promise<number | Error> =>
  new Promise((done) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        path: '/',
        ca: readFileSync(bundle.ca),
        cert: readFileSync(bundle.cert),
        key: readFileSync(bundle.key),
        agent: false,
      },
      (response) => {
        response.resume();
        done(response.statusCode ?? 0);
      },
    );
    req.on('error', done);
    req.end();
  });

const coreListener = async (spool: SpoolPaths, revocations: Revocations): Promise<MtlsListener> =>
  listenMtls({
    caCertPath: spool.ca.cert,
    server: spool.core,
    host: '127.0.0.1',
    port: await freePort(),
    revocations,
    maxMessageBytes: 1024 * 1024,
    onSocket: (socket) => socket.close(),
  });

describe('swm-setup', function () {
  this.timeout(30_000);
  const dirs: string[] = [];
  const newDir = (): string => {
    const dir = tempDir();
    dirs.push(dir);
    return dir;
  };
  after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  describe('createSpool', () => {
    let root: string;
    let created: CreatedSpool;
    before(async () => {
      root = newDir();
      created = await createSpool({
        spoolDir: join(root, 'spool'),
        homeDir: join(root, 'home'),
        user: 'alice',
        host: 'skyport.example.org',
        port: 9443,
        remoteLocation: 'westeurope',
      });
    });

    it('lays out the spool with private keys 0600 and directories 0700', () => {
      const { spool, home } = created;
      for (const dir of [spool.root, spool.secure, spool.ca.dir, spool.core.dir, spool.gate('local').dir, spool.gate('azure').dir, spool.user('alice').dir, spool.dbDir, spool.jobsDir, spool.partitionsDir, spool.logsDir, home.root]) {
        expect(statSync(dir).isDirectory(), dir).to.equal(true);
        expect(modeOf(dir), dir).to.equal(0o700);
      }
      for (const key of [spool.ca.key, spool.core.key, spool.gate('local').key, spool.gate('azure').key, home.key]) {
        expect(modeOf(key), key).to.equal(0o600);
      }
      for (const cert of [spool.ca.cert, spool.core.cert, spool.gate('local').cert, spool.gate('azure').cert, spool.user('alice').cert, home.cert, home.ca]) {
        expect(readFileSync(cert, 'utf8'), cert).to.match(/^-----BEGIN CERTIFICATE-----/);
      }
      expect(existsSync(spool.user('alice').key), "the spool keeps no copy of a user's key").to.equal(false);
      expect(modeOf(spool.config)).to.equal(0o600);
    });

    it('writes a valid configuration with the local remote as default and azure unmanaged', () => {
      const config = loadCoreConfig(created.spool.config);
      expect(config).to.deep.equal(created.config);
      expect(config.core.id).to.match(/^[0-9a-f-]{36}$/);
      expect(config.core).to.include({ host: 'skyport.example.org', port: 9443 });
      const local = config.gates.find((g) => g.name === 'local')!;
      expect(local).to.include({ kind: 'local', host: '127.0.0.1', managed: true });
      expect(local.port, "the gates take free ports after the core's").to.be.greaterThan(9443);
      expect((local.options.flavors as Array<{ name: string; cpus: number; memMiB: number }>).map((f) => [f.name, f.cpus, f.memMiB])).to.deep.equal([
        ['local.small', 1, 1024],
        ['local.medium', 2, 4096],
        ['local.large', 4, 8192],
      ]);
      const azure = config.gates.find((g) => g.name === 'azure')!;
      expect(azure).to.include({ kind: 'azure', managed: false });
      expect(azure.port).to.be.greaterThan(local.port);
      expect(azure.options).to.deep.equal({ location: 'westeurope' });
      expect(config.remotes).to.deep.equal([
        { name: 'local', gate: 'local', default: true, maxNodes: 32, defaultImage: null, defaultCloudImage: null, defaultFlavor: 'local.small', ...PARTITION_DEFAULTS },
        {
          name: 'azure',
          gate: 'azure',
          location: 'westeurope',
          default: false,
          maxNodes: 8,
          defaultImage: null,
          defaultCloudImage: 'Canonical:ubuntu-24_04-lts:server:latest',
          defaultFlavor: 'Standard_B2s',
          ...PARTITION_DEFAULTS,
        },
      ]);
      expect(JSON.parse(readFileSync(created.home.config, 'utf8'))).to.deep.equal({ coreUrl: 'wss://skyport.example.org:9443', user: 'alice' });
    });

    it('issues each certificate with its role, name, key usage, and serverAuth only for the core and gates', () => {
      const { spool, home } = created;
      const expected = [
        { path: spool.core.cert, role: 'core', name: 'core', server: true },
        { path: spool.gate('local').cert, role: 'gate', name: 'local', server: true },
        { path: spool.gate('azure').cert, role: 'gate', name: 'azure', server: true },
        { path: home.cert, role: 'admin', name: 'alice', server: false },
      ];
      for (const { path, role, name, server } of expected) {
        const x509 = new X509Certificate(readFileSync(path));
        expect(identityOf(x509), path).to.include({ role, name });
        expect(x509.ca).to.equal(false);
        const cert = forgeCert(readFileSync(path, 'utf8'));
        const keyUsage = cert.getExtension('keyUsage') as KeyUsage;
        expect(keyUsage).to.include({ digitalSignature: true, keyEncipherment: true });
        expect(keyUsage.keyCertSign ?? false).to.equal(false);
        const extKeyUsage = cert.getExtension('extKeyUsage') as ExtKeyUsage;
        expect(extKeyUsage.clientAuth, path).to.equal(true);
        expect(Boolean(extKeyUsage.serverAuth), path).to.equal(server);
        // node:crypto names the extended key usage OIDs `keyUsage`.
        expect(x509.keyUsage.includes('1.3.6.1.5.5.7.3.1'), path).to.equal(server);
      }
      const core = new X509Certificate(readFileSync(spool.core.cert));
      for (const san of [`DNS:${hostname()}`, 'DNS:skyport.example.org', 'DNS:localhost', 'IP Address:127.0.0.1']) {
        expect(core.subjectAltName).to.include(san);
      }
      const gate = new X509Certificate(readFileSync(spool.gate('local').cert));
      expect(gate.subjectAltName).to.include('DNS:localhost').and.to.include('IP Address:127.0.0.1');
      expect(readFileSync(home.ca, 'utf8')).to.equal(readFileSync(spool.ca.cert, 'utf8'));
    });

    it('signs every certificate with the spool CA, which is a CA', () => {
      const { spool, home } = created;
      const ca = new X509Certificate(readFileSync(spool.ca.cert));
      expect(ca.ca).to.equal(true);
      expect((forgeCert(readFileSync(spool.ca.cert, 'utf8')).getExtension('keyUsage') as KeyUsage).keyCertSign).to.equal(true);
      for (const path of [spool.core.cert, spool.gate('local').cert, spool.gate('azure').cert, home.cert]) {
        const cert = new X509Certificate(readFileSync(path));
        expect(cert.checkIssued(ca), path).to.equal(true);
        expect(cert.verify(ca.publicKey), path).to.equal(true);
      }
      const otherCa = createCa('another spool');
      const stranger = new X509Certificate(issueCertificate(otherCa, { role: 'admin', name: 'alice' }).certPem);
      expect(stranger.verify(ca.publicKey)).to.equal(false);
    });

    it('records every issued certificate in secure/issued.json with its serial', () => {
      const issued = readIssued(created.spool.issued);
      expect(issued.map((c) => `${c.role}:${c.name}`)).to.deep.equal(['core:core', 'gate:local', 'gate:azure', 'admin:alice']);
      const adminSerial = identityOf(new X509Certificate(readFileSync(created.home.cert)))!.serial;
      expect(issued[3]!.serial).to.equal(adminSerial);
      for (const entry of issued) expect(Date.parse(entry.issuedAt)).to.be.closeTo(Date.now(), 120_000);
    });

    it("hands the admin a bundle the core's listener admits", async () => {
      const listener = await coreListener(created.spool, new Revocations(created.spool.revoked));
      try {
        expect(await requestWith(listener.port, created.home)).to.equal(404);
      } finally {
        await listener.close();
      }
    });
  });

  describe('an existing spool', () => {
    it('is refused without force, and nothing in it changes', async () => {
      const root = newDir();
      const options = { spoolDir: join(root, 'spool'), homeDir: join(root, 'home'), user: 'alice' };
      const first = await createSpool(options);
      const before = readFileSync(first.spool.config, 'utf8');
      let refused: unknown;
      try {
        await createSpool({ ...options, user: 'bob' });
      } catch (error) {
        refused = error;
      }
      expect(refused).to.be.instanceOf(SpoolExistsError);
      expect((refused as Error).message).to.include('already exists').and.to.include('--force');
      expect(readFileSync(first.spool.config, 'utf8')).to.equal(before);
      expect(readIssued(first.spool.issued).map((c) => c.name)).to.not.include('bob');
    });

    it('is recreated with force: new CA, new core id, old content gone', async () => {
      const root = newDir();
      const options = { spoolDir: join(root, 'spool'), homeDir: join(root, 'home'), user: 'alice' };
      const first = await createSpool(options);
      const oldCa = readFileSync(first.spool.ca.cert, 'utf8');
      mkdirSync(first.spool.job('stale-job'));
      const second = await createSpool({ ...options, user: 'bob', force: true });
      expect(second.config.core.id).to.not.equal(first.config.core.id);
      expect(readFileSync(second.spool.ca.cert, 'utf8')).to.not.equal(oldCa);
      expect(existsSync(first.spool.job('stale-job'))).to.equal(false);
      expect(existsSync(second.spool.user('alice').dir)).to.equal(false);
      expect(readIssued(second.spool.issued).map((c) => c.name)).to.deep.equal(['core', 'local', 'azure', 'bob']);
      expect(new X509Certificate(readFileSync(second.home.cert)).checkIssued(new X509Certificate(readFileSync(second.spool.ca.cert)))).to.equal(true);
    });

    it('refuses a directory that holds something else than a spool', async () => {
      const root = newDir();
      mkdirSync(join(root, 'spool'));
      writeFileSync(join(root, 'spool', 'notes.txt'), 'mine');
      let refused: unknown;
      try {
        await createSpool({ spoolDir: join(root, 'spool'), homeDir: join(root, 'home'), user: 'alice' });
      } catch (error) {
        refused = error;
      }
      expect((refused as Error).message).to.include('not empty');
      expect(readFileSync(join(root, 'spool', 'notes.txt'), 'utf8')).to.equal('mine');
    });

    it('refuses a home directory inside the spool and an unsafe user name', async () => {
      const root = newDir();
      const attempts = [
        { spoolDir: join(root, 'spool'), homeDir: join(root, 'spool'), user: 'alice' },
        { spoolDir: join(root, 'spool'), homeDir: join(root, 'spool', 'home'), user: 'alice' },
        { spoolDir: join(root, 'spool'), homeDir: join(root, 'home'), user: '../etc' },
      ];
      for (const attempt of attempts) {
        let error: unknown;
        try {
          await createSpool(attempt);
        } catch (caught) {
          error = caught;
        }
        expect(error, JSON.stringify(attempt)).to.be.instanceOf(Error);
      }
      expect(existsSync(join(root, 'spool'))).to.equal(false);
    });
  });

  describe('ownership', () => {
    it('gives the bundle to the requested uid when run as root', async function () {
      if (process.getuid?.() !== 0) this.skip();
      const root = newDir();
      const created = await createSpool({ spoolDir: join(root, 'spool'), homeDir: join(root, 'home'), user: 'alice', uid: 4321 });
      for (const path of [created.home.root, created.home.cert, created.home.key, created.home.ca, created.home.config]) {
        expect(statSync(path).uid, path).to.equal(4321);
      }
      expect(statSync(created.spool.ca.key).uid).to.equal(0);
    });
  });

  describe('user bundles', () => {
    let test: TestSpool;
    before(async () => {
      test = await makeTestSpool();
    });
    after(() => test?.cleanup());

    it('issues a bundle, keeps only its certificate, and writes it as a usable SWM_HOME', async () => {
      const bundle = issueUserBundle(test.spool, 'wss://localhost:1', 'carol', 'user');
      expect(bundle).to.include({ name: 'carol', role: 'user', coreUrl: 'wss://localhost:1' });
      expect(readFileSync(test.spool.user('carol').cert, 'utf8')).to.equal(bundle.certPem);
      expect(existsSync(test.spool.user('carol').key)).to.equal(false);
      expect(identityOf(new X509Certificate(bundle.certPem))).to.deep.equal({ role: 'user', name: 'carol', serial: bundle.serial });
      expect(serialsOf(test.spool, 'carol')).to.deep.equal([bundle.serial]);

      const dir = join(test.dir, 'carol');
      writeBundle(dir, bundle);
      const home = homePaths(dir);
      expect(modeOf(home.key)).to.equal(0o600);
      expect(readFileSync(home.key, 'utf8')).to.equal(bundle.keyPem);
      expect(readFileSync(home.ca, 'utf8')).to.equal(readFileSync(test.spool.ca.cert, 'utf8'));
      expect(JSON.parse(readFileSync(home.config, 'utf8'))).to.deep.equal({ coreUrl: 'wss://localhost:1', user: 'carol' });

      const listener = await coreListener(test.spool, new Revocations(test.spool.revoked));
      try {
        expect(await requestWith(listener.port, home)).to.equal(404);
      } finally {
        await listener.close();
      }
    });

    it("revokes every certificate of a user by name, and the listener refuses them", async () => {
      const first = issueUserBundle(test.spool, 'wss://localhost:1', 'dave', 'user');
      const second = issueUserBundle(test.spool, 'wss://localhost:1', 'dave', 'admin');
      const dirs = [join(test.dir, 'dave-1'), join(test.dir, 'dave-2')];
      writeBundle(dirs[0]!, first);
      writeBundle(dirs[1]!, second);
      const revocations = new Revocations(test.spool.revoked);
      const listener = await coreListener(test.spool, revocations);
      try {
        expect(await requestWith(listener.port, homePaths(dirs[0]!))).to.equal(404);
        const revoked = revokeUser(test.spool, revocations, 'dave');
        expect(revoked).to.have.members([first.serial, second.serial]);
        for (const dir of dirs) expect(await requestWith(listener.port, homePaths(dir))).to.be.instanceOf(Error);
        expect(await requestWith(listener.port, test.home)).to.equal(404, 'the admin is not affected');
        expect(new Revocations(test.spool.revoked).isRevoked(first.serial)).to.equal(true);
      } finally {
        await listener.close();
      }
    });

    it('does not count the core or gates as users, and refuses unknown users and unsafe names', () => {
      expect(serialsOf(test.spool, 'core')).to.deep.equal([]);
      expect(serialsOf(test.spool, 'core', ['core'])).to.have.length(1);
      const revocations = new Revocations(test.spool.revoked);
      expect(() => revokeUser(test.spool, revocations, 'core')).to.throw(/unknown user/);
      expect(() => revokeUser(test.spool, revocations, 'nobody')).to.throw(/unknown user/);
      expect(() => issueUserBundle(test.spool, 'wss://localhost:1', '../../etc', 'user')).to.throw(/invalid user name/);
    });
  });

  describe('the test harness', () => {
    it('puts the core and gates on distinct free ports on loopback, and applies configure', async () => {
      const test = await makeTestSpool({ user: 'erin', configure: (config) => (config.core.logLevel = 'debug') });
      try {
        const ports = [test.config.core.port, ...test.config.gates.map((g) => g.port)];
        expect(new Set(ports).size).to.equal(3);
        expect(test.config.core).to.include({ listen: '127.0.0.1', logLevel: 'debug' });
        expect(loadCoreConfig(test.spool.config)).to.deep.equal(test.config);
        expect(JSON.parse(readFileSync(test.home.config, 'utf8'))).to.deep.equal({ coreUrl: `wss://localhost:${test.config.core.port}`, user: 'erin' });
      } finally {
        test.cleanup();
      }
      expect(existsSync(test.dir)).to.equal(false);
    });
  });

  describe('the prompt', () => {
    it('takes the environment first, then the flags', () => {
      const env = answersFromEnv({ SKYPORT_USER: 'frank', SKYPORT_USER_ID: '1001', SKYPORT_REMOTE_LOCATION: 'westus', SKYPORT_RECREATE: 'no', SWM_SPOOL: '/s' });
      expect(env).to.include({ user: 'frank', uid: 1001, location: 'westus', force: false, spoolDir: '/s' });
      expect(mergeAnswers(env, { user: 'grace', uid: undefined })).to.include({ user: 'grace', uid: 1001 });
      expect(() => answersFromEnv({ SKYPORT_USER_ID: 'abc' })).to.throw(/invalid uid/);
    });

    it('asks whether to recreate first, then the missing questions, re-asking a bad answer', async () => {
      const input = new PassThrough();
      const output = new PassThrough();
      let transcript = '';
      const replies = ['y', 'heidi', 'not-a-number', '', 'northeurope'];
      output.on('data', (chunk: Buffer) => {
        transcript += chunk.toString();
        // Answer each question once it is shown, as a person would.
        if (transcript.trimEnd().endsWith(':')) input.write(`${replies.shift()}\n`);
      });
      const defaults = { ...defaultAnswers({ USER: 'nobody' }), uid: 777 };
      const answers = await askForMissing({ spoolDir: '/spool' }, defaults, true, { input, output });
      expect(answers).to.include({ force: true, user: 'heidi', uid: 777, location: 'northeurope', spoolDir: '/spool' });
      expect(transcript).to.include('Recreate the existing spool? [y/N]:');
      expect(transcript).to.include('User name [nobody]:');
      expect(transcript).to.include('invalid uid');
      expect(transcript).to.include('Remote location [eastus2]:');
    });

    it('stops at a refusal to recreate, asking nothing else', async () => {
      const input = new PassThrough();
      const output = new PassThrough();
      let transcript = '';
      output.on('data', (chunk: Buffer) => {
        transcript += chunk.toString();
        input.write('\n');
      });
      const answers = await askForMissing({}, defaultAnswers({ USER: 'nobody' }), true, { input, output });
      expect(answers.force).to.equal(false);
      expect(transcript).to.not.include('User name');
    });
  });

  describe('the swm-setup command', () => {
    it('creates a spool from the environment and prints the next steps', async () => {
      const root = newDir();
      const run = await runSetup(['--yes'], {
        SWM_SPOOL: join(root, 'spool'),
        SWM_HOME: join(root, 'home'),
        SKYPORT_USER: 'ivan',
        SKYPORT_REMOTE_LOCATION: 'uksouth',
      });
      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.include(join(root, 'spool')).and.to.include('swm-core').and.to.include('swm status');
      const spool = spoolPaths(join(root, 'spool'));
      const config = loadCoreConfig(spool.config);
      expect(config.remotes.find((r) => r.name === 'azure')!.location).to.equal('uksouth');
      expect(identityOf(new X509Certificate(readFileSync(join(root, 'home', 'cert.pem'))))).to.include({ role: 'admin', name: 'ivan' });
    });

    it('lets flags override the environment', async () => {
      const root = newDir();
      const run = await runSetup(['--yes', '--user', 'judy', '--port', '9555', '--host', 'core.internal', '--listen', '127.0.0.1', '--location', 'japaneast', '--spool', join(root, 's')], {
        SWM_SPOOL: join(root, 'ignored'),
        SWM_HOME: join(root, 'home'),
        SKYPORT_USER: 'ivan',
        SKYPORT_REMOTE_LOCATION: 'uksouth',
      });
      expect(run.code, run.stderr).to.equal(0);
      expect(existsSync(join(root, 'ignored'))).to.equal(false);
      const config = loadCoreConfig(spoolPaths(join(root, 's')).config);
      expect(config.core).to.include({ port: 9555, host: 'core.internal', listen: '127.0.0.1' });
      expect(config.remotes.find((r) => r.name === 'azure')!.location).to.equal('japaneast');
      expect(JSON.parse(readFileSync(join(root, 'home', 'config.json'), 'utf8'))).to.deep.equal({ coreUrl: 'wss://core.internal:9555', user: 'judy' });
    });

    it("names the core in the admin's bundle at a published address, and leaves the next steps to a wrapper", async () => {
      const root = newDir();
      const env = { SWM_SPOOL: join(root, 'spool'), SWM_HOME: join(root, 'home'), SKYPORT_USER: 'kim', SKYPORT_CORE_URL: 'wss://localhost:9443' };
      const run = await runSetup(['--yes', '--no-next-steps'], env);
      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.include('config.json: wss://localhost:9443').and.not.to.include('Next steps');
      expect(JSON.parse(readFileSync(join(root, 'home', 'config.json'), 'utf8'))).to.deep.equal({ coreUrl: 'wss://localhost:9443', user: 'kim' });
      // The core itself still listens where its configuration says.
      expect(loadCoreConfig(spoolPaths(join(root, 'spool')).config).core.port).not.to.equal(9443);
      const plain = await runSetup(['--yes', '--core-url', 'https://localhost:9443'], { ...env, SWM_SPOOL: join(root, 'other'), SKYPORT_CORE_URL: '' });
      expect(plain.code).to.equal(2);
      expect(plain.stderr).to.include('wss://');
    });

    it('refuses a listen address that is not an IP address, creating nothing', async () => {
      const root = newDir();
      const run = await runSetup(['--yes', '--listen', 'core.internal'], { SWM_SPOOL: join(root, 'spool'), SWM_HOME: join(root, 'home'), SKYPORT_USER: 'kim' });
      expect(run.code).to.equal(2);
      expect(run.stderr).to.include('not an IP address');
      expect(existsSync(join(root, 'spool'))).to.equal(false);
    });

    it('exits 1 on an existing spool, 0 with --force, and 2 on a usage error', async function () {
      // Eight runs of swm-setup, four of them making a spool (a CA, certificates, keys): slow on a loaded machine.
      this.timeout(120_000);
      const root = newDir();
      const env = { SWM_SPOOL: join(root, 'spool'), SWM_HOME: join(root, 'home'), SKYPORT_USER: 'kim' };
      expect((await runSetup(['--yes'], env)).code).to.equal(0);
      const id = loadCoreConfig(spoolPaths(join(root, 'spool')).config).core.id;
      const refused = await runSetup(['--yes'], env);
      expect(refused.code).to.equal(1);
      expect(refused.stderr).to.include('already exists');
      expect(loadCoreConfig(spoolPaths(join(root, 'spool')).config).core.id).to.equal(id);
      expect((await runSetup(['--yes'], { ...env, SKYPORT_RECREATE: 'yes' })).code).to.equal(0);
      const afterRecreate = loadCoreConfig(spoolPaths(join(root, 'spool')).config).core.id;
      expect(afterRecreate).to.not.equal(id);
      expect((await runSetup(['--yes', '--force'], env)).code).to.equal(0);
      expect(loadCoreConfig(spoolPaths(join(root, 'spool')).config).core.id).to.not.equal(afterRecreate);
      const usage = await Promise.all([runSetup(['--uid', 'x'], env), runSetup(['--port', '70000'], env), runSetup(['--bogus'], env), runSetup(['--yes'], { ...env, SKYPORT_USER: 'bad name' })]);
      expect(usage.map((r) => r.code)).to.deep.equal([2, 2, 2, 2]);
      expect(usage[0]!.stderr).to.include('invalid uid');
    });

    it('explains itself with --help', async () => {
      const run = await runSetup(['--help'], {});
      expect(run.code).to.equal(0);
      for (const flag of ['--spool', '--home', '--user', '--uid', '--port', '--host', '--location', '--yes', '--force', 'SKYPORT_USER']) {
        expect(run.stdout).to.include(flag);
      }
    });
  });
});
