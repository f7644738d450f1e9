import type { z } from 'zod';
import type { GateHealth } from '../../terminal-protocol/terminal-methods.js';

/**
 * How a gate is doing, as the core sees it:
 *
 *   connecting ──► healthy ──(no heartbeat answer for a while)──► not-answering ──► healthy
 *        │            │                                                │
 *        └────────────┴──(connection refused or closed)──► unreachable ◄┘ (the process died meanwhile)
 *
 *   other-spool  the port is served by a gate whose certificate is not from this spool's CA
 *   wrong-gate   the port is served by another gate of this spool (its gate.hello names it)
 */
export type GateHealthState = z.infer<typeof GateHealth>['health'];

/**
 * TLS refusals that mean the two ends do not share a certificate authority: the gate's certificate is not
 * signed by this spool's CA (as Node/OpenSSL and Go word it), or the gate refused ours as unknown. Two spools
 * never share a CA, so the gate on that port belongs to another spool.
 */
const FOREIGN_AUTHORITY =
  /self[- ]signed certificate in certificate chain|unable to verify the first certificate|unable to get (local )?issuer certificate|alert unknown ca|certificate signed by (an )?unknown (authority|ca)/i;

export const isForeignAuthority = (message: string): boolean => FOREIGN_AUTHORITY.test(message);

/** A connection attempt that got no answer in time: the process on the port may be stopped, not gone. */
export const isUnanswered = (message: string): boolean => /timed out|ETIMEDOUT/i.test(message);

/** "cannot connect to wss://127.0.0.1:8444/ws: connect ECONNREFUSED 127.0.0.1:8444" → "connect ECONNREFUSED 127.0.0.1:8444". */
export const withoutUrl = (message: string): string => message.replace(/^cannot connect to \S+: /, '');
