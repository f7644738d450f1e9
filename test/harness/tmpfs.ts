import { execFileSync } from 'node:child_process';
import { closeSync, cpSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/** Why a real full disk cannot be made here, or null when it can (mounting a tmpfs needs root). */
export function cannotMountTmpfs(): string | null {
  if (process.platform !== 'linux') return `tmpfs mounts need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root (run the tests as root for a real full disk)';
  return null;
}

/** A small tmpfs mounted on a directory: a disk that really fills up. */
export class Tmpfs {
  private mounted = false;

  private constructor(readonly dir: string) {}

  /** Mount a tmpfs of `size` (as mount(8) reads it: "20m") on `dir`, which must exist. */
  static mount(dir: string, size: string): Tmpfs {
    const tmpfs = new Tmpfs(dir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
    tmpfs.mounted = true;
    return tmpfs;
  }

  /** Put the contents of `dir` on a fresh tmpfs mounted on `dir` itself (modes kept). */
  static moveOnto(dir: string, size: string): Tmpfs {
    const staging = `${dir}.staging`;
    renameSync(dir, staging);
    mkdirSync(dir, { mode: 0o700 });
    const tmpfs = Tmpfs.mount(dir, size);
    try {
      cpSync(staging, dir, { recursive: true });
    } catch (error) {
      tmpfs.unmount();
      throw error;
    }
    rmSync(staging, { recursive: true, force: true });
    return tmpfs;
  }

  /** Grow (or shrink) the file system in place: space freed without touching a file. */
  resize(size: string): void {
    execFileSync('mount', ['-o', `remount,size=${size}`, this.dir]);
  }

  /**
   * Write `path` until the disk refuses another byte: what another program filling the disk looks like.
   * (A file that already ends inside a block can still grow to that block's end: that is how disks are.)
   */
  fill(path: string): void {
    const fd = openSync(path, 'a');
    try {
      for (const size of [1024 * 1024, 64 * 1024, 4096, 1]) {
        const chunk = Buffer.alloc(size, 0x2e);
        try {
          for (;;) writeSync(fd, chunk);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  /** Unmount (lazily if a process still holds a file there); safe to call twice or after a failed mount. */
  unmount(): void {
    if (!this.mounted) return;
    try {
      execFileSync('umount', [this.dir], { stdio: 'ignore' });
    } catch {
      execFileSync('umount', ['-l', this.dir], { stdio: 'ignore' });
    }
    this.mounted = false;
  }
}
