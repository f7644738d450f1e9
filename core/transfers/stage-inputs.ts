import { createReadStream, readFileSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { SFTPWrapper } from 'ssh2';
import type { InputFile } from '../../terminal-protocol/terminal-methods.js';
import type { NodeSession } from '../nodes/node-session.js';
import { shellQuote } from '../nodes/node-session.js';
import { NodeFileHasher, hashToolOf, hashablePath, nodeDigests } from './node-checksums.js';
import { isRegular, isSymlinkMode, listRemote, putBlocks, putWhole } from './sftp-files.js';
import { diagnoseNodeWrite } from './transfer-errors.js';
import { forEachLimited } from './work-lanes.js';
import { PathEscapeError, tarPathProblem } from './tar-stream.js';
import { BATCH_FILE_BYTES, BATCH_MIN_FILES, BATCH_STREAMS, nodeHasGnuTar, sendTarBatch, sendTarBatchToAgent } from './tar-batch.js';
import { nodeAgent, type NodeAgent } from '../nodes/node-agent-client.js';

/** Files below this size go through the many-lanes pool: they are bound by round trips, not bandwidth. */
const SMALL_FILE_BYTES = 1024 * 1024;
const SMALL_FILE_LANES = 64;
/** SFTP sessions for many small files (the server handles each session's requests one after the other). */
const SMALL_FILE_SESSIONS = 4;
const MANY_FILES = 256;
const LARGE_FILE_LANES = 4;
/**
 * Files up to this size are read whole, synchronously (a few microseconds), and sent in one WRITE: for
 * thousands of small files, four thread-pool round trips per file would cost more than the transfer.
 */
const WHOLE_FILE_BYTES = 64 * 1024;
/** Files at least this big are hashed on the node while they arrive (NodeFileHasher), not after. */
const HASH_WHILE_SENDING_BYTES = 64 * 1024 * 1024;
const INFLIGHT = 32;
/** What one data frame to the agent carries of a large file (read ahead by the file stream). */
const AGENT_CHUNK = 1024 * 1024;
const BLOCK = 256 * 1024;
/** Bytes before the end of a partial remote file that are sent again on resume: blocks complete out of order. */
export const RESUME_MARGIN = INFLIGHT * BLOCK;

export interface StageInputsOptions {
  signal?: AbortSignal;
  /** Bytes the node acknowledged (progress). */
  onBytes?: (n: number) => void;
  /** Name of the NUL-separated list of files to hash, written in the job directory. */
  listFile?: string;
  /** False: check sizes only, as on a node with no hash tool (for measuring what the checksums cost). */
  checksums?: boolean;
  /** False: SFTP, GNU tar and hash commands, as on a node that cannot run the agent (for measuring what it brings). */
  agent?: boolean;
}

export interface StageInputsResult {
  /** Bytes sent by this run (a resumed run sends less than the total). */
  sentBytes: number;
  /** Bytes already on the node from an earlier, interrupted run. */
  keptBytes: number;
  /** How the files were checked on the node. */
  verified: 'sha256' | 'size';
  /** Files sent in one tar stream (tar-batch.ts) rather than one SFTP open each. */
  batchedFiles: number;
  /** Whether the node's agent wrote the large files and batches (else SFTP and GNU tar did). */
  agent: boolean;
}

/** Where a partial remote file of `remote` bytes (of `size`) is continued from. Pure. */
export const resumePoint = (remote: number | undefined, size: number): number =>
  remote === undefined || remote > size ? 0 : remote === size ? size : Math.max(0, Math.floor((remote - RESUME_MARGIN) / BLOCK) * BLOCK);

/** Create the directories the inputs go to (one command per batch of names). */
async function makeDirectories(session: NodeSession, dirs: readonly string[], signal?: AbortSignal): Promise<void> {
  let batch: string[] = [];
  let length = 0;
  const flush = async () => {
    if (batch.length) await session.run(`mkdir -p ${batch.map(shellQuote).join(' ')}`, signal);
    batch = [];
    length = 0;
  };
  for (const dir of dirs) {
    batch.push(dir);
    length += dir.length + 3;
    if (length > 64 * 1024) await flush();
  }
  await flush();
}

/**
 * Sizes of the regular files already in the directories inputs go to (relative to `remoteDir`). A job
 * directory holding nothing but the runner's files is a first attempt: its subdirectories are not listed.
 */
async function remoteSizes(sftp: SFTPWrapper, remoteDir: string, relativeDirs: readonly string[]): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  const top = (await listRemote(sftp, remoteDir)).filter((e) => e.filename !== '.' && e.filename !== '..' && e.filename !== '.swm');
  if (top.length === 0) return sizes;
  // A directory reached through a symbolic link (left by an earlier attempt of the job) is not the job's: what
  // lies there counts as missing, and is sent again (a batch replaces the link with a directory).
  const linked = new Set(top.filter((e) => isSymlinkMode(e.attrs)).map((e) => e.filename));
  await forEachLimited(
    relativeDirs.filter((dir) => !linked.has(dir.split('/')[0]!)),
    16,
    async (dir) => {
      const entries = await listRemote(sftp, dir ? `${remoteDir}/${dir}` : remoteDir).catch(() => []);
      for (const entry of entries) if (isRegular(entry.attrs)) sizes.set(dir ? `${dir}/${entry.filename}` : entry.filename, entry.attrs.size);
    },
  );
  return sizes;
}

