import type { NetworkSecurityGroup, SecurityRule, VirtualNetwork } from '@azure/arm-network';
import type { Logger } from 'pino';
import type { ArmClients } from './arm-clients.js';
import { describeAzureError } from './azure-errors.js';
import { writesIntoFreshGroup } from './fresh-group.js';
import { OperationFailed, type OperationLimits } from './long-running.js';
import { NETWORK_PREFIX, resourceIdOf, SUBNET_NAME, SUBNET_PREFIX } from './naming.js';
import type { Named } from './partition-plan.js';
import { securityRules } from './security-rules.js';
import { TAG, tagValue } from './tags.js';

/**
 * The core's shared network in one region: a virtual network and a security group in a resource group of their
 * own that outlives partitions. A partition of one node that opens no inbound port needs nothing of a network
 * of its own (its head goes out through its public IP, and it has no peer to reach), so its VM joins this one and
 * its first dependent step, the partition's network (Azure asks 10 s before the first poll), is gone.
 *
 * Partitions sharing it must not reach one another: the security group denies every inbound packet from the
 * virtual network (Azure applies a subnet's group to traffic between VMs of the same subnet), and allows only
 * SSH from the core's sources. Virtual networks and security groups cost nothing; the group holds nothing else.
 */
export interface SharedNetworkPlan {
  group: string;
  location: string;
  tags: Record<string, string>;
  securityGroup: Named<NetworkSecurityGroup>;
  network: Named<VirtualNetwork>;
  securityGroupId: string;
  subnetId: string;
}

export const SHARED_NETWORK_NAME = 'skyport-shared-vnet';
export const SHARED_SECURITY_GROUP_NAME = 'skyport-shared-nsg';
/** Marks the shared network's group (it has no partition tag, so no reconciliation takes it for a partition). */
export const SHARED_NETWORK_TAG_VALUE = 'shared-network';

/** `skyport-<core>-net-<location>`: one per core and region (Azure's limit on a group name is 90 characters). */
export const sharedNetworkGroupOf = (coreId: string, location: string): string => `skyport-${coreId.replace(/[^A-Za-z0-9-]/g, '').slice(0, 50)}-net-${location}`;

/** Before Azure's default rules (65000 and up), after the allow rules of security-rules.ts (100, 110). */
const ISOLATION_PRIORITY = 4000;

const isolation: SecurityRule = {
  name: 'skyport-isolate-partitions',
  protocol: '*',
  access: 'Deny',
  direction: 'Inbound',
  priority: ISOLATION_PRIORITY,
  sourceAddressPrefix: 'VirtualNetwork',
  sourcePortRange: '*',
  destinationAddressPrefix: '*',
  destinationPortRange: '*',
};

/** The shared network of `location`, as a pure function of the gate's settings. */
export function planSharedNetwork(s: {
  subscriptionId: string;
  coreId: string;
  gateName: string;
  location: string;
  sources: string[];
  sshPort: number;
  outboundAccess: 'nat-gateway' | 'default';
}): SharedNetworkPlan {
  const group = sharedNetworkGroupOf(s.coreId, s.location);
  const tags = { [TAG.core]: tagValue(s.coreId), [TAG.gate]: tagValue(s.gateName), [TAG.role]: SHARED_NETWORK_TAG_VALUE };
  const id = (type: string, name: string): string => resourceIdOf(s.subscriptionId, group, type, name);
  // Every VM of it has its own public IP: no NAT gateway. Outbound stays explicit (see partition-plan.ts).
  const subnet = { name: SUBNET_NAME, addressPrefix: SUBNET_PREFIX, ...(s.outboundAccess === 'default' ? { defaultOutboundAccess: true } : {}) };
  return {
    group,
    location: s.location,
    tags,
    securityGroup: {
      name: SHARED_SECURITY_GROUP_NAME,
      body: { location: s.location, tags, securityRules: [...securityRules(s.sources, s.sshPort, []), isolation] },
    },
    network: { name: SHARED_NETWORK_NAME, body: { location: s.location, tags, addressSpace: { addressPrefixes: [NETWORK_PREFIX] }, subnets: [subnet] } },
    securityGroupId: id('Microsoft.Network/networkSecurityGroups', SHARED_SECURITY_GROUP_NAME),
    subnetId: `${id('Microsoft.Network/virtualNetworks', SHARED_NETWORK_NAME)}/subnets/${SUBNET_NAME}`,
  };
}

/**
 * The shared networks this gate made sure of, one PUT of each resource per region and gate process: the first
 * partition of a region waits for it (or the gate's start made it already), the others find it done. A failure
 * is forgotten, so the next partition tries again. Every PUT is idempotent: a gate restarted with other sources
 * or another SSH port brings the security group up to date.
 */
export class SharedNetworks {
  private readonly ready = new Map<string, Promise<void>>();

  constructor(
    private readonly arm: ArmClients,
    private readonly log: Logger,
    /** How long writes into the group just made may be answered 404 ResourceGroupNotFound. */
    private readonly freshGroupGraceMs: number,
    /** The gate's close. */
    private readonly closing: AbortSignal,
  ) {}

  /** Resolves once no creation is in flight (the gate's close waits for it). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.ready.values()]);
  }

  ensure(plan: SharedNetworkPlan, limits: OperationLimits): Promise<void> {
    let done = this.ready.get(plan.group);
    if (!done) {
      done = this.create(plan, limits);
      this.ready.set(plan.group, done);
      done.catch(() => this.ready.delete(plan.group));
    }
    // One caller's cancellation must not cancel the creation others wait for.
    return limits.cancel.aborted ? Promise.reject(limits.cancel.reason) : done;
  }

  private async create(plan: SharedNetworkPlan, limits: OperationLimits): Promise<void> {
    const { arm, log } = this;
    const { group } = plan;
    // Its own life, not the partition's that asked first: cancelled by the gate's close, never by a partition's deletion.
    const own: OperationLimits = { ...limits, cancel: this.closing };
    try {
      await arm.resources.resourceGroups.createOrUpdate(group, { location: plan.location, tags: plan.tags }, { abortSignal: this.closing });
    } catch (error) {
      throw new OperationFailed(`resource group ${group} (the shared network): ${describeAzureError(error)}`, { cause: error });
    }
    const inGroup = writesIntoFreshGroup(Date.now(), this.freshGroupGraceMs, log);
    const nsg = plan.securityGroup;
    const vnet = plan.network;
    await Promise.all([
      inGroup(`network security group ${nsg.name} (shared)`, own, (o) => arm.network.networkSecurityGroups.beginCreateOrUpdate(group, nsg.name, nsg.body, o)),
      inGroup(`virtual network ${vnet.name} (shared)`, own, (o) => arm.network.virtualNetworks.beginCreateOrUpdate(group, vnet.name, vnet.body, o)),
    ]);
    log.info({ group, location: plan.location }, 'shared network ready');
  }
}
