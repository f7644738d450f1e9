/**
 * The Sky Port node agent: one long-lived process per node and core connection, started over SSH once and then
 * spoken to in frames on its stdin and stdout. It starts and watches job runners, writes files as they stream in
 * (hashing them as they arrive), extracts tar streams of many small files, and hashes files, without a shell or an
 * exec channel per operation.
 *
 * This file is the whole program a node runs: it imports Node's built-in modules only and runs on Node 18 (the
 * `nodejs` package of Ubuntu 24.04), so the core can upload it as it is (`~/.skyport/agent-<hash>.mjs`). The local
 * gate's nodes serve it inside their own process instead (no process spawned for it). The durable node files
 * stay the truth about a job (core/jobs/node-layout.ts: .swm/pid, .swm/exitcode): the agent only starts the runner
 * and reads them, so a core that restarts with a new agent re-attaches to what an earlier one started.
 *
 * Frames, both ways: u32 length of the rest, u32 length of the header, the header (JSON), the body (bytes).
 *
 *   core ─▶ agent   {id, op: 'run' | 'stop' | 'read' | 'write' | 'put' | 'untar' | 'hash' | 'remove' | 'follow' | 'hello', ...}, then for put and untar
 *                   {id, op: 'data'} + body ... {id, op: 'end'}; for follow, {id, op: 'unfollow'} when the core has heard enough
 *   agent ─▶ core   {id, event: 'started' | 'attached'}  (run)      {id, done: true, result} | {id, done: true, error, code}
 *                   {id, event: 'from', offsets}, then {id, event: 'data', stream, offset} + body ...  (follow)
 *
 * Paths are relative to the node user's home and never leave it: absolute names, `..` and NUL are refused. An
 * operation that writes names a directory (a job's: links on the way to it are followed, as for any path) and
 * paths under it, where a symbolic link is never followed: one in a directory's place or at a file's name is
 * replaced, as GNU tar does.
 */
import { spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, watch, type FSWatcher } from 'node:fs';
import { closeSync, constants, existsSync, fchmodSync, fstatSync, ftruncateSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable, Writable } from 'node:stream';

/** Bumped when the frames or the operations change: the core starts the agent of its own version (the file name carries its hash). */
export const AGENT_PROTOCOL = 2;
/** The largest frame either side accepts; a bigger one ends the conversation (a corrupt or hostile stream). */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** The most a `read` answers with (a frame must stay well under MAX_FRAME_BYTES). */
export const READ_MAX_BYTES = 4 * 1024 * 1024;
/** How often a re-attached run looks at the runner it did not start (its pid and exit code files). */
const REATTACH_POLL_MS = 250;
/** A followed file: how often one that does not exist yet is looked for, and how often one that does is read without a change notice. */
const FOLLOW_ABSENT_POLL_MS = 100;
const FOLLOW_QUIET_POLL_MS = 1000;
/** The most a followed file gives per read (one data frame). */
const FOLLOW_CHUNK_BYTES = 256 * 1024;

export interface AgentHeader {
  id: number;
  op?: string;
  event?: string;
  done?: boolean;
  error?: string;
  code?: string;
  result?: unknown;
  [key: string]: unknown;
}

/** One frame as buffers to write (no copy of the body). Pure. */
export function encodeFrame(header: AgentHeader, body?: Buffer): Buffer[] {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.allocUnsafe(8);
  prefix.writeUInt32BE(4 + json.length + (body?.length ?? 0), 0);
  prefix.writeUInt32BE(json.length, 4);
  return body && body.length > 0 ? [prefix, json, body] : [Buffer.concat([prefix, json])];
}

