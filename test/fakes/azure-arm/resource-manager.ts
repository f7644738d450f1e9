import { ArmError, badRequest, conflict, notFound } from './arm-error.js';
import type { Catalog } from './catalog.js';
import type { Faults } from './faults.js';
import { parseEqFilter } from './odata.js';
import type { ArmOperation, OperationOutcome, Operations } from './operations.js';
import type { FakeClock } from './clock.js';
import { admit, attachPublicIps, attachVirtualMachine, createVmNetwork, dependentsOf, NAT_GATEWAY, NIC, NSG, PUBLIC_IP, supportedType, VM, VNET } from './resource-rules.js';
import { groupJson, resourceJson, type ArmResource, type ResourceStore } from './resource-store.js';

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/**
 * How long Azure takes, per kind of operation, in simulated milliseconds (FakeClock). A kind left out takes
 * `provisioningDelayMs` (PUTs) or `deletionDelayMs` (DELETEs).
 */
export interface LatencyModel {
  /** Every Resource Manager request's round trip (ARM's front door), added to its answer. */
  request?: number;
  /** A resource group PUT (synchronous: answered 201 when done). */
  resourceGroup?: number;
  networkSecurityGroup?: number;
  virtualNetwork?: number;
  publicIpAddress?: number;
  natGateway?: number;
  /** A NIC PUT on its own (a NIC a VM makes from its configurations is part of the VM's creation). */
  networkInterface?: number;
  /** A VM's creation, to Succeeded (allocation, OS disk, boot to the agent; cloud-init's final stage comes after). */
  virtualMachine?: number;
  /** A run command's own overhead (the agent picks it up and reports), on top of waiting for the guest. */
  runCommand?: number;
  /** A resource group's deletion (its VMs force-deleted). */
  groupDeletion?: number;
  virtualMachineDeletion?: number;
}

export interface ResourceManagerOptions {
  baseUrl: () => string;
  clock: FakeClock;
  provisioningDelayMs: number;
  deletionDelayMs: number;
  latency: LatencyModel;
  /** Retry-After (seconds) on operation answers and polls, per resource provider; null: none. */
  operationRetryAfterSec: RetryAfterModel;
  listPageSize: number;
  allocatePublicIp: () => string;
  /** Called when a PUT's operation has succeeded. */
  onProvisioned: (resource: ArmResource) => void;
  /** How long after a VM is Succeeded its guest (cloud-init's final stage) is ready. */
  guestReadyDelayMs: number;
  /** Added to the guest-ready delay when the VM's cloud-init installs packages (a marketplace image's first boot). */
  packageInstallMs: number;
  /** Called when a VM's guest is ready. */
  onGuestReady: (vm: ArmResource) => void;
  /** How long writes into a group just created answer 404 ResourceGroupNotFound (ARM's replication lag). */
  groupPropagationMs: number;
  /** Extra time a group deletion takes when it holds VMs and does not force their deletion (and a VM's own unforced deletion). */
  unforcedVmDeletionMs: number;
  /** vCPU quota per location and family (`standardDSv5Family`), checked when a VM is PUT. */
  quotas: Map<string, number>;
}

/** Retry-After (seconds) of operations: one value for all, or per resource provider (`Microsoft.Network`, ...); null: none. */
export type RetryAfterModel = number | null | Partial<Record<'Microsoft.Network' | 'Microsoft.Compute' | 'Microsoft.Resources', number | null>>;

/** A VM's power state, as its instance view reports it (`PowerState/<state>`). */
export type PowerState = 'starting' | 'running' | 'stopped' | 'deallocated';

/** A size (in a location, optionally a zone) Azure has no room for: VM PUTs fail later (allocation) or at once (sku). */
export interface Shortage {
  location: string;
  size: string;
  /** Only VMs placed in this zone; absent: every VM of the size in the location, zonal or not. */
  zone?: string;
  /** `allocation` (default): the VM's operation fails with (Zonal)AllocationFailed; `sku`: 409 SkuNotAvailable at once. */
  mode?: 'allocation' | 'sku';
}

/** A VM's `#cloud-config` custom data (the gate writes JSON, which is YAML), or null. */
function cloudConfigOf(customData: string | undefined): Record<string, any> | null {
  if (!customData) return null;
  const text = Buffer.from(customData, 'base64').toString('utf8');
  if (!text.startsWith('#cloud-config\n')) return null;
  try {
    return JSON.parse(text.slice('#cloud-config\n'.length)) as Record<string, any>;
  } catch {
    return null;
  }
}

/**
 * When a systemd timer written by cloud-init powers the node off (epoch ms), or null: a `<name>.timer` with
 * `OnCalendar=YYYY-MM-DD HH:MM:SS UTC` whose `<name>.service` runs `shutdown`.
 */
