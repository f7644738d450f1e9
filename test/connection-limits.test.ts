import { expect } from 'chai';
import { ConnectionCount, connectionLimits, DEFAULT_CONNECTION_LIMITS } from '../spool-bootstrap/connection-limits.js';

describe('connection limits', () => {
  it('admits up to the limit per client, then says whose limit was reached', () => {
    const count = new ConnectionCount({ ...DEFAULT_CONNECTION_LIMITS, maxConnections: 10, maxConnectionsPerClient: 2 });
    expect(count.admit('user "ann"').admitted).to.equal(true);
    expect(count.admit('user "ann"').admitted).to.equal(true);
    expect(count.admit('user "ann"')).to.deep.equal({ admitted: false, reason: 'too many connections for user "ann" (2 open, limit 2)' });
    expect(count.admit('user "bob"').admitted, 'another client').to.equal(true);
  });

  it('admits up to the limit over all clients', () => {
    const count = new ConnectionCount({ ...DEFAULT_CONNECTION_LIMITS, maxConnections: 2, maxConnectionsPerClient: 2 });
    count.admit('a');
    count.admit('b');
    expect(count.admit('c')).to.deep.equal({ admitted: false, reason: 'too many connections (2 open, limit 2)' });
  });

  it('gives a place back when a connection closes, once however often it is released', () => {
    const count = new ConnectionCount({ ...DEFAULT_CONNECTION_LIMITS, maxConnections: 2, maxConnectionsPerClient: 1 });
    const first = count.admit('a');
    count.admit('b');
    if (!first.admitted) expect.fail('the first connection was refused');
    first.release();
    first.release();
    expect(count.admit('a').admitted, 'a again, after its release').to.equal(true);
    expect(count.admit('c').admitted, 'a double release must not free a second place').to.equal(false);
  });

  it('takes the limits a configuration sets and the defaults for the others', () => {
    expect(connectionLimits({ maxConnections: 5 })).to.deep.equal({ ...DEFAULT_CONNECTION_LIMITS, maxConnections: 5 });
  });
});
