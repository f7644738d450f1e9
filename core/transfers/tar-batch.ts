import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { InputFile } from '../../terminal-protocol/terminal-methods.js';
import type { NodeAgent } from '../nodes/node-agent-client.js';
import type { NodeSession } from '../nodes/node-session.js';
import { shellQuote } from '../nodes/node-session.js';
import { hashablePath, parseDigests, type HashTool } from './node-checksums.js';
import { TarWriter } from './tar-stream.js';

/**
 * Many small inputs in one stream: a tar archive written by the core, over one exec channel, into GNU tar on the
 * node, which then hashes what it extracted; one round trip for thousands of files instead of an SFTP
 * OPEN/WRITE/CLOSE each.
 *
 *   core: spool files ─▶ TarWriter (dirs first, names checked) ─▶ exec channel stdin
 *   node: cd <job dir> && tar -x ─▶ files;  xargs -0 openssl dgst < .swm/inputs.list ─▶ stdout: SHA-256 each
 *
 * The node's digests are of the files as they lie on its disk after extraction (read from its page cache), the
 * same check as for files sent by SFTP. GNU tar refuses members with `..` and strips a leading `/` by itself;
 * the writer refuses both before sending anyway, and gives every directory its own entry so that a symbolic
 * link found in the job directory is replaced rather than followed.
 */

/** Batched files are read whole into memory: the batch is for files this small. */
export const BATCH_FILE_BYTES = 64 * 1024;
/** Fewer files than this go by SFTP (a batch costs a process on the node). */
export const BATCH_MIN_FILES = 64;
/** Tar streams at once for one node's batch (each a tar process on the node, extracting on a CPU of its own). */
export const BATCH_STREAMS = 4;
/** Bytes gathered before a write to the channel (fewer, larger SSH packets' worth of work). */
const WRITE_BYTES = 256 * 1024;

/** Whether the node extracts with GNU tar (its handling of `..`, `/` and links is what the batch relies on); asked once per session. */
export function nodeHasGnuTar(session: NodeSession, signal?: AbortSignal): Promise<boolean> {
  return session.remember('gnu tar', async () => (await session.exec('tar --version 2>/dev/null | head -n 1', { signal })).stdout.includes('GNU tar'));
}

/** The node's command: extract the archive on stdin into `dir`, then hash the files listed in `listFile`. Pure. */
export function extractCommand(dir: string, listFile: string, tool: HashTool): string {
  const extract = `cd ${shellQuote(dir)} && tar -x -m -f - --no-same-owner --no-same-permissions`;
  if (!tool) return extract;
  const hash = tool === 'openssl' ? 'openssl dgst -sha256 -r' : 'sha256sum -b';
  return `${extract} && xargs -0 ${hash} < ${shellQuote(listFile)}`;
}

export interface TarBatchOptions {
  localRoot: string;
  remoteDir: string;
  /** The NUL-separated list of files to hash, relative to `remoteDir` (sent inside the archive). */
  listFile: string;
  /** How the node hashes (null: it cannot; sizes are checked by the caller). */
  tool: HashTool;
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
}

/**
 * Send `files` (each at most BATCH_FILE_BYTES) to the node in one tar stream. Resolves with the SHA-256 the node
 * computed of each hashable file it extracted (empty when `tool` is null). Throws with tar's message if the
 * node could not extract (a full disk says "No space left on device"), and for a file that vanished or changed
 * in the core's spool.
 */
