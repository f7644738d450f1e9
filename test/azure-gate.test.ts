import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import ssh2 from 'ssh2';
import { issueCertificate, createCa } from '../spool-bootstrap/pki.js';
import { spoolPaths } from '../spool-bootstrap/paths.js';
import type { Partition } from '../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { PartitionRequest } from '../terminal-protocol/gate-methods.js';
import type { Gate } from '../gates/gate.js';
import { createAzureGate } from '../gates/azure/index.js';
import { cloudConfig, customDataOf, GUEST_READY_MARKER } from '../gates/azure/cloud-init.js';
import { failureKindOf } from '../gates/azure/azure-errors.js';
import { readFirstBoot } from './harness/azure-nodes.js';
import { joinFlavors, type SkuRecord } from '../gates/azure/flavor-catalog.js';
import { readHostKey } from '../gates/azure/host-keys.js';
import { newestFirst } from '../gates/azure/image-catalog.js';
import { chooseImage } from '../gates/azure/image-reference.js';
import { allowedSources, parseAzureGateOptions } from '../gates/azure/options.js';
import { partitionView } from '../gates/azure/partition-view.js';
import type { ObservedPartition } from '../gates/azure/partition-reader.js';
import type { RetailPrice } from '../gates/azure/retail-prices.js';
import { securityRules } from '../gates/azure/security-rules.js';
import { sharedNetworkGroupOf } from '../gates/azure/shared-network.js';
import { startAzureGate, type GateHarness } from './fakes/azure-arm/gate-harness.js';
import { ARM_BUCKETS, azureGateOptionsFor, FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, FakeArm, type RecordedRequest } from './fakes/azure-arm/index.js';
import { testKeyPair } from './harness/keys.js';

const CORE = 'core-azure-test';
const CERT_CLIENT_ID = '00000000-0000-4000-8000-0000000ce47c';
const VM = 'Microsoft.Compute/virtualMachines';

const sshKey = testKeyPair();

const request = (name: string, overrides: Partial<PartitionRequest> = {}): PartitionRequest => ({
  name,
  jobId: `job-${name}`,
  owner: 'alice',
  flavor: 'Standard_D2s_v5',
  image: null,
  nodeCount: 1,
  ports: [],
  sshPublicKey: sshKey.public,
  tags: {},
  ...overrides,
});

const fingerprintOf = (privateKey: string): string => {
  const parsed = ssh2.utils.parseKey(privateKey) as ssh2.ParsedKey;
  return `SHA256:${createHash('sha256').update(parsed.getPublicSSH()).digest('base64').replace(/=+$/, '')}`;
};

const rpcError = async (promise: Promise<unknown>): Promise<RpcError> => {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(RpcError);
    return error as RpcError;
  }
  throw new Error('expected the call to fail');
};

