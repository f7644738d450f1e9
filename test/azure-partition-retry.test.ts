import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { start, stop } from 'nact';
import { requestedPartition, type PartitionRecord } from '../core/partitions/partition-record.js';
import { Partitions } from '../core/partitions/partitions.js';
import type { CoreServices } from '../core/services.js';
import { JobStore } from '../core/store/job-store.js';
import { spoolPaths } from '../spool-bootstrap/paths.js';
import type { Partition } from '../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';

const CAPACITY = 'Capacity: virtual machine job-j-1: AllocationFailed: Allocation failed. We do not have sufficient capacity for the requested VM size in this region.';

/**
 * A gate as the core's partition step sees it: `partition.create` fails the first `failures` times with
 * the reason given (events arrive after the answer, as a gate's do), then comes up; deletions take a turn.
 */
class StubGate extends EventEmitter {
  readonly config = { name: 'azure', kind: 'azure' };
  readonly calls: [string, Record<string, unknown>][] = [];
  private partition: Partition | null = null;
  private creates = 0;

  constructor(
    private readonly failures: number,
    private readonly reason: string,
  ) {
    super();
  }

  readonly connected = true;
  async whenConnected(): Promise<void> {}

  async call(method: string, params: Record<string, any>): Promise<any> {
    this.calls.push([method, params]);
    const name = String(params.name ?? params.id);
    const say = (status: Partition['status'], extra: Partial<Partition> = {}): void => {
      this.partition = { id: name, name, status, jobId: 'j', nodes: [], ...extra };
      const seen = this.partition;
      setImmediate(() => this.emit('partition', seen));
    };
    if (method === 'partition.create') {
      if (this.partition) throw new RpcError(ErrorCode.Conflict, `partition ${name} exists; delete it first`);
      const failing = this.creates++ < this.failures;
      this.partition = { id: name, name, status: 'creating', jobId: 'j', nodes: [] };
      setTimeout(() => {
        if (failing) say('failed', { error: this.reason });
        else
          say('up', {
            nodes: [{ name: `${name}-0`, role: 'head', publicIp: '127.0.0.1', privateIp: '10.0.0.4', sshPort: 22, sshUser: 'skyport', hostKeyFingerprint: null }],
          });
      }, 5);
      return { id: name, status: 'creating' };
    }
    if (method === 'partition.get') {
      if (!this.partition) throw new RpcError(ErrorCode.NotFound, `partition ${name}`);
      return this.partition;
    }
    if (method === 'partition.delete') {
      if (this.partition) this.partition = { ...this.partition, status: 'deleting' };
      setTimeout(() => {
        this.partition = null;
        this.emit('partition', { id: name, name, status: 'deleted', jobId: 'j', nodes: [] });
      }, 5);
      return { id: name, status: 'deleting' };
    }
    throw new Error(`unexpected ${method}`);
  }
}

