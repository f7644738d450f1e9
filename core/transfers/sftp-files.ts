import type { FileHandle } from 'node:fs/promises';
import type { Attributes, FileEntryWithStats, SFTPWrapper } from 'ssh2';
import ssh2 from 'ssh2';

const { STATUS_CODE } = ssh2.utils.sftp;

/**
 * SFTP file transfers with many requests in flight: a file is cut into blocks, and up to `inflight` blocks
 * travel at once, so a transfer is bound by bandwidth rather than by round trips. Both directions start at
 * an offset, which is how an interrupted transfer resumes instead of starting over.
 */

export interface BlockTransferOptions {
  /** First byte to transfer (what the other side already has). */
  from: number;
  /** Bytes in the file: the transfer ends there. */
  size: number;
  /** Requests in flight at once. */
  inflight?: number;
  /** Bytes per request (capped by what the server accepts). */
  blockBytes?: number;
  signal?: AbortSignal;
  /** Bytes acknowledged by the other side, as they are. */
  onBytes?: (n: number) => void;
  /** Bytes from..upTo are all acknowledged (blocks complete in any order; this only moves forward). */
  onContiguous?: (upTo: number) => void;
}

/** Follows blocks acknowledged in any order and reports how far they are complete without a gap. */
class ContiguousMark {
  private readonly done = new Map<number, number>();
  constructor(
    private mark: number,
    private readonly report?: (upTo: number) => void,
  ) {}
  complete(start: number, length: number): void {
    this.done.set(start, length);
    let moved = false;
    for (let next = this.done.get(this.mark); next !== undefined; next = this.done.get(this.mark)) {
      this.done.delete(this.mark);
      this.mark += next;
      moved = true;
    }
    if (moved) this.report?.(this.mark);
  }
}

const DEFAULT_INFLIGHT = 32;
const DEFAULT_BLOCK = 256 * 1024;

/** An SFTP status error with its numeric code (ssh2 puts it on `code`). */
export const sftpCode = (error: unknown): number | undefined => (error as { code?: number })?.code;
export const isNoSuchFile = (error: unknown): boolean => sftpCode(error) === STATUS_CODE.NO_SUCH_FILE;

/** What ssh2's own SFTP server (the local gate's nodes) accepts per packet, like OpenSSH, without saying so. */
const SSH2JS_REQUEST_BYTES = 256 * 1024 - 2 * 1024;

/**
 * The largest WRITE / READ the server takes in one request. ssh2 learns it from OpenSSH's limits extension
 * (other servers get the 32 KiB the protocol guarantees) and splits larger requests into parts it sends
 * one after the other, which would undo the pipelining. ssh2's own server takes 256 KiB but does not
 * announce it: for it, the client's limits are raised (ssh2 keeps them on the session object).
 */
const limitOf = (sftp: SFTPWrapper, field: '_maxWriteLen' | '_maxReadLen'): number => {
  const session = sftp as unknown as Record<string, unknown> & { _client?: { _protocol?: { _remoteIdentRaw?: unknown } } };
  const ident = session._client?._protocol?._remoteIdentRaw;
  if (typeof ident === 'string' && ident.startsWith('SSH-2.0-ssh2js')) {
    for (const name of ['_maxWriteLen', '_maxReadLen'] as const)
      if (typeof session[name] === 'number' && (session[name] as number) < SSH2JS_REQUEST_BYTES) session[name] = SSH2JS_REQUEST_BYTES;
  }
  const value = session[field];
  return typeof value === 'number' && value > 0 ? value : 32 * 1024;
};