/** Splits a byte stream into frames; throws on a frame that is malformed or too large. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly onFrame: (header: AgentHeader, body: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.buffered < 4) return;
      const head = this.peek(8);
      const length = head.readUInt32BE(0);
      if (length > MAX_FRAME_BYTES || length < 4) throw new Error(`malformed frame (${length} bytes)`);
      if (this.buffered < 4 + length) return;
      const frame = this.take(4 + length);
      const headerLength = frame.readUInt32BE(4);
      if (headerLength > length - 4) throw new Error('malformed frame header');
      let header: AgentHeader;
      try {
        header = JSON.parse(frame.subarray(8, 8 + headerLength).toString('utf8')) as AgentHeader;
      } catch {
        throw new Error('malformed frame header');
      }
      if (typeof header !== 'object' || header === null || typeof header.id !== 'number') throw new Error('frame without an id');
      this.onFrame(header, frame.subarray(8 + headerLength));
    }
  }

  /** The first `n` bytes (or fewer, when fewer are buffered), copying no more chunks than they span. */
  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    const spanned: Buffer[] = [];
    let have = 0;
    for (const chunk of this.chunks) {
      if (have >= n) break;
      spanned.push(chunk);
      have += chunk.length;
    }
    return Buffer.concat(spanned, have).subarray(0, n);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks, this.buffered);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}

class AgentError extends Error {
  constructor(
    message: string,
    readonly code = 'EINVAL',
  ) {
    super(message);
  }
}

/** `path` (relative to `home`) as an absolute path, refusing what would leave `home`. Pure. */
export function within(home: string, path: string): string {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) throw new AgentError(`bad path ${JSON.stringify(path)}`);
  if (path.startsWith('/')) throw new AgentError(`absolute path ${JSON.stringify(path.slice(0, 200))} refused`);
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new AgentError(`path ${JSON.stringify(path.slice(0, 200))} leaves the directory: refused`);
  return join(home, ...parts);
}

/**
 * The directory an operation works in (`dir`, relative to `home`), made if missing; a link on the way to it is
 * followed, as for any path the node's user names (`~/swm` may well lead to a data disk). Its absolute path.
 */
function ensureDir(home: string, dir: string): string {
  const base = within(home, dir);
  mkdirSync(base, { recursive: true, mode: 0o755 });
  return base;
}

/**
 * Make `target` (absolute, under `base`) and its parents below `base` as real directories: a symbolic link or a
 * file in the way is replaced, never followed (one left in a job directory cannot carry a file out of it).
 */
function makeDirsBelow(base: string, target: string): void {
  let at = base;
  for (const part of target.slice(base.length).split('/').filter(Boolean)) {
    at = join(at, part);
    let stat;
    try {
      stat = lstatSync(at);
    } catch {
      mkdirSync(at, { mode: 0o755 });
      continue;
    }
    if (stat.isDirectory()) continue;
    unlinkSync(at);
    mkdirSync(at, { mode: 0o755 });
  }
}

/** Open a file for writing (and reading what a resumed transfer kept), never through a symbolic link at its own name (one there is removed first). */
function openForWrite(path: string, mode: number, truncate: boolean): number {
  try {
    if (lstatSync(path).isSymbolicLink()) unlinkSync(path);
  } catch {
    /* not there yet */
  }
  return openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | (truncate ? constants.O_TRUNC : 0), mode);
}

interface Reply {
  event(id: number, event: string, fields?: Record<string, unknown>, body?: Buffer): void;
  /** Whether what was sent waits in the output's buffer (`output.once('drain')` tells when it no longer does). */
  readonly backlogged: boolean;
  onDrain(go: () => void): void;
  done(id: number, result: unknown, body?: Buffer): void;
  fail(id: number, error: unknown): void;
}

/**
 * Files followed as they grow (`tail -F` of a job's stdout and stderr): their sizes when following starts
 * (`from`), then every byte written after, in order, each piece with its offset (`data`, `stream` the file's index).
 * A file that does not exist yet is looked for until it does. A change notice (inotify) wakes the reading; a slow
 * poll stands in where notices do not come. Reading waits while the output is backlogged: a job writing faster than
 * the connection carries costs the agent no memory. Followed until `stop()` (the core's `unfollow`, or the end of
 * the conversation); the files are only read.
 */
class FileFollow {
  private readonly files: Array<{ path: string; offset: number; fd: number | null; watcher: FSWatcher | null; timer: NodeJS.Timeout | null }>;
  private stopped = false;
  private reading = false;
  private again = false;
  private draining = false;

