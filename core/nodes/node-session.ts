import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Client, type ClientChannel, type SFTPWrapper } from 'ssh2';
import { ErrorCode, RpcError } from '../../terminal-protocol/errors.js';
import { coalesceWrites } from '../../terminal-protocol/streams.js';
import { sshFingerprint } from '../../terminal-protocol/ssh-keys.js';
import { sshCipherPreference } from '../../terminal-protocol/ssh-ciphers.js';
import type { PartitionNode } from '../../terminal-protocol/common.js';

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** A connection the node's SSH server accepted on a reverse forward (tcpip-forward) of this session. */
export interface ReverseConnection {
  /** The node-side address and port the connection came in on. */
  bindAddr: string;
  bindPort: number;
  accept: () => ClientChannel;
  reject: () => void;
}

export class HostKeyMismatch extends Error {
  override name = 'HostKeyMismatch';
}

/**
 * One SSH connection to one node, authenticated with the partition's key, refusing any host key but the
 * pinned one. Exec and SFTP ride on it; one SFTP session is opened lazily and shared.
 */
export class NodeSession {
  private sftpSession: Promise<SFTPWrapper> | null = null;
  private closed = false;
  /** Whether the node agent may be started over this connection (its remote's `nodeAgent`, set by the node pool). */
  agentAllowed = true;
  private readonly reverseListeners = new Set<(connection: ReverseConnection) => void>();
  private readonly closeListeners = new Set<() => void>();
  /** What was learnt of the node over this connection and cannot change while it lasts, by name. */
  private readonly learnt = new Map<string, Promise<unknown>>();

  private constructor(
    readonly node: PartitionNode,
    private readonly client: Client,
    /** The node's host public key as it presented it (checked against the pinned fingerprint), OpenSSH format. */
    readonly hostKey: string,
    /** The cipher negotiated for what the core sends (ssh-ciphers.ts: AES-GCM unless the node has none). */
    readonly cipher: string,
  ) {
    client.on('close', () => {
      this.closed = true;
      this.sftpSession = null;
      for (const listener of [...this.closeListeners]) listener();
      this.closeListeners.clear();
    });
    client.on('error', () => {});
    client.on('tcp connection', (details, accept, reject) => {
      const connection: ReverseConnection = { bindAddr: details.destIP, bindPort: details.destPort, accept, reject };
      if (this.reverseListeners.size === 0) reject();
      for (const listener of this.reverseListeners) listener(connection);
    });
  }

  /**
   * What `learn` finds out of the node, once per connection (the container runtime, peers linked): a partition
   * reused by the next job does not ask again. A failure is not remembered.
   */
  remember<T>(what: string, learn: () => Promise<T>): Promise<T> {
    const known = this.learnt.get(what) as Promise<T> | undefined;
    if (known) return known;
    const learning = learn();
    this.learnt.set(what, learning);
    learning.catch(() => this.learnt.delete(what));
    return learning;
  }

  /** Forget what `remember` learnt as `what` (it no longer holds: an agent that went away). */
  forget(what: string): void {
    this.learnt.delete(what);
  }

  /** Called once when the connection closes (at once if it is closed already). Returns a function that unsubscribes. */
  onClose(listener: () => void): () => void {
    if (this.closed) {
      queueMicrotask(listener);
      return () => {};
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /**
   * A TCP connection made by the node to `host:port` on its side (direct-tcpip, as `ssh -L`): how the core
   * reaches a job's port. Rejects with Unavailable when nothing listens there.
   */
  forwardOut(host: string, port: number): Promise<ClientChannel> {
    return new Promise((resolve, reject) =>
      this.client.forwardOut('127.0.0.1', 0, host, port, (error, channel) => {
        if (error) reject(new RpcError(ErrorCode.Unavailable, `node ${this.node.name} cannot connect to ${host}:${port}: ${error.message}`));
        else resolve(channel);
      }),
    );
  }

  /**
   * Ask the node to listen on `host:port` (0: a port of its choice) and hand the connections to the
   * `onReverseConnection` listeners (tcpip-forward, as `ssh -R`). Resolves with the port bound.
   */
  forwardIn(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) =>
      this.client.forwardIn(host, port, (error, bound) => (error ? reject(error) : resolve(bound || port))),
    );
  }

