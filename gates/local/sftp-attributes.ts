import { constants, type Stats } from 'node:fs';
import { chmod, chown, stat, truncate, utimes, type FileHandle } from 'node:fs/promises';
import ssh2 from 'ssh2';
import type { Attributes, InputAttributes } from 'ssh2';

const { OPEN_MODE } = ssh2.utils.sftp;

/** open(2) flags for SFTP pflags, as OpenSSH's sftp-server maps them. Pure. */
export function openFlags(pflags: number): number {
  const read = (pflags & OPEN_MODE.READ) !== 0;
  const write = (pflags & OPEN_MODE.WRITE) !== 0;
  let flags = read && write ? constants.O_RDWR : write ? constants.O_WRONLY : constants.O_RDONLY;
  if (pflags & OPEN_MODE.APPEND) flags |= constants.O_APPEND;
  if (pflags & OPEN_MODE.CREAT) flags |= constants.O_CREAT;
  if (pflags & OPEN_MODE.TRUNC) flags |= constants.O_TRUNC;
  if (pflags & OPEN_MODE.EXCL) flags |= constants.O_EXCL;
  return flags;
}

/** Permission bits a client asked for (OPEN, MKDIR), or the default. Pure. */
export const requestedMode = (attrs: InputAttributes | undefined, fallback: number): number =>
  attrs?.mode === undefined ? fallback : (typeof attrs.mode === 'string' ? parseInt(attrs.mode, 8) : attrs.mode) & 0o7777;

export const attributesOf = (s: Stats): Attributes => ({
  mode: s.mode,
  uid: s.uid,
  gid: s.gid,
  size: s.size,
  atime: Math.floor(s.atimeMs / 1000),
  mtime: Math.floor(s.mtimeMs / 1000),
});

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The `ls -l` line SFTP v3 clients print for a directory entry. Pure. */
export function longnameOf(name: string, s: Stats): string {
  const type = s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : s.isFIFO() ? 'p' : s.isSocket() ? 's' : s.isCharacterDevice() ? 'c' : s.isBlockDevice() ? 'b' : '-';
  const perms = [...'rwxrwxrwx'].map((c, i) => (s.mode & (1 << (8 - i)) ? c : '-')).join('');
  const t = s.mtime;
  const when = `${MONTHS[t.getMonth()]} ${String(t.getDate()).padStart(2)} ${String(t.getHours()).padStart(2, '0')}:${String(t.getMinutes()).padStart(2, '0')}`;
  return `${type}${perms} ${String(s.nlink).padStart(3)} ${String(s.uid).padEnd(8)} ${String(s.gid).padEnd(8)} ${String(s.size).padStart(8)} ${when} ${name}`;
}

/** What SETSTAT and FSETSTAT change: a path or an open file. */
export interface AttributeTarget {
  chmod(mode: number): Promise<void>;
  chown(uid: number, gid: number): Promise<void>;
  truncate(size: number): Promise<void>;
  utimes(atime: number, mtime: number): Promise<void>;
  stat(): Promise<Stats>;
}

export const pathTarget = (path: string): AttributeTarget => ({
  chmod: (mode) => chmod(path, mode),
  chown: (uid, gid) => chown(path, uid, gid),
  truncate: (size) => truncate(path, size),
  utimes: (atime, mtime) => utimes(path, atime, mtime),
  stat: () => stat(path),
});

export const fileTarget = (file: FileHandle): AttributeTarget => ({
  chmod: (mode) => file.chmod(mode),
  chown: (uid, gid) => file.chown(uid, gid),
  truncate: (size) => file.truncate(size),
  utimes: (atime, mtime) => file.utimes(atime, mtime),
  stat: () => file.stat(),
});

const seconds = (t: number | Date): number => (t instanceof Date ? t.getTime() / 1000 : t);

/** Apply SETSTAT attributes: size, permissions, times, then owner (only when it changes). */
export async function applyAttributes(target: AttributeTarget, attrs: InputAttributes): Promise<void> {
  if (attrs.size !== undefined) await target.truncate(attrs.size);
  if (attrs.mode !== undefined) await target.chmod(requestedMode(attrs, 0));
  if (attrs.atime !== undefined || attrs.mtime !== undefined) {
    const current = attrs.atime === undefined || attrs.mtime === undefined ? await target.stat() : null;
    await target.utimes(
      attrs.atime !== undefined ? seconds(attrs.atime) : current!.atimeMs / 1000,
      attrs.mtime !== undefined ? seconds(attrs.mtime) : current!.mtimeMs / 1000,
    );
  }
  if (attrs.uid !== undefined && attrs.gid !== undefined) {
    const current = await target.stat();
    if (current.uid !== attrs.uid || current.gid !== attrs.gid) await target.chown(attrs.uid, attrs.gid);
  }
}
