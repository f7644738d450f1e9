import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseJobScript } from '../core/jobs/job-script.js';
import type { JobEvent } from '../core/jobs/job-steps.js';
import { createPartition } from '../core/jobs/steps/partition.js';
import type { StepContext } from '../core/jobs/steps/step-context.js';
import type { JobRecord } from '../core/store/job-record.js';
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
      setTimeout(() => {
        this.partition = null;
        this.emit('partition', { id: name, name, status: 'deleted', jobId: 'j', nodes: [] });
      }, 5);
      return { id: name, status: 'deleting' };
    }
    throw new Error(`unexpected ${method}`);
  }
}

describe('the partition step against a gate that fails for want of capacity or quota', function () {
  this.timeout(10_000);
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'partition-retry-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  function run(gate: StubGate, retryDelayMs: (attempt: number) => number, signal = new AbortController().signal): { events: JobEvent[]; done: Promise<JobEvent> } {
    const { directives } = parseJobScript('#!/bin/sh\n#SWM remote azure\n#SWM nodes 2\necho hi\n');
    const job = {
      id: 'j',
      owner: 'alice',
      directives,
      remote: 'azure',
      flavor: 'Standard_D2s_v5',
      partitionName: 'job-j',
      partitionId: null,
    } as unknown as JobRecord;
    const services = {
      config: { remotes: [{ name: 'azure', gate: 'azure', defaultCloudImage: null }] },
      gates: new Map([['azure', gate]]),
      spool: spoolPaths(dir),
      nodes: { pin: (p: Partition) => p.nodes },
    };
    const events: JobEvent[] = [];
    const context = { job, services, signal, emit: (e: JobEvent) => events.push(e), logger: pino({ level: 'silent' }) } as unknown as StepContext;
    return { events, done: createPartition(context, retryDelayMs) };
  }

  it('deletes the failed partition, says why the job waits, asks again after the wait, and comes up', async () => {
    const gate = new StubGate(2, CAPACITY);
    const waits: number[] = [];
    const { events, done } = run(gate, (attempt) => {
      waits.push(attempt);
      return 20;
    });
    const end = await done;
    expect(end).to.deep.include({ type: 'partition-up', nodeNames: ['job-j-0'] });
    expect(gate.calls.map(([m]) => m).filter((m) => m !== 'partition.get')).to.deep.equal([
      'partition.create',
      'partition.delete',
      'partition.create',
      'partition.delete',
      'partition.create',
    ]);
    expect(waits, 'the wait grows with each attempt').to.deep.equal([0, 1]);
    const said = events.filter((e) => e.type === 'partition-retry').map((e) => (e as { reason: string }).reason);
    expect(said).to.have.length(2);
    for (const reason of said) expect(reason.startsWith(CAPACITY)).to.equal(true);
    expect(events.filter((e) => e.type === 'partition-requested')).to.have.length(3);
    // Every new request comes after the previous partition is gone, and after the job said it waits.
    const order = events.map((e) => e.type).filter((t) => t === 'partition-requested' || t === 'partition-retry');
    expect(order).to.deep.equal(['partition-requested', 'partition-retry', 'partition-requested', 'partition-retry', 'partition-requested']);
  });

  it('fails at once on any other reason', async () => {
    const gate = new StubGate(1, 'virtual machine job-j-0: InvalidParameter: The admin user name is not allowed.');
    const { done } = run(gate, () => 20);
    const error = await done.then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).to.equal('partition creation failed: virtual machine job-j-0: InvalidParameter: The admin user name is not allowed.');
    expect(gate.calls.filter(([m]) => m === 'partition.create')).to.have.length(1);
  });

  it('stops waiting when the job is cancelled', async () => {
    const gate = new StubGate(Infinity, 'Quota: exceeding approved standardDSv5Family Cores quota');
    const abort = new AbortController();
    const { events, done } = run(gate, () => 60_000, abort.signal);
    while (!events.some((e) => e.type === 'partition-retry')) await new Promise((resolve) => setTimeout(resolve, 5));
    abort.abort();
    const error = await done.then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.name).to.equal('StepAborted');
    expect(gate.calls.filter(([m]) => m === 'partition.create')).to.have.length(1);
  });
});
