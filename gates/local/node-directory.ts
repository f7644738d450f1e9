import { lstat, mkdir, readlink, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';

/** A client path that leaves the node directory (lexically, or through a symlink). */
export class PathEscapeError extends Error {
  override name = 'PathEscapeError';
  constructor(readonly path: string) {
    super(`${path}: outside the node directory`);
  }
}

const MAX_SYMLINK_HOPS = 40;

/** Whether `candidate` (absolute, normalised) is `root` or lies below it. */
export const isInside = (root: string, candidate: string): boolean => candidate === root || candidate.startsWith(root.endsWith(sep) ? root : root + sep);

/**
 * Where a client path points, before symlinks: relative paths start at the node directory, absolute
 * paths are taken as they are; null when the result is outside the node directory. Pure.
 */
export function resolveLexically(root: string, clientPath: string): string | null {
  if (clientPath.includes('\0')) return null;
  const candidate = resolve(root, clientPath === '' ? '.' : clientPath);
  return isInside(root, candidate) ? candidate : null;
}

const isMissing = (error: unknown): boolean => (error as NodeJS.ErrnoException)?.code === 'ENOENT';

/**
 * The directory a node's processes and file transfers are confined to. Every path a client names is
 * resolved here, and refused when it, or a symlink along it, leads outside. (A symlink swapped in between
 * the check and the use can still race it: the node runs as the gate's user, so this confines honest
 * clients' mistakes and path tricks over SFTP, not code already running on the node.)
 */
export class NodeDirectory {
  private constructor(
    /** The directory's real path (no symlinks), which confined paths are compared against. */
    readonly root: string,
  ) {}

  static async open(dir: string): Promise<NodeDirectory> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new NodeDirectory(await realpath(dir));
  }

  /**
   * The real path a client path designates. With `followLast`, a symlink as the last component is
   * followed (open, stat); without, the link itself is meant (lstat, remove, rename). Missing trailing
   * components are allowed (they are about to be created). Throws PathEscapeError.
   */
  async resolve(clientPath: string, options: { followLast: boolean }): Promise<string> {
    const lexical = resolveLexically(this.root, clientPath);
    if (lexical === null) throw new PathEscapeError(clientPath);
    const real = options.followLast ? await this.realPathOf(lexical, 0) : await this.realPathOfLink(lexical);
    if (!isInside(this.root, real)) throw new PathEscapeError(clientPath);
    return real;
  }

  /** The real path of the entry itself (its parent resolved, its own name kept). */
  private async realPathOfLink(path: string): Promise<string> {
    if (path === this.root) return path;
    return join(await this.realPathOf(dirname(path), 0), basename(path));
  }

  /** realpath(3), except that missing components are kept as they are, and dangling links followed. */
  private async realPathOf(path: string, hops: number): Promise<string> {
    if (hops > MAX_SYMLINK_HOPS) throw Object.assign(new Error(`${path}: too many levels of symbolic links`), { code: 'ELOOP' });
    try {
      return await realpath(path);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
    const parent = dirname(path);
    if (parent === path) return path;
    const realParent = await this.realPathOf(parent, hops);
    const own = join(realParent, basename(path));
    // realpath failed: either the entry is missing, or it is a link to something missing (where a
    // create would land, so that target is checked too).
    const stat = await lstat(own).catch((error: unknown) => {
      if (isMissing(error)) return null;
      throw error;
    });
    if (!stat?.isSymbolicLink()) return own;
    const target = await readlink(own);
    return this.realPathOf(isAbsolute(target) ? target : resolve(realParent, target), hops + 1);
  }
}