  constructor(
    home: string,
    paths: readonly string[],
    private readonly id: number,
    private readonly reply: Reply,
  ) {
    this.files = paths.map((p) => ({ path: within(home, p), offset: 0, fd: null, watcher: null, timer: null }));
    for (const file of this.files) {
      try {
        file.offset = lstatSync(file.path).size;
      } catch {
        /* not there yet: followed from its first byte */
      }
    }
    reply.event(id, 'from', { offsets: this.files.map((f) => f.offset) });
    this.read();
  }

  stop(): void {
    this.stopped = true;
    for (const file of this.files) {
      file.watcher?.close();
      if (file.timer) clearTimeout(file.timer);
      if (file.fd !== null) closeSync(file.fd);
      file.fd = null;
    }
  }

  /** Read what every file has beyond its offset, then wait for a notice, the poll or the output's room. */
  private read(): void {
    if (this.stopped) return;
    if (this.reading) return void (this.again = true);
    if (this.draining) return;
    this.reading = true;
    try {
      for (let stream = 0; stream < this.files.length; stream++) {
        const file = this.files[stream]!;
        if (file.fd === null && !this.open(file)) continue;
        for (;;) {
          if (this.reply.backlogged) {
            this.draining = true;
            return this.reply.onDrain(() => {
              this.draining = false;
              this.read();
            });
          }
          const chunk = Buffer.allocUnsafe(FOLLOW_CHUNK_BYTES);
          const n = readSync(file.fd!, chunk, 0, chunk.length, file.offset);
          if (n === 0) break;
          this.reply.event(this.id, 'data', { stream, offset: file.offset }, chunk.subarray(0, n));
          file.offset += n;
        }
        if (file.timer) clearTimeout(file.timer);
        file.timer = setTimeout(() => this.read(), FOLLOW_QUIET_POLL_MS);
        file.timer.unref();
      }
    } catch (error) {
      // A file that cannot be read any more (an I/O error): following ends with it, the agent goes on.
      this.stop();
      this.reply.fail(this.id, error);
    } finally {
      this.reading = false;
    }
    if (this.again) {
      this.again = false;
      this.read();
    }
  }

  /** Open a file once it exists (watched from then on); until then, look again shortly. */
  private open(file: FileFollow['files'][number]): boolean {
    try {
      file.fd = openSync(file.path, constants.O_RDONLY);
    } catch {
      if (!file.timer) {
        file.timer = setTimeout(() => {
          file.timer = null;
          this.read();
        }, FOLLOW_ABSENT_POLL_MS);
        file.timer.unref();
      }
      return false;
    }
    if (file.timer) clearTimeout(file.timer);
    file.timer = null;
    try {
      file.watcher = watch(file.path, { persistent: false }, () => this.read());
      file.watcher.on('error', () => undefined);
    } catch {
      /* no notices here: the quiet poll reads it */
    }
    return true;
  }
}

/** A job runner: start it once (detached: it outlives the agent and the core), or watch the one an earlier agent started. */
function runJob(home: string, env: NodeJS.ProcessEnv, id: number, dir: string, reply: Reply): void {
  const root = within(home, dir);
  const swm = join(root, '.swm');
  if (!existsSync(swm)) throw new AgentError(`job directory ${dir} missing`, 'ENOENT');
  const finish = (attached: boolean) => {
    const stoppedByPeer = existsSync(join(swm, 'stopped-by-peer'));
    let code: number | null = null;
    try {
      const text = readFileSync(join(swm, 'exitcode'), 'utf8').trim();
      code = /^\d+$/.test(text) ? Number(text) : null;
    } catch {
      /* lost: no exit code */
    }
    reply.done(id, code === null ? { lost: true, stoppedByPeer, attached } : { code, stoppedByPeer, attached });
  };
  if (existsSync(join(swm, 'exitcode'))) {
    reply.event(id, 'attached');
    return finish(true);
  }
  if (!existsSync(join(swm, 'pid'))) {
    const child = spawn('/bin/sh', ['.swm/run.sh'], { cwd: root, env, detached: true, stdio: 'ignore' });
    child.unref();
    child.once('error', (error) => reply.fail(id, error));
    if (child.pid === undefined) return;
    writeFileSync(join(swm, 'pid.tmp'), `${child.pid}\n`);
    renameSync(join(swm, 'pid.tmp'), join(swm, 'pid'));
    reply.event(id, 'started');
    child.once('exit', () => finish(false));
    return;
  }
  reply.event(id, 'attached');
  const pid = Number(readFileSync(join(swm, 'pid'), 'utf8').trim());
  const look = () => (existsSync(join(swm, 'exitcode')) || !Number.isInteger(pid) || pid <= 0 || !isAlive(pid) ? finish(true) : setTimeout(look, REATTACH_POLL_MS).unref());
  look();
}

