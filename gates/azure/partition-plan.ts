import type { ImageReference, OSDisk, VirtualMachine } from '@azure/arm-compute';
import type { NatGateway, NetworkSecurityGroup, PublicIPAddress, VirtualNetwork } from '@azure/arm-network';
import type { PartitionRequest } from '../../terminal-protocol/gate-methods.js';
import { customDataOf } from './cloud-init.js';
import type { NodeHostKey } from './host-keys.js';
import {
  groupNameOf,
  natGatewayNameOf,
  natPublicIpNameOf,
  networkNameOf,
  NETWORK_PREFIX,
  nicNameOf,
  publicIpNameOf,
  resourceIdOf,
  securityGroupNameOf,
  SUBNET_NAME,
  SUBNET_PREFIX,
  vmNameOf,
} from './naming.js';
import { securityRules } from './security-rules.js';
import type { SharedNetworkPlan } from './shared-network.js';
import { partitionTags, TAG } from './tags.js';

/**
 * The network api-version the VMs create their NICs (and the head's public IP) with. From 2025-07-01 on, a new
 * subnet is private by default; the gate's subnets say what they want explicitly either way.
 */
export const VM_NETWORK_API_VERSION = '2022-11-01';

export interface PlanSettings {
  subscriptionId: string;
  coreId: string;
  /** The gate's name: the one that reconciles the partition. */
  gateName: string;
  adminUser: string;
  sshPort: number;
  /** Who may reach SSH and the job's ports. */
  sources: string[];
  vmImage: ImageReference;
  containerImage: string | null;
  containerRuntime: 'podman' | 'docker';
  /** The image has the container runtime (a custom image): cloud-init installs nothing. */
  runtimeInstalled: boolean;
  osDiskType: 'Standard_LRS' | 'StandardSSD_LRS' | 'Premium_LRS';
  /** How nodes without a public IP reach the internet (see `outbound` of PartitionPlan). */
  outboundAccess: 'nat-gateway' | 'default';
  /**
   * The core's shared network of a region (shared-network.ts), for a partition of one node opening no inbound
   * port; null: every partition has a network of its own.
   */
  sharedNetworkFor: ((location: string) => SharedNetworkPlan) | null;
  /** The purchase plan the image requires (third-party marketplace images), or null. */
  plan: { name: string; product: string; publisher: string } | null;
  /** Spot VMs, with the most they may cost an hour (-1: up to the pay-as-you-go price); null: regular VMs. */
  spot: { maxPrice: number } | null;
  createdAt: Date;
  /** The partition's expiry: tagged on everything, and when its nodes power themselves off. */
  expiresAt: Date;
}

/** Where a partition's VMs go: a region, a zone of it (or none) and a size. */
export interface Placement {
  location: string;
  zone: string | null;
  size: string;
  /** Where an ephemeral OS disk goes on this size, or null for a managed OS disk. */
  ephemeralOsDisk: 'CacheDisk' | 'ResourceDisk' | null;
}

export const describePlacement = (p: Pick<Placement, 'location' | 'zone' | 'size'>): string => `${p.location}${p.zone ? ` zone ${p.zone}` : ''} ${p.size}`;

export interface NodePlan {
  index: number;
  role: 'head' | 'compute';
  vmName: string;
  nicName: string;
  hostKeyFingerprint: string;
  /** The VM, which makes its own NIC (and the head's public IP), deleted with it. Carries custom data: never logged. */
  vm: VirtualMachine;
}

export interface Named<T> {
  name: string;
  body: T;
}

/** A partition's own network, in its group, deleted with it. */
export interface OwnNetwork {
  kind: 'own';
  securityGroup: Named<NetworkSecurityGroup>;
  network: Named<VirtualNetwork>;
  /**
   * The NAT gateway (and its public IP) that gives the nodes without a public IP their way out, or null
   * when there are none (one node: the head goes out through its own IP) or outbound is Azure's default.
   */
  outbound: { publicIp: Named<PublicIPAddress>; natGateway: Named<NatGateway> } | null;
}

