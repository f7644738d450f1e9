import type { ArmClients } from './arm-clients.js';
import { isNotFound } from './azure-errors.js';
import { TAG } from './tags.js';

/** What Azure says about one partition's resources: the inputs of partitionView. */
export interface ObservedGroup {
  name: string;
  provisioningState?: string;
  tags: Record<string, string>;
}

export interface ObservedVm {
  id?: string;
  name: string;
  location?: string;
  provisioningState?: string;
  tags: Record<string, string>;
  nicIds: string[];
}

export interface ObservedNic {
  id: string;
  name: string;
  /** The VM it is attached to. */
  virtualMachineId?: string;
  provisioningState?: string;
  privateIp?: string;
  publicIpId?: string;
}

export interface ObservedPublicIp {
  id: string;
  name: string;
  provisioningState?: string;
  ipAddress?: string;
}

export interface ObservedPartition {
  group: ObservedGroup;
  vms: ObservedVm[];
  nics: ObservedNic[];
  publicIps: ObservedPublicIp[];
}

const collect = async <T>(items: AsyncIterable<T>): Promise<T[]> => {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
};

/** A resource group, or null when it does not exist. */
export async function readGroup(arm: ArmClients, name: string): Promise<ObservedGroup | null> {
  try {
    const g = await arm.resources.resourceGroups.get(name);
    return { name: g.name ?? name, ...(g.properties?.provisioningState ? { provisioningState: g.properties.provisioningState } : {}), tags: g.tags ?? {} };
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** The resource groups tagged with this core's id (the ownership check of each is the caller's). */
export async function listCoreGroups(arm: ArmClients, coreId: string): Promise<ObservedGroup[]> {
  const filter = `tagName eq '${TAG.core}' and tagValue eq '${coreId.replace(/'/g, "''")}'`;
  const groups = await collect(arm.resources.resourceGroups.list({ filter }));
  return groups.map((g) => ({
    name: g.name!,
    ...(g.properties?.provisioningState ? { provisioningState: g.properties.provisioningState } : {}),
    tags: g.tags ?? {},
  }));
}

/** The VMs, NICs and public IPs of a partition's group, read in parallel. Throws 404 when the group is gone. */
export async function readPartition(arm: ArmClients, group: ObservedGroup): Promise<ObservedPartition> {
  const [vms, nics, publicIps] = await Promise.all([
    collect(arm.compute.virtualMachines.list(group.name)),
    collect(arm.network.networkInterfaces.list(group.name)),
    collect(arm.network.publicIPAddresses.list(group.name)),
  ]);
  return {
    group,
    vms: vms.map((vm) => ({
      ...(vm.id ? { id: vm.id } : {}),
      name: vm.name!,
      ...(vm.location ? { location: vm.location } : {}),
      ...(vm.provisioningState ? { provisioningState: vm.provisioningState } : {}),
      tags: vm.tags ?? {},
      nicIds: (vm.networkProfile?.networkInterfaces ?? []).map((n) => n.id!).filter(Boolean),
    })),
    nics: nics.map((nic) => {
      const config = nic.ipConfigurations?.find((c) => c.primary) ?? nic.ipConfigurations?.[0];
      return {
        id: nic.id!,
        name: nic.name!,
        ...(nic.virtualMachine?.id ? { virtualMachineId: nic.virtualMachine.id } : {}),
        ...(nic.provisioningState ? { provisioningState: nic.provisioningState } : {}),
        ...(config?.privateIPAddress ? { privateIp: config.privateIPAddress } : {}),
        ...(config?.publicIPAddress?.id ? { publicIpId: config.publicIPAddress.id } : {}),
      };
    }),
    publicIps: publicIps.map((p) => ({
      id: p.id!,
      name: p.name!,
      ...(p.provisioningState ? { provisioningState: p.provisioningState } : {}),
      ...(p.ipAddress ? { ipAddress: p.ipAddress } : {}),
    })),
  };
}
