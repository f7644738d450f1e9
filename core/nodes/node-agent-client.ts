import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ClientChannel, SFTPWrapper } from 'ssh2';
import { FrameReader, encodeFrame, type AgentHeader } from '../../node-agent/agent.js';
import { agentCommand, agentPath } from '../../node-agent/launch.js';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import type { NodeSession } from './node-session.js';

/** The agent's program, as the core uploads it, and the hash that names it on the nodes. Read once. */
let program: { text: Buffer; hash: string } | null = null;
function agentProgram(): { text: Buffer; hash: string } {
  if (!program) {
    const text = readFileSync(new URL('../../node-agent/agent.js', import.meta.url));
    program = { text, hash: createHash('sha256').update(text).digest('hex').slice(0, 16) };
  }
  return program;
}

/** How long a starting agent has to answer its first frame. */
const HELLO_TIMEOUT_MS = 20_000;

/** Put the agent's program on the node unless it is there already (written aside, then renamed: never half a program). */
async function upload(sftp: SFTPWrapper, path: string, text: Buffer): Promise<void> {
  const size = await new Promise<number | null>((resolve) => sftp.stat(path, (error, stats) => resolve(error ? null : stats.size)));
  if (size === text.length) return;
  await new Promise<void>((resolve) => sftp.mkdir('.skyport', { mode: 0o700 }, () => resolve()));
  const partial = `${path}.${process.pid}.partial`;
  await new Promise<void>((resolve, reject) => sftp.writeFile(partial, text, { mode: 0o600 }, (e) => (e ? reject(e) : resolve())));
  await new Promise<void>((resolve, reject) => sftp.rename(partial, path, (e) => (e ? reject(e) : resolve())));
}

interface Pending {
  resolve: (result: unknown, body: Buffer) => void;
  reject: (error: Error) => void;
  onEvent?: (event: string, header: AgentHeader, body: Buffer) => void;
}

/** An error the agent answered with; `code` is its errno name (ENOSPC, ENOENT, ...). */
export class AgentOperationError extends Error {
  override name = 'AgentOperationError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/**
 * The core's end of a node agent (node-agent/agent.ts): one exec channel per node connection, requests by id,
 * transfers as data frames with the channel's flow control. A lost channel fails what is pending as a lost
 * connection (Unavailable), which the steps retry as any other.
 */
export class NodeAgent {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private lost: Error | null = null;
  private stderr = '';