describe('a partition whose gate fails it for want of capacity or quota', function () {
  this.timeout(10_000);
  let dir: string;
  let store: JobStore;
  let root: ReturnType<typeof start>;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'partition-retry-'));
    store = new JobStore(join(dir, 'db', 'swm.db'));
    root = start();
  });
  afterEach(() => {
    stop(root);
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A partition reserved for job j, run by the real partitions supervisor and store against the stub gate. */
  async function run(gate: StubGate, retryDelayMs: (attempt: number) => number): Promise<{ partitions: Partitions; seen: PartitionRecord[]; until: (state: string) => Promise<PartitionRecord> }> {
    const services = {
      config: { remotes: [{ name: 'azure', gate: 'azure', defaultCloudImage: null }], gates: [{ name: 'azure', kind: 'azure' }] },
      gates: new Map([['azure', gate]]),
      spool: spoolPaths(dir),
      logger: pino({ level: 'silent' }),
      store,
      nodes: { pin: (p: Partition) => p.nodes, release: () => {} },
      kickScheduler: () => {},
    } as unknown as CoreServices;
    const partitions = new Partitions(root, services, { retryDelayMs });
    const seen: PartitionRecord[] = [];
    partitions.bus.on('partition', (p: PartitionRecord) => seen.push(p));
    const until = (state: string) =>
      new Promise<PartitionRecord>((resolve) => {
        const look = (p: PartitionRecord) => {
          if (p.state !== state) return;
          partitions.bus.off('partition', look);
          resolve(p);
        };
        partitions.bus.on('partition', look);
      });
    const shape = { remote: 'azure', flavor: 'Standard_D2s_v5', nodeCount: 1, cloudImage: null, ports: [] };
    await partitions.create(requestedPartition('job-j', shape, 'alice', 'j', Date.now()));
    return { partitions, seen, until };
  }

  it('deletes the failed partition, says why, asks again after a wait that grows, and comes up', async () => {
    const gate = new StubGate(2, CAPACITY);
    const waits: number[] = [];
    const { seen, until } = await run(gate, (attempt) => {
      waits.push(attempt);
      return 20;
    });
    const ready = await until('ready');
    expect(ready.nodes.map((n) => n.name)).to.deep.equal(['job-j-0']);
    expect(ready).to.include({ jobId: 'j', attempts: 2 });
    expect(gate.calls.map(([m]) => m).filter((m) => m !== 'partition.get')).to.deep.equal([
      'partition.create',
      'partition.delete',
      'partition.create',
      'partition.delete',
      'partition.create',
    ]);
    expect(waits, 'the wait grows with each attempt').to.deep.equal([0, 1]);
    const failures = seen.filter((p) => p.state === 'failed');
    expect(failures).to.have.length(2);
    for (const p of failures) {
      expect(p.reason).to.equal(CAPACITY);
      expect(p.retryAtMs).to.be.a('number');
    }
    expect(store.partition('job-j')?.state, 'each state is stored').to.equal('ready');
  });

  it('fails for good on any other reason, and is deleted', async () => {
    const gate = new StubGate(1, 'virtual machine job-j-0: InvalidParameter: The admin user name is not allowed.');
    const { seen, until } = await run(gate, () => 20);
    await until('deleted');
    const failed = seen.find((p) => p.state === 'failed')!;
    expect(failed).to.include({ reason: 'virtual machine job-j-0: InvalidParameter: The admin user name is not allowed.', retryAtMs: null });
    expect(gate.calls.filter(([m]) => m === 'partition.create')).to.have.length(1);
    expect(gate.calls.filter(([m]) => m === 'partition.delete')).to.have.length(1);
  });

  it('stops waiting when its job gives it up (a cancel), and is deleted without asking again', async () => {
    const gate = new StubGate(Infinity, 'Quota: exceeding approved standardDSv5Family Cores quota');
    const { partitions, until } = await run(gate, () => 60_000);
    await until('failed');
    const released = await partitions.send('job-j', { type: 'release', jobId: 'j', keepSec: 60, reusable: false });
    expect(released.state).to.equal('deleting');
    await until('deleted');
    expect(gate.calls.filter(([m]) => m === 'partition.create')).to.have.length(1);
  });

  it('survives a store write that throws: the caller gets the error, the actor restarts from the stored record', async () => {
    const gate = new StubGate(0, '');
    const save = store.savePartition.bind(store);
    let failing = 0;
    store.savePartition = (p) => (failing-- > 0 ? Promise.reject(new Error('injected store fault')) : save(p));
    const { partitions, until } = await run(gate, () => 20);
    const ready = await until('ready');
    // The job's acquire meets a store that throws: it hears the error, and the partition stays as stored.
    failing = 1;
    const refused = await partitions.send('job-j', { type: 'acquire', jobId: 'j' }).then(
      () => null,
      (e: Error) => e,
    );
    expect(refused?.message).to.equal('injected store fault');
    expect(store.partition('job-j')?.state).to.equal('ready');
    // Restarted from the stored record, it takes the same message once the store does.
    expect((await partitions.send('job-j', { type: 'acquire', jobId: 'j' })).state).to.equal('busy');
    expect(ready.gateId).to.equal('job-j');
    expect(gate.calls.filter(([m]) => m === 'partition.create')).to.have.length(1);
  });
});
