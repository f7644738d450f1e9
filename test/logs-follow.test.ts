import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { startInProcessCore, type InProcessCore } from './harness/core-in-process.js';
import { SWM_MAIN, connectTerminal, isFinal, waitForJob } from './harness/core.js';
import { submitJob } from './harness/submit.js';

interface Push {
  at: number;
  stream: 'stdout' | 'stderr';
  offset: number;
  data: string;
}

/** Every job.log notification a terminal receives for one job, with when it arrived. */
function collectPushes(client: TerminalClient, id: string): { pushes: Push[]; next: (test: (p: Push) => boolean) => Promise<Push>; stop: () => void } {
  const pushes: Push[] = [];
  const waiters: Array<{ test: (p: Push) => boolean; resolve: (p: Push) => void }> = [];
  const listener = (name: string, params: { id: string; stream: 'stdout' | 'stderr'; offset: number; data: string }) => {
    if (name !== 'job.log' || params.id !== id) return;
    const push = { at: Date.now(), stream: params.stream, offset: params.offset, data: params.data };
    pushes.push(push);
    for (const w of [...waiters]) if (w.test(push)) waiters.splice(waiters.indexOf(w), 1) && w.resolve(push);
  };
  client.on('notification', listener);
  return {
    pushes,
    next: (test) => {
      const seen = pushes.find(test);
      return seen ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ test, resolve }));
    },
    stop: () => client.off('notification', listener),
  };
}

/** Resolves once `event` has `count` listeners (EventEmitter's newListener: no polling). */
function untilListeners(emitter: EventEmitter, event: string, count: number): Promise<void> {
  if (emitter.listenerCount(event) >= count) return Promise.resolve();
  return new Promise((resolve) => {
    const onNew = (name: string | symbol) => {
      // Emitted before the listener is added.
      if (name !== event || emitter.listenerCount(event) + 1 < count) return;
      emitter.off('newListener', onNew);
      resolve();
    };
    emitter.on('newListener', onNew);
  });
}

/**
 * Who follows a job's logs on its node (the local gate's nodes are this machine's processes): every file
 * descriptor open for reading on its stdout.log or stderr.log, in any process (by the process's name): the node
 * agent's (one per file it follows), or a `tail`'s where the node has no agent. The job's own processes hold them
 * for writing only.
 */
