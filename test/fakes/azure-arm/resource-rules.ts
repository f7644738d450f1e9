import { randomUUID } from 'node:crypto';
import { ArmError, badRequest, conflict, notFound } from './arm-error.js';
import type { Catalog } from './catalog.js';
import type { ArmResource, ResourceStore } from './resource-store.js';

/**
 * What Azure checks and fills in when a resource is PUT, for the resource types a gate creates.
 * The checks are those a gate can get wrong (a reference to a resource that does not exist yet, a size
 * not sold in the location, password login, an SSH key path Azure refuses, a public IP used twice);
 * the fills are what Azure computes (ids of sub-resources, IP addresses, default security rules).
 */
export interface AdmissionContext {
  store: ResourceStore;
  catalog: Catalog;
  allocatePublicIp(): string;
}

export interface ResourceWrite {
  group: string;
  type: string;
  name: string;
  location: string;
  body: Record<string, any>;
  existing?: ArmResource;
  /** The request's api-version (some defaults depend on it). */
  apiVersion?: string;
}

export const NSG = 'microsoft.network/networksecuritygroups';
export const VNET = 'microsoft.network/virtualnetworks';
export const PUBLIC_IP = 'microsoft.network/publicipaddresses';
export const NIC = 'microsoft.network/networkinterfaces';
export const VM = 'microsoft.compute/virtualmachines';
export const DISK = 'microsoft.compute/disks';
export const NAT_GATEWAY = 'microsoft.network/natgateways';

const canonicalTypes: Record<string, string> = {
  [NSG]: 'Microsoft.Network/networkSecurityGroups',
  [VNET]: 'Microsoft.Network/virtualNetworks',
  [PUBLIC_IP]: 'Microsoft.Network/publicIPAddresses',
  [NIC]: 'Microsoft.Network/networkInterfaces',
  [VM]: 'Microsoft.Compute/virtualMachines',
  [DISK]: 'Microsoft.Compute/disks',
  [NAT_GATEWAY]: 'Microsoft.Network/natGateways',
};

/**
 * From network api-version 2025-07-01 on, a subnet created without `defaultOutboundAccess` is private: its
 * VMs without a public IP (or NAT gateway) have no way out. Earlier versions leave Azure's implicit default.
 */
export const PRIVATE_SUBNETS_FROM = '2025-07-01';

export const supportedType = (type: string): string | undefined => canonicalTypes[type.toLowerCase()];

const ipToInt = (ip: string): number => ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
const intToIp = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

const parseCidr = (cidr: string): { base: number; size: number } | null => {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(cidr);
  if (!m) return null;
  const bits = Number(m[2]);
  const size = 2 ** (32 - bits);
  return { base: ipToInt(m[1]!) - (ipToInt(m[1]!) % size), size };
};

const withinCidr = (inner: string, outer: string): boolean => {
  const i = parseCidr(inner);
  const o = parseCidr(outer);
  return !!i && !!o && i.base >= o.base && i.base + i.size <= o.base + o.size;
};

const refId = (ref: unknown): string | undefined =>
  typeof ref === 'object' && ref !== null && typeof (ref as { id?: unknown }).id === 'string' ? (ref as { id: string }).id : undefined;

const missingReference = (what: string, id: string): ArmError =>
  badRequest('InvalidResourceReference', `Resource ${id} referenced by ${what} was not found.`);

/** A reference to a resource whose own operation has not ended: Azure refuses it until it is Succeeded. */
const notProvisioned = (referenced: string, by: string, resource: ArmResource): ArmError =>
  badRequest(
    'ReferencedResourceNotProvisioned',
    `Cannot proceed with operation because resource ${referenced} used by resource ${by} is not in Succeeded state. Resource is in ${resource.properties.provisioningState} state and the last operation that updated/is updating the resource is Put${resource.type.split('/')[1]}Operation.`,
  );

const invalid = (message: string, target?: string): ArmError =>
  badRequest('InvalidParameter', target ? `${message} Target: '${target}'.` : message);

