import { constants, type Stats } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readdir, readlink, rename, rmdir, stat, truncate, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import ssh2 from 'ssh2';
import type { Attributes, InputAttributes, SFTPWrapper } from 'ssh2';
import { PathEscapeError, type NodeDirectory } from './node-directory.js';

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

/** Largest READ answered in one piece (clients ask for 32-256 KiB; the rest is read in later requests). */
const MAX_READ_BYTES = 256 * 1024;
/** Directory entries per READDIR answer. */
const READDIR_BATCH = 128;

interface OpenFile {
  kind: 'file';
  file: FileHandle;
  /** Requests on this handle still running: CLOSE waits for them. */
  inflight: Set<Promise<unknown>>;
}
interface OpenDirectory {
  kind: 'dir';
  path: string;
  names: string[];
  next: number;
}
type OpenHandle = OpenFile | OpenDirectory;

/** An SFTP failure with the status the client receives. */
class SftpStatus extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The SFTP status a file system error maps to. Pure. */
export function statusOf(error: unknown): { status: number; message: string } {
  if (error instanceof SftpStatus) return { status: error.status, message: error.message };
  if (error instanceof PathEscapeError) return { status: STATUS_CODE.PERMISSION_DENIED, message: error.message };
  const code = (error as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return { status: STATUS_CODE.NO_SUCH_FILE, message: 'No such file' };
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return { status: STATUS_CODE.PERMISSION_DENIED, message: 'Permission denied' };
    default:
      return { status: STATUS_CODE.FAILURE, message: code ?? (error as Error)?.message ?? 'Failure' };
  }
}

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
interface AttributeTarget {
  chmod(mode: number): Promise<void>;
  chown(uid: number, gid: number): Promise<void>;
  truncate(size: number): Promise<void>;
  utimes(atime: number, mtime: number): Promise<void>;
  stat(): Promise<Stats>;
}

const pathTarget = (path: string): AttributeTarget => ({
  chmod: (mode) => chmod(path, mode),
  chown: (uid, gid) => chown(path, uid, gid),
  truncate: (size) => truncate(path, size),
  utimes: (atime, mtime) => utimes(path, atime, mtime),
  stat: () => stat(path),
});

const fileTarget = (file: FileHandle): AttributeTarget => ({
  chmod: (mode) => file.chmod(mode),
  chown: (uid, gid) => file.chown(uid, gid),
  truncate: (size) => file.truncate(size),
  utimes: (atime, mtime) => file.utimes(atime, mtime),
  stat: () => file.stat(),
});

const seconds = (t: number | Date): number => (t instanceof Date ? t.getTime() / 1000 : t);

async function applyAttributes(target: AttributeTarget, attrs: InputAttributes): Promise<void> {
  if (attrs.size !== undefined) await target.truncate(attrs.size);
  if (attrs.mode !== undefined) await target.chmod((typeof attrs.mode === 'string' ? parseInt(attrs.mode, 8) : attrs.mode) & 0o7777);
  if (attrs.atime !== undefined || attrs.mtime !== undefined) {
    const current = attrs.atime === undefined || attrs.mtime === undefined ? await target.stat() : null;
    await target.utimes(attrs.atime !== undefined ? seconds(attrs.atime) : current!.atimeMs / 1000, attrs.mtime !== undefined ? seconds(attrs.mtime) : current!.mtimeMs / 1000);
  }
  if (attrs.uid !== undefined && attrs.gid !== undefined) {
    const current = await target.stat();
    if (current.uid !== attrs.uid || current.gid !== attrs.gid) await target.chown(attrs.uid, attrs.gid);
  }
}

const handleBytes = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
};

/**
 * The SFTP subsystem of a node, confined to its directory. Every request is answered asynchronously and
 * independently, so a client keeping many reads or writes in flight gets them served concurrently (the
 * data-staging path). Paths go through NodeDirectory; handles need no further checks.
 */