function shutdownTimerOf(config: Record<string, any> | null): number | null {
  const files: { path?: string; content?: string }[] = Array.isArray(config?.write_files) ? config!.write_files : [];
  for (const timer of files) {
    if (!timer.path?.endsWith('.timer')) continue;
    const service = files.find((f) => f.path === timer.path!.replace(/\.timer$/, '.service'));
    if (!/^ExecStart=.*\bshutdown\b/m.test(service?.content ?? '')) continue;
    const m = /^OnCalendar=(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) UTC$/m.exec(timer.content ?? '');
    if (m) return Date.parse(`${m[1]}T${m[2]}Z`);
  }
  return null;
}

/** A VM size's quota family, as Azure names it: Standard_D2s_v5 → standardDSv5Family. */
export function familyOf(size: string): string {
  const [series = '', ...rest] = size.replace(/^Standard_/i, '').split('_');
  const m = /^([A-Z]+)\d+(?:-\d+)?([a-z]*)$/.exec(series);
  if (!m) return `${size}Family`;
  const version = rest.find((p) => /^v\d+$/.test(p)) ?? '';
  return `standard${m[1]}${m[2]!.toUpperCase()}${version}Family`;
}

export const quotaKey = (location: string, family: string): string => `${location.toLowerCase()}/${family.toLowerCase()}`;

/** A VM run command (`virtualMachines/<vm>/runCommands/<name>`), kept apart from the group's resources. */
interface RunCommand {
  id: string;
  name: string;
  vmId: string;
  location: string;
  tags: Record<string, string>;
  properties: Record<string, any>;
}

const runCommandJson = (c: RunCommand): Record<string, unknown> => ({
  id: c.id,
  name: c.name,
  type: 'Microsoft.Compute/virtualMachines/runCommands',
  location: c.location,
  tags: { ...c.tags },
  properties: structuredClone(c.properties),
});

const GROUP_NAME = /^[-\w._()]{1,90}$/;

const invalid = (message: string): ArmError => badRequest('InvalidParameter', message);

/** A page of a list response: `{value, nextLink}` with `$skiptoken` continuation, as ARM pages. */
function page(items: unknown[], url: URL, size: number): Reply {
  const skip = Number(url.searchParams.get('$skiptoken') ?? '0');
  const value = items.slice(skip, skip + size);
  const body: Record<string, unknown> = { value };
  if (skip + size < items.length) {
    const next = new URL(url.href);
    next.searchParams.set('$skiptoken', String(skip + size));
    body.nextLink = next.href;
  }
  return { status: 200, body };
}

const operationJson = (op: ArmOperation): Record<string, unknown> => ({
  id: op.id,
  name: op.id,
  status: op.status,
  startTime: op.startTime,
  ...(op.endTime ? { endTime: op.endTime } : {}),
  ...(op.error ? { error: op.error } : {}),
});

/**
 * Azure Resource Manager's behaviour for resource groups and the resources in them: PUT answers 201
 * (new) or 200 (update) with an `Azure-AsyncOperation` URL while `provisioningState` moves to
 * Succeeded (or Failed); DELETE answers 202 with a `Location` to poll; deleting a group deletes
 * everything in it; a group being deleted accepts no new resources.
 */
export class ResourceManager {
  private readonly runCommands = new Map<string, RunCommand>();
  /** When each VM's guest is (or will be) ready, performance-free epoch ms; by VM id, lower case. */
  private readonly guestReadyAt = new Map<string, number>();
  /** Until when each group (by name, lower case) is invisible to writes. */
  private readonly groupVisibleAt = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly powerStates = new Map<string, PowerState>();
  private readonly shortages: Shortage[] = [];
  /** VMs Azure evicted (Spot), by id, lower case: why their instance view says what it says. */
  private readonly evicted = new Set<string>();

  constructor(
    private readonly store: ResourceStore,
    private readonly operations: Operations,
    private readonly faults: Faults,
    private readonly catalog: Catalog,
    private readonly options: ResourceManagerOptions,
  ) {}

  private get sub(): string {
    return this.store.subscriptionId;
  }

  private requireGroup(name: string): NonNullable<ReturnType<ResourceStore['group']>> {
    const group = this.store.group(name);
    if (!group) throw notFound('ResourceGroupNotFound', `Resource group '${name}' could not be found.`);
    return group;
  }

  private requireWritableGroup(name: string): NonNullable<ReturnType<ResourceStore['group']>> {
    const group = this.requireGroup(name);
    if (Date.now() < (this.groupVisibleAt.get(group.name.toLowerCase()) ?? 0))
      throw notFound('ResourceGroupNotFound', `Resource group '${name}' could not be found.`);
    if (group.provisioningState === 'Deleting')
      throw conflict('ResourceGroupBeingDeleted', `The resource group '${group.name}' is in deprovisioning state and cannot perform this operation.`);
    return group;
  }

  private outcome(method: string, path: string, delayMs: number): OperationOutcome {
    const fault = this.faults.takeOperationFault(method, path);
    if (fault?.spec.kind === 'hang-operation') return { delayMs, hang: true };
    if (fault?.spec.kind === 'fail-operation')
      return { delayMs, failWith: { code: fault.spec.code ?? 'InternalOperationError', message: fault.spec.message ?? 'The operation failed.' } };
    return { delayMs };
  }

