import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { ErrorCode } from '../terminal-protocol/errors.js';
import { SUBPROTOCOL, WS_PATH, hardFrameLimit } from '../terminal-protocol/peer.js';
import { describeCertificate, handshakeFailure, verificationRefusal } from './certificate-refusal.js';
import { ConnectionCount, connectionLimits, type ConnectionLimits } from './connection-limits.js';
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
  /** Connection caps and the handshake time-out; each missing one takes its default. */
  limits?: Partial<ConnectionLimits>;
  onSocket: (socket: WebSocket, identity: Identity, request: IncomingMessage) => void;
  /** Plain HTTPS requests (not the /ws upgrade); 404 when absent. */
  onRequest?: (request: IncomingMessage, response: ServerResponse, identity: Identity) => void;
  /** Every connection refused, with the reason in words (a certificate's problem, a limit, a time-out). */
  onRefused?: (reason: string, remote: string | undefined) => void;
}

export interface MtlsListener {
  server: Server;
  port: number;
  /** Close every open connection of these certificate serials (after a revocation). */
  disconnect: (serials: Set<string>) => number;
  close: () => Promise<void>;
}

/** WebSocket close code for a connection refused over a limit: "try again later" (RFC 6455 registry). */
export const CLOSE_TRY_AGAIN_LATER = 1013;
/** A close frame's reason holds at most 123 bytes. */
const MAX_CLOSE_REASON_BYTES = 123;
/** Sockets dropped before their handshake (a flood) are reported together, once per interval, not one by one. */
const DROP_REPORT_INTERVAL_MS = 1000;

const identityOfSocket = (socket: TLSSocket): Identity | null => {
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.subject) return null;
  return identityOf({ subject: cert.subject as unknown as Record<string, unknown>, serialNumber: cert.serialNumber });
};

const closeReason = (text: string): string => {
  let reason = text;
  while (Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES) reason = reason.slice(0, -2) + '…';
  return reason;
};

/** Why the revocation list says no, or that it cannot say (then nobody is admitted: failing open would admit the revoked). */
function revocationRefusal(revocations: Revocations, identity: Identity): string | null {
  try {
    return revocations.isRevoked(identity.serial) ? `certificate ${identity.role} "${identity.name}" (serial ${identity.serial}) is revoked` : null;
  } catch (error) {
    return `the revocation list ${revocations.path} cannot be read (${(error as Error).message}): every certificate is refused until it can`;
  }
}

/**
 * An HTTPS + WebSocket server that admits only clients holding an unrevoked certificate of the spool CA
 * with a Sky Port role, within the connection limits. Shared by swm-core (terminals) and swm-gate (the core).
 *
 * Every refusal is reported through `onRefused` with its reason. A certificate that fails verification,
 * has no role or is revoked gets its socket closed right after the handshake: nothing it sends is read.
 * A client over a limit holds a good certificate, so it is told: HTTP 503 with the protocol's Unavailable
 * error, or a WebSocket closed with 1013 and the reason; its socket is closed right after.
 */
export function listenMtls(options: MtlsListenerOptions): Promise<MtlsListener> {
  const limits = connectionLimits(options.limits);
  const count = new ConnectionCount(limits);
  const sockets = new Map<TLSSocket, Identity>();
  const overLimit = new Map<TLSSocket, string>();
  const refuse = (reason: string, remote: string | undefined) => options.onRefused?.(reason, remote);

  const server = createServer({
    ca: readFileSync(options.caCertPath),
    cert: readFileSync(options.server.cert),
    key: readFileSync(options.server.key),
    requestCert: true,
    // Verification is checked in 'secureConnection' below, where the reason of a failure can be told;
    // rejected there, the socket never reaches HTTP.
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
    handshakeTimeout: limits.handshakeTimeoutMs,
  });
  // Sockets in their handshake or being told they are over a limit are not admitted yet: room for as many
  // again as may be admitted. Past that the kernel's connection is closed before any TLS, and counted.
  server.maxConnections = 2 * limits.maxConnections;
  let dropped = 0;
  server.on('drop', (data) => {
    if (dropped++ > 0) return;
    setTimeout(() => {
      refuse(`${dropped} connection(s) closed before their TLS handshake: ${server.maxConnections} sockets already open`, data?.remoteAddress);
      dropped = 0;
    }, DROP_REPORT_INTERVAL_MS).unref();
  });

  server.on('secureConnection', (socket: TLSSocket) => {
    const remote = socket.remoteAddress;
    if (!socket.authorized) {
      refuse(verificationRefusal(socket.getPeerCertificate(), socket.authorizationError), remote);
      socket.destroy();
      return;
    }
    const identity = identityOfSocket(socket);
    if (!identity) {
      refuse(`${describeCertificate(socket.getPeerCertificate())} has no Sky Port role`, remote);
      socket.destroy();
      return;
    }
    const revoked = revocationRefusal(options.revocations, identity);
    if (revoked) {
      refuse(revoked, remote);
      socket.destroy();
      return;
    }
    const admission = count.admit(`${identity.role} "${identity.name}"`);
    if (!admission.admitted) {
      refuse(admission.reason, remote);
      overLimit.set(socket, admission.reason);
      // The refusal is said on the first request; a client that sends none is not waited for long.
      socket.setTimeout(limits.handshakeTimeoutMs, () => socket.destroy());
      socket.once('close', () => overLimit.delete(socket));
      return;
    }
    sockets.set(socket, identity);
    socket.once('close', () => {
      sockets.delete(socket);
      admission.release();
    });
  });
  // Before https's own listener, which destroys the socket (and with it the address to report).
  server.prependListener('tlsClientError', (error, socket) => refuse(handshakeFailure(error, limits.handshakeTimeoutMs), socket.remoteAddress));

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: hardFrameLimit(options.maxMessageBytes),
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  server.on('upgrade', (request, socket, head) => {
    const refusal = overLimit.get(socket as TLSSocket);
    if (refusal !== undefined) {
      wss.handleUpgrade(request, socket, head, (ws) => ws.close(CLOSE_TRY_AGAIN_LATER, closeReason(refusal)));
      return;
    }
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
    const refusal = overLimit.get(request.socket as TLSSocket);
    if (refusal !== undefined) {
      // The REST face's error body (core/rest/http-status.ts): the protocol's code, its name, the message.
      const body = JSON.stringify({ error: { code: ErrorCode.Unavailable, name: 'Unavailable', message: `${refusal}; try again later` } });
      const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'retry-after': '1', connection: 'close' };
      response.writeHead(503, headers).end(body);
      return;
    }
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
            for (const socket of [...sockets.keys(), ...overLimit.keys()]) socket.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
