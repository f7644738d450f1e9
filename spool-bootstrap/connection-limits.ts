/**
 * How many connections a listener admits, and how long a TLS handshake may take. A connection counts from
 * its admission (a verified, unrevoked certificate with a role) until it closes; one client is one
 * certificate holder (role and name), whatever address it comes from and however many certificates it holds.
 */
export interface ConnectionLimits {
  /** Connections admitted at once, over all clients. */
  maxConnections: number;
  /** Connections admitted at once for one client: no client can take every connection of the others. */
  maxConnectionsPerClient: number;
  /** A connection whose TLS handshake has not finished by then is closed (it holds a socket and nothing else). */
  handshakeTimeoutMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 1024,
  maxConnectionsPerClient: 128,
  handshakeTimeoutMs: 10_000,
};

/** The limits set in `given` (a configuration's `core` section will do), the defaults for the others. */
export const connectionLimits = (given: Partial<ConnectionLimits> = {}): ConnectionLimits => ({
  maxConnections: given.maxConnections ?? DEFAULT_CONNECTION_LIMITS.maxConnections,
  maxConnectionsPerClient: given.maxConnectionsPerClient ?? DEFAULT_CONNECTION_LIMITS.maxConnectionsPerClient,
  handshakeTimeoutMs: given.handshakeTimeoutMs ?? DEFAULT_CONNECTION_LIMITS.handshakeTimeoutMs,
});

/** The admitted connections, counted in all and per client; `admit` refuses past the limits, saying which. */
export class ConnectionCount {
  private total = 0;
  private readonly perClient = new Map<string, number>();

  constructor(private readonly limits: ConnectionLimits) {}

  /** Count one more connection of `client`, or say why not (and count nothing). */
  admit(client: string): { admitted: true; release: () => void } | { admitted: false; reason: string } {
    if (this.total >= this.limits.maxConnections) {
      return { admitted: false, reason: `too many connections (${this.total} open, limit ${this.limits.maxConnections})` };
    }
    const mine = this.perClient.get(client) ?? 0;
    if (mine >= this.limits.maxConnectionsPerClient) {
      return { admitted: false, reason: `too many connections for ${client} (${mine} open, limit ${this.limits.maxConnectionsPerClient})` };
    }
    this.total++;
    this.perClient.set(client, mine + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left > 0) this.perClient.set(client, left);
      else this.perClient.delete(client);
    };
    return { admitted: true, release };
  }
}
