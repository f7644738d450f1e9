import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { AGENT_PROTOCOL, FrameReader, encodeFrame, serveAgent, type AgentHeader } from '../node-agent/agent.js';
import { TarWriter } from '../core/transfers/tar-stream.js';
import { DIST } from './harness/core.js';
import { sha256 } from './harness/records.js';

/** A conversation with an agent serving `home` over in-memory streams: what it answers, by id. */
function talk(home: string, onBody: (id: number, body: Buffer) => void = () => {}) {
  const input = new PassThrough();
  const output = new PassThrough();
  const frames: AgentHeader[] = [];
  const waiters: Array<() => void> = [];
  const errors: string[] = [];
  const reader = new FrameReader((header, body) => {
    if (header.done) onBody(header.id, Buffer.from(body));
    // An event's bytes (a followed file's) are kept with it.
    frames.push(header.event && body.length ? { ...header, body: Buffer.from(body) } : header);
    for (const w of waiters.splice(0)) w();
  });
  output.on('data', (chunk: Buffer) => reader.push(chunk));
  const served = serveAgent(input, output, { home, env: { PATH: process.env.PATH } }, (m) => errors.push(m));
  const send = (header: AgentHeader, body?: Buffer) => {
    for (const b of encodeFrame(header, body)) input.write(b);
  };
  /** The first frame that `test` accepts, once it comes. */
  const until = async (test: (f: AgentHeader) => boolean): Promise<AgentHeader> => {
    for (;;) {
      const found = frames.find(test);
      if (found) return found;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  /** The answer (done) to `id`. */
  const answer = (id: number): Promise<AgentHeader> => until((f) => f.id === id && f.done === true);
  return { input, send, answer, until, frames, errors, served };
}

/** File descriptors of this process open on `path` (the agent served here holds its followed files open). */
function openReaders(path: string): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) count++;
    } catch {
      /* closed meanwhile */
    }
  }
  return count;
}

