import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, openSync, closeSync, writeSync, fstatSync, statSync, existsSync, ftruncateSync, fsyncSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { InputFile } from '../../terminal-protocol/terminal-methods.js';

/**
 * A job's declared inputs as they arrive from its terminal, under spool/jobs/<id>/inputs/. Chunks may be
 * written at any offset up to what has arrived (so an interrupted upload resumes); commit checks every
 * file's size and SHA-256 before the job is released to the scheduler.
 */
export class JobInputs {
  constructor(
    private readonly jobDir: string,
    private readonly declared: InputFile[],
  ) {}

  private pathOf(relative: string): { file: InputFile; path: string } {
    const file = this.declared.find((f) => f.path === relative);
    if (!file) throw new RpcError(ErrorCode.NotFound, `input "${relative}" was not declared at submit`);
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

  /** Verify every declared file is complete and intact; fsync them. Throws Integrity naming the first bad one. */
  async verify(): Promise<void> {
    for (const file of this.declared) {
      const { path } = this.pathOf(file.path);
      const size = existsSync(path) ? statSync(path).size : -1;
      if (size !== file.size)
        throw new RpcError(ErrorCode.Integrity, `input "${file.path}" is incomplete: ${Math.max(size, 0)} of ${file.size} bytes received`);
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
      const digest = hash.digest('hex');
      if (digest !== file.sha256) throw new RpcError(ErrorCode.Integrity, `input "${file.path}" is corrupt: SHA-256 ${digest}, expected ${file.sha256}`);
      const fd = openSync(path, 'r');
      fsyncSync(fd);
      closeSync(fd);
    }
  }
}

export const inputsRoot = (jobDir: string): string => join(jobDir, 'inputs');