const call = <T>(run: (cb: (error: Error | null | undefined, value?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => run((error, value) => (error ? reject(error) : resolve(value as T))));

export const openRemote = (sftp: SFTPWrapper, path: string, flags: 'r' | 'w' | 'r+', mode = 0o644): Promise<Buffer> =>
  call((cb) => sftp.open(path, flags, { mode }, cb));
export const closeRemote = (sftp: SFTPWrapper, handle: Buffer): Promise<void> => call((cb) => sftp.close(handle, cb));
export const fstatRemote = (sftp: SFTPWrapper, handle: Buffer): Promise<{ size?: number }> => call((cb) => sftp.fstat(handle, cb));
export const lstatRemote = (sftp: SFTPWrapper, path: string) => call<ssh2.Stats>((cb) => sftp.lstat(path, cb));
export const statRemoteEntry = (sftp: SFTPWrapper, path: string) => call<ssh2.Stats>((cb) => sftp.stat(path, cb));
export const realpathRemote = (sftp: SFTPWrapper, path: string): Promise<string> => call((cb) => sftp.realpath(path, cb));
export const readdirRemote = (sftp: SFTPWrapper, path: string): Promise<FileEntryWithStats[]> => call((cb) => sftp.readdir(path, cb));

/** The entries of a remote directory (an empty list when it does not exist). */
export async function listRemote(sftp: SFTPWrapper, path: string): Promise<FileEntryWithStats[]> {
  try {
    return await readdirRemote(sftp, path);
  } catch (error) {
    if (isNoSuchFile(error)) return [];
    throw error;
  }
}

const S_IFMT = 0o170000;
export const isRegular = (attrs: Pick<Attributes, 'mode'>): boolean => (attrs.mode & S_IFMT) === 0o100000;
export const isDirectoryMode = (attrs: Pick<Attributes, 'mode'>): boolean => (attrs.mode & S_IFMT) === 0o040000;
export const isSymlinkMode = (attrs: Pick<Attributes, 'mode'>): boolean => (attrs.mode & S_IFMT) === 0o120000;

class Lanes {
  private active = 0;
  private waiters: Array<() => void> = [];
  constructor(private readonly limit: number) {}
  async take(): Promise<void> {
    while (this.active >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.active++;
  }
  give(): void {
    this.active--;
    this.waiters.shift()?.();
  }
  async idle(): Promise<void> {
    while (this.active > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

const aborted = (signal?: AbortSignal): Error | null => (signal?.aborted ? Object.assign(new Error('transfer aborted'), { name: 'AbortError' }) : null);

/**
 * Write `local` (bytes from..size) into the remote file `remote`, creating it (from 0) or continuing it
 * (from > 0: it must exist with at least `from` bytes). Resolves once every block is acknowledged and the
 * handle closed.
 */
export async function putBlocks(sftp: SFTPWrapper, local: FileHandle, remote: string, o: BlockTransferOptions): Promise<void> {
  const handle = await openRemote(sftp, remote, o.from === 0 ? 'w' : 'r+');
  let failure: Error | null = null;
  try {
    const block = Math.min(o.blockBytes ?? DEFAULT_BLOCK, limitOf(sftp, '_maxWriteLen'));
    const lanes = new Lanes(o.inflight ?? DEFAULT_INFLIGHT);
    const mark = new ContiguousMark(o.from, o.onContiguous);
    // ssh2 copies a WRITE's data into its packet at once, so one read buffer serves every block.
    const buffer = Buffer.allocUnsafe(Math.min(block, Math.max(1, o.size - o.from)));
    for (let at = o.from; at < o.size && !failure; ) {
      await lanes.take();
      failure ??= aborted(o.signal);
      if (failure) {
        lanes.give();
        break;
      }
      const length = Math.min(block, o.size - at);
      const { bytesRead } = await local.read(buffer, 0, length, at);
      if (bytesRead !== length) {
        lanes.give();
        throw Object.assign(new Error(`the local file shrank while being sent (${at + bytesRead} of ${o.size} bytes)`), { code: 'ESHRANK' });
      }
      const position = at;
      sftp.write(handle, buffer, 0, length, position, (error) => {
        if (error) failure ??= error;
        else {
          o.onBytes?.(length);
          mark.complete(position, length);
        }
        lanes.give();
      });
      at += length;
    }
    await lanes.idle();
    if (failure) throw failure;
  } finally {
    await closeRemote(sftp, handle).catch((error: Error) => {
      failure ??= error;
    });
  }
  if (failure) throw failure;
}

/**
 * Read the remote file `remote` (bytes from..size) into `local` at the same offsets. Blocks may arrive in
 * any order; each is written where it belongs. Resolves with the bytes read (less than size - from when the
 * remote file is shorter than expected).
 */
export async function getBlocks(sftp: SFTPWrapper, remote: string, local: FileHandle, o: BlockTransferOptions): Promise<number> {
  const handle = await openRemote(sftp, remote, 'r');
  let failure: Error | null = null;
  let end = o.size;
  let total = 0;
  try {
    const block = Math.min(o.blockBytes ?? DEFAULT_BLOCK, limitOf(sftp, '_maxReadLen'));
    const lanes = new Lanes(o.inflight ?? DEFAULT_INFLIGHT);
    const writes = new Set<Promise<void>>();
    for (let at = o.from; at < end && !failure; at += block) {
      await lanes.take();
      failure ??= aborted(o.signal);
      if (failure || at >= end) {
        lanes.give();
        break;
      }
      const length = Math.min(block, end - at);
      // One block, read until whole: a server may answer a READ with fewer bytes than asked (not only at EOF).
      const fetch = (position: number, want: number): void => {
        sftp.read(handle, Buffer.allocUnsafe(want), 0, want, position, (error, bytesRead, data) => {
          if (error || bytesRead === 0) {
            // EOF: the file is shorter than it was said to be.
            if (!error || sftpCode(error) === STATUS_CODE.EOF) end = Math.min(end, position);
            else failure ??= error;
            lanes.give();
            return;
          }
          const write = writeAll(local, data.subarray(0, bytesRead), position).then(
            () => {
              total += bytesRead;
              o.onBytes?.(bytesRead);
            },
            (e: Error) => {
              failure ??= e;
            },
          );
          writes.add(write);
          void write.finally(() => writes.delete(write));
          // The lane is held until the block is on disk: a slow disk slows the reads, memory stays flat.
          if (bytesRead < want && !failure) fetch(position + bytesRead, want - bytesRead);
          else void write.finally(() => lanes.give());
        });
      };
      fetch(at, length);
    }
    await lanes.idle();
    await Promise.all(writes);
    if (failure) throw failure;
  } finally {
    await closeRemote(sftp, handle).catch(() => undefined);
  }
  return total;
}

/** A small file whole: OPEN, one WRITE, CLOSE, the three pipelined by the server's order of requests. */
export async function putWhole(sftp: SFTPWrapper, remote: string, data: Buffer): Promise<void> {
  const handle = await openRemote(sftp, remote, 'w');
  let failure: Error | null = null;
  if (data.length > 0) await call<void>((cb) => sftp.write(handle, data, 0, data.length, 0, (e) => cb(e))).catch((e: Error) => (failure = e));
  await closeRemote(sftp, handle).catch((e: Error) => (failure ??= e));
  if (failure) throw failure;
}

async function writeAll(file: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) done += (await file.write(data, done, data.length - done, position + done)).bytesWritten;
}