  private asyncOperationUrl(namespace: string, location: string, op: ArmOperation, apiVersion: string): string {
    return `${this.options.baseUrl()}/subscriptions/${this.sub}/providers/${namespace}/locations/${location}/operations/${op.id}?api-version=${apiVersion}`;
  }

  /** Retry-After of an operation on `target` (a resource or group id): by its resource provider. */
  private retryAfter(target: string): Record<string, string> {
    const model = this.options.operationRetryAfterSec;
    let sec: number | null | undefined;
    if (model === null || typeof model === 'number') sec = model;
    else {
      const namespace = /\/providers\/([^/]+)\//i.exec(target)?.[1]?.toLowerCase() ?? 'microsoft.resources';
      sec = Object.entries(model).find(([ns]) => ns.toLowerCase() === namespace)?.[1];
    }
    return sec === null || sec === undefined ? {} : this.options.clock.retryAfter(sec);
  }

  private real(simulatedMs: number): number {
    return this.options.clock.real(simulatedMs);
  }

  /** How long a PUT of this type takes (simulated ms). */
  private putDelay(type: string): number {
    const l = this.options.latency;
    const byType: Record<string, number | undefined> = {
      [NSG]: l.networkSecurityGroup,
      [VNET]: l.virtualNetwork,
      [PUBLIC_IP]: l.publicIpAddress,
      [NAT_GATEWAY]: l.natGateway,
      [NIC]: l.networkInterface,
      [VM]: l.virtualMachine,
    };
    return byType[type.toLowerCase()] ?? this.options.provisioningDelayMs;
  }

  // Resource groups.

  listGroups(url: URL): Reply {
    const filter = parseEqFilter(url.searchParams.get('$filter'));
    for (const field of filter.keys())
      if (field !== 'tagname' && field !== 'tagvalue') throw badRequest('InvalidFilterInQueryString', `Filtering on '${field}' is not supported.`);
    if (filter.has('tagvalue') && !filter.has('tagname')) throw badRequest('InvalidFilterInQueryString', 'tagValue needs tagName.');
    const tagName = filter.get('tagname')?.toLowerCase();
    const tagValue = filter.get('tagvalue');
    const groups = this.store.allGroups().filter((g) => {
      if (tagName === undefined) return true;
      const entry = Object.entries(g.tags).find(([k]) => k.toLowerCase() === tagName);
      return entry !== undefined && (tagValue === undefined || entry[1] === tagValue);
    });
    return page(groups.map(groupJson), url, this.options.listPageSize);
  }

  getGroup(name: string): Reply {
    return { status: 200, body: groupJson(this.requireGroup(name)) };
  }

  headGroup(name: string): Reply {
    return { status: this.store.group(name) ? 204 : 404 };
  }

  putGroup(name: string, body: Record<string, any>): Reply {
    if (!GROUP_NAME.test(name) || name.endsWith('.')) throw badRequest('InvalidResourceGroupName', `Resource group name '${name}' is invalid.`);
    if (typeof body.location !== 'string' || !body.location) throw badRequest('LocationRequired', 'The location property is required for this definition.');
    const existing = this.store.group(name);
    if (existing) {
      if (existing.provisioningState === 'Deleting')
        throw conflict('ResourceGroupBeingDeleted', `The resource group '${existing.name}' is in deprovisioning state and cannot perform this operation.`);
      if (existing.location.toLowerCase() !== body.location.toLowerCase())
        throw conflict('InvalidResourceGroupLocation', `Invalid resource group location '${body.location}'. The Resource group already exists in location '${existing.location}'.`);
      existing.tags = { ...(body.tags ?? {}) };
      return { status: 200, body: groupJson(existing) };
    }
    const group = { id: this.store.groupId(name), name, location: body.location.toLowerCase(), tags: { ...(body.tags ?? {}) }, provisioningState: 'Succeeded' as const };
    this.store.putGroup(group);
    if (this.options.groupPropagationMs > 0) this.groupVisibleAt.set(name.toLowerCase(), Date.now() + this.real(this.options.groupPropagationMs));
    return { status: 201, body: groupJson(group) };
  }

  patchGroup(name: string, body: Record<string, any>): Reply {
    const group = this.requireWritableGroup(name);
    if (body.tags) group.tags = { ...body.tags };
    return { status: 200, body: groupJson(group) };
  }