/** The core's shared network of the placement's region, which the partition's VM joins. */
export interface SharedNetwork {
  kind: 'shared';
  shared: SharedNetworkPlan;
}

/** Every resource of one partition in one placement, with its body, before anything is created. */
export interface PartitionPlan {
  partition: string;
  group: string;
  /** The group's own location (the gate's), whatever the placement. */
  groupLocation: string;
  placement: Placement;
  tags: Record<string, string>;
  network: OwnNetwork | SharedNetwork;
  nodes: NodePlan[];
}

/**
 * The resources of a partition in one placement, as a pure function of the request. Resource ids are known in
 * advance (they derive from names), so every body can reference the resources it needs before they exist; the
 * provisioner only has to respect the order Azure requires. Every VM makes its own NIC from a configuration (and
 * the head its public IP), with delete option Delete: one PUT per node instead of two dependent ones, and deleting
 * a VM deletes what it made.
 */
export function planPartition(request: PartitionRequest, hostKeys: NodeHostKey[], s: PlanSettings, placement: Placement, groupLocation: string): PartitionPlan {
  const { location } = placement;
  const group = groupNameOf(request.name);
  const id = (type: string, name: string): string => resourceIdOf(s.subscriptionId, group, type, name);
  const tags = partitionTags(request, s.coreId, { gate: s.gateName, createdAt: s.createdAt, expiresAt: s.expiresAt, spot: s.spot !== null });
  const nsgName = securityGroupNameOf(request.name);
  const vnetName = networkNameOf(request.name);
  const opensPorts = request.ports.some((p) => p.direction === 'in');
  const shared = s.sharedNetworkFor && hostKeys.length === 1 && !opensPorts ? s.sharedNetworkFor(location) : null;
  const subnetId = shared ? shared.subnetId : `${id('Microsoft.Network/virtualNetworks', vnetName)}/subnets/${SUBNET_NAME}`;
  const securityGroupId = shared ? shared.securityGroupId : id('Microsoft.Network/networkSecurityGroups', nsgName);
  const standardIp = {
    sku: { name: 'Standard' as const, tier: 'Regional' as const },
    publicIPAllocationMethod: 'Static' as const,
    publicIPAddressVersion: 'IPv4' as const,
  };

  const nodes = hostKeys.map((hostKey, index): NodePlan => {
    const role = index === 0 ? 'head' : 'compute';
    const vmName = vmNameOf(request.name, index);
    const nicName = nicNameOf(vmName);
    const osDisk: OSDisk = placement.ephemeralOsDisk
      ? { createOption: 'FromImage', deleteOption: 'Delete', caching: 'ReadOnly', diffDiskSettings: { option: 'Local', placement: placement.ephemeralOsDisk }, managedDisk: { storageAccountType: 'Standard_LRS' } }
      : { createOption: 'FromImage', deleteOption: 'Delete', managedDisk: { storageAccountType: s.osDiskType } };
    const vm: VirtualMachine = {
      location,
      tags: { ...tags, [TAG.node]: String(index), [TAG.role]: role, [TAG.hostKey]: hostKey.fingerprint },
      ...(placement.zone ? { zones: [placement.zone] } : {}),
      hardwareProfile: { vmSize: placement.size },
      ...(s.plan ? { plan: { ...s.plan } } : {}),
      // Spot: deleted on eviction (a deallocated Spot VM would keep its disk billing, and could not come back as the
      // node the job knew); never evicted for price with maxPrice -1.
      ...(s.spot ? { priority: 'Spot', evictionPolicy: 'Delete', billingProfile: { maxPrice: s.spot.maxPrice } } : {}),
      storageProfile: { imageReference: s.vmImage, osDisk },
      osProfile: {
        computerName: vmName,
        adminUsername: s.adminUser,
        customData: customDataOf({
          adminUser: s.adminUser,
          hostKey,
          containerRuntime: s.containerRuntime,
          containerImage: s.containerImage,
          sshPort: s.sshPort,
          expiresAt: s.expiresAt,
          runtimeInstalled: s.runtimeInstalled,
        }),
        linuxConfiguration: {
          disablePasswordAuthentication: true,
          provisionVMAgent: true,
          ssh: { publicKeys: [{ path: `/home/${s.adminUser}/.ssh/authorized_keys`, keyData: request.sshPublicKey.trim() }] },
        },
      },
      networkProfile: {
        networkApiVersion: VM_NETWORK_API_VERSION,
        networkInterfaceConfigurations: [
          {
            name: nicName,
            tags,
            primary: true,
            deleteOption: 'Delete',
            networkSecurityGroup: { id: securityGroupId },
            ipConfigurations: [
              {
                name: 'primary',
                primary: true,
                subnet: { id: subnetId },
                ...(role === 'head' ? { publicIPAddressConfiguration: { name: publicIpNameOf(request.name), tags, deleteOption: 'Delete', ...standardIp } } : {}),
              },
            ],
          },
        ],
      },
    };
    return { index, role, vmName, nicName, hostKeyFingerprint: hostKey.fingerprint, vm };
  });

  // Outbound is explicit. Azure's "default outbound access" (an implicit, shared address for VMs without a
  // public IP) is retired: virtual networks made with network api-version 2025-07-01 or later have private
  // subnets, so an SDK upgrade would silently cut the compute nodes off from packages and registries. A NAT
  // gateway (inside the partition's group, tagged, deleted with it) keeps them connected whatever the
  // api-version; with `outboundAccess: "default"` the subnet asks for default access explicitly instead.
  const natName = natGatewayNameOf(request.name);
  const natIpName = natPublicIpNameOf(request.name);
  const needsNat = s.outboundAccess === 'nat-gateway' && nodes.length > 1;
  const outbound = needsNat
    ? {
        publicIp: { name: natIpName, body: { location, tags, ...standardIp, sku: { ...standardIp.sku } } },
        natGateway: {
          name: natName,
          body: {
            location,
            tags,
            sku: { name: 'Standard' as const },
            idleTimeoutInMinutes: 4,
            publicIpAddresses: [{ id: id('Microsoft.Network/publicIPAddresses', natIpName) }],
          },
        },
      }
    : null;
  const subnet = {
    name: SUBNET_NAME,
    addressPrefix: SUBNET_PREFIX,
    ...(needsNat ? { natGateway: { id: id('Microsoft.Network/natGateways', natName) }, defaultOutboundAccess: false } : {}),
    ...(s.outboundAccess === 'default' ? { defaultOutboundAccess: true } : {}),
  };

  return {
    partition: request.name,
    group,
    groupLocation,
    placement,
    tags,
    network: shared
      ? { kind: 'shared', shared }
      : {
          kind: 'own',
          securityGroup: { name: nsgName, body: { location, tags, securityRules: securityRules(s.sources, s.sshPort, request.ports) } },
          network: { name: vnetName, body: { location, tags, addressSpace: { addressPrefixes: [NETWORK_PREFIX] }, subnets: [subnet] } },
          outbound,
        },
    nodes,
  };
}

/**
 * The placements a partition may take, in order: the request's size in each allowed zone of the gate's location
 * (or in no zone), then each fallback size the same way, then the same in each fallback region. Candidates the
 * caller rejects (a size not offered there, or that cannot boot the image) are left out.
 */
export function placementsFor(
  size: string,
  o: { location: string; zones: string[]; fallbackSizes: Record<string, string[]>; fallbackRegions: string[] },
  usable: (location: string, size: string) => boolean,
): { location: string; zone: string | null; size: string }[] {
  const sizes = [size, ...(o.fallbackSizes[size] ?? [])];
  const zones: (string | null)[] = o.zones.length ? o.zones : [null];
  const out: { location: string; zone: string | null; size: string }[] = [];
  for (const location of [o.location, ...o.fallbackRegions])
    for (const candidate of sizes) {
      if (!usable(location, candidate)) continue;
      for (const zone of zones) out.push({ location, zone, size: candidate });
    }
  return out;
}
