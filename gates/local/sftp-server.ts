import { lstat, mkdir, open, readdir, readlink, rename, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import ssh2 from 'ssh2';
import type { Attributes, InputAttributes, SFTPWrapper } from 'ssh2';
import { PathEscapeError, type NodeDirectory } from './node-directory.js';
import { coalesceWrites } from '../../terminal-protocol/streams.js';
import { applyAttributes, attributesOf, fileTarget, longnameOf, openFlags, pathTarget, requestedMode } from './sftp-attributes.js';

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

/** Largest READ answered in one piece (clients ask for 32-256 KiB; the rest is read in later requests). */
const MAX_READ_BYTES = 256 * 1024;
/** Directory entries per READDIR answer. */
const READDIR_BATCH = 128;

interface OpenFile {
  kind: 'file';
  file: FileHandle;
  /** Opened with APPEND: writes must reach the file in request order, so they run one at a time. */
  append: boolean;
  /** The tail of this handle's work still running: appends queue behind it, CLOSE waits for it. */
  inflight: Set<Promise<unknown>>;
  lastWrite: Promise<unknown>;
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

/** The SFTP status a failure maps to. Pure. */
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

/**
 * Answers leave in the order the requests came, while the work behind them overlaps. OpenSSH's
 * sftp-server answers in order and its client relies on it: with reordered WRITE acknowledgements, scp
 * truncates the upload at the last in-order one.
 */
export class ReplyQueue {
  private readonly waiting: Array<{ reply: (() => void) | null }> = [];

  /** Reserve the next place in line; the returned function hands in that place's reply. */
  reserve(): (reply: () => void) => void {
    const place: { reply: (() => void) | null } = { reply: null };
    this.waiting.push(place);
    return (reply) => {
      place.reply = reply;
      while (this.waiting.length > 0 && this.waiting[0]!.reply) this.waiting.shift()!.reply!();
    };
  }
}

const handleBytes = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
};

type Reply = () => void;

/**
 * exit-status 0 before the channel closes, as sshd sends when its sftp-server exits: OpenSSH's ssh exits
 * 255 without it, and scp reports the copy as failed. ssh2's SFTP object has no public way to send it.
 */
function reportSubsystemExit(sftp: SFTPWrapper): void {
  const channel = sftp as unknown as { outgoing?: { id: number; state: string }; _protocol?: { exitStatus(id: number, status: number): void } };
  if (channel.outgoing?.state === 'open') channel._protocol?.exitStatus(channel.outgoing.id, 0);
}

/**
 * The SFTP subsystem of a node, confined to its directory. Requests run concurrently (a client keeping
 * many reads or writes in flight has them served together: the data-staging path), their answers go
 * out in request order. Paths go through NodeDirectory; open handles need no further checks.
 */
/** Connections whose socket already gathers its writes. */
const coalesced = new WeakSet<object>();

/**
 * ssh2 writes every SSH packet (32 KiB at most) of a READ answer on its own: gather the writes of the
 * connection's socket, so that a 256 KiB answer leaves in one system call. The socket is ssh2's (no public
 * handle on it); without it, nothing changes but the speed.
 */
function gatherWrites(sftp: SFTPWrapper): void {
  const connection = (sftp as unknown as { _client?: { _sock?: unknown } })._client;
  const socket = connection?._sock as (import('node:net').Socket & object) | undefined;
  if (!connection || !socket || typeof socket.cork !== 'function' || coalesced.has(connection)) return;
  coalesced.add(connection);
  coalesceWrites(socket);
}

export function serveSftp(sftp: SFTPWrapper, directory: NodeDirectory, logger: Logger): void {
  gatherWrites(sftp);
  const handles = new Map<number, OpenHandle>();
  const replies = new ReplyQueue();
  let nextHandle = 1;
  let running = 0;
  let clientDone = false;
  let closed = false;

  const register = (open: OpenHandle): Buffer => {
    // A file opened after the channel closed would never see its CLOSE.
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

  // The client sent EOF: it asks nothing more, so the channel closes once every answer is out (clients
  // such as OpenSSH's scp wait for that close).
  const closeWhenAnswered = () => {
    if (!clientDone || running !== 0) return;
    reportSubsystemExit(sftp);
    sftp.end();
  };

  /** Run one request; its reply (or the status its failure maps to) goes out in order. */
  const answer = (id: number, work: () => Promise<Reply>): void => {
    const deliver = replies.reserve();
    running++;
    work()
      .catch((error: unknown): Reply => {
        const { status, message } = statusOf(error);
        if (status === STATUS_CODE.FAILURE) logger.debug({ err: error }, 'sftp request failed');
        return () => sftp.status(id, status, message);
      })
      .then((reply) => {
        running--;
        deliver(reply);
        closeWhenAnswered();
      });
  };
  /** As answer, on an open file: counted so that CLOSE waits for it. */
  const answerOnFile = (id: number, handle: Buffer, work: (open: OpenFile) => Promise<Reply>): void =>
    answer(id, async () => {
      const open = fileOf(handle);
      const running = work(open);
      open.inflight.add(running);
      try {
        return await running;
      } finally {
        open.inflight.delete(running);
      }
    });

  const follow = (path: string) => directory.resolve(path, { followLast: true });
  const noFollow = (path: string) => directory.resolve(path, { followLast: false });
  const ok = (id: number): Reply => () => sftp.status(id, STATUS_CODE.OK);
  const nameReply = (id: number, name: string): Reply => () => sftp.name(id, [{ filename: name, longname: name, attrs: {} as Attributes }]);

  sftp.on('OPEN', (id: number, filename: string, pflags: number, attrs: InputAttributes) =>
    answer(id, async () => {
      const file = await open(await follow(filename), openFlags(pflags), requestedMode(attrs, 0o666));
      const handle = register({ kind: 'file', file, append: (pflags & OPEN_MODE.APPEND) !== 0, inflight: new Set(), lastWrite: Promise.resolve() });
      return () => sftp.handle(id, handle);
    }),
  );

  sftp.on('READ', (id: number, handle: Buffer, offset: number, length: number) =>
    answerOnFile(id, handle, async ({ file }) => {
      const buffer = Buffer.allocUnsafe(Math.min(length, MAX_READ_BYTES));
      const { bytesRead } = await file.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) return () => sftp.status(id, STATUS_CODE.EOF);
      const data = bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      return () => sftp.data(id, data);
    }),
  );

  sftp.on('WRITE', (id: number, handle: Buffer, offset: number, data: Buffer) =>
    answerOnFile(id, handle, async (open) => {
      const writeAll = async () => {
        let written = 0;
        while (written < data.length) {
          const { bytesWritten } = await open.file.write(data, written, data.length - written, offset + written);
          written += bytesWritten;
        }
      };
      if (open.append) {
        const write = open.lastWrite.then(writeAll, writeAll);
        open.lastWrite = write.catch(() => undefined);
        await write;
      } else await writeAll();
      return ok(id);
    }),
  );

  sftp.on('FSTAT', (id: number, handle: Buffer) =>
    answerOnFile(id, handle, async ({ file }) => {
      const attrs = attributesOf(await file.stat());
      return () => sftp.attrs(id, attrs);
    }),
  );

  sftp.on('FSETSTAT', (id: number, handle: Buffer, attrs: InputAttributes) =>
    answerOnFile(id, handle, async ({ file }) => {
      await applyAttributes(fileTarget(file), attrs);
      return ok(id);
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
      return ok(id);
    }),
  );

  sftp.on('STAT', (id: number, path: string) =>
    answer(id, async () => {
      const attrs = attributesOf(await stat(await follow(path)));
      return () => sftp.attrs(id, attrs);
    }),
  );

  sftp.on('LSTAT', (id: number, path: string) =>
    answer(id, async () => {
      const attrs = attributesOf(await lstat(await noFollow(path)));
      return () => sftp.attrs(id, attrs);
    }),
  );

  sftp.on('SETSTAT', (id: number, path: string, attrs: InputAttributes) =>
    answer(id, async () => {
      await applyAttributes(pathTarget(await follow(path)), attrs);
      return ok(id);
    }),
  );

  sftp.on('OPENDIR', (id: number, path: string) =>
    answer(id, async () => {
      const real = await follow(path);
      const names = await readdir(real);
      const handle = register({ kind: 'dir', path: real, names, next: 0 });
      return () => sftp.handle(id, handle);
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
        if (present.length > 0) return () => sftp.name(id, present);
      }
      return () => sftp.status(id, STATUS_CODE.EOF);
    }),
  );

  sftp.on('MKDIR', (id: number, path: string, attrs: InputAttributes) =>
    answer(id, async () => {
      await mkdir(await noFollow(path), { mode: requestedMode(attrs, 0o777) });
      return ok(id);
    }),
  );

  sftp.on('RMDIR', (id: number, path: string) =>
    answer(id, async () => {
      const real = await noFollow(path);
      if (real === directory.root) throw new SftpStatus(STATUS_CODE.PERMISSION_DENIED, 'the node directory cannot be removed');
      await rmdir(real);
      return ok(id);
    }),
  );

  sftp.on('REMOVE', (id: number, path: string) =>
    answer(id, async () => {
      await unlink(await noFollow(path));
      return ok(id);
    }),
  );

  sftp.on('RENAME', (id: number, oldPath: string, newPath: string) =>
    answer(id, async () => {
      const [from, to] = await Promise.all([noFollow(oldPath), noFollow(newPath)]);
      if (from === directory.root || to === directory.root) throw new SftpStatus(STATUS_CODE.PERMISSION_DENIED, 'the node directory cannot be renamed');
      // SFTP v3: renaming onto an existing name fails (as OpenSSH's server does without posix-rename).
      if (await lstat(to).catch(() => null)) throw new SftpStatus(STATUS_CODE.FAILURE, 'File exists');
      await rename(from, to);
      return ok(id);
    }),
  );

  sftp.on('REALPATH', (id: number, path: string) =>
    answer(id, async () => nameReply(id, await follow(path))),
  );

  sftp.on('READLINK', (id: number, path: string) =>
    answer(id, async () => nameReply(id, await readlink(await noFollow(path)))),
  );

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
