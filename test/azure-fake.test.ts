import { expect } from 'chai';
import { request as httpsRequest } from 'node:https';
import { FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, FakeArm } from './fakes/azure-arm/index.js';
import { testKeyPair } from './harness/keys.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

const API = 'api-version=2025-04-01';

describe('fake Azure Resource Manager', function () {
  this.timeout(20_000);
  let fake: FakeArm;
  let token: string;

  const call = (method: string, pathOrUrl: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const url = new URL(pathOrUrl, fake.url);
      const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      const req = httpsRequest(
        url,
        {
          method,
          ca: fake.tls.caPem,
          headers: {
            ...(token ? { Authorization: `Bearer ${token}` } : {}),
            ...(text !== undefined ? { 'Content-Type': typeof body === 'string' ? 'application/x-www-form-urlencoded' : 'application/json' } : {}),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const raw = Buffer.concat(chunks).toString('utf8');
            resolve({ status: res.statusCode!, headers: res.headers, body: raw ? JSON.parse(raw) : undefined });
          });
        },
      );
      req.on('error', reject);
      req.end(text);
    });

  const sub = (): string => `/subscriptions/${fake.subscriptionId}`;
  const group = (name: string): string => `${sub()}/resourcegroups/${name}`;
  const resource = (g: string, type: string, name: string): string => `${sub()}/resourceGroups/${g}/providers/${type}/${name}`;
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  const until = async (check: () => Promise<boolean>, timeoutMs = 2000): Promise<void> => {
    for (let i = 0; i < timeoutMs / 10; i++) {
      if (await check()) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error('condition not reached');
  };
  const operationDone = async (asyncUrl: string): Promise<any> => {
    let last: Answer | undefined;
    await until(async () => {
      last = await call('GET', asyncUrl);
      return last.body.status !== 'InProgress';
    });
    return last!.body;
  };

  before(async () => {
    fake = await FakeArm.start({ provisioningDelayMs: 30, deletionDelayMs: 30, listPageSize: 2, pricesPageSize: 3 });
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: FAKE_CLIENT_ID, client_secret: FAKE_CLIENT_SECRET, scope: `${fake.url}/.default` });
    const answer = await call('POST', `/${fake.tenantId}/oauth2/v2.0/token`, form.toString());
    expect(answer.status).to.equal(200);
    token = answer.body.access_token;
  });
  after(() => fake.stop());
  afterEach(() => fake.clearFaults());

  describe('identity', () => {
    it('serves OpenID metadata and issues tokens for a known client and secret only', async () => {
      const meta = await call('GET', `/${fake.tenantId}/v2.0/.well-known/openid-configuration`);
      expect(meta.body.token_endpoint).to.equal(`${fake.url}/${fake.tenantId}/oauth2/v2.0/token`);
      const bad = new URLSearchParams({ grant_type: 'client_credentials', client_id: FAKE_CLIENT_ID, client_secret: 'nope', scope: 'x/.default' });
      const refused = await call('POST', `/${fake.tenantId}/oauth2/v2.0/token`, bad.toString());
      expect(refused.status).to.equal(401);
      expect(refused.body.error).to.equal('invalid_client');
      const token = fake.requests.filter((r) => r.path.endsWith('/token')).at(-1)!;
      expect(token.body).to.include({ client_secret: '[redacted]' });
    });

    it('refuses Resource Manager calls without a valid token or without an api-version', async () => {
      const none = await call('GET', `${sub()}/resourcegroups?${API}`, undefined, { Authorization: '' });
      expect(none.status).to.equal(401);
      expect(none.body).to.deep.equal({ error: { code: 'AuthenticationFailed', message: "Authentication failed. The 'Authorization' header is missing." } });
      expect((await call('GET', `${sub()}/resourcegroups?${API}`, undefined, { Authorization: 'Bearer forged' })).body.error.code).to.equal('InvalidAuthenticationToken');
      expect((await call('GET', `${sub()}/resourcegroups`)).body.error.code).to.equal('MissingApiVersionParameter');
      expect(fake.requests.some((r) => JSON.stringify(r).includes(token))).to.equal(false);
    });
  });

  describe('resource groups', () => {
    it('creates (201), updates (200), reads, and lists by tag, page by page', async () => {
      expect((await call('PUT', `${group('a-rg')}?${API}`, { location: 'eastus', tags: { 'skyport-core': 'c1' } })).status).to.equal(201);
      expect((await call('PUT', `${group('a-rg')}?${API}`, { location: 'eastus', tags: { 'skyport-core': 'c1', x: '1' } })).status).to.equal(200);
      const moved = await call('PUT', `${group('a-rg')}?${API}`, { location: 'westeurope' });
      expect(moved.status).to.equal(409);
      expect(moved.body.error.code).to.equal('InvalidResourceGroupLocation');
      for (const name of ['b-rg', 'c-rg']) await call('PUT', `${group(name)}?${API}`, { location: 'eastus', tags: { 'skyport-core': 'c1' } });
      await call('PUT', `${group('d-rg')}?${API}`, { location: 'eastus', tags: { 'skyport-core': 'c2' } });
      const got = await call('GET', `${group('A-RG')}?${API}`);
      expect(got.body).to.include({ name: 'a-rg', location: 'eastus' });
      expect(got.body.tags).to.deep.equal({ 'skyport-core': 'c1', x: '1' });
      const names: string[] = [];
      let next: string | undefined = `${sub()}/resourcegroups?${API}&$filter=${encodeURIComponent("tagName eq 'skyport-core' and tagValue eq 'c1'")}`;
      let pages = 0;
      while (next) {
        const page = await call('GET', next);
        names.push(...page.body.value.map((g: any) => g.name));
        next = page.body.nextLink;
        pages++;
      }
      expect(names.sort()).to.deep.equal(['a-rg', 'b-rg', 'c-rg']);
      expect(pages).to.equal(2);
      const unsupported = await call('GET', `${sub()}/resourcegroups?${API}&$filter=${encodeURIComponent("startswith(name,'a')")}`);
      expect(unsupported.status).to.equal(400);
    });

    it('answers 404 with ARM\'s error body for a missing group, and for a resource put into one', async () => {
      const missing = await call('GET', `${group('nowhere-rg')}?${API}`);
      expect(missing.status).to.equal(404);
      expect(missing.body).to.deep.equal({ error: { code: 'ResourceGroupNotFound', message: "Resource group 'nowhere-rg' could not be found." } });
      const put = await call('PUT', `${resource('nowhere-rg', 'Microsoft.Network/networkSecurityGroups', 'n')}?${API}`, { location: 'eastus' });
      expect(put.body.error.code).to.equal('ResourceGroupNotFound');
      expect((await call('DELETE', `${group('nowhere-rg')}?${API}`)).status).to.equal(404);
      expect((await call('GET', `/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups?${API}`)).body.error.code).to.equal('SubscriptionNotFound');
    });

    it('deletes a group and everything in it through a Location to poll, refusing new resources meanwhile', async () => {
      await call('PUT', `${group('doomed-rg')}?${API}`, { location: 'eastus' });
      const nsg = await call('PUT', `${resource('doomed-rg', 'Microsoft.Network/networkSecurityGroups', 'n')}?${API}`, { location: 'eastus', properties: {} });
      await operationDone(nsg.headers['azure-asyncoperation'] as string);
      const deleting = await call('DELETE', `${group('doomed-rg')}?${API}`);
      expect(deleting.status).to.equal(202);
      const location = deleting.headers.location as string;
      expect((await call('GET', location)).status).to.equal(202);
      expect((await call('GET', `${group('doomed-rg')}?${API}`)).body.properties.provisioningState).to.equal('Deleting');
      const late = await call('PUT', `${resource('doomed-rg', 'Microsoft.Network/virtualNetworks', 'v')}?${API}`, { location: 'eastus', properties: { addressSpace: { addressPrefixes: ['10.0.0.0/16'] } } });
      expect(late.status).to.equal(409);
      expect(late.body.error.code).to.equal('ResourceGroupBeingDeleted');
      await until(async () => (await call('GET', location)).status === 200);
      expect((await call('GET', `${group('doomed-rg')}?${API}`)).status).to.equal(404);
      expect(fake.resources().filter((r) => r.id.includes('/doomed-rg/'))).to.deep.equal([]);
    });
  });

  describe('resources', () => {
    before(async () => {
      await call('PUT', `${group('net-rg')}?${API}`, { location: 'eastus' });
    });

    it('answers a PUT with 201 and an Azure-AsyncOperation URL while provisioningState moves to Succeeded', async () => {
      const url = `${resource('net-rg', 'Microsoft.Network/virtualNetworks', 'vnet')}?${API}`;
      const put = await call('PUT', url, { location: 'eastus', tags: { t: '1' }, properties: { addressSpace: { addressPrefixes: ['10.0.0.0/16'] }, subnets: [{ name: 'nodes', properties: { addressPrefix: '10.0.0.0/20' } }] } });
      expect(put.status).to.equal(201);
      expect(put.body.properties.provisioningState).to.equal('Updating');
      expect(put.body.properties.subnets[0].id).to.match(/\/virtualNetworks\/vnet\/subnets\/nodes$/);
      const op = put.headers['azure-asyncoperation'] as string;
      expect(op).to.match(/\/providers\/Microsoft\.Network\/locations\/eastus\/operations\/[\w-]+\?api-version=/);
      expect((await call('GET', op)).body.status).to.equal('InProgress');
      expect((await operationDone(op)).status).to.equal('Succeeded');
      expect((await call('GET', url)).body.properties.provisioningState).to.equal('Succeeded');
      expect((await call('PUT', url, { location: 'eastus', properties: { addressSpace: { addressPrefixes: ['10.0.0.0/16'] } } })).status).to.equal(200);
    });

    it('checks references: a NIC needs its subnet, a public IP is used once', async () => {
      const nicUrl = (name: string): string => `${resource('net-rg', 'Microsoft.Network/networkInterfaces', name)}?${API}`;
      const subnet = { id: `${resource('net-rg', 'Microsoft.Network/virtualNetworks', 'vnet')}/subnets/nodes` };
      const vnet = await call('PUT', `${resource('net-rg', 'Microsoft.Network/virtualNetworks', 'vnet')}?${API}`, { location: 'eastus', properties: { addressSpace: { addressPrefixes: ['10.0.0.0/16'] }, subnets: [{ name: 'nodes', properties: { addressPrefix: '10.0.0.0/20' } }] } });
      // Referenced while its own operation runs: Azure refuses until it is Succeeded.
      const early = await call('PUT', nicUrl('n0'), { location: 'eastus', properties: { ipConfigurations: [{ name: 'p', properties: { subnet } }] } });
      expect(early.status).to.equal(400);
      expect(early.body.error.code).to.equal('ReferencedResourceNotProvisioned');
      await operationDone(vnet.headers['azure-asyncoperation'] as string);
      const dangling = await call('PUT', nicUrl('n0'), { location: 'eastus', properties: { ipConfigurations: [{ name: 'p', properties: { subnet: { id: `${subnet.id}x` } } }] } });
      expect(dangling.status).to.equal(400);
      expect(dangling.body.error.code).to.equal('InvalidResourceReference');
      const ip = await call('PUT', `${resource('net-rg', 'Microsoft.Network/publicIPAddresses', 'ip')}?${API}`, { location: 'eastus', sku: { name: 'Standard' }, properties: { publicIPAllocationMethod: 'Static' } });
      expect(ip.body.properties.ipAddress).to.match(/^\d+\.\d+\.\d+\.\d+$/);
      const withIp = () => ({ location: 'eastus', properties: { ipConfigurations: [{ name: 'p', properties: { subnet, publicIPAddress: { id: ip.body.id } } }] } });
      const first = await call('PUT', nicUrl('n1'), withIp());
      expect(first.status).to.equal(201);
      expect(first.body.properties.ipConfigurations[0].properties.privateIPAddress).to.equal('10.0.0.4');
      const second = await call('PUT', nicUrl('n2'), withIp());
      expect(second.body.error.code).to.equal('PublicIPAddressInUse');
      const dynamic = await call('PUT', `${resource('net-rg', 'Microsoft.Network/publicIPAddresses', 'ip2')}?${API}`, { location: 'eastus', sku: { name: 'Standard' }, properties: { publicIPAllocationMethod: 'Dynamic' } });
      expect(dynamic.body.error.code).to.equal('StandardSkuPublicIPAddressesMustBeStatic');
    });

    it('creates VMs only as Azure would: a size of the location, SSH keys at the admin\'s path, no password with them', async () => {
      const nic = await call('GET', `${resource('net-rg', 'Microsoft.Network/networkInterfaces', 'n1')}?${API}`);
      const key = testKeyPair().public;
      const vm = (overrides: Record<string, any> = {}) => ({
        location: 'eastus',
        properties: {
          hardwareProfile: { vmSize: 'Standard_B2s' },
          storageProfile: { imageReference: { publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server', version: 'latest' } },
          osProfile: {
            computerName: 'vm',
            adminUsername: 'skyport',
            customData: Buffer.from('#cloud-config\n{}').toString('base64'),
            linuxConfiguration: { disablePasswordAuthentication: true, ssh: { publicKeys: [{ path: '/home/skyport/.ssh/authorized_keys', keyData: key }] } },
          },
          networkProfile: { networkInterfaces: [{ id: nic.body.id }] },
          ...overrides,
        },
      });
      const url = (name: string): string => `${resource('net-rg', 'Microsoft.Compute/virtualMachines', name)}?${API}`;
      const refused = async (name: string, body: unknown): Promise<string> => (await call('PUT', url(name), body)).body.error.code;
      expect(await refused('v', vm({ hardwareProfile: { vmSize: 'Standard_NC4as_T4_v3' } }))).to.equal('SkuNotAvailable');
      expect(await refused('v', vm({ hardwareProfile: { vmSize: 'Standard_F2s_v2' } }))).to.equal('SkuNotAvailable');
      expect(await refused('v', vm({ storageProfile: { imageReference: { publisher: 'Canonical', offer: 'nope', sku: 'server', version: 'latest' } } }))).to.equal('PlatformImageNotFound');
      const wrongPath = vm();
      wrongPath.properties.osProfile.linuxConfiguration.ssh.publicKeys[0].path = '/root/.ssh/authorized_keys';
      expect(await refused('v', wrongPath)).to.equal('InvalidParameter');
      const password = vm();
      (password.properties.osProfile as Record<string, unknown>).adminPassword = 'Passw0rd!';
      expect(await refused('v', password)).to.equal('InvalidParameter');
      const provisioned: [string, string | undefined][] = [];
      fake.onProvisioned((r, customData) => provisioned.push([r.name, customData]));
      const created = await call('PUT', url('v'), vm());
      expect(created.status).to.equal(201);
      expect(created.body.properties.provisioningState).to.equal('Creating');
      expect(created.headers['azure-asyncoperation']).to.match(/Microsoft\.Compute\/locations\/eastus\/operations\//);
      await operationDone(created.headers['azure-asyncoperation'] as string);
      expect(provisioned).to.deep.include(['v', Buffer.from('#cloud-config\n{}').toString('base64')]);
      const read = await call('GET', url('v'));
      expect(read.body.properties.osProfile).not.to.have.property('customData');
      expect(fake.customDataOf(read.body.id)).to.equal(Buffer.from('#cloud-config\n{}').toString('base64'));
      const changed = vm();
      changed.properties.osProfile.customData = Buffer.from('other').toString('base64');
      expect(await refused('v', changed)).to.equal('PropertyChangeNotAllowed');
      expect(await refused('v2', vm())).to.equal('NicInUse');
      expect(fake.resources('Microsoft.Compute/disks').some((d) => d.name.startsWith('v_OsDisk_'))).to.equal(true);

      // Sizes that cannot boot the image, and marketplace images that need a plan.
      expect(await refused('a', vm({ hardwareProfile: { vmSize: 'Standard_D2ps_v5' } }))).to.equal('BadRequest');
      expect(await refused('a', vm({ hardwareProfile: { vmSize: 'Standard_A2_v2' } }))).to.equal('BadRequest');
      const ngc = { publisher: 'nvidia', offer: 'ngc_azure_17_11', sku: 'ngc-base-version-24_03_4_gen2', version: '24.03.4' };
      expect(await refused('a', vm({ storageProfile: { imageReference: ngc } }))).to.equal('VMMarketplaceInvalidInput');
      const version = await call('GET', `${sub()}/providers/Microsoft.Compute/locations/eastus/publishers/nvidia/artifacttypes/vmimage/offers/ngc_azure_17_11/skus/ngc-base-version-24_03_4_gen2/versions/24.03.4?${API}`);
      expect(version.body.properties).to.deep.include({ hyperVGeneration: 'V2', architecture: 'x64', plan: { name: 'ngc-base-version-24_03_4_gen2', product: 'ngc_azure_17_11', publisher: 'nvidia' } });

      // Run commands: on a Succeeded VM; one waiting for cloud-init ends when the guest is ready.
      const runCommand = `${resource('net-rg', 'Microsoft.Compute/virtualMachines', 'v')}/runCommands/ready?${API}`;
      const ran = await call('PUT', runCommand, { location: 'eastus', properties: { source: { script: 'cloud-init status --wait' }, asyncExecution: false } });
      expect(ran.status).to.equal(201);
      expect((await operationDone(ran.headers['azure-asyncoperation'] as string)).status).to.equal('Succeeded');
      expect(fake.guestReady(read.body.id)).to.equal(true);
      expect((await call('GET', runCommand)).body.properties.instanceView).to.include({ executionState: 'Succeeded', exitCode: 0 });
    });

    it('enforces vCPU quota per family and location with 409 OperationNotAllowed, as Azure words it', async () => {
      const key = testKeyPair().public;
      const nic = await call('GET', `${resource('net-rg', 'Microsoft.Network/networkInterfaces', 'n1')}?${API}`);
      fake.setQuota('eastus', 'standardBSFamily', 1);
      try {
        const answer = await call('PUT', `${resource('net-rg', 'Microsoft.Compute/virtualMachines', 'q')}?${API}`, {
          location: 'eastus',
          properties: {
            hardwareProfile: { vmSize: 'Standard_B2s' },
            storageProfile: { imageReference: { publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server', version: 'latest' } },
            osProfile: { computerName: 'q', adminUsername: 'skyport', linuxConfiguration: { disablePasswordAuthentication: true, ssh: { publicKeys: [{ path: '/home/skyport/.ssh/authorized_keys', keyData: key }] } } },
            networkProfile: { networkInterfaces: [{ id: nic.body.id }] },
          },
        });
        expect(answer.status).to.equal(409);
        expect(answer.body.error.code).to.equal('OperationNotAllowed');
        expect(answer.body.error.message).to.include('exceeding approved standardBSFamily Cores quota').and.include('Current Limit: 1');
      } finally {
        fake.setQuota('eastus', 'standardBSFamily', undefined);
      }
    });

    it('answers 404 ResourceGroupNotFound to writes into a group for a while after creating it', async () => {
      fake.setGroupPropagationMs(300);
      try {
        expect((await call('PUT', `${group('young-rg')}?${API}`, { location: 'eastus' })).status).to.equal(201);
        const nsg = `${resource('young-rg', 'Microsoft.Network/networkSecurityGroups', 'n')}?${API}`;
        const early = await call('PUT', nsg, { location: 'eastus', properties: {} });
        expect([early.status, early.body.error.code]).to.deep.equal([404, 'ResourceGroupNotFound']);
        await new Promise((resolve) => setTimeout(resolve, 350));
        expect((await call('PUT', nsg, { location: 'eastus', properties: {} })).status).to.equal(201);
      } finally {
        fake.setGroupPropagationMs(0);
      }
    });

    it('makes subnets private from network api-version 2025-07-01, and refuses Basic public IPs', async () => {
      await call('PUT', `${group('out-rg')}?${API}`, { location: 'eastus' });
      const vnet = (api: string, name: string) =>
        call('PUT', `${resource('out-rg', 'Microsoft.Network/virtualNetworks', name)}?api-version=${api}`, {
          location: 'eastus',
          properties: { addressSpace: { addressPrefixes: ['10.0.0.0/16'] }, subnets: [{ name: 's', properties: { addressPrefix: '10.0.0.0/24' } }] },
        });
      expect((await vnet('2025-05-01', 'old')).body.properties.subnets[0].properties).not.to.have.property('defaultOutboundAccess');
      expect((await vnet('2025-07-01', 'new')).body.properties.subnets[0].properties.defaultOutboundAccess).to.equal(false);
      const basic = await call('PUT', `${resource('out-rg', 'Microsoft.Network/publicIPAddresses', 'b')}?${API}`, { location: 'eastus', sku: { name: 'Basic' }, properties: {} });
      expect(basic.status).to.equal(400);
    });
  });

  describe('faults', () => {
    it('throttles with 429 and Retry-After, fails with 500, then serves again', async () => {
      fake.inject({ kind: 'throttle', path: '/resourcegroups/f-rg', method: 'PUT', retryAfterSec: 7 });
      fake.inject({ kind: 'server-error', path: '/resourcegroups/f-rg', method: 'PUT' });
      const throttled = await call('PUT', `${group('f-rg')}?${API}`, { location: 'eastus' });
      expect(throttled.status).to.equal(429);
      expect(throttled.headers['retry-after']).to.equal('7');
      expect(throttled.body.error.code).to.equal('TooManyRequests');
      const failed = await call('PUT', `${group('f-rg')}?${API}`, { location: 'eastus' });
      expect(failed.status).to.equal(500);
      expect(failed.body.error.code).to.equal('InternalServerError');
      expect((await call('PUT', `${group('f-rg')}?${API}`, { location: 'eastus' })).status).to.equal(201);
    });

    it('ends an operation Failed with the injected error, or never', async () => {
      const fault = fake.inject({ kind: 'fail-operation', path: 'networkSecurityGroups/bad', code: 'QuotaExceeded', message: 'Operation could not be completed as it results in exceeding approved quota.' });
      fake.inject({ kind: 'hang-operation', path: 'networkSecurityGroups/slow' });
      const bad = await call('PUT', `${resource('f-rg', 'Microsoft.Network/networkSecurityGroups', 'bad')}?${API}`, { location: 'eastus', properties: {} });
      expect(bad.status).to.equal(201);
      const done = await operationDone(bad.headers['azure-asyncoperation'] as string);
      expect(done).to.include({ status: 'Failed' });
      expect(done.error).to.deep.equal({ code: 'QuotaExceeded', message: 'Operation could not be completed as it results in exceeding approved quota.' });
      expect((await call('GET', `${resource('f-rg', 'Microsoft.Network/networkSecurityGroups', 'bad')}?${API}`)).body.properties.provisioningState).to.equal('Failed');
      expect(fault.hits).to.equal(1);
      const slow = await call('PUT', `${resource('f-rg', 'Microsoft.Network/networkSecurityGroups', 'slow')}?${API}`, { location: 'eastus', properties: {} });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await call('GET', slow.headers['azure-asyncoperation'] as string)).body.status).to.equal('InProgress');
    });
  });

  describe('throttling', () => {
    it('counts requests down in x-ms-ratelimit-remaining-* and answers 429 with Retry-After when a bucket is empty', async () => {
      const throttled = await FakeArm.start({ throttling: { writes: { burst: 2, perSecond: 1 } } });
      try {
        const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: FAKE_CLIENT_ID, client_secret: FAKE_CLIENT_SECRET, scope: `${throttled.url}/.default` });
        const own = fake;
        const ownToken = token;
        fake = throttled;
        try {
          token = (await call('POST', `/${throttled.tenantId}/oauth2/v2.0/token`, form.toString())).body.access_token;
          const put = () => call('PUT', `${group('t-rg')}?${API}`, { location: 'eastus' });
          expect((await put()).headers['x-ms-ratelimit-remaining-subscription-writes']).to.equal('1');
          expect((await put()).headers['x-ms-ratelimit-remaining-subscription-writes']).to.equal('0');
          const third = await put();
          expect(third.status).to.equal(429);
          expect(Number(third.headers['retry-after'])).to.be.at.least(1);
          // Reads have their own bucket (none here).
          expect((await call('GET', `${group('t-rg')}?${API}`)).status).to.equal(200);
        } finally {
          fake = own;
          token = ownToken;
        }
      } finally {
        await throttled.stop();
      }
    });
  });

  describe('the behaviours of a real subscription, by default', () => {
    const vmBody = (overrides: Record<string, any> = {}, network?: Record<string, any>) => ({
      location: 'eastus',
      ...overrides.envelope,
      properties: {
        hardwareProfile: { vmSize: 'Standard_D2s_v5' },
        storageProfile: { imageReference: { publisher: 'Canonical', offer: 'ubuntu-24_04-lts', sku: 'server', version: 'latest' }, osDisk: { createOption: 'FromImage', deleteOption: 'Delete' } },
        osProfile: {
          computerName: 'vm',
          adminUsername: 'skyport',
          linuxConfiguration: { disablePasswordAuthentication: true, ssh: { publicKeys: [{ path: '/home/skyport/.ssh/authorized_keys', keyData: testKeyPair().public }] } },
          ...overrides.os,
        },
        networkProfile: network ?? {
          networkApiVersion: '2022-11-01',
          networkInterfaceConfigurations: [
            {
              name: `${overrides.name ?? 'vm'}-nic`,
              tags: { made: 'by-the-vm' },
              properties: {
                primary: true,
                deleteOption: 'Delete',
                ipConfigurations: [
                  {
                    name: 'primary',
                    properties: {
                      subnet: { id: `${resource('own-rg', 'Microsoft.Network/virtualNetworks', 'vnet')}/subnets/nodes` },
                      publicIPAddressConfiguration: { name: `${overrides.name ?? 'vm'}-ip`, sku: { name: 'Standard', tier: 'Regional' }, properties: { deleteOption: 'Delete', publicIPAllocationMethod: 'Static' } },
                    },
                  },
                ],
              },
            },
          ],
        },
        ...overrides.properties,
      },
    });
    const putVm = (name: string, overrides: Record<string, any> = {}, network?: Record<string, any>) =>
      call('PUT', `${resource('own-rg', 'Microsoft.Compute/virtualMachines', name)}?${API}`, vmBody({ name, ...overrides }, network));
    const typeIn = (type: string): string[] => fake.resources(type).filter((r) => r.id.includes('/own-rg/')).map((r) => r.name).sort();

    before(async () => {
      await call('PUT', `${group('own-rg')}?${API}`, { location: 'eastus' });
      const vnet = await call('PUT', `${resource('own-rg', 'Microsoft.Network/virtualNetworks', 'vnet')}?${API}`, {
        location: 'eastus',
        properties: { addressSpace: { addressPrefixes: ['10.0.0.0/16'] }, subnets: [{ name: 'nodes', properties: { addressPrefix: '10.0.0.0/20' } }] },
      });
      await operationDone(vnet.headers['azure-asyncoperation'] as string);
    });

    it('says what is left of ARM\'s request buckets on every answer, and sends Retry-After on operations', async () => {
      const read = await call('GET', `${group('own-rg')}?${API}`);
      expect(Number(read.headers['x-ms-ratelimit-remaining-subscription-reads'])).to.be.within(200, 249);
      const nsg = await call('PUT', `${resource('own-rg', 'Microsoft.Network/networkSecurityGroups', 'nsg')}?${API}`, { location: 'eastus', properties: {} });
      expect(Number(nsg.headers['x-ms-ratelimit-remaining-subscription-writes'])).to.be.within(150, 199);
      expect(nsg.headers['retry-after']).to.equal('10');
      expect((await call('GET', nsg.headers['azure-asyncoperation'] as string)).headers['retry-after']).to.equal('10');
    });

    it('runs its clock faster when asked: delays, refills and Retry-After alike', async () => {
      const scaled = await FakeArm.start({ timeScale: 100, provisioningDelayMs: 5000, throttling: { writes: { burst: 1, perSecond: 1 } } });
      const own = { fake, token };
      try {
        fake = scaled;
        const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: FAKE_CLIENT_ID, client_secret: FAKE_CLIENT_SECRET, scope: `${scaled.url}/.default` });
        token = (await call('POST', `/${scaled.tenantId}/oauth2/v2.0/token`, form.toString())).body.access_token;
        await call('PUT', `${group('fast-rg')}?${API}`, { location: 'eastus' });
        const throttled = await call('PUT', `${group('fast-rg')}?${API}`, { location: 'eastus' });
        expect(throttled.status).to.equal(429);
        // A second of refill is 10 ms here; ARM's whole seconds are rounded up, the exact wait is in retry-after-ms.
        expect(Number(throttled.headers['retry-after-ms'])).to.be.within(1, 10);
        await sleep(15);
        const started = Date.now();
        const put = await call('PUT', `${resource('fast-rg', 'Microsoft.Network/networkSecurityGroups', 'n')}?${API}`, { location: 'eastus', properties: {} });
        expect(put.headers['retry-after']).to.equal('1');
        expect(put.headers['retry-after-ms']).to.equal('100');
        await operationDone(put.headers['azure-asyncoperation'] as string);
        // Five simulated seconds.
        expect(Date.now() - started).to.be.within(40, 1000);
      } finally {
        fake = own.fake;
        token = own.token;
        await scaled.stop();
      }
    });

    it('lets a VM make its NIC and public IP from configurations, and deletes them with it by their delete options', async () => {
      const put = await putVm('maker');
      expect(put.status).to.equal(201);
      expect(typeIn('Microsoft.Network/networkInterfaces')).to.include('maker-nic');
      expect(typeIn('Microsoft.Network/publicIPAddresses')).to.include('maker-ip');
      const nic = fake.resources('Microsoft.Network/networkInterfaces').find((r) => r.name === 'maker-nic')!;
      expect(nic.tags).to.deep.equal({ made: 'by-the-vm' });
      expect(nic.properties.ipConfigurations[0].properties.publicIPAddress.id).to.match(/\/publicIPAddresses\/maker-ip$/);
      expect(put.body.properties.networkProfile.networkInterfaces).to.deep.equal([{ id: nic.id, properties: { primary: true, deleteOption: 'Delete' } }]);
      await operationDone(put.headers['azure-asyncoperation'] as string);
      expect(fake.outboundOf(put.body.id)).to.equal('public-ip');
      expect(typeIn('Microsoft.Compute/disks').some((d) => d.startsWith('maker_OsDisk'))).to.equal(true);
      const del = await call('DELETE', `${resource('own-rg', 'Microsoft.Compute/virtualMachines', 'maker')}?${API}&forceDeletion=true`);
      await operationDone(del.headers['azure-asyncoperation'] as string);
      expect(typeIn('Microsoft.Network/networkInterfaces')).not.to.include('maker-nic');
      expect(typeIn('Microsoft.Network/publicIPAddresses')).not.to.include('maker-ip');
      expect(typeIn('Microsoft.Compute/disks').some((d) => d.startsWith('maker_OsDisk'))).to.equal(false);
    });

    it('refuses what Azure refuses of such a VM: a Basic public IP, no networkApiVersion, a network in another region', async () => {
      const basic = vmBody({ name: 'basic' });
      delete (basic.properties.networkProfile as any).networkInterfaceConfigurations[0].properties.ipConfigurations[0].properties.publicIPAddressConfiguration.sku;
      const refused = await call('PUT', `${resource('own-rg', 'Microsoft.Compute/virtualMachines', 'basic')}?${API}`, basic);
      expect(refused.status).to.equal(400);
      expect(refused.body.error.message).to.include('Basic SKU public IP addresses are retired');
      expect(typeIn('Microsoft.Network/networkInterfaces'), 'nothing half made').not.to.include('basic-nic');
      const noVersion = vmBody({ name: 'nover' });
      delete (noVersion.properties.networkProfile as any).networkApiVersion;
      expect((await call('PUT', `${resource('own-rg', 'Microsoft.Compute/virtualMachines', 'nover')}?${API}`, noVersion)).body.error.message).to.include('networkApiVersion');
      const elsewhere = await putVm('elsewhere', { envelope: { location: 'westeurope' } });
      expect(elsewhere.status).to.equal(400);
      expect(elsewhere.body.error.code).to.equal('InvalidResourceReference');
    });

    it('fails allocations where capacity is short: later in a zone or a region, at once for SkuNotAvailable', async () => {
      fake.exhaust({ location: 'eastus', size: 'Standard_D2s_v5', zone: '2' });
      fake.exhaust({ location: 'eastus', size: 'Standard_D4s_v5', mode: 'sku' });
      try {
        const zonal = await putVm('zonal', { envelope: { zones: ['2'] } });
        expect(zonal.status).to.equal(201);
        expect((await operationDone(zonal.headers['azure-asyncoperation'] as string)).error.code).to.equal('ZonalAllocationFailed');
        const other = await putVm('zone1', { envelope: { zones: ['1'] } });
        expect((await operationDone(other.headers['azure-asyncoperation'] as string)).status).to.equal('Succeeded');
        const sku = await putVm('bigger', { properties: { hardwareProfile: { vmSize: 'Standard_D4s_v5' } } });
        expect(sku.status).to.equal(409);
        expect(sku.body.error.code).to.equal('SkuNotAvailable');
      } finally {
        fake.restoreCapacity();
      }
    });

    it('evicts Spot VMs when told: deleted, or deallocated, as their policy says; a regular VM is never evicted', async () => {
      const deleted = await putVm('spot-del', { properties: { priority: 'Spot', evictionPolicy: 'Delete', billingProfile: { maxPrice: -1 } } });
      const kept = await putVm('spot-dealloc', { properties: { priority: 'Spot', evictionPolicy: 'Deallocate', billingProfile: { maxPrice: 0.05 } } });
      const regular = await putVm('regular');
      for (const put of [deleted, kept, regular]) await operationDone(put.headers['azure-asyncoperation'] as string);
      expect(() => fake.evictSpot(regular.body.id)).to.throw(/not a Spot VM/);
      expect(fake.evictSpot(deleted.body.id)).to.equal('deleted');
      expect(typeIn('Microsoft.Compute/virtualMachines')).not.to.include('spot-del');
      expect(typeIn('Microsoft.Network/networkInterfaces')).not.to.include('spot-del-nic');
      expect(fake.evictSpot(kept.body.id)).to.equal('deallocated');
      const all: any[] = [];
      for (let next: string | undefined = `${sub()}/providers/Microsoft.Compute/virtualMachines?${API}&statusOnly=true`; next; ) {
        const page = await call('GET', next);
        all.push(...page.body.value);
        next = page.body.nextLink;
      }
      const status = (name: string): string[] => all.find((v: any) => v.name === name).properties.instanceView.statuses.map((s: any) => s.code);
      expect(status('spot-dealloc')).to.include('PowerState/deallocated');
      expect(status('regular')).to.include('PowerState/running');
      const bad = await putVm('badprice', { properties: { priority: 'Spot', billingProfile: { maxPrice: 0 } } });
      expect(bad.status).to.equal(400);
    });

    it('powers a VM off when the shutdown timer its cloud-init armed fires', async () => {
      const at = new Date(Date.now() + 1500);
      const calendar = `${at.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
      const config = {
        write_files: [
          { path: '/etc/systemd/system/x-expiry.timer', content: `[Timer]\nOnCalendar=${calendar}\n` },
          { path: '/etc/systemd/system/x-expiry.service', content: '[Service]\nExecStart=/usr/sbin/shutdown -P now\n' },
        ],
      };
      const customData = Buffer.from(`#cloud-config\n${JSON.stringify(config)}`).toString('base64');
      const put = await putVm('timed', { os: { customData } });
      await operationDone(put.headers['azure-asyncoperation'] as string);
      expect(fake.powerStateOf(put.body.id)).to.equal('running');
      await until(async () => fake.powerStateOf(put.body.id) === 'stopped', 4000);
      const view = await call('GET', `${resource('own-rg', 'Microsoft.Compute/virtualMachines', 'timed')}/instanceView?${API}`);
      expect(view.body.statuses.map((s: any) => s.code)).to.include('PowerState/stopped');
    });

    it('takes minutes to delete a group holding VMs, unless their deletion is forced', async () => {
      const slow = await FakeArm.start({ unforcedVmDeletionMs: 60_000, timeScale: 100, operationRetryAfterSec: null });
      const own = { fake, token };
      try {
        fake = slow;
        const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: FAKE_CLIENT_ID, client_secret: FAKE_CLIENT_SECRET, scope: `${slow.url}/.default` });
        token = (await call('POST', `/${slow.tenantId}/oauth2/v2.0/token`, form.toString())).body.access_token;
        const timeToDelete = async (name: string, force: boolean): Promise<number> => {
          await call('PUT', `${group(name)}?${API}`, { location: 'eastus' });
          const vnet = await call('PUT', `${resource(name, 'Microsoft.Network/virtualNetworks', 'vnet')}?${API}`, {
            location: 'eastus',
            properties: { addressSpace: { addressPrefixes: ['10.0.0.0/16'] }, subnets: [{ name: 'nodes', properties: { addressPrefix: '10.0.0.0/20' } }] },
          });
          await operationDone(vnet.headers['azure-asyncoperation'] as string);
          const body = vmBody({ name: 'v' });
          (body.properties.networkProfile as any).networkInterfaceConfigurations[0].properties.ipConfigurations[0].properties.subnet.id = `${resource(name, 'Microsoft.Network/virtualNetworks', 'vnet')}/subnets/nodes`;
          const vm = await call('PUT', `${resource(name, 'Microsoft.Compute/virtualMachines', 'v')}?${API}`, body);
          await operationDone(vm.headers['azure-asyncoperation'] as string);
          const started = Date.now();
          await call('DELETE', `${group(name)}?${API}${force ? '&forceDeletionTypes=Microsoft.Compute/virtualMachines' : ''}`);
          await until(async () => !slow.groups().some((g) => g.name === name), 4000);
          return Date.now() - started;
        };
        const forced = await timeToDelete('forced-rg', true);
        const graceful = await timeToDelete('graceful-rg', false);
        // 60 simulated seconds more: 600 ms here.
        expect(graceful - forced).to.be.at.least(450);
      } finally {
        fake = own.fake;
        token = own.token;
        await slow.stop();
      }
    });
  });

  describe('catalog and prices', () => {
    it('lists the location\'s sizes, SKUs with GPU capabilities and restrictions, and image versions', async () => {
      const sizes = await call('GET', `${sub()}/providers/Microsoft.Compute/locations/westeurope/vmSizes?${API}`);
      expect(sizes.body.value.map((s: any) => s.name)).to.include('Standard_NC4as_T4_v3').and.not.include('Standard_ND96asr_v4');
      const skus = await call('GET', `${sub()}/providers/Microsoft.Compute/skus?${API}&$filter=${encodeURIComponent("location eq 'eastus'")}`);
      expect(skus.body.value.every((s: any) => s.locations.length === 1 && s.locations[0] === 'eastus')).to.equal(true);
      const nd = skus.body.value.find((s: any) => s.name === 'Standard_ND96asr_v4');
      expect(nd.capabilities).to.deep.include({ name: 'GPUs', value: '8' });
      const f2 = skus.body.value.find((s: any) => s.name === 'Standard_F2s_v2');
      expect(f2.restrictions[0]).to.include({ type: 'Location', reasonCode: 'NotAvailableForSubscription' });
      const versions = await call('GET', `${sub()}/providers/Microsoft.Compute/locations/eastus/publishers/Canonical/artifacttypes/vmimage/offers/ubuntu-24_04-lts/skus/server/versions?${API}`);
      expect(versions.body.map((v: any) => v.name)).to.have.members(['24.04.202409120', '24.04.202502210', '24.04.202406140', '24.04.202410010']);
    });

    it('serves retail prices anonymously, filtered, in the asked currency, linked by NextPageLink', async () => {
      const filter = encodeURIComponent("serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and armSkuName eq 'Standard_D2s_v5'");
      let next: string | null = `/api/retail/prices?currencyCode=${encodeURIComponent("'EUR'")}&$filter=${filter}`;
      const items: any[] = [];
      let pages = 0;
      while (next) {
        const page = await call('GET', next, undefined, { Authorization: '' });
        expect(page.status).to.equal(200);
        expect(page.body.BillingCurrency).to.equal('EUR');
        items.push(...page.body.Items);
        next = page.body.NextPageLink;
        pages++;
      }
      expect(pages).to.equal(2);
      expect(items).to.have.length(5);
      expect(items.every((i) => i.armSkuName === 'Standard_D2s_v5' && i.currencyCode === 'EUR')).to.equal(true);
      const payg = items.find((i) => i.type === 'Consumption' && !/spot|low priority/i.test(i.skuName) && !/windows/i.test(i.productName));
      expect(payg.retailPrice).to.be.closeTo(0.096 * 0.92, 1e-9);
    });
  });

  describe('state', () => {
    it('records every request, and its state empties when its groups are deleted', async () => {
      const seen = fake.requests.length;
      await call('GET', `${group('a-rg')}?${API}`);
      expect(fake.requests.length).to.equal(seen + 1);
      expect(fake.requests.at(-1)).to.include({ method: 'GET', status: 200, authorized: true });
      const force = 'forceDeletionTypes=Microsoft.Compute/virtualMachines';
      for (const g of fake.groups()) expect((await call('DELETE', `${group(g.name)}?${API}&${force}`)).status).to.equal(202);
      // f-rg holds an operation that never ends: its group goes all the same, and the operation is cancelled.
      await until(async () => fake.groups().length === 0);
      expect(fake.resources()).to.deep.equal([]);
      expect(fake.operations().filter((o) => o.status === 'InProgress')).to.deep.equal([]);
    });
  });
});
