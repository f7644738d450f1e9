import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { SUBPROTOCOL, WS_PATH, hardFrameLimit } from '../terminal-protocol/peer.js';
import { identityOf, type Identity } from './pki.js';
import type { CertPaths } from './paths.js';
import type { Revocations } from './revocations.js';

export interface MtlsListenerOptions {
  /** The spool CA certificate every client certificate must chain to. */
  caCertPath: string;
  /** This server's certificate and key. */
  server: CertPaths;
  host: string;
  port: number;
  revocations: Revocations;
  maxMessageBytes: number;
  onSocket: (socket: WebSocket, identity: Identity, request: IncomingMessage) => void;
  /** Plain HTTPS requests (not the /ws upgrade); 404 when absent. */
  onRequest?: (request: IncomingMessage, response: ServerResponse, identity: Identity) => void;
  onRefused?: (reason: string, remote: string | undefined) => void;
}

export interface MtlsListener {
  server: Server;
  port: number;
  /** Close every open connection of these certificate serials (after a revocation). */
  disconnect: (serials: Set<string>) => number;
  close: () => Promise<void>;
}

const identityOfSocket = (socket: TLSSocket): Identity | null => {
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.subject) return null;
  return identityOf({ subject: cert.subject as unknown as Record<string, unknown>, serialNumber: cert.serialNumber });
};

/**
 * An HTTPS + WebSocket server that admits only clients holding an unrevoked certificate of the spool CA
 * with a Sky Port role. Shared by swm-core (terminals) and swm-gate (the core).
 */
export function listenMtls(options: MtlsListenerOptions): Promise<MtlsListener> {
  const sockets = new Map<TLSSocket, Identity>();
  const server = createServer({
    ca: readFileSync(options.caCertPath),
    cert: readFileSync(options.server.cert),
    key: readFileSync(options.server.key),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  });
  // Refuse at the handshake: a revoked or role-less certificate never reaches HTTP.
  server.on('secureConnection', (socket: TLSSocket) => {
    const identity = identityOfSocket(socket);
    if (!identity) {
      options.onRefused?.('certificate has no Sky Port role', socket.remoteAddress);
      socket.destroy();
      return;
    }
    if (options.revocations.isRevoked(identity.serial)) {
      options.onRefused?.(`certificate ${identity.serial} of ${identity.name} is revoked`, socket.remoteAddress);
      socket.destroy();
      return;
    }
    sockets.set(socket, identity);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('tlsClientError', (error, socket) => options.onRefused?.(error.message, socket.remoteAddress));

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: hardFrameLimit(options.maxMessageBytes),
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  server.on('upgrade', (request, socket, head) => {
    const identity = sockets.get(socket as TLSSocket);
    const path = new URL(request.url ?? '/', 'https://x').pathname;
    if (!identity || path !== WS_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    const offered = (request.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(SUBPROTOCOL)) {
      socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nsubprotocol ${SUBPROTOCOL} required\n`);
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => options.onSocket(ws, identity, request));
  });
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const identity = sockets.get(request.socket as TLSSocket);
    if (!identity) {
      response.writeHead(401).end();
      return;
    }
    if (options.onRequest) options.onRequest(request, response, identity);
    else response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve({
        server,
        port: (server.address() as AddressInfo).port,
        disconnect: (serials) => {
          let n = 0;
          for (const [socket, identity] of sockets) {
            if (serials.has(identity.serial)) {
              socket.destroy();
              n++;
            }
          }
          return n;
        },
        close: () =>
          new Promise<void>((done) => {
            for (const client of wss.clients) client.terminate();
            for (const socket of sockets.keys()) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
