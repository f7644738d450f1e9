import { lstat, mkdir, open, realpath, rename, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import type { TerminalClient } from '../terminal-protocol/client.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import { hashFilePrefix, localHash, receiveFile, streamsOf } from '../terminal-protocol/streams.js';
import { MAX_CHUNK_BYTES, RelativePath } from '../terminal-protocol/terminal-methods.js';
import { CliError } from './exit-codes.js';
import { startProgress } from './progress.js';
import { forEachConcurrently } from './work-pool.js';

const PARALLEL_FILES = 4;
/** Partial downloads carry this suffix until complete; a rerun continues them. */
export const PARTIAL_SUFFIX = '.swm-part';

export interface RemoteFile {
  path: string;
  size: number;
}

export interface DownloadedFile extends RemoteFile {
  /** Where it was written. */
  local: string;
}

const escapes = (root: string, path: string): boolean => {
  const rel = relative(root, path);
  return rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel);
};

/**
 * Where a job file goes under `toDir`. The path comes from the core; whatever it says, nothing is
 * written outside `toDir`.
 */
export function destinationPath(toDir: string, path: string): string {
  const root = resolve(toDir);
  if (!RelativePath.safeParse(path).success || path.endsWith(PARTIAL_SUFFIX))
    throw new CliError(`refusing to write "${path}": not a plain relative path`);
  const target = resolve(root, path);
  if (escapes(root, target)) throw new CliError(`refusing to write "${path}": it lies outside ${root}`);
  return target;
}

/** Creates the file's directory and checks that no symbolic link on the way leads out of `toDir`. */
async function prepareDirectory(root: string, target: string): Promise<void> {
  const dir = dirname(target);
  await mkdir(dir, { recursive: true });
  const [realRoot, realDir] = await Promise.all([realpath(root), realpath(dir)]);
  if (realDir !== realRoot && escapes(realRoot, realDir))
    throw new CliError(`refusing to write ${target}: a symbolic link leads outside ${root}`);
}

/** Bytes of an earlier, interrupted download of this file that can be kept. */
async function partialSize(part: string, size: number): Promise<number> {
  const info = await lstat(part).catch(() => null);
  if (!info) return 0;
  if (!info.isFile()) throw new CliError(`refusing to write ${part}: it is not a regular file`);
  return info.size <= size ? info.size : 0;
}

/**
 * The fast path: the file as binary frames (job.file.open) written at their offsets, and its SHA-256 (the
 * part already here included) checked against the one the core sends at the end.
 * Resolves with the file's size, or null when the core does not offer the stream (an older core).
 */
async function streamInto(core: TerminalClient, id: string, file: RemoteFile, handle: FileHandle, from: number, onBytes: (n: number) => void): Promise<number | null> {
  let opened;
  try {
    opened = await core.call('job.file.open', { id, path: file.path, offset: from });
  } catch (error) {
    if (error instanceof RpcError && error.code === ErrorCode.MethodNotFound) return null;
    throw error;
  }
  const prefix = localHash(await hashFilePrefix(handle, from));
  let written = from;
  await receiveFile({
    mux: streamsOf(core),
    stream: opened.stream,
    from,
    size: opened.size,
    window: opened.window,
    prefix,
    sink: {
      write: async (data, at) => {
        for (let done = 0; done < data.length; ) done += (await handle.write(data, done, data.length - done, at + done)).bytesWritten;
      },
    },
    onWritten: (now) => {
      onBytes(now - written);
      written = now;
    },
  });
  return opened.size;
}

/** The fallback: job.file.read chunks (base64 in JSON), one at a time. Resolves with the bytes now in the file. */
async function readInto(core: TerminalClient, id: string, file: RemoteFile, handle: FileHandle, from: number, onBytes: (n: number) => void): Promise<number> {
  let offset = from;
  for (;;) {
    const chunk = await core.call('job.file.read', { id, path: file.path, offset, length: MAX_CHUNK_BYTES });
    const data = Buffer.from(chunk.data, 'base64');
    if (data.length > 0) {
      await handle.write(data, 0, data.length, offset);
      offset += data.length;
      onBytes(data.length);
    }
    if (chunk.eof || offset >= chunk.size) return offset;
    if (data.length === 0) throw new CliError(`download of "${file.path}" stalled at byte ${offset} of ${chunk.size}`);
  }
}

async function downloadFile(
  core: TerminalClient,
  id: string,
  file: RemoteFile,
  root: string,
  from: number,
  onBytes: (n: number) => void,
): Promise<DownloadedFile> {
  const target = destinationPath(root, file.path);
  await prepareDirectory(root, target);
  const part = target + PARTIAL_SUFFIX;
  let size: number;
  for (let attempt = 0; ; attempt++) {
    const handle = await open(part, from > 0 ? 'r+' : 'w', 0o644);
    try {
      size = (await streamInto(core, id, file, handle, from, onBytes)) ?? (await readInto(core, id, file, handle, from, onBytes));
      await handle.truncate(size);
      break;
    } catch (error) {
      // The file's SHA-256 is not the core's: the kept part no longer matches (the file changed since), or
      // bytes were altered on the way. Fetch it whole, once.
      if (attempt === 0 && error instanceof RpcError && error.code === ErrorCode.Integrity) {
        from = 0;
        continue;
      }
      throw error;
    } finally {
      await handle.close();
    }
  }
  await rename(part, target);
  return { ...file, size, local: target };
}

/**
 * Downloads job files into `toDir`, keeping their relative paths, several at a time, continuing any
 * partial file an interrupted run left behind.
 */
export async function downloadJobFiles(
  core: TerminalClient,
  id: string,
  files: readonly RemoteFile[],
  toDir: string,
  options: { progress: boolean },
): Promise<DownloadedFile[]> {
  const root = resolve(toDir);
  await mkdir(root, { recursive: true });
  const plan = await Promise.all(
    files.map(async (file) => ({ file, from: await partialSize(destinationPath(root, file.path) + PARTIAL_SUFFIX, file.size) })),
  );
  const total = files.reduce((n, f) => n + f.size, 0);
  const resumed = plan.reduce((n, p) => n + p.from, 0);
  const progress = startProgress({ enabled: options.progress, label: 'download', total, startValue: resumed, files: { total: files.length } });
  const done: DownloadedFile[] = [];
  try {
    await forEachConcurrently(plan, PARALLEL_FILES, async ({ file, from }) => {
      done.push(await downloadFile(core, id, file, root, from, (n) => progress.advance(n)));
      progress.fileDone();
    });
  } finally {
    progress.finish();
  }
  return done.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
