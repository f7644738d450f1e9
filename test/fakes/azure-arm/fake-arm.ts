import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createCa, issueCertificate } from '../../../spool-bootstrap/pki.js';
import { ArmError, badRequest, notFound } from './arm-error.js';
import { defaultCatalog, type Catalog } from './catalog.js';
import { Faults, type Fault, type FaultSpec } from './faults.js';
import { FakeIdentity, type ClientRegistration } from './identity.js';
import { FakeClock } from './clock.js';
import { Operations, type ArmOperation } from './operations.js';
import { quotaKey, ResourceManager, type LatencyModel, type PowerState, type Reply, type RetryAfterModel, type Shortage } from './resource-manager.js';
import { resourceJson, ResourceStore, type ResourceGroupRecord } from './resource-store.js';
import { retailPricesPage } from './retail-prices.js';
import { ARM_BUCKETS, Throttling, type ThrottlingSpec } from './throttling.js';

export interface FakeArmOptions {
  subscriptionId?: string;
  tenantId?: string;
  clients?: ClientRegistration[];
  /**
   * Time runs this many times faster than the wall clock (default 1): every duration below, the throttling
   * refill rates and Retry-After are simulated time (clock.ts).
   */
  timeScale?: number;
  /** How long a PUT's operation stays InProgress (ms), for kinds the latency model leaves out. */
  provisioningDelayMs?: number;
  /** How long a DELETE's operation stays InProgress (ms), for kinds the latency model leaves out. */
  deletionDelayMs?: number;
  /** How long each kind of operation takes (ms): see LatencyModel. */
  latency?: LatencyModel;
  /**
   * Retry-After (seconds) on the answers of long-running operations and their polls, as Azure sends it: one value,
   * or one per resource provider (`{ 'Microsoft.Network': 10, 'Microsoft.Compute': null }`); default 10; null for
   * none (a test polling at its own pace).
   */
  operationRetryAfterSec?: RetryAfterModel;
  /** Items per page of ARM lists (resource groups, resources). */
  listPageSize?: number;
  /** Items per page of the retail prices API (prices.azure.com pages by 100). */
  pricesPageSize?: number;
  catalog?: Partial<Catalog>;
  /** Addresses handed to public IPs, in order (then 20.0.0.x). */
  publicIpAddresses?: string[];
  /** How long after a VM is Succeeded its guest is ready (cloud-init's final stage done); default 0. */
  guestReadyDelayMs?: number;
  /** Added to the guest-ready delay when cloud-init installs packages (a stock image's first boot); default 0. */
  packageInstallMs?: number;
  /**
   * Extra time a group deletion takes when it holds VMs and does not force their deletion (their graceful
   * shutdown), and a VM deletion without forceDeletion; default 120 s.
   */
  unforcedVmDeletionMs?: number;
  /** How long writes into a group just created answer 404 ResourceGroupNotFound; default 0. */
  groupPropagationMs?: number;
  /**
   * Token-bucket throttling of Resource Manager requests (throttling.ts): ARM's buckets by default (writes 200
   * then 10 a second, reads 250 then 25, deletes 200 then 10); false for none.
   */
  throttling?: ThrottlingSpec | false;
  /** vCPU quotas: `{ eastus: { standardDSv5Family: 4 } }`; a family without one is unlimited. */
  quotas?: Record<string, Record<string, number>>;
}

/** One request as the fake saw it. The bearer token is never kept, only whether it was valid. */
export interface RecordedRequest {
  seq: number;
  /** performance.now() on arrival. */
  at: number;
  method: string;
  path: string;
  query: Record<string, string>;
  body?: unknown;
  status: number;
  authorized: boolean;
  /** performance.now() when the answer was sent. */
  respondedAt?: number;
}

export interface FakeArmTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export const FAKE_SUBSCRIPTION = '00000000-0000-4000-8000-00000000a2b1';
export const FAKE_TENANT = '00000000-0000-4000-8000-0000000071e7';
export const FAKE_CLIENT_ID = '00000000-0000-4000-8000-00000000c11e';
export const FAKE_CLIENT_SECRET = 'fake-Secret~0123456789abcdefghij';