const defaultSecurityRules = (nsgId: string): Record<string, unknown>[] =>
  [
    ['AllowVnetInBound', 'Inbound', 'Allow', 65000, 'VirtualNetwork', 'VirtualNetwork'],
    ['AllowAzureLoadBalancerInBound', 'Inbound', 'Allow', 65001, 'AzureLoadBalancer', '*'],
    ['DenyAllInBound', 'Inbound', 'Deny', 65500, '*', '*'],
    ['AllowVnetOutBound', 'Outbound', 'Allow', 65000, 'VirtualNetwork', 'VirtualNetwork'],
    ['AllowInternetOutBound', 'Outbound', 'Allow', 65001, '*', 'Internet'],
    ['DenyAllOutBound', 'Outbound', 'Deny', 65500, '*', '*'],
  ].map(([name, direction, access, priority, source, destination]) => ({
    id: `${nsgId}/defaultSecurityRules/${name}`,
    name,
    properties: {
      protocol: '*',
      sourcePortRange: '*',
      destinationPortRange: '*',
      sourceAddressPrefix: source,
      destinationAddressPrefix: destination,
      access,
      priority,
      direction,
      provisioningState: 'Succeeded',
    },
  }));

function admitSecurityGroup(id: string, props: Record<string, any>): Record<string, any> {
  const rules: any[] = props.securityRules ?? [];
  const priorities = new Set<string>();
  const securityRules = rules.map((rule) => {
    const p = rule.properties ?? {};
    if (!rule.name) throw invalid('A security rule needs a name.');
    if (!['Inbound', 'Outbound'].includes(p.direction)) throw badRequest('SecurityRuleInvalidDirection', `Security rule ${rule.name} has invalid direction '${p.direction}'.`);
    if (!['Allow', 'Deny'].includes(p.access)) throw badRequest('SecurityRuleInvalidAccess', `Security rule ${rule.name} has invalid access '${p.access}'.`);
    if (!Number.isInteger(p.priority) || p.priority < 100 || p.priority > 4096)
      throw badRequest('SecurityRuleInvalidPriority', `Security rule ${rule.name} has invalid priority ${p.priority}; allowed 100-4096.`);
    const slot = `${p.direction}/${p.priority}`;
    if (priorities.has(slot)) throw badRequest('SecurityRulesConflictingPriority', `Security rules share priority ${p.priority} in direction ${p.direction}.`);
    priorities.add(slot);
    const one = p.sourceAddressPrefix !== undefined;
    const many = Array.isArray(p.sourceAddressPrefixes) && p.sourceAddressPrefixes.length > 0;
    if (one === many)
      throw badRequest('SecurityRuleParameterContainsUnsupportedValue', `Security rule ${rule.name} must have exactly one of sourceAddressPrefix or sourceAddressPrefixes.`);
    if (p.destinationPortRange === undefined && !(Array.isArray(p.destinationPortRanges) && p.destinationPortRanges.length))
      throw badRequest('SecurityRuleParameterContainsUnsupportedValue', `Security rule ${rule.name} has no destination port.`);
    return { id: `${id}/securityRules/${rule.name}`, name: rule.name, properties: { ...p, provisioningState: 'Succeeded' } };
  });
  return { ...props, securityRules, defaultSecurityRules: defaultSecurityRules(id) };
}

function admitVirtualNetwork(id: string, write: ResourceWrite, props: Record<string, any>, ctx: AdmissionContext): Record<string, any> {
  const prefixes: string[] = props.addressSpace?.addressPrefixes ?? [];
  if (!prefixes.length || !prefixes.every(parseCidr)) throw invalid('The virtual network needs valid addressSpace.addressPrefixes.');
  const subnets = (props.subnets ?? []).map((s: any) => {
    const prefix = s.properties?.addressPrefix;
    if (!s.name || !prefix || !prefixes.some((outer) => withinCidr(prefix, outer)))
      throw badRequest('NetcfgInvalidSubnet', `Subnet '${s.name}' is not valid in virtual network '${id}'.`);
    const natId = refId(s.properties?.natGateway);
    if (natId) {
      const nat = ctx.store.get(natId);
      if (!nat || nat.type.toLowerCase() !== NAT_GATEWAY) throw missingReference(`subnet ${s.name}`, natId);
    }
    const explicit = typeof s.properties?.defaultOutboundAccess === 'boolean';
    const privateByDefault = (write.apiVersion ?? '') >= PRIVATE_SUBNETS_FROM;
    const properties = { ...s.properties, ...(!explicit && privateByDefault ? { defaultOutboundAccess: false } : {}), provisioningState: 'Succeeded' };
    return { id: `${id}/subnets/${s.name}`, name: s.name, properties };
  });
  return { ...props, subnets };
}