  /**
   * DELETE of a group. Its VMs are shut down gracefully, which takes minutes on Azure (here `unforcedVmDeletionMs`
   * more when it holds VMs), unless `forceDeletionTypes` names the VM type.
   */
  deleteGroup(name: string, path: string, apiVersion: string, url?: URL): Reply {
    const group = this.requireGroup(name);
    const force = (url?.searchParams.get('forceDeletionTypes') ?? '').split(',').map((t) => t.trim().toLowerCase());
    const holdsVms = this.store.resourcesIn(group.name, 'Microsoft.Compute/virtualMachines').length > 0;
    const delayMs = (this.options.latency.groupDeletion ?? this.options.deletionDelayMs) + (holdsVms && !force.includes(VM) ? this.options.unforcedVmDeletionMs : 0);
    group.provisioningState = 'Deleting';
    const op = this.operations.start('delete', group.id, this.outcome('DELETE', path, this.real(delayMs)), (done) => {
      if (done.status !== 'Succeeded') return;
      this.operations.cancelUnder(`${group.id}/`);
      this.store.removeGroup(group.name);
      this.forgetUnder(`${group.id}/`);
    });
    const location = `${this.options.baseUrl()}/subscriptions/${this.sub}/operationresults/${op.id}?api-version=${apiVersion}`;
    return { status: 202, headers: { Location: location, ...this.retryAfter(group.id) } };
  }

  /** GET of a `Location` URL: 202 while the operation runs, then 200; a failure answers with its error. */
  operationResult(opId: string, url: URL): Reply {
    const op = this.operations.get(opId);
    if (!op) throw notFound('NotFound', `Operation ${opId} not found.`);
    if (op.status === 'InProgress') return { status: 202, headers: { Location: url.href, ...this.retryAfter(op.target) } };
    if (op.status === 'Failed') throw new ArmError(409, op.error!.code, op.error!.message);
    return { status: 200 };
  }

  asyncOperation(opId: string): Reply {
    const op = this.operations.get(opId);
    if (!op) throw notFound('NotFound', `Operation ${opId} not found.`);
    return { status: 200, body: operationJson(op), headers: op.status === 'InProgress' ? this.retryAfter(op.target) : {} };
  }

  // Resources inside groups.

  private resourceType(namespace: string, type: string): string {
    const canonical = supportedType(`${namespace}/${type}`);
    if (!canonical) throw badRequest('NoRegisteredProviderFound', `No registered resource provider found for type '${namespace}/${type}'.`);
    return canonical;
  }

  listResources(groupName: string, namespace: string, type: string, url: URL): Reply {
    const group = this.requireGroup(groupName);
    const canonical = this.resourceType(namespace, type);
    const withStatus = canonical.toLowerCase() === VM && (url.searchParams.get('statusOnly') === 'true' || url.searchParams.get('$expand') === 'instanceView');
    return page(this.store.resourcesIn(group.name, canonical).map((r) => (withStatus ? this.withInstanceView(r) : resourceJson(r))), url, this.options.listPageSize);
  }

  /** Every VM of the subscription (`statusOnly=true`: with its instance view, as Azure answers it). */
  listAllVirtualMachines(url: URL): Reply {
    const withStatus = url.searchParams.get('statusOnly') === 'true';
    const vms = this.store.allResources().filter((r) => r.type.toLowerCase() === VM);
    return page(vms.map((r) => (withStatus ? this.withInstanceView(r) : resourceJson(r))), url, this.options.listPageSize);
  }

  /** A VM's instance view: its provisioning and power states. */
  instanceView(groupName: string, vmName: string): Reply {
    const group = this.requireGroup(groupName);
    const vm = this.store.get(this.store.resourceId(group.name, 'Microsoft.Compute/virtualMachines', vmName));
    if (!vm) throw notFound('ResourceNotFound', `The Resource 'Microsoft.Compute/virtualMachines/${vmName}' under resource group '${group.name}' was not found.`);
    return { status: 200, body: this.instanceViewOf(vm) };
  }

  private instanceViewOf(vm: ArmResource): Record<string, unknown> {
    const state = String(vm.properties.provisioningState ?? 'Succeeded');
    const power = this.powerStateOf(vm.id);
    const display: Record<PowerState, string> = { starting: 'VM starting', running: 'VM running', stopped: 'VM stopped', deallocated: 'VM deallocated' };
    return {
      computerName: vm.properties.osProfile?.computerName,
      statuses: [
        { code: `ProvisioningState/${state.toLowerCase()}`, level: state === 'Failed' ? 'Error' : 'Info', displayStatus: `Provisioning ${state.toLowerCase()}` },
        ...(power ? [{ code: `PowerState/${power}`, level: 'Info', displayStatus: display[power] }] : []),
      ],
    };
  }

  private withInstanceView(vm: ArmResource): Record<string, unknown> {
    const json = resourceJson(vm) as { properties: Record<string, unknown> };
    json.properties.instanceView = this.instanceViewOf(vm);
    return json;
  }

  /** A VM's power state, or null when it has none (not created, or failed before it ran). */
  powerStateOf(vmId: string): PowerState | null {
    return this.powerStates.get(vmId.toLowerCase()) ?? null;
  }

  /** The guest powered the VM off (`shutdown -P`): stopped, still allocated (and billed). */
  powerOff(vmId: string): void {
    const key = vmId.toLowerCase();
    if (this.store.get(vmId) && this.powerStates.get(key) !== 'deallocated') this.powerStates.set(key, 'stopped');
  }