let sharedTls: FakeArmTls | undefined;

/** A CA and a server certificate for 127.0.0.1, made once per process (RSA key generation is slow). */
export function fakeArmTls(): FakeArmTls {
  if (!sharedTls) {
    const ca = createCa('Fake Azure test CA');
    const server = issueCertificate(ca, { role: 'gate', name: 'fake-arm', sans: ['127.0.0.1', 'localhost'] });
    sharedTls = { caPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem };
  }
  return sharedTls;
}

const SUB = '/subscriptions/([^/]+)';
const routes = {
  openId: /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/i,
  instanceDiscovery: /^\/(?:[^/]+)\/discovery\/instance$/i,
  token: /^\/([^/]+)\/oauth2\/v2\.0\/token$/i,
  prices: /^\/api\/retail\/prices$/i,
  groups: new RegExp(`^${SUB}/resourcegroups$`, 'i'),
  group: new RegExp(`^${SUB}/resourcegroups/([^/]+)$`, 'i'),
  resources: new RegExp(`^${SUB}/resourcegroups/([^/]+)/providers/([^/]+)/([^/]+)$`, 'i'),
  resource: new RegExp(`^${SUB}/resourcegroups/([^/]+)/providers/([^/]+)/([^/]+)/([^/]+)$`, 'i'),
  runCommand: new RegExp(`^${SUB}/resourcegroups/([^/]+)/providers/microsoft\\.compute/virtualmachines/([^/]+)/runcommands/([^/]+)$`, 'i'),
  instanceView: new RegExp(`^${SUB}/resourcegroups/([^/]+)/providers/microsoft\\.compute/virtualmachines/([^/]+)/instanceview$`, 'i'),
  allVirtualMachines: new RegExp(`^${SUB}/providers/microsoft\\.compute/virtualmachines$`, 'i'),
  asyncOperation: new RegExp(`^${SUB}/providers/([^/]+)/locations/([^/]+)/operations/([^/]+)$`, 'i'),
  operationResult: new RegExp(`^${SUB}/providers/([^/]+)/locations/([^/]+)/operationresults/([^/]+)$`, 'i'),
  groupOperationResult: new RegExp(`^${SUB}/operationresults/([^/]+)$`, 'i'),
  imageVersion: new RegExp(
    `^${SUB}/providers/microsoft\\.compute/locations/([^/]+)/publishers/([^/]+)/artifacttypes/vmimage/offers/([^/]+)/skus/([^/]+)/versions/([^/]+)$`,
    'i',
  ),
  vmSizes: new RegExp(`^${SUB}/providers/microsoft\\.compute/locations/([^/]+)/vmsizes$`, 'i'),
  skus: new RegExp(`^${SUB}/providers/microsoft\\.compute/skus$`, 'i'),
  imageVersions: new RegExp(
    `^${SUB}/providers/microsoft\\.compute/locations/([^/]+)/publishers/([^/]+)/artifacttypes/vmimage/offers/([^/]+)/skus/([^/]+)/versions$`,
    'i',
  ),
};

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });

/**
 * A fake Azure on loopback, over HTTPS: Microsoft identity's token endpoint, Resource Manager for the
 * resource types a gate creates, the compute catalog (sizes, SKUs, marketplace images) and the retail
 * prices API. It records every request, exposes its state, and takes injected faults.
 */
export class FakeArm {
  readonly requests: RecordedRequest[] = [];
  readonly subscriptionId: string;
  readonly tenantId: string;
  readonly identity: FakeIdentity;
  readonly catalog: Catalog;
  private readonly store: ResourceStore;
  private readonly operationLog = new Operations();
  private readonly faults = new Faults();
  private readonly manager: ResourceManager;
  private readonly pricesPageSize: number;
  private server?: Server;
  private port = 0;
  private seq = 0;
  private publicIps: string[];
  private readonly provisionedListeners: ((resource: Record<string, any>, customData: string | undefined) => void)[] = [];
  private readonly guestReadyListeners: ((vm: Record<string, any>) => void)[] = [];
  private readonly quotas = new Map<string, number>();
  /** Resource Manager's throttling, when the fake was started with it. */
  readonly throttling: Throttling | null;
  readonly clock: FakeClock;
  private readonly requestLatencyMs: number;
  private readonly groupLatencyMs: number;
  private nextPublicIp = 4;

