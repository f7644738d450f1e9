import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { RelativePath } from '../terminal-protocol/terminal-methods.js';
import { CliError } from './exit-codes.js';
import { globBase, hasGlobMagic, matchesGlob, normalizeRelative } from '../terminal-protocol/path-patterns.js';

/**
 * The local files a job takes as inputs. Each keeps its path relative to the directory `swm` runs in,
 * because that is the path the job script uses; a file outside that directory (by `..`, an absolute path
 * or a symbolic link) has no such path and is refused.
 */
export interface InputSource {
  /** Relative, `/`-separated: the path the job sees. */
  path: string;
  absolute: string;
  size: number;
}

export interface LocalInput extends InputSource {
  sha256: string;
}

/** The path an input keeps, relative to `cwd`; refuses anything that lies outside it. */
export function inputPathFor(cwd: string, spec: string): string {
  const absolute = resolve(cwd, spec);
  const rel = relative(cwd, absolute);
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel))
    throw new CliError(
      `input "${spec}" is outside the current directory: inputs keep their path relative to where swm runs, so run swm from a directory that contains them`,
    );
  return rel.split(sep).join('/');
}

const within = (root: string, path: string): boolean => path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);

class InputCollector {
  private readonly found = new Map<string, InputSource>();

  constructor(
    private readonly cwd: string,
    private readonly realCwd: string,
  ) {}

  get inputs(): InputSource[] {
    return [...this.found.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** A file or a directory named by the user (or by the script). */
  async add(spec: string): Promise<void> {
    if (hasGlobMagic(spec)) return this.addPattern(spec);
    const rel = inputPathFor(this.cwd, spec);
    const absolute = resolve(this.cwd, rel);
    let info;
    try {
      info = await stat(absolute);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CliError(`input "${spec}" does not exist`);
      throw new CliError(`cannot read input "${spec}": ${(error as Error).message}`);
    }
    await this.checkInside(spec, absolute);
    if (info.isDirectory()) await this.walk(rel, absolute, () => true);
    else this.addFile(spec, rel, absolute, info);
  }

  /** `data/*.csv`: walk from the pattern's fixed directory and keep what matches. */
  private async addPattern(spec: string): Promise<void> {
    const pattern = isAbsolute(spec) ? inputPathFor(this.cwd, spec) : normalizeRelative(spec);
    const base = globBase(pattern);
    inputPathFor(this.cwd, base || '.');
    const absolute = resolve(this.cwd, base);
    let info;
    try {
      info = await stat(absolute);
    } catch {
      throw new CliError(`input pattern "${spec}" matches no file`);
    }
    await this.checkInside(spec, absolute);
    const matched = info.isDirectory() ? await this.walk(base, absolute, (path) => matchesGlob(path, pattern)) : 0;
    if (matched === 0) throw new CliError(`input pattern "${spec}" matches no file`);
  }

  private async checkInside(spec: string, absolute: string): Promise<string> {
    const real = await realpath(absolute);
    if (!within(this.realCwd, real))
      throw new CliError(`input "${spec}" leads to ${real} through a symbolic link, outside the current directory`);
    return real;
  }

  private addFile(spec: string, rel: string, absolute: string, info: { isFile(): boolean; size: number }): void {
    if (!info.isFile()) throw new CliError(`input "${spec}" is not a regular file or directory`);
    const checked = RelativePath.safeParse(rel);
    if (!checked.success) throw new CliError(`input "${spec}" cannot be sent as "${rel}": ${checked.error.issues[0]?.message}`);
    this.found.set(rel, { path: rel, absolute, size: info.size });
  }

  /** Adds the files below a directory that `keep` accepts; returns how many it accepted. */
  private async walk(rel: string, absolute: string, keep: (path: string) => boolean, ancestors = new Set<string>()): Promise<number> {
    const real = await realpath(absolute);
    if (ancestors.has(real)) throw new CliError(`input "${rel}" is a symbolic link to a directory that contains it (a cycle)`);
    ancestors.add(real);
    const entries = await readdir(absolute, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let kept = 0;
    for (const entry of entries) {
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      const childAbs = join(absolute, entry.name);
      const info = await stat(childAbs).catch(() => null);
      if (!info) throw new CliError(`input "${childRel}" vanished or is a broken symbolic link`);
      if (entry.isSymbolicLink()) await this.checkInside(childRel, childAbs);
      if (info.isDirectory()) kept += await this.walk(childRel, childAbs, keep, ancestors);
      else if (keep(childRel)) {
        this.addFile(childRel, childRel, childAbs, info);
        kept++;
      }
    }
    ancestors.delete(real);
    return kept;
  }
}

/**
 * Resolves `--input` values and `input-files` entries (files, directories walked recursively, glob
 * patterns) against `cwd` into a sorted list without duplicates.
 */
export async function collectInputs(specs: readonly string[], cwd: string): Promise<InputSource[]> {
  const collector = new InputCollector(cwd, await realpath(cwd));
  for (const spec of specs) await collector.add(spec);
  return collector.inputs;
}

/** SHA-256 of a file, streamed (never the whole file in memory); reports bytes as they are read. */
export function sha256File(path: string, onBytes?: (n: number) => void): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256');
    const stream = createReadStream(path, { highWaterMark: 1024 * 1024 });
    stream.on('data', (chunk) => {
      hash.update(chunk);
      onBytes?.(chunk.length);
    });
    stream.on('error', (error) => reject(new CliError(`cannot read input ${path}: ${error.message}`)));
    stream.on('end', () => resolvePromise(hash.digest('hex')));
  });
}

/** Hashes every input; a file whose size changed since it was listed is refused (it is being written). */
export async function hashInputs(sources: readonly InputSource[], onBytes?: (n: number) => void): Promise<LocalInput[]> {
  const hashed: LocalInput[] = [];
  for (const source of sources) {
    const sha256 = await sha256File(source.absolute, onBytes);
    const now = await stat(source.absolute);
    if (now.size !== source.size) throw new CliError(`input "${source.path}" changed size while being read: is it still being written?`);
    hashed.push({ ...source, sha256 });
  }
  return hashed;
}
