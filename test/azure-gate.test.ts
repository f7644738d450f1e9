import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import ssh2 from 'ssh2';
import { issueCertificate, createCa } from '../spool-bootstrap/pki.js';
import { REDACTED_KEYS } from '../spool-bootstrap/log.js';
import { spoolPaths } from '../spool-bootstrap/paths.js';
import type { Partition } from '../terminal-protocol/common.js';
import { ErrorCode, RpcError } from '../terminal-protocol/errors.js';
import type { PartitionRequest } from '../terminal-protocol/gate-methods.js';
import type { Gate } from '../gates/gate.js';
import { createAzureGate } from '../gates/azure/index.js';
import { cloudConfig } from '../gates/azure/cloud-init.js';
import { joinFlavors, type SkuRecord } from '../gates/azure/flavor-catalog.js';
import { readHostKey } from '../gates/azure/host-keys.js';
import { newestFirst } from '../gates/azure/image-catalog.js';
import { chooseImage } from '../gates/azure/image-reference.js';
import { allowedSources, parseAzureGateOptions } from '../gates/azure/options.js';
import { partitionView } from '../gates/azure/partition-view.js';
import type { ObservedPartition } from '../gates/azure/partition-reader.js';
import type { RetailPrice } from '../gates/azure/retail-prices.js';
import { securityRules } from '../gates/azure/security-rules.js';
import { azureGateOptionsFor, FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, FakeArm, type RecordedRequest } from './fakes/azure-arm/index.js';

const CORE = 'core-azure-test';
const CERT_CLIENT_ID = '00000000-0000-4000-8000-0000000ce47c';
const VM = 'Microsoft.Compute/virtualMachines';

const sshKey = ssh2.utils.generateKeyPairSync('ed25519');

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