  private constructor(
    readonly tls: FakeArmTls,
    options: FakeArmOptions,
  ) {
    this.subscriptionId = options.subscriptionId ?? FAKE_SUBSCRIPTION;
    this.tenantId = options.tenantId ?? FAKE_TENANT;
    this.identity = new FakeIdentity(this.tenantId, options.clients ?? [{ clientId: FAKE_CLIENT_ID, secret: FAKE_CLIENT_SECRET }]);
    this.catalog = { ...defaultCatalog(), ...options.catalog };
    this.store = new ResourceStore(this.subscriptionId);
    this.pricesPageSize = options.pricesPageSize ?? 4;
    this.clock = new FakeClock(options.timeScale ?? 1);
    const throttling = options.throttling === undefined ? ARM_BUCKETS : options.throttling;
    this.throttling = throttling ? new Throttling(throttling, () => this.clock.scale) : null;
    this.publicIps = [...(options.publicIpAddresses ?? [])];
    const latency = options.latency ?? {};
    this.requestLatencyMs = latency.request ?? 0;
    this.groupLatencyMs = latency.resourceGroup ?? 0;
    this.manager = new ResourceManager(this.store, this.operationLog, this.faults, this.catalog, {
      baseUrl: () => this.url,
      clock: this.clock,
      provisioningDelayMs: options.provisioningDelayMs ?? 30,
      deletionDelayMs: options.deletionDelayMs ?? 30,
      latency,
      operationRetryAfterSec: options.operationRetryAfterSec === undefined ? 10 : options.operationRetryAfterSec,
      listPageSize: options.listPageSize ?? 100,
      allocatePublicIp: () => this.publicIps.shift() ?? `20.0.0.${this.nextPublicIp++}`,
      onProvisioned: (resource) => {
        const view = resourceJson(resource);
        for (const listener of this.provisionedListeners) listener(view, resource.writeOnly.customData);
      },
      guestReadyDelayMs: options.guestReadyDelayMs ?? 0,
      packageInstallMs: options.packageInstallMs ?? 0,
      onGuestReady: (vm) => {
        const view = resourceJson(vm);
        for (const listener of this.guestReadyListeners) listener(view);
      },
      groupPropagationMs: options.groupPropagationMs ?? 0,
      unforcedVmDeletionMs: options.unforcedVmDeletionMs ?? 120_000,
      quotas: this.quotas,
    });
    for (const [location, families] of Object.entries(options.quotas ?? {})) for (const [family, cores] of Object.entries(families)) this.setQuota(location, family, cores);
  }

  static async start(options: FakeArmOptions = {}): Promise<FakeArm> {
    const fake = new FakeArm(fakeArmTls(), options);
    await fake.listen();
    return fake;
  }

  /** `https://127.0.0.1:<port>`: the ARM endpoint, the authority host and the prices host at once. */
  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get pricesUrl(): string {
    return `${this.url}/api/retail/prices`;
  }

  inject(spec: FaultSpec): Fault {
    return this.faults.inject(spec);
  }

  clearFaults(): void {
    this.faults.clear();
  }

  groups(): ResourceGroupRecord[] {
    return this.store.allGroups().map((g) => structuredClone(g));
  }

  /** Resources (not groups), as Azure returns them, optionally of one type (`Microsoft.Compute/virtualMachines`). */
  resources(type?: string): Record<string, any>[] {
    return this.store
      .allResources()
      .filter((r) => type === undefined || r.type.toLowerCase() === type.toLowerCase())
      .map(resourceJson);
  }