/** Up to `count` more SFTP sessions; fewer (or none) if the server refuses them. */
async function openExtraSessions(session: NodeSession, count: number): Promise<SFTPWrapper[]> {
  const opened = await Promise.allSettled(Array.from({ length: count }, () => session.openSftp()));
  return opened.filter((r): r is PromiseFulfilledResult<SFTPWrapper> => r.status === 'fulfilled').map((r) => r.value);
}

/**
 * Upload a job's inputs from the core's spool (`localRoot`) to its directory on the node (`remoteDir`):
 * many blocks in flight per file, many small files at once, each file continued from what the node already
 * has, then every file checked on the node (SHA-256 where the node can compute it, else its size) and any
 * bad one sent again from scratch. Throws with a message naming the file (vanished, disk full, corrupt).
 */
export async function stageInputs(
  session: NodeSession,
  localRoot: string,
  remoteDir: string,
  files: readonly InputFile[],
  o: StageInputsOptions = {},
): Promise<StageInputsResult> {
  // Names were checked at submit; checked again here, before anything is written, whichever way a file goes.
  for (const file of files) {
    const problem = tarPathProblem(file.path);
    if (problem) throw new PathEscapeError(`input "${file.path.slice(0, 200)}" ${problem}: refused`);
  }
  const relativeDirs = [...new Set(files.map((f) => posix.dirname(f.path)).map((d) => (d === '.' ? '' : d)))];
  const listFile = o.listFile ?? '.swm/inputs.list';
  // The job directory and the list's now; the inputs' directories once it is known which files go by SFTP (a
  // batch makes its own, replacing links where `mkdir -p` would follow them).
  const toMake = new Set([remoteDir, posix.dirname(`${remoteDir}/${listFile}`)]);
  // Independent round trips, at once: they add up to a good part of a small transfer.
  const mayBatch = files.filter((f) => f.size <= BATCH_FILE_BYTES).length >= BATCH_MIN_FILES;
  // The node's agent writes large files and batches, hashing them as they arrive, and hashes the rest; without
  // one, SFTP, GNU tar and the node's hash tool over exec channels.
  const agent = o.agent === false ? null : await nodeAgent(session);
  const [sftp, tool, gnuTar] = await Promise.all([
    session.sftp(),
    // With the agent no hash tool is used: it hashes files itself.
    agent ? null : hashToolOf(session, o.signal),
    mayBatch && !agent ? nodeHasGnuTar(session, o.signal) : false,
    agent ? undefined : makeDirectories(session, [...toMake], o.signal),
  ]);
  const existing = await remoteSizes(sftp, remoteDir, relativeDirs);

  let sentBytes = 0;
  const onBytes = (n: number) => {
    sentBytes += n;
    o.onBytes?.(n);
  };
  /** SHA-256 computed on the node as files arrived (large files) or as a batch was extracted (small ones). */
  const hashedWhileSent = new Map<string, string>();
  const sendWhole = async (file: InputFile, via: SFTPWrapper): Promise<void> => {
    let data: Buffer;
    try {
      data = readFileSync(join(localRoot, file.path));
    } catch (error) {
      throw new Error(`input "${file.path}" vanished from the core's spool (${(error as Error).message})`);
    }
    if (data.length !== file.size) throw new Error(`input "${file.path}" changed in the core's spool: ${data.length} bytes, ${file.size} declared`);
    try {
      await putWhole(via, `${remoteDir}/${file.path}`, data);
      onBytes(data.length);
    } catch (error) {
      throw await diagnoseNodeWrite(session, remoteDir, file.path, file.size, error);
    }
  };
  /** A large file through the agent: one stream, written and hashed on the node as it arrives. */
  const sendToAgent = async (agent: NodeAgent, file: InputFile, from: number): Promise<void> => {
    const path = join(localRoot, file.path);
    try {
      const size = statSync(path).size;
      if (size !== file.size) throw new Error(`input "${file.path}" changed in the core's spool: ${size} bytes, ${file.size} declared`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code) throw new Error(`input "${file.path}" vanished from the core's spool (${(error as Error).message})`);
      throw error;
    }
    try {
      const { sha256 } = await agent.send<{ sha256: string }>(
        { op: 'put', dir: remoteDir, path: file.path, from, size: file.size },
        async (write) => {
          if (from >= file.size) return;
          for await (const chunk of createReadStream(path, { start: from, end: file.size - 1, highWaterMark: AGENT_CHUNK })) {
            await write(chunk as Buffer);
            onBytes((chunk as Buffer).length);
          }
        },
        o.signal,
      );
      if (hashablePath(file.path) && o.checksums !== false) hashedWhileSent.set(file.path, sha256);
    } catch (error) {
      throw await diagnoseNodeWrite(session, remoteDir, file.path, file.size - from, error);
    }
  };
  const send = async (file: InputFile, from: number, via: SFTPWrapper = sftp): Promise<void> => {
    if (agent) return sendToAgent(agent, file, from);
    if (file.size <= WHOLE_FILE_BYTES) return sendWhole(file, via);
    let local: FileHandle;
    try {
      local = await open(join(localRoot, file.path), 'r');
    } catch (error) {
      throw new Error(`input "${file.path}" vanished from the core's spool (${(error as Error).message})`);
    }
    const remote = `${remoteDir}/${file.path}`;
    const hasher = tool && o.checksums !== false && file.size >= HASH_WHILE_SENDING_BYTES && hashablePath(file.path) ? new NodeFileHasher(session, tool, remote) : null;
    try {
      const size = (await local.stat()).size;
      if (size !== file.size) throw new Error(`input "${file.path}" changed in the core's spool: ${size} bytes, ${file.size} declared`);
      hasher?.advance(from);
      await putBlocks(via, local, remote, {
        from,
        size: file.size,
        inflight: INFLIGHT,
        blockBytes: BLOCK,
        signal: o.signal,
        onBytes,
        onContiguous: hasher ? (upTo) => hasher.advance(upTo) : undefined,
      });
      if (hasher) hashedWhileSent.set(file.path, await hasher.finish(file.size));
    } catch (error) {
      hasher?.abort();
      throw await diagnoseNodeWrite(session, remoteDir, file.path, file.size - from, error);
    } finally {
      await local.close();
    }
  };

  let keptBytes = 0;
  const plan = files.map((file) => {
    const from = resumePoint(existing.get(file.path), file.size);
    keptBytes += from;
    o.onBytes?.(from);
    return { file, from };
  });
  const pending = plan.filter((p) => p.from < p.file.size || (p.file.size === 0 && !existing.has(p.file.path)));
  // Through the agent, every small file goes in a tar stream and every other one by `put`: no SFTP, no `mkdir -p`
  // (which would follow a link left in the job directory). Without it, many small files go in tar streams into
  // GNU tar where the node has it (a batch costs a process there), the rest by SFTP.
  const batchable = gnuTar || agent ? pending.filter((p) => p.file.size <= BATCH_FILE_BYTES) : [];
  const batch = agent || batchable.length >= BATCH_MIN_FILES ? batchable.map((p) => p.file) : [];
  const inBatch = new Set(batch);
  const small = pending.filter((p) => p.file.size < SMALL_FILE_BYTES && !inBatch.has(p.file));
  const large = pending.filter((p) => p.file.size >= SMALL_FILE_BYTES);
  const sftpDirs = (files: readonly InputFile[]) => [...new Set(files.map((f) => posix.dirname(f.path)).filter((d) => d !== '.').map((d) => `${remoteDir}/${d}`))];
  // The agent makes a file's directories itself (refusing links on the way).
  if (!agent) await makeDirectories(session, sftpDirs([...small, ...large].map((p) => p.file)), o.signal);
  const extra = !agent && small.length >= MANY_FILES ? await openExtraSessions(session, SMALL_FILE_SESSIONS - 1) : [];
  // A few streams side by side: one tar creates its files one after the other, and creating a file costs the
  // node more CPU than its 4 KiB of data; several extract on several CPUs.
  const streams = Math.min(BATCH_STREAMS, Math.ceil(batch.length / (4 * BATCH_MIN_FILES)));
  const groups = Array.from({ length: streams }, (_, i) => batch.slice(Math.floor((i * batch.length) / streams), Math.floor(((i + 1) * batch.length) / streams)));
  const sendBatch = (group: InputFile[], index: number) => async (): Promise<void> => {
    const sent = agent
      ? sendTarBatchToAgent(agent, group, { localRoot, remoteDir, signal: o.signal, onBytes })
      : sendTarBatch(session, group, {
          localRoot,
          remoteDir,
          listFile: `${listFile}.${index}`,
          tool: o.checksums === false ? null : tool,
          signal: o.signal,
          onBytes,
        });
    const digests = await sent.catch(async (error: unknown) => {
      const bytes = group.reduce((n, f) => n + f.size, 0);
      throw await diagnoseNodeWrite(session, remoteDir, group[0]!.path, bytes, error, `inputs "${group[0]!.path}" and ${group.length - 1} more (one batch)`);
    });
    for (const file of group) {
      const digest = o.checksums === false ? undefined : digests.get(file.path);
      if (digest) hashedWhileSent.set(file.path, digest);
    }
  };
  try {
    const sessions = [sftp, ...extra];
    let turn = 0;
    await Promise.all([
      forEachLimited(large, LARGE_FILE_LANES, (p) => send(p.file, p.from)),
      forEachLimited(small, SMALL_FILE_LANES, (p) => send(p.file, p.from, sessions[turn++ % sessions.length]!)),
      forEachLimited(groups.map(sendBatch), streams, (send) => send()),
    ]);
  } finally {
    for (const s of extra) s.end();
  }

  // Check what the node holds. A file that fails is sent again from its first byte, once.
  const check = async (candidates: readonly InputFile[]): Promise<{ bad: InputFile[]; verified: 'sha256' | 'size' }> => {
    const toHash = candidates.filter((f) => hashablePath(f.path) && !hashedWhileSent.has(f.path));
    const digests = o.checksums === false ? null : await nodeDigests(session, sftp, remoteDir, listFile, toHash.map((f) => f.path), agent, o.signal);
    for (const [path, digest] of hashedWhileSent) digests?.set(path, digest);
    hashedWhileSent.clear();
    // A matching SHA-256 vouches for the size too: sizes are listed only for files the node could not hash.
    const unhashed = candidates.filter((f) => !digests || !hashablePath(f.path));
    const sizes = unhashed.length ? await remoteSizes(sftp, remoteDir, [...new Set(unhashed.map((f) => posix.dirname(f.path)).map((d) => (d === '.' ? '' : d)))]) : new Map<string, number>();
    const bad = candidates.filter((f) => (digests && hashablePath(f.path) ? digests.get(f.path) !== f.sha256 : sizes.get(f.path) !== f.size));
    return { bad, verified: digests ? 'sha256' : 'size' };
  };
  const first = await check(files);
  if (first.bad.length > 0) {
    if (!agent) await makeDirectories(session, sftpDirs(first.bad), o.signal);
    await forEachLimited(first.bad, LARGE_FILE_LANES, (file) => send(file, 0));
    const second = await check(first.bad);
    if (second.bad.length > 0) {
      const names = second.bad.slice(0, 3).map((f) => `"${f.path}"`).join(', ');
      throw new Error(`input ${names}${second.bad.length > 3 ? ` and ${second.bad.length - 3} more` : ''} arrived corrupt on node ${session.node.name} twice`);
    }
  }
  return { sentBytes, keptBytes, verified: first.verified, batchedFiles: batch.length, agent: agent !== null };
}

/**
 * Upload the same inputs to the same directory of several nodes (a job that runs on every node of its
 * partition), all at once, each node resumed and verified on its own as stageInputs does. `onBytes` counts the
 * bytes of every node. The sums of the nodes' results; `verified` is the weakest check any node could make.
 */
export async function stageInputsToNodes(
  sessions: readonly NodeSession[],
  localRoot: string,
  remoteDir: string,
  files: readonly InputFile[],
  o: StageInputsOptions = {},
): Promise<StageInputsResult> {
  const results = await Promise.all(sessions.map((session) => stageInputs(session, localRoot, remoteDir, files, o)));
  return {
    sentBytes: results.reduce((n, r) => n + r.sentBytes, 0),
    keptBytes: results.reduce((n, r) => n + r.keptBytes, 0),
    verified: results.every((r) => r.verified === 'sha256') ? 'sha256' : 'size',
    batchedFiles: results.reduce((n, r) => n + r.batchedFiles, 0),
    agent: results.every((r) => r.agent),
  };
}