describe('the node agent (node-agent/agent.ts, served over in-memory streams)', function () {
  this.timeout(20_000);
  let home: string;
  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'skyport-agent-'));
  });
  afterEach(() => rmSync(home, { recursive: true, force: true }));

  it('writes a streamed file and answers its SHA-256; a resumed transfer hashes what was kept', async () => {
    const a = talk(home);
    const data = Buffer.from('0123456789'.repeat(100_000));
    a.send({ id: 1, op: 'put', dir: 'swm/j', path: 'in/data.bin', from: 0, size: data.length });
    a.send({ id: 1, op: 'data' }, data.subarray(0, 400_000));
    a.send({ id: 1, op: 'data' }, data.subarray(400_000));
    a.send({ id: 1, op: 'end' });
    expect((await a.answer(1)).result).to.deep.equal({ sha256: sha256(data), size: data.length });
    expect(readFileSync(join(home, 'swm/j/in/data.bin'))).to.deep.equal(data);

    // An interrupted transfer left 300,000 good bytes and some garbage after them: continued from 300,000.
    writeFileSync(join(home, 'swm/j/in/data.bin'), Buffer.concat([data.subarray(0, 300_000), Buffer.from('garbage')]));
    a.send({ id: 2, op: 'put', dir: 'swm/j', path: 'in/data.bin', from: 300_000, size: data.length });
    a.send({ id: 2, op: 'data' }, data.subarray(300_000));
    a.send({ id: 2, op: 'end' });
    expect((await a.answer(2)).result).to.deep.include({ sha256: sha256(data) });
    expect(readFileSync(join(home, 'swm/j/in/data.bin'))).to.deep.equal(data);

    // Short of its declared size: an error, not a digest.
    a.send({ id: 3, op: 'put', dir: 'swm/j', path: 'short.bin', from: 0, size: 10 });
    a.send({ id: 3, op: 'data' }, Buffer.from('abc'));
    a.send({ id: 3, op: 'end' });
    expect((await a.answer(3)).error).to.match(/received 3 bytes of 10/);
  });

  it('writes small files whole from one frame, with their modes, after removing what it is told', async () => {
    mkdirSync(join(home, 'swm/j/.swm/started'), { recursive: true });
    writeFileSync(join(home, 'swm/j/.swm/exitcode'), '3\n');
    const a = talk(home);
    const script = Buffer.from('#!/bin/sh\necho hi\n');
    const env = Buffer.from('export A=1\n');
    a.send(
      { id: 1, op: 'write', dir: 'swm/j', remove: ['.swm/exitcode', '.swm/started'], files: [{ path: '.swm/job.sh', size: script.length, mode: 0o755 }, { path: '.swm/env', size: env.length, mode: 0o600 }] },
      Buffer.concat([script, env]),
    );
    expect((await a.answer(1)).result).to.deep.equal({ written: 2 });
    expect(readFileSync(join(home, 'swm/j/.swm/job.sh'))).to.deep.equal(script);
    expect(statSync(join(home, 'swm/j/.swm/job.sh')).mode & 0o777).to.equal(0o755);
    expect(statSync(join(home, 'swm/j/.swm/env')).mode & 0o777).to.equal(0o600);
    expect([existsSync(join(home, 'swm/j/.swm/exitcode')), existsSync(join(home, 'swm/j/.swm/started'))]).to.deep.equal([false, false]);
    // Sizes past the body: refused.
    a.send({ id: 2, op: 'write', dir: 'swm/j', files: [{ path: 'x', size: 100, mode: 0o644 }] }, Buffer.from('short'));
    expect((await a.answer(2)).error).to.match(/past the body/);
  });

  it('reads a small file whole into its answer, with its SHA-256, and refuses one over the bound', async () => {
    mkdirSync(join(home, 'swm/j'), { recursive: true });
    const data = Buffer.from('results\n'.repeat(1000));
    writeFileSync(join(home, 'swm/j/out.txt'), data);
    const bodies = new Map<number, Buffer>();
    const a = talk(home, (id, body) => bodies.set(id, body));
    a.send({ id: 1, op: 'read', path: 'swm/j/out.txt', max: 1 << 20 });
    expect((await a.answer(1)).result).to.deep.equal({ size: data.length, sha256: sha256(data) });
    expect(bodies.get(1)).to.deep.equal(data);
    a.send({ id: 2, op: 'read', path: 'swm/j/out.txt', max: 100 });
    expect(await a.answer(2)).to.deep.include({ code: 'EFBIG' });
    a.send({ id: 3, op: 'read', path: 'swm/j/none.txt' });
    expect(await a.answer(3)).to.deep.include({ code: 'ENOENT' });
  });

  it('follows files as they grow, from their sizes, in order and at their offsets, until told to stop', async () => {
    mkdirSync(join(home, 'swm/j'), { recursive: true });
    const out = join(home, 'swm/j/stdout.log');
    const err = join(home, 'swm/j/stderr.log');
    writeFileSync(out, 'before\n');
    const a = talk(home);
    a.send({ id: 1, op: 'follow', paths: ['swm/j/stdout.log', 'swm/j/stderr.log'] });
    // stderr.log does not exist yet: followed from its first byte once it does.
    expect((await a.until((f) => f.id === 1 && f.event === 'from')).offsets).to.deep.equal([7, 0]);
    const received = (stream: number): Buffer => {
      const pieces = a.frames.filter((f) => f.id === 1 && f.event === 'data' && f.stream === stream);
      let offset = stream === 0 ? 7 : 0;
      for (const piece of pieces) {
        expect(piece.offset, 'each piece at the end of the one before').to.equal(offset);
        offset += (piece.body as Buffer).length;
      }
      return Buffer.concat(pieces.map((p) => p.body as Buffer));
    };
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 'x');
    appendFileSync(out, 'one\n');
    writeFileSync(err, 'oops\n');
    appendFileSync(out, big);
    await a.until(() => received(0).length === 4 + big.length && received(1).length === 5);
    expect(received(0).equals(Buffer.concat([Buffer.from('one\n'), big]))).to.equal(true);
    expect(received(1).toString()).to.equal('oops\n');

    // Told to stop: answered once it no longer holds the files.
    a.send({ id: 1, op: 'unfollow' });
    expect((await a.answer(1)).result).to.deep.equal({ followed: true });
    expect(openReaders(out), 'the file is closed').to.equal(0);
    // Paths that leave its home are refused, and it goes on serving.
    a.send({ id: 2, op: 'follow', paths: ['../outside.log'] });
    expect(await a.answer(2)).to.deep.include({ code: 'EINVAL' });
    a.send({ id: 3, op: 'hello' });
    expect((await a.answer(3)).error).to.equal(undefined);
  });

  it('extracts a tar stream, hashing each file, and replaces a link where a directory goes', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'skyport-agent-outside-'));
    try {
      mkdirSync(join(home, 'swm/j'), { recursive: true });
      symlinkSync(outside, join(home, 'swm/j/data'));
      const chunks: Buffer[] = [];
      const tar = new TarWriter((c) => chunks.push(c));
      const files = { 'data/a.txt': Buffer.from('a'), 'data/deep/b.txt': Buffer.from('bb'), [`${'x'.repeat(150)}/ü.txt`]: Buffer.from('long') };
      for (const [path, data] of Object.entries(files)) tar.file(path, data);
      tar.end();
      const archive = Buffer.concat(chunks);
      const a = talk(home);
      a.send({ id: 7, op: 'untar', dir: 'swm/j' });
      // Split at odd places: headers and contents cross frames.
      for (let at = 0; at < archive.length; at += 700) a.send({ id: 7, op: 'data' }, archive.subarray(at, at + 700));
      a.send({ id: 7, op: 'end' });
      const { digests } = (await a.answer(7)).result as { digests: Record<string, string> };
      expect(digests).to.deep.equal(Object.fromEntries(Object.entries(files).map(([p, d]) => [p, sha256(d)])));
      expect(readFileSync(join(home, 'swm/j/data/deep/b.txt'), 'utf8')).to.equal('bb');
      expect(existsSync(join(outside, 'a.txt')), 'nothing written through the link').to.equal(false);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('refuses paths that leave its home and unknown operations, replaces a link on the way to a streamed file, and goes on serving', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'skyport-agent-outside-'));
    try {
      mkdirSync(join(home, 'swm/j'), { recursive: true });
      symlinkSync(outside, join(home, 'swm/j/linked'));
      const a = talk(home);
      let id = 0;
      for (const [dir, path] of [['swm/j', '../escape.bin'], ['swm/j', '/tmp/escape.bin'], ['swm/j', 'a/../../../escape.bin'], ['swm/j', 'a\0b'], ['../x', 'escape.bin'], ['/tmp', 'escape.bin']]) {
        a.send({ id: ++id, op: 'put', dir, path, from: 0, size: 1 });
        a.send({ id, op: 'data' }, Buffer.from('x'));
        a.send({ id, op: 'end' });
        expect((await a.answer(id)).error, `${dir} ${path}`).to.match(/refused|bad path/);
      }
      // A link in the job directory (left by an earlier attempt, say) is replaced by a directory, not followed.
      a.send({ id: ++id, op: 'put', dir: 'swm/j', path: 'linked/kept.bin', from: 0, size: 1 });
      a.send({ id, op: 'data' }, Buffer.from('k'));
      a.send({ id, op: 'end' });
      expect((await a.answer(id)).result).to.deep.include({ size: 1 });
      expect(readdirSync(outside)).to.deep.equal([]);
      expect(readFileSync(join(home, 'swm/j/linked/kept.bin'), 'utf8')).to.equal('k');
      a.send({ id: ++id, op: 'launch-missiles' });
      expect((await a.answer(id)).error).to.match(/unknown operation/);
      a.send({ id: ++id, op: 'hash', dir: 'swm/j', paths: ['missing.txt', '../../etc/passwd'] });
      expect((await a.answer(id)).result).to.deep.equal({ digests: {} });
      a.send({ id: ++id, op: 'hello' });
      expect((await a.answer(id)).result).to.have.property('protocol', AGENT_PROTOCOL);
      // Only one answer per failed transfer: the frames after the refusal were dropped, not answered again.
      expect(a.frames.filter((f) => f.id === 1)).to.have.length(1);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('ends the conversation on a malformed or oversized frame', async () => {
    for (const bad of [Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), Buffer.concat([Buffer.from([0, 0, 0, 8, 0, 0, 0, 4]), Buffer.from('nope')])]) {
      const a = talk(home);
      a.input.write(bad);
      await a.served;
      expect(a.errors.join(), bad.toString('hex')).to.match(/malformed frame/);
    }
  });

  it('starts a job runner once, detached, and re-attaches to it (a new agent: a restarted core)', async () => {
    const swm = join(home, 'swm/j/.swm');
    mkdirSync(swm, { recursive: true });
    const release = join(home, 'release');
    writeFileSync(
      join(swm, 'run.sh'),
      `cd "\${0%/*}/.." || exit 1\nmkdir .swm/started 2>/dev/null || exit 0\necho run >> runs\nwhile [ ! -e ${release} ]; do sleep 0.05; done\necho 7 > .swm/exitcode\n`,
    );
    const first = talk(home);
    first.send({ id: 1, op: 'run', dir: 'swm/j' });
    await first.until((f) => f.id === 1 && f.event === 'started');
    // The first agent goes away (its connection dropped); the runner does not.
    first.input.end();
    await first.served;
    const second = talk(home);
    second.send({ id: 1, op: 'run', dir: 'swm/j' });
    writeFileSync(release, '');
    const end = await second.answer(1);
    expect(second.frames.find((f) => f.event)?.event).to.equal('attached');
    expect(end.result).to.deep.equal({ code: 7, stoppedByPeer: false, attached: true });
    expect(readFileSync(join(home, 'swm/j/runs'), 'utf8')).to.equal('run\n');
  });

  it('stops a job: its runner\'s process group, and with a sweep what left the group carrying the job\'s id', async () => {
    const swm = join(home, 'swm/j/.swm');
    mkdirSync(swm, { recursive: true });
    // The runner starts a process in its group and one that leaves it (setsid), both with the job's id.
    writeFileSync(
      join(swm, 'run.sh'),
      `cd "\${0%/*}/.." || exit 1\nmkdir .swm/started 2>/dev/null || exit 0\nexport SWM_JOB_ID=job-42\nsetsid sh -c 'echo $$ > escaped.pid; exec sleep 60' &\nsleep 60 & echo $! > child.pid\nwait\n`,
    );
    const a = talk(home);
    a.send({ id: 1, op: 'run', dir: 'swm/j' });
    await a.until((f) => f.id === 1 && f.event === 'started');
    const pidOf = async (name: string): Promise<number> => {
      for (;;) {
        const text = existsSync(join(home, 'swm/j', name)) ? readFileSync(join(home, 'swm/j', name), 'utf8').trim() : '';
        if (text) return Number(text);
        await new Promise((r) => setImmediate(r));
      }
    };
    const [child, escaped] = [await pidOf('child.pid'), await pidOf('escaped.pid')];
    // The escaped one has become its `sleep` (its environment is the job's from then on).
    while (!existsSync(`/proc/${escaped}/comm`) || readFileSync(`/proc/${escaped}/comm`, 'utf8').trim() !== 'sleep') await new Promise((r) => setImmediate(r));
    a.send({ id: 2, op: 'stop', dir: 'swm/j', container: null, byPeer: true, sweep: 'job-42' });
    const stopped = await a.answer(2);
    expect(stopped.result).to.deep.include({ stopped: true });
    expect((stopped.result as { swept: number }).swept).to.be.greaterThan(0);
    // A killed process its new parent has not reaped yet is a zombie: dead.
    const alive = (pid: number) => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    expect([alive(child), alive(escaped)]).to.deep.equal([false, false]);
    expect(existsSync(join(swm, 'stopped-by-peer'))).to.equal(true);
    // The runner was killed before it recorded an exit code: the run ends without one.
    expect((await a.answer(1)).result).to.deep.include({ lost: true, stoppedByPeer: true });
  });

  it('runs as a program of its own from the file the core uploads (Node built-ins only)', async () => {
    const program = join(home, 'agent-0123456789abcdef.mjs');
    writeFileSync(program, readFileSync(join(DIST, 'node-agent/agent.js')));
    const child = spawn(process.execPath, [program], { cwd: home, env: { HOME: home, PATH: process.env.PATH }, stdio: ['pipe', 'pipe', 'inherit'] });
    const frames: AgentHeader[] = [];
    const got = new Promise<void>((resolve) => child.stdout.on('data', (c: Buffer) => new FrameReader((h) => (frames.push(h), resolve())).push(c)));
    for (const b of encodeFrame({ id: 1, op: 'hello' })) child.stdin.write(b);
    await got;
    expect(frames[0]).to.deep.include({ id: 1, done: true });
    child.stdin.end();
    expect(await new Promise((resolve) => child.once('exit', resolve))).to.equal(0);
  });
});