  /**
   * Azure evicts a Spot VM (capacity or price): with evictionPolicy Delete the VM goes, with what its delete
   * options take; with Deallocate it stays, deallocated.
   */
  evict(vmId: string): 'deleted' | 'deallocated' {
    const vm = this.store.get(vmId);
    if (!vm || vm.type.toLowerCase() !== VM) throw new Error(`no virtual machine ${vmId}`);
    if (vm.properties.priority !== 'Spot') throw new Error(`virtual machine ${vm.name} is not a Spot VM: Azure does not evict it`);
    this.evicted.add(vm.id.toLowerCase());
    if (vm.properties.evictionPolicy === 'Delete') {
      this.removeVirtualMachine(vm);
      return 'deleted';
    }
    this.powerStates.set(vm.id.toLowerCase(), 'deallocated');
    return 'deallocated';
  }

  /** Azure has no room for a size (in a location, or one zone of it) until `restore`. */
  exhaust(shortage: Shortage): void {
    this.shortages.push({ ...shortage, location: shortage.location.toLowerCase(), size: shortage.size.toLowerCase() });
  }

  restoreCapacity(): void {
    this.shortages.length = 0;
  }

  private shortageFor(size: string, location: string, zone: string | undefined): Shortage | undefined {
    return this.shortages.find((s) => s.size === size.toLowerCase() && s.location === location.toLowerCase() && (s.zone === undefined || s.zone === zone));
  }

  getResource(groupName: string, namespace: string, type: string, name: string): Reply {
    const group = this.requireGroup(groupName);
    const canonical = this.resourceType(namespace, type);
    const resource = this.store.get(this.store.resourceId(group.name, canonical, name));
    if (!resource) throw notFound('ResourceNotFound', `The Resource '${canonical}/${name}' under resource group '${group.name}' was not found.`);
    return { status: 200, body: resourceJson(resource) };
  }

  putResource(groupName: string, namespace: string, type: string, name: string, body: Record<string, any>, path: string, apiVersion: string): Reply {
    const group = this.requireWritableGroup(groupName);
    const canonical = this.resourceType(namespace, type);
    if (typeof body.location !== 'string' || !body.location) throw badRequest('LocationRequired', 'The location property is required for this definition.');
    const existing = this.store.get(this.store.resourceId(group.name, canonical, name));
    const isVm = canonical.toLowerCase() === VM;
    if (isVm && !existing) this.checkQuota(body, body.location.toLowerCase());
    const context = { store: this.store, catalog: this.catalog, allocatePublicIp: this.options.allocatePublicIp };
    const resource = admit({ group: group.name, type: canonical, name, location: body.location.toLowerCase(), body, existing, apiVersion }, context);
    const zone: string | undefined = resource.zones?.[0];
    const shortage = isVm && !existing ? this.shortageFor(String(resource.properties.hardwareProfile?.vmSize), resource.location, zone) : undefined;
    if (shortage?.mode === 'sku')
      throw conflict(
        'SkuNotAvailable',
        `The requested VM size ${resource.properties.hardwareProfile?.vmSize} is currently not available in location '${resource.location}'${zone ? ` zones '${zone}'` : ''}. Please try another size or deploy to a different location or different zone.`,
      );
    if (isVm && resource.properties.networkProfile?.networkInterfaceConfigurations?.length) {
      // The VM makes its NICs (and public IPs): they exist once the PUT is accepted, named after their configurations.
      const configs = resource.properties.networkProfile.networkInterfaceConfigurations;
      resource.properties.networkProfile = { ...resource.properties.networkProfile, networkInterfaces: createVmNetwork({ id: resource.id, group: group.name, location: resource.location, properties: resource.properties }, context), networkInterfaceConfigurations: configs };
    }
    const isCompute = canonical.toLowerCase().startsWith('microsoft.compute/');
    resource.properties.provisioningState = existing ? 'Updating' : isCompute ? 'Creating' : 'Updating';
    this.store.put(resource);
    if (canonical.toLowerCase() === NIC) attachPublicIps(this.store, resource);
    if (canonical.toLowerCase() === NAT_GATEWAY)
      for (const ref of resource.properties.publicIpAddresses ?? []) {
        const pip = this.store.get(ref.id);
        if (pip) pip.properties.natGateway = { id: resource.id };
      }
    if (isVm) {
      attachVirtualMachine(this.store, resource);
      if (!existing) this.powerStates.set(resource.id.toLowerCase(), 'starting');
    }
    let outcome = this.outcome('PUT', path, this.real(this.putDelay(canonical)));
    if (shortage && !outcome.failWith && !outcome.hang)
      outcome = {
        ...outcome,
        failWith: zone
          ? { code: 'ZonalAllocationFailed', message: `Allocation failed. We do not have sufficient capacity for the requested VM size in this zone. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance` }
          : { code: 'AllocationFailed', message: `Allocation failed. We do not have sufficient capacity for the requested VM size in this region. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance` },
      };
    const op = this.operations.start('put', resource.id, outcome, (done) => {
      const current = this.store.get(resource.id);
      if (!current) return;
      current.properties.provisioningState = done.status === 'Succeeded' ? 'Succeeded' : 'Failed';
      if (isVm && done.status === 'Succeeded' && this.powerStates.get(current.id.toLowerCase()) === 'starting') this.powerStates.set(current.id.toLowerCase(), 'running');
      if (isVm && done.status !== 'Succeeded') this.powerStates.delete(current.id.toLowerCase());
      if (done.status === 'Succeeded') this.options.onProvisioned(current);
      if (done.status === 'Succeeded' && isVm) this.bootGuest(current);
    });
    return {
      status: existing ? 200 : 201,
      body: resourceJson(resource),
      headers: { 'Azure-AsyncOperation': this.asyncOperationUrl(namespace, resource.location, op, apiVersion), ...this.retryAfter(resource.id) },
    };
  }