export function admitPublicIp(write: ResourceWrite, props: Record<string, any>, ctx: AdmissionContext): Record<string, any> {
  const sku = write.body.sku?.name ?? 'Basic';
  if (sku === 'Basic') throw invalid('Basic SKU public IP addresses are retired (30 September 2025); create a Standard SKU public IP address.', 'sku');
  if (sku === 'Standard' && props.publicIPAllocationMethod !== 'Static')
    throw badRequest('StandardSkuPublicIPAddressesMustBeStatic', 'Standard sku publicIp addresses must have allocation method Static.');
  const ipAddress = write.existing?.properties.ipAddress ?? ctx.allocatePublicIp();
  return { ...props, ipAddress, ...(write.existing?.properties.ipConfiguration ? { ipConfiguration: write.existing.properties.ipConfiguration } : {}) };
}

function admitNatGateway(id: string, write: ResourceWrite, props: Record<string, any>, ctx: AdmissionContext): Record<string, any> {
  if (write.body.sku?.name !== 'Standard') throw badRequest('NatGatewaySkuMustBeStandard', `NAT gateway ${id} must have sku Standard.`);
  for (const ref of props.publicIpAddresses ?? []) {
    const pip = ctx.store.get(refId(ref) ?? '');
    if (!pip) throw missingReference(`NAT gateway ${id}`, refId(ref) ?? '(no id)');
    if ((pip.sku as { name?: string } | undefined)?.name !== 'Standard')
      throw badRequest('NatGatewayCannotUseBasicPublicIp', `NAT gateway ${id} cannot use Basic public IP ${pip.id}.`);
    const holder = pip.properties.ipConfiguration?.id;
    if (holder) throw badRequest('PublicIPAddressInUse', `Public IP address ${pip.id} is already used by ${holder}.`);
  }
  return { ...props };
}

/** Finds the subnet an id names: `<vnet id>/subnets/<name>`. */
function findSubnet(store: ResourceStore, subnetId: string): { vnet: ArmResource; subnet: any } | undefined {
  const m = /^(.*)\/subnets\/([^/]+)$/i.exec(subnetId);
  if (!m) return undefined;
  const vnet = store.get(m[1]!);
  const subnet = vnet?.properties.subnets?.find((s: any) => s.name.toLowerCase() === m[2]!.toLowerCase());
  return vnet && subnet ? { vnet, subnet } : undefined;
}

function allocatePrivateIp(store: ResourceStore, subnetId: string, prefix: string): string {
  const cidr = parseCidr(prefix)!;
  const used = new Set(
    store
      .allResources()
      .filter((r) => r.type.toLowerCase() === NIC)
      .flatMap((r) => r.properties.ipConfigurations ?? [])
      .filter((c: any) => c.properties?.subnet?.id?.toLowerCase() === subnetId.toLowerCase())
      .map((c: any) => c.properties.privateIPAddress),
  );
  // Azure reserves the first four addresses of every subnet and the last one.
  for (let n = cidr.base + 4; n < cidr.base + cidr.size - 1; n++) if (!used.has(intToIp(n))) return intToIp(n);
  throw badRequest('SubnetIsFull', `Subnet ${subnetId} has no free address.`);
}

