import type { ImageReference, VirtualMachine, VirtualMachineRunCommand } from '@azure/arm-compute';
import type { NatGateway, NetworkInterface, NetworkSecurityGroup, PublicIPAddress, VirtualNetwork } from '@azure/arm-network';
import type { PartitionRequest } from '../../terminal-protocol/gate-methods.js';
import { customDataOf } from './cloud-init.js';
import { guestReadyCommand } from './guest-ready.js';
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
import { partitionTags, TAG } from './tags.js';

export interface PlanSettings {
  subscriptionId: string;
  coreId: string;
  location: string;
  adminUser: string;
  sshPort: number;
  /** Who may reach SSH and the job's ports. */
  sources: string[];
  vmImage: ImageReference;
  containerImage: string | null;
  containerRuntime: 'podman' | 'docker';
  osDiskType: 'Standard_LRS' | 'StandardSSD_LRS' | 'Premium_LRS';
  /** How nodes without a public IP reach the internet (see `outbound` of PartitionPlan). */
  outboundAccess: 'nat-gateway' | 'default';
  /** Limit of each node's guest-readiness check. */
  guestReadyTimeoutSec: number;
  /** The purchase plan the image requires (third-party marketplace images), or null. */
  plan: { name: string; product: string; publisher: string } | null;
}

export interface NodePlan {
  index: number;
  role: 'head' | 'compute';
  vmName: string;
  nicName: string;
  hostKeyFingerprint: string;
  nic: NetworkInterface;
  /** Carries the node's custom data (its host key): never logged. */
  vm: VirtualMachine;
  /** The check that the node's guest is ready (guest-ready.ts). */
  readiness: VirtualMachineRunCommand;
}

export interface Named<T> {
  name: string;
  body: T;
}

/** Every resource of one partition, with its body, before anything is created. */
export interface PartitionPlan {
  partition: string;
  group: string;
  location: string;
  tags: Record<string, string>;
  securityGroup: Named<NetworkSecurityGroup>;
  network: Named<VirtualNetwork>;
  publicIp: Named<PublicIPAddress>;
  /**
   * The NAT gateway (and its public IP) that gives the nodes without a public IP their way out, or null
   * when there are none (one node: the head goes out through its own IP) or outbound is Azure's default.
   */
  outbound: { publicIp: Named<PublicIPAddress>; natGateway: Named<NatGateway> } | null;
  nodes: NodePlan[];
}

/**
 * The resources of a partition, as a pure function of the request. Resource ids are known in advance
 * (they derive from names), so every body can reference the resources it needs before they exist; the
 * provisioner only has to respect the order Azure requires.
 */
export function planPartition(request: PartitionRequest, hostKeys: NodeHostKey[], s: PlanSettings): PartitionPlan {
  const group = groupNameOf(request.name);
  const id = (type: string, name: string): string => resourceIdOf(s.subscriptionId, group, type, name);
  const tags = partitionTags(request, s.coreId);
  const nsgName = securityGroupNameOf(request.name);
  const vnetName = networkNameOf(request.name);
  const pipName = publicIpNameOf(request.name);
  const subnetId = `${id('Microsoft.Network/virtualNetworks', vnetName)}/subnets/${SUBNET_NAME}`;

  const nodes = hostKeys.map((hostKey, index): NodePlan => {
    const role = index === 0 ? 'head' : 'compute';
    const vmName = vmNameOf(request.name, index);
    const nicName = nicNameOf(vmName);
    const nic: NetworkInterface = {
      location: s.location,
      tags,
      networkSecurityGroup: { id: id('Microsoft.Network/networkSecurityGroups', nsgName) },
      ipConfigurations: [
        {
          name: 'primary',
          primary: true,
          privateIPAllocationMethod: 'Dynamic',
          subnet: { id: subnetId },
          ...(role === 'head' ? { publicIPAddress: { id: id('Microsoft.Network/publicIPAddresses', pipName) } } : {}),
        },
      ],
    };
    const vm: VirtualMachine = {
      location: s.location,
      tags: { ...tags, [TAG.node]: String(index), [TAG.role]: role, [TAG.hostKey]: hostKey.fingerprint },
      hardwareProfile: { vmSize: request.flavor },
      ...(s.plan ? { plan: { ...s.plan } } : {}),
      storageProfile: {
        imageReference: s.vmImage,
        osDisk: { createOption: 'FromImage', deleteOption: 'Delete', managedDisk: { storageAccountType: s.osDiskType } },
      },
      osProfile: {
        computerName: vmName,
        adminUsername: s.adminUser,
        customData: customDataOf({
          adminUser: s.adminUser,
          hostKey,
          containerRuntime: s.containerRuntime,
          containerImage: s.containerImage,
          sshPort: s.sshPort,
        }),
        linuxConfiguration: {
          disablePasswordAuthentication: true,
          provisionVMAgent: true,
          ssh: { publicKeys: [{ path: `/home/${s.adminUser}/.ssh/authorized_keys`, keyData: request.sshPublicKey.trim() }] },
        },
      },
      networkProfile: { networkInterfaces: [{ id: id('Microsoft.Network/networkInterfaces', nicName), primary: true, deleteOption: 'Delete' }] },
    };
    const readiness = guestReadyCommand(s.location, tags, s.sshPort, hostKey, s.guestReadyTimeoutSec);
    return { index, role, vmName, nicName, hostKeyFingerprint: hostKey.fingerprint, nic, vm, readiness };
  });

  const standardIp = (): PublicIPAddress => ({
    location: s.location,
    tags,
    sku: { name: 'Standard', tier: 'Regional' },
    publicIPAllocationMethod: 'Static',
    publicIPAddressVersion: 'IPv4',
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
        publicIp: { name: natIpName, body: standardIp() },
        natGateway: {
          name: natName,
          body: {
            location: s.location,
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
    location: s.location,
    tags,
    securityGroup: { name: nsgName, body: { location: s.location, tags, securityRules: securityRules(s.sources, s.sshPort, request.ports) } },
    network: {
      name: vnetName,
      body: { location: s.location, tags, addressSpace: { addressPrefixes: [NETWORK_PREFIX] }, subnets: [subnet] },
    },
    publicIp: { name: pipName, body: standardIp() },
    outbound,
    nodes,
  };
}