  deleteResource(groupName: string, namespace: string, type: string, name: string, path: string, apiVersion: string, url?: URL): Reply {
    const group = this.requireGroup(groupName);
    const canonical = this.resourceType(namespace, type);
    const resource = this.store.get(this.store.resourceId(group.name, canonical, name));
    if (!resource) return { status: 204 };
    const isVm = canonical.toLowerCase() === VM;
    const forced = url?.searchParams.get('forceDeletion') === 'true';
    const delayMs = isVm ? (this.options.latency.virtualMachineDeletion ?? this.options.deletionDelayMs) + (forced ? 0 : this.options.unforcedVmDeletionMs) : this.options.deletionDelayMs;
    resource.properties.provisioningState = 'Deleting';
    const op = this.operations.start('delete', resource.id, this.outcome('DELETE', path, this.real(delayMs)), (done) => {
      if (done.status !== 'Succeeded') return;
      if (isVm) this.removeVirtualMachine(resource);
      else {
        this.removeResource(resource);
        this.forgetUnder(`${resource.id}/`);
      }
    });
    const asyncUrl = this.asyncOperationUrl(namespace, resource.location, op, apiVersion);
    return { status: 202, headers: { 'Azure-AsyncOperation': asyncUrl, Location: asyncUrl.replace('/operations/', '/operationResults/'), ...this.retryAfter(resource.id) } };
  }

  /** A VM goes, with the OS disk, NICs and public IPs its delete options name. */
  private removeVirtualMachine(vm: ArmResource): void {
    const dependents = dependentsOf(this.store, vm);
    this.removeResource(vm);
    for (const r of dependents) this.removeResource(r);
    this.forgetUnder(`${vm.id}/`);
    this.guestReadyAt.delete(vm.id.toLowerCase());
    this.powerStates.delete(vm.id.toLowerCase());
    this.operations.cancelUnder(`${vm.id}/`);
  }

  /** Quota: the cores of the VMs of this family in this location (those not Failed), plus this one's, within the limit. */
  private checkQuota(body: Record<string, any>, location: string): void {
    const size = this.catalog.sizes.find((z) => z.name.toLowerCase() === String(body.properties?.hardwareProfile?.vmSize).toLowerCase());
    if (!size) return; // admission answers that
    // Spot VMs count against the region's Spot vCPU quota, not the family's.
    if (body.properties?.priority === 'Spot') return;
    const family = familyOf(size.name);
    const limit = this.options.quotas.get(quotaKey(location, family));
    if (limit === undefined) return;
    const usage = this.store
      .allResources()
      .filter((r) => r.type.toLowerCase() === VM && r.location === location && r.properties.provisioningState !== 'Failed' && r.properties.priority !== 'Spot')
      .map((r) => this.catalog.sizes.find((z) => z.name.toLowerCase() === String(r.properties.hardwareProfile?.vmSize).toLowerCase()))
      .filter((z) => z !== undefined && familyOf(z.name) === family)
      .reduce((n, z) => n + z!.numberOfCores, 0);
    if (usage + size.numberOfCores <= limit) return;
    throw conflict(
      'OperationNotAllowed',
      `Operation could not be completed as it results in exceeding approved ${family} Cores quota. Additional details - Deployment Model: Resource Manager, ` +
        `Location: ${location}, Current Limit: ${limit}, Current Usage: ${usage}, Additional Required: ${size.numberOfCores}, ` +
        `(Minimum) New Limit Required: ${usage + size.numberOfCores}. Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView.`,
    );
  }

