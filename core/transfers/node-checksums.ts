import type { SFTPWrapper } from 'ssh2';
import type { NodeAgent } from '../nodes/node-agent-client.js';
import type { NodeSession } from '../nodes/node-session.js';
import { shellQuote } from '../nodes/node-session.js';

/**
 * SHA-256 of files on a node, computed there (the bytes are not read back over the network). OpenSSL is
 * preferred (several times faster than coreutils' sha256sum on machines with SHA extensions); nodes with
 * neither get size checks only.
 */
export type HashTool = 'openssl' | 'sha256sum' | null;

const DETECT = 'if command -v openssl >/dev/null 2>&1; then echo openssl; elif command -v sha256sum >/dev/null 2>&1; then echo sha256sum; fi';


/** The hashing tool of a node (asked once per session). */
export function hashToolOf(session: NodeSession, signal?: AbortSignal): Promise<HashTool> {
  return session.remember('hash tool', async () => {
    const name = (await session.run(DETECT, signal)).trim();
    return name === 'openssl' || name === 'sha256sum' ? name : null;
  });
}

/** Paths the hash tools print unambiguously (their output is line-based and may escape odd names). Pure. */
export const hashablePath = (path: string): boolean => !/[\n\r\\]/.test(path);

/**
 * Parse `<hex> *<name>` (openssl -r, sha256sum -b) or `<hex>  <name>` (sha256sum) lines into name → digest.
 * Pure.
 */
export function parseDigests(output: string): Map<string, string> {
  const digests = new Map<string, string>();
  for (const line of output.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (m) digests.set(m[2]!.replace(/^\.\//, ''), m[1]!);
  }
  return digests;
}

/** The shell command that hashes the NUL-separated file list `listFile`, in `dir`. Pure. */
export function hashCommand(tool: Exclude<HashTool, null>, dir: string, listFile: string): string {
  const run = tool === 'openssl' ? 'openssl dgst -sha256 -r' : 'sha256sum -b';
  return `cd ${shellQuote(dir)} && xargs -0 ${run} < ${shellQuote(listFile)}`;
}

/**
 * SHA-256 of `paths` (relative to `dir`) on the node, or null when the node has no tool for it: asked of the
 * node's agent where it runs one (the names in the request), else the list travels as a file (`listFile`,
 * relative to `dir`) so that thousands of names fit no command line limit, for the node's hash tool. A file
 * that cannot be read is missing from the result.
 */
export async function nodeDigests(
  session: NodeSession,
  sftp: SFTPWrapper,
  dir: string,
  listFile: string,
  paths: readonly string[],
  agent: NodeAgent | null,
  signal?: AbortSignal,
): Promise<Map<string, string> | null> {
  if (agent) {
    if (paths.length === 0) return new Map();
    const { digests } = await agent.request<{ digests: Record<string, string> }>({ op: 'hash', dir, paths }, { signal });
    return new Map(Object.entries(digests));
  }
  const tool = await hashToolOf(session, signal);
  if (!tool) return null;
  if (paths.length === 0) return new Map();
  const list = paths.map((p) => `./${p}\0`).join('');
  await new Promise<void>((resolve, reject) => sftp.writeFile(`${dir}/${listFile}`, list, (e) => (e ? reject(e) : resolve())));
  const result = await session.exec(hashCommand(tool, dir, listFile), { signal });
  return parseDigests(result.stdout);
}

const MIB = 1024 * 1024;
/** The streaming hasher reads the file in segments of this many MiB (one `dd` each). */
const SEGMENT_MIB = 64;

/** The first SHA-256 (hex) in a hash tool's output. Pure. */
export const firstDigest = (output: string): string | null => /\b([0-9a-f]{64})\b/.exec(output)?.[1] ?? null;

/**
 * SHA-256 of one file on the node, computed while the file is still being written: it is told how far
 * the bytes are complete (`advance`) and hashes up to there, segment by segment, so that when the last
 * byte arrives only the last segment is left to hash. Worth it for large files, where hashing after the
 * transfer would add a second or more per GiB.
 */
export class NodeFileHasher {
  private hashedMib = 0;
  private wantedMib = 0;
  private channel: import('ssh2').ClientChannel | null = null;
  private output = '';
  private finishing = false;
  private aborted = false;
  private readonly done: Promise<string>;

  /** Starts the hashing command on the node; `advance` may be called at once (it is kept until the command runs). */
  constructor(session: NodeSession, tool: Exclude<HashTool, null>, path: string) {
    const hash = tool === 'openssl' ? 'openssl dgst -sha256 -r' : 'sha256sum';
    // Niced: the transfer it follows comes first; the hash catches up on what CPU is left.
    const command = `f=${shellQuote(path)}; while read skip count; do dd if="$f" bs=${MIB} skip="$skip" count="$count" 2>/dev/null || exit 1; done | nice -n 10 ${hash}`;
    this.done = session.openExec(command).then(
      (channel) =>
        new Promise<string>((resolve, reject) => {
          this.channel = channel;
          if (this.aborted) channel.close();
          channel.stderr.resume();
          channel.on('data', (chunk: Buffer) => (this.output += chunk.toString('utf8')));
          channel.once('error', reject);
          channel.once('close', () => {
            const digest = firstDigest(this.output);
            if (digest) resolve(digest);
            else reject(new Error('the node did not report a checksum'));
          });
          this.feed();
          if (this.finishing) channel.end();
        }),
    );
    this.done.catch(() => undefined);
  }

  /** Bytes 0..upTo of the file are complete on the node. */
  advance(upTo: number): void {
    const complete = Math.floor(upTo / MIB);
    if (complete - this.hashedMib >= SEGMENT_MIB) {
      this.wantedMib = complete;
      this.feed();
    }
  }

  /** The file is complete at `size` bytes: the SHA-256 of all of it. */
  finish(size: number): Promise<string> {
    this.wantedMib = Math.ceil(size / MIB);
    this.finishing = true;
    this.feed();
    this.channel?.end();
    return this.done;
  }

  abort(): void {
    this.aborted = true;
    this.channel?.close();
  }

  private feed(): void {
    if (!this.channel || this.wantedMib <= this.hashedMib) return;
    this.channel.write(`${this.hashedMib} ${this.wantedMib - this.hashedMib}\n`);
    this.hashedMib = this.wantedMib;
  }
}