export function admitNetworkInterface(id: string, write: ResourceWrite, props: Record<string, any>, ctx: AdmissionContext): Record<string, any> {
  const { store } = ctx;
  const configs: any[] = props.ipConfigurations ?? [];
  if (!configs.length) throw badRequest('NetworkInterfaceMustHaveAtLeastOneIpConfiguration', `Network interface ${id} has no IP configuration.`);
  const nsgId = refId(props.networkSecurityGroup);
  const nsg = nsgId ? store.get(nsgId) : undefined;
  if (nsgId && !nsg) throw missingReference(`network interface ${id}`, nsgId);
  if (nsg && nsg.properties.provisioningState !== 'Succeeded') throw notProvisioned(nsgId!, id, nsg);
  if (nsg && nsg.location.toLowerCase() !== write.location.toLowerCase())
    throw badRequest('InvalidResourceReference', `Network security group ${nsgId} is in location '${nsg.location}'; network interface ${id} is in '${write.location}'.`);
  const previous = new Map<string, any>((write.existing?.properties.ipConfigurations ?? []).map((c: any) => [c.name, c]));
  const ipConfigurations = configs.map((c) => {
    const configId = `${id}/ipConfigurations/${c.name}`;
    const p = c.properties ?? {};
    const subnetId = refId(p.subnet);
    const found = subnetId ? findSubnet(store, subnetId) : undefined;
    if (!subnetId || !found) throw missingReference(`network interface ${id}`, subnetId ?? '(no subnet)');
    if (found.vnet.properties.provisioningState !== 'Succeeded') throw notProvisioned(subnetId, id, found.vnet);
    if (found.vnet.location.toLowerCase() !== write.location.toLowerCase())
      throw badRequest('InvalidResourceReference', `Subnet ${subnetId} is in location '${found.vnet.location}'; network interface ${id} is in '${write.location}'.`);
    const pipId = refId(p.publicIPAddress);
    if (pipId) {
      const pip = store.get(pipId);
      if (!pip) throw missingReference(`network interface ${id}`, pipId);
      const holder = pip.properties.ipConfiguration?.id;
      if (holder && holder.toLowerCase() !== configId.toLowerCase())
        throw badRequest('PublicIPAddressInUse', `Public IP address ${pipId} is already used by ${holder}.`);
    }
    const privateIPAddress =
      previous.get(c.name)?.properties.privateIPAddress ?? p.privateIPAddress ?? allocatePrivateIp(store, subnetId, found.subnet.properties.addressPrefix);
    return { id: configId, name: c.name, properties: { ...p, privateIPAddress, privateIPAllocationMethod: p.privateIPAllocationMethod ?? 'Dynamic', provisioningState: 'Succeeded' } };
  });
  return { ...props, ipConfigurations, ...(write.existing?.properties.virtualMachine ? { virtualMachine: write.existing.properties.virtualMachine } : {}) };
}

/** Attaches a NIC's public IPs to it once the NIC exists. */
export function attachPublicIps(store: ResourceStore, nic: ArmResource): void {
  for (const c of nic.properties.ipConfigurations ?? []) {
    const pip = c.properties?.publicIPAddress?.id ? store.get(c.properties.publicIPAddress.id) : undefined;
    if (pip) pip.properties.ipConfiguration = { id: c.id };
  }
}

/** Zones: one, among those the size is offered in there. */
function checkPlacement(write: ResourceWrite, size: Catalog['sizes'][number]): void {
  const zones = write.body.zones;
  if (zones === undefined) return;
  if (!Array.isArray(zones) || zones.length !== 1) throw invalid('A virtual machine is placed in exactly one availability zone.', 'zones');
  const offered = size.zones ?? ['1', '2', '3'];
  if (!offered.includes(String(zones[0])))
    throw conflict('SkuNotAvailable', `The requested VM size ${size.name} is currently not available in location '${write.location}' zones '${zones[0]}'.`);
  if (write.existing && JSON.stringify(write.existing.zones ?? null) !== JSON.stringify(zones))
    throw conflict('PropertyChangeNotAllowed', "Changing property 'zones' is not allowed.");
}

/** Spot: `priority: Spot`, an eviction policy (Deallocate by default), a maximum price of -1 or above zero. */
function checkPriority(write: ResourceWrite, props: Record<string, any>): void {
  const priority = props.priority ?? 'Regular';
  if (!['Regular', 'Spot', 'Low'].includes(priority)) throw invalid(`The value '${priority}' of priority is not valid.`, 'priority');
  if (priority !== 'Spot') {
    if (props.evictionPolicy !== undefined || props.billingProfile !== undefined)
      throw invalid('evictionPolicy and billingProfile can only be set for Azure Spot virtual machines.', 'evictionPolicy');
    return;
  }
  if (props.evictionPolicy !== undefined && !['Deallocate', 'Delete'].includes(props.evictionPolicy))
    throw invalid(`The value '${props.evictionPolicy}' of evictionPolicy is not valid.`, 'evictionPolicy');
  const maxPrice = props.billingProfile?.maxPrice;
  if (maxPrice !== undefined && maxPrice !== -1 && !(typeof maxPrice === 'number' && maxPrice > 0 && Math.round(maxPrice * 1e5) === maxPrice * 1e5))
    throw invalid('The maximum price must be -1 or a positive price with at most five decimals.', 'billingProfile.maxPrice');
  if (write.existing && (write.existing.properties.priority ?? 'Regular') !== 'Spot')
    throw conflict('PropertyChangeNotAllowed', "Changing property 'priority' is not allowed.");
}

