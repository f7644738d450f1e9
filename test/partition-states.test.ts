import { expect } from 'chai';
import { leased } from '../core/partitions/partition-leases.js';
import { requestedPartition, type PartitionRecord, type PartitionState } from '../core/partitions/partition-record.js';
import {
  PARTITION_EVENT_TYPES,
  PARTITION_STATE_NAMES,
  PARTITION_STATES,
  idleDeadlineOf,
  partitionTransition,
  type PartitionEvent,
} from '../core/partitions/partition-states.js';
import { keepAliveSec } from '../core/partitions/keep-alive.js';
import { RemoteConfig } from '../spool-bootstrap/config.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';

const T0 = 1_700_000_000_000;
const shape = { remote: 'local', flavor: 'local.small', nodeCount: 1, cloudImage: null, ports: [] };
const node = { name: 'p-0', role: 'head' as const, publicIp: '127.0.0.1', privateIp: '127.0.0.2', sshPort: 2222, sshUser: 'u', hostKeyFingerprint: 'SHA256:x' };

/** A partition reserved for job j, walked to `state` along the ordinary path. */
function partitionIn(state: PartitionState): PartitionRecord {
  const p = requestedPartition('p', shape, 'alice', 'j', T0);
  const path: Partial<Record<PartitionState, PartitionEvent[]>> = {
    requested: [],
    creating: [{ type: 'asked', gateId: 'g' }],
    ready: [{ type: 'asked', gateId: 'g' }, { type: 'up', gateId: 'g', nodes: [node] }],
    busy: [{ type: 'asked', gateId: 'g' }, { type: 'up', gateId: 'g', nodes: [node] }, { type: 'acquire', jobId: 'j' }],
    idle: [
      { type: 'asked', gateId: 'g' },
      { type: 'up', gateId: 'g', nodes: [node] },
      { type: 'acquire', jobId: 'j' },
      { type: 'release', jobId: 'j', keepSec: 60, reusable: true },
    ],
    failed: [{ type: 'asked', gateId: 'g' }, { type: 'create-failed', reason: 'Quota: none left', retryAtMs: T0 + 30_000 }],
    retrying: [{ type: 'asked', gateId: 'g' }, { type: 'create-failed', reason: 'Quota: none left', retryAtMs: T0 + 30_000 }, { type: 'cleared', retryAtMs: T0 + 40_000 }],
    deleting: [{ type: 'delete', reason: 'admin' }],
    deleted: [{ type: 'delete', reason: 'admin' }, { type: 'gone' }],
  };
  const walked = path[state]!.reduce((r, e) => partitionTransition(r, e, new Date(T0 + 1000)), p);
  expect(walked.state).to.equal(state);
  return walked;
}

const EVENTS: PartitionEvent[] = [
  { type: 'asked', gateId: 'g' },
  { type: 'up', gateId: 'g', nodes: [node] },
  { type: 'create-failed', reason: 'r', retryAtMs: null },
  { type: 'cleared', retryAtMs: T0 },
  { type: 'retry' },
  { type: 'reserve', jobId: 'k', owner: 'alice' },
  { type: 'acquire', jobId: 'j' },
  { type: 'release', jobId: 'j', keepSec: 60, reusable: true },
  { type: 'idle-timeout' },
  { type: 'delete', reason: 'r' },
  { type: 'gone' },
  { type: 'lost', reason: 'r' },
  { type: 'step-failed', reason: 'r' },
];

