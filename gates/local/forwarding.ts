import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { AcceptConnection, Connection, RejectConnection, ServerChannel, TcpipBindInfo, TcpipRequestInfo } from 'ssh2';
import { coalesceWrites, spliceStreams } from '../../terminal-protocol/streams.js';

const LOOPBACK_NAMES = new Set(['127.0.0.1', 'localhost', '::1']);

/** A node forwards only to its own loopback: the core reaches a job's ports, nothing else. Pure. */
export const isLoopbackDestination = (host: string): boolean => LOOPBACK_NAMES.has(host.toLowerCase());

/**
 * Join a TCP connection and an SSH channel both ways. Half-closes pass through (a client that has finished
 * sending still gets its answer), and each side closes once both directions are done, so the last bytes
 * are never cut off; an error or abort on either side takes the other down.
 */
const splice = (socket: Socket, channel: ServerChannel): void => {
  socket.setNoDelay(true);
  spliceStreams(coalesceWrites(socket), channel);
};

/**
 * `direct-tcpip` (ssh -L): a connection to a loopback port of the node (or, through `privateNetwork`, to a peer
 * on the partition's private network), accepted once it is made.
 */
export function openDirectTcpip(
  accept: AcceptConnection<ServerChannel>,
  reject: RejectConnection,
  info: TcpipRequestInfo,
  logger: Logger,
  privateNetwork: (address: string) => string | null = () => null,
): void {
  const destination = isLoopbackDestination(info.destIP) ? info.destIP : privateNetwork(info.destIP);
  if (destination === null) {
    logger.info({ destination: info.destIP, port: info.destPort }, 'refused forwarding to a non-loopback destination');
    reject();
    return;
  }
  const socket = connect({ host: destination, port: info.destPort, allowHalfOpen: true });
  socket.once('error', () => reject());
  socket.once('connect', () => {
    socket.removeAllListeners('error');
    splice(socket, accept());
  });
}

/**
 * `tcpip-forward` (ssh -R) for one SSH connection: a listener on the node's loopback whose connections
 * are handed to the client; cancelled by `cancel-tcpip-forward` or when the connection ends.
 */
export class ReverseForwards {
  private readonly listeners = new Map<string, Server>();

  constructor(
    private readonly client: Connection,
    private readonly logger: Logger,
  ) {}

  request(accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info: TcpipBindInfo): void {
    if (name === 'tcpip-forward') this.listen(info, accept, reject);
    else if (name === 'cancel-tcpip-forward') {
      const key = `${info.bindAddr}:${info.bindPort}`;
      const listener = this.listeners.get(key);
      if (!listener) return reject?.();
      this.listeners.delete(key);
      listener.close();
      accept?.();
    } else reject?.();
  }

  closeAll(): void {
    for (const listener of this.listeners.values()) listener.close();
    this.listeners.clear();
  }

  private listen(info: TcpipBindInfo, accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined): void {
    const host = info.bindAddr === '::1' ? '::1' : '127.0.0.1';
    const listener = createServer({ allowHalfOpen: true }, (socket) => {
      const boundPort = (listener.address() as AddressInfo).port;
      this.client.forwardOut(info.bindAddr, boundPort, socket.remoteAddress ?? host, socket.remotePort ?? 0, (error, channel) => {
        if (error) {
          socket.destroy();
          return;
        }
        splice(socket, channel);
      });
    });
    listener.once('error', (error) => {
      this.logger.info({ err: error, port: info.bindPort }, 'reverse forward could not listen');
      reject?.();
    });
    listener.listen(info.bindPort, host, () => {
      const port = (listener.address() as AddressInfo).port;
      this.listeners.set(`${info.bindAddr}:${port}`, listener);
      accept?.(port);
    });
  }
}