/** Send `signal` to a process group; false once there is none. */
function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Whether a process runs (a zombie does not). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return true;
  }
}

/** Run a program to its end, its output ignored (a container runtime's kill or rm); never throws. */
function runQuietly(program: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { env, stdio: 'ignore' });
    child.once('error', () => resolve());
    child.once('exit', () => resolve());
  });
}

/** How long a stopped runner's process group has between TERM and KILL. */
const STOP_GRACE_MS = 5_000;

export interface StopRequest {
  dir: string;
  /** The job's container and its runtime, where it runs one. */
  container: { runtime: string; name: string } | null;
  /** Stopped because another rank failed: recorded first (unless the runner has ended), so its exit code does not count. */
  byPeer: boolean;
  /** Also kill every process of this user that carries `SWM_JOB_ID=<sweep>` in its environment (it left the group). */
  sweep: string | null;
}

/**
 * Stop a job on this node: its container, then its runner's whole process group, TERM then KILL; then what left
 * the group but still carries the job's id. What core/jobs/node-layout.ts's killCommand does by shell, without one.
 */
async function stopJob(home: string, env: NodeJS.ProcessEnv, request: StopRequest): Promise<{ stopped: boolean; swept: number }> {
  const swm = join(within(home, request.dir), '.swm');
  let stopped = false;
  if (existsSync(join(swm, 'pid'))) {
    if (request.byPeer && !existsSync(join(swm, 'exitcode'))) writeFileSync(join(swm, 'stopped-by-peer'), '');
    if (request.container) await runQuietly(request.container.runtime, ['kill', request.container.name], env);
    const pid = Number(readFileSync(join(swm, 'pid'), 'utf8').trim());
    if (Number.isInteger(pid) && pid > 1) {
      stopped = signalGroup(pid, 'SIGTERM');
      // The runner itself is waited for, not its whole group: a killed member its new parent (init) has not reaped
      // yet still counts as one, and init may take seconds.
      for (const until = Date.now() + STOP_GRACE_MS; stopped && Date.now() < until && isAlive(pid); ) await new Promise((r) => setTimeout(r, 50));
      signalGroup(pid, 'SIGKILL');
    }
    // A container stopped while it was still being created is left "Created" by the killed `run --rm`.
    if (request.container) await runQuietly(request.container.runtime, ['rm', '-f', request.container.name], env);
  }
  let swept = 0;
  if (request.sweep) {
    const marker = `SWM_JOB_ID=${request.sweep}`;
    // Again while a pass finds something: what forked during a pass (a lower pid after a wrap) or was in the middle
    // of an exec (its environ briefly unreadable) is caught by the next.
    for (let pass = 0, found = 1; found > 0 && pass < 3; pass++) {
      found = 0;
      for (const entry of readdirSync('/proc')) {
        if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
        try {
          // Those of other users are unreadable, and skipped.
          if (!readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0').includes(marker)) continue;
          process.kill(Number(entry), 'SIGKILL');
          found++;
        } catch {
          /* gone, or not ours */
        }
      }
      swept += found;
    }
  }
  return { stopped, swept };
}

/** A file streaming in (`put`): written where it stands, hashed as it arrives; continued from `from` bytes. */
class FileSink {
  private readonly fd: number;
  private readonly hash: Hash = createHash('sha256');
  private at: number;

  constructor(
    home: string,
    dir: string,
    path: string,
    from: number,
    private readonly size: number,
  ) {
    const base = ensureDir(home, dir);
    const abs = within(base, path);
    makeDirsBelow(base, join(abs, '..'));
    this.fd = openForWrite(abs, 0o644, from === 0);
    try {
      // What an interrupted transfer left: kept up to `from`, and hashed first.
      const buffer = Buffer.allocUnsafe(1024 * 1024);
      for (let at = 0; at < from; ) {
        const n = readSync(this.fd, buffer, 0, Math.min(buffer.length, from - at), at);
        if (n <= 0) throw new AgentError(`${path} is shorter than ${from} bytes`, 'ERANGE');
        this.hash.update(buffer.subarray(0, n));
        at += n;
      }
      ftruncateSync(this.fd, from);
    } catch (error) {
      closeSync(this.fd);
      throw error;
    }
    this.at = from;
  }

  data(body: Buffer): void {
    for (let off = 0; off < body.length; ) off += writeSync(this.fd, body, off, body.length - off, this.at + off);
    this.hash.update(body);
    this.at += body.length;
  }

  end(): { sha256: string; size: number } {
    closeSync(this.fd);
    if (this.at !== this.size) throw new AgentError(`received ${this.at} bytes of ${this.size}`, 'ERANGE');
    return { sha256: this.hash.digest('hex'), size: this.at };
  }

  abort(): void {
    try {
      closeSync(this.fd);
    } catch {
      /* closed */
    }
  }
}

const octal = (block: Buffer, at: number, width: number): number => {
  const text = block.toString('ascii', at, at + width).replace(/\0.*$/s, '').trim();
  return text === '' ? 0 : parseInt(text, 8);
};
const cString = (block: Buffer, at: number, width: number): string => {
  const end = block.indexOf(0, at);
  return block.toString('utf8', at, end === -1 || end > at + width ? at + width : end);
};

/**
 * A tar stream of many small files (`untar`): ustar with pax `path` records, directories and regular files only
 * (what core/transfers/tar-stream.ts writes). Each file is hashed as it is written. Anything else is refused.
 */
class TarSink {
  private buffer: Buffer = Buffer.alloc(0);
  private paxPath: string | null = null;
  private ended = false;
  readonly digests: Record<string, string> = {};

  private readonly base: string;

  constructor(home: string, dir: string) {
    this.base = ensureDir(home, dir);
  }

  data(body: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, body]) : body;
    for (;;) {
      if (this.ended || this.buffer.length < 512) return;
      const block = this.buffer.subarray(0, 512);
      if (block.every((b) => b === 0)) {
        this.ended = true;
        return;
      }
      const size = octal(block, 124, 12);
      const padded = Math.ceil(size / 512) * 512;
      if (this.buffer.length < 512 + padded) return;
      const content = this.buffer.subarray(512, 512 + size);
      this.buffer = this.buffer.subarray(512 + padded);
      this.entry(block, content);
    }
  }

  private entry(block: Buffer, content: Buffer): void {
    const type = String.fromCharCode(block[156]!);
    if (type === 'x') {
      const match = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(content.toString('utf8'));
      this.paxPath = match ? match[1]! : null;
      return;
    }
    const prefix = cString(block, 345, 155);
    const name = this.paxPath ?? (prefix ? `${prefix}/${cString(block, 0, 100)}` : cString(block, 0, 100));
    this.paxPath = null;
    const path = name.replace(/\/+$/, '');
    const abs = within(this.base, path);
    const mode = octal(block, 100, 8) & 0o777;
    if (type === '5') return makeDirsBelow(this.base, abs);
    if (type !== '0' && type !== '\0') throw new AgentError(`tar entry ${JSON.stringify(path.slice(0, 200))} of type ${JSON.stringify(type)} refused`);
    makeDirsBelow(this.base, join(abs, '..'));
    const fd = openForWrite(abs, mode || 0o644, true);
    try {
      for (let off = 0; off < content.length; ) off += writeSync(fd, content, off, content.length - off);
    } finally {
      closeSync(fd);
    }
    this.digests[path] = createHash('sha256').update(content).digest('hex');
  }

  end(): { digests: Record<string, string> } {
    if (!this.ended) throw new AgentError('the tar stream ended early', 'ERANGE');
    return { digests: this.digests };
  }

  abort(): void {}
}

