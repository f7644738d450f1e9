import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AzureNodes, GUEST_READY_FILE } from './harness/azure-nodes.js';
import { isFinal, startAzureFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { freePort } from './harness/spool.js';
import { readJobFile, submitJob } from './harness/submit.js';
import { azureGateOptionsFor, FakeArm, type RecordedRequest } from './fakes/azure-arm/index.js';

const FLAVOR = 'Standard_D2s_v5';
/** How long the core waits for a node's guest (1.5 s here) before it fails the partition. */
const GUEST_READY_TIMEOUT_SEC = 10;
const ALLOCATION_FAILED = 'Allocation failed. We do not have sufficient capacity for the requested VM size in this region.';

/**
 * A `#SWM remote azure` job through swm-core, its managed azure gate (a real process, with the Azure SDK)
 * and a fake Azure on loopback; the VMs are played by the local gate's node SSH server, started when the
 * fake provisions each VM, with the host key the core generated and the gate put in the VM's cloud-init.
 */
describe('a #SWM remote azure job, end to end against a fake Azure', function () {
  this.timeout(60_000);
  let fake: FakeArm;
  let scratch: string;
  let nodes: AzureNodes;
  let sshPort: number;
  let f: CoreFixture | undefined;

  before(async () => {
    // Every partition's head gets a loopback public IP: one per test, the first partition being gone before the next.
    // Every VM's guest (cloud-init's final stage: packages, runtime, runcmd) is ready 1.5 s after Azure says Succeeded.
    fake = await FakeArm.start({
      publicIpAddresses: ['127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1'],
      provisioningDelayMs: 30,
      deletionDelayMs: 30,
      guestReadyDelayMs: 1500,
      // Polled at the gate's quick test interval, not Azure's Retry-After.
      operationRetryAfterSec: null,
    });
    scratch = mkdtempSync(join(tmpdir(), 'skyport-azure-e2e-'));
    nodes = AzureNodes.attach(fake, join(scratch, 'nodes'));
    sshPort = await freePort();
    const options = azureGateOptionsFor(fake, scratch, { sshPort, pollIntervalMs: 10, guestReadyTimeoutSec: GUEST_READY_TIMEOUT_SEC });
    f = await startAzureFixture(options, 4);
  });

  after(async () => {
    await f?.stop();
    await nodes?.stop();
    await fake?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  afterEach(async () => {
    fake.clearFaults();
    // A test that failed half-way leaves no job running and no partition for the next one to trip on.
    const left = (await f!.admin.call('job.list', { all: true, states: ['Q', 'W', 'T', 'R'] })).jobs;
    await Promise.all(left.map((j) => f!.admin.call('job.cancel', { id: j.id }).catch(() => undefined)));
    for (const end = Date.now() + 30_000; ((await f!.admin.call('partition.list')) as unknown[]).length && Date.now() < end; )
      await new Promise((resolve) => setTimeout(resolve, 100));
    // The VMs of the test are deleted by now; their ports are free for the next partition's nodes.
    await nodes.stop();
  });

  const groupOf = (jobId: string): string => `job-${jobId}-rg`;
  const requestsTo = (method: string, path: RegExp): RecordedRequest[] => fake.requests.filter((r) => r.method === method && path.test(r.path));
  const groupPath = (jobId: string): RegExp => new RegExp(`/resourcegroups/${groupOf(jobId)}$`, 'i');

  function expectGroupCreatedThenDeleted(jobId: string): void {
    const created = requestsTo('PUT', groupPath(jobId));
    expect(created, 'PUT of the resource group').to.not.be.empty;
    expect((created[0]!.body as { tags: Record<string, string> }).tags).to.include({
      'skyport-job': jobId,
      'skyport-partition': `job-${jobId}`,
      'skyport-core': f!.spool.config.core.id,
      'skyport-owner': 'admin',
    });
    const deleted = requestsTo('DELETE', groupPath(jobId));
    expect(deleted.map((r) => r.status), 'DELETE of the resource group').to.include(202);
    expect(deleted[0]!.seq).to.be.greaterThan(created.at(-1)!.seq);
  }

  function expectNothingLeft(): void {
    expect(fake.groups(), 'resource groups left').to.deep.equal([]);
    expect(fake.resources(), 'resources left').to.deep.equal([]);
  }

  it('runs on two VMs, reaches F, round-trips its files, and deletes its resource group', async function () {
    this.timeout(120_000);
    const admin = f!.admin;
    const data = randomBytes(256 * 1024 + 11);
    const script = [
      '#!/bin/sh',
      '#SWM name azure-e2e',
      '#SWM remote azure',
      `#SWM flavor ${FLAVOR}`,
      '#SWM nodes 2',
      '#SWM input-files data.bin',
      '#SWM output-files out/copy.bin',
      'mkdir -p out && cp data.bin out/copy.bin',
      // The node's home holds what cloud-init's final stage made once it is done.
      `if [ -f ../../${GUEST_READY_FILE} ]; then echo "guest ready"; else echo "guest NOT ready"; fi`,
      'echo "job $SWM_JOB_ID read $(wc -c < data.bin) bytes"',
    ].join('\n');
    const id = await submitJob(admin, `${script}\n`, [{ path: 'data.bin', content: data }]);
    const job = await waitForJob(admin, id, isFinal, 100_000);
    expect(job.state, job.state_details).to.equal('F');
    expect(job.exitcode).to.equal(0);

    // The core reached the head at the public IP the fake reported, on the gate's SSH port.
    expect(nodes.failures).to.deep.equal([]);
    const played = nodes.nodes();
    expect(played.map((n) => n.role).sort()).to.deep.equal(['compute', 'head']);
    const head = played.find((n) => n.role === 'head')!;
    expect(head).to.include({ host: '127.0.0.1', port: sshPort, user: 'skyport' });
    expect(job.node_names).to.have.length(2);
    expect(job.node_ips[0]).to.equal('127.0.0.1');
    expect(job.node_ips[1]).to.match(/^10\.0\./);
    // It ran on the head, and nowhere else.
    expect(readFileSync(join(head.directory, 'swm', id, 'out', 'copy.bin')).equals(data)).to.equal(true);
    const compute = played.find((n) => n.role === 'compute')!;
    expect(existsSync(join(compute.directory, 'swm'))).to.equal(false);

    const stdout = await admin.call('job.logs', { id, stream: 'stdout' });
    // The job ran only once its node's guest was ready; so was every other node's.
    expect(stdout.data).to.equal(`guest ready\njob ${id} read ${data.length} bytes\n`);
    for (const node of played) expect(existsSync(join(node.directory, GUEST_READY_FILE)), node.vm).to.equal(true);
    expect((await readJobFile(admin, id, 'out/copy.bin')).equals(data)).to.equal(true);

    // Two VMs of the flavor asked for, each pinned to one of the core's host keys, then everything deleted.
    const vmPuts = requestsTo('PUT', new RegExp(`/resourcegroups/${groupOf(id)}/providers/Microsoft.Compute/virtualMachines/[^/]+$`, 'i'));
    expect(vmPuts).to.have.length(2);
    for (const put of vmPuts) expect((put.body as any).properties.hardwareProfile.vmSize).to.equal(FLAVOR);
    const pinned = vmPuts.map((put) => (put.body as any).tags['skyport-host-key']).sort();
    expect(pinned).to.deep.equal(played.map((n) => n.hostKeyFingerprint).sort());
    expectGroupCreatedThenDeleted(id);
    expectNothingLeft();
    expect(await admin.call('partition.list')).to.deep.equal([]);
  });

  /** Resolves with the job once `check` holds for it (polled: a job's details change without an event of ours). */
  async function jobUntil(id: string, check: (job: Record<string, any>) => boolean, what: string, timeoutMs = 30_000): Promise<Record<string, any>> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const job = (await f!.admin.call('job.get', { id })) as Record<string, any>;
      if (check(job)) return job;
      if (Date.now() > until) throw new Error(`job ${id} never ${what}: ${job.state} ${job.state_details}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  const vmsRunning = (): Record<string, any>[] => fake.resources('Microsoft.Compute/virtualMachines');

  it('fails the partition of a node whose guest is never ready, naming it, deletes its VMs, and ends the job E', async function () {
    this.timeout(90_000);
    const admin = f!.admin;
    fake.setGuestReadyDelayMs(3_600_000);
    try {
      const script = ['#!/bin/sh', '#SWM remote azure', `#SWM flavor ${FLAVOR}`, '#SWM nodes 2', 'echo never ran'].join('\n');
      const id = await submitJob(admin, `${script}\n`);
      const job = await waitForJob(admin, id, isFinal, 60_000);
      expect(job.state).to.equal('E');
      expect(job.state_details).to.match(new RegExp(`node job-${id}-\\d was not ready within ${GUEST_READY_TIMEOUT_SEC} s`));
      expect((await admin.call('job.logs', { id, stream: 'stdout' })).data).to.not.include('never ran');
      expect(vmsRunning(), 'no VM keeps running').to.deep.equal([]);
      expectNothingLeft();
    } finally {
      fake.setGuestReadyDelayMs(1500);
    }
  });

  it('waits (W) with a Quota reason when the vCPU quota is exhausted, runs no VM meanwhile, and cancels cleanly', async () => {
    const admin = f!.admin;
    fake.setQuota('eastus', 'standardDSv5Family', 2);
    try {
      const script = ['#!/bin/sh', '#SWM remote azure', `#SWM flavor ${FLAVOR}`, '#SWM nodes 2', 'echo never'].join('\n');
      const id = await submitJob(admin, `${script}\n`);
      const waiting = await jobUntil(id, (j) => /trying again in \d+ s/.test(j.state_details), 'waited');
      expect(waiting.state).to.equal('W');
      expect(waiting.state_details).to.match(/^Quota: .*exceeding approved standardDSv5Family Cores quota.*\(trying again in 30 s\)$/);
      // The failed partition is deleted before the wait: nothing runs, nothing bills.
      expect(vmsRunning()).to.deep.equal([]);
      expect(fake.groups()).to.deep.equal([]);
      await admin.call('job.cancel', { id });
      const job = await waitForJob(admin, id, isFinal, 30_000);
      expect(job.state).to.equal('C');
      expectNothingLeft();
    } finally {
      fake.setQuota('eastus', 'standardDSv5Family', undefined);
    }
  });

  it('waits with a Capacity reason when one node fails to allocate, deleting the partition\'s other VMs, never ending E', async () => {
    const admin = f!.admin;
    fake.inject({ kind: 'fail-operation', method: 'PUT', path: /\/virtualMachines\/job-[^/]+-1$/i, code: 'AllocationFailed', message: ALLOCATION_FAILED });
    const script = ['#!/bin/sh', '#SWM remote azure', `#SWM flavor ${FLAVOR}`, '#SWM nodes 2', 'echo never'].join('\n');
    const id = await submitJob(admin, `${script}\n`);
    const waiting = await jobUntil(id, (j) => /trying again in \d+ s/.test(j.state_details), 'waited');
    expect(waiting.state).to.equal('W');
    expect(waiting.state_details).to.match(/^Capacity: .*AllocationFailed.*sufficient capacity/);
    expect(vmsRunning(), 'the node that was created is not left running').to.deep.equal([]);
    expectGroupCreatedThenDeleted(id);
    await admin.call('job.cancel', { id });
    const job = await waitForJob(admin, id, isFinal, 30_000);
    expect(job.state).to.equal('C');
    expectNothingLeft();
    expect(await admin.call('partition.list')).to.deep.equal([]);
  });
});