  /** Stop a reverse forward (the node closes its listener). */
  unforwardIn(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => this.client.unforwardIn(host, port, (error) => (error ? reject(error) : resolve())));
  }

  /** Hear the connections arriving on this session's reverse forwards. Returns a function that unsubscribes. */
  onReverseConnection(listener: (connection: ReverseConnection) => void): () => void {
    this.reverseListeners.add(listener);
    return () => this.reverseListeners.delete(listener);
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /**
   * Connect to a node at its public address (else its private one), or over `via`: a channel to its SSH port
   * opened through another node (a compute node with no public address, reached through the head as
   * `ssh -J` would).
   */
  static connect(node: PartitionNode, privateKey: string, options: { timeoutMs?: number; signal?: AbortSignal; via?: Duplex } = {}): Promise<NodeSession> {
    const expected = node.hostKeyFingerprint;
    if (!expected) return Promise.reject(new HostKeyMismatch(`node ${node.name} has no pinned host key: refusing to connect`));
    const host = node.publicIp ?? node.privateIp;
    if (!host && !options.via) return Promise.reject(new RpcError(ErrorCode.Unavailable, `node ${node.name} has no address`));
    return new Promise((resolve, reject) => {
      const client = new Client();
      let presented: string | null = null;
      let presentedKey = '';
      let cipher = '';
      let settled = false;
      const onAbort = () => {
        settled = true;
        client.end();
        reject(new RpcError(ErrorCode.Conflict, 'aborted'));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      client.once('handshake', (negotiated) => (cipher = negotiated.cs.cipher));
      client.once('ready', () => {
        options.signal?.removeEventListener('abort', onAbort);
        settled = true;
        resolve(new NodeSession(node, client, presentedKey, cipher));
      });
      // `on`, not `once`: a failed handshake can emit several errors (a reset or a time-out, then "Connection
      // lost before handshake" when the socket closes), and an error nobody listens to would end the process.
      client.on('error', (error) => {
        if (settled) return;
        settled = true;
        options.signal?.removeEventListener('abort', onAbort);
        if (presented !== null && presented !== expected)
          reject(new HostKeyMismatch(`host key of node ${node.name} is ${presented}, expected ${expected}: refusing to connect`));
        else reject(error);
      });
      let sock: Duplex;
      if (options.via) sock = options.via;
      else {
        const socket = new Socket();
        socket.setNoDelay(true);
        socket.connect({ host: host!, port: node.sshPort });
        // After connect(), which puts back the prototype's write.
        coalesceWrites(socket);
        sock = socket;
      }
      client.connect({
        sock: sock as Socket,
        username: node.sshUser,
        privateKey,
        readyTimeout: options.timeoutMs ?? 20_000,
        keepaliveInterval: 5_000,
        keepaliveCountMax: 4,
        algorithms: { cipher: sshCipherPreference() },
        hostVerifier: (key: Buffer) => {
          presented = sshFingerprint(key);
          presentedKey = openSshPublicKey(key);
          return presented === expected;
        },
      });
    });
  }

  /** Run a command; resolves with its exit status and output (output is for short commands only). */
  exec(command: string, options: { signal?: AbortSignal; onStdout?: (chunk: Buffer) => void } = {}): Promise<ExecResult> {
    // An abort that came first has no event left to fire: the command would run unstoppable.
    if (options.signal?.aborted) return Promise.reject(new RpcError(ErrorCode.Conflict, 'aborted'));
    return new Promise((resolve, reject) => {
      this.client.exec(command, (error, channel: ClientChannel) => {
        if (error) return reject(error);
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let code: number | null = null;
        let signal: string | null = null;
        const onAbort = () => channel.close();
        options.signal?.addEventListener('abort', onAbort, { once: true });
        channel.on('data', (chunk: Buffer) => (options.onStdout ? options.onStdout(chunk) : out.push(chunk)));
        channel.stderr.on('data', (chunk: Buffer) => err.push(chunk));
        channel.on('exit', (c: number | null, s?: string) => {
          code = c;
          signal = s ?? null;
        });
        channel.on('close', () => {
          options.signal?.removeEventListener('abort', onAbort);
          if (options.signal?.aborted) return reject(new RpcError(ErrorCode.Conflict, 'aborted'));
          // No exit status at all: the connection went down under the command (the node or its gate restarting),
          // and what it printed may be cut short.
          if (code === null && signal === null)
            return reject(new RpcError(ErrorCode.Unavailable, `lost the connection to node ${this.node.name} while running "${command.slice(0, 80)}"`));
          resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
        });
      });
    });
  }

  /**
   * Start a command and hand back its channel: the caller writes its stdin and reads its output (a
   * long-running helper, such as a checksum fed as a transfer progresses).
   */
  openExec(command: string, options: { pty?: { cols: number; rows: number; term: string } } = {}): Promise<ClientChannel> {
    return new Promise((resolve, reject) =>
      this.client.exec(command, options.pty ? { pty: options.pty } : {}, (error, channel) => (error ? reject(error) : resolve(channel))),
    );
  }

  /** Run a command that must succeed; rejects with its stderr otherwise. */
  async run(command: string, signal?: AbortSignal): Promise<string> {
    const result = await this.exec(command, { signal });
    if (result.code !== 0) throw new Error(`"${command.slice(0, 80)}" failed on ${this.node.name} (${result.code ?? result.signal}): ${result.stderr.trim()}`);
    return result.stdout;
  }

  sftp(): Promise<SFTPWrapper> {
    if (!this.sftpSession) {
      this.sftpSession = new Promise((resolve, reject) => this.client.sftp((error, sftp) => (error ? reject(error) : resolve(failingLateRequests(sftp)))));
      this.sftpSession.catch(() => (this.sftpSession = null));
    }
    return this.sftpSession;
  }

  /**
   * An SFTP session of its own (the caller ends it). An SSH server serves each session in its own process,
   * so thousands of small files spread over a few sessions are written in parallel on the node.
   */
  openSftp(): Promise<SFTPWrapper> {
    return new Promise((resolve, reject) => this.client.sftp((error, sftp) => (error ? reject(error) : resolve(failingLateRequests(sftp)))));
  }

  close(): void {
    this.closed = true;
    this.client.end();
  }
}

/**
 * ssh2 (1.17) answers the requests pending when an SFTP channel ends with "No response from server", but takes
 * any request made afterwards as sent and never answers it: a caller that, say, closes a remote handle after
 * losing the connection would wait for ever. Once the channel has ended, every request fails at once instead,
 * with the same error (a lost connection, which the steps retry).
 */
function failingLateRequests(sftp: SFTPWrapper): SFTPWrapper {
  type Request = { cb?: (error: Error) => void };
  const internal = sftp as unknown as { _requests: Record<number, Request> };
  const fail = (request: Request | undefined) => queueMicrotask(() => request?.cb?.(new Error('No response from server')));
  const ended = () => {
    for (const request of Object.values(internal._requests)) fail(request);
    internal._requests = new Proxy({} as Record<number, Request>, {
      set: (_target, _id, request: Request) => {
        fail(request);
        return true;
      },
    });
  };
  sftp.once('end', ended);
  sftp.once('close', ended);
  return sftp;
}

/** A public key blob (RFC 4253: string type, then the key's fields) as an OpenSSH line, `type base64`. Pure. */
export function openSshPublicKey(blob: Buffer): string {
  const length = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  const type = blob.subarray(4, 4 + length).toString('latin1');
  return `${/^[a-z0-9@.-]+$/i.test(type) ? type : 'ssh-ed25519'} ${blob.toString('base64')}`;
}

/** Quote a string for a POSIX shell. */
export const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
