import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeArm, type RecordedRequest } from './fakes/azure-arm/index.js';
import { partitionRequest, startAzureGate, type GateHarness } from './fakes/azure-arm/gate-harness.js';
import { testKeyPair } from './harness/keys.js';

const VM = 'Microsoft.Compute/virtualMachines';
const FLAVOR = 'Standard_D2s_v5';
const sshKey = testKeyPair();
const request = (name: string, overrides: Parameters<typeof partitionRequest>[2] = {}) => partitionRequest(name, sshKey.public, overrides);

/**
 * Where a partition goes when Azure has no room for it: another zone, then another size, then another region,
 * as the gate's options allow; the failed attempt's VMs are deleted before the next is made; only when every
 * placement failed is the partition failed, with a reason the core retries later (`Capacity: `). And Spot VMs,
 * ephemeral OS disks and custom images: how a partition's VMs are made.
 */
describe('azure gate: placement of a partition', function () {
  this.timeout(30_000);
  let fake: FakeArm;
  let dir: string;
  const open: GateHarness[] = [];

  before(async () => {
    fake = await FakeArm.start({ provisioningDelayMs: 60, deletionDelayMs: 30, operationRetryAfterSec: null, throttling: false });
    dir = mkdtempSync(join(tmpdir(), 'azure-placement-'));
  });
  after(async () => {
    await Promise.all(open.map((h) => h.gate.close()));
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    fake.clearFaults();
    fake.restoreCapacity();
  });

  const start = async (overrides: Record<string, unknown> = {}): Promise<GateHarness> => {
    const h = await startAzureGate(fake, dir, overrides);
    open.push(h);
    return h;
  };
  const inGroup = (group: string): Record<string, any>[] => fake.resources().filter((r) => r.id.toLowerCase().includes(`/resourcegroups/${group.toLowerCase()}/`));
  const vmsIn = (group: string): Record<string, any>[] => inGroup(group).filter((r) => r.type === VM);
  const vmPuts = (group: string): RecordedRequest[] => fake.requests.filter((r) => r.method === 'PUT' && new RegExp(`/resourcegroups/${group}/providers/Microsoft\\.Compute/virtualMachines/[^/]+$`, 'i').test(r.path));
  const remove = async (h: GateHarness, name: string): Promise<void> => {
    await h.gate.delete(name);
    await h.waitFor(name, 'deleted');
    expect(fake.groups().map((g) => g.name)).not.to.include(`${name}-rg`);
    expect(inGroup(`${name}-rg`)).to.deep.equal([]);
  };

  describe('capacity fallback', () => {
    it('tries the next zone when a zone has no room, once the first zone\'s VMs are deleted', async () => {
      const h = await start({ zones: ['1', '2', '3'] });
      fake.exhaust({ location: 'eastus', size: FLAVOR, zone: '1' });
      fake.clearRequests();
      await h.gate.create(request('zonal', { nodeCount: 2 }));
      const up = await h.waitFor('zonal', 'up');
      expect(up.nodes).to.have.length(2);
      const vms = vmsIn('zonal-rg');
      expect(vms.map((vm) => vm.zones)).to.deep.equal([['2'], ['2']]);
      expect(fake.groups().find((g) => g.name === 'zonal-rg')!.tags).to.include({ 'skyport-placement': 'eastus zone 2 Standard_D2s_v5', 'skyport-ready': 'true' });
      // Zone 1's VMs failed, and were gone (their deletion finished) before zone 2's were asked for.
      const puts = vmPuts('zonal-rg');
      const zoneOf = (r: RecordedRequest): string => (r.body as { zones: string[] }).zones[0]!;
      expect(puts.map(zoneOf)).to.deep.equal(['1', '1', '2', '2']);
      const firstZone2 = puts.find((r) => zoneOf(r) === '2')!.at;
      const deletions = fake.operations().filter((o) => o.kind === 'delete' && /\/virtualMachines\/zonal-\d$/i.test(o.target));
      expect(deletions.length, 'deletions of the zone 1 VMs').to.be.at.least(2);
      for (const d of deletions) expect(d.endedAt, d.target).to.be.below(firstZone2);
      expect(h.logs.join('')).to.include('trying the next placement');
      await remove(h, 'zonal');
    });

    it('tries the fallback sizes, then the fallback regions, moving the network with the partition', async () => {
      const h = await start({ zones: ['1'], fallbackSizes: { [FLAVOR]: ['Standard_D2ds_v5', 'Standard_NC4as_T4_v3'] }, fallbackRegions: ['westeurope'] });
      // The first size is refused at once (SkuNotAvailable), the fallback size fails later (AllocationFailed);
      // NC4as_T4_v3 is not sold in eastus: left out there, without a try.
      fake.exhaust({ location: 'eastus', size: FLAVOR, mode: 'sku' });
      fake.exhaust({ location: 'eastus', size: 'Standard_D2ds_v5' });
      fake.clearRequests();
      await h.gate.create(request('roam', { nodeCount: 2 }));
      const up = await h.waitFor('roam', 'up');
      expect(up.nodes.map((n) => n.role)).to.deep.equal(['head', 'compute']);
      const vms = vmsIn('roam-rg');
      expect(vms.map((vm) => [vm.location, vm.properties.hardwareProfile.vmSize, vm.zones])).to.deep.equal([
        ['westeurope', FLAVOR, ['1']],
        ['westeurope', FLAVOR, ['1']],
      ]);
      const attempts = vmPuts('roam-rg').map((r) => `${(r.body as any).location} ${(r.body as any).properties.hardwareProfile.vmSize}`);
      expect([...new Set(attempts)]).to.deep.equal([`eastus ${FLAVOR}`, 'eastus Standard_D2ds_v5', `westeurope ${FLAVOR}`]);
      // Everything of the partition is in westeurope now, in its group (whose own location stays the gate's).
      const group = fake.groups().find((g) => g.name === 'roam-rg')!;
      expect(group.location).to.equal('eastus');
      expect(group.tags['skyport-placement']).to.equal(`westeurope zone 1 ${FLAVOR}`);
      const locations = new Set(inGroup('roam-rg').map((r) => `${r.type} ${r.location}`));
      expect([...locations].filter((l) => l.endsWith('eastus')), 'nothing left in eastus').to.deep.equal([]);
      expect(inGroup('roam-rg').filter((r) => r.type === 'Microsoft.Network/natGateways')).to.have.length(1);
      expect(fake.outboundOf(vms[1]!.id)).to.equal('nat-gateway');
      await remove(h, 'roam');
    });

    it('fails the partition for want of capacity (the core retries later) only when every placement failed, leaving no VM', async () => {
      const h = await start({ zones: ['1', '2'], fallbackSizes: { [FLAVOR]: ['Standard_D2ds_v5'] } });
      for (const size of [FLAVOR, 'Standard_D2ds_v5']) fake.exhaust({ location: 'eastus', size });
      fake.clearRequests();
      await h.gate.create(request('full', { nodeCount: 2 }));
      const failed = await h.waitFor('full', 'failed');
      expect(failed.error).to.match(
        /^Capacity: no capacity in any of the 4 placements allowed: eastus \(zones 1, 2\) Standard_D2s_v5, Standard_D2ds_v5: ZonalAllocationFailed$/,
      );
      expect(vmPuts('full-rg')).to.have.length(8);
      expect(vmsIn('full-rg'), 'no VM keeps running (nor a failed one)').to.deep.equal([]);
      // No NIC or public IP of a VM either: they went with their VMs.
      expect(inGroup('full-rg').filter((r) => r.type === 'Microsoft.Network/networkInterfaces')).to.deep.equal([]);
      expect((await h.gate.get({ id: 'full' })).error).to.match(/^Capacity: /);
      await remove(h, 'full');
    });

    it('does not look elsewhere for a failure that is not about capacity, and deletes the other nodes\' VMs', async () => {
      const h = await start({ zones: ['1', '2'] });
      fake.inject({ kind: 'fail-operation', method: 'PUT', path: /virtualMachines\/broke-1$/i, code: 'InternalExecutionError', message: 'An internal execution error occurred.' });
      await h.gate.create(request('broke', { nodeCount: 3 }));
      const failed = await h.waitFor('broke', 'failed');
      expect(failed.error).to.match(/^virtual machine broke-1: .*InternalExecutionError.*An internal execution error occurred\.$/);
      expect(vmPuts('broke-rg').map((r) => (r.body as any).zones[0])).to.deep.equal(['1', '1', '1']);
      expect(vmsIn('broke-rg'), 'nodes 0 and 2 came up, and are deleted all the same').to.deep.equal([]);
      await remove(h, 'broke');
    });
  });

  describe('spot', () => {
    it('makes Spot VMs (deleted on eviction) when the request asks, with its maximum price', async () => {
      const h = await start();
      await h.gate.create(request('cheap', { nodeCount: 2, spot: true, maxPrice: 0.05 }));
      await h.waitFor('cheap', 'up');
      for (const vm of vmsIn('cheap-rg')) {
        expect(vm.properties).to.deep.include({ priority: 'Spot', evictionPolicy: 'Delete', billingProfile: { maxPrice: 0.05 } });
        expect(vm.tags).to.include({ 'skyport-priority': 'spot' });
      }
      await remove(h, 'cheap');
    });

    it('takes the gate\'s default (and its price: -1, never evicted for price) unless the request says otherwise', async () => {
      const h = await start({ spot: true });
      await h.gate.create(request('bydefault'));
      await h.gate.create(request('regular', { spot: false }));
      await Promise.all([h.waitFor('bydefault', 'up'), h.waitFor('regular', 'up')]);
      expect(vmsIn('bydefault-rg')[0]!.properties).to.deep.include({ priority: 'Spot', billingProfile: { maxPrice: -1 } });
      expect(vmsIn('regular-rg')[0]!.properties).not.to.have.property('priority');
      expect(fake.groups().find((g) => g.name === 'regular-rg')!.tags).to.include({ 'skyport-priority': 'regular' });
      await Promise.all([remove(h, 'bydefault'), remove(h, 'regular')]);
    });

    it('reports an evicted Spot node: the partition failed, its reason starting with "Preempted: ", kept across a restart', async () => {
      const h = await start({ zones: ['3'] });
      await h.gate.create(request('evicted', { nodeCount: 2, spot: true }));
      await h.waitFor('evicted', 'up');
      expect(await h.gate.watchNodes(), 'nothing lost yet').to.deep.equal([]);
      const victim = vmsIn('evicted-rg').find((vm) => vm.name === 'evicted-1')!;
      expect(fake.evictSpot(victim.id)).to.equal('deleted');
      expect(await h.gate.watchNodes()).to.deep.equal(['evicted']);
      const lost = await h.waitFor('evicted', 'failed');
      expect(lost).to.deep.include({ id: 'evicted', name: 'evicted', status: 'failed', jobId: 'job-evicted', error: 'Preempted: Azure evicted the Spot VM of node 1 (eastus zone 3 Standard_D2s_v5)' });
      expect(lost.nodes.map((n) => n.name)).to.deep.equal(['evicted-0']);
      // Its NIC went with it (delete option); the head is still there until the partition is deleted.
      expect(inGroup('evicted-rg').filter((r) => r.type === 'Microsoft.Network/networkInterfaces').map((r) => r.name)).to.deep.equal(['evicted-0-nic']);
      expect(await h.gate.watchNodes(), 'reported once').to.deep.equal([]);
      const restarted = await start();
      expect((await restarted.gate.get({ id: 'evicted' })).error).to.match(/^Preempted: /);
      await remove(h, 'evicted');
    });

    it('watches on its own, every watchIntervalSec', async () => {
      const h = await start({ watchIntervalSec: 0.2 });
      await h.gate.create(request('watched', { spot: true }));
      await h.waitFor('watched', 'up');
      fake.evictSpot(vmsIn('watched-rg')[0]!.id);
      const lost = await h.waitFor('watched', 'failed', 5_000);
      expect(lost.error).to.equal('Preempted: Azure evicted the Spot VM of node 0 (eastus Standard_D2s_v5)');
      await remove(h, 'watched');
    });
  });

  describe('VM images and disks', () => {
    it('puts the OS disk on local storage (ephemeral) where the size has room, and on a managed disk elsewhere', async () => {
      const h = await start({ ephemeralOsDisk: true });
      await h.gate.create(request('local', { flavor: 'Standard_D2ds_v5' }));
      await h.gate.create(request('cached', { flavor: 'Standard_NC6s_v3' }));
      await h.gate.create(request('managed'));
      await Promise.all(['local', 'cached', 'managed'].map((n) => h.waitFor(n, 'up')));
      const osDisk = (name: string): any => vmsIn(`${name}-rg`)[0]!.properties.storageProfile.osDisk;
      expect(osDisk('local')).to.deep.include({ caching: 'ReadOnly', diffDiskSettings: { option: 'Local', placement: 'ResourceDisk' } });
      expect(osDisk('cached').diffDiskSettings).to.deep.equal({ option: 'Local', placement: 'CacheDisk' });
      expect(osDisk('managed')).not.to.have.property('diffDiskSettings');
      expect(osDisk('managed').managedDisk.storageAccountType).to.equal('StandardSSD_LRS');
      // No managed disk to pay for with an ephemeral one.
      expect(inGroup('local-rg').filter((r) => r.type === 'Microsoft.Compute/disks')).to.deep.equal([]);
      await Promise.all(['local', 'cached', 'managed'].map((n) => remove(h, n)));
    });

    it('boots a custom image with the runtime baked in: cloud-init installs nothing', async () => {
      const image = `/subscriptions/${fake.subscriptionId}/resourceGroups/images/providers/Microsoft.Compute/galleries/skyport/images/node/versions/1.0.0`;
      const h = await start({ customImageId: image });
      await h.gate.create(request('baked', { image: 'docker.io/library/busybox:1.36' }));
      await h.waitFor('baked', 'up');
      const vm = vmsIn('baked-rg')[0]!;
      expect(vm.properties.storageProfile.imageReference).to.deep.equal({ id: image });
      const config = JSON.parse(Buffer.from(fake.customDataOf(vm.id)!, 'base64').toString('utf8').replace(/^#cloud-config\n/, ''));
      expect(config).not.to.have.property('packages');
      expect(config).not.to.have.property('package_update');
      // Still: the host key, the job's image, the expiry timer.
      expect(config.ssh_keys).to.have.property('ed25519_private');
      expect(config.runcmd).to.deep.include(['sudo', '-iu', 'skyport', 'podman', 'pull', 'docker.io/library/busybox:1.36']);
      expect(config.runcmd).to.deep.include(['systemctl', 'enable', '--now', 'skyport-expiry.timer']);
      await remove(h, 'baked');
    });
  });
});
