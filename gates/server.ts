import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ConnectionLimits } from '../spool-bootstrap/connection-limits.js';
import { listenMtls } from '../spool-bootstrap/listener.js';
import type { SpoolPaths } from '../spool-bootstrap/paths.js';
import { Revocations } from '../spool-bootstrap/revocations.js';
import type { Partition } from '../terminal-protocol/common.js';
import { gateMethods, type GateMethods } from '../terminal-protocol/gate-methods.js';
import type { MethodTable, NotificationTable } from '../terminal-protocol/method.js';
import { DEFAULT_MAX_MESSAGE_BYTES, RpcPeer, type Handler } from '../terminal-protocol/peer.js';
import type { Gate } from './gate.js';

export interface ServeGateOptions {
  spool: SpoolPaths;
  /** The gate's name in the config: its certificate is `spool.gate(name)`. */
  name: string;
  host: string;
  port: number;
  logger: Logger;
  maxMessageBytes?: number;
  /** Connection caps and the TLS handshake time-out of the gate's listener (defaults when absent). */
  limits?: Partial<ConnectionLimits>;
}

export interface GateServer {
  port: number;
  close(): Promise<void>;
}

/** The product version reported by gate.hello (package.json, two levels above dist/gates/). */
export const PRODUCT_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();

/** The wire methods mapped onto a Gate. Pure mapping; validation and roles are RpcPeer's. */
export function gateHandler(gate: Gate, name: string): Handler<GateMethods> {
  const handle = async (method: keyof GateMethods, params: unknown): Promise<unknown> => {
    switch (method) {
      case 'gate.hello':
        return { kind: gate.kind, name, version: PRODUCT_VERSION };
      case 'partition.create':
        return gate.create(params as Parameters<Gate['create']>[0]);
      case 'partition.get':
        return gate.get(params as Parameters<Gate['get']>[0]);
      case 'partition.list':
        return gate.list();
      case 'partition.delete':
        return gate.delete((params as { id: string }).id);
      case 'partition.prepare': {
        const { id, containerImages } = params as { id: string; containerImages: string[] };
        await gate.prepare?.(id, containerImages);
        return { id };
      }
      case 'partition.extend': {
        const { id, lifetimeSec } = params as { id: string; lifetimeSec: number };
        const expiresAt = (await gate.renewLease?.(id, lifetimeSec)) ?? null;
        return { id, expiresAt: expiresAt?.toISOString() ?? null };
      }
      case 'flavor.list':
        return gate.flavors();
      case 'image.list':
        return gate.images();
    }
  };
  return handle as Handler<GateMethods>;
}

/**
 * Put a Gate on the wire (DESIGN.md §8): an mTLS WebSocket server with the gate's certificate, answering
 * the gate methods to `core` certificates only (RpcPeer checks the caller's role per method), and
 * forwarding every partition change to every connected core as `partition.event`.
 */
export async function serveGate(gate: Gate, options: ServeGateOptions): Promise<GateServer> {
  const { spool, name, logger } = options;
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const peers = new Set<RpcPeer<GateMethods, MethodTable, NotificationTable>>();
  const handler = gateHandler(gate, name);
  let open = true;

  gate.onEvent((partition: Partition) => {
    if (!open) return;
    for (const peer of peers) peer.notify('partition.event', partition);
  });

  const listener = await listenMtls({
    caCertPath: spool.ca.cert,
    server: spool.gate(name),
    host: options.host,
    port: options.port,
    revocations: new Revocations(spool.revoked),
    maxMessageBytes,
    ...(options.limits ? { limits: options.limits } : {}),
    onRefused: (reason, remote) => logger.warn({ remote, reason }, 'connection refused'),
    onSocket: (socket, identity, request) => {
      const log = logger.child({ peer: identity.name, role: identity.role, remote: request.socket.remoteAddress });
      const peer = new RpcPeer<GateMethods, MethodTable, NotificationTable>(socket, {
        serves: { methods: gateMethods, handler, role: identity.role },
        maxMessageBytes,
        onViolation: (error) => log.warn({ code: error.code, reason: error.message }, 'request refused'),
      });
      peers.add(peer);
      peer.on('handler-error', (error: unknown, method: string) => log.error({ err: error, method }, 'gate method failed'));
      peer.on('socket-error', (error: unknown) => log.debug({ err: error }, 'socket error'));
      peer.on('close', () => {
        peers.delete(peer);
        log.info('disconnected');
      });
      log.info('connected');
    },
  });
  logger.info({ host: options.host, port: listener.port }, 'gate listening');

  return {
    port: listener.port,
    close: async () => {
      open = false;
      await listener.close();
      peers.clear();
    },
  };
}
