import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AzureNodes } from './harness/azure-nodes.js';
import { isFinal, startAzureFixture, waitForJob, type CoreFixture } from './harness/core.js';
import { freePort } from './harness/spool.js';
import { submitJob } from './harness/submit.js';
import { azureGateOptionsFor, FakeArm } from './fakes/azure-arm/index.js';

/**
 * A job on Spot VMs through swm-core, its managed azure gate and the fake Azure: the fake takes the VM back
 * (an eviction, policy Delete) while the job runs; the gate's watch reports the partition failed with a
 * reason starting "Preempted:", and the core queues the job again, which then finishes on a new partition.
 */
describe('a job on Azure Spot VMs whose node is taken back', function () {
  this.timeout(90_000);
  let fake: FakeArm;
  let scratch: string;
  let nodes: AzureNodes;
  let f: CoreFixture | undefined;

  before(async () => {
    fake = await FakeArm.start({
      publicIpAddresses: Array.from({ length: 8 }, () => '127.0.0.1'),
      provisioningDelayMs: 30,
      deletionDelayMs: 30,
      operationRetryAfterSec: null,
    });
    scratch = mkdtempSync(join(tmpdir(), 'skyport-azure-spot-'));
    nodes = AzureNodes.attach(fake, join(scratch, 'nodes'));
    const options = azureGateOptionsFor(fake, scratch, { sshPort: await freePort(), pollIntervalMs: 10, spot: true, watchIntervalSec: 0.2 });
    // One preemption is queued again; a job with the spot fallback is queued once more, for on-demand nodes.
    f = await startAzureFixture(options, 2, (config) => {
      config.limits.maxPreemptions = 1;
    });
  });

  afterEach(async () => {
    // The VMs of the test are deleted by now; their SSH port is free for the next partition's node.
    await nodes.stop();
  });

  after(async () => {
    await f?.stop();
    await nodes?.stop();
    await fake?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('queues the job again with reason Preempted and a count, and it finishes on a new partition', async () => {
    const admin = f!.admin;
    const id = await submitJob(admin, '#!/bin/sh\n#SWM remote azure\n#SWM flavor Standard_D2s_v5\necho "attempt on $(hostname)"\nsleep 4\n');
    await waitForJob(admin, id, (j) => j.state === 'R' || isFinal(j), 60_000);
    const vms = fake.resources('Microsoft.Compute/virtualMachines') as Array<{ id: string; properties?: { priority?: string } }>;
    expect(vms).to.have.length(1);
    expect(vms[0]!.properties?.priority).to.equal('Spot');
    fake.evictSpot(vms[0]!.id);
    await nodes.vanish(vms[0]!.id);
    const requeued = await waitForJob(admin, id, (j) => j.state === 'Q' || isFinal(j), 30_000);
    expect(requeued.state, requeued.state_details).to.equal('Q');
    expect(requeued.state_details).to.match(/^Preempted \(1\): .*evicted/i);
    const done = await waitForJob(admin, id, isFinal, 60_000);
    expect(done.state, done.state_details).to.equal('F');
    expect(done.attempts).to.equal(1);
  });

  const vmPuts = () => fake.requests.filter((r) => r.method === 'PUT' && /\/virtualMachines\/[^/]+$/i.test(r.path)).map((r) => r.body as { properties: Record<string, any> });

  it('#SWM spot no asks for on-demand VMs on a remote whose gate makes spot ones by default', async () => {
    const admin = f!.admin;
    const before = vmPuts().length;
    const id = await submitJob(admin, '#!/bin/sh\n#SWM remote azure\n#SWM flavor Standard_D2s_v5\n#SWM spot no\ntrue\n');
    const done = await waitForJob(admin, id, isFinal, 60_000);
    expect(done.state, done.state_details).to.equal('F');
    const puts = vmPuts().slice(before);
    expect(puts).to.have.length(1);
    expect(puts[0]!.properties.priority).to.equal(undefined);
    expect(puts[0]!.properties.billingProfile).to.equal(undefined);
  });

  it('#SWM spot PRICE fallback: spot VMs at that price, then, preempted past limits.maxPreemptions, on-demand ones', async () => {
    const admin = f!.admin;
    const before = vmPuts().length;
    const id = await submitJob(admin, '#!/bin/sh\n#SWM remote azure\n#SWM flavor Standard_D2s_v5\n#SWM spot 0.05 fallback\necho "on $(hostname)"\nsleep 4\n');
    // Two evictions: the first is queued again (maxPreemptions 1), the second too, by the fallback.
    for (const count of [1, 2]) {
      await waitForJob(admin, id, (j) => j.state === 'R' || isFinal(j), 60_000);
      const vms = fake.resources('Microsoft.Compute/virtualMachines') as Array<{ id: string; properties?: { priority?: string; billingProfile?: { maxPrice?: number } } }>;
      expect(vms).to.have.length(1);
      expect(vms[0]!.properties?.priority).to.equal('Spot');
      expect(vms[0]!.properties?.billingProfile?.maxPrice).to.equal(0.05);
      fake.evictSpot(vms[0]!.id);
      await nodes.vanish(vms[0]!.id);
      const requeued = await waitForJob(admin, id, (j) => (j.state === 'Q' && j.attempts === count) || isFinal(j), 30_000);
      expect(requeued.state, requeued.state_details).to.equal('Q');
      if (count === 2) expect(requeued.state_details).to.match(/^Preempted \(2\): .*on-demand nodes from now on/);
    }
    const done = await waitForJob(admin, id, isFinal, 60_000);
    expect(done.state, done.state_details).to.equal('F');
    expect(done.attempts).to.equal(2);
    const puts = vmPuts().slice(before);
    expect(puts.map((p) => p.properties.priority ?? 'Regular')).to.deep.equal(['Spot', 'Spot', 'Regular']);
  });
});
