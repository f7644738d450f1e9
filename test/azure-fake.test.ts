import { expect } from 'chai';
import { request as httpsRequest } from 'node:https';
import ssh2 from 'ssh2';
import { FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, FakeArm } from './fakes/azure-arm/index.js';

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
  const until = async (check: () => Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 200; i++) {
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
      await call('PUT', `${resource('net-rg', 'Microsoft.Network/virtualNetworks', 'vnet')}?${API}`, { location: 'eastus', properties: { addressSpace: { addressPrefixes: ['10.0.0.0/16'] }, subnets: [{ name: 'nodes', properties: { addressPrefix: '10.0.0.0/20' } }] } });
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
      const key = ssh2.utils.generateKeyPairSync('ed25519').public;
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
      for (const g of fake.groups()) expect((await call('DELETE', `${group(g.name)}?${API}`)).status).to.equal(202);
      // f-rg holds an operation that never ends: its group goes all the same, and the operation is cancelled.
      await until(async () => fake.groups().length === 0);
      expect(fake.resources()).to.deep.equal([]);
      expect(fake.operations().filter((o) => o.status === 'InProgress')).to.deep.equal([]);
    });
  });
});