/** An ephemeral OS disk: on a size that supports one, with room for the image, read-only caching, never deallocated. */
function checkOsDisk(props: Record<string, any>, size: Catalog['sizes'][number]): void {
  const osDisk = props.storageProfile?.osDisk ?? {};
  const diff = osDisk.diffDiskSettings;
  if (!diff) return;
  if (diff.option !== 'Local') throw invalid(`The value '${diff.option}' of diffDiskSettings.option is not valid.`, 'diffDiskSettings.option');
  if (!size.ephemeralOsDisk)
    throw badRequest('OperationNotAllowed', `The VM size '${size.name}' does not support ephemeral OS disks (EphemeralOSDiskSupported: False).`);
  const placement = diff.placement ?? (size.ephemeralOsDisk.cacheGiB ? 'CacheDisk' : 'ResourceDisk');
  const room = placement === 'CacheDisk' ? (size.ephemeralOsDisk.cacheGiB ?? 0) : size.resourceDiskSizeInMB / 1024;
  const needed = osDisk.diskSizeGB ?? 30;
  if (room < needed)
    throw badRequest('OperationNotAllowed', `The ${placement} of VM size '${size.name}' (${room} GiB) is smaller than the OS disk (${needed} GiB); an ephemeral OS disk does not fit.`);
  if (osDisk.caching !== 'ReadOnly') throw invalid('An ephemeral OS disk needs caching ReadOnly.', 'osDisk.caching');
  if (props.priority === 'Spot' && props.evictionPolicy !== 'Delete')
    throw invalid('A Spot virtual machine with an ephemeral OS disk must have evictionPolicy Delete.', 'evictionPolicy');
}

const reservedAdminNames = new Set(['root', 'admin', 'administrator', 'user', 'guest', 'test', 'sys', 'daemon', 'bin']);

