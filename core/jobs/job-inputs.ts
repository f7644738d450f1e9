import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, openSync, closeSync, writeSync, fstatSync, statSync, existsSync, ftruncateSync, fsyncSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { jobPathProblem } from '../../terminal-protocol/path-patterns.js';
import type { InputFile } from '../../terminal-protocol/terminal-methods.js';
import { quotedPath } from './job-script.js';

/**
 * Digests of input files received whole over a stream, checked against their declared SHA-256 as the bytes
 * arrived: commit need not read them again. Keyed by path; valid while size and mtime are unchanged.
 */
export class InputDigests {
  private readonly digests = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

  /** Record that a streamed input arrived whole with its declared SHA-256. */
  record(path: string, sha256: string): void {
    const s = statSync(path);
    this.digests.set(path, { size: s.size, mtimeMs: s.mtimeMs, sha256 });
  }

  /** The digest recorded for the file as it is now (same size and mtime), if any. */
  known(path: string, size: number, mtimeMs: number): string | null {
    const known = this.digests.get(path);
    return known && known.size === size && known.mtimeMs === mtimeMs ? known.sha256 : null;
  }

  forget(path: string): void {
    this.digests.delete(path);
  }
}

/**
 * Refuse a declared input whose name cannot be a file of the job's directory (path-patterns.ts): a path out of
 * it or into the runner's `.swm/` is PathEscape, a NUL byte or an over-long name or path InvalidParams.
 */
export function checkInputPath(path: string): void {
  const problem = jobPathProblem(path);
  if (!problem) return;
  const code = problem.kind === 'malformed' ? ErrorCode.InvalidParams : ErrorCode.PathEscape;
  throw new RpcError(code, `input "${quotedPath(path)}" ${problem.reason}`);
}

/** An input file opened for a stream: bytes from `received` on go to `file`. */
export interface OpenedInput {
  declared: InputFile;
  path: string;
  file: FileHandle;
  /** Bytes already there (the stream starts at or before this offset). */
  received: number;
}

/**
 * A job's declared inputs as they arrive from its terminal, under spool/jobs/<id>/inputs/. Chunks may be
 * written at any offset up to what has arrived (so an interrupted upload resumes); commit checks every
 * file's size and SHA-256 before the job is released to the scheduler.
 */
export class JobInputs {
  constructor(
    private readonly jobDir: string,
    private readonly declared: InputFile[],
    private readonly digests: InputDigests,
  ) {}

  private pathOf(relative: string): { file: InputFile; path: string } {
    const file = this.declared.find((f) => f.path === relative);
    if (!file) throw new RpcError(ErrorCode.NotFound, `input "${relative}" was not declared at submit`);
    checkInputPath(relative);
    const root = resolve(this.jobDir, 'inputs');
    const path = resolve(root, relative);
    if (!path.startsWith(root + sep)) throw new RpcError(ErrorCode.PathEscape, `input path "${relative}" escapes the job directory`);
    return { file, path };
  }

  received(relative: string): number {
    const { path } = this.pathOf(relative);
    return existsSync(path) ? statSync(path).size : 0;
  }

  status(): { path: string; size: number; received: number }[] {
    return this.declared.map((f) => ({ path: f.path, size: f.size, received: this.received(f.path) }));
  }

  /** Write a chunk at `offset`; offsets past what has arrived would leave a hole and are refused. */
  write(relative: string, offset: number, data: Buffer): number {
    const { file, path } = this.pathOf(relative);
    if (offset + data.length > file.size)
      throw new RpcError(ErrorCode.TooLarge, `input "${relative}": ${offset + data.length} bytes exceed its declared size ${file.size}`);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const fd = openSync(path, existsSync(path) ? 'r+' : 'w', 0o600);
    this.digests.forget(path);
    try {
      const size = fstatSync(fd).size;
      if (offset > size) throw new RpcError(ErrorCode.Conflict, `input "${relative}": offset ${offset} is past the ${size} bytes received`);
      writeSync(fd, data, 0, data.length, offset);
      if (offset + data.length < size && offset + data.length === file.size) ftruncateSync(fd, file.size);
      return Math.max(size, offset + data.length);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Open a declared input to receive it from `offset` (default: what has arrived). An offset past what has
   * arrived would leave a hole and is refused. The file is created if it is not there yet.
   */
  async openForStream(relative: string, offset?: number): Promise<OpenedInput> {
    const { file: declared, path } = this.pathOf(relative);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const file = await open(path, existsSync(path) ? 'r+' : 'w+', 0o600);
    try {
      const received = (await file.stat()).size;
      const from = offset ?? Math.min(received, declared.size);
      if (from > received) throw new RpcError(ErrorCode.Conflict, `input "${relative}": offset ${from} is past the ${received} bytes received`);
      if (from > declared.size) throw new RpcError(ErrorCode.TooLarge, `input "${relative}": offset ${from} exceeds its declared size ${declared.size}`);
      if (received > declared.size) await file.truncate(declared.size);
      this.digests.forget(path);
      return { declared, path, file, received: Math.min(received, declared.size) };
    } catch (error) {
      await file.close();
      throw error;
    }
  }


  /** Verify every declared file is complete and intact; fsync them. Throws Integrity naming the first bad one. */
  async verify(): Promise<void> {
    for (const file of this.declared) {
      const { path } = this.pathOf(file.path);
      if (file.size === 0 && !existsSync(path)) {
        // Nothing to send: an empty input arrives as its declaration alone.
        mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
        closeSync(openSync(path, 'w', 0o600));
      }
      const info = existsSync(path) ? statSync(path) : null;
      const size = info?.size ?? -1;
      if (size !== file.size)
        throw new RpcError(ErrorCode.Integrity, `input "${file.path}" is incomplete: ${Math.max(size, 0)} of ${file.size} bytes received`);
      let digest = this.digests.known(path, size, info!.mtimeMs);
      if (digest === null) {
        const hash = createHash('sha256');
        for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
        digest = hash.digest('hex');
      }
      if (digest !== file.sha256) throw new RpcError(ErrorCode.Integrity, `input "${file.path}" is corrupt: SHA-256 ${digest}, expected ${file.sha256}`);
      const fd = openSync(path, 'r');
      fsyncSync(fd);
      closeSync(fd);
      this.digests.forget(path);
    }
  }
}

export const inputsRoot = (jobDir: string): string => join(jobDir, 'inputs');
