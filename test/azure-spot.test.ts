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
      publicIpAddresses: ['127.0.0.1', '127.0.0.1', '127.0.0.1'],
      provisioningDelayMs: 30,
      deletionDelayMs: 30,
      operationRetryAfterSec: null,
    });
    scratch = mkdtempSync(join(tmpdir(), 'skyport-azure-spot-'));
    nodes = AzureNodes.attach(fake, join(scratch, 'nodes'));
    const options = azureGateOptionsFor(fake, scratch, { sshPort: await freePort(), pollIntervalMs: 10, spot: true, watchIntervalSec: 0.2 });
    f = await startAzureFixture(options, 2);
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
});