function admitVirtualMachine(id: string, write: ResourceWrite, props: Record<string, any>, ctx: AdmissionContext): { properties: Record<string, any>; customData?: string } {
  const { store, catalog } = ctx;
  const vmSize = props.hardwareProfile?.vmSize;
  const size = catalog.sizes.find((s) => s.name.toLowerCase() === String(vmSize).toLowerCase());
  if (!size) throw invalid(`The value ${vmSize} provided for the VM size is not valid.`, 'vmSize');
  if (!size.locations.includes(write.location.toLowerCase()))
    throw conflict('SkuNotAvailable', `The requested VM size ${vmSize} is currently not available in location '${write.location}'.`);
  const restricted = catalog.skus.find((s) => s.name === size.name && s.location === write.location.toLowerCase() && s.restricted);
  if (restricted) throw conflict('SkuNotAvailable', `The requested VM size ${vmSize} is not available for this subscription in location '${write.location}'.`);

  const image = props.storageProfile?.imageReference ?? {};
  if (!image.id) {
    const entry = catalog.images.find(
      (i) =>
        i.publisher.toLowerCase() === String(image.publisher).toLowerCase() &&
        i.offer.toLowerCase() === String(image.offer).toLowerCase() &&
        i.sku.toLowerCase() === String(image.sku).toLowerCase() &&
        i.locations.includes(write.location.toLowerCase()),
    );
    if (!entry || (image.version !== 'latest' && !entry.versions.includes(image.version)))
      throw notFound('PlatformImageNotFound', `The platform image '${image.publisher}:${image.offer}:${image.sku}:${image.version}' is not available.`);
    const architecture = entry.architecture ?? 'x64';
    if ((size.architecture ?? 'x64') !== architecture)
      throw badRequest('BadRequest', `The selected VM size '${vmSize}' cannot boot an image of architecture '${architecture}'. Choose a size of architecture '${architecture}'.`);
    const generation = entry.hyperVGeneration ?? 'V2';
    if (!(size.hyperVGenerations ?? 'V1,V2').split(',').includes(generation))
      throw badRequest('BadRequest', `The selected VM size '${vmSize}' cannot boot Hypervisor Generation '${generation.slice(1)}'. If this was a Create operation please check that the Hypervisor Generation of the Image matches the Hypervisor Generation of the selected VM Size.`);
    if (entry.plan && !write.existing) {
      const plan = write.body.plan;
      if (!plan) throw badRequest('VMMarketplaceInvalidInput', 'Creating a virtual machine from Marketplace image or a custom image sourced from a Marketplace image requires Plan information in the request.');
      if (plan.name !== entry.plan.name || plan.product !== entry.plan.product || plan.publisher !== entry.plan.publisher)
        throw badRequest('VMMarketplaceInvalidInput', 'The purchase information does not match the image.');
    }
  }

  const os = props.osProfile ?? {};
  const admin = os.adminUsername;
  if (!write.existing) {
    if (typeof admin !== 'string' || !/^[a-z_][a-z0-9_-]{0,31}$/.test(admin) || reservedAdminNames.has(admin))
      throw invalid(`The admin user name '${admin}' is not allowed.`, 'adminUsername');
    const linux = os.linuxConfiguration ?? {};
    if (linux.disablePasswordAuthentication !== true && !os.adminPassword) throw invalid('Password or SSH key required.', 'adminPassword');
    if (linux.disablePasswordAuthentication === true && os.adminPassword)
      throw invalid('An admin password cannot be set when password authentication is disabled.', 'adminPassword');
    for (const key of linux.ssh?.publicKeys ?? []) {
      if (key.path !== `/home/${admin}/.ssh/authorized_keys`)
        throw invalid(`Destination path for SSH public keys is currently limited to its default value /home/${admin}/.ssh/authorized_keys due to a known issue in Linux provisioning agent.`, 'linuxConfiguration.ssh.publicKeys.path');
      if (!/^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+/.test(String(key.keyData)))
        throw invalid('The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.', 'linuxConfiguration.ssh.publicKeys.keyData');
    }
    if (linux.disablePasswordAuthentication === true && !(linux.ssh?.publicKeys ?? []).length)
      throw invalid('SSH public keys are required when password authentication is disabled.', 'linuxConfiguration.ssh.publicKeys');
  }
  const customData: string | undefined = os.customData;
  if (customData !== undefined && !/^[A-Za-z0-9+/]*={0,2}$/.test(customData)) throw invalid('Custom data must be in Base64.', 'customData');
  if (write.existing && customData !== undefined && customData !== write.existing.writeOnly.customData)
    throw conflict('PropertyChangeNotAllowed', "Changing property 'customData' is not allowed.");

  const profile = props.networkProfile ?? {};
  const configs: any[] = profile.networkInterfaceConfigurations ?? [];
  // A VM PUT again after it made its own NICs lists both: the configurations it was given and the NICs it made.
  const nics: any[] = configs.length ? [] : (profile.networkInterfaces ?? []);
  if (!nics.length && !configs.length) throw invalid('At least one network interface is required.', 'networkProfile');
  if (configs.length && !profile.networkApiVersion)
    throw invalid('networkApiVersion is required when networkInterfaceConfigurations are given.', 'networkProfile.networkApiVersion');
  for (const ref of nics) {
    const nic = store.get(ref.id ?? '');
    if (!nic) throw notFound('NotFound', `Resource ${ref.id} not found.`);
    const holder = nic.properties.virtualMachine?.id;
    if (holder && holder.toLowerCase() !== id.toLowerCase()) throw badRequest('NicInUse', `Network interface ${ref.id} is used by ${holder}.`);
    if (nic.location.toLowerCase() !== write.location.toLowerCase())
      throw badRequest('InvalidResourceReference', `Network interface ${ref.id} is in location '${nic.location}', not the virtual machine's '${write.location}'.`);
  }
  for (const config of configs) {
    if (!config.name) throw invalid('A network interface configuration needs a name.', 'networkProfile.networkInterfaceConfigurations');
    if (!(config.properties?.ipConfigurations ?? []).length)
      throw badRequest('NetworkInterfaceMustHaveAtLeastOneIpConfiguration', `Network interface configuration ${config.name} has no IP configuration.`);
  }

  checkPlacement(write, size);
  checkPriority(write, props);
  checkOsDisk(props, size);
  const { customData: _secret, adminPassword: _password, ...osProfile } = os;
  return {
    properties: {
      ...props,
      osProfile: write.existing?.properties.osProfile ?? osProfile,
      vmId: write.existing?.properties.vmId ?? randomUUID(),
      timeCreated: write.existing?.properties.timeCreated ?? new Date().toISOString(),
    },
    customData: write.existing ? write.existing.writeOnly.customData : customData,
  };
}

