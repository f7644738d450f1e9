import { posix } from 'node:path';
import { jobPathProblem, normalizeRelative } from '../../terminal-protocol/path-patterns.js';

/**
 * A POSIX tar (ustar, with pax headers for long names) written from memory: the batch that carries many small
 * inputs to a node in one stream (tar-batch.ts). Only what the batch needs: directories and regular files.
 *
 * Names are checked here, not trusted: a name that is absolute, holds `..` or NUL, or is malformed is refused
 * (PathEscapeError) before a byte is written. Every directory leading to a file gets an entry of its own, before
 * the file: GNU tar replaces a symbolic link it finds where a directory entry goes (we never pass
 * --keep-directory-symlink), so a link left in the job directory cannot carry a file out of it.
 */

const BLOCK = 512;
const S = (n: number, width: number): string => n.toString(8).padStart(width - 1, '0');

export class PathEscapeError extends Error {
  override name = 'PathEscapeError';
}

/** A header block; `name` fits (the caller splits or uses a pax header). Pure. */
function header(name: string, prefix: string, type: '0' | '5' | 'x', size: number, mode: number, mtime: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(name, 0, 100, 'utf8');
  block.write(S(mode, 8), 100, 'ascii');
  block.write(S(0, 8), 108, 'ascii');
  block.write(S(0, 8), 116, 'ascii');
  block.write(S(size, 12), 124, 'ascii');
  block.write(S(mtime, 12), 136, 'ascii');
  block.write('        ', 148, 'ascii');
  block.write(type, 156, 'ascii');
  block.write('ustar\u000000', 257, 'ascii');
  block.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${S(sum, 7)}\u0000 `, 148, 'ascii');
  return block;
}

/** A pax record `LEN key=value\n`, LEN counting itself. Pure. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bytes = Buffer.byteLength(body, 'utf8');
  // The length counts its own digits: one more digit when adding them carries over (98 + 2 → 101).
  let length = bytes + String(bytes).length;
  if (String(length).length !== String(bytes).length) length = bytes + String(length).length;
  return `${length}${body}`;
}

const padding = (size: number): Buffer => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);

/** The header blocks of one entry: ustar alone when the name fits (split at a `/` into prefix and name), else a pax header first. Pure. */
export function entryHeader(path: string, type: '0' | '5', size: number, mode: number, mtime: number): Buffer[] {
  const name = type === '5' ? `${path}/` : path;
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes <= 100 && /^[\x20-\x7e]*$/.test(name)) return [header(name, '', type, size, mode, mtime)];
  if (/^[\x20-\x7e]*$/.test(name) && bytes <= 256)
    for (let cut = name.indexOf('/'); cut > 0 && cut < name.length - 1; cut = name.indexOf('/', cut + 1)) {
      if (cut <= 155 && bytes - cut - 1 <= 100) return [header(name.slice(cut + 1), name.slice(0, cut), type, size, mode, mtime)];
    }
  // Long or non-ASCII: the pax `path` record (UTF-8) is the name; the ustar name is only a fallback.
  const pax = Buffer.from(paxRecord('path', name), 'utf8');
  return [header('PaxHeader', '', 'x', pax.length, 0o644, mtime), pax, padding(pax.length), header(name.slice(0, 99).replace(/[^\x20-\x7e]/g, '_'), '', type, size, mode, mtime)];
}

/** Why a name cannot go into the batch (it would leave the job directory or is malformed), or null. Pure. */
export function tarPathProblem(path: string): string | null {
  const problem = jobPathProblem(path);
  return problem && problem.kind !== 'reserved' ? problem.reason : null;
}

/**
 * Writes tar entries as buffers to `out`, each directory once and before what it holds. `out` receives chunks
 * in order; the end-of-archive blocks come from `end()`.
 */
export class TarWriter {
  private readonly dirs = new Set<string>();
  private readonly mtime = Math.floor(Date.now() / 1000);

  constructor(private readonly out: (chunk: Buffer) => void) {}

  /** A directory entry (and its parents'), once; `.swm` keeps the runner's mode. */
  directory(path: string): void {
    if (path === '' || path === '.' || this.dirs.has(path)) return;
    const parent = posix.dirname(path);
    if (parent !== '.') this.directory(parent);
    this.dirs.add(path);
    for (const block of entryHeader(path, '5', 0, path === '.swm' ? 0o700 : 0o755, this.mtime)) this.out(block);
  }

  /** A regular file with `data` as its content; throws PathEscapeError for a name that would leave the directory. */
  file(path: string, data: Buffer, mode = 0o644): void {
    const problem = tarPathProblem(path);
    if (problem) throw new PathEscapeError(`"${path.slice(0, 200)}" ${problem}: refused`);
    const name = normalizeRelative(path);
    this.directory(posix.dirname(name));
    for (const block of entryHeader(name, '0', data.length, mode, this.mtime)) this.out(block);
    if (data.length > 0) {
      this.out(data);
      const pad = padding(data.length);
      if (pad.length) this.out(pad);
    }
  }

  /** The two zero blocks that end an archive. */
  end(): void {
    this.out(Buffer.alloc(2 * BLOCK));
  }
}