describe('azure gate', function () {
  this.timeout(30_000);
  let fake: FakeArm;
  let dir: string;
  let certificatePath: string;
  const open: Gate[] = [];

  before(async () => {
    const ca = createCa('Service principal CA');
    const principal = issueCertificate(ca, { role: 'user', name: 'skyport-gate-sp' });
    fake = await FakeArm.start({
      // Long enough that parallel requests overlap even on a loaded machine (the parallelism test relies on it).
      provisioningDelayMs: 150,
      deletionDelayMs: 40,
      // Polled at the gate's quick test interval, and not throttled: Azure's Retry-After (10 s) and ARM's request
      // buckets are exercised on their own below, with the fake's time scaled.
      operationRetryAfterSec: null,
      throttling: false,
      clients: [
        { clientId: FAKE_CLIENT_ID, secret: FAKE_CLIENT_SECRET },
        { clientId: CERT_CLIENT_ID, certificatePem: principal.certPem },
      ],
    });
    dir = mkdtempSync(join(tmpdir(), 'azure-gate-'));
    certificatePath = join(dir, 'principal.pem');
    writeFileSync(certificatePath, `${principal.keyPem}${principal.certPem}`);
  });

  after(async () => {
    await Promise.all(open.map((g) => g.close()));
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  afterEach(() => fake.clearFaults());

  async function start(overrides: Record<string, unknown> = {}, coreId = CORE): Promise<GateHarness> {
    const harness = await startAzureGate(fake, dir, overrides, coreId);
    open.push(harness.gate);
    return harness;
  }

  const inGroup = (group: string): Record<string, any>[] => fake.resources().filter((r) => r.id.toLowerCase().includes(`/resourcegroups/${group.toLowerCase()}/`));
  const requestsTo = (path: string | RegExp, method?: string): RecordedRequest[] =>
    fake.requests.filter(
      (r) => (typeof path === 'string' ? r.path.toLowerCase().includes(path.toLowerCase()) : path.test(r.path)) && (!method || r.method === method),
    );
  const expectNothingOf = (partition: string): void => {
    expect(fake.groups().map((g) => g.name)).not.to.include(`${partition}-rg`);
    expect(inGroup(`${partition}-rg`)).to.deep.equal([]);
  };

  describe('a partition of three nodes', () => {
    let h: GateHarness;
    const hostKeys = [0, 1, 2].map(() => testKeyPair().private);
    let up: Partition;

    before(async () => {
      h = await start({ sourceCidrs: ['198.51.100.0/24', '203.0.113.7'] });
      fake.clearRequests();
      const result = await h.gate.create(
        request('trio', {
          nodeCount: 3,
          flavor: 'Standard_NC6s_v3',
          image: 'docker.io/library/busybox:1.36',
          ports: [
            { port: 8888, protocol: 'tcp', direction: 'in' },
            { port: 6006, protocol: 'tcp', direction: 'in' },
            { port: 5432, protocol: 'tcp', direction: 'out' },
          ],
          hostKeys,
          tags: { project: 'weather', 'skyport-core': 'spoofed' },
        }),
      );
      expect(result).to.deep.equal({ id: 'trio', status: 'creating' });
      up = await h.waitFor('trio', 'up');
    });

    it('reports creating at once, then up with one public IP on the head and the pinned host keys', async () => {
      expect(h.events.find((e) => e.name === 'trio')!.status).to.equal('creating');
      expect(up.jobId).to.equal('job-trio');
      expect(up.nodes.map((n) => n.role)).to.deep.equal(['head', 'compute', 'compute']);
      expect(up.nodes[0]!.publicIp).to.match(/^\d+\.\d+\.\d+\.\d+$/);
      expect(up.nodes.slice(1).map((n) => n.publicIp)).to.deep.equal([null, null]);
      expect(new Set(up.nodes.map((n) => n.privateIp)).size).to.equal(3);
      for (const n of up.nodes) expect(n.privateIp).to.match(/^10\.0\.\d+\.\d+$/);
      expect(up.nodes.map((n) => [n.sshPort, n.sshUser])).to.deep.equal([[22, 'skyport'], [22, 'skyport'], [22, 'skyport']]);
      expect(up.nodes.map((n) => n.hostKeyFingerprint)).to.deep.equal(hostKeys.map(fingerprintOf));
      expect(await h.gate.get({ id: 'trio' })).to.deep.equal(up);
      expect(await h.gate.get({ name: 'trio' })).to.deep.equal(up);
    });

    it('creates the group, one security group, network, public IP, three NICs and three VMs, all tagged', () => {
      const group = fake.groups().find((g) => g.name === 'trio-rg')!;
      expect(group.location).to.equal('eastus');
      expect(group.tags).to.include({ 'skyport-job': 'job-trio', 'skyport-partition': 'trio', 'skyport-core': CORE, 'skyport-owner': 'alice', project: 'weather' });
      const resources = inGroup('trio-rg');
      const count = (type: string): number => resources.filter((r) => r.type === type).length;
      expect(count('Microsoft.Network/networkSecurityGroups')).to.equal(1);
      expect(count('Microsoft.Network/virtualNetworks')).to.equal(1);
      // The head's, and the NAT gateway's that gives the compute nodes their way out.
      expect(count('Microsoft.Network/publicIPAddresses')).to.equal(2);
      expect(count('Microsoft.Network/natGateways')).to.equal(1);
      expect(count('Microsoft.Network/networkInterfaces')).to.equal(3);
      expect(count(VM)).to.equal(3);
      for (const r of resources.filter((r) => r.type !== 'Microsoft.Compute/disks'))
        expect(r.tags, r.id).to.include({ 'skyport-job': 'job-trio', 'skyport-partition': 'trio', 'skyport-core': CORE, 'skyport-owner': 'alice' });
    });

    it('creates VMs of the flavor, on the default image, without password login, with the partition key', () => {
      for (const vm of inGroup('trio-rg').filter((r) => r.type === VM)) {
        const p = vm.properties;
        expect(p.hardwareProfile.vmSize).to.equal('Standard_NC6s_v3');
        expect(p.storageProfile.imageReference).to.deep.equal({ publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server', version: 'latest' });
        expect(p.osProfile.adminUsername).to.equal('skyport');
        expect(p.osProfile.linuxConfiguration.disablePasswordAuthentication).to.equal(true);
        expect(p.osProfile.linuxConfiguration.ssh.publicKeys).to.deep.equal([{ path: '/home/skyport/.ssh/authorized_keys', keyData: sshKey.public.trim() }]);
        expect(p.osProfile).not.to.have.property('adminPassword');
      }
    });

    it('gives each node cloud-init that installs podman, pins its host key and pulls the job image', () => {
      const vms = inGroup('trio-rg').filter((r) => r.type === VM).sort((a, b) => a.name.localeCompare(b.name));
      vms.forEach((vm, i) => {
        const text = Buffer.from(fake.customDataOf(vm.id)!, 'base64').toString('utf8');
        expect(text.startsWith('#cloud-config\n')).to.equal(true);
        const config = JSON.parse(text.slice('#cloud-config\n'.length));
        expect(config.ssh_pwauth).to.equal(false);
        expect(config.ssh_deletekeys).to.equal(true);
        expect(config.ssh_genkeytypes).to.deep.equal([]);
        expect(config.ssh_keys.ed25519_private.trim()).to.equal(hostKeys[i]!.trim());
        expect(config.packages).to.deep.equal(['podman', 'nodejs']);
        expect(config.runcmd).to.deep.include(['sudo', '-iu', 'skyport', 'podman', 'pull', 'docker.io/library/busybox:1.36']);
        expect(config.write_files[0].content).to.include('PasswordAuthentication no');
        // The metadata endpoint is closed to jobs before anything they could run is installed.
        expect(config.runcmd[0]).to.deep.equal(['iptables', '-I', 'OUTPUT', '-d', '169.254.169.254', '-m', 'owner', '!', '--uid-owner', '0', '-j', 'REJECT']);
        expect(config.runcmd[1]).to.deep.equal(['iptables', '-I', 'FORWARD', '-d', '169.254.169.254', '-j', 'REJECT']);
      });
    });

    it('opens SSH and the inbound job ports to the configured sources only, never to *', () => {
      const nsg = inGroup('trio-rg').find((r) => r.type === 'Microsoft.Network/networkSecurityGroups')!;
      const rules = nsg.properties.securityRules.map((r: any) => r.properties);
      expect(rules.map((r: any) => r.destinationPortRange ?? r.destinationPortRanges)).to.deep.equal(['22', ['6006', '8888']]);
      for (const rule of rules) {
        expect(rule.sourceAddressPrefixes).to.deep.equal(['198.51.100.0/24', '203.0.113.7']);
        expect(rule).not.to.have.property('sourceAddressPrefix');
        expect(rule.access).to.equal('Allow');
        expect(rule.direction).to.equal('Inbound');
      }
      const nics = inGroup('trio-rg').filter((r) => r.type === 'Microsoft.Network/networkInterfaces');
      for (const nic of nics) expect(nic.properties.networkSecurityGroup.id.toLowerCase()).to.equal(nsg.id.toLowerCase());
    });

    it('creates independent resources in parallel, each VM making its own NIC (and the head its public IP)', () => {
      // Sequential creation would send a resource's PUT only after the gate saw another's operation Succeeded,
      // that is after a poll of it that came once it had ended; parallel creation sends it before.
      const ops = fake.operations();
      const firstSeenDone = (target: RegExp): number =>
        Math.min(
          ...ops
            .filter((o) => target.test(o.target))
            .flatMap((o) => requestsTo(`/operations/${o.id}`, 'GET').filter((r) => r.at >= o.endedAt!).map((r) => r.at)),
        );
      // The security group and the NAT's public IP at once; the network after the NAT gateway its subnet references.
      const network = ['networkSecurityGroups/trio-nsg', 'publicIPAddresses/trio-nat-ip'].map((t) => requestsTo(`trio-rg/providers/Microsoft.Network/${t}`, 'PUT')[0]!.at);
      expect(Math.max(...network)).to.be.lessThan(firstSeenDone(/\/(trio-nsg|trio-nat-ip)$/i));
      const natEnd = ops.find((o) => /\/natGateways\/trio-nat$/i.test(o.target))!.endedAt!;
      expect(requestsTo('trio-rg/providers/Microsoft.Network/virtualNetworks/', 'PUT')[0]!.at).to.be.greaterThan(natEnd);
      // No NIC or head public IP of its own: one PUT per node, its NIC and IP deleted with it.
      expect(requestsTo('trio-rg/providers/Microsoft.Network/networkInterfaces/', 'PUT')).to.deep.equal([]);
      expect(requestsTo('trio-rg/providers/Microsoft.Network/publicIPAddresses/trio-ip', 'PUT')).to.deep.equal([]);
      const vmPuts = requestsTo(/trio-rg\/providers\/Microsoft\.Compute\/virtualMachines\/[^/]+$/i, 'PUT');
      expect(vmPuts).to.have.length(3);
      expect(vmPuts.filter((r) => r.at < firstSeenDone(/\/virtualMachines\/trio-\d$/i)).length).to.be.at.least(2);
      for (const put of vmPuts) {
        const profile = (put.body as any).properties.networkProfile;
        expect(profile.networkApiVersion).to.be.a('string');
        const [config] = profile.networkInterfaceConfigurations;
        expect(config.properties.deleteOption).to.equal('Delete');
        const pip = config.properties.ipConfigurations[0].properties.publicIPAddressConfiguration;
        if (put.path.endsWith('trio-0')) expect(pip).to.deep.include({ name: 'trio-ip', sku: { name: 'Standard', tier: 'Regional' } });
        else expect(pip).to.equal(undefined);
      }
    });

    it('gives the compute nodes an explicit way out (a NAT gateway), the head its own public IP', () => {
      const vms = inGroup('trio-rg').filter((r) => r.type === VM).sort((a, b) => a.name.localeCompare(b.name));
      expect(vms.map((vm) => fake.outboundOf(vm.id))).to.deep.equal(['public-ip', 'nat-gateway', 'nat-gateway']);
      const nat = inGroup('trio-rg').find((r) => r.type === 'Microsoft.Network/natGateways')!;
      expect(nat.tags).to.include({ 'skyport-partition': 'trio', 'skyport-core': CORE });
    });

    it('is up once its VMs are, with the guest check the core runs on each node: cloud-init\'s last stage and its marker', () => {
      // Nothing of Azure is asked per node for it (no run command, no poll): the core checks over its SSH sessions.
      expect(fake.runCommands()).to.deep.equal([]);
      expect(up.guestCheck!.timeoutSec).to.equal(900);
      expect(up.guestCheck!.command).to.include('cloud-init status --wait').and.include(`$HOME/${GUEST_READY_MARKER}`);
      expect(fake.groups().find((g) => g.name === 'trio-rg')!.tags).to.include({ 'skyport-ready': 'true' });
      // The first boot's last command writes that marker, in the admin user's home, the user's own.
      const firstBoot = cloudConfig({ adminUser: 'skyport', hostKey: readHostKey(hostKeys[0]!), containerRuntime: 'podman', containerImage: null, sshPort: 22, expiresAt: null, runtimeInstalled: true });
      expect(firstBoot).to.include(`/home/skyport/${GUEST_READY_MARKER}`).and.include('-o skyport');
    });

    it('is idempotent: creating it again answers up and creates nothing', async () => {
      const puts = fake.requests.filter((r) => r.method === 'PUT').length;
      expect(await h.gate.create(request('trio', { nodeCount: 3, flavor: 'Standard_NC6s_v3' }))).to.deep.equal({ id: 'trio', status: 'up' });
      expect(fake.requests.filter((r) => r.method === 'PUT').length).to.equal(puts);
    });

    it('is found by a restarted gate, from Azure alone', async () => {
      const again = await start({ sourceCidrs: ['198.51.100.0/24'] });
      expect(await again.gate.get({ id: 'trio' })).to.deep.equal(up);
      expect((await again.gate.list()).map((p) => p.name)).to.include('trio');
    });

    it('is deleted with its group, and nothing is left', async () => {
      expect(await h.gate.delete('trio')).to.deep.equal({ id: 'trio', status: 'deleting' });
      await h.waitFor('trio', 'deleted');
      // The VMs are force-deleted with their group: no graceful shutdown of machines about to vanish.
      expect(requestsTo(/\/resourcegroups\/trio-rg$/i, 'DELETE')[0]!.query.forceDeletionTypes).to.equal('Microsoft.Compute/virtualMachines,Microsoft.Compute/virtualMachineScaleSets');
      expectNothingOf('trio');
      expect(fake.resources()).to.deep.equal([]);
      expect(await h.gate.delete('trio')).to.deep.equal({ id: 'trio', status: 'deleted' });
      expect((await rpcError(h.gate.get({ id: 'trio' }))).code).to.equal(ErrorCode.NotFound);
    });
  });

  describe('faults', () => {
    it('retries 429s after their Retry-After and 500s with backoff, and the partition comes up', async () => {
      const h = await start();
      fake.clearRequests();
      fake.inject({ kind: 'throttle', method: 'PUT', path: 'virtualMachines/retry-0', retryAfterSec: 1 });
      fake.inject({ kind: 'server-error', method: 'PUT', path: 'networkSecurityGroups/retry-nsg', times: 2 });
      fake.inject({ kind: 'throttle', method: 'GET', path: '/operations/', retryAfterSec: 0, times: 2 });
      await h.gate.create(request('retry'));
      await h.waitFor('retry', 'up');
      const vmPuts = requestsTo(/virtualMachines\/retry-0$/i, 'PUT');
      expect(vmPuts.map((r) => r.status)).to.deep.equal([429, 201]);
      expect(vmPuts[1]!.at - vmPuts[0]!.at).to.be.at.least(950);
      expect(requestsTo('networkSecurityGroups/retry-nsg', 'PUT').map((r) => r.status)).to.deep.equal([500, 500, 201]);
      expect(requestsTo('/operations/', 'GET').filter((r) => r.status === 429)).to.have.length(2);
      await h.gate.delete('retry');
      await h.waitFor('retry', 'deleted');
      expectNothingOf('retry');
    });

    it('bounds a long Retry-After by maxRetryDelayMs', async () => {
      const h = await start({ retry: { maxRetries: 3, retryDelayMs: 20, maxRetryDelayMs: 150 } });
      fake.clearRequests();
      const groupPath = /\/resourcegroups\/bounded-rg$/i;
      fake.inject({ kind: 'throttle', method: 'PUT', path: groupPath, retryAfterSec: 3600 });
      await h.gate.create(request('bounded'));
      await h.waitFor('bounded', 'up');
      const puts = requestsTo(groupPath, 'PUT');
      // Created (after the bounded wait), then tagged ready once every guest is.
      expect(puts.map((r) => r.status)).to.deep.equal([429, 201, 200]);
      expect(puts[1]!.at - puts[0]!.at).to.be.within(100, 1500);
      await h.gate.delete('bounded');
      await h.waitFor('bounded', 'deleted');
    });

    it('gives up after maxRetries and reports the partition failed', async () => {
      const h = await start({ retry: { maxRetries: 2, retryDelayMs: 10, maxRetryDelayMs: 50 } });
      fake.clearRequests();
      fake.inject({ kind: 'server-error', method: 'PUT', path: 'virtualMachines/flaky-0', times: Infinity });
      await h.gate.create(request('flaky'));
      const failed = await h.waitFor('flaky', 'failed');
      expect(failed.error).to.match(/virtual machine flaky-0: .*internal server error/i);
      expect(requestsTo(/virtualMachines\/flaky-0$/i, 'PUT')).to.have.length(3);
      await h.gate.delete('flaky');
      await h.waitFor('flaky', 'deleted');
      expectNothingOf('flaky');
    });

    it('reports a failed VM creation with Azure\'s message, keeps it across a restart, and deletes everything', async () => {
      const h = await start();
      fake.inject({
        kind: 'fail-operation',
        method: 'PUT',
        path: 'virtualMachines/broken-1',
        code: 'AllocationFailed',
        message: 'Allocation failed. We do not have sufficient capacity for the requested VM size in this region.',
      });
      await h.gate.create(request('broken', { nodeCount: 2 }));
      const failed = await h.waitFor('broken', 'failed');
      expect(failed.error).to.include('AllocationFailed').and.include('sufficient capacity');
      expect(failed.jobId).to.equal('job-broken');
      expect((await h.gate.get({ id: 'broken' })).status).to.equal('failed');
      const restarted = await start();
      const seen = await restarted.gate.get({ id: 'broken' });
      expect(seen.status).to.equal('failed');
      expect(seen.error).to.include('sufficient capacity');
      expect((await rpcError(h.gate.create(request('broken', { nodeCount: 2 })))).code).to.equal(ErrorCode.Conflict);
      await restarted.gate.delete('broken');
      await restarted.waitFor('broken', 'deleted');
      expectNothingOf('broken');
    });

    it('times out an operation that never finishes, stops polling it, and deletes what was made', async () => {
      // Long enough that the other operations (150 ms each) end well within it on a loaded machine.
      const h = await start({ operationTimeoutSec: 1.5 });
      fake.inject({ kind: 'hang-operation', method: 'PUT', path: /virtualMachines\/stuck-0$/i });
      await h.gate.create(request('stuck'));
      const failed = await h.waitFor('stuck', 'failed');
      expect(failed.error).to.equal('virtual machine stuck-0 did not finish within 1.5s');
      const hung = fake.operations().find((o) => o.target.endsWith('/virtualMachines/stuck-0'))!;
      const polls = (): number => requestsTo(`/operations/${hung.id}`).length;
      const before = polls();
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(polls()).to.equal(before);
      await h.gate.delete('stuck');
      await h.waitFor('stuck', 'deleted');
      expectNothingOf('stuck');
    });

    it('stops a creation in progress when the partition is deleted, and leaves nothing', async () => {
      const h = await start();
      fake.inject({ kind: 'hang-operation', method: 'PUT', path: 'virtualMachines/cancelled-', times: Infinity });
      await h.gate.create(request('cancelled', { nodeCount: 2 }));
      while (requestsTo('virtualMachines/cancelled-', 'PUT').length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(await h.gate.delete('cancelled')).to.deep.equal({ id: 'cancelled', status: 'deleting' });
      await h.waitFor('cancelled', 'deleted');
      expect(h.events.filter((e) => e.name === 'cancelled').map((e) => e.status)).to.deep.equal(['creating', 'deleting', 'deleted']);
      expectNothingOf('cancelled');
    });
  });

  describe('on the real cloud', () => {
    const vmsIn = (group: string): Record<string, any>[] => inGroup(group).filter((r) => r.type === VM);
    afterEach(() => {
      fake.setGuestReadyDelayMs(0);
      fake.setGroupPropagationMs(0);
      fake.setQuota('eastus', 'standardDSv5Family', undefined);
    });

    it('retries writes answered 404 ResourceGroupNotFound just after the group was created', async () => {
      // Long enough that the first writes fall in it even on a loaded machine.
      fake.setGroupPropagationMs(1000);
      const h = await start();
      fake.clearRequests();
      await h.gate.create(request('fresh'));
      await h.waitFor('fresh', 'up');
      const misses = fake.requests.filter((r) => r.method === 'PUT' && r.status === 404 && r.path.toLowerCase().includes('/resourcegroups/fresh-rg/'));
      expect(misses.length, 'writes answered 404 while the group propagated').to.be.greaterThan(0);
      await h.gate.delete('fresh');
      await h.waitFor('fresh', 'deleted');
    });

    it('gives up on a group that stays invisible past freshGroupGraceSec', async () => {
      fake.setGroupPropagationMs(60_000);
      const h = await start({ freshGroupGraceSec: 0.2 });
      await h.gate.create(request('ghost'));
      const failed = await h.waitFor('ghost', 'failed');
      expect(failed.error).to.include('ResourceGroupNotFound');
      fake.setGroupPropagationMs(0);
      await h.gate.delete('ghost');
      await h.waitFor('ghost', 'deleted');
    });

    it('classifies exceeded vCPU quota (409 at once) as Quota, and leaves no VM running', async () => {
      fake.setQuota('eastus', 'standardDSv5Family', 2);
      const h = await start();
      await h.gate.create(request('quota', { nodeCount: 2 }));
      const failed = await h.waitFor('quota', 'failed');
      expect(failed.error).to.match(/^Quota: virtual machine quota-\d: OperationNotAllowed: .*exceeding approved standardDSv5Family Cores quota/);
      expect(vmsIn('quota-rg'), 'no VM keeps running').to.deep.equal([]);
      // The kind survives a gate restart, on the group's tag.
      expect((await (await start()).gate.get({ id: 'quota' })).error).to.match(/^Quota: /);
      await h.gate.delete('quota');
      await h.waitFor('quota', 'deleted');
      expectNothingOf('quota');
    });

    it('classifies a later allocation failure of one node as Capacity, and deletes the partition\'s other VMs', async () => {
      const h = await start();
      fake.inject({ kind: 'fail-operation', method: 'PUT', path: /virtualMachines\/alloc-2$/i, code: 'ZonalAllocationFailed', message: 'Allocation failed. We do not have sufficient capacity for the requested VM size in this zone.' });
      await h.gate.create(request('alloc', { nodeCount: 3 }));
      const failed = await h.waitFor('alloc', 'failed');
      expect(failed.error).to.match(/^Capacity: virtual machine alloc-2: .*ZonalAllocationFailed/);
      expect(vmsIn('alloc-rg'), 'no VM keeps running (nor the failed one)').to.deep.equal([]);
      await h.gate.delete('alloc');
      await h.waitFor('alloc', 'deleted');
    });

    it('classifies SkuNotAvailable at once as Capacity', async () => {
      const h = await start();
      fake.inject({ kind: 'reject', method: 'PUT', path: /virtualMachines\/nosku-0$/i, status: 409, code: 'SkuNotAvailable', message: "The requested VM size Standard_D2s_v5 is currently not available in location 'eastus'." });
      await h.gate.create(request('nosku'));
      expect((await h.waitFor('nosku', 'failed')).error).to.match(/^Capacity: .*SkuNotAvailable/);
      await h.gate.delete('nosku');
      await h.waitFor('nosku', 'deleted');
    });

    it('never has more than maxConcurrentVmCreations VMs being created at once', async () => {
      const h = await start({ maxConcurrentVmCreations: 2 });
      fake.clearRequests();
      await h.gate.create(request('bounded-vms', { nodeCount: 5 }));
      await h.waitFor('bounded-vms', 'up');
      const ops = fake.operations().filter((o) => /\/virtualMachines\/bounded-vms-\d$/i.test(o.target));
      const puts = requestsTo(/\/virtualMachines\/bounded-vms-\d$/i, 'PUT');
      expect(puts).to.have.length(5);
      const spans = ops.map((o) => {
        const put = puts.find((p) => o.target.toLowerCase().endsWith(p.path.toLowerCase().split('/providers/')[1]!))!;
        return [put.at, o.endedAt!] as const;
      });
      const overlap = Math.max(...spans.map(([start]) => spans.filter(([s, e]) => s <= start && start < e).length));
      expect(overlap).to.be.at.most(2);
      await h.gate.delete('bounded-vms');
      await h.waitFor('bounded-vms', 'deleted');
    });

    it('polls an operation no sooner than Azure\'s Retry-After asks, nor sooner than its own interval', async function () {
      this.timeout(20_000);
      // Ten times faster: Retry-After 3 s is 300 ms, a VM's 9 s creation 900 ms.
      const paced = await FakeArm.start({ timeScale: 10, operationRetryAfterSec: 3, provisioningDelayMs: 9000, throttling: false });
      const own = mkdtempSync(join(tmpdir(), 'azure-gate-paced-'));
      try {
        const gaps = async (pollIntervalMs: number, name: string): Promise<number[]> => {
          const gate = await createAzureGate({ name: 'azure', coreId: CORE, spool: spoolPaths(own), logger: pino({ level: 'silent' }), options: azureGateOptionsFor(paced, own, { pollIntervalMs }) });
          try {
            const up = new Promise<void>((resolve) => gate.onEvent((p) => p.name === name && p.status === 'up' && resolve()));
            await gate.create(request(name));
            await up;
            const op = paced.operations().find((o) => o.kind === 'put' && o.target.endsWith(`/virtualMachines/${name}-0`))!;
            const polls = paced.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/operations/${op.id}`)).map((r) => r.at);
            expect(polls.length).to.be.at.least(2);
            await gate.delete(name);
            return polls.slice(1).map((at, i) => at - polls[i]!);
          } finally {
            await gate.close();
          }
        };
        for (const gap of await gaps(10, 'asked')) expect(gap, 'Azure\'s Retry-After').to.be.at.least(280);
        for (const gap of await gaps(450, 'slower')) expect(gap, 'the gate\'s own, longer interval').to.be.at.least(430);
      } finally {
        await paced.stop();
        rmSync(own, { recursive: true, force: true });
      }
    });

    it('creates a 200-node partition under ARM\'s throttling model without exhausting its retries', async function () {
      this.timeout(120_000);
      // ARM's buckets, Azure's Retry-After on polls and the gate's defaults, with the fake's time running 100 times
      // faster: the gate's intervals and retry waits are scaled to match (5 s polls become 50 ms).
      const SPEED = 100;
      const busy = await FakeArm.start({ timeScale: SPEED, provisioningDelayMs: 6000, deletionDelayMs: 2000 });
      const logger = pino({ level: 'silent' });
      const own = mkdtempSync(join(tmpdir(), 'azure-gate-big-'));
      const options = azureGateOptionsFor(busy, own, {
        pollIntervalMs: 5000 / SPEED,
        // Not scaled: a bound for a loaded machine, not part of the model.
        operationTimeoutSec: 120,
        maxConcurrentVmCreations: 50,
        retry: { maxRetries: 6, retryDelayMs: 1000 / SPEED, maxRetryDelayMs: 60_000 / SPEED },
      });
      const gate = await createAzureGate({ name: 'azure', coreId: CORE, spool: spoolPaths(own), logger, options });
      try {
        const seen: Partition[] = [];
        const done = new Promise<Partition>((resolve) =>
          gate.onEvent((p) => {
            seen.push(p);
            if (p.status === 'up' || p.status === 'failed') resolve(p);
          }),
        );
        await gate.create(request('big', { nodeCount: 200 }));
        const end = await done;
        expect(end.status, end.error).to.equal('up');
        expect(end.nodes).to.have.length(200);
        const vms = busy.resources(VM);
        expect(vms).to.have.length(200);
        // Every answer carries what is left of its bucket.
        expect(busy.requests.filter((r) => r.path.startsWith('/subscriptions/')).length).to.be.greaterThan(600);
        // Within the budget: few requests, if any, answered 429 (each retried after its Retry-After). Without the
        // bound on VM creations and the slower polls of a large partition, the reads run out and NICs time out.
        const throttled = busy.requests.filter((r) => r.status === 429).length;
        expect(throttled, 'requests answered 429').to.be.below(busy.requests.length / 20);
        expect(busy.requests.filter((r) => r.method === 'GET' && r.status === 200).length, 'reads').to.be.below(ARM_BUCKETS.reads.burst * 8);
        await gate.delete('big');
      } finally {
        await gate.close();
        await busy.stop();
        rmSync(own, { recursive: true, force: true });
      }
    });

    it('offers and admits only sizes that can boot the image (architecture, Hyper-V generation)', async () => {
      const h = await start();
      fake.clearRequests();
      const flavors = (await h.gate.flavors()).map((f) => f.name);
      // The default image, Ubuntu 24.04 server, is x64 and generation 2.
      expect(flavors).to.include('Standard_D2s_v5').and.not.include.members(['Standard_D2ps_v5']);
      expect(flavors).not.to.include('Standard_A2_v2');
      const arm = await rpcError(h.gate.create(request('armsize', { flavor: 'Standard_D2ps_v5' })));
      expect(arm.code).to.equal(ErrorCode.Unschedulable);
      expect(arm.message).to.equal('VM size Standard_D2ps_v5 (Arm64) cannot boot an image built for x64');
      const gen1 = await rpcError(h.gate.create(request('gen1size', { flavor: 'Standard_A2_v2' })));
      expect(gen1.message).to.include('cannot boot a generation V2 image');
      expect(fake.requests.filter((r) => r.method === 'PUT')).to.deep.equal([]);
      // The Arm64 build of the image on the Arm64 size is fine.
      await h.gate.create(request('armboth', { flavor: 'Standard_D2ps_v5', image: 'Canonical:ubuntu-24_04-lts:server-arm64:24.04.202502210' }));
      await h.waitFor('armboth', 'up');
      await h.gate.delete('armboth');
      await h.waitFor('armboth', 'deleted');
    });

    it('names the purchase plan of a marketplace image that requires one', async () => {
      const h = await start();
      await h.gate.create(request('planned', { image: 'nvidia:ngc_azure_17_11:ngc-base-version-24_03_4_gen2:24.03.4' }));
      await h.waitFor('planned', 'up');
      const put = requestsTo(/\/virtualMachines\/planned-0$/i, 'PUT')[0]!;
      expect((put.body as any).plan).to.deep.equal({ name: 'ngc-base-version-24_03_4_gen2', product: 'ngc_azure_17_11', publisher: 'nvidia' });
      await h.gate.delete('planned');
      await h.waitFor('planned', 'deleted');
    });

    it('moves the SSH listener of socket-activated images (ssh.socket) to a port other than 22', () => {
      const hostKey = readHostKey(testKeyPair().private);
      const input = { adminUser: 'skyport', hostKey, containerRuntime: 'podman' as const, containerImage: null, sshPort: 2222, expiresAt: null, runtimeInstalled: false };
      const config = JSON.parse(cloudConfig(input).slice('#cloud-config\n'.length));
      const socket = config.write_files.find((f: { path: string }) => f.path === '/etc/systemd/system/ssh.socket.d/10-skyport.conf');
      expect(socket.content).to.equal('[Socket]\nListenStream=\nListenStream=2222\n');
      expect(readFirstBoot(customDataOf(input)).sshPort).to.equal(2222);
      // sshd's Port alone (with sshd restarted) does not move a socket-activated listener.
      const portOnly = { ...config, write_files: config.write_files.filter((f: { path: string }) => f !== socket), runcmd: [['systemctl', 'try-reload-or-restart', 'ssh']] };
      expect(readFirstBoot(Buffer.from(`#cloud-config\n${JSON.stringify(portOnly)}\n`).toString('base64')).sshPort).to.equal(22);
      expect(cloudConfig({ ...input, sshPort: 22 })).not.to.include('ssh.socket.d');
    });

    it('classifies Azure errors by code, and OperationNotAllowed as quota only when it speaks of quota', () => {
      const err = (code: string, message: string): Error => Object.assign(new Error(message), { code, statusCode: 409 });
      expect(failureKindOf(err('QuotaExceeded', 'Quota exceeded for this subscription.'))).to.equal('quota');
      expect(failureKindOf(err('OperationNotAllowed', 'exceeding approved Total Regional Cores quota'))).to.equal('quota');
      expect(failureKindOf(err('OperationNotAllowed', "Operation 'start' is not allowed since the VM is deallocating."))).to.equal(null);
      for (const code of ['SkuNotAvailable', 'AllocationFailed', 'ZonalAllocationFailed', 'OverconstrainedZonalAllocationRequest', 'OverconstrainedAllocationRequest'])
        expect(failureKindOf(new Error('wrapped', { cause: err(code, 'no room') })), code).to.equal('capacity');
      expect(failureKindOf(err('InvalidParameter', 'bad'))).to.equal(null);
    });
  });

  describe('the shared network (sharedNetwork)', () => {
    const SHARED_CORE = 'core-shared-net';
    const sharedGroup = sharedNetworkGroupOf(SHARED_CORE, 'eastus');
    let h: GateHarness;

    before(async () => {
      h = await start({ sharedNetwork: true, sourceCidrs: ['203.0.113.7'] }, SHARED_CORE);
      // Made at the gate's start, in the background: the first partition of the region waits for it no longer.
      for (const end = Date.now() + 10_000; inGroup(sharedGroup).filter((r) => r.properties?.provisioningState === 'Succeeded').length < 2; ) {
        if (Date.now() > end) throw new Error('the shared network was not made at the gate\'s start');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });

    it('is made at the start, in a group of its own without a partition tag, isolating its VMs from one another', () => {
      const group = fake.groups().find((g) => g.name === sharedGroup)!;
      expect(group.tags).to.include({ 'skyport-core': SHARED_CORE, 'skyport-role': 'shared-network' });
      expect(group.tags).not.to.have.property('skyport-partition');
      const nsg = inGroup(sharedGroup).find((r) => r.type === 'Microsoft.Network/networkSecurityGroups')!;
      const rules = nsg.properties.securityRules.map((r: any) => ({ name: r.name, ...r.properties }));
      expect(rules.find((r: any) => r.name === 'skyport-ssh')).to.include({ access: 'Allow', sourceAddressPrefix: '203.0.113.7' });
      expect(rules.find((r: any) => r.name === 'skyport-isolate-partitions')).to.include({ access: 'Deny', direction: 'Inbound', sourceAddressPrefix: 'VirtualNetwork', priority: 4000 });
    });

    it('takes a partition of one node with no inbound port: group, then VM, nothing of a network in its group', async () => {
      fake.clearRequests();
      await h.gate.create(request('solo', { ports: [{ port: 5432, protocol: 'tcp', direction: 'out' }] }));
      await h.waitFor('solo', 'up');
      const writes = fake.requests.filter((r) => r.method === 'PUT' && !/runCommands/i.test(r.path));
      expect(writes.map((r) => r.path.replace(/^.*\/providers\//i, '').replace(/^\/subscriptions\/[^/]+\/resourcegroups\//i, 'group '))).to.deep.equal([
        'group solo-rg',
        'Microsoft.Compute/virtualMachines/solo-0',
        'group solo-rg',
      ]);
      const types = inGroup('solo-rg').map((r) => r.type).sort();
      expect(types).to.not.include.members(['Microsoft.Network/virtualNetworks', 'Microsoft.Network/networkSecurityGroups']);
      const config = (writes[1]!.body as any).properties.networkProfile.networkInterfaceConfigurations[0].properties;
      expect(config.networkSecurityGroup.id.toLowerCase()).to.include(`/resourcegroups/${sharedGroup.toLowerCase()}/`);
      expect(config.ipConfigurations[0].properties.subnet.id.toLowerCase()).to.include(`/resourcegroups/${sharedGroup.toLowerCase()}/`);
    });

    it('is left when the partition is deleted; a partition of two nodes, or opening a port, makes its own network', async () => {
      await h.gate.delete('solo');
      await h.waitFor('solo', 'deleted');
      expectNothingOf('solo');
      expect(inGroup(sharedGroup).map((r) => r.type).sort()).to.deep.equal(['Microsoft.Network/networkSecurityGroups', 'Microsoft.Network/virtualNetworks']);
      for (const [name, overrides] of [
        ['pair', { nodeCount: 2 }],
        ['notebook', { ports: [{ port: 8888, protocol: 'tcp', direction: 'in' }] }],
      ] as const) {
        await h.gate.create(request(name, overrides as Partial<PartitionRequest>));
        await h.waitFor(name, 'up');
        expect(inGroup(`${name}-rg`).map((r) => r.type), name).to.include.members(['Microsoft.Network/virtualNetworks', 'Microsoft.Network/networkSecurityGroups']);
        await h.gate.delete(name);
        await h.waitFor(name, 'deleted');
        expectNothingOf(name);
      }
    });
  });

  describe('ownership', () => {
    it('refuses to delete a group without its tags, or tagged for another core', async () => {
      const h = await start();
      fake.addGroup('foreign-rg');
      fake.addGroup('neighbour-rg', { 'skyport-core': 'core-other', 'skyport-partition': 'neighbour', 'skyport-job': 'j' });
      for (const id of ['foreign', 'neighbour']) {
        const error = await rpcError(h.gate.delete(id));
        expect(error.code).to.equal(ErrorCode.Forbidden);
        expect(error.message).to.include(`${id}-rg`);
        expect((await rpcError(h.gate.get({ id }))).code).to.equal(ErrorCode.NotFound);
        expect((await rpcError(h.gate.create(request(id)))).code).to.equal(ErrorCode.Conflict);
      }
      expect(fake.groups().map((g) => g.name)).to.include.members(['foreign-rg', 'neighbour-rg']);
      expect(requestsTo('resourcegroups/foreign-rg', 'DELETE')).to.deep.equal([]);
    });

    it('lists only the partitions of this core', async () => {
      const h = await start();
      fake.addGroup('theirs-rg', { 'skyport-core': 'core-other', 'skyport-partition': 'theirs' });
      fake.addGroup('untagged-rg');
      fake.addGroup('renamed-rg', { 'skyport-core': CORE, 'skyport-partition': 'elsewhere' });
      await h.gate.create(request('mine'));
      await h.waitFor('mine', 'up');
      const listed = await h.gate.list();
      expect(listed.map((p) => p.name)).to.deep.equal(['mine']);
      expect(listed[0]!.status).to.equal('up');
      const other = await start({}, 'core-other');
      const theirs = (await other.gate.list()).map((p) => p.name);
      expect(theirs).to.include('theirs').and.not.include('mine');
      await h.gate.delete('mine');
      await h.waitFor('mine', 'deleted');
    });
  });

  describe('requests it refuses before creating anything', () => {
    it('refuses a size not sold in the location or restricted, and a key Azure does not take', async () => {
      const h = await start();
      fake.clearRequests();
      expect((await rpcError(h.gate.create(request('nosize', { flavor: 'Standard_NC4as_T4_v3' })))).code).to.equal(ErrorCode.Unschedulable);
      expect((await rpcError(h.gate.create(request('nosize', { flavor: 'Standard_F2s_v2' })))).message).to.include('not available to this subscription');
      const ecdsa = ssh2.utils.generateKeyPairSync('ecdsa', { bits: 256 }).public;
      expect((await rpcError(h.gate.create(request('nosize', { sshPublicKey: ecdsa })))).code).to.equal(ErrorCode.InvalidParams);
      expect((await rpcError(h.gate.create(request('nosize', { sshPublicKey: sshKey.private })))).code).to.equal(ErrorCode.InvalidParams);
      expect((await rpcError(h.gate.create(request('nosize', { hostKeys: ['not a key'] })))).message).to.include('hostKeys.0');
      expect((await rpcError(h.gate.create(request('nosize', { image: 'bad image!' })))).code).to.equal(ErrorCode.InvalidParams);
      expect(fake.requests.filter((r) => r.method === 'PUT')).to.deep.equal([]);
      expect((await rpcError(h.gate.get({ id: 'nosize' }))).code).to.equal(ErrorCode.NotFound);
    });
  });

  describe('flavors and images', () => {
    it('joins sizes, GPU counts of the location and pay-as-you-go Linux prices; keeps unpriced sizes', async () => {
      const h = await start();
      fake.clearRequests();
      const flavors = await h.gate.flavors();
      const byName = new Map(flavors.map((f) => [f.name, f]));
      // Both prices: pay-as-you-go, and Spot (its own meter, not Low Priority's).
      expect(byName.get('Standard_D2s_v5')).to.deep.equal({ name: 'Standard_D2s_v5', remote: 'azure', cpus: 2, gpus: 0, memMiB: 8192, diskMiB: 0, pricePerHour: 0.096, spotPrice: 0.0192, currency: 'USD' });
      expect(byName.get('Standard_NC6s_v3')).to.include({ gpus: 1, cpus: 6, pricePerHour: 3.06 });
      expect(byName.get('Standard_ND96asr_v4')).to.include({ gpus: 8, pricePerHour: 27.197 });
      expect(byName.get('Standard_E2s_v5')).to.deep.equal({ name: 'Standard_E2s_v5', remote: 'azure', cpus: 2, gpus: 0, memMiB: 16384, diskMiB: 0 });
      expect(byName.has('Standard_F2s_v2'), 'restricted for the subscription').to.equal(false);
      expect(byName.has('Standard_NC4as_T4_v3'), 'not sold in eastus').to.equal(false);
      const pricePages = requestsTo('/api/retail/prices');
      expect(pricePages.length).to.be.greaterThan(2);
      expect(pricePages[0]!.query['$filter']).to.equal("serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and priceType eq 'Consumption'");
      expect(requestsTo(/\/providers\/microsoft\.compute\/skus$/i)[0]!.query['$filter']).to.equal("location eq 'eastus'");
      const seen = fake.requests.length;
      expect(await h.gate.flavors()).to.deep.equal(flavors);
      expect(fake.requests.length, 'served from the cache').to.equal(seen);
    });

    it('prices in the configured currency and location, and refetches once the cache expires', async () => {
      const h = await start({ location: 'westeurope', currency: 'EUR', catalogCacheSec: 0 });
      const flavors = await h.gate.flavors();
      const t4 = flavors.find((f) => f.name === 'Standard_NC4as_T4_v3')!;
      expect(t4).to.include({ gpus: 1, currency: 'EUR' });
      expect(t4.pricePerHour).to.be.closeTo(0.526 * 1.1 * 0.92, 1e-6);
      const seen = requestsTo('/api/retail/prices').length;
      await h.gate.flavors();
      expect(requestsTo('/api/retail/prices').length).to.be.greaterThan(seen);
    });

    it('lists marketplace images newest first, and a listed image can be asked for', async () => {
      const h = await start();
      const images = await h.gate.images();
      expect(images.map((i) => i.id)).to.deep.equal([
        'Canonical:ubuntu-24_04-lts:server:24.04.202502210',
        'Canonical:ubuntu-24_04-lts:server:24.04.202410010',
        'Canonical:ubuntu-24_04-lts:server:24.04.202409120',
        'Canonical:ubuntu-24_04-lts:server:24.04.202406140',
      ]);
      expect(images.every((i) => i.kind === 'cloud' && i.remote === 'azure')).to.equal(true);
      await h.gate.create(request('imaged', { image: images[1]!.id }));
      await h.waitFor('imaged', 'up');
      const vm = inGroup('imaged-rg').find((r) => r.type === VM)!;
      expect(vm.properties.storageProfile.imageReference).to.deep.equal({ publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server', version: '24.04.202410010' });
      const config = JSON.parse(Buffer.from(fake.customDataOf(vm.id)!, 'base64').toString('utf8').replace(/^#cloud-config\n/, ''));
      expect(config.runcmd.some((c: string[]) => c.includes('pull'))).to.equal(false);
      await h.gate.delete('imaged');
      await h.waitFor('imaged', 'deleted');
    });
  });

  describe('credentials and secrets', () => {
    it('authenticates with a service principal certificate', async () => {
      const h = await start({ clientSecret: undefined, clientId: CERT_CLIENT_ID, certificatePath });
      fake.clearRequests();
      expect(await h.gate.images()).to.have.length(4);
      const token = fake.requests.find((r) => r.path.endsWith('/oauth2/v2.0/token'))!;
      expect(token.status).to.equal(200);
      expect(token.body).to.include({ client_id: CERT_CLIENT_ID, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' });
    });

    it('reports a rejected credential as Unavailable without quoting the secret', async () => {
      const h = await start({ clientSecret: 'wrong-secret-value-123' });
      const error = await rpcError(h.gate.images());
      expect(error.code).to.equal(ErrorCode.Unavailable);
      expect(error.message).not.to.include('wrong-secret-value-123');
      expect(h.logs.join('')).not.to.include('wrong-secret-value-123');
    });

    it('never writes the secret, tokens, host keys or custom data to its log', async () => {
      const h = await start();
      const hostKeys = [testKeyPair().private];
      fake.inject({ kind: 'throttle', method: 'PUT', path: 'virtualMachines/secretive-0', retryAfterSec: 0 });
      await h.gate.create(request('secretive', { hostKeys }));
      await h.waitFor('secretive', 'up');
      const vm = inGroup('secretive-rg').find((r) => r.type === VM)!;
      const customData = fake.customDataOf(vm.id)!;
      await h.gate.delete('secretive');
      await h.waitFor('secretive', 'deleted');
      const log = h.logs.join('');
      expect(h.logs.length).to.be.greaterThan(3);
      const lines = h.logs.map((l) => JSON.parse(l));
      expect(lines.filter((l) => l.partition === 'secretive').every((l) => l.job === 'job-secretive')).to.equal(true);
      expect(lines.some((l) => l.msg === 'partition created')).to.equal(true);
      expect(fake.identity.issuedTokens.length).to.be.greaterThan(0);
      for (const secret of [FAKE_CLIENT_SECRET, ...fake.identity.issuedTokens, customData, customData.slice(0, 40), hostKeys[0]!.split('\n')[1]!, 'PRIVATE KEY'])
        expect(log).not.to.include(secret);
    });
  });

  describe('options', () => {
    const base = { subscriptionId: '00000000-0000-4000-8000-000000000001', tenantId: 't', clientId: 'c', clientSecret: 'shh-very-secret', location: 'eastus' };
    const problems = (raw: Record<string, unknown>): string => {
      try {
        parseAzureGateOptions(raw, 'cloud');
      } catch (error) {
        return (error as Error).message;
      }
      return '';
    };

    it('names the bad key and never echoes a value', () => {
      expect(problems({ ...base, flavour: 'x' })).to.include('flavour');
      expect(problems({ ...base, subscriptionId: 'nope' })).to.include('gates.cloud.options.subscriptionId');
      expect(problems({ ...base, tenantId: undefined })).to.include('gates.cloud.options.tenantId');
      expect(problems({ ...base, azureCli: true })).to.include('choose one credential');
      expect(problems({ ...base, clientSecret: undefined })).to.include('no credential');
      expect(problems({ ...base, retry: { maxRetries: 'many' } })).to.include('gates.cloud.options.retry.maxRetries');
      expect(problems({ ...base, location: 'East US', clientSecret: 'shh-very-secret' })).not.to.include('shh-very-secret');
    });

    it('refuses to open nodes to the internet unless told to, and picks sources in order', () => {
      expect(problems({ ...base, sourceCidrs: ['*'] })).to.include('gates.cloud.options.sourceCidrs.0').and.include('allowAnySource');
      expect(problems({ ...base, sourceCidrs: ['0.0.0.0/0'] })).to.include('allowAnySource');
      expect(problems({ ...base, sourceCidrs: ['10.1.2.0/33'] })).to.include('sourceCidrs.0');
      expect(problems({ ...base, sourceCidrs: ['*'], allowAnySource: true })).to.equal('');
      expect(allowedSources(parseAzureGateOptions({ ...base, sourceCidrs: ['192.0.2.0/24'], corePublicIp: '203.0.113.9' }, 'c'))).to.deep.equal(['192.0.2.0/24']);
      expect(allowedSources(parseAzureGateOptions({ ...base, corePublicIp: '203.0.113.9' }, 'c'))).to.deep.equal(['203.0.113.9/32']);
      expect(allowedSources(parseAzureGateOptions(base, 'c'))).to.deep.equal(['VirtualNetwork']);
    });

    it('builds a gate on a managed identity or the Azure CLI login without calling Azure', async () => {
      const { clientSecret: _s, tenantId: _t, clientId: _c, ...rest } = base;
      for (const credential of [{ managedIdentity: true }, { azureCli: true }]) {
        const gate = await createAzureGate({ name: 'cloud', coreId: CORE, spool: spoolPaths(dir), logger: pino({ level: 'silent' }), options: { ...rest, ...credential } });
        expect(gate.kind).to.equal('azure');
        await gate.close();
      }
      const error = await createAzureGate({ name: 'cloud', coreId: CORE, spool: spoolPaths(dir), logger: pino({ level: 'silent' }), options: { ...base, clientSecret: undefined, certificatePath: join(dir, 'missing.pem') } }).then(
        () => null,
        (e: Error) => e,
      );
      expect(error?.message).to.include('gates.cloud.options.certificatePath');
    });
  });

  describe('decisions (pure functions)', () => {
    const observed = (overrides: Partial<ObservedPartition> = {}): ObservedPartition => ({
      group: { name: 'p-rg', provisioningState: 'Succeeded', tags: { 'skyport-partition': 'p', 'skyport-job': 'j', 'skyport-nodes': '2', 'skyport-ready': 'true' } },
      vms: [0, 1].map((i) => ({ name: `p-${i}`, provisioningState: 'Succeeded', tags: { 'skyport-node': String(i), 'skyport-role': i ? 'compute' : 'head', 'skyport-host-key': `SHA256:k${i}` }, nicIds: [`/x/nic${i}`] })),
      nics: [0, 1].map((i) => ({ id: `/X/NIC${i}`, name: `nic${i}`, provisioningState: 'Succeeded', privateIp: `10.0.0.${4 + i}`, ...(i ? {} : { publicIpId: '/x/ip' }) })),
      publicIps: [{ id: '/x/ip', name: 'ip', provisioningState: 'Succeeded', ipAddress: '20.1.2.3' }],
      ...overrides,
    });
    const ctx = { creating: false, deleting: false, sshUser: 'skyport', sshPort: 22, guestCheck: { command: 'true', timeoutSec: 60 } };

    it('derives status with failed > deleting > creating > up', () => {
      expect(partitionView(observed(), ctx).status).to.equal('up');
      expect(partitionView(observed(), { ...ctx, creating: true }).status).to.equal('creating');
      const creatingVm = observed();
      creatingVm.vms[1]!.provisioningState = 'Creating';
      expect(partitionView(creatingVm, ctx).status).to.equal('creating');
      const deleting = observed({ group: { ...observed().group, provisioningState: 'Deleting' } });
      expect(partitionView(deleting, { ...ctx, creating: true }).status).to.equal('deleting');
      const failed = observed({ group: { ...deleting.group, tags: { ...deleting.group.tags, 'skyport-error': 'boom' } } });
      expect(partitionView(failed, { ...ctx, creating: true, deleting: true })).to.include({ status: 'failed', error: 'boom' });
      const failedVm = observed();
      failedVm.vms[0]!.provisioningState = 'Failed';
      expect(partitionView(failedVm, ctx)).to.include({ status: 'failed', error: 'virtual machine p-0 failed to provision' });
      const notReady = { ...observed().group, tags: { ...observed().group.tags, 'skyport-ready': 'false' } };
      const interrupted = partitionView(observed({ group: notReady, vms: observed().vms.slice(0, 1) }), ctx);
      expect(interrupted.status).to.equal('failed');
      expect(interrupted.error).to.include('1 of 2 nodes');
      // Up, then a node gone: lost behind the gate's back, or evicted when it was a Spot VM.
      expect(partitionView(observed({ vms: observed().vms.slice(0, 1) }), ctx)).to.include({ status: 'failed', error: 'node 1 is gone (deleted outside Sky Port)' });
      const spot = { ...observed().group, tags: { ...observed().group.tags, 'skyport-priority': 'spot', 'skyport-placement': 'eastus zone 2 Standard_D2s_v5' } };
      expect(partitionView(observed({ group: spot, vms: observed().vms.slice(0, 1) }), ctx).error).to.equal('Preempted: Azure evicted the Spot VM of node 1 (eastus zone 2 Standard_D2s_v5)');
      // Every VM Succeeded but no readiness recorded, and nobody checking: interrupted before the guests were ready.
      const unready = observed({ group: { ...observed().group, tags: { 'skyport-partition': 'p', 'skyport-job': 'j', 'skyport-nodes': '2', 'skyport-ready': 'false' } } });
      expect(partitionView(unready, { ...ctx, creating: true }).status).to.equal('creating');
      expect(partitionView(unready, ctx)).to.include({ status: 'failed' });
      expect(partitionView(unready, ctx).error).to.include('before every node was created');
      // A group made before guests were checked has no such tag: its VMs decide.
      const older = observed({ group: { ...observed().group, tags: { 'skyport-partition': 'p', 'skyport-job': 'j', 'skyport-nodes': '2' } } });
      expect(partitionView(older, ctx).status).to.equal('up');
    });

    it('reports nodes with the head\'s public IP and every private IP, matching ids without regard to case', () => {
      expect(partitionView(observed(), ctx).nodes).to.deep.equal([
        { name: 'p-0', role: 'head', publicIp: '20.1.2.3', privateIp: '10.0.0.4', sshPort: 22, sshUser: 'skyport', hostKeyFingerprint: 'SHA256:k0' },
        { name: 'p-1', role: 'compute', publicIp: null, privateIp: '10.0.0.5', sshPort: 22, sshUser: 'skyport', hostKeyFingerprint: 'SHA256:k1' },
      ]);
    });

    it('takes GPU counts from the SKU record of the location, not the first one listed', () => {
      const skus: SkuRecord[] = [
        { resourceType: 'virtualMachines', name: 'Standard_X', locations: ['westus'], capabilities: [{ name: 'GPUs', value: '4' }] },
        { resourceType: 'disks', name: 'Standard_X', locations: ['eastus'], capabilities: [{ name: 'GPUs', value: '9' }] },
        { resourceType: 'virtualMachines', name: 'standard_x', locations: ['EastUS'], capabilities: [{ name: 'GPUs', value: '2' }] },
        { resourceType: 'virtualMachines', name: 'Standard_Y', locations: ['eastus'], restrictions: [{ type: 'Zone', values: ['eastus'] }] },
      ];
      const price = (p: Partial<RetailPrice>): RetailPrice => ({
        armSkuName: 'Standard_X', armRegionName: 'eastus', retailPrice: 1, currencyCode: 'USD', productName: 'Virtual Machines X Series', skuName: 'X', meterName: 'X', type: 'Consumption', unitOfMeasure: '1 Hour', ...p,
      });
      const prices = [
        price({ retailPrice: 0.1, skuName: 'X Spot' }),
        price({ retailPrice: 0.5, productName: 'Virtual Machines X Series Windows' }),
        price({ retailPrice: 0.2, armRegionName: 'westus' }),
        price({ retailPrice: 0.9 }),
        price({ retailPrice: 0.15, meterName: 'X Low Priority', skuName: 'X Low Priority' }),
      ];
      const flavors = joinFlavors('r', 'eastus', [{ name: 'Standard_X', numberOfCores: 8 }, { name: 'Standard_Y', numberOfCores: 2 }], skus, prices);
      expect(flavors.map((f) => [f.name, f.gpus, f.pricePerHour])).to.deep.equal([
        ['Standard_X', 2, 0.9],
        ['Standard_Y', 0, undefined],
      ]);
    });

    it('orders marketplace versions numerically, newest first', () => {
      expect(newestFirst(['1.10.2', '1.9.10', '1.10.10', '2.0'])).to.deep.equal(['2.0', '1.10.10', '1.10.2', '1.9.10']);
    });

    it('reads a request image as a marketplace URN, an image id or a container image', () => {
      const defaults = { publisher: 'P', offer: 'O', sku: 'S' };
      expect(chooseImage(null, defaults)).to.deep.equal({ vmImage: { ...defaults, version: 'latest' }, containerImage: null });
      expect(chooseImage('a:b:c:1.2', defaults).vmImage).to.deep.equal({ publisher: 'a', offer: 'b', sku: 'c', version: '1.2' });
      expect(chooseImage('/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/i', defaults).vmImage).to.have.property('id');
      expect(chooseImage('localhost:5000/team/app:1.0', defaults)).to.deep.equal({ vmImage: { ...defaults, version: 'latest' }, containerImage: 'localhost:5000/team/app:1.0' });
      expect(() => chooseImage('rm -rf /', defaults)).to.throw(/neither/);
    });

    it('writes a single source as a prefix, several as prefixes, and SSH on its own rule', () => {
      expect(securityRules(['VirtualNetwork'], 2222, [{ port: 2222, protocol: 'tcp', direction: 'in' }])).to.deep.equal([
        { name: 'skyport-ssh', protocol: 'Tcp', access: 'Allow', direction: 'Inbound', priority: 100, sourcePortRange: '*', sourceAddressPrefix: 'VirtualNetwork', destinationAddressPrefix: 'VirtualNetwork', destinationPortRange: '2222' },
      ]);
    });

    it('configures docker instead of podman, and another SSH port, when asked', () => {
      const hostKey = readHostKey(testKeyPair().private);
      const config = JSON.parse(cloudConfig({ adminUser: 'ops', hostKey, containerRuntime: 'docker', containerImage: 'alpine:3', sshPort: 2222, expiresAt: null, runtimeInstalled: false }).replace(/^#cloud-config\n/, ''));
      expect(config.packages).to.deep.equal(['docker.io', 'nodejs']);
      expect(config.runcmd).to.deep.include(['usermod', '-aG', 'docker', 'ops']);
      expect(config.runcmd).to.deep.include(['docker', 'pull', 'alpine:3']);
      expect(config.write_files[0].content).to.include('Port 2222');
      expect(config.ssh_keys.ed25519_public).to.equal(hostKey.publicLine);
    });
  });
});