/** Links a VM to its NICs and creates its OS disk, as Azure does once the VM exists. */
export function attachVirtualMachine(store: ResourceStore, vm: ArmResource): void {
  for (const ref of vm.properties.networkProfile?.networkInterfaces ?? []) {
    const nic = store.get(ref.id);
    if (nic) nic.properties.virtualMachine = { id: vm.id };
  }
  const osDisk = vm.properties.storageProfile?.osDisk ?? {};
  // An ephemeral OS disk lives on the host's local storage: no managed disk resource.
  if (osDisk.managedDisk?.id || osDisk.diffDiskSettings) return;
  const name = osDisk.name ?? `${vm.name}_OsDisk_1_${randomUUID().replace(/-/g, '')}`;
  const diskId = store.resourceId(vm.resourceGroup, canonicalTypes[DISK]!, name);
  store.put({
    id: diskId,
    name,
    type: canonicalTypes[DISK]!,
    resourceGroup: vm.resourceGroup,
    location: vm.location,
    tags: {},
    properties: { diskSizeGB: osDisk.diskSizeGB ?? 30, osType: 'Linux', provisioningState: 'Succeeded', diskState: 'Attached' },
    writeOnly: {},
  });
  vm.properties.storageProfile = { ...vm.properties.storageProfile, osDisk: { ...osDisk, name, managedDisk: { ...osDisk.managedDisk, id: diskId } } };
}

/**
 * The network interfaces (and public IPs) a VM creates from its `networkInterfaceConfigurations`: resources
 * of the VM's group named after their configurations, checked as a NIC or public IP PUT would be, put in the
 * store (undone when one fails), and the references the VM reports in `networkInterfaces`.
 */
export function createVmNetwork(vm: { id: string; group: string; location: string; properties: Record<string, any> }, ctx: AdmissionContext): { id: string; properties: { primary: boolean; deleteOption: string } }[] {
  const { store } = ctx;
  const configs: any[] = vm.properties.networkProfile?.networkInterfaceConfigurations ?? [];
  const created: ArmResource[] = [];
  const put = (r: ArmResource): void => {
    if (!store.get(r.id)) created.push(r);
    r.properties.provisioningState = 'Succeeded';
    store.put(r);
  };
  try {
    return configs.map((config, i) => {
      const p = config.properties ?? {};
      const ipConfigurations = (p.ipConfigurations ?? []).map((ip: any) => {
        const ipp = ip.properties ?? {};
        const pipc = ipp.publicIPAddressConfiguration;
        let publicIPAddress: { id: string } | undefined;
        if (pipc) {
          if (!pipc.name) throw invalid('A public IP address configuration needs a name.', 'publicIPAddressConfiguration.name');
          const pipId = store.resourceId(vm.group, canonicalTypes[PUBLIC_IP]!, pipc.name);
          const pip = admit(
            { group: vm.group, type: canonicalTypes[PUBLIC_IP]!, name: pipc.name, location: vm.location, existing: store.get(pipId), body: { sku: pipc.sku, tags: pipc.tags ?? config.tags, properties: { ...(pipc.properties ?? {}) } } },
            ctx,
          );
          pip.writeOnly = {};
          pip.properties.deleteOption = pipc.properties?.deleteOption ?? 'Detach';
          put(pip);
          publicIPAddress = { id: pip.id };
        }
        return { name: ip.name, properties: { subnet: ipp.subnet, primary: ipp.primary ?? true, privateIPAllocationMethod: 'Dynamic', ...(publicIPAddress ? { publicIPAddress } : {}) } };
      });
      const nicId = store.resourceId(vm.group, canonicalTypes[NIC]!, config.name);
      const existing = store.get(nicId);
      const holder = existing?.properties.virtualMachine?.id;
      if (holder && holder.toLowerCase() !== vm.id.toLowerCase()) throw badRequest('NicInUse', `Network interface ${nicId} is used by ${holder}.`);
      const nic = admit(
        {
          group: vm.group,
          type: canonicalTypes[NIC]!,
          name: config.name,
          location: vm.location,
          existing,
          body: { tags: config.tags, properties: { ...(p.networkSecurityGroup ? { networkSecurityGroup: p.networkSecurityGroup } : {}), enableAcceleratedNetworking: p.enableAcceleratedNetworking ?? false, ipConfigurations } },
        },
        ctx,
      );
      put(nic);
      attachPublicIps(store, nic);
      return { id: nic.id, properties: { primary: p.primary ?? i === 0, deleteOption: p.deleteOption ?? 'Detach' } };
    });
  } catch (error) {
    for (const r of created) store.remove(r.id);
    throw error;
  }
}

