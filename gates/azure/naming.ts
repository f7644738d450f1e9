/**
 * Names and ids of a partition's Azure resources. Everything of a partition lives in one resource
 * group, so names inside it need only be unique within the partition, and deleting the group deletes
 * the partition.
 */
export const groupNameOf = (partition: string): string => `${partition}-rg`;

/** The partition a resource group holds, from its name (`<partition>-rg`), or null. */
export const partitionOfGroup = (group: string): string | null => (group.endsWith('-rg') ? group.slice(0, -3) : null);

/** A Linux host name is at most 63 characters; a long partition name falls back to `node-<i>`. */
export const vmNameOf = (partition: string, index: number): string => {
  const full = `${partition}-${index}`;
  return full.length <= 63 ? full : `node-${index}`;
};

export const nicNameOf = (vmName: string): string => `${vmName}-nic`;
export const securityGroupNameOf = (partition: string): string => `${partition}-nsg`;
export const networkNameOf = (partition: string): string => `${partition}-vnet`;
export const SUBNET_NAME = 'nodes';
export const publicIpNameOf = (partition: string): string => `${partition}-ip`;
export const natGatewayNameOf = (partition: string): string => `${partition}-nat`;
export const natPublicIpNameOf = (partition: string): string => `${partition}-nat-ip`;

/** The partition's private network: one subnet, room for the 1000 nodes a partition may have. */
export const NETWORK_PREFIX = '10.0.0.0/16';
export const SUBNET_PREFIX = '10.0.0.0/20';

export const resourceIdOf = (subscriptionId: string, group: string, type: string, name: string): string =>
  `/subscriptions/${subscriptionId}/resourceGroups/${group}/providers/${type}/${name}`;