  /**
   * Calls `listener` when a resource has been provisioned (in the tick its operation succeeds), with a
   * VM's custom data. An end-to-end test starts a node's SSH server here, with the host key cloud-init
   * would have installed, at the address the fake gave the node.
   */
  onProvisioned(listener: (resource: Record<string, any>, customData: string | undefined) => void): void {
    this.provisionedListeners.push(listener);
  }

  /** Calls `listener` when a VM's guest is ready: cloud-init's final stage is done (the guest-ready delay after Succeeded). */
  onGuestReady(listener: (vm: Record<string, any>) => void): void {
    this.guestReadyListeners.push(listener);
  }

  /** Changes the time scale for what starts from now on (see FakeArmOptions.timeScale). */
  setTimeScale(scale: number): void {
    this.clock.scale = scale;
  }

  /** Changes the guest-ready delay of VMs that succeed from now on. */
  setGuestReadyDelayMs(ms: number): void {
    this.manager.setGuestReadyDelayMs(ms);
  }

  /** Changes how long groups created from now on stay invisible to writes (404 ResourceGroupNotFound). */
  setGroupPropagationMs(ms: number): void {
    this.manager.setGroupPropagationMs(ms);
  }

  /** Whether a VM's guest is ready now. */
  guestReady(vmId: string): boolean {
    return this.manager.guestReady(vmId);
  }

  /** Sets (or, with undefined, removes) the vCPU quota of a family (`standardDSv5Family`) in a location. */
  setQuota(location: string, family: string, cores: number | undefined): void {
    if (cores === undefined) this.quotas.delete(quotaKey(location, family));
    else this.quotas.set(quotaKey(location, family), cores);
  }

  /** The run commands of every VM, as Azure returns them. */
  runCommands(): Record<string, unknown>[] {
    return this.manager.allRunCommands();
  }

  /**
   * How a VM reaches the internet: its NIC's public IP, its subnet's NAT gateway, Azure's default outbound
   * access (asked for explicitly, or implicitly by an older api-version), or not at all (a private subnet).
   */
  outboundOf(vmId: string): 'public-ip' | 'nat-gateway' | 'default-explicit' | 'default-implicit' | 'none' {
    const vm = this.store.get(vmId);
    const nic = vm ? this.store.get(vm.properties.networkProfile?.networkInterfaces?.[0]?.id ?? '') : undefined;
    const config = nic?.properties.ipConfigurations?.[0]?.properties;
    if (!config) return 'none';
    if (config.publicIPAddress?.id) return 'public-ip';
    const m = /^(.*)\/subnets\/([^/]+)$/i.exec(config.subnet?.id ?? '');
    const subnet = m ? this.store.get(m[1]!)?.properties.subnets?.find((x: any) => x.name.toLowerCase() === m[2]!.toLowerCase()) : undefined;
    if (!subnet) return 'none';
    if (subnet.properties?.natGateway?.id && this.store.get(subnet.properties.natGateway.id)) return 'nat-gateway';
    const access = subnet.properties?.defaultOutboundAccess;
    return access === true ? 'default-explicit' : access === false ? 'none' : 'default-implicit';
  }

  /** A VM's power state (`running`, `stopped` once its guest powered off, `deallocated`), or null. */
  powerStateOf(vmId: string): PowerState | null {
    return this.manager.powerStateOf(vmId);
  }

  /**
   * A fault hook: Azure evicts a Spot VM (it needs the capacity back, or the price rose above its maximum). With
   * evictionPolicy Delete the VM is deleted (with the disk, NIC and public IP its delete options name); with
   * Deallocate it is deallocated.
   */
  evictSpot(vmId: string): 'deleted' | 'deallocated' {
    return this.manager.evict(vmId);
  }

  /** Azure has no room for a size in a location (or one of its zones): see Shortage. Until restoreCapacity. */
  exhaust(shortage: Shortage): void {
    this.manager.exhaust(shortage);
  }

  restoreCapacity(): void {
    this.manager.restoreCapacity();
  }

  /** The custom data a VM was created with (Azure never returns it; tests may look). */
  customDataOf(vmId: string): string | undefined {
    return this.store.get(vmId)?.writeOnly.customData;
  }

  operations(): ArmOperation[] {
    return this.operationLog.all().map((op) => ({ ...op }));
  }