interface Harness {
  gate: Gate;
  events: Partition[];
  logs: string[];
  /** Resolves at the first event (past or future) of `name` with `status`. */
  waitFor(name: string, status: Partition['status'], timeoutMs?: number): Promise<Partition>;
}

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

  async function start(overrides: Record<string, unknown> = {}, coreId = CORE): Promise<Harness> {
    const logs: string[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        logs.push(String(chunk));
        done();
      },
    });
    const logger = pino({ level: 'debug', redact: { paths: REDACTED_KEYS, censor: '[redacted]' } }, stream);
    const gate = await createAzureGate({ name: 'azure', coreId, spool: spoolPaths(dir), logger, options: azureGateOptionsFor(fake, dir, overrides) });
    open.push(gate);
    const events: Partition[] = [];
    const waiters = new Set<() => void>();
    gate.onEvent((p) => {
      events.push(p);
      for (const w of [...waiters]) w();
    });
    const waitFor = (name: string, status: Partition['status'], timeoutMs = 10_000): Promise<Partition> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = events.find((e) => e.name === name && e.status === status);
          if (!hit) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no "${status}" event for ${name}; saw ${JSON.stringify(events.map((e) => [e.name, e.status, e.error]))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    return { gate, events, logs, waitFor };
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
    let h: Harness;
    const hostKeys = [0, 1, 2].map(() => ssh2.utils.generateKeyPairSync('ed25519').private);
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
      expect(count('Microsoft.Network/publicIPAddresses')).to.equal(1);
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
        expect(config.packages).to.deep.equal(['podman']);
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

    it('creates independent resources in parallel', () => {
      const ops = fake.operations();
      const ended = (fragment: string): number[] => ops.filter((o) => o.target.toLowerCase().includes(fragment.toLowerCase())).map((o) => o.endedAt!);
      const network = ['networkSecurityGroups/', 'virtualNetworks/', 'publicIPAddresses/'].map((t) => requestsTo(`trio-rg/providers/Microsoft.Network/${t}`, 'PUT')[0]!.at);
      const firstNetworkEnd = Math.min(...['trio-nsg', 'trio-vnet', 'trio-ip'].flatMap((n) => ended(`/${n}`)));
      expect(Math.max(...network)).to.be.lessThan(firstNetworkEnd);
      // Sequential creation would start each VM after the previous one ended.
      const vmPuts = requestsTo('trio-rg/providers/Microsoft.Compute/virtualMachines/', 'PUT').map((r) => r.at);
      const firstVmEnd = Math.min(...ended('virtualMachines/trio-'));
      expect(vmPuts).to.have.length(3);
      expect(vmPuts.filter((at) => at < firstVmEnd).length).to.be.at.least(2);
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
      fake.inject({ kind: 'server-error', method: 'PUT', path: 'networkInterfaces/retry-0-nic', times: 2 });
      fake.inject({ kind: 'throttle', method: 'GET', path: '/operations/', retryAfterSec: 0, times: 2 });
      await h.gate.create(request('retry'));
      await h.waitFor('retry', 'up');
      const vmPuts = requestsTo('virtualMachines/retry-0', 'PUT');
      expect(vmPuts.map((r) => r.status)).to.deep.equal([429, 201]);
      expect(vmPuts[1]!.at - vmPuts[0]!.at).to.be.at.least(950);
      expect(requestsTo('networkInterfaces/retry-0-nic', 'PUT').map((r) => r.status)).to.deep.equal([500, 500, 201]);
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
      expect(puts.map((r) => r.status)).to.deep.equal([429, 201]);
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
      expect(requestsTo('virtualMachines/flaky-0', 'PUT')).to.have.length(3);
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
      const h = await start({ operationTimeoutSec: 0.4 });
      fake.inject({ kind: 'hang-operation', method: 'PUT', path: 'virtualMachines/stuck-0' });
      await h.gate.create(request('stuck'));
      const failed = await h.waitFor('stuck', 'failed');
      expect(failed.error).to.equal('virtual machine stuck-0 did not finish within 0.4s');
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
      expect(byName.get('Standard_D2s_v5')).to.deep.equal({ name: 'Standard_D2s_v5', remote: 'azure', cpus: 2, gpus: 0, memMiB: 8192, diskMiB: 0, pricePerHour: 0.096, currency: 'USD' });
      expect(byName.get('Standard_NC6s_v3')).to.include({ gpus: 1, cpus: 6, pricePerHour: 3.06 });
      expect(byName.get('Standard_ND96asr_v4')).to.include({ gpus: 8, pricePerHour: 27.197 });
      expect(byName.get('Standard_E2s_v5')).to.deep.equal({ name: 'Standard_E2s_v5', remote: 'azure', cpus: 2, gpus: 0, memMiB: 16384, diskMiB: 0 });
      expect(byName.has('Standard_F2s_v2'), 'restricted for the subscription').to.equal(false);
      expect(byName.has('Standard_NC4as_T4_v3'), 'not sold in eastus').to.equal(false);
      const pricePages = requestsTo('/api/retail/prices');
      expect(pricePages.length).to.be.greaterThan(2);
      expect(pricePages[0]!.query['$filter']).to.equal("serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and priceType eq 'Consumption'");
      expect(requestsTo('/skus')[0]!.query['$filter']).to.equal("location eq 'eastus'");
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
      const hostKeys = [ssh2.utils.generateKeyPairSync('ed25519').private];
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
      group: { name: 'p-rg', provisioningState: 'Succeeded', tags: { 'skyport-partition': 'p', 'skyport-job': 'j', 'skyport-nodes': '2' } },
      vms: [0, 1].map((i) => ({ name: `p-${i}`, provisioningState: 'Succeeded', tags: { 'skyport-node': String(i), 'skyport-role': i ? 'compute' : 'head', 'skyport-host-key': `SHA256:k${i}` }, nicIds: [`/x/nic${i}`] })),
      nics: [0, 1].map((i) => ({ id: `/X/NIC${i}`, name: `nic${i}`, provisioningState: 'Succeeded', privateIp: `10.0.0.${4 + i}`, ...(i ? {} : { publicIpId: '/x/ip' }) })),
      publicIps: [{ id: '/x/ip', name: 'ip', provisioningState: 'Succeeded', ipAddress: '20.1.2.3' }],
      ...overrides,
    });
    const ctx = { creating: false, deleting: false, sshUser: 'skyport', sshPort: 22 };

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
      const interrupted = partitionView(observed({ vms: observed().vms.slice(0, 1) }), ctx);
      expect(interrupted.status).to.equal('failed');
      expect(interrupted.error).to.include('1 of 2 nodes');
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
      const hostKey = readHostKey(ssh2.utils.generateKeyPairSync('ed25519').private);
      const config = JSON.parse(cloudConfig({ adminUser: 'ops', hostKey, containerRuntime: 'docker', containerImage: 'alpine:3', sshPort: 2222 }).replace(/^#cloud-config\n/, ''));
      expect(config.packages).to.deep.equal(['docker.io']);
      expect(config.runcmd).to.deep.include(['usermod', '-aG', 'docker', 'ops']);
      expect(config.runcmd).to.deep.include(['docker', 'pull', 'alpine:3']);
      expect(config.write_files[0].content).to.include('Port 2222');
      expect(config.ssh_keys.ed25519_public).to.equal(hostKey.publicLine);
    });
  });
});
