import { readFileSync } from 'node:fs';
import { WebSocket } from 'ws';
import { issueCertificate, type IssueOptions } from '../../spool-bootstrap/pki.js';
import { TerminalClient } from '../../terminal-protocol/client.js';
import { SUBPROTOCOL, WS_PATH } from '../../terminal-protocol/peer.js';
import type { TestSpool } from './spool.js';

/** What a terminal presents: its certificate and key, and the CA it trusts to authenticate the core. */
export interface ClientBundle {
  certPem: string;
  keyPem: string;
  caPem: string;
}

/** The spool CA's certificate (what every terminal trusts). */
export const spoolCaPem = (spool: TestSpool): string => readFileSync(spool.spool.ca.cert, 'utf8');

/** The admin bundle setup wrote into the spool's home. */
export const adminBundle = (spool: TestSpool): ClientBundle => ({
  certPem: readFileSync(spool.home.cert, 'utf8'),
  keyPem: readFileSync(spool.home.key, 'utf8'),
  caPem: readFileSync(spool.home.ca, 'utf8'),
});

/**
 * A certificate signed by the spool's own CA with whatever the test needs (an expired validity, a server
 * role), issued behind the core's back: nothing is recorded in the spool's registry.
 */
export function issueFromSpool(spool: TestSpool, options: IssueOptions): ClientBundle {
  const ca = { certPem: spoolCaPem(spool), keyPem: readFileSync(spool.spool.ca.key, 'utf8') };
  const issued = issueCertificate(ca, options);
  return { certPem: issued.certPem, keyPem: issued.keyPem, caPem: ca.certPem };
}

const coreUrl = (port: number): string => `wss://127.0.0.1:${port}`;

/** A terminal client for the core on 127.0.0.1:`port` holding `bundle` (not connected yet; no reconnection). */
export const terminalAs = (port: number, bundle: ClientBundle): TerminalClient =>
  new TerminalClient({ url: coreUrl(port), credentials: { cert: bundle.certPem, key: bundle.keyPem, ca: bundle.caPem }, connectTimeoutMs: 5_000 });

/** Connect as `bundle`; rejects when the core refuses the certificate. */
export const connectAs = (port: number, bundle: ClientBundle): Promise<TerminalClient> => terminalAs(port, bundle).connect();

/**
 * A plain `ws` WebSocket to the core's terminal endpoint (subprotocol skyport.v1, path /ws), for what the
 * client class will not do: present no certificate, send frames that are not JSON-RPC, use another path.
 * Resolves once open; rejects if the connection fails before that (an HTTP answer rejects with "HTTP <status>").
 */
export function openRawSocket(port: number, credentials: Partial<ClientBundle> & Pick<ClientBundle, 'caPem'>, path = WS_PATH): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${coreUrl(port)}${path}`, SUBPROTOCOL, {
      ca: credentials.caPem,
      ...(credentials.certPem ? { cert: credentials.certPem } : {}),
      ...(credentials.keyPem ? { key: credentials.keyPem } : {}),
      rejectUnauthorized: true,
      handshakeTimeout: 5_000,
      perMessageDeflate: false,
    });
    const fail = (error: Error) => {
      socket.terminate();
      reject(error);
    };
    socket.once('open', () => {
      socket.off('error', fail);
      resolve(socket);
    });
    socket.once('error', fail);
    socket.once('unexpected-response', (_request, response) => fail(new Error(`HTTP ${response.statusCode}`)));
  });
}

/**
 * The code a WebSocket closes with. Rejects if it is already closed (the code is lost) or, with
 * `timeoutMs`, if it is still open by then.
 */
export const closeCodeOf = (socket: WebSocket, timeoutMs?: number): Promise<number> =>
  new Promise((resolve, reject) => {
    if (socket.readyState === WebSocket.CLOSED) return reject(new Error('the socket was already closed'));
    const timer = timeoutMs === undefined ? null : setTimeout(() => reject(new Error(`the socket is still open after ${timeoutMs} ms`)), timeoutMs);
    socket.once('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve(code);
    });
  });
