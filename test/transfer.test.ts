import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { Job } from '../terminal-protocol/job.js';
import {
  FRAME_HEADER_BYTES,
  FrameFlag,
  FrameType,
  StreamFrameError,
  StreamMux,
  decodeFrame,
  encodeFrame,
  localHash,
  receiveFile,
  resetError,
  sendFile,
  streamsOf,
} from '../terminal-protocol/streams.js';
import { open } from 'node:fs/promises';
import { uploadInputs } from '../terminal/upload.js';
import { RESUME_MARGIN, resumePoint } from '../core/transfers/stage-inputs.js';
import { keptOfPartial } from '../core/transfers/stage-outputs.js';
import { formatPortsFile, parsePortsFile } from '../core/forwarding/node-ports.js';
import { SWM_MAIN, isFinal, startFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { runInPty, runSwm } from './harness/pty.js';
import { sha256, treeHashes } from './harness/records.js';



/** A file of `size` bytes that is not all one byte (so misplaced blocks change its hash). */
function writePatterned(path: string, size: number): void {
  const block = randomBytes(1024 * 1024 + 13);
  const chunks: Buffer[] = [];
  for (let n = 0; n < size; n += block.length) chunks.push(block.subarray(0, Math.min(block.length, size - n)));
  writeFileSync(path, Buffer.concat(chunks));
}

describe('binary stream frames', () => {
  /** Two muxes joined back to back, each frame delivered on a later turn (as a socket would). */
  function pair(): [StreamMux, StreamMux] {
    let a: StreamMux;
    let b: StreamMux;
    a = new StreamMux({ sendBinary: (data, done) => setImmediate(() => (b.receive(Buffer.from(data)), done?.())) });
    b = new StreamMux({ sendBinary: (data, done) => setImmediate(() => (a.receive(Buffer.from(data)), done?.())) }, { holdUnknown: true });
    return [a, b];
  }

  it('decodes what it encodes, and refuses malformed frames', () => {
    const frame = decodeFrame(encodeFrame(FrameType.Data, 7, 2 ** 40 + 3, Buffer.from('abc')));
    expect([frame.type, frame.stream, frame.offset, frame.payload.toString()]).to.deep.equal([FrameType.Data, 7, 2 ** 40 + 3, 'abc']);
    const wrongVersion = encodeFrame(FrameType.Data, 1, 0);
    wrongVersion[0] = 9;
    const unknownType = encodeFrame(FrameType.Data, 1, 0);
    unknownType[1] = 42;
    const rewind = encodeFrame(FrameType.Data, 1, 0);
    rewind[1] = 4; // REWIND, gone with the CRC per frame
    const unknownFlags = encodeFrame(FrameType.Data, 1, 0);
    unknownFlags.writeUInt16BE(3, 2);
    for (const bad of [Buffer.alloc(5), wrongVersion, unknownType, rewind, unknownFlags, encodeFrame(FrameType.Data, 1, 0, Buffer.alloc(1024 * 1024 + 1))])
      expect(() => decodeFrame(bad)).to.throw(StreamFrameError);
  });

  it('sends a file of any size through a bounded set of frame buffers, reused once written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skyport-frames-'));
    try {
      const content = randomBytes(24 * 1024 * 1024 + 7);
      writeFileSync(join(dir, 'in.bin'), content);
      const buffers = new Set<ArrayBufferLike>();
      let receiver: StreamMux;
      const sender = new StreamMux({
        sendBinary: (data, done) => {
          if (decodeFrame(data).type === FrameType.Data) buffers.add(data.buffer);
          const copy = Buffer.from(data); // what crosses the wire: the sender may reuse `data` once `done` runs
          setImmediate(() => (receiver.receive(copy), done?.()));
        },
      });
      receiver = new StreamMux({ sendBinary: (data, done) => setImmediate(() => (sender.receive(Buffer.from(data)), done?.())) }, { holdUnknown: true });
      const window = 4 * 1024 * 1024;
      const received = Buffer.alloc(content.length);
      const file = await open(join(dir, 'in.bin'), 'r');
      const [, result] = await Promise.all([
        sendFile({ mux: sender, stream: 9, file, from: 0, size: content.length, window }),
        receiveFile({ mux: receiver, stream: 9, from: 0, size: content.length, window, prefix: localHash(), sink: { write: async (data, at) => void data.copy(received, at) } }),
      ]);
      await file.close();
      expect(result.sha256).to.equal(sha256(content));
      expect(received.equals(content)).to.equal(true);
      // 25 frames went out; at most a window's worth (4), the one read ahead and the short last one were ever allocated.
      expect(buffers.size).to.be.at.most(window / (1024 * 1024) + 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sends frames without a CRC, and still refuses a frame whose CRC is wrong', async () => {
    const sent = decodeFrame(encodeFrame(FrameType.Data, 1, 0, Buffer.from('abc')));
    expect([sent.flags & FrameFlag.Unchecked, sent.crc]).to.deep.equal([FrameFlag.Unchecked, 0]);
    // A frame as a sender of an earlier version made it: a CRC-32 of its payload, then one byte changed.
    const [sender, receiver] = pair();
    const receiving = receiveFile({ mux: receiver, stream: 5, from: 0, size: 3, window: 1024, sink: { write: async () => undefined } });
    const checked = encodeFrame(FrameType.Data, 5, 0, Buffer.from('abc'));
    checked.writeUInt16BE(0, 2);
    checked.writeUInt32BE(crc32(Buffer.from('abc')), 16);
    checked[FRAME_HEADER_BYTES] ^= 1;
    sender.sendData(checked);
    const error = await receiving.then(() => null, (e: RpcError) => e);
    expect(error).to.be.instanceOf(RpcError);
    expect([error!.code, error!.message]).to.deep.equal([ErrorCode.Integrity, 'stream 5: DATA at 0 fails its CRC']);
  });

  it('never lets the sender run more than a window ahead of a slow receiver, and keeps early frames for their stream', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skyport-frames-'));
    try {
      const content = randomBytes(6 * 1024 * 1024 + 5);
      writeFileSync(join(dir, 'in.bin'), content);
      const [sender, receiver] = pair();
      const window = 2 * 1024 * 1024;
      let sent = 0;
      let acked = 0;
      let worst = 0;
      const file = await open(join(dir, 'in.bin'), 'r');
      const sending = sendFile({
        mux: sender,
        stream: 3,
        file,
        from: 0,
        size: content.length,
        window,
        tamper: (frame) => {
          sent += frame.length - FRAME_HEADER_BYTES;
          worst = Math.max(worst, sent - acked);
        },
        onAcked: (n) => (acked = n),
      });
      // The receiver attaches late (its first frames are held) and writes slowly.
      await new Promise((r) => setTimeout(r, 20));
      const out = await open(join(dir, 'out.bin'), 'w+');
      const received = await receiveFile({
        mux: receiver,
        stream: 3,
        from: 0,
        size: content.length,
        window,
        prefix: localHash(),
        expectedSha256: sha256(content),
        sink: { write: async (data, at) => void (await new Promise((r) => setTimeout(r, 2)), await out.write(data, 0, data.length, at)) },
      });
      await sending;
      await Promise.all([file.close(), out.close()]);
      expect(received.sha256).to.equal(sha256(content));
      expect(readFileSync(join(dir, 'out.bin')).equals(content)).to.equal(true);
      expect(worst).to.be.at.most(window);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('resuming transfers between core and node', () => {
  const MIB = 1024 * 1024;
  it('continues a partial file on the node from before its last blocks in flight, and starts over when it is too long', () => {
    expect(resumePoint(undefined, 10 * MIB)).to.equal(0);
    expect(resumePoint(100 * MIB, 64 * MIB)).to.equal(0);
    expect(resumePoint(64 * MIB, 64 * MIB)).to.equal(64 * MIB);
    expect(resumePoint(40 * MIB + 123, 64 * MIB)).to.equal(40 * MIB - RESUME_MARGIN);
    expect(resumePoint(1000, 64 * MIB)).to.equal(0);
    expect(keptOfPartial(40 * MIB + 123, 64 * MIB)).to.equal(40 * MIB - RESUME_MARGIN);
    expect(keptOfPartial(65 * MIB, 64 * MIB)).to.equal(0);
  });

  it('records node ports in .swm/ports and reads them back', () => {
    const ports = [
      { port: 8888, direction: 'in' as const, nodePort: 41234 },
      { port: 8081, direction: 'out' as const, nodePort: 8081 },
    ];
    expect(parsePortsFile(formatPortsFile(ports))).to.deep.equal(ports);
    expect(parsePortsFile('garbage\n8888 in 1\n')).to.deep.equal([{ port: 8888, direction: 'in', nodePort: 1 }]);
  });
});

describe('data staging: terminal ↔ core ↔ node', function () {
  this.timeout(90_000);
  let f: CoreFixture;
  let scratch: string;
  let env: NodeJS.ProcessEnv;
  const swm = (args: string[], cwd = scratch) => runSwm(SWM_MAIN, args, { cwd, env });

  before(async () => {
    f = await startFixture();
    scratch = mkdtempSync(join(tmpdir(), 'skyport-transfer-'));
    env = { SWM_HOME: f.spool.homeDir };
  });
  after(async () => {
    await f?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  const finished = (id: string) => waitForJob(f.admin, id, isFinal, 60_000);

  it('round-trips a directory tree of mixed sizes byte for byte, with the same hashes', async () => {
    const tree = join(scratch, 'tree');
    mkdirSync(join(tree, 'b', 'd'), { recursive: true });
    writeFileSync(join(tree, 'empty.txt'), '');
    writeFileSync(join(tree, 'b', 'one.bin'), 'x');
    writePatterned(join(tree, 'b', 'd', 'page.bin'), 4096);
    writePatterned(join(tree, 'b', 'd', 'mib.bin'), 1024 * 1024 + 7);
    writePatterned(join(tree, 'big.bin'), 9 * 1024 * 1024 + 3);
    writeFileSync(join(tree, 'with space.txt'), 'spaces survive\n');
    writeFileSync(join(scratch, 'tree.sh'), '#!/bin/sh\n#SWM output-files out\ncp -R tree out\n');

    const submitted = await swm(['submit', 'tree.sh', '--input', 'tree', '--json']);
    expect(submitted.code, submitted.stderr).to.equal(0);
    const { id, inputs } = JSON.parse(submitted.stdout) as { id: string; inputs: { path: string }[] };
    expect(inputs.map((i) => i.path)).to.include.members(['tree/b/d/mib.bin', 'tree/empty.txt', 'tree/with space.txt']);
    const job = await finished(id);
    expect(job.state, job.state_details).to.equal('F');

    const downloaded = await swm(['download', id, '--to', 'back', '--json', 'out/**']);
    expect(downloaded.code, downloaded.stderr).to.equal(0);
    expect(treeHashes(join(scratch, 'back', 'out'))).to.deep.equal(treeHashes(tree));
  });

  it('resumes an upload interrupted by killing the terminal, without sending again what arrived', async () => {
    const size = 256 * 1024 * 1024;
    writePatterned(join(scratch, 'huge.bin'), size);
    writeFileSync(join(scratch, 'huge.sh'), '#!/bin/sh\n#SWM name resume-me\nwc -c < huge.bin\n');
    const args = [SWM_MAIN, 'submit', 'huge.sh', '--input', 'huge.bin', '--json'];
    const first = spawn(process.execPath, args, { cwd: scratch, env: { ...process.env, ...env }, stdio: 'ignore' });
    const firstExit = new Promise((resolve) => first.once('exit', resolve));

    // Find the job once the terminal declared it, then stop the terminal as soon as bytes arrive.
    let id: string | null = null;
    let received = 0;
    for (let i = 0; i < 3000 && received === 0; i++) {
      if (!id) id = (await f.admin.call('job.list', { states: ['Q'] })).jobs.find((j) => j.name === 'resume-me')?.id ?? null;
      if (id) received = (await f.admin.call('job.input.status', { id })).files[0]!.received;
      if (received === 0) await new Promise((r) => setTimeout(r, 5));
    }
    expect(id, 'the job was submitted').to.be.a('string');
    first.kill('SIGSTOP');
    first.kill('SIGKILL');
    await firstExit;
    expect(received).to.be.greaterThan(0);

    // What the core holds once it has written what was in flight when the terminal died.
    let held = -1;
    for (let now = received; now !== held; await new Promise((r) => setTimeout(r, 100))) {
      held = now;
      now = (await f.admin.call('job.input.status', { id: id! })).files[0]!.received;
    }
    expect(held).to.be.below(size);

    const details: string[] = [];
    const watching = waitForJob(f.admin, id!, (j) => (details.push(j.state_details), isFinal(j)), 60_000);
    const second = await runSwm(SWM_MAIN, args.slice(1), { cwd: scratch, env });
    expect(second.code, second.stderr).to.equal(0);
    const summary = JSON.parse(second.stdout) as { id: string; resumed: boolean; uploadedBytes: number };
    expect(summary.id).to.equal(id);
    expect(summary.resumed).to.equal(true);
    expect(summary.uploadedBytes).to.equal(size - held);
    const job = await watching;
    expect(job.state, job.state_details).to.equal('F');
    expect((await f.admin.call('job.logs', { id: id!, stream: 'stdout' })).data.trim()).to.equal(String(size));
    // The stage-in to the node reported its progress in the words JupyterHub spawners look for.
    expect(details).to.include('data uploaded 256.0 MB / 256.0 MB');
  });

  it('detects a corrupted frame by the file\'s SHA-256 and has the file sent again whole', async () => {
    const path = join(scratch, 'fragile.bin');
    writePatterned(path, 5 * 1024 * 1024 + 11);
    const content = readFileSync(path);
    const input = { path: 'fragile.bin', absolute: path, size: content.length, sha256: sha256(content) };
    const { id } = await f.admin.call('job.submit', {
      script: '#!/bin/sh\nsha256sum fragile.bin\n',
      inputs: [{ path: input.path, size: input.size, sha256: input.sha256 }],
    });
    let corrupted = 0;
    const result = await uploadInputs(f.admin, id, [input], {
      progress: false,
      hooks: {
        // Flip a byte of the frame at 2 MiB, once, as a faulty link would.
        tamper: (frame, offset) => {
          if (offset === 2 * 1024 * 1024 && corrupted++ === 0) frame[FRAME_HEADER_BYTES + 100] ^= 0xff;
        },
      },
    });
    expect(corrupted).to.be.greaterThan(0);
    expect(result.resent).to.equal(1);
    expect(result.sent).to.equal(input.size);
    const committed = await f.admin.call('job.input.commit', { id });
    expect(committed.state).to.equal('Q');
    const job = await finished(id);
    expect(job.state, job.state_details).to.equal('F');
    expect((await f.admin.call('job.logs', { id, stream: 'stdout' })).data).to.contain(input.sha256);
  });

  it('answers malformed and out-of-place binary frames with RESETs, and keeps serving the connection', async () => {
    const MIB = 1024 * 1024;
    const mux = streamsOf(f.admin);
    /** The next RESET the core sends on `stream`. */
    const resetOn = (stream: number) =>
      new Promise<RpcError>((resolve) =>
        mux.attach(stream, {
          onFrame: (frame) => {
            if (frame.type === FrameType.Reset) resolve(resetError(frame));
          },
          onClosed: (error) => resolve(error),
        }),
      );
    // Not frames of this protocol at all: dropped, logged; the connection goes on.
    const shortFrame = Buffer.alloc(5);
    const wrongVersion = encodeFrame(FrameType.Data, 1, 0, Buffer.from('x'));
    wrongVersion[0] = 9;
    for (const bad of [shortFrame, wrongVersion]) f.admin.sendBinary(bad);
    // DATA for a stream nobody opened.
    const unknown = resetOn(4242);
    mux.sendData(encodeFrame(FrameType.Data, 4242, 0, Buffer.from('stray')));
    expect((await unknown).code).to.equal(ErrorCode.NotFound);

    const data = randomBytes(16 * MIB);
    const { id } = await f.admin.call('job.submit', { script: '#!/bin/sh\ntrue\n', inputs: [{ path: 'in.bin', size: data.length, sha256: sha256(data) }] });
    const send = async (frame: (stream: number, window: number) => Buffer) => {
      const opened = await f.admin.call('job.input.open', { id, path: 'in.bin', offset: 0 });
      const reset = resetOn(opened.stream);
      mux.sendData(frame(opened.stream, opened.window));
      return reset;
    };
    // A sender that jumps past its window, one that leaves a gap, one that ends early.
    const overrun = await send((stream, window) => encodeFrame(FrameType.Data, stream, window, data.subarray(window, window + MIB)));
    expect(overrun.code).to.equal(ErrorCode.Integrity);
    expect(overrun.message).to.match(/the sender overran its window$/);
    const gap = await send((stream) => encodeFrame(FrameType.Data, stream, MIB, data.subarray(MIB, 2 * MIB)));
    expect(gap.code).to.equal(ErrorCode.Integrity);
    expect(gap.message).to.match(/DATA at 1048576, expected 0$/);
    const early = await send((stream) => encodeFrame(FrameType.End, stream, data.length));
    expect(early.code).to.equal(ErrorCode.Integrity);
    expect(early.message).to.match(/sender ended at 16777216 with 0 of 16777216 bytes received$/);
    // Nothing was kept, and the connection still answers calls.
    expect((await f.admin.call('job.input.status', { id })).files[0]!.received).to.equal(0);
    await f.admin.call('job.cancel', { id });
  });

  it('refuses paths that escape, on the terminal, on the core and on the node', async () => {
    const work = join(scratch, 'escape', 'work');
    mkdirSync(work, { recursive: true });
    writeFileSync(join(scratch, 'escape', 'secret.txt'), 'not yours\n');
    symlinkSync('../secret.txt', join(work, 'link.txt'));
    writeFileSync(join(work, 'job.sh'), '#!/bin/sh\ntrue\n');
    // Terminal: `..`, an absolute path and a symbolic link, all leading out of the current directory.
    for (const [input, message] of [
      ['../secret.txt', 'outside the current directory'],
      [join(scratch, 'escape', 'secret.txt'), 'outside the current directory'],
      ['link.txt', 'symbolic link'],
    ] as const) {
      const run = await swm(['submit', 'job.sh', '--input', input], work);
      expect(run.code, input).to.equal(1);
      expect(run.stderr, input).to.contain(message);
    }

    // Core: stream and chunk methods refuse paths leaving the job directory.
    const { id: waiting } = await f.admin.call('job.submit', { script: '#!/bin/sh\ntrue\n', inputs: [{ path: 'a.txt', size: 1, sha256: sha256(Buffer.from('a')) }] });
    for (const call of [
      () => f.admin.call('job.input.open', { id: waiting, path: '../a.txt' }),
      () => f.admin.call('job.input.open', { id: waiting, path: '/etc/passwd' }),
      () => f.admin.call('job.file.open', { id: waiting, path: 'x/../../../config.json' }),
    ]) {
      const error = await call().catch((e: RpcError) => e);
      expect(error).to.be.instanceOf(RpcError);
      expect((error as RpcError).code).to.equal(ErrorCode.InvalidParams);
    }
    await f.admin.call('job.cancel', { id: waiting });
    const script = await f.admin.call('job.submit', { script: '#!/bin/sh\n#SWM output-files ../../etc\ntrue\n' }).catch((e: RpcError) => e);
    expect((script as RpcError).code).to.equal(ErrorCode.InvalidScript);

    // Node: a result that is a symbolic link leading out of the job directory is never fetched.
    const details: string[] = [];
    const { id } = await f.admin.call('job.submit', {
      script: '#!/bin/sh\n#SWM output-files out\nmkdir out\necho fine > out/fine.txt\nln -s /etc/passwd out/passwd\nln -s ../../.. out/up\n',
    });
    const job = await waitForJob(f.admin, id, (j: Job) => {
      details.push(j.state_details);
      return isFinal(j);
    }, 60_000);
    expect(job.state, job.state_details).to.equal('F');
    const files = (await f.admin.call('job.files', { id })).files.map((x) => x.path);
    expect(files).to.include('out/fine.txt');
    expect(files.some((p) => p.startsWith('out/passwd') || p.startsWith('out/up'))).to.equal(false);
    expect(details.join('\n')).to.contain('out/passwd (a symbolic link leading outside the job directory: refused)');

    // Terminal again: a download never writes through a symbolic link leading out of --to.
    const to = join(scratch, 'escape', 'to');
    mkdirSync(to, { recursive: true });
    mkdirSync(join(scratch, 'escape', 'elsewhere'));
    symlinkSync('../elsewhere', join(to, 'out'));
    const download = await swm(['download', id, '--to', to, 'out/fine.txt']);
    expect(download.code).to.equal(1);
    expect(download.stderr).to.contain('symbolic link');
    expect(readdirSync(join(scratch, 'escape', 'elsewhere'))).to.deep.equal([]);
  });

  it('shows progress on a terminal, and none with --json', async () => {
    const dir = join(scratch, 'tty');
    mkdirSync(dir);
    writePatterned(join(dir, 'data.bin'), 48 * 1024 * 1024);
    writeFileSync(join(dir, 'job.sh'), '#!/bin/sh\n#SWM input-files data.bin\ntrue\n');

    const watched = await runInPty([process.execPath, SWM_MAIN, 'submit', 'job.sh'], { cwd: dir, env });
    expect(watched.code, watched.output).to.equal(0);
    expect(watched.output).to.match(/upload\s+=+ 100%\s+48 MiB \/ 48 MiB\s+1\/1 file\s+[\d.]+ [KMG]?i?B\/s/);
    expect(watched.output).to.match(/checksum\s+=+ 100%/);

    const scripted = await runInPty([process.execPath, SWM_MAIN, 'submit', 'job.sh', '--json', '--name', 'quiet'], { cwd: dir, env });
    expect(scripted.code, scripted.output).to.equal(0);
    // No bar, no cursor control: only the JSON document.
    expect(scripted.output).to.not.match(/upload |checksum|%|ETA|\u001b/);
    const summary = JSON.parse(scripted.output.trim()) as { uploadedBytes: number };
    expect(summary.uploadedBytes).to.equal(48 * 1024 * 1024);
    expect(statSync(join(dir, 'data.bin')).size).to.equal(48 * 1024 * 1024);
  });
});