/** One file of a `write`: its path, its length in the body, its mode. */
export interface WrittenFile {
  path: string;
  size: number;
  mode: number;
}

/**
 * Small files whole, one after the other from `body` (`write`), under `dir`: each replaced (never written through a
 * link at its name, none followed below `dir`) and given its mode. `remove` first: paths under `dir` to delete.
 */
function writeFiles(home: string, dir: string, files: readonly WrittenFile[], body: Buffer, remove: readonly string[]): { written: number } {
  const base = ensureDir(home, dir);
  for (const path of remove) rmSync(within(base, path), { recursive: true, force: true });
  let at = 0;
  for (const file of files) {
    const size = Number(file.size);
    if (!Number.isInteger(size) || size < 0 || at + size > body.length) throw new AgentError(`${JSON.stringify(file.path)}: ${size} bytes past the body's ${body.length}`, 'ERANGE');
    const abs = within(base, file.path);
    makeDirsBelow(base, join(abs, '..'));
    const mode = Number(file.mode) & 0o777;
    const fd = openForWrite(abs, mode, true);
    try {
      for (let off = 0; off < size; ) off += writeSync(fd, body, at + off, size - off);
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
    at += size;
  }
  return { written: files.length };
}

/** SHA-256 of files (relative to `dir`), read off the event loop; one that cannot be read is left out. */
async function hashFiles(home: string, dir: string, paths: readonly string[]): Promise<Record<string, string>> {
  const digests: Record<string, string> = {};
  let next = 0;
  const lane = async () => {
    while (next < paths.length) {
      const path = paths[next++]!;
      try {
        const hash = createHash('sha256');
        for await (const chunk of createReadStream(within(home, `${dir}/${path}`), { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
        digests[path] = hash.digest('hex');
      } catch {
        /* missing or unreadable: the caller sees no digest */
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, paths.length) }, lane));
  return digests;
}

export interface AgentOptions {
  /** The directory every path is relative to (the node user's home). */
  home: string;
  /** The environment of the job runners. */
  env: NodeJS.ProcessEnv;
}

/**
 * Serve the agent's protocol on `input`/`output` until `input` ends. Resolves then (the runners it started go on).
 * A malformed frame ends the conversation with a message on `onError`.
 */
export function serveAgent(input: Readable, output: Writable, options: AgentOptions, onError: (message: string) => void = () => {}): Promise<void> {
  const sinks = new Map<number, FileSink | TarSink>();
  const follows = new Map<number, FileFollow>();
  /** Streams whose operation failed: their remaining data frames are dropped. */
  const failed = new Set<number>();
  const send = (header: AgentHeader) => {
    for (const buffer of encodeFrame(header)) output.write(buffer);
  };
  const reply: Reply = {
    event: (id, event, fields, body) => {
      for (const buffer of encodeFrame({ ...fields, id, event }, body)) output.write(buffer);
    },
    get backlogged() {
      return output.writableNeedDrain;
    },
    onDrain: (go) => void output.once('drain', go),
    done: (id, result, body) => {
      for (const buffer of encodeFrame({ id, done: true, result }, body)) output.write(buffer);
    },
    fail: (id, error) => send({ id, done: true, error: (error as Error)?.message ?? String(error), code: (error as NodeJS.ErrnoException)?.code ?? 'EIO' }),
  };
  const handle = (header: AgentHeader, body: Buffer): void => {
    const { id } = header;
    try {
      switch (header.op) {
        case 'hello':
          return reply.done(id, { protocol: AGENT_PROTOCOL, pid: process.pid, node: process.version });
        case 'run':
          return runJob(options.home, options.env, id, String(header.dir), reply);
        case 'put':
          sinks.set(id, new FileSink(options.home, String(header.dir), String(header.path), Number(header.from ?? 0), Number(header.size)));
          return;
        case 'untar':
          sinks.set(id, new TarSink(options.home, String(header.dir)));
          return;
        case 'data': {
          if (failed.has(id)) return;
          const sink = sinks.get(id);
          if (!sink) throw new AgentError(`no transfer ${id}`);
          sink.data(body);
          return;
        }
        case 'end': {
          if (failed.delete(id)) return;
          const sink = sinks.get(id);
          sinks.delete(id);
          if (!sink) throw new AgentError(`no transfer ${id}`);
          return reply.done(id, sink.end());
        }
        case 'hash': {
          const paths = Array.isArray(header.paths) ? header.paths.map(String) : [];
          hashFiles(options.home, String(header.dir), paths).then((digests) => reply.done(id, { digests }), (error) => reply.fail(id, error));
          return;
        }
        case 'stop': {
          const request: StopRequest = {
            dir: String(header.dir),
            container: header.container && typeof header.container === 'object' ? (header.container as StopRequest['container']) : null,
            byPeer: header.byPeer === true,
            sweep: typeof header.sweep === 'string' ? header.sweep : null,
          };
          stopJob(options.home, options.env, request).then((result) => reply.done(id, result), (error) => reply.fail(id, error));
          return;
        }
        case 'read': {
          // A small file whole, in the answer's body (outputs and the log clock: one round trip each).
          const path = within(options.home, String(header.path));
          const max = Math.min(Number(header.max ?? READ_MAX_BYTES), READ_MAX_BYTES);
          const fd = openSync(path, constants.O_RDONLY);
          try {
            const size = fstatSync(fd).size;
            if (size > max) throw new AgentError(`${String(header.path)} is ${size} bytes, over ${max}`, 'EFBIG');
            const data = Buffer.allocUnsafe(size);
            let got = 0;
            while (got < size) {
              const n = readSync(fd, data, got, size - got, got);
              if (n === 0) break;
              got += n;
            }
            return reply.done(id, { size: got, sha256: createHash('sha256').update(data.subarray(0, got)).digest('hex') }, data.subarray(0, got));
          } finally {
            closeSync(fd);
          }
        }
        case 'write':
          return reply.done(id, writeFiles(options.home, String(header.dir), Array.isArray(header.files) ? (header.files as WrittenFile[]) : [], body, Array.isArray(header.remove) ? header.remove.map(String) : []));
        case 'follow': {
          if (follows.has(id)) throw new AgentError(`already following ${id}`);
          const paths = Array.isArray(header.paths) ? header.paths.map(String) : [];
          follows.set(id, new FileFollow(options.home, paths, id, reply));
          return;
        }
        case 'unfollow': {
          const follow = follows.get(id);
          follows.delete(id);
          follow?.stop();
          return reply.done(id, { followed: !!follow });
        }
        case 'remove': {
          rmSync(within(options.home, String(header.path)), { recursive: true, force: true });
          return reply.done(id, {});
        }
        default:
          throw new AgentError(`unknown operation ${JSON.stringify(header.op)}`);
      }
    } catch (error) {
      sinks.get(id)?.abort();
      sinks.delete(id);
      // The rest of a failed transfer's frames are dropped, its end included: one answer per operation.
      if (header.op === 'put' || header.op === 'untar' || header.op === 'data') failed.add(id);
      reply.fail(id, error);
    }
  };
  const reader = new FrameReader(handle);
  return new Promise((resolve) => {
    const stop = () => {
      for (const sink of sinks.values()) sink.abort();
      sinks.clear();
      for (const follow of follows.values()) follow.stop();
      follows.clear();
      resolve();
    };
    input.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (error) {
        onError((error as Error).message);
        input.destroy();
        stop();
      }
    });
    input.once('end', stop);
    input.once('close', stop);
    input.once('error', stop);
  });
}

/** Run as a program (`node agent-<hash>.mjs` on a node): serve on stdin and stdout in the home directory. */
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const home = process.env.HOME ?? process.cwd();
  void serveAgent(process.stdin, process.stdout, { home, env: process.env }, (message) => process.stderr.write(`skyport agent: ${message}\n`)).then(() => process.exit(0));
}
