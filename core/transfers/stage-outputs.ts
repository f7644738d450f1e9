import { createHash } from 'node:crypto';
import { lstat, mkdir, open, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { SFTPWrapper } from 'ssh2';
import { hashFilePrefix } from '../../terminal-protocol/streams.js';
import { AgentOperationError, nodeAgent, type NodeAgent } from '../nodes/node-agent-client.js';
import type { NodeSession } from '../nodes/node-session.js';
import { hashablePath, nodeDigests } from './node-checksums.js';
import { globBase, hasGlobMagic, matchesGlob, normalizeRelative } from '../../terminal-protocol/path-patterns.js';
import { getBlocks, isDirectoryMode, isNoSuchFile, isRegular, isSymlinkMode, listRemote, lstatRemote, realpathRemote, statRemoteEntry } from './sftp-files.js';
import { describeLocalWrite } from './transfer-errors.js';
import { forEachLimited } from './work-lanes.js';

const SMALL_FILE_BYTES = 1024 * 1024;
const SMALL_FILE_LANES = 64;
const LARGE_FILE_LANES = 4;
const INFLIGHT = 32;
const BLOCK = 256 * 1024;
const MAX_OUTPUT_FILES = 100_000;
/** Outputs up to this size are read whole by the node's agent (one round trip) rather than by SFTP. */
const AGENT_READ_BYTES = 256 * 1024;
/** The runner's own files, never part of the results. */
const INTERNAL_DIR = '.swm';

export interface RemoteOutput {
  path: string;
  size: number;
}

export interface OutputSelection {
  files: RemoteOutput[];
  /** Patterns (or names) that matched nothing on the node. */
  missing: string[];
  /** Entries refused because a symbolic link leads outside the job directory. */
  refused: string[];
}

const inside = (root: string, path: string): boolean => path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);

/**
 * Expand `output-files` entries (names, directories, patterns) against the job directory on the node.
 * Symbolic links are followed to files that stay inside the job directory; one that leads outside is
 * refused (never read), and linked directories are not walked (no cycles, no escapes).
 */
