import { createServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import type { Logger } from 'pino';
import ssh2 from 'ssh2';
import type { Connection, ParsedKey } from 'ssh2';
import { ReverseForwards, openDirectTcpip } from './forwarding.js';
import { readFileSync } from 'node:fs';
import { authorizedKeysOf, publicKeyMatches } from './host-key.js';
import { parseForwardKeys, type ForwardKey } from '../../terminal-protocol/forward-keys.js';
import { parseSshKey } from '../../terminal-protocol/ssh-keys.js';
import type { NodeDirectory } from './node-directory.js';
import { serveSession } from './session.js';
import { sshCipherPreference } from '../../terminal-protocol/ssh-ciphers.js';

const { Server: SshServer } = ssh2;

/** How long connections get to close after the node stops before their sockets are destroyed. */
const CLOSE_GRACE_MS = 1_000;

export interface NodeServerOptions {
  directory: NodeDirectory;
  /** The node's host private key (OpenSSH format). */
  hostKey: string;
  /** The partition's public key: the only credential accepted. */
  authorizedKey: ParsedKey;
  /** The login name a client must use (the node's account, as reported in the partition's nodes). */
  user: string;
  /** Environment of the commands run on the node (before the session's own `env` requests). */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /**
   * An `authorized_keys` file whose keys are accepted too, on connections from the node's peers only (the
   * partition's inter-node key, put there by the core: core/nodes/inter-node-ssh.ts). Read at each attempt.
   */
  peerKeysFile?: string;
  /**
   * The node's forward keys (terminal-protocol/forward-keys.ts: `swm forward`'s direct path), accepted on any
   * connection for what each permits only: a connection to the ports it names, no session, no reverse forward.
   * Read at each attempt.
   */
  forwardKeysFile?: string;
  /**
   * Where a forwarded connection to an address of the partition's private network goes on this machine (the
   * fake Azure plays VMs' 10.x addresses on 127.x); null: such a destination is refused. Default: none.
   */
  privateNetwork?: (address: string) => string | null;
}

/** The keys of an authorized_keys file, none if it cannot be read. */
const readAuthorizedKeys = (path: string): ParsedKey[] => {
  try {
    return authorizedKeysOf(readFileSync(path, 'utf8'));
  } catch {
    return [];
  }
};

/** The forward keys of a file, none if it cannot be read. */
const readForwardKeys = (path: string): Array<{ key: ParsedKey; permitOpen: ForwardKey['permitOpen'] }> => {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return parseForwardKeys(text).flatMap((f) => {
    const key = parseSshKey(f.key);
    return key instanceof Error ? [] : [{ key, permitOpen: f.permitOpen }];
  });
};

/** A TCP listener on host:port (0 for any free port); rejects with EADDRINUSE when the port is taken. */
export function listenOn(host: string, port: number): Promise<TcpServer> {
  const listener = createServer();
  return new Promise((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(port, host, () => {
      listener.off('error', reject);
      resolve(listener);
    });
  });
}

/**
 * One sandbox node's SSH server: public-key authentication with the partition key only, then exec,
 * SFTP confined to the node directory, and TCP forwarding to and from the node's loopback. It runs in the
 * node's own process (node-main.ts), as the node's account; the TCP listener is handed to it already
 * listening (ssh2 gets each socket by injectSocket), so that stopping a node can end every connection for sure.
 */
export class NodeServer {
  private constructor(
    private readonly listeners: TcpServer[],
    private readonly sockets: Set<Socket>,
    private readonly connections: Set<Connection>,
    readonly port: number,
  ) {}

  /** Listen, then serve, in this process (the Azure tests' played VMs). */
  static async start(options: NodeServerOptions & { host: string; port: number }): Promise<NodeServer> {
    return NodeServer.serve(await listenOn(options.host, options.port), options);
  }

  /**
   * Serve SSH on a listener that is already listening (the gate's, reached by the core), and on `peers`, one
   * reached by the partition's other nodes, where the keys of `peerKeysFile` are accepted as well as the
   * partition's.
   */
  static serve(listener: TcpServer, options: NodeServerOptions, peers: TcpServer | null = null): NodeServer {
    const connections = new Set<Connection>();
    const sockets = new Set<Socket>();
    const sshServer = (peer: boolean) =>
      new SshServer({ hostKeys: [options.hostKey], algorithms: { cipher: sshCipherPreference() } }, (client, info) => {
        connections.add(client);
        const logger = options.logger.child({ client: `${info.ip}:${info.port}`, ...(peer ? { peer: true } : {}) });
        client.on('close', () => connections.delete(client));
        client.on('error', (error: Error) => logger.debug({ err: error }, 'ssh connection error'));
        /** Where a connection authenticated by a forward key may connect; null: a full login. */
        let onlyTo: ForwardKey['permitOpen'] | null = null;
        client.on('authentication', (ctx) => {
          if (ctx.method !== 'publickey' || ctx.username !== options.user) return ctx.reject(['publickey']);
          const proof = { blob: ctx.blob, signature: ctx.signature, hashAlgo: ctx.hashAlgo };
          const accepted = (key: ParsedKey) => publicKeyMatches(key, ctx.key, proof);
          const granted = accepted(options.authorizedKey) || (peer && options.peerKeysFile !== undefined && readAuthorizedKeys(options.peerKeysFile).some(accepted));
          if (granted) return ctx.accept();
          const forward = options.forwardKeysFile === undefined ? undefined : readForwardKeys(options.forwardKeysFile).find((f) => accepted(f.key));
          if (!forward) return ctx.reject(['publickey']);
          onlyTo = forward.permitOpen;
          ctx.accept();
        });
        client.on('ready', () => {
          const permitted = onlyTo;
          if (permitted) {
            // A forward key: connections to what it names, nothing else.
            client.on('session', (_accept, reject) => reject());
            client.on('request', (_accept, reject) => reject?.());
            client.on('tcpip', (accept, reject, tcp) => {
              if (!permitted.some((p) => p.host === tcp.destIP && p.port === tcp.destPort)) {
                logger.info({ destination: tcp.destIP, port: tcp.destPort }, 'refused a forward key a connection it does not permit');
                return reject();
              }
              openDirectTcpip(accept, reject, tcp, logger);
            });
            return;
          }
          const forwards = new ReverseForwards(client, logger);
          client.on('session', (accept) => serveSession(accept(), options.directory, options.env, logger));
          client.on('tcpip', (accept, reject, tcp) => openDirectTcpip(accept, reject, tcp, logger, options.privateNetwork));
          client.on('request', (accept, reject, name, bind) => forwards.request(accept, reject, name, bind));
          client.on('close', () => forwards.closeAll());
        });
      });
    const serveOn = (server: TcpServer, ssh: InstanceType<typeof SshServer>) => {
      server.on('connection', (socket: Socket) => {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        // Commands and their small answers go out at once rather than waiting on Nagle's algorithm.
        socket.setNoDelay(true);
        ssh.injectSocket(socket);
      });
      server.on('error', (error: Error) => options.logger.error({ err: error }, 'node listener error'));
    };
    serveOn(listener, sshServer(false));
    const extra = peers ? [peers] : [];
    for (const server of extra) serveOn(server, sshServer(true));
    return new NodeServer([listener, ...extra], sockets, connections, (listener.address() as AddressInfo).port);
  }

  /** Stop listening and end every SSH connection. Processes started on the node keep running. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      let open = this.listeners.length;
      for (const listener of this.listeners) listener.close(() => --open === 0 && resolve());
      for (const client of this.connections) client.end();
      if (this.sockets.size > 0) {
        setTimeout(() => {
          for (const socket of this.sockets) socket.destroy();
        }, CLOSE_GRACE_MS).unref();
      }
    });
  }
}