  private constructor(
    private readonly channel: ClientChannel,
    readonly nodeName: string,
  ) {
    const reader = new FrameReader((header, body) => this.frame(header, body));
    channel.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (error) {
        this.fail(new Error(`node ${nodeName}'s agent spoke out of turn: ${(error as Error).message}`));
        channel.close();
      }
    });
    channel.stderr.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString('utf8')).slice(-2000)));
    channel.on('error', () => undefined);
    channel.once('close', () => {
      const said = this.stderr.trim().split('\n').pop();
      this.fail(new RpcError(ErrorCode.Unavailable, `lost the connection to node ${nodeName}'s agent${said ? ` (${said})` : ''}`));
    });
  }

  /**
   * Start the agent on the node (uploading its program first where it is missing). Null when the node cannot take
   * or run it (no Node 18 or later on its PATH): the caller falls back to commands over SSH.
   */
  static async start(session: NodeSession): Promise<NodeAgent | null> {
    const { text, hash } = agentProgram();
    let channel: ClientChannel;
    try {
      await upload(await session.sftp(), agentPath(hash), text);
      channel = await session.openExec(agentCommand(hash));
    } catch {
      // A node that cannot take the program (its disk full, its home read-only) is worked without it; a lost
      // connection fails the commands that follow, which the steps retry on a new one.
      return null;
    }
    const agent = new NodeAgent(channel, session.node.name);
    session.onClose(() => agent.channel.close());
    const timer = setTimeout(() => agent.channel.close(), HELLO_TIMEOUT_MS);
    try {
      await agent.request({ op: 'hello' });
      return agent;
    } catch {
      agent.channel.close();
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  get isOpen(): boolean {
    return this.lost === null;
  }

  /** One operation: its answer (`onEvent` hears what it says on the way, such as `started`). `body`: its bytes, in the same frame. */
  request<T>(header: Omit<AgentHeader, 'id'>, options: { signal?: AbortSignal; onEvent?: (event: string) => void; body?: Buffer } = {}): Promise<T> {
    const id = this.nextId++;
    const answer = this.register<T>(id, options);
    this.write(encodeFrame({ ...header, id }, options.body));
    return answer;
  }

  /** A small file whole (at most `max` bytes), with the SHA-256 the node computed of what it read. */
  async readFile(path: string, max: number, signal?: AbortSignal): Promise<{ data: Buffer; sha256: string }> {
    const id = this.nextId++;
    let data: Buffer = Buffer.alloc(0);
    const answer = this.register<{ sha256: string }>(id, { signal, onBody: (body) => (data = body) });
    this.write(encodeFrame({ id, op: 'read', path, max }));
    const { sha256 } = await answer;
    return { data, sha256 };
  }

  /**
   * Write small files whole under `dir`, in one frame (`write`), after removing `remove` (paths under `dir`): the
   * runner's files of a job, say. Each is replaced, never written through a link.
   */
  writeFiles(dir: string, files: ReadonlyArray<{ path: string; data: string | Buffer; mode: number }>, remove: readonly string[] = []): Promise<unknown> {
    const datas = files.map((f) => (typeof f.data === 'string' ? Buffer.from(f.data, 'utf8') : f.data));
    const header = { op: 'write', dir, remove, files: files.map((f, i) => ({ path: f.path, size: datas[i]!.length, mode: f.mode })) };
    return this.request(header, { body: Buffer.concat(datas) });
  }

  /**
   * An operation that streams bytes to the node (`put`, `untar`): `produce` writes them (each write waits for the
   * channel's window); resolves with the agent's answer once all are written and ended. Rejects as soon as the
   * agent refuses (a full disk), without writing the rest.
   */
  async send<T>(header: Omit<AgentHeader, 'id'>, produce: (write: (chunk: Buffer) => Promise<void>) => Promise<void>, signal?: AbortSignal): Promise<T> {
    const id = this.nextId++;
    let refused: Error | null = null;
    const answer = this.register<T>(id, { signal });
    answer.catch((error: Error) => (refused = error));
    this.write(encodeFrame({ ...header, id }));
    try {
      await produce(async (chunk) => {
        if (refused) throw refused;
        if (!this.write(encodeFrame({ id, op: 'data' }, chunk))) await this.drained();
        if (refused) throw refused;
      });
    } finally {
      // Ended either way: on the caller's failure, the agent closes the file (and answers that it is short).
      if (!refused && !this.lost) this.write(encodeFrame({ id, op: 'end' }));
    }
    return answer;
  }

  /**
   * Follow files as they grow (`follow`): `onFrom` hears their sizes when following starts, `onData` every byte
   * written after, in order per file (`stream`: the index of its path). Runs until `stop()`; `ended` settles when
   * the agent stops following (rejected on a read error or a lost connection).
   */
  follow(paths: readonly string[], onFrom: (offsets: number[]) => void, onData: (stream: number, offset: number, data: Buffer) => void): { stop(): void; ended: Promise<void> } {
    const id = this.nextId++;
    const ended = this.register<void>(id, {
      onEvent: (event, header, body) => {
        if (event === 'from') onFrom(header.offsets as number[]);
        else if (event === 'data') onData(Number(header.stream), Number(header.offset), body);
      },
    });
    this.write(encodeFrame({ id, op: 'follow', paths }));
    let stopped = false;
    return {
      ended,
      stop: () => {
        if (stopped || this.lost) return;
        stopped = true;
        this.write(encodeFrame({ id, op: 'unfollow' }));
      },
    };
  }

  close(): void {
    this.channel.close();
  }

  private register<T>(id: number, options: { signal?: AbortSignal; onEvent?: Pending['onEvent']; onBody?: (body: Buffer) => void }): Promise<T> {
    if (this.lost) return Promise.reject(this.lost);
    if (options.signal?.aborted) return Promise.reject(new RpcError(ErrorCode.Conflict, 'aborted'));
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        // Forgotten here; what the agent does goes on (a runner keeps running, as when an SSH channel closes).
        this.pending.delete(id);
        reject(new RpcError(ErrorCode.Conflict, 'aborted'));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => options.signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        resolve: (result, body) => {
          settle();
          options.onBody?.(body);
          resolve(result as T);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
        onEvent: options.onEvent,
      });
    });
  }

  private write(buffers: Buffer[]): boolean {
    let ok = true;
    for (const buffer of buffers) ok = this.channel.write(buffer);
    return ok;
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const go = () => {
        this.channel.off('drain', go);
        this.channel.off('close', go);
        resolve();
      };
      this.channel.on('drain', go);
      this.channel.on('close', go);
    });
  }

  private frame(header: AgentHeader, body: Buffer): void {
    const waiter = this.pending.get(header.id);
    if (!waiter) return;
    if (header.event) return waiter.onEvent?.(header.event, header, body);
    if (!header.done) return;
    this.pending.delete(header.id);
    if (header.error !== undefined) waiter.reject(new AgentOperationError(`node ${this.nodeName}: ${header.error}`, header.code ?? 'EIO'));
    else waiter.resolve(header.result, body);
  }

  private fail(error: Error): void {
    if (this.lost) return;
    this.lost = error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }
}

/**
 * The node's agent on this connection, started at the first need; null where the node cannot run one. A lost
 * agent is started again at the next need.
 */
export async function nodeAgent(session: NodeSession): Promise<NodeAgent | null> {
  if (!session.agentAllowed) return null;
  const agent = await session.remember('node agent', () => NodeAgent.start(session));
  if (agent && !agent.isOpen) {
    session.forget('node agent');
    return session.remember('node agent', () => NodeAgent.start(session));
  }
  return agent;
}