/**
 * What goes with a VM when it is deleted: its OS disk, NICs and public IPs whose delete option says so (the NICs
 * it was given by reference, or made from its configurations).
 */
export function dependentsOf(store: ResourceStore, vm: ArmResource): ArmResource[] {
  const out: ArmResource[] = [];
  const osDisk = vm.properties.storageProfile?.osDisk ?? {};
  if (osDisk.deleteOption === 'Delete' && osDisk.managedDisk?.id) {
    const disk = store.get(osDisk.managedDisk.id);
    if (disk) out.push(disk);
  }
  for (const ref of vm.properties.networkProfile?.networkInterfaces ?? []) {
    if ((ref.properties?.deleteOption ?? ref.deleteOption) !== 'Delete') continue;
    const nic = store.get(ref.id);
    if (!nic) continue;
    out.push(nic);
    for (const c of nic.properties.ipConfigurations ?? []) {
      const pip = c.properties?.publicIPAddress?.id ? store.get(c.properties.publicIPAddress.id) : undefined;
      if (pip?.properties.deleteOption === 'Delete') out.push(pip);
    }
  }
  return out;
}

/** Checks a PUT against the rules of its type and returns the resource as Azure would store it. */
export function admit(write: ResourceWrite, ctx: AdmissionContext): ArmResource {
  const type = supportedType(write.type)!;
  const id = write.existing?.id ?? ctx.store.resourceId(write.group, type, write.name);
  if (write.existing && write.existing.location.toLowerCase() !== write.location.toLowerCase())
    throw conflict('InvalidResourceLocation', `The resource '${write.name}' already exists in location '${write.existing.location}'.`);
  const props: Record<string, any> = { ...(write.body.properties ?? {}) };
  delete props.provisioningState;
  let properties: Record<string, any>;
  let customData: string | undefined;
  switch (type.toLowerCase()) {
    case NSG:
      properties = admitSecurityGroup(id, props);
      break;
    case VNET:
      properties = admitVirtualNetwork(id, write, props, ctx);
      break;
    case NAT_GATEWAY:
      properties = admitNatGateway(id, write, props, ctx);
      break;
    case PUBLIC_IP:
      properties = admitPublicIp(write, props, ctx);
      break;
    case NIC:
      properties = admitNetworkInterface(id, write, props, ctx);
      break;
    case VM:
      ({ properties, customData } = admitVirtualMachine(id, write, props, ctx));
      break;
    default:
      properties = props;
  }
  return {
    id,
    name: write.existing?.name ?? write.name,
    type,
    resourceGroup: write.group,
    location: write.location,
    tags: { ...(write.body.tags ?? {}) },
    ...(write.body.sku ? { sku: write.body.sku } : {}),
    ...(Array.isArray(write.body.zones) ? { zones: [...write.body.zones] } : {}),
    properties,
    writeOnly: customData === undefined ? {} : { customData },
  };
}
