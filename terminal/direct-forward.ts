import { Socket } from 'node:net';
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import type { TerminalClient } from '../terminal-protocol/client.js';
import type { ResultOf } from '../terminal-protocol/method.js';
import { sshCipherPreference } from '../terminal-protocol/ssh-ciphers.js';
import { sshFingerprint } from '../terminal-protocol/ssh-keys.js';
import { coalesceWrites } from '../terminal-protocol/streams.js';
import type { TerminalMethods } from '../terminal-protocol/terminal-methods.js';

const { Client } = ssh2;

type Grant = ResultOf<TerminalMethods, 'job.forward.direct'>;

/** How long the node has to answer before the direct path is given up for the core's. */
const CONNECT_TIMEOUT_MS = 5_000;
/** How long after a failure the direct path is tried again (the job may have started meanwhile). */
const RETRY_AFTER_MS = 10_000;

const isLoopback = (host: string): boolean => /^(127\.\d+\.\d+\.\d+|localhost|::1|\[::1\])$/i.test(host);

/**
 * Whether a node at `nodeHost` could be this machine's neighbour: a loopback address names the core's own host,
 * which is this machine only when the core is reached on loopback too. Pure.
 */
export const mayReach = (nodeHost: string, coreUrl: string): boolean => !isLoopback(nodeHost) || isLoopback(new URL(coreUrl).hostname);

/**
 * `swm forward`'s direct path (terminal-protocol/forward-keys.ts): one SSH connection from this terminal to the
 * job's head node, with the key the core made for this forward and the node's pinned host key, each local
 * connection a `direct-tcpip` channel to the job's port. No hop through the core, nor its TLS: the bytes are
 * encrypted once, as `ssh -L` does.
 */
export class DirectPath {
  private lost = false;

  private constructor(
    private readonly client: InstanceType<typeof Client>,
    readonly grant: Grant,
  ) {
    client.on('close', () => (this.lost = true));
    client.on('error', () => (this.lost = true));
  }

  /** Ask the core for a grant and connect with it; the reason when there is no direct path. */
  static async open(core: TerminalClient, id: string, port: number, coreUrl: string): Promise<DirectPath | string> {
    let grant: Grant;
    try {
      grant = await core.call('job.forward.direct', { id, port });
    } catch (error) {
      return (error as Error).message;
    }
    if (!mayReach(grant.host, coreUrl)) return `the job's node (${grant.host}) is on the core's host, not this one`;
    const client = new Client();
    return new Promise((resolve) => {
      let settled = false;
      const fail = (reason: string) => {
        if (settled) return;
        settled = true;
        client.end();
        resolve(reason);
      };
      client.once('ready', () => {
        settled = true;
        resolve(new DirectPath(client, grant));
      });
      client.on('error', (error: Error) => fail(`cannot reach the job's node at ${grant.host}:${grant.port}: ${error.message}`));
      const socket = new Socket();
      socket.setNoDelay(true);
      socket.once('error', () => undefined);
      socket.connect({ host: grant.host, port: grant.port });
      coalesceWrites(socket);
      client.connect({
        sock: socket,
        username: grant.user,
        privateKey: grant.privateKey,
        readyTimeout: CONNECT_TIMEOUT_MS,
        keepaliveInterval: 15_000,
        algorithms: { cipher: sshCipherPreference() },
        // The node must prove it is the one the core pinned: nothing else gets the job's traffic.
        hostVerifier: (key: Buffer) => sshFingerprint(key) === grant.hostKeyFingerprint,
      });
    });
  }

  get isOpen(): boolean {
    return !this.lost;
  }

  /** A channel to the job's port; rejects when the node refuses it or the connection is gone. */
  channel(): Promise<ClientChannel> {
    const { host, port } = this.grant.target;
    return new Promise((resolve, reject) => this.client.forwardOut('127.0.0.1', 0, host, port, (error, channel) => (error ? reject(error) : resolve(channel))));
  }

  close(): void {
    this.lost = true;
    this.client.end();
  }
}

/**
 * The direct path of one `swm forward`, made at the first connection and kept while it works; after a failure
 * (the job not running yet, the node out of reach) connections go through the core, and the direct path is tried
 * again a little later. `onChange` hears each change of path, for the user.
 */
export class DirectPaths {
  private current: Promise<DirectPath | null> | null = null;
  private failedAt = 0;
  private attempting = false;
  private said: string | null = null;

  constructor(
    private readonly core: TerminalClient,
    private readonly id: string,
    private readonly port: number,
    private readonly coreUrl: string,
    private readonly onChange: (path: DirectPath | null, reason: string | null) => void,
  ) {}

  /**
   * The direct path, or null where connections should go through the core for now. The first connection waits for
   * the first attempt (quick where the node answers); later attempts, after a failure or a lost path, are made in
   * the background while connections go through the core, so that an unreachable node never stalls them again.
   */
  async get(): Promise<DirectPath | null> {
    if (this.current === null) return this.attempt();
    if (this.attempting) return null;
    const known = await this.current;
    if (known?.isOpen) return known;
    if (Date.now() - this.failedAt >= RETRY_AFTER_MS) void this.attempt();
    return null;
  }

  private attempt(): Promise<DirectPath | null> {
    this.attempting = true;
    this.current = DirectPath.open(this.core, this.id, this.port, this.coreUrl).then((opened) => {
      this.attempting = false;
      if (typeof opened === 'string') {
        this.failedAt = Date.now();
        this.tell(null, opened);
        return null;
      }
      this.tell(opened, null);
      return opened;
    });
    return this.current;
  }

  close(): void {
    void this.current?.then((path) => path?.close());
  }

  private tell(path: DirectPath | null, reason: string | null): void {
    const key = path ? `direct ${path.grant.host}` : `core ${reason}`;
    if (key === this.said) return;
    this.said = key;
    this.onChange(path, reason);
  }
}