export async function sendTarBatch(session: NodeSession, files: readonly InputFile[], o: TarBatchOptions): Promise<Map<string, string>> {
  const hashed = o.tool ? files.filter((f) => hashablePath(f.path)) : [];
  const channel = await session.openExec(extractCommand(o.remoteDir, o.listFile, o.tool));
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let exit = null as number | null;
  let closed = false;
  const finished = new Promise<void>((resolve) => {
    channel.on('data', (chunk: Buffer) => stdout.push(chunk));
    channel.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    channel.on('exit', (code: number | null) => (exit = code));
    // A write after the node's tar has gone (a full disk) fails here; the exit status and stderr tell why.
    channel.on('error', () => undefined);
    channel.once('close', () => {
      closed = true;
      resolve();
    });
  });
  const onAbort = () => channel.close();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const write = async (chunk: Buffer): Promise<void> => {
    if (closed) throw new Error(`the node ended the input batch early: ${Buffer.concat(stderr).toString('utf8').trim() || 'no message'}`);
    if (!channel.write(chunk)) await new Promise<void>((resolve) => {
      const go = () => {
        channel.off('drain', go);
        channel.off('close', go);
        resolve();
      };
      channel.on('drain', go);
      channel.on('close', go);
    });
  };
  try {
    // The list goes first: by the time tar is done, the hashing command finds it on disk.
    const list = hashed.length > 0 ? { path: o.listFile, data: Buffer.from(hashed.map((f) => `./${f.path}\0`).join(''), 'utf8') } : null;
    await writeTarBatch(files, o, write, list);
    channel.end();
    await finished;
  } catch (error) {
    channel.close();
    throw error;
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
  if (o.signal?.aborted) throw Object.assign(new Error('transfer aborted'), { name: 'AbortError' });
  // No exit status: the connection went down under the batch (retried by the step, as any lost connection).
  if (exit === null) throw new RpcError(ErrorCode.Unavailable, `lost the connection to node ${session.node.name} while sending ${files.length} inputs`);
  if (exit !== 0) {
    const message = Buffer.concat(stderr).toString('utf8').trim().split('\n').slice(-3).join('; ');
    throw new Error(`extracting ${files.length} inputs on node ${session.node.name} failed (exit ${exit}): ${message || 'no message'}`);
  }
  return o.tool ? parseDigests(Buffer.concat(stdout).toString('utf8')) : new Map();
}

/**
 * The batch's archive, written to `write` in chunks of about WRITE_BYTES (each write waits for the channel):
 * `list` first when given, then every file, read whole from the core's spool. Throws for a file that vanished
 * or changed there, and on abort.
 */
export async function writeTarBatch(
  files: readonly InputFile[],
  o: Pick<TarBatchOptions, 'localRoot' | 'signal' | 'onBytes'>,
  write: (chunk: Buffer) => Promise<void>,
  list: { path: string; data: Buffer } | null = null,
): Promise<void> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async (): Promise<void> => {
    if (pendingBytes === 0) return;
    const chunk = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    await write(chunk);
  };
  const tar = new TarWriter((chunk) => {
    pending.push(chunk);
    pendingBytes += chunk.length;
  });
  if (list) tar.file(list.path, list.data, 0o600);
  for (const file of files) {
    let data: Buffer;
    try {
      data = readFileSync(join(o.localRoot, file.path));
    } catch (error) {
      throw new Error(`input "${file.path}" vanished from the core's spool (${(error as Error).message})`);
    }
    if (data.length !== file.size) throw new Error(`input "${file.path}" changed in the core's spool: ${data.length} bytes, ${file.size} declared`);
    tar.file(file.path, data);
    if (pendingBytes >= WRITE_BYTES) await flush();
    o.onBytes?.(data.length);
    if (o.signal?.aborted) throw Object.assign(new Error('transfer aborted'), { name: 'AbortError' });
  }
  tar.end();
  await flush();
}

/**
 * Send `files` through the node's agent (node-agent/agent.ts), which extracts the stream and hashes each file as
 * it writes it: no tar, no hashing command, no process on the node. Resolves with the SHA-256 of every file.
 */
export async function sendTarBatchToAgent(agent: NodeAgent, files: readonly InputFile[], o: Pick<TarBatchOptions, 'localRoot' | 'remoteDir' | 'signal' | 'onBytes'>): Promise<Map<string, string>> {
  const { digests } = await agent.send<{ digests: Record<string, string> }>({ op: 'untar', dir: o.remoteDir }, (write) => writeTarBatch(files, o, write), o.signal);
  if (o.signal?.aborted) throw Object.assign(new Error('transfer aborted'), { name: 'AbortError' });
  return new Map(Object.entries(digests));
}