describe('partition states (pure transition function)', () => {
  it('lists every event type once', () => {
    expect(EVENTS.map((e) => e.type).sort()).to.deep.equal([...PARTITION_EVENT_TYPES].sort());
  });

  for (const state of PARTITION_STATE_NAMES) {
    it(`${state}: every event is a declared transition or explicitly ignored, never both`, () => {
      const spec = PARTITION_STATES[state];
      for (const event of EVENTS) {
        const handled = event.type in spec.on;
        const ignored = spec.ignores.includes(event.type);
        expect(handled !== ignored, `${state} × ${event.type}`).to.equal(true);
        const p = partitionIn(state);
        try {
          const next = partitionTransition(p, event, new Date(T0 + 5000));
          if (ignored) expect(next, `${state} × ${event.type} ignored`).to.equal(p);
        } catch (error) {
          expect(handled).to.equal(true);
          expect((error as RpcError).code).to.equal(ErrorCode.Conflict);
        }
      }
    });
  }

  it('goes idle on release with a keep-alive, and the keep-alive is its deadline', () => {
    const idle = partitionIn('idle');
    expect(idle).to.include({ jobId: null, jobsRun: 1, keepSec: 60, owner: 'alice' });
    expect(idleDeadlineOf(idle)).to.equal(T0 + 1000 + 60_000);
    expect(partitionTransition(idle, { type: 'idle-timeout' }, new Date()).state).to.equal('deleting');
  });

  it('is deleted at once on a release with no keep-alive, or by a job whose cleanup failed', () => {
    const busy = partitionIn('busy');
    expect(partitionTransition(busy, { type: 'release', jobId: 'j', keepSec: 0, reusable: true }, new Date()).state).to.equal('deleting');
    expect(partitionTransition(busy, { type: 'release', jobId: 'j', keepSec: 600, reusable: false }, new Date()).state).to.equal('deleting');
  });

  it('ignores a release or acquire by a job it does not serve', () => {
    const busy = partitionIn('busy');
    expect(partitionTransition(busy, { type: 'release', jobId: 'other', keepSec: 60, reusable: true }, new Date())).to.equal(busy);
    const ready = partitionIn('ready');
    expect(partitionTransition(ready, { type: 'acquire', jobId: 'other' }, new Date())).to.equal(ready);
  });

  it('is reserved from idle for the next job (a pool spare becomes its owner’s), and refuses a second reservation', () => {
    const reserved = partitionTransition(partitionIn('idle'), { type: 'reserve', jobId: 'k', owner: 'alice' }, new Date());
    expect(reserved).to.include({ state: 'ready', jobId: 'k', idleSinceMs: null });
    expect(() => partitionTransition(reserved, { type: 'reserve', jobId: 'm', owner: 'alice' }, new Date())).to.throw(RpcError);
    expect(partitionTransition(reserved, { type: 'reserve', jobId: 'k', owner: 'alice' }, new Date()), 'the same reservation again').to.equal(reserved);
    const spare = { ...partitionIn('idle'), owner: null, pool: true };
    expect(idleDeadlineOf(spare), 'a pool spare waits with no timeout').to.equal(null);
    expect(partitionTransition(spare, { type: 'reserve', jobId: 'k', owner: 'bob' }, new Date()).owner).to.equal('bob');
  });

  it('refuses to delete a partition a job runs on', () => {
    expect(() => partitionTransition(partitionIn('busy'), { type: 'delete', reason: 'admin' }, new Date())).to.throw(/cancel the job first/);
  });

  it('after a passing failure, is deleted at the gate, then asks again once its wait is over; given up by its job, it is deleted instead', () => {
    const failed = partitionIn('failed');
    expect(failed.retryAtMs).to.equal(T0 + 30_000);
    const retrying = partitionTransition(failed, { type: 'cleared', retryAtMs: T0 + 40_000 }, new Date());
    expect(retrying).to.include({ state: 'retrying', gateId: null, retryAtMs: T0 + 40_000 });
    expect(partitionTransition(retrying, { type: 'retry' }, new Date())).to.include({ state: 'requested', attempts: 1 });
    expect(partitionTransition(failed, { type: 'release', jobId: 'j', keepSec: 60, reusable: false }, new Date()).state).to.equal('deleting');
  });

  it('a pool partition (no job) that fails is not retried', () => {
    const pool = requestedPartition('pool-x', shape, null, null, T0);
    expect(partitionTransition(pool, { type: 'create-failed', reason: 'Quota: x', retryAtMs: T0 }, new Date()).retryAtMs).to.equal(null);
    expect(partitionTransition({ ...pool, state: 'creating' }, { type: 'up', gateId: 'g', nodes: [node] }, new Date(T0)).state).to.equal('idle');
  });

  it("takes the job's keep-alive, else the remote's, else the gate kind's, never above the remote's maximum", () => {
    const remote = RemoteConfig.parse({ name: 'r', gate: 'g' });
    expect(keepAliveSec(undefined, remote, 'local')).to.equal(60);
    expect(keepAliveSec(undefined, remote, 'azure')).to.equal(300);
    expect(keepAliveSec(undefined, { ...remote, idleTimeoutSec: 5 }, 'azure')).to.equal(5);
    expect(keepAliveSec(0, { ...remote, idleTimeoutSec: 5 }, 'azure')).to.equal(0);
    expect(keepAliveSec(100_000, remote, 'local')).to.equal(3600);
  });
});

describe('partition leases (the core renews those up on their gate)', () => {
  it('renews the leases of partitions up on their gate, not of those asked for, deleting or deleted', () => {
    const base = { gateId: 'g' } as const;
    const states = ['requested', 'creating', 'ready', 'busy', 'idle', 'deleting', 'deleted', 'failed', 'retrying'] as const;
    const partitions = states.map((state) => ({ ...base, name: state, state }) as never);
    expect(leased(partitions).map((p: { name: string }) => p.name)).to.deep.equal(['ready', 'busy', 'idle']);
    expect(leased([{ gateId: null, name: 'x', state: 'busy' } as never])).to.deep.equal([]);
  });
});