export function serveSftp(sftp: SFTPWrapper, directory: NodeDirectory, logger: Logger): void {
  const handles = new Map<number, OpenHandle>();
  let nextHandle = 1;
  let closed = false;

  const register = (open: OpenHandle): Buffer => {
    // A file opened while the channel closed would never see its CLOSE.
    if (closed && open.kind === 'file') void open.file.close().catch(() => undefined);
    const n = nextHandle++;
    handles.set(n, open);
    return handleBytes(n);
  };
  const lookup = (handle: Buffer): OpenHandle => {
    const open = handle.length === 4 ? handles.get(handle.readUInt32BE(0)) : undefined;
    if (!open) throw new SftpStatus(STATUS_CODE.FAILURE, 'Invalid handle');
    return open;
  };
  const fileOf = (handle: Buffer): OpenFile => {
    const open = lookup(handle);
    if (open.kind !== 'file') throw new SftpStatus(STATUS_CODE.FAILURE, 'Not a file handle');
    return open;
  };

  let running = 0;
  let clientDone = false;
  const closeWhenAnswered = () => {
    if (clientDone && running === 0) sftp.end();
  };

  /** Run one request; any failure becomes its status answer. */
  const answer = (id: number, work: () => Promise<void>): void => {
    running++;
    work()
      .catch((error: unknown) => {
        const { status, message } = statusOf(error);
        if (status === STATUS_CODE.FAILURE) logger.debug({ err: error }, 'sftp request failed');
        sftp.status(id, status, message);
      })
      .finally(() => {
        running--;
        closeWhenAnswered();
      });
  };
  /** As answer, counted against the file handle so CLOSE can wait for it. */
  const answerOnFile = (id: number, handle: Buffer, work: (open: OpenFile) => Promise<void>): void => {
    answer(id, async () => {
      const open = fileOf(handle);
      const running = work(open);
      open.inflight.add(running);
      try {
        await running;
      } finally {
        open.inflight.delete(running);
      }
    });
  };
  const follow = (path: string) => directory.resolve(path, { followLast: true });
  const noFollow = (path: string) => directory.resolve(path, { followLast: false });
  const ok = (id: number) => sftp.status(id, STATUS_CODE.OK);

  sftp.on('OPEN', (id: number, filename: string, pflags: number, attrs: InputAttributes) =>
    answer(id, async () => {
      const path = await follow(filename);
      const mode = attrs?.mode !== undefined ? Number(attrs.mode) & 0o7777 : 0o666;
      const file = await open(path, openFlags(pflags), mode);
      sftp.handle(id, register({ kind: 'file', file, inflight: new Set() }));
    }),
  );

  sftp.on('READ', (id: number, handle: Buffer, offset: number, length: number) =>
    answerOnFile(id, handle, async ({ file }) => {
      const buffer = Buffer.allocUnsafe(Math.min(length, MAX_READ_BYTES));
      const { bytesRead } = await file.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) sftp.status(id, STATUS_CODE.EOF);
      else sftp.data(id, bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
    }),
  );

  sftp.on('WRITE', (id: number, handle: Buffer, offset: number, data: Buffer) =>
    answerOnFile(id, handle, async ({ file }) => {
      let written = 0;
      while (written < data.length) {
        const { bytesWritten } = await file.write(data, written, data.length - written, offset + written);
        written += bytesWritten;
      }
      ok(id);
    }),
  );

  sftp.on('FSTAT', (id: number, handle: Buffer) =>
    answerOnFile(id, handle, async ({ file }) => sftp.attrs(id, attributesOf(await file.stat()))),
  );

  sftp.on('FSETSTAT', (id: number, handle: Buffer, attrs: InputAttributes) =>
    answerOnFile(id, handle, async ({ file }) => {
      await applyAttributes(fileTarget(file), attrs);
      ok(id);
    }),
  );

  sftp.on('CLOSE', (id: number, handle: Buffer) =>
    answer(id, async () => {
      const open = lookup(handle);
      handles.delete(handle.readUInt32BE(0));
      if (open.kind === 'file') {
        await Promise.allSettled([...open.inflight]);
        await open.file.close();
      }
      ok(id);
    }),
  );

  sftp.on('STAT', (id: number, path: string) => answer(id, async () => sftp.attrs(id, attributesOf(await stat(await follow(path))))));
  sftp.on('LSTAT', (id: number, path: string) => answer(id, async () => sftp.attrs(id, attributesOf(await lstat(await noFollow(path))))));

  sftp.on('SETSTAT', (id: number, path: string, attrs: InputAttributes) =>
    answer(id, async () => {
      await applyAttributes(pathTarget(await follow(path)), attrs);
      ok(id);
    }),
  );

  sftp.on('OPENDIR', (id: number, path: string) =>
    answer(id, async () => {
      const real = await follow(path);
      const names = await readdir(real);
      sftp.handle(id, register({ kind: 'dir', path: real, names, next: 0 }));
    }),
  );

  sftp.on('READDIR', (id: number, handle: Buffer) =>
    answer(id, async () => {
      const open = lookup(handle);
      if (open.kind !== 'dir') throw new SftpStatus(STATUS_CODE.FAILURE, 'Not a directory handle');
      while (open.next < open.names.length) {
        const batch = open.names.slice(open.next, open.next + READDIR_BATCH);
        open.next += batch.length;
        const entries = await Promise.all(
          batch.map(async (filename) => {
            const s = await lstat(join(open.path, filename)).catch(() => null); // removed since OPENDIR
            return s && { filename, longname: longnameOf(filename, s), attrs: attributesOf(s) };
          }),
        );
        const present = entries.filter((e) => e !== null);
        if (present.length > 0) {
          sftp.name(id, present);
          return;
        }
      }
      sftp.status(id, STATUS_CODE.EOF);
    }),
  );

  sftp.on('MKDIR', (id: number, path: string, attrs: InputAttributes) =>
    answer(id, async () => {
      await mkdir(await noFollow(path), { mode: attrs?.mode !== undefined ? Number(attrs.mode) & 0o7777 : 0o777 });
      ok(id);
    }),
  );

  sftp.on('RMDIR', (id: number, path: string) =>
    answer(id, async () => {
      const real = await noFollow(path);
      if (real === directory.root) throw new SftpStatus(STATUS_CODE.PERMISSION_DENIED, 'the node directory cannot be removed');
      await rmdir(real);
      ok(id);
    }),
  );

  sftp.on('REMOVE', (id: number, path: string) =>
    answer(id, async () => {
      await unlink(await noFollow(path));
      ok(id);
    }),
  );

  sftp.on('RENAME', (id: number, oldPath: string, newPath: string) =>
    answer(id, async () => {
      const [from, to] = await Promise.all([noFollow(oldPath), noFollow(newPath)]);
      if (from === directory.root || to === directory.root) throw new SftpStatus(STATUS_CODE.PERMISSION_DENIED, 'the node directory cannot be renamed');
      // SFTP v3: renaming onto an existing name fails (as OpenSSH's server does without posix-rename).
      const existing = await lstat(to).catch(() => null);
      if (existing) throw new SftpStatus(STATUS_CODE.FAILURE, 'File exists');
      await rename(from, to);
      ok(id);
    }),
  );

  sftp.on('REALPATH', (id: number, path: string) =>
    answer(id, async () => {
      const real = await follow(path);
      sftp.name(id, [{ filename: real, longname: real, attrs: {} as Attributes }]);
    }),
  );

  sftp.on('READLINK', (id: number, path: string) =>
    answer(id, async () => {
      const target = await readlink(await noFollow(path));
      sftp.name(id, [{ filename: target, longname: target, attrs: {} as Attributes }]);
    }),
  );

  // The client sent EOF: it will ask nothing more, so the channel closes once every answer is out
  // (clients such as OpenSSH's scp wait for that close).
  sftp.on('end', () => {
    clientDone = true;
    closeWhenAnswered();
  });
  sftp.on('close', () => {
    closed = true;
    for (const open of handles.values()) if (open.kind === 'file') void open.file.close().catch(() => undefined);
    handles.clear();
  });
  sftp.on('error', (error: Error) => logger.debug({ err: error }, 'sftp channel error'));
}