export async function selectOutputs(sftp: SFTPWrapper, remoteDir: string, entries: readonly string[]): Promise<OutputSelection> {
  // The job directory's real path, asked only when a link is met (most jobs have none: one round trip less).
  let realRootOf: Promise<string> | null = null;
  const realRoot = (): Promise<string> => (realRootOf ??= realpathRemote(sftp, remoteDir));
  const found = new Map<string, RemoteOutput>();
  const missing: string[] = [];
  const refused = new Set<string>();

  const add = (path: string, size: number) => {
    if (found.size >= MAX_OUTPUT_FILES) throw new Error(`more than ${MAX_OUTPUT_FILES} output files`);
    found.set(path, { path, size });
  };
  /** A symbolic link: the size of the file it leads to, or null (refused or not a file). */
  const followLink = async (path: string): Promise<number | null> => {
    const real = await realpathRemote(sftp, `${remoteDir}/${path}`).catch(() => null);
    if (!real || !inside(await realRoot(), real)) {
      refused.add(path);
      return null;
    }
    const target = await statRemoteEntry(sftp, real).catch(() => null);
    return target && isRegular(target) ? target.size : null;
  };
  const walk = async (rel: string, keep: (path: string) => boolean): Promise<number> => {
    let kept = 0;
    for (const entry of await listRemote(sftp, rel ? `${remoteDir}/${rel}` : remoteDir)) {
      const name = entry.filename;
      if (name === '.' || name === '..' || name.includes('/')) continue;
      if (!rel && name === INTERNAL_DIR) continue;
      const child = rel ? `${rel}/${name}` : name;
      if (isDirectoryMode(entry.attrs)) kept += await walk(child, keep);
      else if (!keep(child)) continue;
      else if (isRegular(entry.attrs)) {
        add(child, entry.attrs.size);
        kept++;
      } else if (isSymlinkMode(entry.attrs)) {
        const size = await followLink(child);
        if (size !== null) {
          add(child, size);
          kept++;
        }
      }
    }
    return kept;
  };

  // Every plain name is looked up at once (stdout, stderr and the declared files: one round trip, not one each);
  // the answers are then taken in order, so that what is found and missing keeps the order of `entries`.
  const looked = new Map<string, ReturnType<typeof lstatRemote>>();
  for (const raw of entries) {
    const entry = normalizeRelative(raw);
    if (!entry || entry.split('/').includes('..') || hasGlobMagic(entry) || looked.has(entry)) continue;
    const attrs = lstatRemote(sftp, `${remoteDir}/${entry}`);
    attrs.catch(() => undefined);
    looked.set(entry, attrs);
  }
  for (const raw of entries) {
    const entry = normalizeRelative(raw);
    if (!entry || entry.split('/').includes('..')) {
      refused.add(raw);
      continue;
    }
    if (!hasGlobMagic(entry)) {
      const attrs = await looked.get(entry)!.catch((error: unknown) => {
        if (isNoSuchFile(error)) return null;
        throw error;
      });
      if (!attrs) missing.push(raw);
      else if (isRegular(attrs)) add(entry, attrs.size);
      else if (isDirectoryMode(attrs)) {
        if ((await walk(entry, () => true)) === 0) missing.push(raw);
      } else if (isSymlinkMode(attrs)) {
        const size = await followLink(entry);
        if (size !== null) add(entry, size);
        else if (!refused.has(entry)) missing.push(raw);
      }
      continue;
    }
    const base = globBase(entry);
    const baseAttrs = base ? await lstatRemote(sftp, `${remoteDir}/${base}`).catch(() => null) : null;
    const kept = !base || (baseAttrs && isDirectoryMode(baseAttrs)) ? await walk(base, (path) => matchesGlob(path, entry)) : 0;
    if (kept === 0) missing.push(raw);
  }
  // Nothing found at all: a job directory that is gone (a wiped node) is an error, not a job without outputs.
  if (found.size === 0) await realRoot();
  return { files: [...found.values()].sort((a, b) => (a.path < b.path ? -1 : 1)), missing, refused: [...refused] };
}

export interface FetchOutputsOptions {
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
  listFile?: string;
}

/** Bytes of a partial download kept on resume (blocks complete out of order, so the tail is fetched again). Pure. */
export const keptOfPartial = (partial: number, size: number): number =>
  partial > size ? 0 : Math.max(0, Math.floor((partial - INFLIGHT * BLOCK) / BLOCK) * BLOCK);

async function sha256Of(path: string): Promise<string> {
  const file = await open(path, 'r');
  try {
    return (await hashFilePrefix(file, (await file.stat()).size, createHash('sha256'))).digest('hex');
  } finally {
    await file.close();
  }
}

/**
 * Download `files` from the node's job directory into `stagingDir` (continuing partial files of an earlier
 * attempt), check each against the node's SHA-256 (or its size where the node cannot hash), and only then
 * move it into `outputsDir`: a file half-written, or corrupt, is never among the results.
 */