  /** Puts a resource group straight into the subscription, as someone else would have made it. */
  addGroup(name: string, tags: Record<string, string> = {}, location = 'eastus'): void {
    this.store.putGroup({ id: this.store.groupId(name), name, location, tags, provisioningState: 'Succeeded' });
  }

  clearRequests(): void {
    this.requests.length = 0;
  }

  async stop(): Promise<void> {
    this.operationLog.stop();
    this.manager.stop();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async listen(): Promise<void> {
    const server = createServer({ key: this.tls.keyPem, cert: this.tls.certPem }, (req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = performance.now();
    const url = new URL(req.url ?? '/', this.url);
    const method = (req.method ?? 'GET').toUpperCase();
    const text = await readBody(req);
    const record: RecordedRequest = {
      seq: ++this.seq,
      at,
      method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      status: 0,
      authorized: false,
    };
    let reply: Reply;
    let limits: Record<string, string> = {};
    try {
      if (this.throttling && /^\/subscriptions\//i.test(url.pathname)) {
        const admitted = this.throttling.admit(method);
        limits = admitted.headers;
        if (admitted.throttled) throw new ArmError(429, 'TooManyRequests', 'The request is being throttled as the limit has been reached for operation type.', admitted.headers);
      }
      const fault = this.faults.takeResponseFault(method, url.pathname);
      if (fault?.spec.kind === 'throttle') {
        throw new ArmError(429, 'TooManyRequests', 'The request is being throttled.', {
          'Retry-After': String(fault.spec.retryAfterSec ?? 1),
          'x-ms-ratelimit-remaining-subscription-writes': '0',
        });
      }
      if (fault?.spec.kind === 'server-error') throw new ArmError(500, 'InternalServerError', 'Encountered internal server error.');
      if (fault?.spec.kind === 'reject') throw new ArmError(fault.spec.status ?? 409, fault.spec.code ?? 'Conflict', fault.spec.message ?? 'The request was rejected.');
      reply = this.route(method, url, text, record, req);
    } catch (error) {
      if (!(error instanceof ArmError)) throw error;
      reply = { status: error.status, body: error.body(), headers: error.headers };
    }
    // ARM's round trip, and a group PUT's own time (it is answered when done).
    const isArm = /^\/subscriptions\//i.test(url.pathname);
    const extraMs = (isArm ? this.requestLatencyMs : 0) + (isArm && method === 'PUT' && routes.group.test(url.pathname) && reply.status < 300 ? this.groupLatencyMs : 0);
    if (extraMs > 0) await new Promise((resolve) => setTimeout(resolve, this.clock.real(extraMs)));
    record.status = reply.status;
    record.respondedAt = performance.now();
    this.requests.push(record);
    const headers: Record<string, string> = { 'x-ms-request-id': `fake-${record.seq}`, ...limits, ...reply.headers };
    if (reply.body !== undefined) headers['Content-Type'] = 'application/json; charset=utf-8';
    res.writeHead(reply.status, headers);
    res.end(reply.body === undefined ? undefined : JSON.stringify(reply.body));
  }

  private route(method: string, url: URL, text: string, record: RecordedRequest, req: IncomingMessage): Reply {
    const path = url.pathname;
    let m: RegExpExecArray | null;

    // Microsoft identity platform: anonymous.
    if ((m = routes.openId.exec(path)) && method === 'GET') {
      if (!this.identity.knowsTenant(m[1]!)) return { status: 400, body: { error: 'invalid_tenant', error_description: `AADSTS90002: Tenant '${m[1]}' not found.` } };
      return { status: 200, body: this.identity.openIdConfiguration(this.url, m[1]!) };
    }
    if (routes.instanceDiscovery.test(path) && method === 'GET') {
      return { status: 200, body: { tenant_discovery_endpoint: `${this.url}/${this.tenantId}/v2.0/.well-known/openid-configuration`, 'api-version': '1.1', metadata: [] } };
    }
    if ((m = routes.token.exec(path)) && method === 'POST') {
      const form = new URLSearchParams(text);
      record.body = Object.fromEntries([...form].map(([k, v]) => [k, k === 'client_secret' || k === 'client_assertion' ? '[redacted]' : v]));
      return this.identity.token(m[1]!, form, `${this.url}${path}`);
    }
    // Retail prices: anonymous.
    if (routes.prices.test(path) && method === 'GET') return retailPricesPage(this.catalog.prices, url, this.pricesPageSize);

    // Resource Manager: a bearer token from this tenant, and an api-version, on every call.
    const auth = this.identity.accepts(req.headers.authorization);
    if (auth !== 'ok') {
      throw new ArmError(
        401,
        auth === 'missing' ? 'AuthenticationFailed' : 'InvalidAuthenticationToken',
        auth === 'missing' ? "Authentication failed. The 'Authorization' header is missing." : 'The access token is invalid.',
        { 'WWW-Authenticate': `Bearer authorization_uri="${this.url}/${this.tenantId}", error="invalid_token"` },
      );
    }
    record.authorized = true;
    const apiVersion = url.searchParams.get('api-version');
    if (!apiVersion) throw badRequest('MissingApiVersionParameter', "The api-version query parameter (?api-version=) is required for all requests.");
    let body: Record<string, any> = {};
    if (text) {
      try {
        body = JSON.parse(text) as Record<string, any>;
      } catch {
        throw badRequest('InvalidRequestContent', 'The request content was invalid and could not be deserialized.');
      }
      record.body = body;
    }
    const seg = (i: number): string => decodeURIComponent(m![i]!);
    const checkSubscription = (): void => {
      if (seg(1).toLowerCase() !== this.subscriptionId.toLowerCase())
        throw notFound('SubscriptionNotFound', `The subscription '${seg(1)}' could not be found.`);
    };

    if ((m = routes.groups.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.listGroups(url);
    } else if ((m = routes.group.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.getGroup(seg(2));
      if (method === 'HEAD') return this.manager.headGroup(seg(2));
      if (method === 'PUT') return this.manager.putGroup(seg(2), body);
      if (method === 'PATCH') return this.manager.patchGroup(seg(2), body);
      if (method === 'DELETE') return this.manager.deleteGroup(seg(2), path, apiVersion, url);
    } else if ((m = routes.groupOperationResult.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.operationResult(seg(2), url);
    } else if ((m = routes.vmSizes.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.vmSizes(seg(2));
    } else if ((m = routes.skus.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.resourceSkus(url);
    } else if ((m = routes.imageVersion.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.imageVersion(seg(2), seg(3), seg(4), seg(5), seg(6));
    } else if ((m = routes.imageVersions.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.imageVersions(seg(2), seg(3), seg(4), seg(5), url);
    } else if ((m = routes.asyncOperation.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.asyncOperation(seg(4));
    } else if ((m = routes.operationResult.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.operationResult(seg(4), url);
    } else if ((m = routes.resources.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.listResources(seg(2), seg(3), seg(4), url);
    } else if ((m = routes.allVirtualMachines.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.listAllVirtualMachines(url);
    } else if ((m = routes.instanceView.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.instanceView(seg(2), seg(3));
    } else if ((m = routes.runCommand.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.getRunCommand(seg(2), seg(3), seg(4));
      if (method === 'PUT') return this.manager.putRunCommand(seg(2), seg(3), seg(4), body, path, apiVersion);
    } else if ((m = routes.resource.exec(path))) {
      checkSubscription();
      if (method === 'GET') return this.manager.getResource(seg(2), seg(3), seg(4), seg(5));
      if (method === 'PUT') return this.manager.putResource(seg(2), seg(3), seg(4), seg(5), body, path, apiVersion);
      if (method === 'DELETE') return this.manager.deleteResource(seg(2), seg(3), seg(4), seg(5), path, apiVersion, url);
    } else {
      throw notFound('InvalidResourceType', `The resource type could not be found for path '${path}'.`);
    }
    throw new ArmError(405, 'MethodNotAllowed', `The requested resource does not support http method '${method}'.`);
  }
}
