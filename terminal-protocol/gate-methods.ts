import { z } from 'zod';
import { Flavor, Image, Partition } from './common.js';
import { method } from './method.js';

const core = ['core'] as const;

export const PortSpec = z.object({
  port: z.number().int().min(1).max(65535),
  protocol: z.literal('tcp'),
  direction: z.enum(['in', 'out']),
});
export type PortSpec = z.infer<typeof PortSpec>;

export const PartitionRequest = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
    jobId: z.string(),
    owner: z.string(),
    flavor: z.string(),
    image: z.string().nullable(),
    nodeCount: z.number().int().min(1).max(1000),
    ports: z.array(PortSpec),
    /** OpenSSH public key line of the partition's key pair; the private key never leaves the core. */
    sshPublicKey: z.string(),
    /** Host keys the core generated for the nodes (private parts), when the gate cannot report them. */
    hostKeys: z.array(z.string()).optional(),
    /** Container images the partition's jobs will run: a gate may have them on the nodes before it reports up. */
    containerImages: z.array(z.string()).max(16).optional(),
    /** Spot (preemptible) nodes: cheaper, and the cloud may take them back; absent: the gate's default. */
    spot: z.boolean().optional(),
    /** With spot: the most a node may cost an hour, in the flavor's currency; absent: the gate's default. */
    maxPrice: z.number().positive().optional(),
    tags: z.record(z.string(), z.string()),
  })
  .strict();
export type PartitionRequest = z.infer<typeof PartitionRequest>;

const PartitionRef = z.union([z.object({ id: z.string() }).strict(), z.object({ name: z.string() }).strict()]);

/**
 * The gate interface on the wire (DESIGN.md §8). Only a `core` certificate may call a gate.
 * create and delete are idempotent; deleting a missing partition succeeds.
 */
export const gateMethods = {
  'gate.hello': method(
    'Gate kind, version and the core id it serves.',
    core,
    z.object({}).strict().optional(),
    z.object({ kind: z.string(), name: z.string(), version: z.string() }),
  ),
  'partition.create': method(
    'Start creating a partition; returns at once, progress arrives as partition.event.',
    core,
    PartitionRequest,
    z.object({ id: z.string(), status: z.literal('creating').or(z.literal('up')) }),
  ),
  'partition.get': method('One partition by id or name.', core, PartitionRef, Partition),
  'partition.list': method('Partitions this gate holds for the calling core.', core, z.object({}).strict().optional(), z.array(Partition)),
  'partition.delete': method(
    'Delete a partition (idempotent); resolves when deletion has started.',
    core,
    z.object({ id: z.string() }).strict(),
    z.object({ id: z.string(), status: z.enum(['deleting', 'deleted']) }),
  ),
  'partition.prepare': method(
    "Make container images available on a partition's nodes before a job uses them (a reused partition).",
    core,
    z.object({ id: z.string(), containerImages: z.array(z.string().min(1)).max(16) }).strict(),
    z.object({ id: z.string() }),
  ),
  'partition.extend': method(
    "The core's lease on a partition: it may live `lifetimeSec` more (within the gate's maximum). A gate whose " +
      'partitions expire (a cloud: their nodes power off, the gate deletes them) moves the expiry; others answer null.',
    core,
    z.object({ id: z.string(), lifetimeSec: z.number().int().positive() }).strict(),
    z.object({ id: z.string(), expiresAt: z.string().nullable() }),
  ),
  'flavor.list': method('Flavors this gate offers.', core, z.object({}).strict().optional(), z.array(Flavor)),
  'image.list': method('Images this gate offers.', core, z.object({}).strict().optional(), z.array(Image)),
} as const;

export type GateMethods = typeof gateMethods;

export const gateNotifications = {
  'partition.event': Partition,
} as const;

export type GateNotifications = typeof gateNotifications;