function readersOf(id: string): string[] {
  const log = new RegExp(`/swm/${id}/std(out|err)\\.log$`);
  const readers: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const fd of fds) {
      try {
        if (!log.test(readlinkSync(`/proc/${pid}/fd/${fd}`))) continue;
        const flags = /^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
        if (flags && (parseInt(flags[1]!, 8) & 3) === 0) readers.push(readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return readers;
}

/** Waits (bounded) for a condition on the node's processes: nothing announces that a process there ended. */
async function eventually(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Lines "<tag> ... <ns since the epoch>" of a log, each with the byte offset just past its newline. */
function stampedLines(log: Buffer, tag: string): Array<{ text: string; end: number; writtenMs: number }> {
  const lines: Array<{ text: string; end: number; writtenMs: number }> = [];
  let start = 0;
  for (let nl = log.indexOf(0x0a); nl >= 0; start = nl + 1, nl = log.indexOf(0x0a, start)) {
    const text = log.subarray(start, nl).toString('utf8');
    if (text.startsWith(`${tag} `)) lines.push({ text, end: nl + 1, writtenMs: Number(BigInt(text.split(' ').pop()!) / 1_000_000n) });
  }
  return lines;
}

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

interface CliRun {
  child: ChildProcess;
  /** stdout and stderr so far, each with when each chunk arrived (the offset just past it). */
  out: { bytes: () => Buffer; arrivals: Array<{ end: number; at: number }> };
  err: { bytes: () => Buffer; arrivals: Array<{ end: number; at: number }> };
  exit: Promise<number | null>;
}

/** The real `swm` with the spool's admin bundle; output recorded as it arrives. */
function runSwm(home: string, args: string[], children: ChildProcess[]): CliRun {
  const child = spawn(process.execPath, [SWM_MAIN, ...args], { env: { ...process.env, SWM_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const record = (stream: NodeJS.ReadableStream) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let joined: Buffer | null = null;
    const arrivals: Array<{ end: number; at: number }> = [];
    stream.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      joined = null;
      arrivals.push({ end: length, at: Date.now() });
    });
    return { bytes: () => (joined ??= Buffer.concat(chunks)), arrivals };
  };
  const out = record(child.stdout!);
  const err = record(child.stderr!);
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out, err, exit };
}

/** Resolves when a CLI's stream holds `text` (an event: its output arriving). */
function untilPrinted(stream: NodeJS.ReadableStream, sofar: () => Buffer, text: string): Promise<void> {
  if (sofar().includes(text)) return Promise.resolve();
  return new Promise((resolve) => {
    const onData = () => {
      if (!sofar().includes(text)) return;
      stream.off('data', onData);
      resolve();
    };
    stream.on('data', onData);
  });
}

/** The terminal's safety-net poll (terminal/job-follow.ts): latencies must be well below it. */
const POLL_MS = 3000;
const LINES = 20;

describe('swm logs -f: output pushed as the job writes it (job.log)', function () {
  this.timeout(90_000);
  let f: InProcessCore;
  let scratch: string;
  const children: ChildProcess[] = [];

  before(async () => {
    f = await startInProcessCore();
    scratch = mkdtempSync(join(tmpdir(), 'skyport-logs-follow-'));
    // The job runs as a node account of its own: it must see the file the test creates.
    chmodSync(scratch, 0o1777);
  });
  after(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await f?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('pushes each line to every follower (protocol and CLI) within a second of its writing, at exact offsets', async () => {
    const go = join(scratch, 'go');
    // Ticks until the test has seen the first push (the tail is up), then 20 time-stamped lines, 100 ms apart.
    const script = [
      '#!/bin/sh',
      'i=0',
      `while [ ! -e ${go} ] && [ $i -lt 1200 ]; do echo "tick $(date +%s%N)"; sleep 0.05; i=$((i+1)); done`,
      'n=1',
      `while [ $n -le ${LINES} ]; do echo "line $n $(date +%s%N)"; n=$((n+1)); sleep 0.1; done`,
      'echo "err-line $(date +%s%N)" >&2',
      'sleep 0.2',
    ].join('\n');
    const id = await submitJob(f.admin, script);

    // `swm logs -f` follows first: its subscription adds two listeners to the job's bus channel (its session's
    // and the log follower's).
    const cli = runSwm(f.spool.homeDir, ['logs', '-f', id], children);
    const bus = f.core.services.bus;
    await Promise.race([
      untilListeners(bus, `job:${id}`, 2),
      cli.exit.then((code) => Promise.reject(new Error(`swm logs -f exited (${code}) before following: ${cli.err.bytes()}`))),
    ]);

    // A second follower, through the protocol: shares the same tail.
    const pushes = collectPushes(f.admin, id);
    await f.admin.call('job.subscribe', { id });
    await pushes.next((p) => p.stream === 'stdout' && p.data.includes('tick '));
    writeFileSync(go, '');

    const job = await waitForJob(f.admin, id, isFinal, 60_000);
    expect(job.state, job.state_details).to.equal('F');
    expect(await cli.exit, cli.err.bytes().toString()).to.equal(0);
    pushes.stop();

    const stdout = Buffer.from((await f.admin.call('job.logs', { id, stream: 'stdout' })).data, 'utf8');
    const stderr = Buffer.from((await f.admin.call('job.logs', { id, stream: 'stderr' })).data, 'utf8');
    // Every push is the log's own bytes at its offset: the terminal's placement can trust it.
    for (const p of pushes.pushes) {
      const log = p.stream === 'stdout' ? stdout : stderr;
      const bytes = Buffer.from(p.data, 'utf8');
      expect(log.subarray(p.offset, p.offset + bytes.length).equals(bytes), `push at ${p.stream}:${p.offset}`).to.equal(true);
    }
    // Each line's arrival: the push (or CLI output) that brought its last byte.
    const pushedAt = (stream: 'stdout' | 'stderr', end: number): number | undefined =>
      pushes.pushes.find((p) => p.stream === stream && p.offset < end && end <= p.offset + Buffer.byteLength(p.data))?.at;
    const lines = stampedLines(stdout, 'line');
    expect(lines).to.have.length(LINES);
    const pushLatency = lines.map((l) => {
      const at = pushedAt('stdout', l.end);
      expect(at, `"${l.text}" came as a job.log notification`).to.be.a('number');
      return at! - l.writtenMs;
    });
    const [errLine] = stampedLines(stderr, 'err-line');
    const errAt = pushedAt('stderr', errLine!.end);
    expect(errAt, 'the stderr line came as a job.log notification').to.be.a('number');
    pushLatency.push(errAt! - errLine!.writtenMs);

    // The CLI printed the whole log, each line as it came.
    expect(cli.out.bytes().toString('utf8')).to.equal(stdout.toString('utf8'));
    const cliLatency = lines.map((l) => cli.out.arrivals.find((a) => a.end >= l.end)!.at - l.writtenMs);

    const report = (name: string, values: number[]) =>
      console.log(`      ${name}: p50 ${percentile(values, 50)} ms, p90 ${percentile(values, 90)} ms, max ${Math.max(...values)} ms (target p50 100 ms)`);
    report('job.log push latency', pushLatency);
    report('swm logs -f latency', cliLatency);
    for (const latency of [...pushLatency, ...cliLatency]) expect(latency).to.be.below(1000).and.below(POLL_MS);
  });

  it('tails a job once for all followers, stops when the last leaves or the job ends', async () => {
    const stop = join(scratch, 'stop');
    const id = await submitJob(f.admin, `#!/bin/sh\nwhile [ ! -e ${stop} ]; do echo "tick $(date +%s%N)"; sleep 0.1; done\n`);
    const pushes = collectPushes(f.admin, id);
    await f.admin.call('job.subscribe', { id });
    await pushes.next((p) => p.stream === 'stdout' && p.data !== '');
    // A second terminal follows the same job: still one tail per stream.
    const other = await connectTerminal(f.spool.homeDir, f.core.port);
    try {
      const otherPushes = collectPushes(other, id);
      await other.call('job.subscribe', { id });
      await otherPushes.next((p) => p.stream === 'stdout' && p.data !== '');
      const readers = readersOf(id);
      expect(readers, 'one reader per stream').to.have.length(2);
      // The local gate's nodes serve the agent in their own process: no process on the node for following.
      expect(readers, 'followed by the agent, not tail').to.not.include('tail');
      await other.call('job.unsubscribe', { id });
      otherPushes.stop();
    } finally {
      await other.close();
    }
    expect(readersOf(id)).to.have.length(2);

    // The last follower leaves: following on the node ends.
    await f.admin.call('job.unsubscribe', { id });
    await eventually(() => readersOf(id).length === 0, 'readers gone after the last unsubscribe');

    // A terminal that only waits for the job (swm wait) gets its events and makes the core tail nothing.
    const waiter = await connectTerminal(f.spool.homeDir, f.core.port);
    try {
      const waited = collectPushes(waiter, id);
      expect((await waiter.call('job.subscribe', { id, logs: false })).state).to.equal('R');
      // Nothing announces that a tail did not start: look again after a while longer than a tail takes to start.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(readersOf(id), 'no reader for a subscriber without logs').to.deep.equal([]);
      expect(waited.pushes.filter((p) => p.data !== '')).to.have.length(0);
      waited.stop();
    } finally {
      await waiter.close();
    }

    // Following again starts them again, from where the log is: pushes resume at exact offsets.
    const before = pushes.pushes.length;
    await f.admin.call('job.subscribe', { id });
    const resumed = await pushes.next((p) => pushes.pushes.indexOf(p) >= before && p.stream === 'stdout' && p.data !== '');
    expect(readersOf(id)).to.have.length(2);

    writeFileSync(stop, '');
    const job = await waitForJob(f.admin, id, isFinal, 30_000);
    expect(job.state, job.state_details).to.equal('F');
    await eventually(() => readersOf(id).length === 0, 'readers gone once the job left run');
    pushes.stop();
    const log = Buffer.from((await f.admin.call('job.logs', { id, stream: 'stdout' })).data, 'utf8');
    const bytes = Buffer.from(resumed.data, 'utf8');
    expect(log.subarray(resumed.offset, resumed.offset + bytes.length).equals(bytes)).to.equal(true);
  });

  it('follows with two tail processes on a node worked without the agent (a remote with nodeAgent off)', async () => {
    const plain = await startInProcessCore({ configure: (config) => config.remotes.forEach((r) => (r.nodeAgent = false)) });
    try {
      const stop = join(scratch, 'stop-plain');
      const id = await submitJob(plain.admin, `#!/bin/sh\necho early >&2\nwhile [ ! -e ${stop} ]; do echo "tick $(date +%s%N)"; sleep 0.1; done\n`);
      const pushes = collectPushes(plain.admin, id);
      await plain.admin.call('job.subscribe', { id });
      const first = await pushes.next((p) => p.stream === 'stdout' && p.data !== '');
      expect(readersOf(id).sort()).to.deep.equal(['tail', 'tail']);
      await plain.admin.call('job.unsubscribe', { id });
      await eventually(() => readersOf(id).length === 0, 'tails gone after the last unsubscribe');
      writeFileSync(stop, '');
      const job = await waitForJob(plain.admin, id, isFinal, 30_000);
      expect(job.state, job.state_details).to.equal('F');
      pushes.stop();
      const log = Buffer.from((await plain.admin.call('job.logs', { id, stream: 'stdout' })).data, 'utf8');
      const bytes = Buffer.from(first.data, 'utf8');
      expect(log.subarray(first.offset, first.offset + bytes.length).equals(bytes), 'the push at its exact offset').to.equal(true);
    } finally {
      await plain.stop();
    }
  });

  it('swm submit --wait prints stdout and stderr lines as they are written', async () => {
    const go = join(scratch, 'go-submit');
    const script = join(scratch, 'submit.sh');
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        'echo ready',
        `while [ ! -e ${go} ]; do sleep 0.05; done`,
        'n=1',
        `while [ $n -le 10 ]; do echo "line $n $(date +%s%N)"; echo "err-line $n $(date +%s%N)" >&2; n=$((n+1)); sleep 0.1; done`,
      ].join('\n'),
    );
    const run = runSwm(f.spool.homeDir, ['submit', '--wait', script], children);
    // "ready" printed means the terminal follows the running job; from then on lines are pushed.
    await Promise.race([
      untilPrinted(run.child.stdout!, run.out.bytes, 'ready\n'),
      run.exit.then((code) => Promise.reject(new Error(`swm submit --wait exited (${code}): ${run.err.bytes()}`))),
    ]);
    writeFileSync(go, '');
    expect(await run.exit, run.err.bytes().toString()).to.equal(0);
    const latencies = (bytes: Buffer, arrivals: Array<{ end: number; at: number }>, tag: string) =>
      stampedLines(bytes, tag).map((l) => arrivals.find((a) => a.end >= l.end)!.at - l.writtenMs);
    const out = latencies(run.out.bytes(), run.out.arrivals, 'line');
    const err = latencies(run.err.bytes(), run.err.arrivals, 'err-line');
    expect(out).to.have.length(10);
    expect(err).to.have.length(10);
    console.log(`      swm submit --wait latency: p50 ${percentile([...out, ...err], 50)} ms, max ${Math.max(...out, ...err)} ms`);
    for (const latency of [...out, ...err]) expect(latency).to.be.below(1000);
  });

  it('a job writing faster than logs are pushed: the follower prints every byte once, in order', async () => {
    const go = join(scratch, 'go-fast');
    // ~7 MB in a burst (beyond what a tail may push per second), then a last line after a pause.
    const id = await submitJob(f.admin, `#!/bin/sh\necho ready\nwhile [ ! -e ${go} ]; do sleep 0.05; done\nseq 1 1000000\nsleep 1.5\necho "last $(date +%s%N)"\n`);
    const run = runSwm(f.spool.homeDir, ['logs', '-f', id], children);
    await Promise.race([
      untilPrinted(run.child.stdout!, run.out.bytes, 'ready\n'),
      run.exit.then((code) => Promise.reject(new Error(`swm logs -f exited (${code}): ${run.err.bytes()}`))),
    ]);
    writeFileSync(go, '');
    expect(await run.exit, run.err.bytes().toString()).to.equal(0);
    const job = await waitForJob(f.admin, id, isFinal);
    expect(job.state, job.state_details).to.equal('F');
    const expected = `ready\n${Array.from({ length: 1_000_000 }, (_, i) => `${i + 1}\n`).join('')}`;
    const printed = run.out.bytes().toString('utf8');
    expect(printed.startsWith(expected), 'every line once, in order').to.equal(true);
    const [last] = stampedLines(run.out.bytes(), 'last');
    const latency = run.out.arrivals.find((a) => a.end >= last!.end)!.at - last!.writtenMs;
    const burstEnd = Buffer.byteLength(expected);
    const burstPrinted = run.out.arrivals.find((a) => a.end >= burstEnd)!.at;
    console.log(`      after a burst, the next line: ${latency} ms (burst printed ${burstPrinted - last!.writtenMs} ms relative to it)`);
    expect(latency).to.be.below(1000);
  });
});