export async function fetchOutputs(
  session: NodeSession,
  remoteDir: string,
  files: readonly RemoteOutput[],
  outputsDir: string,
  stagingDir: string,
  o: FetchOutputsOptions = {},
): Promise<{ verified: 'sha256' | 'size' }> {
  const sftp = await session.sftp();
  const agent = await nodeAgent(session);
  const hashable = files.filter((f) => hashablePath(f.path)).map((f) => f.path);
  // The node hashes while the bytes travel.
  const digests = nodeDigests(session, sftp, remoteDir, o.listFile ?? '.swm/outputs.list', hashable, agent, o.signal);
  digests.catch(() => undefined);

  /** A small output through the node's agent: one round trip, its bytes and the node's SHA-256 of them. */
  const fetchFromAgent = async (agent: NodeAgent, file: RemoteOutput): Promise<void> => {
    const staged = join(stagingDir, file.path);
    const { data } = await agent.readFile(`${remoteDir}/${file.path}`, AGENT_READ_BYTES, o.signal).catch((error: unknown) => {
      if (error instanceof AgentOperationError && error.code === 'ENOENT') throw new Error(`output "${file.path}" vanished from the node while being downloaded`);
      throw error;
    });
    try {
      await mkdir(dirname(staged), { recursive: true, mode: 0o700 });
      await writeFile(staged, data, { mode: 0o600 });
    } catch (error) {
      throw describeLocalWrite(file.path, error);
    }
    o.onBytes?.(data.length);
  };
  const fetch = async (file: RemoteOutput, fresh: boolean): Promise<void> => {
    if (agent && file.size <= AGENT_READ_BYTES) return fetchFromAgent(agent, file);
    const staged = join(stagingDir, file.path);
    let local: FileHandle;
    let from = 0;
    try {
      await mkdir(dirname(staged), { recursive: true, mode: 0o700 });
      const partial = fresh ? null : await lstat(staged).catch(() => null);
      from = partial?.isFile() ? keptOfPartial(partial.size, file.size) : 0;
      local = await open(staged, from > 0 ? 'r+' : 'w', 0o600);
    } catch (error) {
      throw describeLocalWrite(file.path, error);
    }
    o.onBytes?.(from);
    try {
      const got = await getBlocks(sftp, `${remoteDir}/${file.path}`, local, { from, size: file.size, inflight: INFLIGHT, blockBytes: BLOCK, signal: o.signal, onBytes: o.onBytes });
      if (from + got !== file.size) throw new Error(`output "${file.path}" changed on the node while being downloaded (${from + got} of ${file.size} bytes)`);
      await local.truncate(file.size);
    } catch (error) {
      if (isNoSuchFile(error)) throw new Error(`output "${file.path}" vanished from the node while being downloaded`);
      if ((error as NodeJS.ErrnoException)?.code) throw describeLocalWrite(file.path, error);
      throw error;
    } finally {
      await local.close();
    }
  };

  const small = files.filter((f) => f.size < SMALL_FILE_BYTES);
  const large = files.filter((f) => f.size >= SMALL_FILE_BYTES);
  await Promise.all([forEachLimited(large, LARGE_FILE_LANES, (f) => fetch(f, false)), forEachLimited(small, SMALL_FILE_LANES, (f) => fetch(f, false))]);

  const onNode = await digests;
  const bad = async (candidates: readonly RemoteOutput[]): Promise<RemoteOutput[]> => {
    const failed: RemoteOutput[] = [];
    await forEachLimited(candidates, 8, async (file) => {
      const staged = join(stagingDir, file.path);
      const size = (await lstat(staged).catch(() => null))?.size;
      if (size !== file.size) failed.push(file);
      else if (onNode && hashablePath(file.path)) {
        const expected = onNode.get(file.path);
        if (!expected) throw new Error(`output "${file.path}" vanished from the node while being downloaded`);
        if ((await sha256Of(staged)) !== expected) failed.push(file);
      }
    });
    return failed;
  };
  const first = await bad(files);
  if (first.length) {
    await forEachLimited(first, LARGE_FILE_LANES, (f) => fetch(f, true));
    const second = await bad(first);
    if (second.length) throw new Error(`output "${second[0]!.path}" arrived corrupt twice from node ${session.node.name}`);
  }
  for (const file of files) {
    const target = join(outputsDir, file.path);
    await mkdir(dirname(target), { recursive: true, mode: 0o700 }).catch((error: unknown) => {
      throw describeLocalWrite(file.path, error);
    });
    await rename(join(stagingDir, file.path), target);
  }
  return { verified: onNode ? 'sha256' : 'size' };
}
