import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { hostKeyFingerprint, parseAuthorizedKey } from '../gates/local/host-key.js';
import { NodeDirectory } from '../gates/local/node-directory.js';
import { NodeServer } from '../gates/local/node-server.js';
import { NodeSession } from '../core/nodes/node-session.js';
import { stageInputs } from '../core/transfers/stage-inputs.js';
import { PathEscapeError, TarWriter } from '../core/transfers/tar-stream.js';
import type { InputFile } from '../terminal-protocol/terminal-methods.js';
import { PREFERRED_CIPHERS } from '../terminal-protocol/ssh-ciphers.js';
import { testKeyPair } from './harness/keys.js';
import { SWM_MAIN, isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { runSwm } from './harness/pty.js';
import { sha256, treeHashes } from './harness/records.js';

const MIB = 1024 * 1024;


/** `count` random files of `bytes` each under `root/prefix`, 100 to a directory, as the core's spool holds inputs. */
function smallFiles(root: string, prefix: string, count: number, bytes: number): InputFile[] {
  const files: InputFile[] = [];
  for (let i = 0; i < count; i++) {
    const path = `${prefix}/d${Math.floor(i / 100)}/f${i}.bin`;
    if (i % 100 === 0) mkdirSync(join(root, prefix, `d${Math.floor(i / 100)}`), { recursive: true });
    const data = randomBytes(bytes);
    writeFileSync(join(root, path), data);
    files.push({ path, size: bytes, sha256: sha256(data) });
  }
  return files;
}

/** A file of random MiB blocks (each numbered, so a misplaced block changes the hash), written without holding it in memory. */
function bigFile(root: string, path: string, bytes: number): InputFile {
  const block = randomBytes(MIB);
  const hash = createHash('sha256');
  const fd = openSync(join(root, path), 'w');
  for (let done = 0; done < bytes; done += MIB) {
    block.writeUInt32BE(done / MIB, 0);
    const part = block.subarray(0, Math.min(MIB, bytes - done));
    writeSync(fd, part);
    hash.update(part);
  }
  closeSync(fd);
  return { path, size: bytes, sha256: hash.digest('hex') };
}

describe('stage-in to a node (the local gate\'s SSH server on loopback, GNU tar and OpenSSL on the node)', function () {
  this.timeout(120_000);
  let work: string;
  let spool: string;
  let nodeRoot: string;
  let server: NodeServer;
  let session: NodeSession;

  before(async function () {
    if (spawnSync('tar', ['--version']).stdout?.toString().includes('GNU tar') !== true) this.skip();
    work = mkdtempSync(join(tmpdir(), 'skyport-stage-in-'));
    spool = join(work, 'spool');
    mkdirSync(spool);
    const directory = await NodeDirectory.open(join(work, 'node'));
    nodeRoot = directory.root;
    const host = testKeyPair();
    const client = testKeyPair();
    const user = userInfo().username;
    server = await NodeServer.start({
      directory,
      hostKey: host.private,
      authorizedKey: parseAuthorizedKey(client.public),
      user,
      host: '127.0.0.1',
      port: 0,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: nodeRoot, USER: user, LOGNAME: user, SHELL: '/bin/sh' },
      logger: pino({ level: 'silent' }),
    });
    session = await NodeSession.connect(
      { name: 'node-0', role: 'head', publicIp: '127.0.0.1', privateIp: '127.0.0.1', sshPort: server.port, sshUser: user, hostKeyFingerprint: hostKeyFingerprint(host.private) },
      client.private,
    );
  });
  after(async () => {
    session?.close();
    await server?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('negotiates AES-GCM with the node', () => {
    expect(PREFERRED_CIPHERS).to.include(session.cipher);
  });

  it('stages 10,000 small files in tar streams through the node agent, and the node holds them with the hashes declared', async () => {
    const files = smallFiles(spool, 'many', 10_000, 4096);
    const dir = join(nodeRoot, 'swm', 'many-job');
    const result = await stageInputs(session, spool, 'swm/many-job', files);
    expect(result.verified).to.equal('sha256');
    expect(result.batchedFiles).to.equal(10_000);
    expect(result.agent, 'through the node agent').to.equal(true);
    const held = treeHashes(join(dir, 'many'));
    expect(held.size).to.equal(10_000);
    for (const f of files) expect(held.get(f.path.slice('many/'.length)), f.path).to.equal(f.sha256);
    // Staged again: everything is on the node already, nothing is sent.
    const again = await stageInputs(session, spool, 'swm/many-job', files);
    expect([again.sentBytes, again.batchedFiles]).to.deep.equal([0, 0]);
  });

  it('batches names of every shape: long (pax), split (ustar prefix), non-ASCII, with spaces', async () => {
    const names = [
      'with space/x y.txt',
      `${'d'.repeat(120)}/${'f'.repeat(90)}`,
      `${'p'.repeat(150)}/${'n'.repeat(99)}`,
      'ünï/cödé.txt',
      `${'x'.repeat(200)}/${'y'.repeat(200)}/z.bin`,
      'e'.repeat(255),
      'dot/./a//b.txt',
    ];
    const files: InputFile[] = [...smallFiles(spool, 'shapes/filler', 64, 10)];
    for (const name of names) {
      const path = `shapes/${name}`;
      mkdirSync(join(spool, path, '..'), { recursive: true });
      const data = Buffer.from(name);
      writeFileSync(join(spool, path), data);
      files.push({ path, size: data.length, sha256: sha256(data) });
    }
    const result = await stageInputs(session, spool, 'swm/shapes-job', files);
    expect(result.batchedFiles).to.equal(files.length);
    expect(result.verified).to.equal('sha256');
    for (const name of names) expect(readFileSync(join(nodeRoot, 'swm', 'shapes-job', 'shapes', name), 'utf8'), name).to.equal(name);
  });

  it('stages a 1 GiB file through the node agent with equal hashes, hashed on the node as it arrives', async () => {
    // 1 GiB, through the node agent (SKYPORT_STAGE_TEST_MIB sets another size).
    const mib = Number(process.env.SKYPORT_STAGE_TEST_MIB ?? 1024);
    const file = bigFile(spool, 'big.bin', mib * MIB + 12_345);
    const result = await stageInputs(session, spool, 'swm/big-job', [file]);
    expect(result.agent, 'through the node agent').to.equal(true);
    expect(result.verified).to.equal('sha256');
    expect(result.sentBytes).to.equal(file.size);
    expect(sha256(readFileSync(join(nodeRoot, 'swm', 'big-job', 'big.bin')))).to.equal(file.sha256);
    rmSync(join(spool, 'big.bin'));
    rmSync(join(nodeRoot, 'swm', 'big-job'), { recursive: true });
  });

  it('stages through SFTP, GNU tar and the node\'s hash tool where the node cannot run the agent', async () => {
    const files = [...smallFiles(spool, 'plain', 300, 2000), bigFile(spool, 'plain-big.bin', 70 * MIB + 7)];
    const result = await stageInputs(session, spool, 'swm/plain-job', files, { agent: false });
    expect([result.agent, result.verified, result.batchedFiles]).to.deep.equal([false, 'sha256', 300]);
    const held = treeHashes(join(nodeRoot, 'swm', 'plain-job'));
    for (const f of files) expect(held.get(f.path), f.path).to.equal(f.sha256);
    rmSync(join(nodeRoot, 'swm', 'plain-job'), { recursive: true });
  });

  it('detects corrupt inputs, batched or large, and refuses them after one more try', async () => {
    // What the node receives differs from what was declared (here: the spool's copy was altered after the
    // terminal's SHA-256 was checked): the node's hash tells, the file is sent again, and the stage-in fails.
    const files = smallFiles(spool, 'bad', 200, 1000);
    const altered = files[137]!;
    const bytes = readFileSync(join(spool, altered.path));
    bytes[500]! ^= 1;
    writeFileSync(join(spool, altered.path), bytes);
    const error = await stageInputs(session, spool, 'swm/bad-job', files).catch((e: Error) => e);
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.match(/input "bad\/d1\/f137.bin" arrived corrupt on node node-0 twice/);

    const big = bigFile(spool, 'bad-big.bin', 70 * MIB);
    const fd = openSync(join(spool, big.path), 'r+');
    writeSync(fd, Buffer.from('X'), 0, 1, 69 * MIB);
    closeSync(fd);
    const bigError = await stageInputs(session, spool, 'swm/bad-big-job', [big]).catch((e: Error) => e);
    expect((bigError as Error).message).to.match(/input "bad-big.bin" arrived corrupt on node node-0 twice/);
  });

  it('never writes outside the job directory: hostile names are refused, links in the job directory are replaced, not followed', async () => {
    // Names: refused before anything is sent, whichever way the file would go.
    for (const path of ['../escaped.txt', '/tmp/escaped.txt', 'a/../../escaped.txt', 'a/\0b']) {
      const error = await stageInputs(session, spool, 'swm/hostile-job', [{ path, size: 1, sha256: sha256(Buffer.from('x')) }]).catch((e: Error) => e);
      expect(error, path).to.be.instanceOf(PathEscapeError);
    }
    expect(() => new TarWriter(() => undefined).file('../x', Buffer.alloc(1))).to.throw(PathEscapeError);
    expect(existsSync(join(nodeRoot, 'swm', 'escaped.txt'))).to.equal(false);

    // Links: a job directory (say, left by an earlier attempt of the job) where `data` leads to a directory
    // outside it and `notes.txt` to a file outside it. The batch must not write through either.
    const outside = join(work, 'outside');
    mkdirSync(join(outside, 'dir'), { recursive: true });
    writeFileSync(join(outside, 'file.txt'), 'untouched\n');
    const job = join(nodeRoot, 'swm', 'linked-job');
    mkdirSync(job, { recursive: true });
    symlinkSync(join(outside, 'dir'), join(job, 'data'));
    symlinkSync(join(outside, 'file.txt'), join(job, 'notes.txt'));
    // And deeper down, `deep/sub` leads outside too, on the way to a file too large for a batch (streamed by `put`).
    mkdirSync(join(outside, 'dir2'));
    mkdirSync(join(job, 'deep'));
    symlinkSync(join(outside, 'dir2'), join(job, 'deep', 'sub'));
    const files = smallFiles(spool, 'data', 100, 64);
    const notes = Buffer.from('the job\'s own notes\n');
    writeFileSync(join(spool, 'notes.txt'), notes);
    files.push({ path: 'notes.txt', size: notes.length, sha256: sha256(notes) });
    mkdirSync(join(spool, 'deep', 'sub'), { recursive: true });
    files.push(bigFile(spool, 'deep/sub/big.bin', 200 * 1024));
    // What lies behind the links is not counted as already staged: every file is sent, in the batch or by `put`.
    const result = await stageInputs(session, spool, 'swm/linked-job', files);
    expect(result.batchedFiles).to.equal(101);
    expect(readdirSync(join(outside, 'dir'))).to.deep.equal([]);
    expect(readdirSync(join(outside, 'dir2'))).to.deep.equal([]);
    expect(lstatSync(join(job, 'deep', 'sub')).isDirectory()).to.equal(true);
    expect(sha256(readFileSync(join(job, 'deep', 'sub', 'big.bin')))).to.equal(files.at(-1)!.sha256);
    expect(readFileSync(join(outside, 'file.txt'), 'utf8')).to.equal('untouched\n');
    expect(lstatSync(join(job, 'data')).isDirectory()).to.equal(true);
    expect(readFileSync(join(job, 'notes.txt'))).to.deep.equal(notes);
    expect(treeHashes(join(job, 'data')).size).to.equal(100);
  });
});

describe('stage-in of a job with many small inputs, end to end (core, local gate, its sandboxed node)', function () {
  this.timeout(120_000);
  let f: CoreFixture;
  let scratch: string;

  before(async function () {
    if (spawnSync('tar', ['--version']).stdout?.toString().includes('GNU tar') !== true) this.skip();
    f = await startFixture();
    scratch = mkdtempSync(join(tmpdir(), 'skyport-stage-in-job-'));
  });
  after(async () => {
    await f?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('runs the job on its 300 inputs, which the node holds with the hashes the terminal computed', async () => {
    const files = smallFiles(scratch, 'many', 300, 1500);
    writeFileSync(join(scratch, 'sums.sh'), '#!/bin/sh\n#SWM output-files sums.txt\nfind many -type f | sort | xargs sha256sum > sums.txt\n');
    const env = { SWM_HOME: f.spool.homeDir };
    const submitted = await runSwm(SWM_MAIN, ['submit', 'sums.sh', '--input', 'many', '--json'], { cwd: scratch, env });
    expect(submitted.code, submitted.stderr).to.equal(0);
    const { id } = JSON.parse(submitted.stdout) as { id: string };
    const job = await waitForJob(f.admin, id, isFinal, 90_000);
    expect(job.state, job.state_details).to.equal('F');
    const downloaded = await runSwm(SWM_MAIN, ['download', id, '--to', 'back', 'sums.txt'], { cwd: scratch, env });
    expect(downloaded.code, downloaded.stderr).to.equal(0);
    const sums = new Map(
      readFileSync(join(scratch, 'back', 'sums.txt'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => [line.slice(66), line.slice(0, 64)] as const),
    );
    expect(sums.size).to.equal(300);
    // The files went in tar streams through the node's agent, not one SFTP open each.
    const staged = readFileSync(join(f.spool.spoolDir, 'logs', 'core.log'), 'utf8')
      .split('\n')
      .filter((line) => line.includes('"inputs staged in"'))
      .map((line) => JSON.parse(line) as { job: string; batchedFiles: number; agent: boolean; verified: string });
    expect(staged.find((s) => s.job === id)).to.deep.include({ batchedFiles: 300, agent: true, verified: 'sha256' });
    for (const file of files) expect(sums.get(file.path), file.path).to.equal(file.sha256);
  });
});