  /**
   * The VM is Succeeded: cloud-init's early stage is done; its final stage ends after the guest-ready delay (longer
   * when it installs packages). Then the guest's own timers run: a shutdown timer cloud-init armed powers it off.
   */
  private bootGuest(vm: ArmResource): void {
    const key = vm.id.toLowerCase();
    if (this.guestReadyAt.has(key)) return;
    const config = cloudConfigOf(vm.writeOnly.customData);
    const installs = config !== null && (config.package_update === true || (Array.isArray(config.packages) && config.packages.length > 0));
    const delay = this.real(this.options.guestReadyDelayMs + (installs ? this.options.packageInstallMs : 0));
    this.guestReadyAt.set(key, Date.now() + delay);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      const current = this.store.get(vm.id);
      if (!current) return;
      this.options.onGuestReady(current);
      const at = shutdownTimerOf(config);
      if (at !== null) this.after(Math.max(0, at - Date.now()), () => this.powerOff(vm.id));
    }, delay);
    this.timers.add(timer);
  }

  private after(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      run();
    }, Math.min(ms, 2 ** 31 - 1));
    this.timers.add(timer);
  }

  setGuestReadyDelayMs(ms: number): void {
    this.options.guestReadyDelayMs = ms;
  }

  setGroupPropagationMs(ms: number): void {
    this.options.groupPropagationMs = ms;
  }

  /** Whether a VM's guest is ready (cloud-init's final stage done). */
  guestReady(vmId: string): boolean {
    const at = this.guestReadyAt.get(vmId.toLowerCase());
    return at !== undefined && Date.now() >= at;
  }

  private forgetUnder(prefix: string): void {
    const p = prefix.toLowerCase();
    for (const id of [...this.runCommands.keys()]) if (id.startsWith(p)) this.runCommands.delete(id);
    for (const id of [...this.guestReadyAt.keys()]) if (id.startsWith(p)) this.guestReadyAt.delete(id);
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  // Run commands (Run Command v2): the script runs on the VM through its agent.

  /**
   * PUT of a VM's run command. The VM must be Succeeded (its agent running). With asyncExecution false, the
   * operation ends when the script has run: a script that waits for cloud-init (`cloud-init status --wait`)
   * ends when the guest is ready. With treatFailureAsDeploymentFailure, a failing script fails the operation.
   */
  putRunCommand(groupName: string, vmName: string, name: string, body: Record<string, any>, path: string, apiVersion: string): Reply {
    const group = this.requireWritableGroup(groupName);
    const vm = this.store.get(this.store.resourceId(group.name, 'Microsoft.Compute/virtualMachines', vmName));
    if (!vm) throw notFound('ResourceNotFound', `The Resource 'Microsoft.Compute/virtualMachines/${vmName}' under resource group '${group.name}' was not found.`);
    if (vm.properties.provisioningState !== 'Succeeded')
      throw conflict('OperationNotAllowed', `Operation 'RunCommand' is not allowed on VM '${vmName}' since the VM is ${vm.properties.provisioningState}.`);
    if (typeof body.location !== 'string' || !body.location) throw badRequest('LocationRequired', 'The location property is required for this definition.');
    const props = body.properties ?? {};
    const script: string = props.source?.script ?? '';
    if (!script && !props.source?.commandId && !props.source?.scriptUri) throw invalid('The run command needs a script, a script URI or a command id.');
    const id = `${vm.id}/runCommands/${name}`;
    const existing = this.runCommands.get(id.toLowerCase());
    const command: RunCommand = {
      id,
      name,
      vmId: vm.id,
      location: body.location.toLowerCase(),
      tags: { ...(body.tags ?? {}) },
      properties: { ...props, provisioningState: existing ? 'Updating' : 'Creating' },
    };
    this.runCommands.set(id.toLowerCase(), command);
    const waitsForGuest = /cloud-init status --wait/.test(script);
    const readyIn = waitsForGuest ? Math.max(0, (this.guestReadyAt.get(vm.id.toLowerCase()) ?? Date.now()) - Date.now()) : 0;
    const overhead = this.real(this.options.latency.runCommand ?? this.options.provisioningDelayMs);
    const op = this.operations.start('put', id, this.outcome('PUT', path, waitsForGuest ? Math.max(overhead, readyIn) : overhead), (done) => {
      const current = this.runCommands.get(id.toLowerCase());
      if (!current) return;
      const ok = done.status === 'Succeeded';
      current.properties.provisioningState = ok ? 'Succeeded' : 'Failed';
      current.properties.instanceView = {
        executionState: ok ? 'Succeeded' : 'Failed',
        exitCode: ok ? 0 : 1,
        output: ok ? 'ready\n' : '',
        error: ok ? '' : (done.error?.message ?? ''),
      };
    });
    return {
      status: existing ? 200 : 201,
      body: runCommandJson(command),
      headers: { 'Azure-AsyncOperation': this.asyncOperationUrl('Microsoft.Compute', command.location, op, apiVersion), ...this.retryAfter(id) },
    };
  }

  getRunCommand(groupName: string, vmName: string, name: string): Reply {
    const group = this.requireGroup(groupName);
    const id = `${this.store.resourceId(group.name, 'Microsoft.Compute/virtualMachines', vmName)}/runCommands/${name}`;
    const command = this.runCommands.get(id.toLowerCase());
    if (!command) throw notFound('ResourceNotFound', `The Resource 'Microsoft.Compute/virtualMachines/${vmName}/runCommands/${name}' under resource group '${group.name}' was not found.`);
    return { status: 200, body: runCommandJson(command) };
  }

  allRunCommands(): Record<string, unknown>[] {
    return [...this.runCommands.values()].map(runCommandJson);
  }

  private removeResource(resource: ArmResource): void {
    this.store.remove(resource.id);
    for (const other of this.store.allResources()) {
      if (other.properties.virtualMachine?.id?.toLowerCase() === resource.id.toLowerCase()) delete other.properties.virtualMachine;
      if (other.properties.ipConfiguration?.id?.toLowerCase().startsWith(resource.id.toLowerCase())) delete other.properties.ipConfiguration;
    }
  }

  // Compute catalog.

  vmSizes(location: string): Reply {
    const value = this.catalog.sizes
      .filter((s) => s.locations.includes(location.toLowerCase()))
      .map(({ locations: _l, ...size }) => size);
    return { status: 200, body: { value } };
  }

  resourceSkus(url: URL): Reply {
    const filter = parseEqFilter(url.searchParams.get('$filter'));
    for (const field of filter.keys())
      if (field !== 'location') throw badRequest('InvalidFilter', `Only the location filter is supported, not '${field}'.`);
    const location = filter.get('location')?.toLowerCase();
    const value = this.catalog.skus
      .filter((s) => location === undefined || s.location === location)
      .map((s) => {
        const size = this.catalog.sizes.find((z) => z.name === s.name);
        const capabilities =
          s.resourceType === 'virtualMachines' && size
            ? [
                { name: 'vCPUs', value: String(size.numberOfCores) },
                { name: 'MemoryGB', value: String(size.memoryInMB / 1024) },
                { name: 'MaxResourceVolumeMB', value: String(size.resourceDiskSizeInMB) },
                ...(s.gpus ? [{ name: 'GPUs', value: String(s.gpus) }] : []),
                { name: 'HyperVGenerations', value: size.hyperVGenerations ?? 'V1,V2' },
                { name: 'CpuArchitectureType', value: size.architecture ?? 'x64' },
                { name: 'EphemeralOSDiskSupported', value: size.ephemeralOsDisk ? 'True' : 'False' },
                ...(size.ephemeralOsDisk?.cacheGiB ? [{ name: 'CachedDiskBytes', value: String(size.ephemeralOsDisk.cacheGiB * 1024 ** 3) }] : []),
              ]
            : [{ name: 'MaxSizeGiB', value: '4' }];
        return {
          resourceType: s.resourceType,
          name: s.name,
          tier: 'Standard',
          size: s.name.replace(/^Standard_/, ''),
          locations: [s.location],
          locationInfo: [{ location: s.location, zones: size?.zones ?? ['1', '2', '3'], zoneDetails: [] }],
          capabilities,
          restrictions: s.restricted
            ? [{ type: 'Location', values: [s.location], restrictionInfo: { locations: [s.location] }, reasonCode: 'NotAvailableForSubscription' }]
            : [],
        };
      });
    return { status: 200, body: { value } };
  }

  /** One marketplace image version: its generation, architecture and purchase plan. */
  imageVersion(location: string, publisher: string, offer: string, sku: string, version: string): Reply {
    const image = this.catalog.images.find(
      (i) =>
        i.publisher.toLowerCase() === publisher.toLowerCase() &&
        i.offer.toLowerCase() === offer.toLowerCase() &&
        i.sku.toLowerCase() === sku.toLowerCase() &&
        i.locations.includes(location.toLowerCase()),
    );
    if (!image || !image.versions.includes(version)) throw notFound('NotFound', 'Artifact: VMImage was not found.');
    return {
      status: 200,
      body: {
        location: location.toLowerCase(),
        name: version,
        id: `/Subscriptions/${this.sub}/Providers/Microsoft.Compute/Locations/${location}/Publishers/${image.publisher}/ArtifactTypes/VMImage/Offers/${image.offer}/Skus/${image.sku}/Versions/${version}`,
        properties: {
          hyperVGeneration: image.hyperVGeneration ?? 'V2',
          architecture: image.architecture ?? 'x64',
          osDiskImage: { operatingSystem: 'Linux' },
          ...(image.plan ? { plan: image.plan } : {}),
        },
      },
    };
  }

  imageVersions(location: string, publisher: string, offer: string, sku: string, url: URL): Reply {
    const image = this.catalog.images.find(
      (i) =>
        i.publisher.toLowerCase() === publisher.toLowerCase() &&
        i.offer.toLowerCase() === offer.toLowerCase() &&
        i.sku.toLowerCase() === sku.toLowerCase() &&
        i.locations.includes(location.toLowerCase()),
    );
    if (!image) throw notFound('NotFound', 'Artifact: VMImage was not found.');
    let versions = [...image.versions];
    const orderby = url.searchParams.get('$orderby');
    if (orderby) versions.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }) * (/desc$/i.test(orderby) ? -1 : 1));
    const top = url.searchParams.get('$top');
    if (top) versions = versions.slice(0, Number(top));
    const body = versions.map((version) => ({
      location: location.toLowerCase(),
      name: version,
      id: `/Subscriptions/${this.sub}/Providers/Microsoft.Compute/Locations/${location}/Publishers/${image.publisher}/ArtifactTypes/VMImage/Offers/${image.offer}/Skus/${image.sku}/Versions/${version}`,
    }));
    return { status: 200, body };
  }
}
