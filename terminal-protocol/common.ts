import { z } from 'zod';

/** Who a certificate speaks for; `monitor`: a metrics scraper, which may read GET /metrics and nothing else. */
export const Role = z.enum(['admin', 'user', 'core', 'gate', 'monitor']);
export type Role = z.infer<typeof Role>;

export const Flavor = z.object({
  name: z.string(),
  remote: z.string(),
  cpus: z.number().int().nonnegative(),
  gpus: z.number().int().nonnegative(),
  memMiB: z.number().int().nonnegative(),
  diskMiB: z.number().int().nonnegative(),
  /** Price per node-hour; absent when the cloud publishes none. */
  pricePerHour: z.number().nonnegative().optional(),
  /** Price per node-hour of a spot (preemptible) node, where the cloud sells them; absent otherwise. */
  spotPrice: z.number().nonnegative().optional(),
  currency: z.string().optional(),
});
export type Flavor = z.infer<typeof Flavor>;

export const Image = z.object({
  id: z.string(),
  name: z.string(),
  remote: z.string(),
  kind: z.enum(['cloud', 'container']),
  comment: z.string().optional(),
});
export type Image = z.infer<typeof Image>;

export const PartitionStatus = z.enum(['creating', 'up', 'deleting', 'deleted', 'failed']);
export type PartitionStatus = z.infer<typeof PartitionStatus>;

export const PartitionNode = z.object({
  name: z.string(),
  role: z.enum(['head', 'compute']),
  publicIp: z.string().nullable(),
  privateIp: z.string().nullable(),
  sshPort: z.number().int().positive(),
  sshUser: z.string(),
  /** OpenSSH-style "SHA256:<base64>" fingerprint of the node's host key; the core refuses any other key. */
  hostKeyFingerprint: z.string().nullable(),
});
export type PartitionNode = z.infer<typeof PartitionNode>;

export const Partition = z.object({
  id: z.string(),
  name: z.string(),
  status: PartitionStatus,
  jobId: z.string().nullable(),
  nodes: z.array(PartitionNode),
  error: z.string().optional(),
  /**
   * A gate whose nodes finish booting after it reports them up (a cloud: cloud-init's last stage runs after the
   * VM is Succeeded) names a command the core runs on every node over SSH (the connection checking the pinned
   * host key) before it takes the partition: exit 0 when the node is ready; any other exit, with its output as
   * the reason, when it never will be. Waited for at most `timeoutSec`. Absent: ready when up.
   */
  guestCheck: z.object({ command: z.string().min(1).max(4096), timeoutSec: z.number().positive() }).optional(),
});
export type Partition = z.infer<typeof Partition>;

export const Remote = z.object({
  name: z.string(),
  kind: z.string(),
  gate: z.string(),
  location: z.string().optional(),
  default: z.boolean(),
  maxNodes: z.number().int().positive(),
  defaultImage: z.string().nullable(),
  defaultFlavor: z.string().nullable(),
});
export type Remote = z.infer<typeof Remote>;
